"""Bad input at an entry point gets one clear error, raised by our code (not from inside PyTorch),
that names the argument and what is allowed; inputs Python's users write as numpy scalars work.
Issue 19's list of raw or misleading errors, kept as one parametrised table."""

import dataclasses
import os
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch import nn

import utils.exercises
from utils.bpe import BPETokenizer, bytes_to_unicode, merge_word, pretokenize
from utils.checkpoints import load_checkpoint_model
from utils.circuits import ablate_heads, direct_logit_attribution
from utils.fused import FusedTransformer
from utils.hooks import HookedDemoTransformer
from utils.model import Config, DemoTransformer, config_from_hf, next_token_loss
from utils.resources import download_timeout, load_corpus
from utils.runs import load_trained_model
from utils.safe_training import SafeTrainer
from utils.sampling import KVCache, cached_forward, generate
from utils.training import (
    Trainer,
    TrainingArgs,
    lr_at,
    make_optimizer,
    optimizer_step,
    validation_metrics,
)

UTILS = Path(__file__).resolve().parents[1] / "utils"
CFG = Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=2, n_ctx=32, d_vocab=64)
SMALL = dict(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=16)
PROMPT = torch.tensor([[1, 2, 3]])
BYTES = {char: i for i, char in enumerate(bytes_to_unicode().values())}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DemoTransformer(CFG).eval()


@pytest.fixture(scope="module")
def hooked():
    torch.manual_seed(0)
    return HookedDemoTransformer(CFG).eval()


@pytest.fixture(scope="module")
def sequences():
    return torch.randint(0, 64, (16, 32), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sequences):
    trainer = SafeTrainer(DemoTransformer(CFG), _args(tmp_path_factory.mktemp("run")), *_data())
    trainer.train()
    return trainer.last_checkpoint


def _data():
    rows = torch.randint(0, 64, (16, 32), generator=torch.Generator().manual_seed(0))
    return rows, rows[:4]


def _args(folder, **changes):
    settings = dict(batch_size=4, max_steps=2, warmup_steps=1, eval_every=2, eval_batches=1)
    settings.update(sample_every=100, checkpoint_every=2, checkpoint_dir=str(folder))
    return TrainingArgs(**{**settings, **changes})


def _with_step_as_text(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=False)
    state["step"] = "2"
    torch.save(state, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def _loss(model, grad=True):
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.set_grad_enabled(grad):
        return next_token_loss(model(tokens), tokens)


def _one_cache_two_models():
    cache = KVCache(CFG, 1)
    cached_forward(DemoTransformer(CFG).double().eval(), PROMPT, cache)
    cached_forward(DemoTransformer(CFG).eval(), torch.tensor([[3]]), cache)


def _cache_filled(model):
    cache = KVCache(CFG, 1)
    cached_forward(model, PROMPT, cache)
    return cache


def _hook_that_resets(hooked):
    def reset(activation, hook):
        hooked.reset_hooks()

    hooked.run_with_hooks(PROMPT, [("blocks.0.hook_resid_pre", reset)])


# (what the learner did, the error's type, words the message must hold)
CASES = {
    "DemoTransformer(None)": (lambda m, h, c, t: DemoTransformer(None), TypeError, "cfg must be"),
    "DemoTransformer(a dict)": (
        lambda m, h, c, t: DemoTransformer({"d_model": 32}),
        TypeError,
        r"Config\(\*\*cfg\)",
    ),
    "DemoTransformer(Config)": (
        lambda m, h, c, t: DemoTransformer(Config),
        TypeError,
        r"the class Config \(call it",
    ),
    "FusedTransformer(GPT2Config)": (
        lambda m, h, c, t: FusedTransformer(transformers.GPT2Config()),
        TypeError,
        "config_from_hf",
    ),
    "KVCache(Config)": (
        lambda m, h, c, t: KVCache(Config, 1),
        TypeError,
        r"cfg must be a utils.model.Config, got the class Config \(call it",
    ),
    "KVCache(None)": (
        lambda m, h, c, t: KVCache(None, 1),
        TypeError,
        "cfg must be a utils.model.Config, got None",
    ),
    "d_vocab of 10**9": (
        lambda m, h, c, t: Config(d_vocab=10**9, d_model=64, n_heads=2, d_head=32),
        ValueError,
        "d_vocab",
    ),
    "d_mlp of 10**9": (lambda m, h, c, t: Config(d_mlp=10**9), ValueError, "d_mlp = 1,000,000,000"),
    "n_ctx of 10**9": (lambda m, h, c, t: Config(n_ctx=10**9), ValueError, "n_ctx = 1,000,000,000"),
    "tokens on the meta device": (
        lambda m, h, c, t: m(torch.tensor([[1, 2]], device="meta")),
        ValueError,
        "meta device",
    ),
    "a model on the meta device": (
        lambda m, h, c, t: DemoTransformer(CFG).to("meta")(PROMPT),
        ValueError,
        "weights are on the meta device",
    ),
    "a hooked model on the meta device": (
        lambda m, h, c, t: HookedDemoTransformer(CFG).to("meta")(PROMPT),
        ValueError,
        "weights are on the meta device",
    ),
    "generate on the meta device": (
        lambda m, h, c, t: generate(DemoTransformer(CFG).to("meta"), PROMPT, 2),
        ValueError,
        "meta device",
    ),
    "attribution of meta vectors": (
        lambda m, h, c, t: direct_logit_attribution(torch.zeros(3, 32, device="meta"), 1.0, m, 1),
        ValueError,
        "meta device",
    ),
    "attribution with scale 0": (
        lambda m, h, c, t: direct_logit_attribution(torch.zeros(3, 32), 0.0, m, 1),
        ValueError,
        "positive, finite",
    ),
    "attribution with scale NaN": (
        lambda m, h, c, t: direct_logit_attribution(torch.zeros(3, 32), torch.tensor(np.nan), m, 1),
        ValueError,
        "positive, finite",
    ),
    "attribution with a negative scale": (
        lambda m, h, c, t: direct_logit_attribution(torch.zeros(3, 32), -1.0, m, 1),
        ValueError,
        "positive, finite",
    ),
    "np.bool_ that is not a bool field": (
        lambda m, h, c, t: Config(**{**SMALL, "n_layers": np.bool_(True)}),
        TypeError,
        "n_layers must be a positive int",
    ),
    "load_checkpoint_model(device='gpu')": (
        lambda m, h, c, t: load_checkpoint_model(c, device="gpu"),
        ValueError,
        "'cuda'",
    ),
    "load_checkpoint_model(device=123)": (
        lambda m, h, c, t: load_checkpoint_model(c, device=123),
        ValueError,
        "device must be",
    ),
    "load_checkpoint_model(model_class=str)": (
        lambda m, h, c, t: load_checkpoint_model(c, model_class=str),
        TypeError,
        "model_class must be",
    ),
    "load_checkpoint_model(model_class=nn.Linear)": (
        lambda m, h, c, t: load_checkpoint_model(c, model_class=nn.Linear),
        TypeError,
        "model_class must take a Config",
    ),
    "Trainer(None, ...)": (
        lambda m, h, c, t: Trainer(None, _args(t), *_data()),
        TypeError,
        "model must be a DemoTransformer",
    ),
    "Trainer given int16 sequences": (
        lambda m, h, c, t: Trainer(DemoTransformer(CFG), _args(t), _data()[0].short(), _data()[1]),
        TypeError,
        "train_sequences must be token ids",
    ),
    "SafeTrainer given a 1-D stream": (
        lambda m, h, c, t: SafeTrainer(
            DemoTransformer(CFG), _args(t), _data()[0].flatten(), _data()[1]
        ),
        ValueError,
        r"pack\(stream, 32\)",
    ),
    "TrainingArgs(seed=2**70)": (lambda m, h, c, t: _args(t, seed=2**70), ValueError, "seed"),
    "TrainingArgs(max_steps=10, warmup_steps=100)": (
        lambda m, h, c, t: _args(t, max_steps=10, warmup_steps=100),
        ValueError,
        "warmup_steps is 100, more than max_steps = 10",
    ),
    "generate(seed=2**70)": (
        lambda m, h, c, t: generate(m, PROMPT, 2, seed=2**70),
        ValueError,
        "seed must be",
    ),
    "generate(temperature=1e-40)": (
        lambda m, h, c, t: generate(m, PROMPT, 2, temperature=1e-40),
        ValueError,
        "temperature must be",
    ),
    "train(max_steps='2')": (
        lambda m, h, c, t: SafeTrainer(DemoTransformer(CFG), _args(t), *_data()).train("2"),
        TypeError,
        "max_steps must be",
    ),
    "SafeTrainer.resume(None)": (
        lambda m, h, c, t: SafeTrainer.resume(None, *_data()),
        TypeError,
        "must be a file path",
    ),
    "SafeTrainer.resume(a bytes path)": (
        lambda m, h, c, t: SafeTrainer.resume(bytes(c), *_data()),
        TypeError,
        "must be a file path",
    ),
    "load_corpus(max_chars=0)": (
        lambda m, h, c, t: load_corpus(max_chars=0),
        ValueError,
        "max_chars must be",
    ),
    "load_corpus(max_chars=-5)": (
        lambda m, h, c, t: load_corpus(max_chars=-5),
        ValueError,
        "max_chars must be",
    ),
    "load_corpus(max_chars=1.5)": (
        lambda m, h, c, t: load_corpus(max_chars=1.5),
        TypeError,
        "max_chars must be",
    ),
    "load_corpus(max_chars='1000')": (
        lambda m, h, c, t: load_corpus(max_chars="1000"),
        TypeError,
        "max_chars must be",
    ),
    "load_corpus(max_chars=10)": (
        lambda m, h, c, t: load_corpus(max_chars=10, source="stdlib"),
        ValueError,
        "max_chars=10 keeps 1",
    ),
    "load_trained_model(a dict, ...)": (
        lambda m, h, c, t: load_trained_model({"name": "ci"}, t),
        TypeError,
        "run_cfg must be",
    ),
    "load_trained_model(ci, checkpoint_dir=None)": (
        lambda m, h, c, t: load_trained_model("ci", None),
        TypeError,
        "checkpoint_dir must be",
    ),
    "cache.reorder out of range": (
        lambda m, h, c, t: _cache_filled(m).reorder(torch.tensor([5])),
        ValueError,
        r"rows must be .* in \[0, 1\), got \[5\]",
    ),
    "cache.reorder with float rows": (
        lambda m, h, c, t: _cache_filled(m).reorder(torch.tensor([0.0])),
        TypeError,
        "rows must be",
    ),
    "one cache, a float64 model then a float32 one": (
        lambda m, h, c, t: _one_cache_two_models(),
        ValueError,
        "another model",
    ),
    "a hook that calls reset_hooks()": (
        lambda m, h, c, t: _hook_that_resets(h),
        RuntimeError,
        r"reset_hooks\(\) was called inside a hook",
    ),
    "a checkpoint whose step is a string": (
        lambda m, h, c, t: load_checkpoint_model(_with_step_as_text(c, t)),
        ValueError,
        "step an int",
    ),
    "a lone surrogate to BPETokenizer.train": (
        lambda m, h, c, t: BPETokenizer.train("abc \ud800 def", 260),
        ValueError,
        "lone surrogate",
    ),
    "special_tokens=() then .eot_id": (
        lambda m, h, c, t: BPETokenizer(BYTES, [], special_tokens=()).eot_id,
        ValueError,
        r"no <\|endoftext\|> token",
    ),
    "merges=5": (
        lambda m, h, c, t: BPETokenizer(BYTES, 5, special_tokens=()),
        TypeError,
        "merges",
    ),
    "heads with a float": (
        lambda m, h, c, t: ablate_heads(h, PROMPT, [(0, 1.0)]),
        ValueError,
        "heads must be a list of",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gets_one_clear_error_from_our_code(
    case, model, hooked, checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    action, error, words = CASES[case]
    with pytest.raises(error, match=words) as raised:
        action(model, hooked, checkpoint, tmp_path)
    innermost = traceback.extract_tb(raised.value.__traceback__)[-1].filename
    assert Path(innermost).resolve().is_relative_to(UTILS), f"raised in {innermost}"
    assert "\n" not in str(raised.value)  # one line


def test_backups_refuse_a_file_where_their_folder_goes(tmp_path, monkeypatch):
    (tmp_path / "backup").write_text("not a folder")
    edited = tmp_path / "01_tokenisation.ipynb"
    edited.write_text('{"cells": []}')
    with pytest.raises(NotADirectoryError, match="backup is a file"):
        utils.exercises.write_exercises(tmp_path)
    assert edited.read_text() == '{"cells": []}'  # nothing the learner had is lost


# numpy scalars are numbers too: what Python's ints, floats and bools do, they do
def test_numpy_scalars_work_where_python_numbers_do(model, hooked, tmp_path):
    assert DemoTransformer(Config(**{**SMALL, "n_heads": np.int64(2)})).cfg.n_heads == 2
    assert Config(**SMALL, attn_only=np.bool_(True)).attn_only is True
    python = generate(model, PROMPT, 3, temperature=0.5, seed=7)
    numpy = generate(model, PROMPT, np.int64(3), temperature=np.float32(0.5), seed=np.int64(7))
    assert torch.equal(python, numpy)
    heads = [(np.int64(0), np.int64(1))]
    assert torch.equal(ablate_heads(hooked, PROMPT, heads), ablate_heads(hooked, PROMPT, [(0, 1)]))
    vectors = torch.randn(3, 32)
    assert torch.equal(
        direct_logit_attribution(vectors, np.float32(2.0), model, 1),
        direct_logit_attribution(vectors, 2.0, model, 1),
    )
    assert download_timeout(np.float32(1.5)) == 1.5
    assert _args(tmp_path, seed=np.int64(3)).seed == 3


def test_hooks_may_edit_q_k_and_v_in_place_with_gradients_on(hooked):
    def double_in_place(activation, hook):
        activation.mul_(2)

    def doubled(activation, hook):
        return activation * 2

    names = ["blocks.0.attn.hook_q", "blocks.1.attn.hook_v"]
    in_place = hooked.run_with_hooks(PROMPT, [(n, double_in_place) for n in names])
    returned = hooked.run_with_hooks(PROMPT, [(n, doubled) for n in names])
    assert in_place.requires_grad and torch.allclose(in_place, returned)
    in_place.sum().backward()  # the gradient flows through the edited view
    assert hooked.blocks[0].attn.W_Q.grad is not None
    hooked.zero_grad(set_to_none=True)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root can write anywhere")
def test_a_read_only_checkpoint_folder_is_refused_before_training(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot be written"):
            SafeTrainer(DemoTransformer(CFG), _args(folder / "runs"), *_data())
    finally:
        folder.chmod(0o700)


# found by the adversarial rerun of issue 19: each gave a wrong result, or a raw error
MORE_CASES = {
    "optimizer_step(grad_clip=-1)": (
        lambda m: optimizer_step(m, make_optimizer(m, TrainingArgs()), _loss(m), -1.0),
        ValueError,
        "grad_clip must be",
    ),
    "lr_at(-5, args)": (
        lambda m: __import__("utils.training").training.lr_at(-5, TrainingArgs()),
        ValueError,
        "step must be",
    ),
    "next_token_accuracy with one row of tokens for every row of logits": (
        lambda m: __import__("utils.training").training.next_token_accuracy(
            torch.zeros(2, 3, 64), PROMPT
        ),
        ValueError,
        "tokens must be the integer token ids",
    ),
    "next_token_accuracy of one position": (
        lambda m: __import__("utils.training").training.next_token_accuracy(
            torch.zeros(1, 1, 64), PROMPT[:, :1]
        ),
        ValueError,
        "one position",
    ),
    "train_merges(text, -1)": (
        lambda m: __import__("utils.bpe").bpe.train_merges("some text", -1),
        ValueError,
        "n_merges must be",
    ),
    "pack of a float stream": (
        lambda m: __import__("utils.training").training.pack(torch.randn(64), 32),
        TypeError,
        "token ids",
    ),
    "pack of negative ids": (
        lambda m: __import__("utils.training").training.pack(torch.full((64,), -5), 32),
        ValueError,
        ">= 0",
    ),
    "a vocab with negative ids": (
        lambda m: BPETokenizer({c: -i - 1 for c, i in BYTES.items()}, [], special_tokens=()),
        ValueError,
        ">= 0",
    ),
    "latest_checkpoint(None)": (
        lambda m: __import__("utils.checkpoints").checkpoints.latest_checkpoint(None),
        TypeError,
        "checkpoint_dir must be a folder",
    ),
    "KVCache.update(5, ...)": (
        lambda m: KVCache(CFG, 1).update(5, torch.zeros(1, 1, 2, 16), torch.zeros(1, 1, 2, 16)),
        ValueError,
        r"layer must be an int in \[0, 2\)",
    ),
    "KVCache.update with lists": (
        lambda m: KVCache(CFG, 1).update(0, [[1]], [[1]]),
        TypeError,
        "must be tensors",
    ),
    "cached_forward with float tokens": (
        lambda m: cached_forward(m, PROMPT.float(), KVCache(CFG, 1)),
        TypeError,
        "token ids of dtype",
    ),
    "cached_forward without a cache": (
        lambda m: cached_forward(m, PROMPT, None),
        TypeError,
        "cache must be a KVCache",
    ),
    "beam search that must repeat a token with no_repeat_ngram_size=1": (
        lambda m: __import__("utils.sampling").sampling.beam_search(
            m, PROMPT, 2, 70, no_repeat_ngram_size=1
        ),
        ValueError,
        "at most 61 tokens",
    ),
    "per_position_loss of bool tokens": (
        lambda m: __import__("utils.circuits").circuits.per_position_loss(
            torch.zeros(1, 3, 64), PROMPT > 1
        ),
        ValueError,
        "integer token ids",
    ),
    "one row's scale for every row": (
        lambda m: direct_logit_attribution(torch.randn(2, 3, 32), torch.ones(3, 1), m, 1),
        ValueError,
        "scale must be",
    ),
    "load_tokenizer(local_only='yes')": (
        lambda m: __import__("utils.resources").resources.load_tokenizer(local_only="yes"),
        TypeError,
        "local_only must be True or False",
    ),
}


def _raises_clearly(action, error, words, model):
    """`action(model)` raises `error` matching `words`, from our code (utils/), not PyTorch's."""
    with pytest.raises(error, match=words) as raised:
        action(model)
    innermost = traceback.extract_tb(raised.value.__traceback__)[-1].filename
    assert Path(innermost).resolve().is_relative_to(UTILS), f"raised in {innermost}"
    return raised


@pytest.mark.parametrize("case", MORE_CASES, ids=list(MORE_CASES))
def test_more_bad_input_gets_one_clear_error(case, model):
    _raises_clearly(*MORE_CASES[case], model)


def test_a_cache_refuses_keys_of_another_dtype_than_it_holds():
    model = DemoTransformer(CFG).eval()
    cache = KVCache(CFG, 1)
    cached_forward(model, PROMPT, cache)
    k = torch.zeros(1, 1, CFG.n_heads, CFG.d_head, dtype=torch.float64)
    with pytest.raises(ValueError, match="holds torch.float32 keys"):
        cache.update(0, k, k)


def test_resume_applies_the_optimizer_settings_it_is_given(checkpoint):
    resumed = SafeTrainer.resume(
        checkpoint, *_data(), weight_decay=0.0, betas=(0.5, 0.6), fused_adamw=False
    )
    groups = resumed.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0]
    assert all(tuple(g["betas"]) == (0.5, 0.6) and not g.get("fused") for g in groups)


def test_what_run_with_cache_records_is_what_each_point_saw(hooked):
    def zero(activation, hook):
        activation.mul_(0)

    _, clean = hooked.run_with_cache(PROMPT, ["blocks.0.hook_resid_post"])
    with hooked.hooks([("blocks.1.hook_resid_pre", zero)]):
        _, cache = hooked.run_with_cache(PROMPT, ["blocks.0.hook_resid_post"])
    assert torch.equal(cache["blocks.0.hook_resid_post"], clean["blocks.0.hook_resid_post"])


def test_from_model_keeps_frozen_parameters_frozen(model):
    frozen = DemoTransformer(CFG)
    frozen.embed.W_E.requires_grad_(False)
    assert not HookedDemoTransformer.from_model(frozen).embed.W_E.requires_grad


def test_validation_metrics_give_the_model_back_in_its_mode(model):
    from utils.training import validation_metrics

    model.eval()
    validation_metrics(model, _data()[1], TrainingArgs(batch_size=2))
    assert not model.training


def test_the_latest_checkpoint_of_a_file_is_refused(checkpoint):
    from utils.checkpoints import latest_checkpoint

    with pytest.raises(NotADirectoryError, match="load_checkpoint_model"):
        latest_checkpoint(checkpoint)


def test_a_hugging_face_lm_head_with_a_bias_is_refused():
    from utils.model import config_from_hf, load_gpt2_weights

    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=16, vocab_size=64)
    hf = transformers.GPT2LMHeadModel(config)
    hf.lm_head.bias = nn.Parameter(torch.ones(64))
    with pytest.raises(ValueError, match="lm_head has a bias"):
        load_gpt2_weights(DemoTransformer(config_from_hf(config)), hf)


# The rerun of issue 19's adversarial table: what still raised from inside PyTorch or Python
TOKENS = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(2))
RERUN_CASES = {
    "merge_word(a str)": (lambda m: merge_word("abc", (97, 98), 256), TypeError, "list of token"),
    "merge_word(None)": (lambda m: merge_word(None, (1, 2), 3), TypeError, "list of token ids"),
    "merge_word(a pair of three)": (
        lambda m: merge_word([1, 2], (1, 2, 3), 9),
        TypeError,
        "pair must be two",
    ),
    "merge_word(new_id=None)": (lambda m: merge_word([1, 2], (1, 2), None), TypeError, "new_id"),
    "pretokenize(None)": (lambda m: pretokenize(None), TypeError, "pretokenize expects a str"),
    "pretokenize(bytes)": (lambda m: pretokenize(b"hi"), TypeError, "decode bytes first"),
    "next_token_loss(float tokens)": (
        lambda m: next_token_loss(m(TOKENS), TOKENS.float()),
        ValueError,
        "integer token ids",
    ),
    "next_token_loss(one position)": (
        lambda m: next_token_loss(m(TOKENS[:, :1]), TOKENS[:, :1]),
        ValueError,
        "one position",
    ),
    "next_token_loss(tokens, logits)": (
        lambda m: next_token_loss(TOKENS, m(TOKENS)),
        ValueError,
        "the order is logits, tokens",
    ),
    "next_token_loss(one row of tokens)": (
        lambda m: next_token_loss(m(TOKENS), TOKENS[:1]),
        ValueError,
        "integer token ids",
    ),
    "next_token_loss(ids past d_vocab)": (
        lambda m: next_token_loss(torch.randn(2, 8, 10), TOKENS + 10),
        ValueError,
        r"ids in \[0, 10\)",
    ),
    "config_from_hf(None)": (lambda m: config_from_hf(None), TypeError, "expects a transformers"),
    "config_from_hf(a dict)": (
        lambda m: config_from_hf({"n_embd": 32}),
        TypeError,
        r"GPT2Config\(\*\*your_dict\)",
    ),
    "config_from_hf(a model)": (
        lambda m: config_from_hf(transformers.GPT2LMHeadModel(_tiny_gpt2_config())),
        TypeError,
        r"its \.config",
    ),
    "config_from_hf(an unknown override)": (
        lambda m: config_from_hf(_tiny_gpt2_config(), n_layer=1),
        TypeError,
        "n_layer is not a field of Config",
    ),
    "config_from_hf(n_embd not split by n_head)": (
        lambda m: config_from_hf(transformers.GPT2Config(n_embd=33, n_head=2)),
        ValueError,
        "not a multiple of n_head",
    ),
    'lr_at("3", args)': (lambda m: lr_at("3", TrainingArgs()), TypeError, "step must be an int"),
    "lr_at(3, {})": (lambda m: lr_at(3, {}), TypeError, r"TrainingArgs\(\*\*args\)"),
    "lr_at(3, TrainingArgs)": (lambda m: lr_at(3, TrainingArgs), TypeError, "call it"),
    "make_optimizer(None, args)": (
        lambda m: make_optimizer(None, TrainingArgs()),
        TypeError,
        "make_optimizer: model must be",
    ),
    "make_optimizer(model, None)": (
        lambda m: make_optimizer(m, None),
        TypeError,
        "args must be a TrainingArgs",
    ),
    "optimizer_step(loss.item())": (
        lambda m: optimizer_step(m, make_optimizer(m, TrainingArgs()), _loss(m).item(), 1.0),
        TypeError,
        r"not loss\.item\(\)",
    ),
    "optimizer_step(a loss per row)": (
        lambda m: optimizer_step(m, make_optimizer(m, TrainingArgs()), torch.ones(3), 1.0),
        ValueError,
        "0-d tensor",
    ),
    "optimizer_step(a loss without its graph)": (
        lambda m: optimizer_step(m, make_optimizer(m, TrainingArgs()), _loss(m, False), 1.0),
        ValueError,
        "no graph",
    ),
    "optimizer_step(optimizer=None)": (
        lambda m: optimizer_step(m, None, _loss(m), 1.0),
        TypeError,
        "make_optimizer",
    ),
    "validation_metrics(no rows)": (
        lambda m: validation_metrics(m, TOKENS[:0], TrainingArgs()),
        ValueError,
        "at least one sequence",
    ),
    "validation_metrics(None)": (
        lambda m: validation_metrics(m, None, TrainingArgs()),
        TypeError,
        "sequences must be a torch.Tensor",
    ),
    "validation_metrics(args=None)": (
        lambda m: validation_metrics(m, TOKENS, None),
        TypeError,
        "args must be a TrainingArgs",
    ),
    "validation_metrics(one-token rows)": (
        lambda m: validation_metrics(m, TOKENS[:, :1], TrainingArgs()),
        ValueError,
        "two or more tokens",
    ),
    "cache.keys(7)": (lambda m: KVCache(CFG, 1).keys(7), ValueError, r"in \[0, 2\)"),
    "cache.values(-1)": (lambda m: KVCache(CFG, 1).values(-1), ValueError, r"in \[0, 2\)"),
    "load_definitions(a folder)": (
        lambda m: utils.exercises.load_definitions(UTILS),
        IsADirectoryError,
        "is a folder, not a notebook",
    ),
    "load_definitions(a text file)": (
        lambda m: utils.exercises.load_definitions(UTILS / "model.py"),
        ValueError,
        "is not a Jupyter notebook",
    ),
    "load_definitions(None)": (
        lambda m: utils.exercises.load_definitions(None),
        TypeError,
        "must be a path",
    ),
}


def _tiny_gpt2_config():
    return transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=8, vocab_size=16)


@pytest.mark.parametrize("case", RERUN_CASES, ids=list(RERUN_CASES))
def test_the_reruns_bad_input_gets_one_clear_error(case, model):
    raised = _raises_clearly(*RERUN_CASES[case], model)
    assert "\n" not in str(raised.value)  # one line


def test_config_from_hf_overrides_replace_what_it_reads():
    cfg = config_from_hf(_tiny_gpt2_config(), n_layers=3, attn_only=True)
    assert (cfg.n_layers, cfg.attn_only, cfg.d_model, cfg.n_heads) == (3, True, 32, 2)


def test_a_config_cannot_change_under_a_built_model(model):
    with pytest.raises(AttributeError, match="cannot assign to field 'n_heads'"):
        model.cfg.n_heads = 4  # the weights keep their shapes: the config may not drift from them
    assert dataclasses.replace(model.cfg, n_heads=4).n_heads == 4


def _edit_with_fused_adamw(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    _loss(model).backward()
    optimizer.step()


WEIGHT_CHANGES = {
    "fused AdamW": _edit_with_fused_adamw,
    "foreach AdamW": lambda model: (
        _loss(model).backward(),
        torch.optim.AdamW(model.parameters(), lr=0.05, foreach=True).step(),
    ),
    ".data edit": lambda model: model.blocks[0].attn.W_K.data.mul_(1.5),
    "no_grad edit": lambda model: torch.no_grad()(lambda: model.blocks[1].attn.b_V.add_(0.1))(),
    "load_state_dict": lambda model: model.load_state_dict(FusedTransformer(CFG).state_dict()),
    ".to(float64)": lambda model: model.to(torch.float64),
    "embedding row": lambda model: model.embed.W_E.data.copy_(torch.randn_like(model.embed.W_E)),
}


@pytest.mark.parametrize("change", WEIGHT_CHANGES, ids=list(WEIGHT_CHANGES))
@pytest.mark.parametrize("model_class", [DemoTransformer, FusedTransformer, HookedDemoTransformer])
def test_a_cache_refuses_to_continue_after_the_weights_changed(model_class, change):
    torch.manual_seed(0)
    model = model_class(CFG).eval()
    cache = KVCache(CFG, 1)
    cached_forward(model, PROMPT, cache)
    cached_forward(model, torch.tensor([[4]]), cache)  # unchanged weights: it goes on
    WEIGHT_CHANGES[change](model)
    with pytest.raises(ValueError, match="weights have changed since this cache was filled"):
        cached_forward(model, torch.tensor([[5]]).to(model.embed.W_E.device), cache)
    cache.reset()  # then the whole sequence again, with the new weights: equal to no cache
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(cached_forward(model, tokens, cache), model(tokens), atol=1e-5)


@pytest.mark.parametrize("loss_name", ["next_token_loss", "fused_next_token_loss"])
def test_the_loss_guard_does_not_break_a_compiled_graph(model, loss_name):
    """next_token_loss and the trainer's fused_next_token_loss check their arguments; under
    torch.compile (SafeTrainer's compile=True) the checks must stay out of the graph: no graph
    break, one graph for model and loss together."""
    from utils.fused import fused_next_token_loss

    loss_fn = {"next_token_loss": next_token_loss, "fused_next_token_loss": fused_next_token_loss}
    explained = torch._dynamo.explain(lambda tokens: loss_fn[loss_name](model(tokens), tokens))(
        TOKENS
    )
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


# The second table of issue 19's rerun (1,783 cases): what it found raw or silently wrong
def _hf_state_dict():
    torch.manual_seed(0)
    return __import__("utils.resources").resources.new_gpt2(CFG).state_dict()


def _call(module, name):
    return getattr(__import__(f"utils.{module}").__dict__[module], name)


SECOND_CASES = {
    "convert_hf_state_dict(None, cfg)": (
        lambda m: _call("model", "convert_hf_state_dict")(None, CFG),
        TypeError,
        "a GPT-2 state dict",
    ),
    "convert_hf_state_dict(a model, cfg)": (
        lambda m: _call("model", "convert_hf_state_dict")(m, CFG),
        TypeError,
        "state dict",
    ),
    "convert_hf_state_dict with a cfg of fewer layers": (
        lambda m: _call("model", "convert_hf_state_dict")(
            _hf_state_dict(), dataclasses.replace(CFG, n_layers=1)
        ),
        ValueError,
        "has 2 layers, cfg.n_layers is 1",
    ),
    "convert_hf_state_dict with another d_vocab": (
        lambda m: _call("model", "convert_hf_state_dict")(
            _hf_state_dict(), dataclasses.replace(CFG, d_vocab=100)
        ),
        ValueError,
        r"wte.weight is \(64, 32\), cfg says \(100, 32\)",
    ),
    "get_attention_patterns(tokens, model)": (
        lambda m: _call("model", "get_attention_patterns")(TOKENS, m),
        TypeError,
        "model must be",
    ),
    "tokenize_documents(one str)": (
        lambda m: _call("training", "tokenize_documents")("hello", lambda s: [1], 63),
        TypeError,
        r"wrap it, \[text\]",
    ),
    "tokenize_documents(eot_id=-1)": (
        lambda m: _call("training", "tokenize_documents")(["a"], lambda s: [1], -1),
        ValueError,
        "eot_id must be",
    ),
    "baselines(ids past d_vocab)": (
        lambda m: _call("training", "baselines")(
            torch.tensor([1, 2, 30]), torch.tensor([1, 2]), 10
        ),
        ValueError,
        r"ids in \[0, 10\)",
    ),
    "baselines(an empty validation stream)": (
        lambda m: _call("training", "baselines")(torch.tensor([1, 2]), torch.tensor([1])[:0], 10),
        ValueError,
        "two or more",
    ),
    "run_length(max_steps=-5)": (
        lambda m: _call("training", "run_length")(100, 10, -5, 10),
        ValueError,
        "max_steps must be",
    ),
    "batch_rows(batch larger than the rows)": (
        lambda m: _call("training", "batch_rows")(0, 3, 4, 0),
        ValueError,
        "more than the 3 rows",
    ),
    "Trainer(sample=5)": (
        lambda m: Trainer(m, TrainingArgs(batch_size=2), *_data(), sample=5),
        TypeError,
        "sample must be None or a function",
    ),
    "next_token_accuracy(an empty batch)": (
        lambda m: __import__("utils.training").training.next_token_accuracy(
            torch.randn(0, 4, 64), TOKENS[:0, :4]
        ),
        ValueError,
        "batch 0",
    ),
    "cache.update(layer, k, None)": (
        lambda m: KVCache(CFG, 2).update(0, torch.zeros(2, 1, 2, 16), None),
        TypeError,
        "k and v must be tensors",
    ),
    "cache.update(layer, k, v) with k and v [batch, n_heads, posn, d_head]": (
        lambda m: KVCache(CFG, 2).update(0, torch.zeros(2, 2, 3, 16), torch.zeros(2, 2, 3, 16)),
        ValueError,
        re.escape("[batch, new_posn, n_heads, d_head] = [2, new_posn, 2, 16], got k [2, 2, 3, 16]"),
    ),
    "next_logits(model, one sequence without its batch)": (
        lambda m: _call("sampling", "next_logits")(m, TOKENS[0]),
        ValueError,
        r"tokens\[None\]",
    ),
    "ban_repeated_ngrams(n=-1)": (
        lambda m: _call("sampling", "ban_repeated_ngrams")(TOKENS, torch.zeros(2, 64), -1),
        ValueError,
        "n must be",
    ),
    "repeating_sequences(seed=None)": (
        lambda m: _call("circuits", "repeating_sequences")(2, 20, 10, 2, 5, None),
        TypeError,
        "seed must be",
    ),
    "induction_score(an int pattern)": (
        lambda m: _call("circuits", "induction_score")(torch.ones(1, 2, 7, 7).long(), 3),
        TypeError,
        "attention weights",
    ),
    "BPETokenizer(an empty special token)": (
        lambda m: BPETokenizer({**BYTES, "": 256}, [], special_tokens=("",)),
        ValueError,
        "empty string",
    ),
    "split_documents(one str)": (
        lambda m: _call("resources", "split_documents")("hello world", None, 0.1),
        TypeError,
        "list of documents",
    ),
    "padded_vocab_size(0)": (
        lambda m: _call("gpu", "padded_vocab_size")(0),
        ValueError,
        "d_vocab must be",
    ),
    "run_times(fn, repeats=0)": (
        lambda m: _call("timing", "run_times")(lambda: None, 0),
        ValueError,
        "repeats must be",
    ),
    "check_layernorm(an instance)": (
        lambda m: __import__("utils.checks").checks.check_layernorm(m.ln_final),
        TypeError,
        "takes your class itself",
    ),
    "make_optimizer(an all-frozen model)": (
        lambda m: make_optimizer(DemoTransformer(CFG).requires_grad_(False), TrainingArgs()),
        ValueError,
        "no trainable parameter",
    ),
    "lr_at after args.lr was set to a str": (
        lambda m: lr_at(3, _with(TrainingArgs(), lr="1e-3")),
        TypeError,
        "lr must be",
    ),
    "model.cfg replaced, then a KV cache": (
        lambda m: _call("sampling", "next_logits")(
            _with(DemoTransformer(CFG), cfg=dataclasses.replace(CFG, n_layers=3)),
            TOKENS,
            KVCache(dataclasses.replace(CFG, n_layers=3), 2),
        ),
        ValueError,
        "not the config the model was built with",
    ),
}


def _with(thing, **changes):
    for name, value in changes.items():
        setattr(thing, name, value)
    return thing


@pytest.mark.parametrize("case", SECOND_CASES, ids=list(SECOND_CASES))
def test_the_second_reruns_bad_input_gets_one_clear_error(case, model):
    _raises_clearly(*SECOND_CASES[case], model)


def test_remove_partial_checkpoints_keeps_files_it_did_not_write(tmp_path):
    """Issue 19's rerun: every step_*.tmp was removed, a learner's notes included."""
    from utils.checkpoints import remove_partial_checkpoints

    mine = [tmp_path / "step_notes.tmp", tmp_path / "data" / "step_backup.tmp"]
    mine[1].parent.mkdir()
    abandoned = tmp_path / "run_1" / "step_000002.pt.999999999.tmp"  # a pid that cannot exist
    abandoned.parent.mkdir()
    for path in (*mine, abandoned):
        path.write_text("x")
    assert remove_partial_checkpoints(tmp_path) == [abandoned]
    assert all(path.exists() for path in mine)


def test_a_dangling_checkpoint_link_is_refused_before_training(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is a link to .*which does not exist"):
        SafeTrainer(DemoTransformer(CFG), _args(tmp_path / "link"), *_data())


class _Biased(DemoTransformer):
    def forward(self, tokens):
        return super().forward(tokens) + 1.0  # what the KV cache's own path would leave out


def _hooked_everywhere(model, use_cache):
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        return generate(model, PROMPT, 2, use_cache=use_cache)
    finally:
        handle.remove()


def test_generate_refuses_the_cache_where_it_would_skip_a_forward(model):
    """The cached path runs its own block and attention code: a subclass's forward, a forward set
    on an instance, or hooks on every module would be skipped silently."""
    with pytest.raises(TypeError, match="which is your own: pass use_cache=False"):
        generate(_Biased(CFG), PROMPT, 2)
    patched = DemoTransformer(CFG)
    patched.blocks[0].attn.forward = lambda x: torch.zeros_like(x)
    with pytest.raises(TypeError, match="blocks.0.attn"):
        generate(patched, PROMPT, 2)
    with pytest.raises(ValueError, match="every module"):
        _hooked_everywhere(model, use_cache=True)
    assert _hooked_everywhere(model, use_cache=False).shape == (1, 5)
    assert generate(FusedTransformer(CFG), PROMPT, 2).shape == (1, 5)  # ours keep the cache


def test_special_tokens_match_longest_first():
    tokenizer = BPETokenizer(
        {**BYTES, "<|endoftext|>": 256, "<|end": 257}, [], special_tokens=("<|end", "<|endoftext|>")
    )
    assert tokenizer.encode("a<|endoftext|>") == [BYTES["a"], 256]


@pytest.mark.parametrize(
    "change", [dict(n_ctx=64), dict(d_vocab=100), dict(n_heads=4, d_head=8), dict(n_layers=3)]
)
def test_a_replaced_model_cfg_is_refused_before_it_disagrees_with_the_weights(change):
    """Config is frozen, but model.cfg itself can be replaced: the forward, load_gpt2_weights and
    the KV cache then refuse in one line, instead of a shape error from inside PyTorch."""
    for model_class in (DemoTransformer, FusedTransformer, HookedDemoTransformer):
        model = model_class(CFG)
        model.cfg = dataclasses.replace(CFG, **change)
        with pytest.raises(ValueError, match="not the config the model was built with"):
            model(TOKENS)
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=64)
    )
    model = DemoTransformer(CFG)
    model.cfg = dataclasses.replace(CFG, n_heads=4, d_head=8)
    with pytest.raises(ValueError, match="not the config the model was built with"):
        __import__("utils.model").model.load_gpt2_weights(model, hf)


def test_a_cache_refusal_is_given_again_on_a_retry():
    """The weights are compared once per cache length; a refusal is not remembered as a pass."""
    model = FusedTransformer(CFG).eval()
    cache = KVCache(CFG, 1)
    cached_forward(model, PROMPT, cache)
    model.blocks[0].attn.W_V.data.mul_(2)
    for _ in range(2):
        with pytest.raises(ValueError, match="weights have changed"):
            cached_forward(model, torch.tensor([[5]]), cache)


LOGITS = torch.randn(3, 10, generator=torch.Generator().manual_seed(3))
THIRD_CASES = {  # issue 19's last judgement calls: notebook 04's logit functions on their own
    "apply_temperature(logits, 0)": (
        lambda m: _call("sampling", "apply_temperature")(LOGITS, 0),
        ValueError,
        "temperature 0 is greedy",
    ),
    "apply_temperature(logits, '2')": (
        lambda m: _call("sampling", "apply_temperature")(LOGITS, "2"),
        TypeError,
        "temperature must be a finite number",
    ),
    "apply_top_k(logits, 0)": (
        lambda m: _call("sampling", "apply_top_k")(LOGITS, 0),
        ValueError,
        "k must be a positive int, got 0",
    ),
    "apply_top_k(logits, 1.5)": (
        lambda m: _call("sampling", "apply_top_k")(LOGITS, 1.5),
        TypeError,
        "k must be a positive int",
    ),
    "apply_top_k(logits, -1)": (
        lambda m: _call("sampling", "apply_top_k")(LOGITS, -1),
        ValueError,
        "k must be a positive int",
    ),
    "apply_top_p(logits, 0)": (
        lambda m: _call("sampling", "apply_top_p")(LOGITS, 0),
        ValueError,
        r"p must be a number in \(0, 1\]",
    ),
    "apply_top_p(logits, nan)": (
        lambda m: _call("sampling", "apply_top_p")(LOGITS, float("nan")),
        ValueError,
        r"p must be a number in \(0, 1\]",
    ),
    "apply_top_p(int logits, 0.9)": (
        lambda m: _call("sampling", "apply_top_p")(torch.ones(3, 10, dtype=torch.long), 0.9),
        ValueError,
        r"logits must be floats \[batch, d_vocab\]",
    ),
    "apply_frequency_penalty(ids >= d_vocab)": (
        lambda m: _call("sampling", "apply_frequency_penalty")(LOGITS, torch.full((3, 1), 10), 1.0),
        ValueError,
        r"ids in \[0, 10\)",
    ),
    "apply_frequency_penalty(float tokens)": (
        lambda m: _call("sampling", "apply_frequency_penalty")(LOGITS, torch.ones(3, 2), 1.0),
        ValueError,
        "token ids",
    ),
    "apply_frequency_penalty(other batch)": (
        lambda m: _call("sampling", "apply_frequency_penalty")(
            LOGITS, torch.ones(2, 2, dtype=torch.long), 1.0
        ),
        ValueError,
        r"\[batch=3, posn\]",
    ),
    "apply_frequency_penalty(penalty inf)": (
        lambda m: _call("sampling", "apply_frequency_penalty")(
            LOGITS, torch.ones(3, 2, dtype=torch.long), float("inf")
        ),
        ValueError,
        "penalty must be a finite number",
    ),
}


@pytest.mark.parametrize("case", THIRD_CASES, ids=list(THIRD_CASES))
def test_the_logit_functions_bad_input_gets_one_clear_error(case, model):
    _raises_clearly(*THIRD_CASES[case], model)


def test_next_logits_refuses_a_cache_of_other_tokens(model):
    """A cache filled with one prompt, then given another of the same length: its keys and values
    are the first prompt's, and the logits would be silently wrong."""
    next_logits = _call("sampling", "next_logits")
    tokens = TOKENS[:, :6]
    cache = KVCache(CFG, 2)
    with torch.no_grad():
        next_logits(model, tokens[:, :5], cache)
        with pytest.raises(ValueError, match="holds the keys and values of other tokens"):
            next_logits(model, (tokens + 1) % CFG.d_vocab, cache)
        extended = next_logits(model, tokens, cache)  # the same prompt, one token more: fine
        assert torch.allclose(extended, model(tokens)[:, -1], atol=1e-5)
        cache.reorder(torch.tensor([1, 0]))  # the rows swapped: so must the tokens be
        swapped = torch.cat([tokens.flip(0), tokens[:, :1]], dim=1)
        assert torch.allclose(next_logits(model, swapped, cache), model(swapped)[:, -1], atol=1e-5)


def test_generate_returns_a_new_tensor_even_with_no_new_tokens(model):
    prompt = PROMPT.clone()
    out = generate(model, prompt, 0)
    out[0, 0] = 9
    assert torch.equal(prompt, PROMPT)


@pytest.mark.parametrize("model_class", [DemoTransformer, FusedTransformer])
def test_backward_through_a_cache_filled_over_two_calls(model_class):
    """Gradients through two cached chunks equal those of one forward over the whole sequence
    (the second chunk writes into copies of the keys and values the first one used)."""
    torch.manual_seed(0)
    model = model_class(CFG)
    cache = KVCache(CFG, 2)
    first, second = (
        cached_forward(model, TOKENS[:, :4], cache),
        cached_forward(model, TOKENS[:, 4:], cache),
    )
    torch.cat([first, second], dim=1).square().mean().backward()
    cached = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(TOKENS).square().mean().backward()
    for got, want in zip(cached, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_the_plain_trainer_never_overwrites_an_earlier_runs_step_files(tmp_path):
    earlier = tmp_path / "step_000002.pt"
    earlier.write_bytes(b"an earlier run's checkpoint")
    trainer = Trainer(DemoTransformer(CFG), _args(tmp_path), *_data())
    with pytest.raises(FileExistsError, match="already holds step_000002.pt"):
        trainer.train()
    assert earlier.read_bytes() == b"an earlier run's checkpoint" and trainer.step == 0
    trainer = Trainer(DemoTransformer(CFG), _args(tmp_path / "new", max_steps=4), *_data())
    trainer.train(2)
    trainer.train()  # going on saves steps it has not saved yet: fine
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        "step_000002.pt",
        "step_000004.pt",
    ]
    SafeTrainer(DemoTransformer(CFG), _args(tmp_path), *_data()).train()  # a run folder: fine
    assert earlier.read_bytes() == b"an earlier run's checkpoint"


def test_a_checkpoints_own_device_is_named_as_the_checkpoints(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=False)
    for device, works in (("tpu", False), ("mps", True), ("cuda:0", True)):
        state["args"]["device"] = device
        path = tmp_path / f"on_{device.replace(':', '_')}.pt"
        torch.save(state, path)
        if works:  # trained on a GPU this machine lacks: loaded on the CPU
            assert next(load_checkpoint_model(path)[0].parameters()).device.type in ("cpu", "cuda")
        else:
            with pytest.raises(ValueError, match="the checkpoint says it was trained on device"):
                load_checkpoint_model(path)


# the adversarial table's last rows: every entry point, the plumbing modules' too
def _a_file(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file"


def _meta(shape=()):
    return torch.empty(shape, device="meta")


def _hf_gpt2():
    return utils.hf_export.to_hf_gpt2(DemoTransformer(CFG))


def _patching(metric):
    torch.manual_seed(0)
    hooked = HookedDemoTransformer(CFG).eval()
    return _call("patching", "patch_residual_stream")(hooked, PROMPT, PROMPT + 1, metric)


import utils.circuits  # noqa: E402
import utils.configs  # noqa: E402
import utils.export  # noqa: E402
import utils.gpu  # noqa: E402
import utils.hf_export  # noqa: E402
import utils.patching  # noqa: E402
import utils.runs  # noqa: E402
import utils.scaling  # noqa: E402
import utils.training  # noqa: E402
from utils.checkpoints import model_from_checkpoint, read_checkpoint  # noqa: E402
from utils.model import LayerNorm, Embed, PosEmbed, Attention, MLP, TransformerBlock, Unembed  # noqa: E402,I001

LAYERS = [LayerNorm, Embed, PosEmbed, Attention, MLP, TransformerBlock, Unembed]

# (what the learner did, given tmp_path, the error's type, words the message must hold)
FOURTH_CASES = {
    **{
        f"{layer.__name__}({label})": (
            lambda t, layer=layer, given=given: layer(given),
            TypeError,
            words,
        )
        for layer in LAYERS
        for label, given, words in (
            ("Config, the class", Config, r"the class Config \(call it"),
            ("None", None, "cfg must be a utils.model.Config"),
            ("a dict", {"d_model": 32}, r"Config\(\*\*cfg\)"),
        )
    },
    "a layer too big for the memory that is free": (
        lambda t: _with_free_memory(2**20, lambda: Embed(CFG.__class__(d_vocab=50_000))),
        MemoryError,
        r"W_E and W_U \[d_vocab, d_model\] would need 0.1 GB",
    ),
    "Config whose W_E and W_U together exceed the memory": (
        lambda t: Config(d_vocab=int(0.75 * utils.validation._physical_memory() / 4 / 768)),
        ValueError,
        "more than this machine's",
    ),
    "Trainer(checkpoint_dir=a file)": (
        lambda t: Trainer(DemoTransformer(CFG), _args(_a_file(t)), *_data()),
        NotADirectoryError,
        "checkpoint_dir",
    ),
    "Trainer(checkpoint_dir=a file/runs)": (
        lambda t: Trainer(DemoTransformer(CFG), _args(_a_file(t) / "runs"), *_data()),
        NotADirectoryError,
        "is a file, not a folder",
    ),
    "Trainer(a model on the meta device)": (
        lambda t: Trainer(DemoTransformer(CFG).to("meta"), _args(t), *_data()),
        ValueError,
        "meta device",
    ),
    "Trainer(sample=a function of no argument)": (
        lambda t: Trainer(DemoTransformer(CFG), _args(t), *_data(), sample=lambda: "x"),
        TypeError,
        "sample must be a function of one argument, the model",
    ),
    "model_from_checkpoint(device='gpu')": (
        lambda t: model_from_checkpoint(read_checkpoint(_trained(t)), device="gpu"),
        ValueError,
        r"for an NVIDIA GPU, 'cuda'",
    ),
    "load_checkpoint_model(model_class=a model)": (
        lambda t: load_checkpoint_model(_trained(t), model_class=DemoTransformer(CFG)),
        TypeError,
        "a DemoTransformer model; give its class",
    ),
    "from_hf_gpt2(model_class=str)": (
        lambda t: utils.hf_export.from_hf_gpt2(_hf_gpt2(), model_class=str),
        TypeError,
        "model_class must be a model class",
    ),
    "from_hf_gpt2(model_class=nn.Linear)": (
        lambda t: utils.hf_export.from_hf_gpt2(_hf_gpt2(), model_class=nn.Linear),
        TypeError,
        "model_class must take a Config",
    ),
    **{
        f"{name}({label})": (lambda t, call=call, given=given: call(given), TypeError, words)
        for name, call, words in (
            (
                "save_hf_folder",
                lambda f: utils.hf_export.save_hf_folder(DemoTransformer(CFG), f),
                "folder must be a folder path",
            ),
            ("load_hf_folder", utils.hf_export.load_hf_folder, "folder must be the path"),
            ("write_exercises", utils.exercises.write_exercises, "target must be a folder path"),
            ("back_up", utils.exercises.back_up, "path must be a notebook's path"),
        )
        for label, given in (("None", None), ("bytes", b"folder"), ("an int", 5))
        if not (name in ("write_exercises",) and given is None)  # None: exercises/
    },
    "back_up(a path with no file)": (
        lambda t: utils.exercises.back_up(t / "missing.ipynb"),
        FileNotFoundError,
        "no file to back up",
    ),
    "stale_modules('notebooks')": (
        lambda t: utils.export.stale_modules("notebooks"),
        TypeError,
        "notebooks must be a list of notebook paths",
    ),
    "stale_modules([a missing notebook])": (
        lambda t: utils.export.stale_modules([t / "missing.ipynb"]),
        FileNotFoundError,
        "no notebook at",
    ),
    "stale_modules([a text file])": (
        lambda t: utils.export.stale_modules([_a_file(t)]),
        ValueError,
        "is not a Jupyter notebook",
    ),
    "choose_settings(gpu='T4')": (
        lambda t: utils.gpu.choose_settings("T4", CFG, 16, 10, 1e9),
        TypeError,
        "gpu must be None",
    ),
    "choose_settings(flops_per_token='1e9')": (
        lambda t: utils.gpu.choose_settings(None, CFG, 16, 10, "1e9"),
        TypeError,
        "flops_per_token must be",
    ),
    "peak_flops(None)": (lambda t: utils.gpu.peak_flops(None), TypeError, "name must be a GPU"),
    "settings_for_this_machine(None, ...)": (
        lambda t: utils.gpu.settings_for_this_machine(None, CFG, 10),
        TypeError,
        "run_cfg must be a run config",
    ),
    "prepare_run('nope')": (
        lambda t: utils.runs.prepare_run("nope"),
        ValueError,
        "unknown config 'nope'",
    ),
    "prepare_run(corpus='text')": (
        lambda t: utils.runs.prepare_run("ci", corpus="text"),
        TypeError,
        "corpus must be None or load_corpus",
    ),
    "short_run_steps(None)": (
        lambda t: utils.runs.short_run_steps(None),
        TypeError,
        "run_cfg must be a run config",
    ),
    "run_training_args(cfg, run=None, ...)": (
        lambda t: utils.runs.run_training_args("ci", None, 10, 1, t),
        TypeError,
        "run must be prepare_run",
    ),
    "corpus_fingerprint(a corpus of ints)": (
        lambda t: utils.runs.corpus_fingerprint(utils.resources.Corpus("x", [1, 2], ["a"])),
        TypeError,
        "corpus.train must hold strs",
    ),
    "RunTokenizer.decode(None)": (
        lambda t: utils.runs.run_tokenizer("gpt2").decode(None),
        TypeError,
        "decode: ids must be a sequence of ints",
    ),
    "split_documents(max_chars='5')": (
        lambda t: utils.resources.split_documents(["a", "b"], max_chars="5"),
        TypeError,
        "max_chars must be None",
    ),
    "split_documents(max_chars=1.5)": (
        lambda t: utils.resources.split_documents(["ab", "cd"], max_chars=1.5),
        TypeError,
        "max_chars must be None",
    ),
    "tokenize_documents(encode returns text)": (
        lambda t: utils.training.tokenize_documents(["ab"], lambda doc: doc, 0),
        TypeError,
        "encode must return a list of token ids",
    ),
    "baselines(streams on the meta device)": (
        lambda t: utils.training.baselines(_meta((8,)).long(), _meta((8,)).long(), 4),
        ValueError,
        "meta device",
    ),
    "cache.update(int keys)": (
        lambda t: KVCache(CFG, 1).update(0, *(torch.zeros(1, 2, 2, 16, dtype=torch.long),) * 2),
        TypeError,
        "must be the keys and values a layer computed",
    ),
    "forward_with_cache(model, tokens, None)": (
        lambda t: _call("sampling", "forward_with_cache")(DemoTransformer(CFG), PROMPT, None),
        TypeError,
        r"cache must be a KVCache\(model.cfg, batch\)",
    ),
    "generate(max_new_tokens=2**70)": (
        lambda t: generate(DemoTransformer(CFG), PROMPT, 2**70),
        ValueError,
        "more than this machine's",
    ),
    "beam_search(max_new_tokens=2**70)": (
        lambda t: _call("sampling", "beam_search")(DemoTransformer(CFG), PROMPT, 2, 2**70),
        ValueError,
        "more than this machine's",
    ),
    "direct_logit_attribution(model on the meta device)": (
        lambda t: direct_logit_attribution(
            torch.randn(3, 32), 2.0, DemoTransformer(CFG).to("meta"), 1
        ),
        ValueError,
        "meta device",
    ),
    "head_outputs(cache, None)": (
        lambda t: utils.circuits.head_outputs(
            HookedDemoTransformer(CFG).run_with_cache(PROMPT)[1], None
        ),
        ValueError,
        "layer must be an int",
    ),
    "repeating_sequences(n=2**70)": (
        lambda t: utils.circuits.repeating_sequences(2**70, 8, 10, 2, 4, 0),
        ValueError,
        "more than this machine's",
    ),
    "repeated_tokens(batch=2**70)": (
        lambda t: utils.circuits.repeated_tokens(2**70, 4, 10),
        ValueError,
        "more than this machine's",
    ),
    "induction_score(pattern, None)": (
        lambda t: utils.circuits.induction_score(torch.rand(1, 2, 11, 11), None),
        TypeError,
        "seq_len must be",
    ),
    **{
        f"{name}({label}, folder)": (
            lambda t, fn=fn, given=given: getattr(utils.circuits, fn)(given, t),
            error,
            words,
        )
        for name, fn in (
            ("load_induction_model", "load_induction_model"),
            ("train_induction_model", "train_induction_model"),
        )
        for label, given, error, words in (
            ("None", None, TypeError, "run_cfg must be a run config"),
            ("a dict", {"name": "ci"}, TypeError, "run_cfg must be a run config"),
            ("'nope'", "nope", ValueError, "unknown config 'nope'"),
        )
    },
    "load_induction_model(cfg, None)": (
        lambda t: utils.circuits.load_induction_model("ci", None),
        TypeError,
        "checkpoint_dir must be a folder path",
    ),
    "patch_residual_stream(metric of no argument)": (
        lambda t: _patching(lambda: 0.0),
        TypeError,
        "metric must be a function of one argument, the logits",
    ),
    "patch_effect(value on the meta device)": (
        lambda t: utils.patching.patch_effect(_meta(), 1.0, 0.0),
        ValueError,
        "value is on the meta device",
    ),
    "copying_score(a circuit on the meta device)": (
        lambda t: utils.patching.copying_score(_meta((4, 4))),
        ValueError,
        "circuit is on the meta device",
    ),
    "composition_score(int weights)": (
        lambda t: utils.patching.composition_score(
            torch.ones(3, 3, dtype=torch.long), torch.ones(3, 3)
        ),
        TypeError,
        "W_A must hold weights",
    ),
    "composition_score(float32 and float64)": (
        lambda t: utils.patching.composition_score(torch.ones(3, 3), torch.ones(3, 3).double()),
        TypeError,
        "must have one dtype and device",
    ),
    "mean_over_ranks outside torchrun": (
        lambda t: utils.scaling.mean_over_ranks(torch.tensor(1.0)),
        RuntimeError,
        "needs the processes of a run",
    ),
    "mean_over_ranks(None)": (
        lambda t: utils.scaling.mean_over_ranks(None),
        TypeError,
        "value must be a tensor",
    ),
    "backward_micro_batches(a model without DDP, two micro-batches)": (
        lambda t: utils.scaling.backward_micro_batches(
            DemoTransformer(CFG), [PROMPT, PROMPT], next_token_loss
        ),
        TypeError,
        "ddp_model must be wrapped in DistributedDataParallel",
    ),
    "backward_micro_batches(loss_fn=None)": (
        lambda t: utils.scaling.backward_micro_batches(DemoTransformer(CFG), [PROMPT], None),
        TypeError,
        "loss_fn must be a function",
    ),
    "tok.decode(ids on the meta device)": (
        lambda t: BPETokenizer.train("hello hello", 260).decode(_meta((3,)).long()),
        ValueError,
        "ids is on the meta device",
    ),
}


def _with_free_memory(free, build):
    original = utils.validation._free_memory
    utils.validation._free_memory = lambda: free
    try:
        return build()
    finally:
        utils.validation._free_memory = original


def _trained(tmp_path):
    trainer = SafeTrainer(DemoTransformer(CFG), _args(tmp_path / "run"), *_data())
    trainer.train()
    return trainer.last_checkpoint


@pytest.mark.parametrize("case", FOURTH_CASES, ids=list(FOURTH_CASES))
def test_every_entry_points_bad_input_gets_one_clear_error(case, tmp_path, capsys):
    action, error, words = FOURTH_CASES[case]
    with pytest.raises(error, match=words) as raised:
        action(tmp_path)
    innermost = traceback.extract_tb(raised.value.__traceback__)[-1].filename
    assert Path(innermost).resolve().is_relative_to(UTILS), f"raised in {innermost}"
    assert "\n" not in str(raised.value)  # one line


def test_what_python_numbers_do_numpy_numbers_do_in_the_plumbing_too():
    python = utils.gpu.choose_settings(None, CFG, 16, 10, 1e9)
    assert (
        utils.gpu.choose_settings(None, CFG, np.int64(16), np.int64(10), np.float32(1e9)) == python
    )
    rows = utils.training.batch_rows(3, 64, 4, 0)
    assert torch.equal(
        utils.training.batch_rows(np.int64(3), np.int64(64), np.int64(4), np.int64(0)), rows
    )


def test_a_metric_may_return_a_numpy_float():
    torch.manual_seed(0)
    as_python = _patching(lambda logits: float(logits[0, -1, 0]))
    as_numpy = _patching(lambda logits: np.float32(logits[0, -1, 0].item()))
    assert torch.allclose(as_python, as_numpy)


@pytest.mark.parametrize(
    "point",
    [
        "blocks.0.attn.hook_z",
        "blocks.0.attn.hook_pattern",
        "blocks.0.ln1.hook_scale",
        "blocks.1.hook_resid_pre",
    ],
)
def test_hooks_may_edit_any_activation_in_place_with_gradients_on(hooked, point):
    def double_in_place(activation, hook):
        activation.mul_(2)

    def doubled(activation, hook):
        return activation * 2

    in_place = hooked.run_with_hooks(PROMPT, [(point, double_in_place)])
    returned = hooked.run_with_hooks(PROMPT, [(point, doubled)])
    assert torch.allclose(in_place, returned)
    in_place.sum().backward()  # PyTorch refused this when the hook edited a tensor backward saved
    assert hooked.blocks[0].attn.W_Q.grad is not None
    hooked.zero_grad(set_to_none=True)


def test_bpe_training_says_when_the_text_runs_out_of_pairs(capsys):
    tokenizer = BPETokenizer.train("abc abc", 300)
    assert len(tokenizer) < 300
    assert f"{len(tokenizer)} tokens, not 300" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["utils.export", "utils.exercises", "utils.train"])
def test_a_command_lines_bad_option_is_one_line(module):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", module, "--colour"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=UTILS.parent,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m {module}: error: unrecognized arguments: --colour (see --help)"
    ]


@pytest.mark.skipif(os.name == "nt", reason="ulimit -v is POSIX")
def test_a_model_too_big_for_an_address_space_limit_is_refused_before_torchs_allocator():
    import subprocess
    import sys

    script = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n"
        "from utils.model import Config, DemoTransformer\n"
        "try:\n"
        "    DemoTransformer(Config(d_vocab=2_000_000, d_model=768))\n"
        "except MemoryError as error:\n"
        "    print('refused:', error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=UTILS.parent,
    )
    assert done.stdout.startswith("refused: W_E and W_U [d_vocab, d_model] would need 5.7 GB"), (
        done.stdout + done.stderr
    )
