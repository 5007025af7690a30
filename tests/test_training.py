"""utils/training.py: packing, baselines, schedule, seeded and resumable training, interrupt and NaN handling."""

import math

import pytest
import torch

from utils.fused import FusedTransformer
from utils.model import Config, DemoTransformer
from utils.training import (Trainer, TrainingArgs, TrainingDiverged, baselines, load_checkpoint_model, lr_at, make_optimizer,
                            pack, tokenize_documents)

CFG = Config(d_model=32, d_vocab=64, n_ctx=16, d_head=8, d_mlp=64, n_heads=4, n_layers=1)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    # a learnable stream: mostly "next = previous + 1 (mod 64)"
    stream = torch.cumsum(torch.ones(8000, dtype=torch.long), 0) % 64
    noise = torch.rand(8000, generator=g) < 0.1
    stream[noise] = torch.randint(0, 64, (int(noise.sum()),), generator=g)
    return pack(stream[:6400], 16), pack(stream[6400:], 16), stream


def _trainer(tmp_path, model_class=FusedTransformer, **overrides):
    torch.manual_seed(0)
    train, val, _ = _data()
    args = TrainingArgs(**{**dict(batch_size=8, max_steps=20, lr=3e-3, warmup_steps=5, eval_every=10, eval_batches=2, sample_every=1000,
                                  checkpoint_every=10, checkpoint_dir=str(tmp_path)), **overrides})
    return Trainer(model_class(CFG), args, train, val)


def test_tokenize_documents_puts_eot_before_each_document():
    stream = tokenize_documents(["ab", "c"], lambda s: [ord(ch) - 97 for ch in s], eot_id=99)
    assert stream.tolist() == [99, 0, 1, 99, 2]


def test_pack_shapes_and_errors():
    assert pack(torch.arange(10), 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="not enough for one sequence"):
        pack(torch.arange(3), 4)


def test_baselines_order_on_learnable_data():
    _, _, stream = _data()
    b = baselines(stream[:6400], stream[6400:], 64)
    assert b["uniform"] == pytest.approx(math.log(64))
    assert b["bigram"] < b["unigram"] < b["uniform"] + 0.01  # near-uniform data: the unigram is no better than uniform
    assert b["bigram"] < 2.0  # next = previous + 1 most of the time (unigram and uniform: ~4.16)


def test_schedule_warms_up_then_decays_to_the_floor():
    args = TrainingArgs(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, args) == pytest.approx(0.1) and lr_at(9, args) == pytest.approx(1.0)
    assert lr_at(60, args) == pytest.approx(0.55) and lr_at(110, args) == pytest.approx(0.1)


def test_weight_decay_only_on_weight_matrices():
    model = DemoTransformer(CFG)
    opt = make_optimizer(model, TrainingArgs(weight_decay=0.1))
    decayed, not_decayed = opt.param_groups
    name = {id(p): n.split(".")[-1] for n, p in model.named_parameters()}
    assert {name[id(p)] for p in decayed["params"]} == {"W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U"}
    assert {name[id(p)] for p in not_decayed["params"]} == {"b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U", "w", "b"}
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0


def test_training_learns_and_is_seeded(tmp_path):
    first = _trainer(tmp_path / "a").train()
    second = _trainer(tmp_path / "b").train()
    assert first.train_loss == second.train_loss
    assert first.val_loss[-1] < first.train_loss[0] - 0.5


def test_resume_continues_with_identical_losses(tmp_path):
    full = _trainer(tmp_path / "full").train()
    part = _trainer(tmp_path / "part")
    part.train(max_steps=10)
    resumed = Trainer.resume(tmp_path / "part" / "step_000010.pt", *_data()[:2])
    assert type(resumed.model) is FusedTransformer  # the class that was trained, recorded in the checkpoint
    history = resumed.train()
    assert history.train_loss == full.train_loss and history.val_loss == full.val_loss


def test_keyboard_interrupt_saves_a_checkpoint(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    original = trainer.training_step

    def interrupt_at_step_7(tokens):
        if trainer.step == 7:
            raise KeyboardInterrupt
        return original(tokens)

    monkeypatch.setattr(trainer, "training_step", interrupt_at_step_7)
    history = trainer.train()
    assert len(history.train_loss) == 7 and (tmp_path / "interrupted.pt").exists()
    model, meta = load_checkpoint_model(tmp_path / "interrupted.pt")
    assert meta["step"] == 7


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(max_steps=10)
    good = trainer.last_checkpoint
    with torch.no_grad():
        trainer.model.blocks[0].mlp.W_in.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at step 11.*step_000010.pt.*lower learning rate"):
        trainer.train()
    model, meta = load_checkpoint_model(good)
    assert meta["step"] == 10 and all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TrainingArgs(batch_size=0)
    with pytest.raises(ValueError, match="lr > 0"):
        TrainingArgs(lr=-1)
    train, val, _ = _data()
    with pytest.raises(ValueError, match="n_ctx = 16 columns"):
        Trainer(DemoTransformer(CFG), TrainingArgs(), train[:, :8], val)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        Trainer.resume(tmp_path / "missing.pt", train, val)


def test_micro_batches_accumulate_to_the_whole_batch(tmp_path):
    whole = _trainer(tmp_path / "whole", max_steps=6)
    split = _trainer(tmp_path / "split", max_steps=6, micro_batch_size=2)  # 4 micro-batches per step
    a, b = whole.train(), split.train()
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    for p, q in zip(whole.model.parameters(), split.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_explicit_and_fused_models_train_alike(tmp_path):
    fused = _trainer(tmp_path / "fused", max_steps=5).train()
    explicit = _trainer(tmp_path / "explicit", model_class=DemoTransformer, max_steps=5).train()
    assert fused.train_loss == pytest.approx(explicit.train_loss, rel=1e-4)


def test_checkpoint_reloads_onto_the_trainers_device_and_class(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.train()
    model, meta = load_checkpoint_model(trainer.last_checkpoint, device=trainer.args.device, model_class=FusedTransformer)
    assert type(model) is FusedTransformer and meta["step"] == 2
    assert {p.device for p in model.parameters()} == {torch.device(trainer.args.device)}
    tokens = _data()[1][:2]
    torch.testing.assert_close(model(tokens), trainer.model.eval()(tokens))


def test_checkpoint_from_a_gpu_loads_on_a_machine_without_one(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.train()
    state = trainer.state()
    state["args"]["device"], state["args"]["autocast"] = "cuda", "bfloat16"
    torch.save(state, tmp_path / "from_gpu.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, meta = load_checkpoint_model(tmp_path / "from_gpu.pt")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    resumed = Trainer.resume(tmp_path / "from_gpu.pt", *_data()[:2], device="cpu", autocast=None)
    assert resumed.step == 1 and resumed.args.device == "cpu"


def test_checkpoints_from_before_the_fused_twin_still_load(tmp_path):
    trainer = _trainer(tmp_path, max_steps=1)
    state = trainer.state()
    state["model_cfg"]["attn_impl"] = "fast"  # what older checkpoints stored
    state["args"]["autocast_bf16"] = False
    del state["args"]["autocast"], state["scaler"]
    torch.save(state, tmp_path / "old.pt")
    model, _ = load_checkpoint_model(tmp_path / "old.pt")
    assert Trainer.resume(tmp_path / "old.pt", *_data()[:2]).args.autocast is None


def test_a_compiled_model_is_trained_and_saved_as_the_module_inside(tmp_path):
    torch.manual_seed(0)
    train, val, _ = _data()
    trainer = Trainer(torch.compile(FusedTransformer(CFG)), TrainingArgs(checkpoint_dir=str(tmp_path)), train, val)
    assert type(trainer.model) is FusedTransformer
    assert not any(key.startswith("_orig_mod") for key in trainer.state()["model"])


def test_bad_gpu_arguments_and_data_are_rejected():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        TrainingArgs(autocast="bfloat16")
    with pytest.raises(ValueError, match="autocast must be None, 'bfloat16' or 'float16'"):
        TrainingArgs(device="cuda", autocast="fp8")
    with pytest.raises(ValueError, match="micro_batch_size must be None or a positive int that divides batch_size = 16"):
        TrainingArgs(batch_size=16, micro_batch_size=5)
    train, val, _ = _data()
    with pytest.raises(ValueError, match=r"token ids from 0 to 64, outside \[0, d_vocab = 64\)"):
        Trainer(FusedTransformer(CFG), TrainingArgs(), torch.cat([train, torch.full((1, 16), 64)]), val)


@pytest.mark.parametrize("eval_every, match", [
    (1000, "weights hold inf or NaN at step 4.*last good checkpoint is .*step_000002.pt"),  # caught when saving
    (2, "validation loss became nan at step 4.*last good checkpoint is .*step_000002.pt"),  # caught by the evaluation before it
])
def test_non_finite_weights_are_never_saved(tmp_path, eval_every, match):
    trainer = _trainer(tmp_path, max_steps=6, eval_every=eval_every, checkpoint_every=2)
    # the 4th step gets infinite gradients while its loss is still finite: clipping turns them into NaN, and so the weights
    trainer.model.blocks[0].mlp.W_in.register_hook(lambda g: torch.full_like(g, float("inf")) if trainer.step == 3 else g)
    with pytest.raises(TrainingDiverged, match=match):
        trainer.train()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["step_000002.pt"]
    model, _ = load_checkpoint_model(tmp_path / "step_000002.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_gpu_checkpoint_resumes_on_the_cpu_by_itself(tmp_path, monkeypatch, capsys):
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.train()
    state = trainer.state()
    state["args"].update(device="cuda", autocast="bfloat16", micro_batch_size=4, compile=True)
    torch.save(state, tmp_path / "from_gpu.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resumed = Trainer.resume(tmp_path / "from_gpu.pt", *_data()[:2])
    assert (resumed.args.device, resumed.args.autocast, resumed.args.compile) == ("cpu", None, False)
    assert "no CUDA GPU here, so it resumes on the CPU" in capsys.readouterr().out
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU here; use device='cpu'"):
        Trainer(FusedTransformer(CFG), TrainingArgs(device="cuda"), *_data()[:2])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(device="gpu"), ValueError, "device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'"),
    (dict(compile="no"), TypeError, "compile must be True or False, got 'no'"),
    (dict(fused_adamw=1), TypeError, "fused_adamw must be True or False"),
    (dict(batch_size=16, micro_batch_size=8.0), ValueError, "positive int that divides batch_size = 16, got 8.0"),
    (dict(batch_size=16, micro_batch_size=True), ValueError, "got True"),
])
def test_training_args_reject_bad_values_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainingArgs(**kwargs)


def test_device_may_be_a_torch_device():
    assert TrainingArgs(device=torch.device("cpu")).device == "cpu"
