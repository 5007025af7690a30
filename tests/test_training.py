"""utils/training.py: packing, baselines, schedule, seeded and resumable training, interrupt and NaN
handling, checkpoints that lose nothing, and clear errors at every entry point."""

import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import utils.checkpoints
import utils.safe_training
import utils.training
from utils.checkpoints import load_checkpoint_model, read_checkpoint
from utils.fused import FusedTransformer
from utils.model import Config, DemoTransformer
from utils.safe_training import SafeTrainer as Trainer  # the trainer notebook 03 trains with
from utils.safe_training import TrainingDiverged
from utils.training import (
    TrainingArgs,
    baselines,
    batch_rows,
    lr_at,
    make_optimizer,
    pack,
    run_length,
    tokenize_documents,
)

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
    args = TrainingArgs(
        **{
            **dict(
                batch_size=8,
                max_steps=20,
                lr=3e-3,
                eval_every=10,
                eval_batches=2,
                sample_every=1000,
                checkpoint_every=10,
                checkpoint_dir=str(tmp_path),
            ),
            "warmup_steps": min(5, overrides.get("max_steps", 20)),  # warmup within the run
            **overrides,
        }
    )
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
    assert (
        b["bigram"] < b["unigram"] < b["uniform"] + 0.01
    )  # near-uniform data: the unigram is no better than uniform
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
    assert {name[id(p)] for p in decayed["params"]} == {
        "W_E",
        "W_pos",
        "W_Q",
        "W_K",
        "W_V",
        "W_O",
        "W_in",
        "W_out",
        "W_U",
    }
    assert {name[id(p)] for p in not_decayed["params"]} == {
        "b_Q",
        "b_K",
        "b_V",
        "b_O",
        "b_in",
        "b_out",
        "b_U",
        "w",
        "b",
    }
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
    resumed = Trainer.resume(part.last_checkpoint, *_data()[:2])
    assert part.last_checkpoint.name == "step_000010.pt"
    assert (
        type(resumed.model) is FusedTransformer
    )  # the class that was trained, recorded in the checkpoint
    history = resumed.train()
    assert history.train_loss == full.train_loss and history.val_loss == full.val_loss
    assert (
        resumed.run_dir.parent == part.run_dir.parent and resumed.run_dir != part.run_dir
    )  # a resumed run gets its own folder


def test_ctrl_c_finishes_the_step_and_saves_a_checkpoint(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    original = trainer.training_step

    def interrupt_in_step_7(tokens):
        if trainer.step == 6:  # the 7th step
            signal.raise_signal(signal.SIGINT)
        return original(tokens)

    monkeypatch.setattr(trainer, "training_step", interrupt_in_step_7)
    history = trainer.train()
    assert (
        len(history.train_loss) == 7
        and trainer.last_checkpoint == trainer.run_dir / "step_000007.pt"
    )
    model, meta = load_checkpoint_model(trainer.last_checkpoint)
    assert (
        meta["step"] == 7 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )  # the handler is put back


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(max_steps=10)
    good = trainer.last_checkpoint
    with torch.no_grad():
        trainer.model.blocks[0].mlp.W_in.fill_(float("nan"))
    with pytest.raises(
        TrainingDiverged,
        match="loss became nan at step 11.*back at its last good checkpoint.*step_000010.pt.*lr=",
    ):
        trainer.train()
    model, meta = load_checkpoint_model(good)
    assert meta["step"] == 10 and all(torch.isfinite(p).all() for p in model.parameters())
    # the trainer went back to it: finite weights in memory, at step 10, ready to go on
    assert trainer.step == 10 and len(trainer.history.train_loss) == 10
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        TrainingArgs(batch_size=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1"):
        TrainingArgs(lr=-1)
    train, val, _ = _data()
    with pytest.raises(ValueError, match="n_ctx = 16 columns"):
        Trainer(DemoTransformer(CFG), TrainingArgs(), train[:, :8], val)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        Trainer.resume(tmp_path / "missing.pt", train, val)


def test_micro_batches_accumulate_to_the_whole_batch(tmp_path):
    whole = _trainer(tmp_path / "whole", max_steps=6)
    split = _trainer(
        tmp_path / "split", max_steps=6, micro_batch_size=2
    )  # 4 micro-batches per step
    a, b = whole.train(), split.train()
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    _assert_same_weights(whole.model, split.model)


def _assert_same_weights(model, other):
    """Every weight but b_K: its gradient is 0 but for rounding (the softmax ignores q . b_K),
    and AdamW turns that noise into steps of the learning rate's size, of either sign."""
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        if not name.endswith("b_K"):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_explicit_and_fused_models_train_alike(tmp_path):
    fused = _trainer(tmp_path / "fused", max_steps=5).train()
    explicit = _trainer(tmp_path / "explicit", model_class=DemoTransformer, max_steps=5).train()
    assert fused.train_loss == pytest.approx(explicit.train_loss, rel=1e-4)


def test_the_trainers_loss_trains_as_next_token_loss_does(tmp_path):
    """The trainer trains on fused_next_token_loss (notebook 03): the same losses and weights as
    next_token_loss, with micro-batches too (each one's loss / n)."""
    from utils.model import next_token_loss

    for micro in (None, 4):
        fused = _trainer(tmp_path / f"fused{micro}", max_steps=6, micro_batch_size=micro)
        plain = _trainer(tmp_path / f"plain{micro}", max_steps=6, micro_batch_size=micro)
        plain.loss = lambda tokens, m=plain.model: next_token_loss(m(tokens), tokens)
        assert fused.loss(fused.batch(0)).grad_fn.name() == "NextTokenLossBackward"
        a, b = fused.train(), plain.train()
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
        _assert_same_weights(fused.model, plain.model)


def test_checkpoint_reloads_onto_the_trainers_device_and_class(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.train()
    model, meta = load_checkpoint_model(
        trainer.last_checkpoint, device=trainer.args.device, model_class=FusedTransformer
    )
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
    state["args"]["autocast_bf16"], state["args"]["wandb_project"] = False, None
    del (
        state["args"]["autocast"],
        state["scaler"],
        state["frozen"],
        state["resumed_from"],
        state["model_class"],
    )
    torch.save(state, tmp_path / "old.pt")
    model, _ = load_checkpoint_model(tmp_path / "old.pt")
    assert Trainer.resume(tmp_path / "old.pt", *_data()[:2]).args.autocast is None


def test_a_compiled_model_is_trained_and_saved_as_the_module_inside(tmp_path):
    torch.manual_seed(0)
    train, val, _ = _data()
    trainer = Trainer(
        torch.compile(FusedTransformer(CFG)), TrainingArgs(checkpoint_dir=str(tmp_path)), train, val
    )
    assert type(trainer.model) is FusedTransformer
    assert not any(key.startswith("_orig_mod") for key in trainer.state()["model"])


def test_bad_gpu_arguments_and_data_are_rejected():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        TrainingArgs(autocast="bfloat16")
    with pytest.raises(ValueError, match="autocast must be None, 'bfloat16' or 'float16'"):
        TrainingArgs(device="cuda", autocast="fp8")
    with pytest.raises(
        ValueError,
        match="micro_batch_size must be None or a positive int that divides batch_size = 16",
    ):
        TrainingArgs(batch_size=16, micro_batch_size=5)
    train, val, _ = _data()
    with pytest.raises(
        ValueError,
        match=r"train_sequences must be ids in \[0, 64\) \(d_vocab = 64\); got ids from 0 to 64",
    ):
        Trainer(
            FusedTransformer(CFG), TrainingArgs(), torch.cat([train, torch.full((1, 16), 64)]), val
        )


@pytest.mark.parametrize(
    "eval_every, match",
    [
        (
            1000,
            "weights hold inf or NaN at step 4.*back at its last good checkpoint, .*step_000002.pt",
        ),  # caught when saving
        (
            2,
            "validation loss became nan at step 4"
            ".*back at its last good checkpoint, .*step_000002.pt",
        ),  # caught by the evaluation before it
    ],
)
def test_non_finite_weights_are_never_saved(tmp_path, eval_every, match):
    trainer = _trainer(tmp_path, max_steps=6, eval_every=eval_every, checkpoint_every=2)
    # the 4th step gets infinite gradients while its loss is still finite: clipping turns them into
    # NaN, and so the weights
    trainer.model.blocks[0].mlp.W_in.register_hook(
        lambda g: torch.full_like(g, float("inf")) if trainer.step == 3 else g
    )
    with pytest.raises(TrainingDiverged, match=match):
        trainer.train()
    assert sorted(p.name for p in trainer.run_dir.glob("*.pt")) == ["step_000002.pt"]
    model, _ = load_checkpoint_model(trainer.run_dir / "step_000002.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_gpu_checkpoint_resumes_on_the_cpu_by_itself(tmp_path, monkeypatch, capsys):
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.train()
    state = trainer.state()
    state["args"].update(device="cuda", autocast="bfloat16", micro_batch_size=4, compile=True)
    torch.save(state, tmp_path / "from_gpu.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resumed = Trainer.resume(tmp_path / "from_gpu.pt", *_data()[:2])
    assert (resumed.args.device, resumed.args.autocast, resumed.args.compile) == (
        "cpu",
        None,
        False,
    )
    assert "no CUDA GPU here, so it resumes on the CPU" in capsys.readouterr().out
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU here; use device='cpu'"):
        Trainer(FusedTransformer(CFG), TrainingArgs(device="cuda"), *_data()[:2])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(device="gpu"),
            ValueError,
            "device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'",
        ),
        (dict(compile="no"), TypeError, "compile must be True or False, got 'no'"),
        (dict(fused_adamw=1), TypeError, "fused_adamw must be True or False"),
        (
            dict(batch_size=16, micro_batch_size=8.0),
            ValueError,
            "positive int that divides batch_size = 16, got 8.0",
        ),
        (dict(batch_size=16, micro_batch_size=True), ValueError, "got True"),
    ],
)
def test_training_args_reject_bad_values_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainingArgs(**kwargs)


def test_device_may_be_a_torch_device():
    assert TrainingArgs(device=torch.device("cpu")).device == "cpu"


# -------------------------------------------- a step is one unit: stopped anywhere, resumed exactly
def _sigint():
    signal.raise_signal(signal.SIGINT)  # what Ctrl-C and Jupyter's stop button send


def _interrupt_at(point: str, trainer, monkeypatch, step: int = 7):
    """Send SIGINT once, at `point` of the step that makes trainer.step == `step` (or of its
    evaluation / save)."""
    fired = []

    def once(condition=True):
        if condition and not fired:
            fired.append(point)
            _sigint()

    if point == "lr":
        original_lr_at = utils.training.lr_at
        monkeypatch.setattr(
            utils.training, "lr_at", lambda s, a: (once(s == step - 1), original_lr_at(s, a))[1]
        )
    elif point == "batch":
        original_batch = trainer.batch
        monkeypatch.setattr(trainer, "batch", lambda s: (once(s == step - 1), original_batch(s))[1])
    elif point == "forward":
        trainer.model.register_forward_pre_hook(
            lambda m, inp: once(trainer.step == step - 1 and m.training)
        )
    elif point == "backward":
        trainer.model.blocks[0].mlp.W_in.register_hook(
            lambda g: (once(trainer.step == step - 1), g)[1]
        )
    elif point == "before optimizer.step":
        trainer.optimizer.register_step_pre_hook(lambda *a: once(trainer.step == step - 1))
    elif point == "after optimizer.step":  # the update is done, the step count not yet increased
        trainer.optimizer.register_step_post_hook(lambda *a: once(trainer.step == step - 1))
    elif point == "evaluate":
        original_accuracy = utils.training.next_token_accuracy
        monkeypatch.setattr(
            utils.training,
            "next_token_accuracy",
            lambda logits, t: (once(trainer.step == step), original_accuracy(logits, t))[1],
        )
    elif point == "save":
        original_write = utils.safe_training.write_checkpoint
        monkeypatch.setattr(
            utils.safe_training,
            "write_checkpoint",
            lambda st, p: (once(st["step"] == step), original_write(st, p))[1],
        )
    return fired


POINTS = [
    "lr",
    "batch",
    "forward",
    "backward",
    "before optimizer.step",
    "after optimizer.step",
    "evaluate",
    "save",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _trainer(tmp_path_factory.mktemp("full"), eval_every=5).train()


@pytest.mark.parametrize(
    "point, step",
    [(point, 7) for point in POINTS if point not in ("evaluate", "save")]
    + [("evaluate", 5), ("evaluate", 10), ("save", 10)],
)  # step 5 evaluates only; step 10 evaluates and saves
def test_stopping_anywhere_in_a_step_resumes_exactly(
    tmp_path, monkeypatch, uninterrupted, point, step
):
    trainer = _trainer(tmp_path / "stopped", eval_every=5)
    fired = _interrupt_at(point, trainer, monkeypatch, step)
    history = trainer.train()
    # a stop asked for while the batch is fetched, before any work on the step, stops before it
    step = step - 1 if point == "batch" else step
    assert fired == [point] and trainer.step == step, f"stopped at {trainer.step}"
    # the step happened whole: its loss, its evaluation (if due) and a checkpoint of it
    assert history.train_loss == uninterrupted.train_loss[:step]
    assert history.val_loss == uninterrupted.val_loss[: step // 5]
    assert (
        trainer.last_checkpoint.name == f"step_{step:06d}.pt"
        and read_checkpoint(trainer.last_checkpoint)["step"] == step
    )
    monkeypatch.undo()
    resumed = Trainer.resume(trainer.last_checkpoint, *_data()[:2]).train()
    assert (
        resumed.train_loss == uninterrupted.train_loss
        and resumed.val_loss == uninterrupted.val_loss
    )
    continued = trainer.train()  # or simply go on in the same session
    assert (
        continued.train_loss == uninterrupted.train_loss
        and continued.val_loss == uninterrupted.val_loss
    )


def test_a_stop_during_a_sample_saves_that_step(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, sample_every=3, checkpoint_every=1000)
    trainer.sample_text = lambda model: "a sample"
    original = trainer.sample
    monkeypatch.setattr(
        trainer, "sample", lambda: (_sigint() if trainer.step == 6 else None, original())[1]
    )
    trainer.train()
    assert (
        trainer.step == 6
        and trainer.last_checkpoint.name == "step_000006.pt"
        and len(trainer.history.samples) == 2
        and trainer.history.sample_steps == [3, 6]
    )


def test_each_sample_keeps_its_step_through_a_resume(tmp_path):
    """Notebook 03 labels each sample with its step: every sample_every steps and the last one of
    each call of train(), kept in the checkpoint and carried on by a resumed run."""
    options = dict(max_steps=7, sample_every=3, checkpoint_every=4)
    whole = _trainer(tmp_path / "whole", **options)
    whole.sample_text = lambda model: f"a sample at {whole.step}"
    whole.train()
    assert whole.history.sample_steps == [3, 6, 7], whole.history
    assert whole.history.samples == ["a sample at 3", "a sample at 6", "a sample at 7"]
    stopped = _trainer(tmp_path / "stopped", **options)
    stopped.sample_text = lambda model: "a sample"
    stopped.train(max_steps=4)
    resumed = Trainer.resume(stopped.last_checkpoint, *_data()[:2])
    resumed.sample_text = lambda model: "a sample"
    assert resumed.train().sample_steps == [3, 4, 6, 7]  # the first call's end, step 4, sampled


@pytest.mark.parametrize("samples, steps", [(2, [3, 4]), (1, [3]), (3, [])])
def test_a_checkpoint_without_sample_steps_resumes_with_the_steps_it_can_tell(
    tmp_path, capsys, samples, steps
):
    """A checkpoint written before History kept sample_steps: its samples' steps are every
    sample_every and its own; samples whose steps cannot be told leave the resumed history (they
    stay in the file), rather than showing under another step."""
    trainer = _trainer(tmp_path / "old", max_steps=4, sample_every=3, checkpoint_every=4)
    trainer.sample_text = lambda model: "a sample"
    trainer.train()
    state = torch.load(trainer.last_checkpoint, weights_only=False)
    del state["history"]["sample_steps"]
    state["history"]["samples"] = ["a sample"] * samples
    old = tmp_path / "step_000004.pt"
    torch.save(state, old)
    resumed = Trainer.resume(old, *_data()[:2])
    assert resumed.history.sample_steps == steps
    assert resumed.history.samples == ["a sample"] * len(steps)
    assert ("have no steps recorded" in capsys.readouterr().out) == (not steps)


def test_a_second_ctrl_c_stops_at_once_and_the_trainer_says_how_to_go_on(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    trainer.train(max_steps=10)
    original = trainer.training_step

    def two_presses(tokens):
        if trainer.step == 12:
            _sigint()
            _sigint()
        return original(tokens)

    monkeypatch.setattr(trainer, "training_step", two_presses)
    with pytest.raises(
        KeyboardInterrupt,
        match="Stopped at once without saving.*middle of step 13.*Trainer.resume.*step_000010.pt",
    ):
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(RuntimeError, match="cannot go on.*half-updated"):
        trainer.train()


# -------------------------------------- divergence: never save, go back to the last good checkpoint
@pytest.mark.parametrize(
    "lr, warmup_steps, saved_any",
    [(1e2, 0, False), (1e3, 0, False), (1e6, 0, False), (1.0, 10, True), (3.0, 10, True)],
)
def test_a_diverging_run_never_saves_a_bad_checkpoint(tmp_path, lr, warmup_steps, saved_any):
    trainer = _trainer(
        tmp_path, lr=lr, warmup_steps=warmup_steps, checkpoint_every=1, eval_every=1, grad_clip=1e9
    )
    with pytest.raises(TrainingDiverged) as error:
        trainer.train()
    saved = sorted(trainer.run_dir.glob("*.pt")) if trainer.run_dir else []
    for path in saved:
        state = read_checkpoint(path)
        assert all(torch.isfinite(t).all() for t in state["model"].values()), path.name
        assert all(
            v < 2 * math.log(64)
            for v in state["history"]["val_loss"] + state["history"]["train_loss"]
        ), path.name
    assert bool(saved) == saved_any
    if saved:
        assert f"back at its last good checkpoint, {saved[-1]}" in str(error.value)
        assert all(
            torch.isfinite(p).all() for p in trainer.model.parameters()
        )  # the model in memory is the good one again
        resumed = Trainer.resume(saved[-1], *_data()[:2], lr=1e-3)  # what the message says to do
        resumed.train(max_steps=3)
        assert all(math.isfinite(v) for v in resumed.history.train_loss)
    else:
        assert "No checkpoint was saved before the weights blew up" in str(error.value)
        with pytest.raises(
            RuntimeError,
            match="cannot go on: its weights blew up and no checkpoint was saved before that",
        ):
            trainer.train()


def test_a_loss_far_worse_than_uniform_is_divergence_and_the_checkpoint_of_the_blow_up_is_skipped(
    tmp_path,
):
    trainer = _trainer(tmp_path, checkpoint_every=2, eval_every=1000)
    trainer.train(max_steps=6)
    with (
        torch.no_grad()
    ):  # weights blown up but finite, as after a huge update: the loss is large, not NaN
        trainer.model.unembed.W_U.mul_(1e4)
    trainer.save_checkpoint()  # the save at step 6 cannot tell: its weights are finite
    blown = trainer.last_checkpoint
    with pytest.raises(
        TrainingDiverged,
        match=r"training loss became .* at step 7 \(a uniform guess scores 4.16\).*"
        r"back at its last good checkpoint, .*step_000004.pt \(step 4\). step_000006.pt already "
        r"held the blown-up weights: do not resume from it",
    ):
        trainer.train()
    assert (
        trainer.step == 4 and blown.exists()
    )  # nothing is deleted; the message says not to resume from it


# ---------------------------------------------------------------- one folder per run
def test_two_runs_resumed_from_one_checkpoint_never_overwrite_each_other(tmp_path):
    original = _trainer(tmp_path, max_steps=6, checkpoint_every=3)
    original.train(max_steps=3)
    first = Trainer.resume(original.last_checkpoint, *_data()[:2])
    second = Trainer.resume(
        original.last_checkpoint, *_data(seed=1)[:2]
    )  # other data: other weights at step 6
    first.train(), second.train(), original.train()
    paths = [t.last_checkpoint for t in (first, second, original)]
    assert len(set(paths)) == 3 and all(p.name == "step_000006.pt" for p in paths)
    weights = [read_checkpoint(p)["model"]["blocks.0.mlp.W_in"] for p in paths]
    assert not torch.equal(weights[0], weights[1]) and torch.equal(
        weights[0], weights[2]
    )  # each file holds its own run


def test_runs_never_overwrite_each_others_checkpoints(tmp_path):
    first = _trainer(tmp_path)
    first.train()
    files = {p: p.read_bytes() for p in first.run_dir.glob("*.pt")}
    assert sorted(p.name for p in files) == ["step_000010.pt", "step_000020.pt"]
    branched = Trainer.resume(
        first.run_dir / "step_000010.pt", *_data()[:2], lr=1e-2
    )  # the case
    branched.train()
    earlier = Trainer.resume(
        first.run_dir / "step_000010.pt", *_data()[:2]
    )  # no change, but the run went on past step 10
    earlier.train()
    second = _trainer(tmp_path, max_steps=2, checkpoint_every=1)
    second.train()
    assert {p: p.read_bytes() for p in first.run_dir.glob("*.pt")} == files
    folders = {t.run_dir for t in (first, branched, earlier, second)}
    assert len(folders) == 4 and all(f.parent == tmp_path for f in folders)
    assert read_checkpoint(branched.last_checkpoint)["resumed_from"] == str(
        first.run_dir / "step_000010.pt"
    )


# ---------------------------------------------------------------- a full disk, and saves cut short
def _write_then_fail_like_a_full_disk(state, f):
    with open(f, "wb") as out:
        out.write(b"\0" * 100_000)  # what a partial write leaves behind
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 160 kB tmpfs, smaller than one checkpoint: a real full disk (needs root and
    mount; skipped where not allowed)."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)])


def test_a_full_disk_says_so_leaves_no_partial_file_and_loses_nothing(full_disk, monkeypatch):
    trainer = _trainer(full_disk)
    with pytest.raises(OSError, match=f"no space left in {full_disk}.*nothing was lost"):
        trainer.train()
    assert (
        list(full_disk.glob("**/*.tmp")) == [] and trainer.step == 10
    )  # the step that could not be saved is still in memory
    trainer.args.checkpoint_dir, trainer.run_dir = str(full_disk.parent / "roomy"), None
    assert (
        read_checkpoint(trainer.save_checkpoint())["step"] == 10
    )  # free some space (here: another disk) and save again


def test_a_full_disk_during_the_ctrl_c_save_keeps_the_stop_and_the_state(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, checkpoint_every=1000)
    original = trainer.training_step
    monkeypatch.setattr(
        trainer,
        "training_step",
        lambda t: (_sigint() if trainer.step == 4 else None, original(t))[1],
    )
    monkeypatch.setattr(utils.checkpoints.torch, "save", _write_then_fail_like_a_full_disk)
    monkeypatch.setattr(
        utils.checkpoints.shutil, "disk_usage", lambda d: type("usage", (), {"free": 0})()
    )
    with pytest.raises(OSError, match="no space left in"):
        trainer.train()
    assert (
        trainer.step == 5
        and len(trainer.history.train_loss) == 5
        and not list(tmp_path.glob("**/*.tmp"))
    )
    monkeypatch.undo()
    assert read_checkpoint(trainer.save_checkpoint())["step"] == 5


def test_partial_files_of_killed_saves_are_removed_at_the_next_start(tmp_path, capsys):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    run = tmp_path / "run_20260101-000000"
    run.mkdir()
    orphans = [
        run / f"step_000013.pt.{gone}.tmp",
        run / "step_000014.tmp",
        tmp_path / f"step_000001.pt.{gone}.tmp",
    ]
    in_progress = run / f"step_000015.pt.{os.getpid()}.tmp"  # a save of a live process
    for path in orphans + [in_progress]:
        path.write_bytes(b"\0" * 1000)
    _trainer(tmp_path)
    assert [p.exists() for p in orphans] == [False] * 3 and in_progress.exists()
    assert "removed 3 partial checkpoint file(s)" in capsys.readouterr().out


# -------------------------------------------- resume with frozen parameters, and other entry points
def test_a_run_with_frozen_parameters_resumes(tmp_path):
    trainer = _trainer(tmp_path, max_steps=4, checkpoint_every=2)
    trainer.model.embed.W_E.requires_grad_(False)
    trainer.optimizer = make_optimizer(trainer.model, trainer.args)
    trainer.train(max_steps=2)
    resumed = Trainer.resume(trainer.last_checkpoint, *_data()[:2])
    assert not resumed.model.embed.W_E.requires_grad
    assert resumed.train().train_loss == trainer.train().train_loss


def _sequences(n_ctx=16):
    return pack(_data()[2], n_ctx)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lr="3e-4"), TypeError, "lr must be a finite number > 0, got '3e-4'"),
        (dict(lr=None), TypeError, "lr must be a finite number > 0, got None"),
        (dict(lr=float("inf")), ValueError, "lr must be a finite number > 0, got inf"),
        (dict(lr=float("nan")), ValueError, "lr must be a finite number > 0, got nan"),
        (
            dict(betas=0.9),
            TypeError,
            r"betas must be a pair \(beta1, beta2\) such as \(0.9, 0.95\), got 0.9",
        ),
        (
            dict(betas=(0.9, 1.5)),
            ValueError,
            r"betas must be a pair of numbers in \[0, 1\), got 1.5",
        ),
        (dict(device="gpu"), ValueError, "got 'gpu' \\(for an NVIDIA GPU, 'cuda'\\)"),
        (dict(checkpoint_dir=None), TypeError, "checkpoint_dir must be a folder path, got None"),
        (dict(seed=1.5), TypeError, r"seed must be an int from 0 to 2\*\*32 - 1, got 1.5"),
        (
            dict(weight_decay=-0.1),
            ValueError,
            "weight_decay must be a finite number >= 0, got -0.1",
        ),
        (
            dict(weight_decay=float("nan")),
            ValueError,
            "weight_decay must be a finite number >= 0, got nan",
        ),
        (dict(sample_tokens=-5), ValueError, "sample_tokens must be a positive int, got -5"),
        (dict(sample_prompt=""), ValueError, "sample_prompt must be a non-empty string"),
        (dict(batch_size=True), TypeError, "batch_size must be a positive int, got True"),
        (dict(max_steps=100.0), TypeError, "max_steps must be a positive int, got 100.0"),
    ],
)
def test_training_args_name_the_bad_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainingArgs(**kwargs)


def test_training_args_accept_numpy_integers_and_paths(tmp_path):
    np = pytest.importorskip("numpy")
    args = TrainingArgs(
        batch_size=np.int64(8), seed=np.int32(3), lr=np.float32(1e-3), checkpoint_dir=tmp_path
    )
    assert (type(args.batch_size), type(args.seed), type(args.lr), args.checkpoint_dir) == (
        int,
        int,
        float,
        str(tmp_path),
    )


@pytest.mark.parametrize(
    "stream, n_ctx, error, match",
    [
        (torch.arange(100), 0, ValueError, "n_ctx must be a positive int, got 0"),
        (
            torch.arange(100).view(10, 10),
            5,
            ValueError,
            r"stream must be 1-D .* got shape \(10, 10\)",
        ),
        (
            list(range(100)),
            5,
            TypeError,
            r"stream must be a 1-D tensor of token ids, got a list; use torch.tensor\(ids\)",
        ),
    ],
)
def test_pack_names_the_bad_input(stream, n_ctx, error, match):
    with pytest.raises(error, match=match):
        pack(stream, n_ctx)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda train, val: (train[0], val),
            ValueError,
            r"train_sequences must have shape \[batch, posn\], got shape \(16,\)",
        ),
        (
            lambda train, val: (train.tolist(), val),
            TypeError,
            "train_sequences must be a torch.Tensor of token ids, got list",
        ),
        (
            lambda train, val: (train, val[:0]),
            ValueError,
            r"val_sequences has shape \(0, 16\): give at least one sequence",
        ),
        (lambda train, val: (train.float(), val), TypeError, "dtype torch.float32"),
        (
            lambda train, val: (train[:4], val),
            ValueError,
            "batch_size is 8, more than the 4 training sequences",
        ),
    ],
)
def test_trainer_names_bad_data(make, error, match, tmp_path):
    train, val, _ = _data()
    with pytest.raises(error, match=match):
        Trainer(
            FusedTransformer(CFG),
            TrainingArgs(batch_size=8, checkpoint_dir=str(tmp_path)),
            *make(train, val),
        )


def test_trainer_rejects_what_cannot_train(tmp_path):
    args = TrainingArgs(batch_size=8, checkpoint_dir=str(tmp_path))
    one = Config(**{**CFG.__dict__, "n_ctx": 1})
    with pytest.raises(ValueError, match="n_ctx is 1: a one-token sequence has no next token"):
        Trainer(FusedTransformer(one), args, _sequences(1), _sequences(1))
    frozen = FusedTransformer(CFG).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        Trainer(frozen, args, *_data()[:2])
    with pytest.raises(TypeError, match="sample must be None or a function of the model"):
        Trainer(FusedTransformer(CFG), args, *_data()[:2], sample="Once upon a time")


def _not_checkpoints(tmp_path):
    trainer = _trainer(tmp_path / "good", max_steps=1)
    good = trainer.state()
    newer = {**good, "args": {**good["args"], "label_smoothing": 0.1}}
    files = {
        "empty": b"",
        "random bytes": os.urandom(5000),
        "a text file": b"step,loss\n1,4.2\n",
    }
    for name, data in files.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
    torch.save(good, tmp_path / "whole.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:3000])
    torch.save(torch.zeros(3), tmp_path / "a plain tensor.pt")
    torch.save(good["model"], tmp_path / "a state dict.pt")
    torch.save(
        {"transformer.h.0.attn.c_attn.weight": torch.zeros(2, 6)},
        tmp_path / "a Hugging Face state dict.pt",
    )
    torch.save(newer, tmp_path / "newer.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "a pickled module.pt")
    return tmp_path


@pytest.mark.parametrize(
    "name, match",
    [
        ("empty", "not a checkpoint of this project"),
        ("random bytes", "not a checkpoint of this project"),
        ("a text file", "not a checkpoint of this project"),
        ("truncated", "not a checkpoint of this project"),
        ("a plain tensor", "not a checkpoint of this project .*: it holds a Tensor"),
        (
            "a state dict",
            "not a checkpoint of this project .*: it lacks .*load it with model.load_state_dict",
        ),
        (
            "a Hugging Face state dict",
            "not a checkpoint of this project .*: "
            "it lacks .*Hugging Face GPT-2 state dict.*load_gpt2_weights",
        ),
        ("a pickled module", "not a checkpoint of this project.*refuses to run"),
        ("newer", r"written by a newer version of this project \(it has \['label_smoothing'\]\)"),
    ],
)
def test_files_that_are_not_checkpoints_get_a_clear_error(tmp_path, name, match):
    folder = _not_checkpoints(tmp_path)
    path = folder / f"{name}.pt"
    for load in (read_checkpoint, load_checkpoint_model, lambda p: Trainer.resume(p, *_data()[:2])):
        with pytest.raises(ValueError, match=match) as error:
            load(path)
        assert str(path) in str(error.value) and "weights_only=False" not in str(error.value)


def test_checkpoint_paths_that_are_not_files_get_a_clear_error(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2, checkpoint_every=1)
    trainer.train()
    with pytest.raises(TypeError, match="the checkpoint must be a file path .* got None"):
        load_checkpoint_model(None)
    with pytest.raises(
        IsADirectoryError,
        match=f"{trainer.run_dir} is a folder; "
        "give a checkpoint file in it, such as .*step_000002.pt",
    ):
        load_checkpoint_model(trainer.run_dir)
    with pytest.raises(
        FileNotFoundError,
        match=r"no checkpoint at .*step_000009.pt; "
        r"checkpoints in .*: \[.*step_000001.pt', .*step_000002.pt'\]",
    ):
        Trainer.resume(trainer.run_dir / "step_000009.pt", *_data()[:2])
    state = trainer.state()
    torch.save({**state, "args": list(state["args"])}, tmp_path / "odd.pt")
    with pytest.raises(
        ValueError, match="not a checkpoint of this project .*parts are not what a Trainer saves"
    ):
        read_checkpoint(tmp_path / "odd.pt")
    torch.save({**state, "model_cfg": {**state["model_cfg"], "d_mlp": 32}}, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="weights do not fit its own model config"):
        load_checkpoint_model(tmp_path / "edited.pt")


def test_batches_depend_only_on_step_and_seed():
    rows = [
        batch_rows(step, 100, 8, seed=0) for step in range(24)
    ]  # 12 batches per epoch, 4 rows left out each epoch
    assert len(set(torch.cat(rows[:12]).tolist())) == 96 and rows[12].tolist() != rows[0].tolist()
    assert (
        batch_rows(17, 100, 8, seed=0).tolist() == rows[17].tolist()
        and batch_rows(17, 100, 8, seed=1).tolist() != rows[17].tolist()
    )


def test_run_length_caps_epochs_and_warmup():
    assert run_length(
        n_sequences=800, batch_size=8, max_steps=1500, warmup_steps=100, max_epochs=2
    ) == (200, 100)
    assert run_length(
        n_sequences=80, batch_size=8, max_steps=1500, warmup_steps=100, max_epochs=2
    ) == (20, 10)
    assert run_length(n_sequences=80, batch_size=8, max_steps=1500, warmup_steps=100) == (1500, 100)


def test_profiling_leaves_the_model_as_it_was_and_prints_no_profiler_noise(tmp_path, capfd):
    from utils.profiling import profile_training_steps

    trainer = _trainer(tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    table = profile_training_steps(trainer, _data()[0][:8], steps=2)
    assert "CPU self time" in table
    # AdamW's share, in or out of the top rows: the fused update and the optimizer's step
    adamw = re.fullmatch(
        r"AdamW, its (\d+) operations together: ([\d.]+)% of the CPU time", table.splitlines()[-1]
    )
    assert adamw and int(adamw[1]) >= 2 and 0 < float(adamw[2]) < 100, table
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert "USDT" not in capfd.readouterr().err


def test_checkpoints_in_lists_runs_of_the_same_second_in_the_order_they_were_made(tmp_path):
    """new_run_dir names runs started in one second run_<time>, run_<time>-2 ... run_<time>-10:
    oldest first means -2 before -10 (as text, -10 sorts first)."""
    from utils.checkpoints import checkpoints_in

    names = ["run_20261207-161339", *(f"run_20261207-161339-{n}" for n in (2, 3, 10, 11))]
    names.append("run_20261207-161340")
    for name in reversed(names):
        (tmp_path / name).mkdir()
        for step in (10, 5):
            (tmp_path / name / f"step_{step:06d}.pt").write_bytes(b"")
    listed = [(p.parent.name, p.name) for p in checkpoints_in(tmp_path)]
    assert listed == [(name, f"step_{s:06d}.pt") for name in names for s in (5, 10)], listed
