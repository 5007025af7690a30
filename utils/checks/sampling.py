"""Notebook 04's checks: apply_temperature, apply_frequency_penalty, apply_top_k, apply_top_p and
beam_search.

The four logit functions are checked against small references below, on logits built so that each
known mistake gives a different answer (no ties, no cumulative mass near p, repeated tokens late in
the sequence). beam_search is checked against Hugging Face's `generate(num_beams=...,
early_stopping=True)` on a tiny GPT-2 with random weights, copied into a DemoTransformer. Each
reference can make the known mistakes (its `mistake=` argument); a failing check names the first
mistake that gives what the learner's code gave.

What the checks accept:
- Logits shifted by a constant per row (logits.log_softmax(-1) / temperature is fine): softmax, and
  so sampling, ignores it.
- A removed logit is -inf or any number <= -1e4 (torch.finfo(logits.dtype).min, -1e9, ...): each
  gets probability exactly 0. 0 is not: e^0 still counts. The advice asks for float("-inf").
- New tensors, or in-place operations on a copy. Changing the caller's logits or tokens is refused:
  generate itself would still work (it makes fresh logits each step), but the caller's tensor
  changes under them, so calling the function twice on the same logits (to compare settings, as the
  notebook does) applies it twice; and changing `tokens` would change the text.
"""

from __future__ import annotations

import inspect
import math

import torch

from utils.printing import print_wrapped
from utils.checks.core import (
    as_number,
    call_learner,
    fail,
    fits_every_case,
    known_mistake,
    learner_facing,
    mistakes_in,
    recognise,
    require_callable_as,
)
from utils.model import Config
from utils.validation import StaleCacheError

# --------------------------------------------------------------------------- known mistakes

TEMP_AFTER_SOFTMAX = known_mistake(
    "temp_after_softmax",
    "apply_temperature",
    "the temperature is applied to probabilities, after a softmax. It must divide the logits, "
    "before any softmax, and the function returns logits: return logits / temperature.",
)
TEMP_MULTIPLIED = known_mistake(
    "temp_multiplied",
    "apply_temperature",
    "the logits are multiplied by the temperature. Divide: logits / temperature (a low "
    "temperature makes the distribution sharper, so it must make the logits larger).",
)
FREQ_WRONG_SIGN = known_mistake(
    "freq_wrong_sign",
    "apply_frequency_penalty",
    "the penalty is added, which makes repeated tokens MORE likely. Subtract it: "
    "logits - penalty * counts.",
)
FREQ_PRESENCE = known_mistake(
    "freq_presence",
    "apply_frequency_penalty",
    "the penalty is subtracted once per distinct token (a presence penalty). "
    "A frequency penalty grows with the count: logits - penalty * counts, where counts[b, "
    "v] is how many times token v occurs in tokens[b].",
)
FREQ_PART_OF_TOKENS = known_mistake(
    "freq_part_of_tokens",
    "apply_frequency_penalty",
    "only part of `tokens` is counted (e.g. the first columns, the prompt, or all but the last). "
    "`tokens` holds every token so far, the prompt and the generated ones: count over the whole "
    "row.",
)
FREQ_NOT_PER_ROW = known_mistake(
    "freq_not_per_row",
    "apply_frequency_penalty",
    "the counts are not per row: each sequence in the batch is penalised for its own tokens only. "
    "Count tokens[b] for each row b (e.g. torch.zeros_like(logits).scatter_add_(-1, tokens, "
    "torch.ones_like(tokens, dtype=logits.dtype))), not tokens[0] or the whole batch flattened.",
)
TOPK_OFF_BY_ONE = known_mistake(
    "topk_off_by_one",
    "apply_top_k",
    "{kept} logits are kept per row, not k = {k}. Keep the k largest: "
    "logits.masked_fill(logits < logits.topk(k, dim=-1).values[:, -1:], float('-inf')).",
)
TOPK_DROPS_TIES = known_mistake(
    "topk_drops_ties",
    "apply_top_k",
    "a logit tied with the k-th largest was removed. topk's indices hold exactly k positions, "
    "picked among equal logits by position, so keeping only those drops the ties; keep every "
    "logit at least as large as the k-th: "
    "logits.masked_fill(logits < logits.topk(k, dim=-1).values[:, -1:], float('-inf')).",
)
TOPK_FILL_ZERO = known_mistake(
    "topk_fill_zero",
    "apply_top_k",
    "the removed logits are set to 0, and a logit of 0 still gets probability e^0 / sum after the "
    "softmax. Set them to float('-inf').",
)
TOPK_LARGEST_ONLY = known_mistake(
    "topk_largest_only",
    "apply_top_k",
    "only each row's largest logit is kept, whatever k: topk's values come largest first, so "
    "values[:, :1] (or [:, 0]) is the largest; the k-th largest is the last column, "
    "values[:, -1:].",
)
TOPK_RETURNS_PROBS = known_mistake(
    "topk_returns_probs",
    "apply_top_k",
    "the function returns probabilities (a softmax, the removed ones 0), not logits. Like "
    "apply_temperature, it returns logits: the k largest unchanged, the others float('-inf'); "
    "generate takes the softmax once, after every filter.",
)
TOPK_WRONG_DIM = known_mistake(
    "topk_wrong_dim",
    "apply_top_k",
    "top-k runs over the batch dimension. Logits are [batch, d_vocab]: take the k largest of each "
    "row, dim=-1.",
)
TOPP_DROPS_CROSSING = known_mistake(
    "topp_drops_crossing",
    "apply_top_p",
    "the token that makes the cumulative probability cross p is dropped (keeping cumsum <= p, or "
    "< p). "
    "The nucleus is the smallest set whose mass REACHES p, so it includes that token: "
    "keep a token when the mass BEFORE it is < p, (cumsum - sorted_probs) < p.",
)
# tried before TOPP_KEEPS_NONE, whose shift gives the same at exactly p
TOPP_KEEPS_BOUNDARY_TOKEN = known_mistake(
    "topp_keeps_boundary_token",
    "apply_top_p",
    "a token whose mass before it is exactly p is kept (mass_before > p, or Hugging Face's old "
    "cumsum > p shifted right): the tokens before it already add up to p, so the nucleus, the "
    "smallest set whose mass reaches p, ends before it. Remove a token when the mass before it "
    "is >= p: keep it only when (cumsum - sorted_probs) < p. Here p = {p}: keep the most "
    "probable tokens until their mass is exactly {p}, and remove every token after them.",
)
TOPP_KEEPS_NONE = known_mistake(
    "topp_keeps_none",
    "apply_top_p",
    "when the most probable token alone has more than p of the mass, every token is removed (and "
    "the softmax of a row of -inf is NaN). The most probable token is always kept: "
    "keep a token when the mass before it is < p, which is 0 < p for the first.",
)
TOPP_FILL_ZERO = known_mistake(
    "topp_fill_zero",
    "apply_top_p",
    "the tokens outside the nucleus are set to 0, and a logit of 0 still gets probability "
    "e^0 / sum after the softmax. Set them to float('-inf').",
)
TOPP_P_ONE_REMOVES = known_mistake(
    "topp_p_one_removes",
    "apply_top_p",
    "p = 1 must keep every token, but in float32 the running total of a long row reaches 1.0 "
    "before its last tokens, so the mass before them is >= p. Handle p = 1 on its own: if p >= 1, "
    "return the logits as they are.",
)
TOPP_LOGIT_MASS = known_mistake(
    "topp_logit_mass",
    "apply_top_p",
    "the cumulative mass is summed over logits, not probabilities. "
    "Sort and sum logits.softmax(-1).",
)
TOPP_RETURNS_PROBS = known_mistake(
    "topp_returns_probs",
    "apply_top_p",
    "the function returns probabilities (a softmax), not logits. Like apply_temperature, it "
    "returns logits: the nucleus's unchanged, the others float('-inf'); generate takes the "
    "softmax once, after every filter.",
)
TOPP_UNSORTED = known_mistake(
    "topp_unsorted",
    "apply_top_p",
    "the mask is computed in sorted order but applied to the logits in their original order. "
    "Put it back in vocabulary order first: mask = sorted_mask.scatter(-1, sorted_indices, "
    "sorted_mask), then logits.masked_fill(mask, float('-inf')).",
)
BEAM_NO_LENGTH_NORM = known_mistake(
    "beam_no_length_norm",
    "beam_search",
    "the scores are not normalised by length, so longer beams always lose. "
    "A finished beam's score is sum(log-probs of its new tokens) / (number of new tokens ** "
    "length_penalty).",
)
BEAM_AFTER_STOP = known_mistake(
    "beam_after_stop",
    "beam_search",
    "beams keep extending after the stop token. A beam that picks stop_token is finished: "
    "move it (stop token included) to the finished beams with its score, and continue only the "
    "beams that have not stopped.",
)
BEAM_LENGTH_WITH_PROMPT = known_mistake(
    "beam_length_with_prompt",
    "beam_search",
    "the length in the normalisation counts the prompt. Divide by (number of NEW tokens) ** "
    "length_penalty.",
)
BEAM_STOP_NOT_COUNTED = known_mistake(
    "beam_stop_not_counted",
    "beam_search",
    "the stop token is not counted in the length. As in Hugging Face, it is a new token like the "
    "others: a beam that stops after 3 tokens and the stop token has length 4.",
)
BEAM_TOPK_PER_BEAM = known_mistake(
    "beam_topk_per_beam",
    "beam_search",
    "the best continuations are taken per beam (topk along dim=-1 of [beam, d_vocab]), not over "
    "all beams' candidates together, so the candidates are not in score order and the wrong ones "
    "may finish. Flatten first: (scores[:, None] + log_probs).flatten().topk(2 * num_beams), then "
    "beam = index // d_vocab, token = index % d_vocab.",
)
BEAM_TOO_FEW_CANDIDATES = known_mistake(
    "beam_too_few_candidates",
    "beam_search",
    "only num_beams candidates are considered each step. Take the 2 * num_beams best "
    "continuations: up to num_beams of them may finish (end in stop_token) and num_beams "
    "unfinished ones must still be left to run on.",
)
BEAM_ALL_CANDIDATES_FINISH = known_mistake(
    "beam_all_candidates_finish",
    "beam_search",
    "every candidate that ends in stop_token is finished, however low it ranks. As in Hugging "
    "Face, only a candidate among the num_beams best of the step's 2 * num_beams may finish; "
    "the others that end are dropped.",
)
BEAM_FINISHED_DROPPED = known_mistake(
    "beam_finished_dropped",
    "beam_search",
    "the beams finished in earlier steps are dropped (the finished list is started again each "
    "step). Keep every finished beam in one list made before the loop, add each step's to it, "
    "and keep its num_beams best.",
)
BEAM_NGRAM_NEW_ONLY = known_mistake(
    "beam_ngram_new_only",
    "beam_search",
    "n-grams are banned only among the new tokens. As Hugging Face's no_repeat_ngram_size, ban "
    "a token that would repeat an n-gram of the whole sequence, prompt included: give "
    "ban_repeated_ngrams every beam's tokens, prompt and all.",
)
BEAM_ONLY_BEST = known_mistake(
    "beam_only_best",
    "beam_search",
    "only the best beam(s) are returned. Return every finished beam (num_beams of them), best "
    "first, each as (sequence, score): the whole sorted list, not finished[0].",
)
BEAM_CACHE_NOT_REORDERED = known_mistake(
    "beam_cache_not_reordered",
    "beam_search",
    "the KV cache is not reordered when the beams are re-chosen: row i of the cache still holds "
    "the keys and values of the old beam i, while the new beam i continues another one. After "
    "choosing the beams that run on, cache.reorder(rows), rows[i] = the old beam that new beam "
    "i continues (as beams = sequences[keep], rows = beam[keep]).",
    raises=StaleCacheError,  # next_logits sees the cache hold other tokens than the beams
)

REMOVED = -1e4  # at or below this a logit counts as removed: e^(-1e4 - max) is exactly 0 in float32
ATOL, RTOL = 1e-4, 1e-5  # float32


# ------------------------------------------------------ the references, which can make each mistake


def _temperature(logits, temperature, mistake=None):
    """logits / temperature; or with a known mistake (several ways of making it)."""
    if mistake is TEMP_AFTER_SOFTMAX:
        probs = logits.softmax(-1)
        sharpened = probs ** (1 / temperature)
        return [
            probs / temperature,
            sharpened,
            sharpened / sharpened.sum(-1, keepdim=True),
            (probs / temperature).log(),
            (logits / temperature).softmax(-1),
        ]
    if mistake is TEMP_MULTIPLIED:
        return logits * temperature
    return logits / temperature


def _counts(tokens, d_vocab, dtype=torch.float32):
    """counts[b, v]: how often token v occurs in tokens[b]."""
    counts = torch.zeros(tokens.shape[0], d_vocab, dtype=dtype)
    return counts.scatter_add_(-1, tokens, torch.ones(tokens.shape, dtype=dtype))


def _frequency_penalty(logits, tokens, penalty, mistake=None):
    """logits - penalty * counts; or with a known mistake."""
    d_vocab = logits.shape[-1]
    counts = _counts(tokens, d_vocab)
    if mistake is FREQ_WRONG_SIGN:
        return logits + penalty * counts
    if mistake is FREQ_PRESENCE:
        return logits - penalty * (counts > 0).float()
    if mistake is FREQ_PART_OF_TOKENS:
        n = tokens.shape[1]
        parts = [tokens[:, :j] for j in range(1, n)] + [tokens[:, j:] for j in range(1, n)]
        return [logits - penalty * _counts(part, d_vocab) for part in parts]
    if mistake is FREQ_NOT_PER_ROW:
        return [
            logits - penalty * counts[:1],
            logits - penalty * _counts(tokens.reshape(1, -1), d_vocab),
        ]
    return logits - penalty * counts


def _top_k(logits, k, mistake=None, dim=-1):
    """Every logit outside the k largest of its row set to -inf; or with a known mistake."""
    if mistake is TOPK_OFF_BY_ONE:
        return [_top_k(logits, k + 1)] + ([_top_k(logits, k - 1)] if k > 1 else [])
    if mistake is TOPK_WRONG_DIM:
        return _top_k(logits, k, dim=0)
    if mistake is TOPK_LARGEST_ONLY:
        return _top_k(logits, 1) if k < logits.shape[dim] else logits.clone()
    if mistake is TOPK_RETURNS_PROBS:
        return _as_probabilities(logits, torch.isfinite(_top_k(logits, k)))
    if mistake is TOPK_DROPS_TIES and k < logits.shape[dim]:
        return [_exactly_k(logits, k, pick, dim) for pick in ("topk", "first", "last")]
    if k >= logits.shape[dim]:
        return logits.clone()
    kth = logits.topk(k, dim=dim).values.narrow(dim, k - 1, 1)
    return logits.masked_fill(logits < kth, 0.0 if mistake is TOPK_FILL_ZERO else float("-inf"))


def _exactly_k(logits, k, pick, dim=-1):
    """k logits of each row kept, and among ties at the k-th the ones topk picks, or the first or
    the last by position: what keeping topk's (or a sort's) indices gives."""
    if pick == "topk":
        kept = logits.topk(k, dim=dim).indices
    else:
        flipped = pick == "last"
        ranked = (logits.flip(dim) if flipped else logits).argsort(
            dim=dim, descending=True, stable=True
        )
        kept = ranked.narrow(dim, 0, k)
        kept = logits.shape[dim] - 1 - kept if flipped else kept
    return torch.full_like(logits, float("-inf")).scatter(dim, kept, logits.gather(dim, kept))


def _as_probabilities(logits, kept):
    """What a filter that returns probabilities gives: the kept tokens' softmax, renormalised over
    them or not, and the others 0 or -inf."""
    probs = logits.softmax(-1).masked_fill(~kept, 0.0)
    variants = [probs, probs / probs.sum(-1, keepdim=True)]
    return variants + [v.masked_fill(~kept, float("-inf")) for v in variants]


def _top_p(logits, p, mistake=None):
    """The nucleus: keep the most probable tokens until their mass reaches p (the token that crosses
    p included, and always at least one); the rest -inf. Or with a known mistake."""
    if mistake is TOPP_RETURNS_PROBS:
        return _as_probabilities(logits, torch.isfinite(_top_p(logits, p)))
    if p >= 1 and mistake is not TOPP_P_ONE_REMOVES:
        return logits.clone()  # every token
    mass = logits if mistake is TOPP_LOGIT_MASS else logits.softmax(-1)
    sorted_mass, order = mass.sort(-1, descending=True)
    cumulative = sorted_mass.cumsum(-1)
    if (
        mistake is TOPP_LOGIT_MASS
    ):  # learners who sum logits get the crossing token right or wrong, as others do
        rules = [cumulative - sorted_mass >= p, cumulative > p]
        return [logits.masked_fill(r.scatter(-1, order, r), float("-inf")) for r in rules]
    if mistake is TOPP_DROPS_CROSSING:  # the most probable token kept or not, as learners write it
        rules = []
        for remove in (cumulative > p, cumulative >= p):
            kept_first = remove.clone()
            kept_first[..., 0] = False
            rules += [remove, kept_first]
        return [logits.masked_fill(r.scatter(-1, order, r), float("-inf")) for r in rules]
    if mistake is TOPP_KEEPS_BOUNDARY_TOKEN:
        remove = cumulative - sorted_mass > p
    elif (
        mistake is TOPP_KEEPS_NONE
    ):  # shifted right to keep the crossing token, but the first position never cleared
        remove = cumulative > p
        remove[..., 1:] = remove[..., :-1].clone()
    else:
        remove = cumulative - sorted_mass >= p  # the mass before this token already reaches p
    if mistake is TOPP_UNSORTED:
        return [
            logits.masked_fill(remove, float("-inf")),
            logits.masked_fill(remove.gather(-1, order), float("-inf")),
        ]
    fill = 0.0 if mistake is TOPP_FILL_ZERO else float("-inf")
    return logits.masked_fill(remove.scatter(-1, order, remove), fill)


# --------------------------------------------------------------------------- comparing logits


def _removed(x):
    return x <= REMOVED  # -inf included


def _same_logits(got, expected) -> bool:
    """Equal up to a constant per row (softmax ignores it), with the same logits removed (-inf or <=
    -1e4)."""
    if (
        not isinstance(got, torch.Tensor)
        or tuple(got.shape) != tuple(expected.shape)
        or not got.is_floating_point()
    ):
        return False
    got = got.detach().to(torch.float32)
    if torch.isnan(got).any() or not torch.equal(_removed(got), _removed(expected)):
        return False
    kept = ~_removed(expected)
    diff = torch.where(kept, got - expected, torch.zeros_like(got))
    shift = diff.sum(-1, keepdim=True) / kept.sum(-1, keepdim=True).clamp_min(1)
    scale = expected.masked_fill(~kept, 0).abs().amax(-1, keepdim=True).clamp_min(1.0)
    return bool(((diff - shift).abs().masked_fill(~kept, 0) <= ATOL + RTOL * scale).all())


def _show(row) -> str:
    """A row of logits, or for a row too long to read, how many of them are removed."""
    if row.numel() > 20:
        return f"{row.numel():,} logits, {int(_removed(row).sum()):,} of them removed"
    return "[" + ", ".join("-inf" if v == float("-inf") else f"{v:.3g}" for v in row.tolist()) + "]"


def _learner_logits(fn, args, what, things_to_check, inputs):
    """Call the learner's function; it must return a float tensor and leave every input tensor
    unchanged."""
    before = [t.clone() for t in inputs]
    got = call_learner(fn, *args, what=what, things_to_check=things_to_check)
    for name, tensor, saved in zip(("logits", "tokens"), inputs, before):
        if not torch.equal(tensor, saved):
            fail(
                f"{what} changed the {name} it was given (an in-place operation such as {name} /= "
                f"..., {name}[...] = ... or .masked_fill_()). Generation itself would still run, "
                "but the caller's tensor changes: calling it twice on the same logits, "
                "to compare settings, applies it twice"
                + (
                    ", and changing tokens changes the text generated so far"
                    if name == "tokens"
                    else ""
                )
                + f". Work on a new tensor: {name} = {name}.clone() first, "
                "or use out-of-place operations (x / t, masked_fill without the underscore)."
            )
    if not isinstance(got, torch.Tensor):
        fail(
            f"{what} must return a tensor of logits [batch, d_vocab], got {type(got).__name__}"
            + (" (did the function end without a return?)" if got is None else "")
        )
    if not got.is_floating_point():
        fail(
            f"{what} returned a tensor of dtype {got.dtype}; "
            f"logits are floats (dtype {inputs[0].dtype})"
        )
    return got


def _compare_logits(got, expected, what, mistakes, reproduce, things_to_check, **facts):
    """Fail unless `got` equals `expected` (up to a constant per row), naming the first mistake that
    reproduces `got`."""
    if tuple(got.shape) != tuple(expected.shape):
        fail(
            f"{what} returned shape {tuple(got.shape)}, expected {tuple(expected.shape)} (batch, "
            "d_vocab): the same shape as the logits",
            recognise(got, mistakes, reproduce, _same_logits),
            things_to_check,
            **facts,
        )
    if _same_logits(got, expected):
        return
    got32 = got.detach().to(torch.float32)
    lines = [f"{what}: wrong output."]
    if torch.isnan(got32).any():
        lines.append("  Your output has NaN.")
    if torch.finfo(got.dtype).eps > torch.finfo(expected.dtype).eps:
        lines.append(
            f"  Your output is {got.dtype}, coarser than the logits' {expected.dtype}: return "
            "their dtype (no .half() or .bfloat16())."
        )
    wrong_rows = [
        b
        for b in range(expected.shape[0])
        if not _same_logits(got32[b : b + 1], expected[b : b + 1])
    ]
    b = wrong_rows[0] if wrong_rows else 0
    lines += [
        f"  Rows that differ: {wrong_rows}; row {b}:",
        f"    expected {_show(expected[b])}",
        f"    got      {_show(got32[b])}",
    ]
    fail(lines, recognise(got, mistakes, reproduce, _same_logits), things_to_check, **facts)


def _test_logits(seed, batch=4, d_vocab=10, scale=2.0):
    """Random logits without ties, far enough apart that every mistake shows."""
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, d_vocab, generator=generator)


def _logits_tied_at(k, seed=25):
    """Row 0 with two more logits equal to its k-th largest (k + 2 kept, as in bf16 logits, where
    ties are common); row 1 without ties."""
    logits = _test_logits(seed, batch=2)
    values, order = logits[0].sort(descending=True)
    logits[0, order[k : k + 2]] = values[k - 1]
    return logits


# --------------------------------------------------------------------------- the logit checks


@learner_facing
def check_temperature(fn) -> None:
    """`fn(logits, temperature)` must return logits / temperature (temperature > 0), as a new
    tensor."""
    things = (
        "return logits / temperature: divide the logits (not probabilities), and return logits, "
        "not a softmax."
    )
    cases = [
        (_test_logits(0), 0.5),
        (_test_logits(1, batch=2, d_vocab=7), 2.0),
        (_test_logits(2, batch=3), 0.1),
        (_test_logits(3, batch=1, d_vocab=5), 1.0),
    ]
    for logits, temperature in cases:
        what = f"apply_temperature(logits, temperature={temperature})"
        got = _learner_logits(fn, (logits, temperature), what, things, [logits])
        unchanged = lambda x: x - x.amax(-1, keepdim=True)  # noqa: E731  softmax ignores a shift
        if (
            temperature != 1
            and got.shape == logits.shape
            and torch.allclose(
                unchanged(got.detach().to(logits.dtype)), unchanged(logits), atol=1e-5
            )
        ):
            fail(
                f"{what}: the logits come back as they were (up to a constant): the temperature "
                "changed nothing. Divide them by it, whatever its value."
            )
        _compare_logits(
            got,
            _temperature(logits, temperature),
            what,
            mistakes_in("apply_temperature"),
            lambda m: _temperature(logits, temperature, m),
            things,
        )
    print_wrapped(
        f"apply_temperature passed: {len(cases)} cases, temperatures from 0.1 to 2, "
        "the caller's logits unchanged"
    )


@learner_facing
def check_frequency_penalty(fn) -> None:
    """`fn(logits, tokens, penalty)` must return logits - penalty * counts, counts[b, v] = how often
    v occurs in tokens[b]."""
    things = (
        "counts[b, v] = how many times token v occurs in tokens[b], over the whole row (prompt "
        "and generated tokens); it needs d_vocab entries per row (torch.bincount(row, "
        "minlength=d_vocab), or scatter_add_); return logits - penalty * counts."
    )
    cases = [
        # repeats everywhere, one token three times, another twice
        (_test_logits(10, batch=2), torch.tensor([[3, 1, 3, 4, 3, 9], [0, 0, 5, 2, 7, 5]]), 0.7),
        # the first five tokens of each row are distinct: its repeats come only late (in the
        # generated part)
        (
            _test_logits(11, batch=3, d_vocab=8),
            torch.tensor(
                [[0, 1, 2, 3, 4, 2, 2, 6], [7, 6, 5, 4, 3, 3, 7, 7], [1, 3, 5, 7, 0, 0, 0, 0]]
            ),
            2.0,
        ),
        # one row, one token repeated at the very end
        (_test_logits(12, batch=1, d_vocab=6), torch.tensor([[5, 4, 3, 2, 1, 1]]), 1.5),
        (
            _test_logits(13, batch=2, d_vocab=6),
            torch.tensor([[1, 1], [2, 3]]),
            0.0,
        ),  # no penalty: nothing changes
    ]
    for logits, tokens, penalty in cases:
        what = f"apply_frequency_penalty(logits, tokens, penalty={penalty})"
        got = _learner_logits(fn, (logits, tokens, penalty), what, things, [logits, tokens])
        _compare_logits(
            got,
            _frequency_penalty(logits, tokens, penalty),
            what,
            mistakes_in("apply_frequency_penalty"),
            lambda m: _frequency_penalty(logits, tokens, penalty, m),
            things,
        )
    print_wrapped(
        f"apply_frequency_penalty passed: {len(cases)} cases, with repeats early and late in the "
        "sequence, the caller's logits and tokens unchanged"
    )


@learner_facing
def check_top_k(fn) -> None:
    """`fn(logits, k)` must set every logit outside the k largest of its row to -inf (k >= d_vocab
    keeps all)."""
    things = (
        "keep the k largest logits of each row (dim=-1) and set the others to float('-inf'): "
        "logits.masked_fill(logits < logits.topk(k, dim=-1).values[:, -1:], float('-inf')); "
        "for k >= d_vocab, keep every logit (topk needs k <= d_vocab: use min(k, "
        "logits.shape[-1]))."
    )
    # batch 5 > k: top-k over the batch dimension runs and gives a different mask
    cases = [
        (_test_logits(20, batch=5), 3),
        (_test_logits(21, batch=2, d_vocab=12), 1),
        (_test_logits(22, batch=3), 9),
        (_test_logits(23, batch=2), 10),
        (_test_logits(24, batch=2, d_vocab=6), 50),
        (_logits_tied_at(3), 3),  # last: the mistakes above show more plainly without ties
    ]
    for logits, k in cases:
        what = f"apply_top_k(logits, k={k})"
        got = _learner_logits(fn, (logits, k), what, things, [logits])
        expected = _top_k(logits, k)
        kept = ""
        if isinstance(got, torch.Tensor) and got.shape == logits.shape:
            kept = ", ".join(
                sorted({str(int(n)) for n in (~_removed(got.detach().float())).sum(-1)})
            )
            if (
                not _removed(got.detach().float()).any()
                and (got == 0).any()
                and k < logits.shape[-1]
            ):
                returns_probs = recognise(
                    got, [TOPK_RETURNS_PROBS], lambda m: _top_k(logits, k, m), _same_logits
                )
                fail(
                    f"{what}: no logit was removed, and some were set to 0.",
                    returns_probs or TOPK_FILL_ZERO,
                )
        _compare_logits(
            got,
            expected,
            what,
            mistakes_in("apply_top_k"),
            lambda m: _top_k(logits, k, m),
            things,
            kept=kept,
            k=k,
        )
    print_wrapped(
        f"apply_top_k passed: {len(cases)} cases, k from 1 to more than d_vocab, logits tied "
        "with the k-th kept, the caller's logits unchanged (removed logits: -inf, or at most -1e4)"
    )


def _logits_with_probs(probs):
    return torch.tensor(probs).log()


@learner_facing
def check_top_p(fn) -> None:
    """`fn(logits, p)` must keep the smallest set of most probable tokens whose probability reaches
    p (the token that crosses p included, always at least one) and set the rest to -inf."""
    things = (
        "sort the probabilities (logits.softmax(-1)) in descending order; keep a token when the "
        "mass BEFORE it is < p (so the token that crosses p is kept, and the first always is); "
        "set the others to float('-inf'), putting the mask back in vocabulary order: "
        "sorted_mask.scatter(-1, sorted_indices, sorted_mask)."
    )
    shuffled = torch.tensor(
        [[3, 0, 4, 1, 2, 6, 5], [6, 2, 5, 0, 3, 1, 4]]
    )  # the vocabulary order is not the sorted order
    crossing = _logits_with_probs([[0.30, 0.25, 0.20, 0.12, 0.08, 0.03, 0.02]] * 2).gather(
        -1, shuffled
    )  # 0.3 .55 .75 .87
    one_big = _logits_with_probs([[0.05, 0.70, 0.10, 0.15], [0.20, 0.05, 0.15, 0.60]])
    # exact in float32 (their softmax and sums too): the mass before the third most probable token
    # is exactly 0.75, so at p = 0.75 the first two already reach p and the third is removed
    boundary = _logits_with_probs([[0.5, 0.25, 0.125, 0.125], [0.125, 0.5, 0.125, 0.25]])
    # a mass before the second token of 0.7499, just below p = 0.75: kept (float16 rounds it to p)
    just_below = _logits_with_probs([[0.7499, 0.2501], [0.2501, 0.7499]])
    cases = [
        (crossing, 0.6),
        (crossing, 0.8),
        (_test_logits(30), 0.5),
        (_test_logits(31, batch=3, d_vocab=12), 0.9),
        (one_big, 0.5),
        (boundary, 0.75),
        (boundary, 0.5),
        (just_below, 0.75),
        (_test_logits(32, batch=2, d_vocab=6, scale=0.5), 0.95),
        # GPT-2's vocabulary, peaked: float32's running total reaches 1.0 about 2,000 tokens early
        (_test_logits(33, batch=2, d_vocab=50_257, scale=3.0), 1.0),
    ]
    results = [
        (
            logits,
            p,
            _learner_logits(fn, (logits, p), f"apply_top_p(logits, p={p})", things, [logits]),
        )
        for logits, p in cases
    ]

    # a mistake is named only when it gives the learner's result in every case below p = 1 (softmax
    # over the batch and a dropped crossing token agree in the first)
    below_one = [
        ((logits, p), got)
        for logits, p, got in results
        if p < 1 and isinstance(got, torch.Tensor) and got.shape == logits.shape
    ]
    mistakes = [
        m
        for m in mistakes_in("apply_top_p")
        if fits_every_case(m, below_one, lambda m, case: _top_p(*case, m), _same_logits)
    ]
    for logits, p, got in results:
        what = f"apply_top_p(logits, p={p})"
        expected = _top_p(logits, p)
        if p >= 1 and isinstance(got, torch.Tensor) and got.shape == logits.shape:
            removed = _removed(got.detach().float()).sum(-1)
            if removed.any():
                every = int(removed.max()) == logits.shape[-1]  # not float32's running total
                fail(
                    f"{what}: removes {int(removed.max()):,} of the {logits.shape[-1]:,} tokens "
                    "of a row; at p = 1 the nucleus is every token"
                    + (" (and a row with none left cannot be sampled)." if every else "."),
                    None if every else TOPP_P_ONE_REMOVES,
                    things,
                )
        if (
            isinstance(got, torch.Tensor)
            and got.shape == logits.shape
            and not _same_logits(got, expected)
        ):
            nothing_kept = _removed(got.detach().float()).all(-1)
            if nothing_kept.any():
                rows = nothing_kept.nonzero().flatten().tolist()
                top = logits.softmax(-1).amax(-1)
                fail(
                    f"{what}: rows {rows} keep no token at all (the most probable one has "
                    f"probability {top[rows[0]]:.2f}{' > p' if top[rows[0]] > p else ''}).",
                    TOPP_KEEPS_NONE if (top[nothing_kept] > p).all() else None,
                    things,
                )
        _compare_logits(got, expected, what, mistakes, lambda m: _top_p(logits, p, m), things, p=p)
    print_wrapped(
        f"apply_top_p passed: {len(cases)} cases, with the crossing token, a top token above p, "
        "a mass of exactly p before a token (removed) and one just below p (kept), logits out of "
        "order, and p = 1 over 50,257 logits (removed logits: -inf, or at most -1e4)"
    )


# --------------------------------------------------------------------------- beam search

BEAM_CFG = Config(
    d_model=32,
    d_vocab=40,
    n_ctx=32,
    d_head=8,
    d_mlp=128,
    n_heads=4,
    n_layers=2,
    layer_norm_eps=1e-5,
)
# Random weights this large give next-token distributions peaked but not one-hot (the most probable
# token has about 0.4): beams disagree, and the stop token ends some of them
EMBED_STD, WEIGHT_SCALE = 0.2, 0.6


def _models(seed: int = 0):
    """A tiny Hugging Face GPT-2 with random weights, and a DemoTransformer holding the same
    weights."""
    from utils.model import DemoTransformer, load_gpt2_weights
    from utils.resources import new_gpt2

    with (
        torch.random.fork_rng(devices=[]),
        torch.no_grad(),
    ):  # the learner's random state is left as it was
        torch.manual_seed(seed)
        hf = new_gpt2(BEAM_CFG, attn_implementation="eager")
        for name, p in hf.named_parameters():
            if p.ndim == 1:
                p.copy_(
                    (1.0 if "ln" in name and name.endswith("weight") else 0.0)
                    + 0.2 * torch.randn_like(p)
                )
            elif "wte" in name or "wpe" in name:
                p.normal_(0.0, EMBED_STD)
            else:
                p.normal_(0.0, WEIGHT_SCALE / math.sqrt(p.shape[0]))
        return hf, load_gpt2_weights(DemoTransformer(BEAM_CFG), hf).eval()


def _banned(seq: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in seq (prompt included), as Hugging Face's
    no_repeat_ngram_size."""
    if n <= 0 or len(seq) + 1 < n:
        return set()
    last = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
    return {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == last}


@torch.no_grad()
def _beam_search(
    model,
    tokens,
    num_beams,
    max_new_tokens,
    length_penalty=1.0,
    no_repeat_ngram_size=0,
    stop_token=None,
    mistake=None,
):
    """Beam search as Hugging Face's generate(num_beams, do_sample=False, early_stopping=True) does
    it; or with a mistake.

    Each step takes the 2 * num_beams best continuations of all running beams by total log-prob. A
    continuation that ends in the stop token (or reaches max_new_tokens) is finished, if it is among
    the num_beams best, with score total / (new tokens ** length_penalty); the num_beams best
    unfinished ones run on. It stops when num_beams beams are finished.

    BEAM_CACHE_NOT_REORDERED is reproduced without a cache: row i of a cache that is never
    reordered holds the prompt, then the token fed to row i at each step (the last token of the
    beam in row i then), so the model sees that sequence instead of the beam's."""
    stop = None if mistake is BEAM_AFTER_STOP else stop_token
    prompt = tokens[0].tolist()
    running, finished = [(prompt, 0.0)], []
    rows = [prompt] * num_beams  # what each row of a cache that is never reordered holds
    for step in range(max_new_tokens):
        n_new = step + 1
        if mistake is BEAM_FINISHED_DROPPED:
            finished = []
        if mistake is BEAM_CACHE_NOT_REORDERED:
            seen = rows[: len(running)]
        else:
            seen = [seq for seq, _ in running]
        logprobs = model(torch.tensor(seen))[:, -1].float().log_softmax(-1)
        for b, (seq, _) in enumerate(running):
            banned_in = seq[len(prompt) :] if mistake is BEAM_NGRAM_NEW_ONLY else seq
            for token in _banned(banned_in, no_repeat_ngram_size):
                logprobs[b, token] = float("-inf")
        totals = torch.tensor([total for _, total in running])[:, None] + logprobs
        d_vocab = logprobs.shape[-1]
        if mistake is BEAM_TOPK_PER_BEAM:  # each beam's best, one beam after the other
            values, tokens_ = totals.topk(min(2 * num_beams, d_vocab), dim=-1)
            candidates = [
                (total, beam, token)
                for beam in range(len(running))
                for total, token in zip(values[beam].tolist(), tokens_[beam].tolist())
            ]
        else:
            n = num_beams if mistake is BEAM_TOO_FEW_CANDIDATES else 2 * num_beams
            values, indices = totals.flatten().topk(min(n, totals.numel()))
            candidates = [
                (total, *divmod(index, d_vocab))
                for total, index in zip(values.tolist(), indices.tolist())
            ]
        unfinished = []
        for rank, (total, beam, token) in enumerate(candidates):
            seq = running[beam][0] + [token]
            if token == stop or n_new == max_new_tokens:
                if rank < num_beams or mistake is BEAM_ALL_CANDIDATES_FINISH:
                    length = {
                        BEAM_LENGTH_WITH_PROMPT: len(seq),
                        BEAM_STOP_NOT_COUNTED: n_new - (token == stop),
                    }.get(mistake, n_new)
                    if mistake is BEAM_NO_LENGTH_NORM:
                        score = total
                    else:
                        # a length of 0 (the stop token alone, not counted) gives what a tensor
                        # gives: -inf
                        score = total / length**length_penalty if length else float("-inf")
                    finished.append((seq, score))
            else:
                unfinished.append((seq, total))
        # the best unfinished run on (a stable sort: candidates in score order stay in it)
        next_running = sorted(unfinished, key=lambda beam: -beam[1])[:num_beams]
        finished = sorted(finished, key=lambda beam: -beam[1])[:num_beams]
        if len(finished) == num_beams or not next_running:
            break
        running = next_running
        rows = [row + [seq[-1]] for row, (seq, _) in zip(rows, running)] + [
            row + row[-1:] for row in rows[len(running) :]
        ]
    if mistake is BEAM_ONLY_BEST:
        finished = finished[:1]
    return [(torch.tensor(seq), score) for seq, score in finished]


def _hf_beam_search(
    hf,
    tokens,
    num_beams,
    max_new_tokens,
    length_penalty=1.0,
    no_repeat_ngram_size=0,
    stop_token=None,
):
    """Hugging Face's beam search: its finished beams, best first, as [(sequence, score)]."""
    hf.generation_config.eos_token_id = (
        stop_token  # otherwise the config's eos (the last id) would stop beams
    )
    hf.generation_config.pad_token_id = stop_token if stop_token is not None else 0
    out = hf.generate(
        tokens,
        attention_mask=torch.ones_like(tokens),
        num_beams=num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        early_stopping=True,
        eos_token_id=stop_token,
        num_return_sequences=num_beams,
        return_dict_in_generate=True,
        output_scores=True,
    )
    beams = []
    for seq, score in zip(out.sequences, out.sequences_scores.tolist()):
        seq = seq.tolist()
        new = seq[tokens.shape[1] :]
        if stop_token is not None and stop_token in new:  # cut the padding after the stop token
            seq = seq[: tokens.shape[1] + new.index(stop_token) + 1]
        beams.append((torch.tensor(seq), score))
    return beams


# (prompt, num_beams, max_new_tokens, length_penalty, no_repeat_ngram_size, stop_token): chosen so
# that beams stop early, normalisation changes which beam wins, and the n-gram rule bans tokens
# (tests/test_checks_sampling.py checks all three)
BEAM_CASES = [
    ([9, 6, 12, 29, 24], 3, 8, 0.5, 3, None),
    ([21, 7, 30], 2, 12, 1.0, 0, 20),
    ([3, 1], 4, 12, 2.0, 0, 20),
    ([6, 30], 3, 6, 0.5, 2, 20),
    ([30, 26, 9, 30, 26], 2, 6, 1.0, 2, 20),  # the prompt's own bigrams are banned too
    ([27, 23, 17], 3, 8, 1.0, 0, 20),  # more beams finish in one step than slots are left
]


def _check_the_cache_beam_search_runs(fn, model) -> None:
    """The learner's beam_search reaches the model through their notebook's next_logits and, with
    a KVCache, their forward_with_cache: a cache that is wrong, or still a stub, would otherwise be
    blamed on the beam search. Run only once the beams are wrong (a beam search without a cache
    passes whatever the cache exercise holds)."""
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})  # the learner's notebook
    next_logits, cache_class = namespace.get("next_logits"), namespace.get("KVCache")
    if not callable(next_logits) or not isinstance(cache_class, type):
        return  # a beam search of the learner's own making: its beams are checked as they are
    tokens = torch.tensor([BEAM_CASES[0][0]])
    cache, largest = cache_class(model.cfg, 1), 0.0
    with torch.no_grad():
        try:
            for _ in range(3):  # the prompt, then one new token at a time, as beam search runs
                cached = next_logits(model, tokens, cache)
                largest = max(largest, (cached - next_logits(model, tokens)).abs().max().item())
                tokens = torch.cat([tokens, cached.argmax(-1, keepdim=True)], dim=1)
        except NotImplementedError:
            fail(
                "beam_search runs the model with a KV cache, through your forward_with_cache, "
                "which is not written yet (it raised NotImplementedError): do the KV-cache "
                "exercise above first."
            )
        except Exception as error:  # the learner's cache code: named in one line, not a trace
            fail(
                "beam_search runs the model with a KV cache (next_logits, then cached_forward and "
                f"your forward_with_cache), and that raised {type(error).__name__}: {error}. Run "
                "the cells above in order; checks.check_kv_cache(forward_with_cache) checks the "
                "cache."
            )
    if largest > 1e-4:
        fail(
            "beam_search runs the model with a KV cache, through your forward_with_cache, and it "
            f"gives other logits than the model without a cache (largest difference {largest:.3g})"
            ": fix it first (checks.check_kv_cache(forward_with_cache) says how)."
        )


def _learner_beams(fn, model, case):
    """The learner's beams as [(list of ids, float score)], after checking the form of what
    beam_search returned."""
    prompt, num_beams, max_new, lp, ngram, stop = case
    tokens = torch.tensor([prompt])
    what = (
        f"beam_search(model, tokens={prompt}, num_beams={num_beams}, max_new_tokens={max_new}, "
        f"length_penalty={lp}, no_repeat_ngram_size={ngram}, stop_token={stop})"
    )
    things = (
        "the signature beam_search(model, tokens, num_beams, max_new_tokens, *, "
        "length_penalty=1.0, no_repeat_ngram_size=0, stop_token=None); "
        "model(tokens) takes [n_beams, posn] and gives [n_beams, posn, d_vocab]."
    )
    require_callable_as(
        fn,
        what,
        (model, tokens, num_beams, max_new),
        dict(length_penalty=lp, no_repeat_ngram_size=ngram, stop_token=stop),
    )
    before = tokens.clone()
    beams = call_learner(
        lambda: fn(
            model,
            tokens,
            num_beams,
            max_new,
            length_penalty=lp,
            no_repeat_ngram_size=ngram,
            stop_token=stop,
        ),
        what=what,
        things_to_check=things,
        known=[BEAM_CACHE_NOT_REORDERED],
    )
    if not torch.equal(tokens, before):
        fail(
            f"{what} changed the prompt tokens it was given; build new tensors (torch.cat) instead."
        )
    if not isinstance(beams, (list, tuple)) or not beams:
        fail(
            f"{what} must return a non-empty list of (sequence, score) pairs, best first; "
            f"got {type(beams).__name__}"
            + (f" of length {len(beams)}" if isinstance(beams, (list, tuple)) else "")
            + (
                " (a beam still running after max_new_tokens steps ends there: it is finished too)"
                if isinstance(beams, (list, tuple))
                else ""
            )
        )
    out = []
    for i, beam in enumerate(beams):
        if not (
            isinstance(beam, (list, tuple)) and len(beam) == 2 and isinstance(beam[0], torch.Tensor)
        ):
            fail(
                f"{what}: beam {i} is {type(beam).__name__} {beam!r:.80}; "
                "each beam must be a pair (1-D tensor of token ids, score)"
            )
        seq, score = beam[0], as_number(beam[1])
        if getattr(beam[1], "ndim", 0):  # a tensor of shape [1]: f"{score:.3f}" cannot format it
            score = None
        if seq.ndim == 2 and seq.shape[0] == 1:
            seq = seq[0]
        if seq.ndim != 1 or seq.is_floating_point():
            fail(
                f"{what}: beam {i}'s sequence has shape {tuple(seq.shape)} and dtype {seq.dtype}; "
                "it must be a 1-D tensor of token ids, the prompt followed by the new tokens"
            )
        if score is None or math.isnan(score):
            fail(
                f"{what}: beam {i}'s score is {beam[1]!r}; it must be a number (a float or a 0-d "
                "tensor; score.item() gives a float)"
            )
        ids = seq.tolist()
        if ids[: len(prompt)] != prompt:
            fail(
                f"{what}: beam {i} is {ids}; it must start with the prompt {prompt}, "
                "followed by the new tokens"
            )
        new = ids[len(prompt) :]
        if not 1 <= len(new) <= max_new:
            fail(
                f"{what}: beam {i} has {len(new)} new tokens; beam search adds between 1 and "
                f"max_new_tokens = {max_new}"
            )
        if stop is not None and stop in new[:-1]:
            fail(
                f"{what}: beam {i} is {ids}: it goes on after the stop token {stop}.",
                BEAM_AFTER_STOP,
            )
        out.append((ids, score))
    scores = [score for _, score in out]
    if scores != sorted(scores, reverse=True):
        fail(
            f"{what}: the beams are not sorted best first; "
            f"their scores are {[round(s, 4) for s in scores]}"
        )
    return what, out


def _same_beams(got, want) -> bool:
    """The same beams, in the same order, with the same scores: got and want are [(ids, score)]."""
    return len(got) == len(want) and all(
        ids == want_ids and math.isclose(score, want_score, rel_tol=1e-4, abs_tol=1e-5)
        for (ids, score), (want_ids, want_score) in zip(got, want)
    )


def _show_beams(beams, prompt) -> list[str]:
    return [
        f"    {i}: score {score:.5f}, new tokens {ids[len(prompt) :]}"
        for i, (ids, score) in enumerate(beams)
    ]


@learner_facing
def check_beam_search(fn) -> None:
    """`fn(model, tokens, num_beams, max_new_tokens, *, length_penalty, no_repeat_ngram_size,
    stop_token)` must return the finished beams, best first: every beam and its score as Hugging
    Face's generate(num_beams=..., early_stopping=True, num_return_sequences=num_beams) gives them
    on the same weights."""
    hf, model = _models()
    things = (
        "keep the num_beams best beams by total log-prob; take the 2 * num_beams best "
        "continuations each step; a continuation ending in stop_token (or reaching "
        "max_new_tokens), if among the num_beams best, is finished with score total / (new tokens "
        "** length_penalty); stop when num_beams beams are finished; ban tokens that repeat an "
        "n-gram of the whole sequence (prompt included) by setting their log-prob to -inf; "
        "after choosing the beams that run on, cache.reorder the cache's rows to match."
    )
    try:
        learner = [_learner_beams(fn, model, case) for case in BEAM_CASES]
    except (AssertionError, NotImplementedError):
        _check_the_cache_beam_search_runs(fn, model)  # a cache at fault is named as such
        raise
    expected = []
    for prompt, num_beams, max_new, lp, ngram, stop in BEAM_CASES:
        beams = _hf_beam_search(hf, torch.tensor([prompt]), num_beams, max_new, lp, ngram, stop)
        expected.append([(seq.tolist(), score) for seq, score in beams])
    got = [beams for _, beams in learner]

    def reproduce(mistake):
        """The mistake's beams in every case (the learner's are compared in every case, so that
        mistakes that agree in one case are told apart by the others)."""
        runs = []
        for prompt, num_beams, max_new, lp, ngram, stop in BEAM_CASES:
            beams = _beam_search(
                model, torch.tensor([prompt]), num_beams, max_new, lp, ngram, stop, mistake
            )
            runs.append([(seq.tolist(), score) for seq, score in beams])
        return [runs]  # one way of making it (a list would be read as several)

    for index, (case, (what, beams), want) in enumerate(zip(BEAM_CASES, learner, expected)):
        if _same_beams(beams, want):
            continue
        _check_the_cache_beam_search_runs(fn, model)  # before the beam search is blamed
        prompt, num_beams = case[0], case[1]
        if len(beams) != len(want):
            differs = (
                f"it returned {len(beams)} beam{'s' * (len(beams) != 1)}, expected every "
                f"finished beam: {len(want)} (num_beams), best first"
            )
        else:
            first = next(
                i for i, (a, b) in enumerate(zip(beams, want)) if not _same_beams([a], [b])
            )
            part = "score" if beams[first][0] == want[first][0] else "tokens"
            differs = f"beam {first}'s {part} differ{'s' * (part == 'score')}"
        fail(
            [
                f"{what}: {differs}, compared with Hugging Face's generate on the same weights "
                f"(the prompt is {prompt}).",
                "  expected:",
                *_show_beams(want, prompt),
                "  got:",
                *_show_beams(beams, prompt),
            ],
            recognise(
                got,
                mistakes_in("beam_search"),
                reproduce,
                lambda a, b: all(_same_beams(x, y) for x, y in zip(a, b)),
            ),
            things,
        )
    print_wrapped(
        f"beam_search passed: {len(BEAM_CASES)} settings (beams 2 to 4, length_penalty 0.5 to 2, "
        "a stop token, no_repeat_ngram_size) give Hugging Face's beams, every one, its score and "
        "its place"
    )
