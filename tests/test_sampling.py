"""utils/sampling.py (notebook 04): the KV cache, generate's samplers, beam search against Hugging
Face, and clear errors."""

import inspect
import math
import os
import time
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

import utils.sampling
from utils.checks import check_kv_cache
from utils.fused import FusedTransformer
from utils.model import Config, DemoTransformer, load_gpt2_weights
from utils.resources import new_gpt2
from utils.sampling import KVCache, beam_search, cached_forward, generate, next_logits
from utils.checkpoints import latest_checkpoint

CFG = Config(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, n_ctx=24, d_vocab=97)


def _models(seed=0, cfg=CFG):
    """A DemoTransformer with random weights (biases and LayerNorms too) and its fused twin, with
    the same weights."""
    torch.manual_seed(seed)
    explicit = DemoTransformer(cfg).eval()
    with torch.no_grad():
        for name, parameter in explicit.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                parameter.normal_(mean=1.0 if name.endswith(".w") else 0.0, std=0.2)
            else:
                parameter.mul_(
                    5
                )  # peakier distributions than at initialisation: the greedy text is not a near-tie
    fused = FusedTransformer(cfg).eval()
    fused.load_state_dict(explicit.state_dict())
    return explicit, fused


# --------------------------------------------------------------------------- the KV cache


@pytest.mark.parametrize("which", ["explicit", "fused"])
def test_cached_and_uncached_greedy_agree_for_100_tokens_across_n_ctx(which):
    model = dict(zip(("explicit", "fused"), _models()))[which]
    prompt = torch.randint(0, CFG.d_vocab, (2, 5), generator=torch.Generator().manual_seed(0))
    n_new = 110  # the window of n_ctx = 24 positions slides for the last 91 steps
    cached = generate(model, prompt, n_new, temperature=0, use_cache=True)
    uncached = generate(model, prompt, n_new, temperature=0, use_cache=False)
    assert cached.shape == (2, 5 + n_new) and torch.equal(cached, uncached)
    assert len(cached[0, 5:].unique()) > 3  # a real text, not one token repeated
    cache = KVCache(CFG, 2)
    with torch.no_grad():
        for t in range(5, cached.shape[1] + 1):
            torch.testing.assert_close(
                next_logits(model, cached[:, :t], cache),
                next_logits(model, cached[:, :t]),
                atol=1e-4,
                rtol=1e-4,
            )
    assert cache.start == cached.shape[1] - CFG.n_ctx and cache.length == CFG.n_ctx


def test_the_fused_and_explicit_cached_paths_agree_chunk_by_chunk():
    explicit, fused = _models(1)
    tokens = torch.randint(0, CFG.d_vocab, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = explicit(tokens)
        for model in (explicit, fused):
            cache, start = KVCache(CFG, 3), 0
            for size in (
                6,
                1,
                1,
                5,
                7,
            ):  # several new positions after cached ones: the shifted mask matters
                torch.testing.assert_close(
                    cached_forward(model, tokens[:, start : start + size], cache),
                    expected[:, start : start + size],
                    atol=1e-4,
                    rtol=1e-4,
                )
                start += size
            assert cache.length == 20


def test_sampled_generation_is_the_same_with_and_without_the_cache():
    model, _ = _models(2)
    prompt = torch.randint(0, CFG.d_vocab, (3, 4), generator=torch.Generator().manual_seed(2))
    kwargs = dict(temperature=0.9, top_k=30, top_p=0.95, frequency_penalty=0.3, seed=7)
    assert torch.equal(
        generate(model, prompt, 40, use_cache=True, **kwargs),
        generate(model, prompt, 40, use_cache=False, **kwargs),
    )


def test_forward_without_a_cache_is_notebook_02s():
    """Notebook 02's forward knows nothing of notebook 04's cache: no `cache` argument, and
    utils/model.py does not import utils/sampling.py (no module imports a later notebook's)."""
    assert "cache" not in inspect.signature(DemoTransformer.forward).parameters
    source = inspect.getsource(DemoTransformer.forward)
    assert "residual = self.embed(tokens) + self.pos_embed(tokens)" in source
    import utils.model

    assert "utils.sampling" not in inspect.getsource(utils.model)
    model, _ = _models()
    tokens = torch.randint(0, CFG.d_vocab, (2, 9))
    called = []
    original = utils.sampling.forward_with_cache
    utils.sampling.forward_with_cache = lambda *args: called.append(args) or original(*args)
    try:
        with torch.no_grad():
            model(tokens)
            assert not called
            cached_forward(model, tokens, KVCache(CFG, 2))
            assert called
    finally:
        utils.sampling.forward_with_cache = original


def test_cache_errors_are_clear():
    model, fused = _models()
    for m in (model, fused):
        cache = KVCache(CFG, 2)
        with pytest.raises(
            ValueError, match="tokens has 3 rows, but this cache was made for batch = 2"
        ):
            cached_forward(m, torch.zeros(3, 4, dtype=torch.long), cache)
        cached_forward(m, torch.zeros(2, 20, dtype=torch.long), cache)
        with pytest.raises(
            ValueError, match="the cache holds 20 positions, and 5 more would pass n_ctx = 24"
        ):
            cached_forward(m, torch.zeros(2, 5, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="another model's config"):
            other = KVCache(replace(CFG, n_layers=3), 2)
            cached_forward(m, torch.zeros(2, 1, dtype=torch.long), other)


def test_cache_reorder_copies_rows():
    cache = KVCache(CFG, 3)
    k = torch.arange(3.0)[:, None, None, None].expand(3, 2, CFG.n_heads, CFG.d_head)
    cache.update(0, k, -k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.keys(0)[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0] and cache.values(0)[
        :, 1, 0, 0
    ].tolist() == [-2.0, -2.0, -0.0]


# ---------------------------------------------------- the KV-cache check, on learner-style mistakes


def _learners(edit=None):
    """utils.sampling's attention_with_cache and forward_with_cache as a learner would paste them,
    with `edit` (old, new) applied."""
    source = (
        inspect.getsource(utils.sampling.attention_with_cache)
        + "\n\n"
        + inspect.getsource(utils.sampling.forward_with_cache)
    )
    if edit:
        assert source.count(edit[0]) == 1, edit[0]
        source = source.replace(*edit)
    namespace = dict(vars(utils.sampling))
    exec(compile(source, "<learner's cell>", "exec"), namespace)
    return namespace["forward_with_cache"]


def test_kv_cache_check_passes_the_solution(capsys):
    check_kv_cache(utils.sampling.forward_with_cache)
    check_kv_cache(_learners())
    assert "forward_with_cache passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit, cause",
    [
        (
            ("W_pos[past : past + tokens.shape[1]]", "W_pos[: tokens.shape[1]]"),
            "positions 0, 1, ... again",
        ),
        ((".triu(past + 1)", ".triu(1)"), "the causal mask is not shifted"),
        (
            (
                "(scores / math.sqrt(attn.cfg.d_head))"
                ".masked_fill(future, attn.IGNORE).softmax(-1)",
                "(scores / math.sqrt(attn.cfg.d_head)).softmax(-1)",
            ),
            "there is no causal mask in the cached path",
        ),
        ((".triu(past + 1)", ".triu(past)"), "the shifted mask is off by one"),
        (
            (
                "    k, v = cache.update(layer, k, v)"
                "  # [batch, past + new_posn, n_heads, d_head]\n",
                "",
            ),
            "never reach the cache",
        ),
        (("    past = cache.length\n", "    past = 0\n"), "positions 0, 1, ... again"),
        (
            (
                "    k, v = cache.update(layer, k, v)"
                "  # [batch, past + new_posn, n_heads, d_head]\n",
                "    cache.update(layer, k, v)\n    k, v = cache.update(layer, k, v)\n",
            ),
            "more than once per layer",
        ),
    ],
)
def test_kv_cache_check_names_each_known_mistake(edit, cause):
    with pytest.raises(AssertionError, match="forward_with_cache") as failure:
        check_kv_cache(_learners(edit))
    assert "Likely cause" in str(failure.value) and cause in str(failure.value), str(failure.value)


@pytest.mark.parametrize(
    "edit",
    [
        ("math.sqrt(attn.cfg.d_head)", "math.sqrt(16)"),  # the ci config's d_head, written in
        (
            "einops.einsum(x, attn.W_Q, project)",
            "einops.einsum(x, attn.W_Q.reshape(-1, 64, 16), project)",
        ),
    ],
)
def test_kv_cache_check_fails_a_size_written_in(edit):
    """The check's models have sizes no run config has, so ci's sizes written in fail (they
    passed when its models were ci's shape)."""
    with pytest.raises(AssertionError, match="forward_with_cache") as failure:
        check_kv_cache(_learners(edit))
    assert "which no run config has" in str(failure.value) or "raised" in str(failure.value)


def test_kv_cache_check_reports_a_wrong_shape_and_a_crash():
    with pytest.raises(
        AssertionError, match=r"returned \(2, 11, 40\); expected logits of shape \(2, 4, 40\)"
    ):
        check_kv_cache(lambda model, tokens, cache: model(torch.zeros(2, 11, dtype=torch.long)))
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        check_kv_cache(lambda model, tokens, cache: 1 / 0)


def test_kv_cache_stub_shows_its_hint():
    with pytest.raises(NotImplementedError, match="embed the new tokens"):
        check_kv_cache(_learners_stub())


def _learners_stub():
    def forward_with_cache(model, tokens, cache):
        raise NotImplementedError("embed the new tokens")

    return forward_with_cache


# --------------------------------------------------------------------------- against Hugging Face


def _hf_and_ours(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    hf = new_gpt2(
        replace(cfg, init_range=0.2)
    )  # peakier than GPT-2's 0.02, so beams differ from the greedy text
    ours = load_gpt2_weights(DemoTransformer(cfg), hf).eval()
    fused = FusedTransformer(cfg).eval()
    fused.load_state_dict(ours.state_dict())
    return hf, ours, fused


def _hf_generate(hf, prompt, stop_token, **kwargs):
    hf.generation_config.eos_token_id = (
        stop_token  # None: no stop token at all, not the config's default
    )
    with torch.no_grad():
        return hf.generate(
            prompt,
            do_sample=False,
            attention_mask=torch.ones_like(prompt),
            pad_token_id=0 if stop_token is None else stop_token,
            **kwargs,
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_matches_hugging_face(seed):
    hf, ours, fused = _hf_and_ours(seed)
    prompts = torch.randint(0, CFG.d_vocab, (3, 6), generator=torch.Generator().manual_seed(seed))
    expected = _hf_generate(hf, prompts, None, max_new_tokens=15)
    for model in (ours, fused):
        for use_cache in (True, False):
            assert torch.equal(
                generate(model, prompts, 15, temperature=0, use_cache=use_cache), expected
            )
    stop = int(expected[1, 9])  # a token that the second row produces: rows stop at different steps
    expected = _hf_generate(hf, prompts, stop, max_new_tokens=15)
    assert torch.equal(generate(ours, prompts, 15, temperature=0, stop_token=stop), expected)


BEAM_SETTINGS = [
    dict(num_beams=2),
    dict(num_beams=3, length_penalty=1.0),
    dict(num_beams=4, length_penalty=0.5),
    dict(num_beams=3, length_penalty=2.0, no_repeat_ngram_size=2),
    dict(num_beams=5, no_repeat_ngram_size=1),
    dict(num_beams=3, stop_token="from the greedy text"),
    dict(
        num_beams=4, length_penalty=-0.5, stop_token="from the greedy text", no_repeat_ngram_size=3
    ),
    dict(num_beams=1),
]


@pytest.mark.parametrize(
    "settings",
    BEAM_SETTINGS,
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()).replace(" ", "_"),
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_matches_hugging_face(settings, seed):
    hf, ours, fused = _hf_and_ours(seed)
    prompt = torch.randint(
        0, CFG.d_vocab, (1, 4 + seed), generator=torch.Generator().manual_seed(seed)
    )
    settings = dict(settings)
    max_new = 12
    stop_token = settings.pop("stop_token", None)
    if stop_token is not None:
        stop_token = int(generate(ours, prompt, 3, temperature=0)[0, -1])
    num_beams = settings["num_beams"]
    expected = _hf_generate(
        hf,
        prompt,
        stop_token,
        max_new_tokens=max_new,
        early_stopping=True,
        num_return_sequences=num_beams,
        return_dict_in_generate=True,
        output_scores=True,
        **settings,
    )
    for model in (ours, fused):
        beams = beam_search(
            model, prompt, max_new_tokens=max_new, stop_token=stop_token, **settings
        )
        assert len(beams) == num_beams
        assert [score for _, score in beams] == sorted((score for _, score in beams), reverse=True)
        padded = torch.full(
            (num_beams, expected.sequences.shape[1]), 0 if stop_token is None else stop_token
        )
        for row, (text, _) in zip(padded, beams):
            row[: len(text)] = text
        assert torch.equal(padded, expected.sequences)
        if (
            num_beams > 1
        ):  # with one beam Hugging Face runs greedy decoding, which reports no sequence scores
            torch.testing.assert_close(
                torch.tensor([score for _, score in beams]),
                expected.sequences_scores,
                atol=1e-4,
                rtol=1e-5,
            )
        if stop_token is not None:
            assert all(
                stop_token not in text[prompt.shape[1] : -1] for text, _ in beams
            )  # a beam never extends past its stop token


def test_beam_search_differs_from_greedy_somewhere():
    """The settings above test something: with several beams, the best text is not always the
    greedy one."""
    differ = 0
    for seed in range(3):
        _, ours, _ = _hf_and_ours(seed)
        prompt = torch.randint(
            0, CFG.d_vocab, (1, 4 + seed), generator=torch.Generator().manual_seed(seed)
        )
        differ += not torch.equal(
            beam_search(ours, prompt, 4, 12)[0][0], generate(ours, prompt, 12, temperature=0)[0]
        )
    assert differ >= 1


def test_beam_search_past_n_ctx_runs_and_agrees_without_cache():
    model, _ = _models(3)
    prompt = torch.randint(0, CFG.d_vocab, (1, 20), generator=torch.Generator().manual_seed(3))
    beams = beam_search(
        model, prompt, 3, 10
    )  # 20 + 10 > n_ctx = 24: the window slides, the cache is rebuilt
    assert all(len(text) == 30 for text, _ in beams)
    # the best beam's score is the mean log-probability of its new tokens, read from the uncached
    # model
    text, score = beams[0]
    with torch.no_grad():
        log_probs = [
            next_logits(model, text[None, :t]).log_softmax(-1)[0, text[t]].item()
            for t in range(20, 30)
        ]
    assert math.isclose(score, sum(log_probs) / 10, rel_tol=1e-4)


# ---------------------------------------------------------------------- the samplers, statistically


class FixedLogits(nn.Module):
    """A stand-in model: the same next-token logits whatever the tokens."""

    def __init__(self, logits, n_ctx=64):
        super().__init__()
        self.logits = logits
        self.cfg = replace(CFG, d_vocab=len(logits), n_ctx=n_ctx)

    def forward(self, tokens, cache=None):
        return self.logits.expand(tokens.shape[0], tokens.shape[1], -1)


LOGITS = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -3.0, -4.0])
N = 40_000  # draws per test: one new token for each of N rows


def _frequencies(model, prompt_row=(0,), **kwargs):
    prompt = torch.tensor([list(prompt_row)]).expand(N, -1)
    drawn = generate(model, prompt, 1, use_cache=False, seed=1234, **kwargs)[:, -1]
    return torch.bincount(drawn, minlength=len(LOGITS)).double() / N


def _assert_matches(frequencies, probs):
    """Each frequency within 5 standard errors of its probability (sqrt(p (1 - p) / N), at most
    0.0025 here), plus 1e-4: with the fixed seed the test is deterministic, and a wrong sampler (a
    temperature applied after the softmax, one token too many) is off by far more. Zero-probability
    tokens must never be drawn."""
    probs = probs.double()
    tolerance = 5 * (probs * (1 - probs) / N).sqrt() + 1e-4
    assert ((frequencies - probs).abs() <= tolerance).all(), (frequencies, probs)
    assert (frequencies[probs == 0] == 0).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampled_frequencies_match_softmax_of_logits_over_temperature(temperature):
    _assert_matches(
        _frequencies(FixedLogits(LOGITS), temperature=temperature),
        (LOGITS / temperature).softmax(-1),
    )


def test_temperature_zero_is_greedy():
    assert (
        generate(
            FixedLogits(LOGITS),
            torch.zeros(5, 1, dtype=torch.long),
            4,
            temperature=0,
            use_cache=False,
        )[:, 1:]
        == 0
    ).all()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_never_samples_outside_the_k_largest(k):
    shuffled = LOGITS[torch.randperm(len(LOGITS), generator=torch.Generator().manual_seed(k))]
    frequencies = _frequencies(FixedLogits(shuffled), top_k=k)
    top = shuffled.topk(k).indices
    expected = torch.zeros(len(LOGITS))
    expected[top] = shuffled[top].softmax(-1)
    _assert_matches(frequencies, expected)
    assert set(frequencies.nonzero().flatten().tolist()) == set(top.tolist())


def test_top_k_keeps_the_logits_tied_with_the_kth_as_hugging_face_does():
    """Ties at the k-th logit (common in a bf16 model's logits) are all kept, as Hugging Face's
    TopKLogitsWarper and nanoGPT keep them, rather than k of them picked by token id."""
    from transformers.generation.logits_process import TopKLogitsWarper

    assert utils.sampling.apply_top_k(torch.tensor([[3.0, 2.0, 2.0, 1.0]]), 2).isfinite().sum() == 3
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 500, generator=generator).bfloat16().float()  # bf16: many ties
    tied = 0
    for k in (1, 5, 50):
        ours = utils.sampling.apply_top_k(logits, k)
        theirs = TopKLogitsWarper(k)(None, logits.clone())
        assert torch.equal(ours.isfinite(), theirs.isfinite()), k
        tied += int((ours.isfinite().sum(-1) > k).sum())
    assert tied, "no tie in the test's logits"


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8, 0.95, 1.0])
def test_top_p_samples_exactly_from_the_nucleus(p):
    probs = LOGITS.softmax(-1)  # sorted already: 0.388, 0.235, 0.143, ...
    cumulative = probs.cumsum(-1)
    size = (
        int((cumulative < p).sum()) + 1
    )  # the smallest set whose mass reaches p, including the token that crosses it
    size = min(size, len(LOGITS))
    frequencies = _frequencies(FixedLogits(LOGITS), top_p=p)
    expected = torch.zeros(len(LOGITS))
    expected[:size] = probs[:size] / probs[:size].sum()
    _assert_matches(frequencies, expected)
    assert frequencies.nonzero().flatten().tolist() == list(range(size))
    if p == 0.3:
        assert size == 1  # the top token alone (0.388) is more than p: it stays


def test_frequency_penalty_lowers_a_repeated_tokens_probability_by_the_stated_amount():
    """Token 1 occurs 3 times in the prompt: with penalty 0.4 its logit falls by 1.2, so its odds
    against every other token fall by a factor e^1.2."""
    prompt_row = (1, 5, 1, 1)
    frequencies = _frequencies(FixedLogits(LOGITS), prompt_row, frequency_penalty=0.4)
    counts = torch.bincount(torch.tensor(prompt_row), minlength=len(LOGITS))
    _assert_matches(frequencies, (LOGITS - 0.4 * counts).softmax(-1))
    before = LOGITS.softmax(-1)
    odds_ratio = (frequencies[1] / frequencies[0]) / (before[1] / before[0])
    assert math.isclose(odds_ratio, math.exp(-1.2), rel_tol=0.05)


def test_frequency_penalty_counts_generated_tokens_too():
    """Greedy with penalty 0.6 and logits 2.0, 1.5, 1.0, 0.5, ...: once generated, token 0
    (2.0 - 0.6 = 1.4) falls behind token 1 (1.5), and so on. A penalty counted over the prompt only
    (token 9 here) would repeat token 0 forever."""
    model = FixedLogits(LOGITS)
    out = generate(
        model, torch.tensor([[9]]), 6, temperature=0, frequency_penalty=0.6, use_cache=False
    )[0, 1:].tolist()
    assert out == [0, 1, 0, 2, 1, 0]
    greedy = generate(model, torch.tensor([[9]]), 6, temperature=0, use_cache=False)
    assert greedy[0, 1:].tolist() == [0] * 6


def test_the_same_seed_gives_the_same_tokens():
    model, _ = _models()
    prompt = torch.randint(0, CFG.d_vocab, (2, 4))
    a, b, c = (generate(model, prompt, 20, temperature=1.0, seed=s) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- stop tokens


class Scripted(nn.Module):
    """A stand-in model whose greedy choice for row r at step t is script[r][t]."""

    def __init__(self, script, d_vocab=10):
        super().__init__()
        self.script = script
        self.cfg = replace(CFG, d_vocab=d_vocab, n_ctx=64)
        self.prompt_len = None

    def forward(self, tokens, cache=None):
        step = (
            tokens.shape[1] - self.prompt_len
            if cache is None
            else cache.start + cache.length + tokens.shape[1] - self.prompt_len
        )
        if cache is not None:
            for layer in range(
                self.cfg.n_layers
            ):  # keep the cache's count, as a real model's layers would
                k = torch.zeros(tokens.shape[0], tokens.shape[1], self.cfg.n_heads, self.cfg.d_head)
                cache.update(layer, k, k)
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], self.cfg.d_vocab)
        for row, script in enumerate(self.script):
            logits[row, -1, script[min(step, len(script) - 1)]] = 1.0
        return logits


@pytest.mark.parametrize("use_cache", [True, False])
def test_rows_that_stop_are_padded_and_generation_ends_when_all_have(use_cache, monkeypatch):
    # the scripted model keeps the cache's count itself
    monkeypatch.setattr(utils.sampling, "cached_forward", lambda m, t, c: m(t, cache=c))
    monkeypatch.setattr(utils.sampling, "check_generate_args", lambda *args: None)
    model = Scripted([[4, 9, 5, 5, 5, 5], [3, 3, 3, 9, 6, 6], [1, 2, 3, 4, 5, 6]])
    model.prompt_len = 2
    prompt = torch.tensor([[7, 8]] * 3)
    out = generate(model, prompt, 10, temperature=0, stop_token=9, use_cache=use_cache)
    assert out[:, 2:].tolist() == [
        [4, 9, 9, 9, 9, 9, 9, 9, 9, 9],
        [3, 3, 3, 9, 9, 9, 9, 9, 9, 9],
        [1, 2, 3, 4, 5, 6, 6, 6, 6, 6],
    ]
    model.script = model.script[:2]
    out = generate(model, prompt[:2], 10, temperature=0, stop_token=9, use_cache=use_cache)
    assert out[:, 2:].tolist() == [[4, 9, 9, 9], [3, 3, 3, 9]]  # both stopped: no more steps


# --------------------------------------------------------------------------- bad input


def _model():
    return _models()[0]


PROMPT = torch.tensor([[1, 2, 3]])
BAD_CALLS = [
    (dict(temperature=-1), ValueError, ("temperature", "-1", ">= 0")),
    (dict(temperature=float("nan")), ValueError, ("temperature", "nan", ">= 0")),
    (dict(temperature="hot"), TypeError, ("temperature", "'hot'", "finite number")),
    (dict(top_p=0), ValueError, ("top_p", "0", "(0, 1]")),
    (dict(top_p=1.5), ValueError, ("top_p", "1.5", "(0, 1]")),
    (dict(top_p="0.9"), TypeError, ("top_p", "'0.9'", "(0, 1]")),
    (dict(top_k=0), ValueError, ("top_k", "0", "positive int")),
    (dict(top_k=2.5), TypeError, ("top_k", "2.5", "positive int")),
    (dict(frequency_penalty="high"), TypeError, ("frequency_penalty", "'high'", "finite number")),
    (dict(frequency_penalty=None), TypeError, ("frequency_penalty", "None", "finite number")),
    (
        dict(frequency_penalty=float("inf")),
        ValueError,
        ("frequency_penalty", "inf", "finite number"),
    ),
    (
        dict(stop_token=CFG.d_vocab),
        ValueError,
        ("stop_token", str(CFG.d_vocab), f"[0, {CFG.d_vocab})"),
    ),
    (dict(stop_token=-1), ValueError, ("stop_token", "-1", ">= 0")),
    (dict(seed=1.5), TypeError, ("seed", "1.5", ">= 0")),
    (dict(use_cache="yes"), TypeError, ("use_cache", "'yes'", "True or False")),
    (dict(max_new_tokens=-1), ValueError, ("max_new_tokens", "-1", ">= 0")),
    (
        dict(tokens=torch.zeros(1, 0, dtype=torch.long)),
        ValueError,
        ("tokens", "(1, 0)", "at least one token"),
    ),
    (dict(tokens=torch.tensor([1, 2])), ValueError, ("tokens", "(2,)", "tokens[None]")),
    (dict(tokens=[[1, 2]]), TypeError, ("tokens", "list", "torch.tensor")),
    (dict(tokens=torch.tensor([[1.0, 2.0]])), TypeError, ("tokens", "float32", "int64")),
    (
        dict(tokens=torch.tensor([[1, CFG.d_vocab]])),
        ValueError,
        ("tokens", f"[0, {CFG.d_vocab})", str(CFG.d_vocab)),
    ),
    (dict(model="gpt2"), TypeError, ("model", "str", "DemoTransformer")),
]


@pytest.mark.parametrize(
    "kwargs, error, needles", BAD_CALLS, ids=lambda x: ",".join(x) if isinstance(x, dict) else None
)
def test_generate_bad_input_names_the_argument_and_what_is_allowed(kwargs, error, needles):
    args = {**dict(model=_model(), tokens=PROMPT, max_new_tokens=3), **kwargs}
    with pytest.raises(error) as info:
        generate(args.pop("model"), args.pop("tokens"), args.pop("max_new_tokens"), **args)
    assert all(n in str(info.value) for n in needles), str(info.value)


BAD_BEAMS = [
    (dict(num_beams=0), ValueError, ("num_beams", "0", "positive int")),
    (dict(num_beams=2.0), TypeError, ("num_beams", "2.0", "positive int")),
    (dict(max_new_tokens=0), ValueError, ("max_new_tokens", "0", "positive int")),
    (dict(length_penalty="long"), TypeError, ("length_penalty", "'long'", "finite number")),
    (dict(length_penalty=float("nan")), ValueError, ("length_penalty", "nan", "finite number")),
    (dict(no_repeat_ngram_size=-1), ValueError, ("no_repeat_ngram_size", "-1", ">= 0")),
    (dict(stop_token=10**6), ValueError, ("stop_token", str(10**6), f"[0, {CFG.d_vocab})")),
    (dict(tokens=torch.tensor([[1, 2], [3, 4]])), ValueError, ("tokens", "(2, 2)", "[1, posn]")),
    (
        dict(tokens=torch.zeros(1, 0, dtype=torch.long)),
        ValueError,
        ("tokens", "(1, 0)", "at least one token"),
    ),
]


@pytest.mark.parametrize(
    "kwargs, error, needles", BAD_BEAMS, ids=lambda x: ",".join(x) if isinstance(x, dict) else None
)
def test_beam_search_bad_input_names_the_argument_and_what_is_allowed(kwargs, error, needles):
    args = {**dict(tokens=PROMPT, num_beams=2, max_new_tokens=3), **kwargs}
    with pytest.raises(error) as info:
        beam_search(
            _model(), args.pop("tokens"), args.pop("num_beams"), args.pop("max_new_tokens"), **args
        )
    assert all(n in str(info.value) for n in needles), str(info.value)


def test_a_model_not_built_like_demotransformer_gets_a_clear_error_and_works_uncached():
    class OtherModel(nn.Module):  # a model without DemoTransformer's blocks, embed and unembed
        def __init__(self):
            super().__init__()
            self.inner = _model()
            self.cfg = self.inner.cfg

        def forward(self, tokens):
            return self.inner(tokens)

    with pytest.raises(TypeError, match="KV cache runs through.*use_cache=False"):
        generate(OtherModel(), PROMPT, 3)
    assert generate(OtherModel(), PROMPT, 3, temperature=0, use_cache=False).shape == (1, 6)


def test_zero_new_tokens_returns_the_prompt():
    assert torch.equal(generate(_model(), PROMPT, 0), PROMPT)


# ------------------------------------------------------- notebook 04's model: the latest checkpoint


def test_latest_checkpoint_is_the_one_written_last(tmp_path):
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "missing") is None
    # an older run, resumed in its own folder, wrote last: the latest is not the one with the
    # largest name
    files = [
        tmp_path / "run_20240101-090000" / "step_000900.pt",
        tmp_path / "run_20250101-120000" / "step_000200.pt",
        tmp_path / "run_20250101-120000" / "step_000100.pt",
        tmp_path / "run_20240101-090000" / "step_000800.pt",
    ]
    for age, path in enumerate(reversed(files)):  # the first file listed is written last
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))
    (tmp_path / "run_20250101-120000" / "step_000300.pt.123.tmp").write_bytes(
        b""
    )  # a partial save: never a checkpoint
    (tmp_path / "step_000999.pt").write_bytes(b"")  # not in a run folder
    assert latest_checkpoint(tmp_path) == files[0]
    assert latest_checkpoint(str(tmp_path)) == files[0]
    # one run's folder: its own latest (before, None, as if it held no checkpoint)
    assert latest_checkpoint(tmp_path / "run_20250101-120000") == files[1]


def test_the_fused_cached_path_sees_weights_change():
    """FusedAttention keeps its fused q/k/v weight between generation steps; an update of any
    weight must make it again."""
    _, fused = _models(4)
    prompt = torch.randint(0, CFG.d_vocab, (1, 5), generator=torch.Generator().manual_seed(4))
    before = generate(fused, prompt, 8, temperature=0)
    with torch.no_grad():
        for block in fused.blocks:
            block.attn.W_K.mul_(-3)  # in place, as an optimizer step or load_state_dict would
            block.attn.b_V.add_(1)
    after = generate(fused, prompt, 8, temperature=0)
    assert torch.equal(
        after, generate(fused, prompt, 8, temperature=0, use_cache=False)
    ) and not torch.equal(before, after)
    fused.blocks[0].attn.W_Q.requires_grad_(True)
    # with gradients on, the cached path trains W_Q too
    cached_forward(fused, prompt, KVCache(CFG, 1)).sum().backward()
    assert (
        fused.blocks[0].attn.W_Q.grad is not None and fused.blocks[0].attn.W_Q.grad.abs().sum() > 0
    )
