"""Statistical tests of the samplers: each logit function applied, then sampled with
torch.multinomial.

Run against the checks' own references (utils/checks/sampling.py), and against utils/sampling.py
(notebook 04's exported code) when it exists. Each expected distribution is computed here, directly,
not by the code under test.

Tolerances (N = 200,000 samples, fixed seeds, so each run gives the same samples): every token's
sampled frequency f must be within 5 standard deviations of its probability q,
|f - q| <= 5 * sqrt(q * (1 - q) / N) (at most 0.0056, for q = 0.5); a log-odds estimate must be
within 5 standard errors, 5 * sqrt(1 / n_a + 1 / n_b) for counts n_a and n_b. With 5 sigma, a
correct sampler fails a given comparison with probability under 1e-6; the wrong distributions below
are 20 sigma or more off.
"""

import importlib
import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch

from utils.checks import sampling as reference

N = 200_000
SIGMAS = 5.0

REFERENCE = SimpleNamespace(
    apply_temperature=reference._temperature,
    apply_frequency_penalty=reference._frequency_penalty,
    apply_top_k=reference._top_k,
    apply_top_p=reference._top_p,
)


def _implementations():
    yield pytest.param(REFERENCE, id="checks-reference")
    if importlib.util.find_spec("utils.sampling") is None:
        yield pytest.param(
            None,
            id="utils.sampling",
            marks=pytest.mark.skip(reason="utils/sampling.py (notebook 04) not there yet"),
        )
    else:
        yield pytest.param(importlib.import_module("utils.sampling"), id="utils.sampling")


IMPLEMENTATIONS = list(_implementations())


def _sample(logits, seed=0, n=N):
    """Token counts of n samples from softmax(logits) (one row), with torch.multinomial."""
    generator = torch.Generator().manual_seed(seed)
    samples = torch.multinomial(logits.softmax(-1), n, replacement=True, generator=generator)
    return torch.bincount(samples.flatten(), minlength=logits.shape[-1])


def _assert_frequencies(counts, probs):
    """Every token's frequency within SIGMAS binomial standard deviations of its probability
    (exactly 0 where q = 0)."""
    n = counts.sum().item()
    freq = counts.double() / n
    probs = probs.double()
    bound = SIGMAS * (probs * (1 - probs) / n).sqrt()
    error = (freq - probs).abs()
    assert (error <= bound + 1e-12).all(), (
        f"frequencies {freq.tolist()}\nexpected    {probs.tolist()}\nbound {bound.tolist()}"
    )
    assert ((probs == 0) <= (counts == 0)).all(), "a token with probability 0 was sampled"


def _logits(seed, d_vocab=10, scale=1.5):
    return scale * torch.randn(1, d_vocab, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------- temperature


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sampled_frequencies_match_softmax_of_logits_over_temperature(impl, temperature):
    logits = _logits(0)
    expected = torch.exp(logits[0].double() / temperature)
    expected /= expected.sum()
    counts = _sample(impl.apply_temperature(logits, temperature), seed=1)
    _assert_frequencies(counts, expected)
    if (
        temperature != 1.0
    ):  # the test can fail: the untempered distribution is far outside the tolerance
        with pytest.raises(AssertionError):
            _assert_frequencies(_sample(logits, seed=1), expected)


# --------------------------------------------------------- top-k


@pytest.mark.parametrize("k", [1, 3, 7, 10])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_top_k_never_samples_outside_the_k_largest(impl, k):
    logits = _logits(2)
    top = set(sorted(range(10), key=lambda v: -logits[0, v].item())[:k])
    counts = _sample(impl.apply_top_k(logits, k), seed=3)
    assert {
        v for v in range(10) if counts[v] > 0
    } == top  # nothing outside; every one of the k (N is large) appears
    expected = torch.tensor(
        [math.exp(logits[0, v].item()) if v in top else 0.0 for v in range(10)], dtype=torch.float64
    )
    _assert_frequencies(counts, expected / expected.sum())


# --------------------------------------------------------- top-p


def _nucleus(probs, p):
    """The smallest set of most probable tokens whose total probability reaches p (probs: a list, or
    a dict token -> prob)."""
    probs = probs if isinstance(probs, dict) else dict(enumerate(probs))
    kept, mass = set(), 0.0
    for v in sorted(probs, key=lambda v: -probs[v]):
        kept.add(v)
        mass += probs[v]
        if mass >= p:
            break
    return kept


SHUFFLED = [3, 0, 4, 1, 2, 6, 5]
DESIGNED = torch.tensor([[0.30, 0.25, 0.20, 0.12, 0.08, 0.03, 0.02]]).log()[
    :, SHUFFLED
]  # sums .30 .55 .75 .87 .95 .98


@pytest.mark.parametrize(
    "logits, p, size",
    [
        (DESIGNED, 0.2, 1),  # the top token alone exceeds p: it is kept
        (DESIGNED, 0.5, 2),  # .30 + .25 crosses p: both kept
        (DESIGNED, 0.8, 4),
        (DESIGNED, 0.97, 6),
        (_logits(4), 0.6, None),
        (_logits(5, scale=0.5), 0.9, None),
    ],
    ids=["top-alone", "crossing", "p=0.8", "p=0.97", "random-0.6", "flat-0.9"],
)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_top_p_samples_exactly_the_nucleus(impl, logits, p, size):
    probs = logits[0].double().softmax(-1).tolist()
    nucleus = _nucleus(probs, p)
    assert size is None or len(nucleus) == size
    counts = _sample(impl.apply_top_p(logits, p), seed=6)
    assert {
        v for v in range(len(probs)) if counts[v] > 0
    } == nucleus  # every nucleus token appears, and nothing else
    expected = torch.tensor(
        [q if v in nucleus else 0.0 for v, q in enumerate(probs)], dtype=torch.float64
    )
    _assert_frequencies(counts, expected / expected.sum())


# --------------------------------------------------------- frequency penalty


@pytest.mark.parametrize("penalty", [0.4, 1.0])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_frequency_penalty_shifts_log_odds_by_penalty_times_count(impl, penalty):
    """log(p_v / p_u) drops by penalty * count(v) against any token u not in the text; each row its
    own counts."""
    logits = torch.cat([_logits(7), _logits(8)])
    tokens = torch.tensor(
        [[3, 3, 7, 1, 3, 9], [2, 2, 2, 2, 5, 8]]
    )  # row 0: 3 three times; row 1: 2 four times
    penalised = impl.apply_frequency_penalty(logits, tokens, penalty)
    for row in range(2):
        counts = _sample(penalised[row : row + 1], seed=10 + row)
        text = tokens[row].tolist()
        unseen = [u for u in range(10) if u not in text]
        u = max(unseen, key=lambda u: counts[u].item())  # the best-estimated reference token
        for v in set(text):
            measured = math.log(counts[v].item() / counts[u].item())
            expected = logits[row, v].item() - logits[row, u].item() - penalty * text.count(v)
            se = math.sqrt(1 / counts[v].item() + 1 / counts[u].item())
            assert abs(measured - expected) <= SIGMAS * se, (row, v, measured, expected, se)
        for w in unseen:  # tokens not in the text keep their odds
            measured = math.log(counts[w].item() / counts[u].item())
            se = math.sqrt(1 / counts[w].item() + 1 / counts[u].item())
            assert abs(measured - (logits[row, w] - logits[row, u]).item()) <= SIGMAS * se


# --------------------------------------------------------- all four, in generate's order


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_penalty_temperature_top_k_top_p_in_order(impl):
    """generate's order: frequency penalty, temperature, top-k, top-p; the distribution computed
    here step by step."""
    logits, tokens = _logits(9, d_vocab=12, scale=1.0), torch.tensor([[4, 4, 0, 11]])
    penalty, temperature, k, p = 0.5, 0.7, 6, 0.8
    out = impl.apply_top_p(
        impl.apply_top_k(
            impl.apply_temperature(
                impl.apply_frequency_penalty(logits, tokens, penalty), temperature
            ),
            k,
        ),
        p,
    )
    scores = [
        (logits[0, v].item() - penalty * tokens[0].tolist().count(v)) / temperature
        for v in range(12)
    ]
    top = sorted(range(12), key=lambda v: -scores[v])[:k]
    weights = {v: math.exp(scores[v]) for v in top}
    nucleus = _nucleus({v: w / sum(weights.values()) for v, w in weights.items()}, p)
    expected = torch.tensor(
        [weights[v] if v in nucleus else 0.0 for v in range(12)], dtype=torch.float64
    )
    counts = _sample(out, seed=12)
    assert {v for v in range(12) if counts[v] > 0} == nucleus
    _assert_frequencies(counts, expected / expected.sum())


# --------------------------------------------------------- generate counts the generated tokens too


def test_generate_penalises_generated_tokens_not_only_the_prompt():
    """With a huge frequency penalty no token may occur twice: counting over the prompt only would
    let generated tokens repeat (15 draws from 37 tokens almost surely repeat one); counting over
    the generated part only would let the prompt's."""
    sampling = pytest.importorskip(
        "utils.sampling", reason="utils/sampling.py (notebook 04) not there yet"
    )
    from utils.model import DemoTransformer

    torch.manual_seed(0)
    model = DemoTransformer(
        reference.BEAM_CFG
    ).eval()  # small random weights: nearly uniform next-token distributions
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = sampling.generate(model, prompt, 15, temperature=1.0, frequency_penalty=100.0, seed=0)
    for row in out.tolist():
        assert len(set(row)) == len(row), row
    without = sampling.generate(
        model, prompt, 15, temperature=1.0, seed=0
    )  # the test can fail: without the penalty, repeats
    assert any(len(set(row)) < len(row) for row in without.tolist())
