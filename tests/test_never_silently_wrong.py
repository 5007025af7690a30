"""Cases that once gave a wrong result without a word, or let a file decide too much: each fails
on the code before its fix."""

import pytest
import torch

import utils.sampling
from utils.bpe import BPETokenizer, bytes_to_unicode
from utils.checkpoints import read_checkpoint
from utils.printing import wrap_lines
from utils.checks.tokenisation import check_train_merges
from utils.exercises import stale_exercises
from utils.fused import FusedTransformer
from utils.hooks import HookedDemoTransformer
from utils.model import Config, DemoTransformer, next_token_loss
from utils.resources import split_documents
from utils.runs import run_tokenizer
from utils.safe_training import SafeTrainer
from utils.sampling import KVCache, beam_search, cached_forward, generate
from utils.training import Trainer, TrainingArgs, pack

CFG = Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=2, n_ctx=32, d_vocab=64)
PROMPT = torch.tensor([[1, 2, 3, 4]])


def _trained_after_a_first_generation(model_class, optimizer):
    """Generate once (as notebook 03 samples before training), then change every weight."""
    torch.manual_seed(0)
    model = model_class(CFG)
    generate(model, PROMPT, 4, temperature=0)
    opt = optimizer(model)
    for _ in range(20):
        x = torch.randint(0, 64, (4, 32))
        next_token_loss(model(x), x).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("model_class", [FusedTransformer, HookedDemoTransformer, DemoTransformer])
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda m: torch.optim.AdamW(m.parameters(), lr=0.05, fused=True),
        lambda m: torch.optim.AdamW(m.parameters(), lr=0.05, foreach=True),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.5),
    ],
    ids=["fused AdamW", "foreach AdamW", "SGD"],
)
def test_cached_generation_after_training_uses_the_trained_weights(model_class, optimizer):
    model = _trained_after_a_first_generation(model_class, optimizer)
    cached = generate(model, PROMPT, 8, temperature=0)
    assert torch.equal(cached, generate(model, PROMPT, 8, temperature=0, use_cache=False))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: [p.data.mul_(-2) for p in m.parameters()],
        lambda m: m.load_state_dict(FusedTransformer(CFG).state_dict()),
        lambda m: m.to(torch.float64),
        lambda m: [p.add_(0.3) for p in m.parameters()],
    ],
    ids=[".data", "load_state_dict", ".to(float64)", "no_grad edit"],
)
def test_no_copy_of_the_weights_outlives_a_change_of_them(change):
    torch.manual_seed(1)
    model = FusedTransformer(CFG).eval()
    generate(model, PROMPT, 4, temperature=0)
    with torch.no_grad():
        change(model)
    prompt = PROMPT.to(next(model.parameters()).device)
    cached = generate(model, prompt, 8, temperature=0)
    assert torch.equal(cached, generate(model, prompt, 8, temperature=0, use_cache=False))


def _element(model, name):
    return dict(model.named_parameters())[name]


def _swap_heads(weight):
    weight[[0, 1]] = weight[[1, 0]].clone()


@pytest.mark.parametrize("model_class", [FusedTransformer, HookedDemoTransformer, DemoTransformer])
@pytest.mark.parametrize(
    "edit",
    [
        lambda m: _element(m, "blocks.0.attn.W_K").data.view(-1)[37].add_(0.5),
        lambda m: (
            _element(m, "blocks.1.attn.W_Q").detach().numpy().reshape(-1).__setitem__(101, 2.0)
        ),
        lambda m: _element(m, "blocks.0.ln1.w").data.__setitem__(5, 3.0),
        lambda m: _element(m, "blocks.0.attn.b_V").data.view(-1).__setitem__(3, 1.0),
        lambda m: _element(m, "pos_embed.W_pos").data[2].add_(0.5),
        lambda m: _element(m, "embed.W_E").data[3, 7].add_(1.0),  # a row of a cached token
        lambda m: _swap_heads(_element(m, "blocks.0.attn.W_V").data),
    ],
    ids=["W_K .data", "W_Q .numpy()", "ln1.w", "b_V", "W_pos row", "W_E row", "heads swapped"],
)
def test_a_cache_of_yours_sees_one_weight_edited_between_steps(model_class, edit):
    """next_logits with your own cache, one element edited through .data or .numpy() between two
    steps (no version bump, and not among the few values the cache samples): refused."""
    torch.manual_seed(4)
    model = model_class(CFG).eval()
    cache = KVCache(CFG, 1)
    with torch.no_grad():
        utils.sampling.next_logits(model, PROMPT, cache)
        edit(model)
        longer = torch.cat([PROMPT, torch.tensor([[9]])], dim=1)
        with pytest.raises(ValueError, match="weights have changed since this cache was filled"):
            utils.sampling.next_logits(model, longer, cache)
        cache.reset()  # as the message says: then the whole sequence again, which agrees
        cached = utils.sampling.next_logits(model, longer, cache)
        torch.testing.assert_close(cached, model(longer)[:, -1], atol=1e-5, rtol=1e-5)


def test_edits_no_cached_key_depends_on_are_not_refused():
    """The unembedding, the final LayerNorm and embedding rows of tokens not cached act on new
    positions only: the cache stays valid, and its logits agree with the uncached model's."""
    torch.manual_seed(5)
    model = FusedTransformer(CFG).eval()
    cache = KVCache(CFG, 1)
    with torch.no_grad():
        utils.sampling.next_logits(model, PROMPT, cache)
        model.unembed.W_U.data[0, 0] += 1.0
        model.ln_final.w.data[0] += 1.0
        model.embed.W_E.data[9] += 1.0  # the next token's row: read afresh
        longer = torch.cat([PROMPT, torch.tensor([[9]])], dim=1)
        cached = utils.sampling.next_logits(model, longer, cache)
        torch.testing.assert_close(cached, model(longer)[:, -1], atol=1e-5, rtol=1e-5)


def test_generation_through_the_cache_refuses_hooks_it_would_skip():
    torch.manual_seed(2)
    model = HookedDemoTransformer(CFG).eval()
    zero = lambda activation, hook: torch.zeros_like(activation)  # noqa: E731
    with model.hooks([("blocks.0.attn.hook_z", zero)]):
        with pytest.raises(ValueError, match="does not run hooks.*use_cache=False"):
            generate(model, PROMPT, 4, temperature=0)
        with pytest.raises(ValueError, match="does not run hooks"):
            beam_search(model, PROMPT, 2, 4)
        ablated = generate(model, PROMPT, 4, temperature=0, use_cache=False)
    plain = generate(model, PROMPT, 4, temperature=0)  # hooks gone: the cache is fine again
    assert plain.shape == ablated.shape
    handle = model.blocks[0].register_forward_hook(lambda *args: None)  # PyTorch's own hooks too
    with pytest.raises(ValueError, match="does not run hooks"):
        generate(model, PROMPT, 4)
    handle.remove()


def test_a_cache_belongs_to_the_model_that_filled_it():
    torch.manual_seed(3)
    first, second = FusedTransformer(CFG).eval(), FusedTransformer(CFG).eval()
    cache = KVCache(CFG, 1)
    with torch.no_grad():
        cached_forward(first, PROMPT, cache)
        with pytest.raises(ValueError, match="keys and values of another model"):
            cached_forward(second, torch.tensor([[5]]), cache)
        cache.reset()
        cached_forward(second, PROMPT, cache)  # after a reset, anyone's


def test_the_cache_checks_the_layout_of_keys_and_values():
    cache = KVCache(CFG, 1)
    k = torch.zeros(1, 3, CFG.n_heads, CFG.d_head)
    with pytest.raises(ValueError, match=r"must be \[batch, new_posn, n_heads, d_head\]"):
        cache.update(0, k.transpose(1, 2), k)  # [batch, n_heads, posn, d_head]: attention's own


def _data():
    stream = torch.arange(4000) % 64
    return pack(stream[:3200], 16), pack(stream[3200:], 16)


def _args(folder, **overrides):
    base = dict(batch_size=8, max_steps=12, lr=3e-3, warmup_steps=2, eval_every=6, eval_batches=1)
    return TrainingArgs(
        **{**base, "checkpoint_every": 6, "checkpoint_dir": str(folder), **overrides}
    )


SMALL = Config(d_model=32, d_vocab=64, n_ctx=16, d_head=8, d_mlp=64, n_heads=4, n_layers=1)


class ReversedOrder(FusedTransformer):
    """The same parameters and names, registered in another order (your own class may)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self._modules = dict(reversed(list(self._modules.items())))


def _whole_run_and_its_first_half(tmp_path):
    """The losses of a 12-step run, and a trainer that ran the first 6 steps of the same run."""
    torch.manual_seed(0)
    whole = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path / "whole"), *_data())
    expected = whole.train().train_loss
    torch.manual_seed(0)
    part = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path / "part"), *_data())
    part.train(6)
    return expected, part


def _assert_each_moment_with_its_own_weight(resumed, part):
    saved = {name: part.optimizer.state[p] for name, p in part.model.named_parameters()}
    for name, parameter in resumed.model.named_parameters():
        for key, value in resumed.optimizer.state[parameter].items():
            assert torch.equal(value, saved[name][key]), (name, key)


def test_resume_maps_the_optimizer_state_by_parameter_name(tmp_path):
    expected, part = _whole_run_and_its_first_half(tmp_path)
    resumed = SafeTrainer.resume(part.last_checkpoint, *_data(), model_class=ReversedOrder)
    assert [n for n, _ in resumed.model.named_parameters()] != [
        n for n, _ in part.model.named_parameters()
    ]
    _assert_each_moment_with_its_own_weight(resumed, part)
    # the same arithmetic but for the order in which the clipping norm adds up the parameters
    assert resumed.train().train_loss == pytest.approx(expected, rel=1e-6, abs=0)


def test_an_older_checkpoint_without_parameter_names_resumes_in_another_order(tmp_path):
    """Checkpoints written before param_names: the saved weights' order says whose moment is."""
    expected, part = _whole_run_and_its_first_half(tmp_path)
    state = read_checkpoint(part.last_checkpoint)
    del state["param_names"]
    torch.save(state, tmp_path / "older.pt")
    resumed = SafeTrainer.resume(tmp_path / "older.pt", *_data(), model_class=ReversedOrder)
    _assert_each_moment_with_its_own_weight(resumed, part)
    assert resumed.train().train_loss == pytest.approx(expected, rel=1e-6, abs=0)


def test_an_optimizer_state_that_does_not_fit_its_weights_is_refused(tmp_path):
    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=2), *_data())
    trainer.train()
    state = read_checkpoint(trainer.last_checkpoint)
    moments = state["optimizer"]["state"]
    first = next(iter(moments))
    moments[first]["exp_avg"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="optimizer state for .* has shape \\(3, 3\\)"):
        SafeTrainer.resume(tmp_path / "edited.pt", *_data())


def test_a_resumed_run_writes_where_the_caller_says_never_where_the_file_says(tmp_path):
    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path / "runs", max_steps=2), *_data())
    trainer.train()
    state = read_checkpoint(trainer.last_checkpoint)
    elsewhere = tmp_path / "elsewhere"
    state["args"]["checkpoint_dir"] = str(elsewhere)  # a file that names another folder
    planted = trainer.run_dir / "planted.pt"
    torch.save(state, planted)
    (elsewhere / "run_x").mkdir(parents=True)
    (elsewhere / "run_x" / "step_000001.pt.1.tmp").write_bytes(b"someone's")
    resumed = SafeTrainer.resume(planted, *_data(), max_steps=4)
    resumed.train()
    assert resumed.run_dir.parent == tmp_path / "runs"  # next to the run it came from
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["run_x", "step_000001.pt.1.tmp"]
    chosen = SafeTrainer.resume(
        planted, *_data(), max_steps=4, checkpoint_dir=str(tmp_path / "mine")
    )
    chosen.train()
    assert chosen.run_dir.parent == tmp_path / "mine"


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=2), *_data())
    trainer.train()
    state = read_checkpoint(trainer.last_checkpoint)
    state["model"]["blocks.0.attn.W_Q"][0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    from utils.checkpoints import load_checkpoint_model

    with pytest.raises(ValueError, match="hold inf or NaN .*blocks.0.attn.W_Q"):
        load_checkpoint_model(tmp_path / "nan.pt")


@pytest.mark.parametrize(
    "max_steps, error", [(-5, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_train_refuses_a_number_of_steps_that_is_not_one(tmp_path, max_steps, error):
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path), *_data())
    with pytest.raises(error, match="max_steps must be an int >= 0"):
        trainer.train(max_steps)
    assert trainer.step == 0


def test_a_checkpoint_folder_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        SafeTrainer(FusedTransformer(SMALL), _args(tmp_path / "file" / "runs"), *_data())


def test_random_bytes_are_not_called_python_objects(tmp_path):
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="torch.load could not read it") as info:
        read_checkpoint(tmp_path / "random.pt")
    assert "Python objects" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=1e-40), "temperature must be a finite number >= 0.0001"),
        (dict(frequency_penalty=1e300), "frequency_penalty must be a finite number >= -100"),
        (dict(seed=2**70), r"seed must be an int >= 0 and <= "),
    ],
)
def test_generate_refuses_numbers_that_would_turn_into_nan(kwargs, match):
    model = FusedTransformer(CFG).eval()
    with pytest.raises(ValueError, match=match):
        generate(model, PROMPT, 3, **kwargs)


def test_beam_search_refuses_more_beams_than_it_can_fill():
    model = FusedTransformer(CFG).eval()
    with pytest.raises(ValueError, match="num_beams must be a positive int, at most 32"):
        beam_search(model, PROMPT, 40, 3)
    with pytest.raises(ValueError, match="length_penalty must be a finite number >= -10 "):
        beam_search(model, PROMPT, 2, 3, length_penalty=-1e308)


def test_from_model_refuses_a_model_with_weights_it_would_leave_behind():
    class WithExtra(DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.probe = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="has extra probe.bias, probe.weight"):
        HookedDemoTransformer.from_model(WithExtra(CFG))


def test_the_cached_paths_module_is_the_one_generate_uses():
    """next_logits goes through cached_forward (no model(tokens, cache=...) left anywhere)."""
    import inspect

    assert "cached_forward(" in inspect.getsource(utils.sampling.next_logits)


@pytest.mark.parametrize(
    "overrides, setting",
    [
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
        (dict(scale_attn_weights=False), "scale_attn_weights=False"),
        (dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn=True"),
        (dict(tie_word_embeddings=False), "tie_word_embeddings=False"),
    ],
)
def test_gpt2_variants_our_model_cannot_reproduce_are_refused(overrides, setting):
    from utils.model import load_gpt2_weights
    from utils.resources import new_gpt2

    gpt2_cfg = Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=2, n_ctx=32, d_vocab=64)
    hf = new_gpt2(gpt2_cfg, **overrides)
    with pytest.raises(ValueError, match=setting):
        load_gpt2_weights(DemoTransformer(gpt2_cfg), hf)


def test_an_untied_lm_head_is_refused_even_when_the_config_says_tied():
    from utils.model import load_gpt2_weights
    from utils.resources import new_gpt2

    gpt2_cfg = Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=2, n_ctx=32, d_vocab=64)
    hf = new_gpt2(gpt2_cfg)
    hf.lm_head.weight = torch.nn.Parameter(hf.lm_head.weight.detach() + 1)  # untied by hand
    with pytest.raises(ValueError, match="lm_head is not tied to its embedding"):
        load_gpt2_weights(DemoTransformer(gpt2_cfg), hf)
    load_gpt2_weights(DemoTransformer(gpt2_cfg), new_gpt2(gpt2_cfg))  # GPT-2 itself loads


def test_validation_metrics_weigh_a_short_last_batch_by_its_rows():
    from utils.training import next_token_accuracy, validation_metrics

    torch.manual_seed(3)
    model = DemoTransformer(CFG)
    rows = torch.randint(0, 64, (5, 32))  # batches of 4 and 1
    loss, accuracy = validation_metrics(model, rows, TrainingArgs(batch_size=4, eval_batches=2))
    with torch.no_grad():
        logits = model(rows)
    assert loss == pytest.approx(next_token_loss(logits, rows).item(), rel=1e-5)
    assert accuracy == pytest.approx(next_token_accuracy(logits, rows), rel=1e-5)


@pytest.mark.parametrize(
    "hook_name",
    [
        "blocks.0.attn.hook_z",
        "blocks.0.attn.hook_pattern",
        "blocks.0.hook_resid_pre",
        "hook_embed",
        "blocks.1.mlp.hook_post",
    ],
)
def test_every_cached_entry_point_refuses_hooks(hook_name):
    """Not only generate: next_logits, cached_forward and forward_with_cache skip hook points."""
    from utils.sampling import forward_with_cache, next_logits

    torch.manual_seed(2)
    model = HookedDemoTransformer(CFG).eval()
    half = lambda activation, hook: activation * 0.5  # noqa: E731
    with model.hooks([(hook_name, half)]):
        for call in (
            lambda: next_logits(model, PROMPT, KVCache(CFG, 1)),
            lambda: cached_forward(model, PROMPT, KVCache(CFG, 1)),
            lambda: forward_with_cache(model, PROMPT, KVCache(CFG, 1)),
        ):
            with pytest.raises(ValueError, match="does not run hooks.*cache=None"):
                call()
        hooked = next_logits(model, PROMPT)  # without a cache the hook runs
    assert not torch.allclose(hooked, next_logits(model, PROMPT))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(exp_avg=m["exp_avg"] * float("nan")), "holds inf or NaN"),
        (lambda m: m.update(step=torch.tensor(float("nan"))), "holds inf or NaN"),
        (lambda m: m.pop("step"), "lacks AdamW's step"),
    ],
)
def test_a_broken_optimizer_state_is_refused_at_resume(tmp_path, edit, match):
    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=2), *_data())
    trainer.train()
    state = read_checkpoint(trainer.last_checkpoint)
    edit(next(iter(state["optimizer"]["state"].values())))
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=match):
        SafeTrainer.resume(tmp_path / "edited.pt", *_data())


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda hf: setattr(hf.config, "scale_attn_weights", True), "scale_attn_weights=False"),
        (lambda hf: [setattr(b.ln_1, "eps", 1e-2) for b in hf.transformer.h], "eps=0.01"),
        (lambda hf: setattr(hf.transformer.h[1].mlp, "act", torch.nn.ReLU()), "another activation"),
    ],
)
def test_gpt2_modules_built_otherwise_than_their_config_says_are_refused(build, match):
    from utils.model import load_gpt2_weights
    from utils.resources import new_gpt2

    gpt2_cfg = Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=2, n_ctx=32, d_vocab=64)
    hf = new_gpt2(gpt2_cfg, scale_attn_weights=False) if "scale" in match else new_gpt2(gpt2_cfg)
    build(hf)
    with pytest.raises(ValueError, match=match):
        load_gpt2_weights(DemoTransformer(gpt2_cfg), hf)


def test_beam_search_refuses_length_penalties_that_overflow_and_too_few_tokens():
    torch.manual_seed(0)
    model = FusedTransformer(CFG).eval()
    for penalty in (-100, 40, 100.0):
        with pytest.raises(ValueError, match="length_penalty must be"):
            beam_search(model, PROMPT, 3, 12, length_penalty=penalty)
    assert len(beam_search(model, PROMPT, 3, 12, length_penalty=-10)) == 3
    small = FusedTransformer(Config(**{**CFG.__dict__, "d_vocab": 40})).eval()
    prompt = torch.arange(30)[None]  # 10 tokens left that it does not hold, for 12 beams
    with pytest.raises(ValueError, match="too few for num_beams=12"):
        beam_search(small, prompt, 12, 1, no_repeat_ngram_size=1)


def test_direct_logit_attribution_refuses_a_scale_below_layernorms_smallest():
    from utils.circuits import direct_logit_attribution

    model = FusedTransformer(CFG)
    vectors = torch.randn(3, CFG.d_model)
    for scale in (torch.tensor(1e-300, dtype=torch.float64), 1e-200, 1e-4):
        with pytest.raises(ValueError, match="at least sqrt\\(layer_norm_eps\\)"):
            direct_logit_attribution(vectors, scale, model, 5)
    assert direct_logit_attribution(vectors, 2.0, model, 5).isfinite().all()


def test_truthy_strings_are_not_taken_for_true(tmp_path):
    from utils.configs import get_config, seed_everything
    from utils.gpu import choose_settings
    from utils.hf_export import save_hf_folder, to_hf_gpt2

    model = FusedTransformer(CFG)
    with torch.no_grad():
        model.unembed.b_U.fill_(0.5)
    (tmp_path / "config.json").write_text("yours")
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        save_hf_folder(model, tmp_path, overwrite="no")
    assert (tmp_path / "config.json").read_text() == "yours"  # nothing of yours replaced
    with pytest.raises(TypeError, match="drop_unembed_bias must be True or False"):
        to_hf_gpt2(model, drop_unembed_bias="False")
    with pytest.raises(TypeError, match="compile must be True or False"):
        choose_settings(None, CFG, 16, 10, 1.0, compile="no")
    with pytest.raises(ValueError, match="unknown config 0"):
        get_config(0)
    for seed in ("1", 1.5, -1, 2**70, True):
        with pytest.raises((TypeError, ValueError), match="seed must be an int"):
            seed_everything(seed)
    import numpy as np

    seed_everything(np.int64(3))  # numpy's ints are ints


@pytest.mark.parametrize("given", [None, torch.tensor([1.0]), "apply_top_k"])
@pytest.mark.parametrize("check_name", ["check_top_k", "check_lr_at", "check_train_merges"])
def test_a_check_given_something_else_than_a_function_says_so_in_one_line(given, check_name):
    from utils import checks
    from utils.checks.core import CheckUsageError

    with pytest.raises(CheckUsageError, match="but was given .*: pass your function") as err:
        getattr(checks, check_name)(given)
    assert err.value._render_traceback_() == [wrap_lines(f"TypeError: {err.value}")]  # no frames


@pytest.mark.parametrize(
    "given, named",
    [(lambda: None, r"<lambda>\(\)"), (DemoTransformer, r"DemoTransformer\(cfg: 'Config'\)")],
    ids=["no parameters", "a class"],
)
@pytest.mark.parametrize(
    "check_name", ["check_top_k", "check_lr_at", "check_train_merges", "check_beam_search"]
)
def test_a_check_given_a_function_of_other_parameters_says_so_in_one_line(given, named, check_name):
    from utils import checks
    from utils.checks.core import CheckUsageError

    with pytest.raises(
        CheckUsageError, match=f"but was given {named}, a (function|class) of other"
    ):
        getattr(checks, check_name)(given)


@pytest.mark.parametrize("given", [None, torch.tensor([1.0]), lambda vocab, merges: None])
def test_check_bpe_tokenizer_given_no_class_says_so(given):
    from utils import checks

    with pytest.raises((TypeError, AssertionError), match="pass|not a tokenizer"):
        checks.check_bpe_tokenizer(given)


def test_the_distributed_entry_points_outside_torchrun_say_so(monkeypatch):
    from utils.distributed import DistributedTrainer, start

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="run this under `torchrun"):
        start()
    for bad in ("5", -1.0):
        with pytest.raises((TypeError, ValueError), match="timeout_s must be"):
            start(timeout_s=bad)
    with pytest.raises(RuntimeError, match="DistributedTrainer runs in torchrun's processes"):
        DistributedTrainer(FusedTransformer(SMALL), _args("unused"), *_data())


def test_scores_of_no_sequences_are_refused_not_nan():
    from utils.circuits import induction_score, previous_token_score

    with pytest.raises(ValueError, match="holds no sequences or no heads"):
        induction_score(torch.rand(0, 2, 11, 11), 5)
    with pytest.raises(ValueError, match="holds no sequences or no heads"):
        previous_token_score(torch.rand(0, 2, 4, 4))
    assert previous_token_score(torch.rand(1, 2, 4, 4).softmax(-1)).isfinite().all()


@pytest.mark.parametrize(
    "call",
    [
        "gpt2_config_for",
        "new_gpt2",
        "model_flops_per_token",
        "training_memory",
    ],
)
def test_the_config_class_itself_is_not_taken_for_gpt2_smalls_config(call):
    """Config (the class, not Config()) has GPT-2 small's defaults as attributes: refused."""
    import utils.gpu
    import utils.resources

    functions = {
        "gpt2_config_for": lambda: utils.resources.gpt2_config_for(Config),
        "new_gpt2": lambda: utils.resources.new_gpt2(Config),
        "model_flops_per_token": lambda: utils.gpu.model_flops_per_token(Config),
        "training_memory": lambda: utils.gpu.training_memory(Config, 8, None),
    }
    with pytest.raises(TypeError, match=r"got the class Config itself \(call it: Config\(...\)\)"):
        functions[call]()


def test_rows_given_as_floats_or_on_the_meta_device_are_refused():
    from utils.scaling import rows_for_rank

    with pytest.raises(TypeError, match="integer row ids"):
        rows_for_rank(torch.arange(8.0), 0, 2)
    cache = KVCache(CFG, 1)
    with torch.no_grad():
        cached_forward(FusedTransformer(CFG).eval(), PROMPT, cache)
    with pytest.raises(ValueError, match="on the meta device"):
        cache.reorder(torch.tensor([0], device="meta"))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.__setitem__("step", 2**70), r"step an int from 0 to 2\*\*62"),
        (
            lambda s: s["model"].__setitem__("embed.W_E", torch.zeros(64, 32, dtype=torch.long)),
            r"weights \['embed.W_E'\] are not floating-point",
        ),
    ],
    ids=["step 2**70", "int64 weights"],
)
def test_a_checkpoint_with_an_impossible_step_or_integer_weights_is_refused(tmp_path, edit, match):
    from utils.checkpoints import load_checkpoint_model

    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=2), *_data())
    trainer.train()
    state = read_checkpoint(trainer.last_checkpoint)
    edit(state)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=match):
        SafeTrainer.resume(tmp_path / "edited.pt", *_data())
    with pytest.raises(ValueError, match=match):
        load_checkpoint_model(tmp_path / "edited.pt")


def _numpy_vocab():
    import numpy as np

    vocab = {tok: np.int64(i) for i, tok in enumerate(bytes_to_unicode().values())}
    return {**vocab, "<|endoftext|>": np.int64(256)}


def test_numpy_ids_in_a_vocab_become_python_ints_that_a_checkpoint_records():
    # numpy ids used to reach the checkpoint's record, which then failed a weights-only load
    tokenizer = BPETokenizer(_numpy_vocab(), [])
    assert all(type(i) is int for i in tokenizer.vocab.values())
    assert tokenizer.decode(tokenizer.encode("hi")) == "hi"


def _bpe_run_tokenizer():
    return run_tokenizer("bpe", bpe=BPETokenizer.train("hello hello world " * 5, 270))


def _no_merges(text, n):
    return list(bytes_to_unicode().values()), []


@pytest.mark.parametrize(
    "call, error, match",
    [  # None: another split on every call
        (
            lambda d: split_documents(list("abcdef"), seed=None),
            TypeError,
            "seed must be",
        ),
        (
            lambda d: split_documents([1, 2, 3]),
            TypeError,
            "docs must hold strs",
        ),
        # was decoded as 104, 'h'
        (
            lambda d: _bpe_run_tokenizer().decode([104.7]),
            TypeError,
            r"token ids must be ints, got ids\[0\] = 104.7",
        ),
        (
            lambda d: stale_exercises(d / "a file"),
            NotADirectoryError,
            "is a file",
        ),
        # with no merges asked for, a trainer that learns none passes
        (
            lambda d: check_train_merges(_no_merges, n_merges=0),
            TypeError,
            "n_merges must be an int of at least 10",
        ),
    ],
    ids=["seed None", "int docs", "float ids", "a file", "no merges"],
)
def test_inputs_that_passed_for_others(tmp_path, call, error, match):
    (tmp_path / "a file").write_text("mine")
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_decode_names_the_ids_of_a_vocabulary_with_a_gap():
    vocab = {tok: i for i, tok in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = 1000
    with pytest.raises(ValueError, match="257 ids run from 0 to 1000, with gaps"):
        BPETokenizer(vocab, []).decode([500])


def test_partial_checkpoints_with_impossible_pids_are_removed_and_folders_kept(tmp_path):
    from utils.checkpoints import remove_partial_checkpoints

    huge = tmp_path / "step_000010.pt.99999999999999999999.tmp"  # a pid beyond any C long
    huge.write_bytes(b"partial")
    folder = tmp_path / "step_000020.pt.999999.tmp"  # so named, but a folder: not ours to remove
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert remove_partial_checkpoints(tmp_path) == [huge]
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("trainer_class", [Trainer, SafeTrainer])
def test_a_sample_function_that_returns_no_text_is_refused_before_its_history_is_saved(
    tmp_path, trainer_class
):
    torch.manual_seed(0)
    args = _args(tmp_path, max_steps=4, sample_every=2, checkpoint_every=2)
    trainer = trainer_class(FusedTransformer(SMALL), args, *_data(), sample=lambda model: 5)
    with pytest.raises(TypeError, match="sample.model. must return its text, a str, got int"):
        trainer.train()
    assert trainer.history.samples == []
    for checkpoint in tmp_path.glob("run_*/step_*.pt"):  # any saved before still loads
        read_checkpoint(checkpoint)


@pytest.mark.parametrize(
    "error, free_mb, full",
    [
        (RuntimeError("[enforce fail at inline_container.cc] file write failed"), 300, True),
        (RuntimeError("[enforce fail at inline_container.cc] file write failed"), 50_000, False),
        (AttributeError("Can't pickle local object 'f.<locals>.g'"), 40, False),
    ],
    ids=["write failed, less free than the tensors need", "write failed, room", "pickling error"],
)
def test_a_full_disk_is_told_from_other_failures_by_what_the_checkpoint_needs(
    tmp_path, monkeypatch, error, free_mb, full
):
    """torch's writer gives no errno: a full disk is read from the free space left, against the
    bytes of the checkpoint's tensors (here 400 MB); a pickling error is never the disk."""
    import shutil

    import utils.checkpoints

    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"\0" * 1000)  # a partial file, as a full disk leaves
        raise error

    usage = shutil.disk_usage(tmp_path)
    fake = type(usage)(usage.total, usage.total - free_mb * 2**20, free_mb * 2**20)
    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: fake)
    state = {"model": {"W": torch.empty(100 * 2**20)}}  # 400 MB of float32, never written
    with pytest.raises(Exception) as caught:
        utils.checkpoints.write_checkpoint(state, tmp_path / "step_000001.pt")
    assert ("no space left" in str(caught.value)) == full, caught.value
    assert caught.value is error or full
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_batch_rows_and_documents_refuse_what_torch_would_overflow_or_misread():
    from utils.training import batch_rows, tokenize_documents

    with pytest.raises(ValueError, match=r"step must be an int from 0 to 2\*\*62"):
        batch_rows(2**70, 10, 2, 0)
    with pytest.raises(ValueError, match=r"n_rows must be an int from 1 to 2\*\*62"):
        batch_rows(0, 2**70, 2, 0)
    with pytest.raises(TypeError, match="docs must hold strs"):
        tokenize_documents([1, 2], lambda text: [1], 0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: KVCache(DemoTransformer(CFG), 1), TypeError, "got a model, DemoTransformer"),
        (lambda: KVCache(Config, 1), TypeError, r"got the class Config \(call it"),
        (
            lambda: utils.sampling.ban_repeated_ngrams(None, torch.zeros(1, 64), 2),
            TypeError,
            "tokens must be int token ids",
        ),
        (
            lambda: utils.sampling.ban_repeated_ngrams(
                torch.zeros(2, 4).long(), torch.zeros(1, 64), 2
            ),
            ValueError,
            "must have the same rows",
        ),
        (
            lambda: utils.sampling.ban_repeated_ngrams(
                torch.full((1, 4), 70), torch.zeros(1, 64), 2
            ),
            ValueError,
            r"ids in \[0, 64\)",
        ),
    ],
    ids=["KVCache(model)", "KVCache(Config)", "tokens None", "rows differ", "ids past d_vocab"],
)
def test_cache_and_ngram_inputs_of_another_kind_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------ sixth round: views, totals, p = 1, bad sizes


def test_editing_the_rows_of_a_batch_leaves_later_batches_as_they_were():
    from utils.training import batch_rows

    before = batch_rows(0, 20, 4, 0).clone()
    rows = batch_rows(0, 20, 4, 0)
    rows[0] = rows[1]  # the caller's own tensor, to do with as it likes
    assert torch.equal(batch_rows(0, 20, 4, 0), before)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("model_class", [DemoTransformer, FusedTransformer, HookedDemoTransformer])
def test_an_in_place_hook_on_the_position_embedding_edits_the_activation_not_the_weights(
    model_class, batch
):
    torch.manual_seed(0)
    model = model_class(CFG)
    weights = model.pos_embed.W_pos.detach().clone()
    tokens = torch.randint(0, 64, (batch, 8))
    handle = model.pos_embed.register_forward_hook(lambda module, i, out: out.zero_())
    with torch.no_grad():
        ablated = model(tokens)
    handle.remove()
    assert torch.equal(model.pos_embed.W_pos, weights)
    with torch.no_grad():
        model.pos_embed.W_pos.zero_()  # the same ablation, made on the weights
        assert torch.allclose(ablated, model(tokens), atol=1e-6)


def _uniform_pattern(pattern, hook):
    causal = torch.tril(torch.ones_like(pattern))
    return causal / causal.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "name, hook",
    [
        ("blocks.0.attn.hook_pattern", _uniform_pattern),
        ("blocks.1.attn.hook_q", lambda q, hook: q * 0),
        ("blocks.0.attn.hook_k", lambda k, hook: k.flip(1)),
    ],
)
def test_attention_patterns_of_a_hooked_model_are_the_ones_its_hooks_left(name, hook):
    from utils.model import get_attention_patterns

    torch.manual_seed(0)
    model = HookedDemoTransformer(CFG)
    tokens = torch.randint(0, 64, (2, 10))
    with model.hooks([(name, hook)]):
        patterns = get_attention_patterns(model, tokens)
        _, cache = model.run_with_cache(tokens)
    for layer, pattern in enumerate(patterns):
        assert torch.allclose(pattern, cache["pattern", layer], atol=1e-6), layer
    plain = get_attention_patterns(model, tokens)  # hooks removed: the model's own patterns
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, patterns))


def test_top_p_of_one_keeps_every_token_of_a_large_vocabulary():
    from utils.sampling import apply_top_p

    torch.manual_seed(0)
    logits = torch.randn(4, 50257) * 3  # float32's running total reaches 1.0 before the row ends
    assert torch.equal(apply_top_p(logits, 1.0), logits)


def test_tokens_trained_on_add_up_when_a_resume_changes_the_batch_size(tmp_path):
    torch.manual_seed(0)
    trainer = SafeTrainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=3), *_data())
    trainer.train()
    resumed = SafeTrainer.resume(trainer.last_checkpoint, *_data(), max_steps=6, batch_size=4)
    history = resumed.train()
    per_step = [8 * 16] * 3 + [4 * 16] * 3  # batch 8 for three steps, then 4, rows of 16
    assert history.train_tokens == [sum(per_step[: i + 1]) for i in range(6)]
    assert history.val_tokens[-1] == history.train_tokens[-1]


def test_a_direct_save_never_replaces_an_earlier_runs_checkpoint(tmp_path):
    torch.manual_seed(0)
    earlier = Trainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=3), *_data())
    earlier.train()
    written = (tmp_path / "step_000003.pt").read_bytes()
    later = Trainer(FusedTransformer(SMALL), _args(tmp_path, max_steps=3), *_data())
    later.step = 3
    with pytest.raises(FileExistsError, match="step_000003.pt"):
        later.save_checkpoint()
    assert (tmp_path / "step_000003.pt").read_bytes() == written
    earlier.save_checkpoint()  # a run may save its own step again
    assert torch.load(tmp_path / "step_000003.pt", weights_only=True)["step"] == 3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: __import__("utils.training").training.run_length(5, 10, 100, 10, 2), "batch"),
        (lambda: __import__("utils.training").training.run_length(5, 10, 100, 10), "batch"),
        (
            lambda: __import__("utils.circuits").circuits.repeating_sequences(4, 10, 50, 2, 30, 0),
            "max_period",
        ),
        (lambda: __import__("utils.bpe").bpe.merge_word([1, 2], (1, 2), -1), "new_id"),
        (lambda: __import__("utils.bpe").bpe.merge_word([1, 2], (-1, 2), 300), "pair"),
    ],
    ids=["epochs", "no epochs", "period", "new id", "pair"],
)
def test_sizes_that_give_meaningless_results_are_refused(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
