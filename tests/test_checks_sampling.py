"""Notebook 04's checks: each passes correct alternatives and catches each known mistake, naming it.

Every broken function below is written as a learner would write it, independently of the checks'
reference (which makes the mistakes through its `mistake=` argument): a check that passed
everything, or named the wrong mistake, fails here.
"""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import utils.sampling
from utils import checks
from utils.checks import MISTAKES
from utils.checks import sampling as S
from named_mistakes import assert_check_names_only, names

SAMPLING_PARTS = {
    "apply_temperature",
    "apply_frequency_penalty",
    "apply_top_k",
    "apply_top_p",
    "beam_search",
}
NEG_INF = float("-inf")


# ---------------------------------------------------------------- temperature


def temperature_divide(logits, temperature):
    return logits / temperature


def temperature_reciprocal(logits, temperature):
    return torch.mul(logits, 1 / temperature)


def temperature_log_softmax(
    logits, temperature
):  # log-probabilities are logits too: softmax ignores the shift
    return logits.log_softmax(-1) / temperature


def temperature_on_a_copy(logits, temperature):
    out = logits.clone()
    out /= temperature
    return out


def temperature_in_float64(logits, temperature):  # right: more precise than the logits
    return logits.double() / temperature


def temperature_in_float16(logits, temperature):  # coarser than the logits
    return (logits / temperature).half()


def temperature_probs_divided(logits, temperature):
    return logits.softmax(-1) / temperature


def temperature_probs_power(logits, temperature):
    probs = logits.softmax(-1) ** (1 / temperature)
    return probs / probs.sum(-1, keepdim=True)


def temperature_multiplied(logits, temperature):
    return logits * temperature


def temperature_in_place(logits, temperature):
    logits /= temperature
    return logits


# ---------------------------------------------------------------- frequency penalty


def counts_bincount(tokens, d_vocab):
    return torch.stack([torch.bincount(row, minlength=d_vocab) for row in tokens])


def penalty_bincount(logits, tokens, penalty):
    return logits - penalty * counts_bincount(tokens, logits.shape[-1])


def penalty_scatter_add(logits, tokens, penalty):
    counts = torch.zeros_like(logits).scatter_add_(
        -1, tokens, torch.ones_like(tokens, dtype=logits.dtype)
    )
    return logits - penalty * counts


def penalty_one_hot(logits, tokens, penalty):
    return logits - penalty * F.one_hot(tokens, logits.shape[-1]).sum(1)


def penalty_loop_on_a_copy(logits, tokens, penalty):
    out = logits.clone()
    for b in range(tokens.shape[0]):
        for token in tokens[b]:
            out[b, token] -= penalty
    return out


def penalty_added(logits, tokens, penalty):
    return logits + penalty * counts_bincount(tokens, logits.shape[-1])


def penalty_presence(logits, tokens, penalty):
    return logits - penalty * (counts_bincount(tokens, logits.shape[-1]) > 0).float()


def penalty_prompt_columns(
    logits, tokens, penalty
):  # counts the first columns only, as if they were the whole text
    return logits - penalty * counts_bincount(tokens[:, :4], logits.shape[-1])


def penalty_all_but_last(logits, tokens, penalty):
    return logits - penalty * counts_bincount(tokens[:, :-1], logits.shape[-1])


def penalty_first_row(logits, tokens, penalty):
    return logits - penalty * torch.bincount(tokens[0], minlength=logits.shape[-1])


def penalty_whole_batch(logits, tokens, penalty):
    return logits - penalty * torch.bincount(tokens.flatten(), minlength=logits.shape[-1])


def penalty_in_place(logits, tokens, penalty):
    logits -= penalty * counts_bincount(tokens, logits.shape[-1])
    return logits


def penalty_reverses_tokens(
    logits, tokens, penalty
):  # the counts are right, but the caller's tokens are reversed
    tokens[:] = tokens.flip(-1).clone()
    return penalty_bincount(logits, tokens, penalty)


def penalty_no_minlength(logits, tokens, penalty):
    return logits - penalty * torch.stack([torch.bincount(row) for row in tokens])


# ---------------------------------------------------------------- top-k


def top_k_masked_fill(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_scatter(logits, k):  # exactly k kept: a logit tied with the k-th is dropped
    values, indices = logits.topk(min(k, logits.shape[-1]), dim=-1)
    return torch.full_like(logits, NEG_INF).scatter(-1, indices, values)


def top_k_sorted_indices(logits, k):  # the same with a sort's first k indices
    indices = logits.argsort(dim=-1, descending=True)[:, : min(k, logits.shape[-1])]
    return torch.full_like(logits, NEG_INF).scatter(-1, indices, logits.gather(-1, indices))


def top_k_finfo_min(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return torch.where(logits >= kth, logits, torch.finfo(logits.dtype).min)


def top_k_in_place_on_a_copy(logits, k):
    out = logits.clone()
    if k < logits.shape[-1]:
        out[out < out.topk(k, dim=-1).values[:, -1:]] = -1e9
    return out


def top_k_plus_one(logits, k):
    kth = logits.topk(min(k + 1, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_minus_one(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits <= kth, NEG_INF)


def top_k_threshold_at_the_largest(logits, k):
    if k >= logits.shape[-1]:
        return logits
    largest = logits.topk(k, dim=-1).values[:, :1]  # the first column: the largest, not the k-th
    return logits.masked_fill(logits < largest, NEG_INF)


def top_k_zero_fill(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_probabilities(logits, k):  # probabilities, the others 0: not logits
    probs = logits.softmax(-1)
    kth = probs.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return probs.masked_fill(probs < kth, 0.0)


def top_k_probabilities_renormalised(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, NEG_INF).softmax(-1)


def top_k_over_batch(logits, k):
    kth = logits.topk(min(k, logits.shape[0]), dim=0).values[-1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_in_place(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill_(logits < kth, NEG_INF)


def top_k_crashes_past_d_vocab(logits, k):
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


# ---------------------------------------------------------------- top-p


def _sorted_probs(logits):
    return logits.softmax(-1).sort(-1, descending=True)


def top_p_shifted_cumsum(
    logits, p
):  # Hugging Face's old way: remove past p, shift right, always keep the first (wrong at exactly p)
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_searchsorted(
    logits, p
):  # ARENA's way: how many tokens it takes to reach p, then keep that many
    if p >= 1:  # the running total can reach 1.0 before the row ends (ARENA's leaves this out)
        return logits
    probs, indices = _sorted_probs(logits)
    n_keep = torch.searchsorted(probs.cumsum(-1), torch.full((logits.shape[0], 1), p)) + 1
    keep = torch.arange(logits.shape[-1]) < n_keep
    keep_unsorted = torch.zeros_like(keep).scatter(-1, indices, keep)
    return torch.where(keep_unsorted, logits, torch.finfo(logits.dtype).min)


def top_p_ascending(
    logits, p
):  # Hugging Face's TopPLogitsWarper: ascending order, remove the mass below 1 - p
    probs, indices = logits.softmax(-1).sort(-1)
    remove = probs.cumsum(-1) <= 1 - p
    remove[..., -1] = False
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_mass_before(logits, p):
    if p >= 1:
        return logits
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs >= p
    out = logits.clone()
    out[remove.scatter(-1, indices, remove)] = NEG_INF
    return out


def top_p_zero_fill(logits, p):
    if p >= 1:
        return logits
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), 0.0)


def top_p_without_p_one(logits, p):  # right below p = 1, but float32's total reaches 1.0 early
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_cumsum_at_most_p(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) > p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_cumsum_reaches_p(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_below_p_keeps_first(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) >= p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_at_most_p_keeps_first(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) > p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_shift_forgets_first(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_mass_before_above_p(logits, p):  # keeps a token whose mass before it is exactly p
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs > p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_logit_mass(logits, p):
    sorted_logits, indices = logits.sort(-1, descending=True)
    remove = sorted_logits.cumsum(-1) - sorted_logits >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_mask_not_unsorted(logits, p):
    probs, indices = _sorted_probs(logits)
    return logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)


def top_p_probabilities(logits, p):  # the nucleus's probabilities, renormalised: not logits
    return utils.sampling.apply_top_p(logits, p).softmax(-1)


def top_p_probabilities_zero(logits, p):  # the softmax, the removed ones 0
    kept = utils.sampling.apply_top_p(logits, p).isfinite()
    return logits.softmax(-1).masked_fill(~kept, 0.0)


def top_k_probabilities_neg_inf(logits, k):  # the softmax, the removed ones -inf
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.softmax(-1).masked_fill(logits < kth, NEG_INF)


def top_p_rounded_to_float16(logits, p):  # the mass compared in float16: 0.7499 becomes 0.75
    probs, indices = _sorted_probs(logits)
    remove = (probs.cumsum(-1) - probs).half() >= torch.tensor(p).half()
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def top_p_one_removes_everything(logits, p):  # p = 1 handled on its own, wrongly
    if p >= 1:
        return torch.full_like(logits, NEG_INF)
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def test_top_p_removing_every_token_at_p_one_is_not_blamed_on_float32():
    with pytest.raises(AssertionError) as err:
        checks.check_top_p(top_p_one_removes_everything)
    message = str(err.value)
    assert "cannot be sampled" in message and not names(message, "topp_p_one_removes"), message


def test_top_p_compared_in_float16_fails():
    with pytest.raises(AssertionError, match=r"apply_top_p\(logits, p=0.75\): wrong output"):
        checks.check_top_p(top_p_rounded_to_float16)


def top_p_in_place(logits, p):
    probs, indices = _sorted_probs(logits)
    remove = probs.cumsum(-1) - probs >= p
    logits[remove.scatter(-1, indices, remove)] = NEG_INF
    return logits


# -------------------------------------------------------------- beam search, as a learner writes it


def make_beam_search(
    no_length_norm=False,
    after_stop=False,
    length_with_prompt=False,
    stop_not_counted=False,
    tensor_scores=False,
    only_best=False,
):
    """A learner's beam search (beams as one tensor; Hugging Face's rules), with the mistakes asked
    for."""

    def banned(seq, n):
        if n == 0 or len(seq) + 1 < n:
            return []
        grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
        return [g[-1] for g in grams if list(g[:-1]) == seq[len(seq) - n + 1 :]]

    @torch.no_grad()
    def beam_search(
        model,
        tokens,
        num_beams,
        max_new_tokens,
        *,
        length_penalty=1.0,
        no_repeat_ngram_size=0,
        stop_token=None,
    ):
        stop = None if after_stop else stop_token
        beams, scores = tokens.clone(), torch.zeros(1)
        finished = []
        for step in range(max_new_tokens):
            logprobs = model(beams)[:, -1].log_softmax(-1)
            for b in range(beams.shape[0]):
                logprobs[b, banned(beams[b].tolist(), no_repeat_ngram_size)] = NEG_INF
            totals = (scores[:, None] + logprobs).flatten()
            top_totals, top_indices = totals.topk(2 * num_beams)
            d_vocab = logprobs.shape[-1]
            keep_beams, keep_scores = [], []
            for rank in range(2 * num_beams):
                beam, token = top_indices[rank] // d_vocab, top_indices[rank] % d_vocab
                seq = torch.cat([beams[beam], token[None]])
                if token == stop or step + 1 == max_new_tokens:
                    if rank < num_beams:
                        length = (
                            len(seq)
                            if length_with_prompt
                            else step + 1 - int(stop_not_counted and token == stop)
                        )
                        score = (
                            top_totals[rank]
                            if no_length_norm
                            else top_totals[rank] / length**length_penalty
                        )
                        finished.append((seq, score if tensor_scores else score.item()))
                elif len(keep_beams) < num_beams:
                    keep_beams.append(seq)
                    keep_scores.append(top_totals[rank])
            finished.sort(key=lambda pair: -float(pair[1]))
            finished = finished[:num_beams]
            if len(finished) == num_beams:
                break
            beams, scores = torch.stack(keep_beams), torch.stack(keep_scores)
        return finished[:1] if only_best else finished

    return beam_search


def beam_search_unsorted(model, tokens, num_beams, max_new_tokens, **kwargs):
    return make_beam_search()(model, tokens, num_beams, max_new_tokens, **kwargs)[::-1]


def reference_beam_search_with(*edits):
    """utils.sampling.beam_search (the notebook's solution, with its KV cache) as a learner would
    paste it, each (old, new) edit applied: a mistake made in the solution's own form."""
    return _pasted(inspect.getsource(utils.sampling.beam_search), edits, "beam_search")


def _pasted(source: str, edits, name: str):
    """`name` from `source` with each (old, new) edit applied, run as a learner's cell would be."""
    for old, new in edits:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    namespace = dict(vars(utils.sampling))
    exec(compile(source, "<learner's cell>", "exec"), namespace)
    return namespace[name]


def _notebook_beam_search(*cache_edits, beam_edits=()):
    """beam_search as notebook 04 runs it: through the notebook's own next_logits, cached_forward
    and the learner's forward_with_cache, with each (old, new) edit made to the cache's code (and
    each of beam_edits to the beam search's)."""
    source = "\n\n".join(
        inspect.getsource(getattr(utils.sampling, name))
        for name in ("attention_with_cache", "forward_with_cache", "cached_forward", "next_logits")
    )
    for old, new in cache_edits:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return _pasted(
        source + "\n\n" + inspect.getsource(utils.sampling.beam_search), beam_edits, "beam_search"
    )


def test_a_beam_search_without_a_cache_passes_whatever_the_cache_exercise_holds(capsys):
    beam_search = _notebook_beam_search(
        ("    past = cache.length\n", '    raise NotImplementedError("the hint")\n'),
        beam_edits=[
            ("next_logits(model, beams, cache)", "next_logits(model, beams)"),
            ("        cache.reorder(beam[keep])\n", ""),
        ],
    )
    checks.check_beam_search(beam_search)
    assert "beam_search passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit, message",
    [
        (None, None),
        (
            (
                "W_pos[past : past + tokens.shape[1]]",
                "W_pos[past + 1 : past + 1 + tokens.shape[1]]",
            ),
            r"through your forward_with_cache, and it gives other logits than the model without a "
            r"cache \(largest difference",
        ),
        (
            ("    past = cache.length\n", '    raise NotImplementedError("the hint")\n'),
            r"through your forward_with_cache, which is not written yet",
        ),
    ],
    ids=["right cache", "positions shifted", "stub left in"],
)
def test_beam_search_is_not_blamed_for_the_cache(edit, message, capsys):
    """A right beam search over a wrong KV cache (another exercise of notebook 04) is told so in
    one line; it was blamed on the beam search, or ended in a trace from the cache's stub."""
    beam_search = _notebook_beam_search(*([edit] if edit else []))
    if message is None:
        checks.check_beam_search(beam_search)
        assert "beam_search passed" in capsys.readouterr().out
        return
    with pytest.raises(AssertionError, match=message):
        checks.check_beam_search(beam_search)


BEAM_EDITS = {  # known mistake -> the edits to the solution that make it
    # topk along each beam's row, then flattened: candidates beam after beam, not in score order
    "beam_topk_per_beam": [
        (
            "candidates = (scores[:, None] + log_probs).flatten()",
            "candidates = scores[:, None] + log_probs",
        ),
        (
            "top_scores, top = candidates.topk(2 * num_beams)",
            "top_scores, top = candidates.topk(2 * num_beams, dim=-1)",
        ),
        (
            "beam, token = top // log_probs.shape[-1], top % log_probs.shape[-1]",
            "beam = torch.arange(len(beams)).repeat_interleave(2 * num_beams)\n"
            "        token, top_scores = top.flatten(), top_scores.flatten()",
        ),
    ],
    "beam_too_few_candidates": [("candidates.topk(2 * num_beams)", "candidates.topk(num_beams)")],
    "beam_all_candidates_finish": [
        ("for i in range(num_beams):", "for i in range(2 * num_beams):")
    ],
    "beam_finished_dropped": [
        (
            "        for i in range(num_beams):",
            "        finished = []\n        for i in range(num_beams):",
        )
    ],
    "beam_cache_not_reordered": [("        cache.reorder(beam[keep])\n", "")],
    "beam_ngram_new_only": [
        (
            "ban_repeated_ngrams(beams, log_probs,",
            "ban_repeated_ngrams(beams[:, tokens.shape[1] :], log_probs,",
        )
    ],
}


# ------------------------------------------------------------ every known mistake: caught and named

BROKEN_SAMPLING = {  # known mistake -> (its check, learner-style code that makes it)
    "temp_after_softmax": (checks.check_temperature, temperature_probs_divided),
    "temp_multiplied": (checks.check_temperature, temperature_multiplied),
    "freq_wrong_sign": (checks.check_frequency_penalty, penalty_added),
    "freq_presence": (checks.check_frequency_penalty, penalty_presence),
    "freq_part_of_tokens": (checks.check_frequency_penalty, penalty_prompt_columns),
    "freq_not_per_row": (checks.check_frequency_penalty, penalty_first_row),
    "topk_off_by_one": (checks.check_top_k, top_k_plus_one),
    "topk_fill_zero": (checks.check_top_k, top_k_zero_fill),
    "topk_largest_only": (checks.check_top_k, top_k_threshold_at_the_largest),
    "topk_wrong_dim": (checks.check_top_k, top_k_over_batch),
    "topk_returns_probs": (checks.check_top_k, top_k_probabilities),
    "topk_drops_ties": (checks.check_top_k, top_k_scatter),
    "topp_drops_crossing": (checks.check_top_p, top_p_cumsum_at_most_p),
    "topp_p_one_removes": (checks.check_top_p, top_p_without_p_one),
    "topp_fill_zero": (checks.check_top_p, top_p_zero_fill),
    "topp_keeps_none": (checks.check_top_p, top_p_shift_forgets_first),
    "topp_logit_mass": (checks.check_top_p, top_p_logit_mass),
    "topp_unsorted": (checks.check_top_p, top_p_mask_not_unsorted),
    "topp_keeps_boundary_token": (checks.check_top_p, top_p_mass_before_above_p),
    "topp_returns_probs": (checks.check_top_p, top_p_probabilities),
    "beam_no_length_norm": (checks.check_beam_search, make_beam_search(no_length_norm=True)),
    "beam_after_stop": (checks.check_beam_search, make_beam_search(after_stop=True)),
    "beam_length_with_prompt": (
        checks.check_beam_search,
        make_beam_search(length_with_prompt=True),
    ),
    "beam_stop_not_counted": (checks.check_beam_search, make_beam_search(stop_not_counted=True)),
    "beam_only_best": (checks.check_beam_search, make_beam_search(only_best=True)),
    **{
        mistake: (checks.check_beam_search, reference_beam_search_with(*edits))
        for mistake, edits in BEAM_EDITS.items()
    },
}

# More ways of making the same mistakes
OTHER_WAYS = [
    ("temp_after_softmax", checks.check_temperature, temperature_probs_power),
    ("freq_part_of_tokens", checks.check_frequency_penalty, penalty_all_but_last),
    ("freq_not_per_row", checks.check_frequency_penalty, penalty_whole_batch),
    ("topk_off_by_one", checks.check_top_k, top_k_minus_one),
    ("topk_returns_probs", checks.check_top_k, top_k_probabilities_renormalised),
    ("topk_returns_probs", checks.check_top_k, top_k_probabilities_neg_inf),
    ("topk_drops_ties", checks.check_top_k, top_k_sorted_indices),
    ("topp_returns_probs", checks.check_top_p, top_p_probabilities_zero),
    ("topp_drops_crossing", checks.check_top_p, top_p_at_most_p_keeps_first),
    ("topp_drops_crossing", checks.check_top_p, top_p_cumsum_reaches_p),
    ("topp_drops_crossing", checks.check_top_p, top_p_below_p_keeps_first),
    # Hugging Face's old warper (cumsum > p, shifted right) is mass_before > p: at a mass of exactly
    # p before a token it keeps that token, one more than the smallest set that reaches p
    ("topp_keeps_boundary_token", checks.check_top_p, top_p_shifted_cumsum),
]


def test_every_sampling_mistake_has_a_broken_variant():
    assert set(BROKEN_SAMPLING) == {
        name for name, m in MISTAKES.items() if m.part in SAMPLING_PARTS
    }
    assert SAMPLING_PARTS <= set(checks.CHECKS) and {
        checks.CHECKS[p].__name__ for p in SAMPLING_PARTS
    } == {
        "check_temperature",
        "check_frequency_penalty",
        "check_top_k",
        "check_top_p",
        "check_beam_search",
    }


@pytest.mark.parametrize("mistake", sorted(BROKEN_SAMPLING))
def test_check_catches_mistake_and_names_it(mistake):
    check, broken = BROKEN_SAMPLING[mistake]
    assert_check_names_only(check, broken, mistake)


@pytest.mark.parametrize(
    "mistake, check, broken", OTHER_WAYS, ids=[f"{m}-{b.__name__}" for m, _, b in OTHER_WAYS]
)
def test_other_ways_of_making_a_mistake_are_named(mistake, check, broken):
    with pytest.raises(AssertionError) as err:
        check(broken)
    assert names(str(err.value), mistake), str(err.value)


# ---------------------------------------------------------------- correct alternatives pass

CORRECT = [
    (checks.check_temperature, temperature_divide),
    (checks.check_temperature, temperature_reciprocal),
    (checks.check_temperature, temperature_log_softmax),
    (checks.check_temperature, temperature_on_a_copy),
    (checks.check_temperature, temperature_in_float64),
    (checks.check_frequency_penalty, penalty_bincount),
    (checks.check_frequency_penalty, penalty_scatter_add),
    (checks.check_frequency_penalty, penalty_one_hot),
    (checks.check_frequency_penalty, penalty_loop_on_a_copy),
    (checks.check_top_k, top_k_masked_fill),
    (checks.check_top_k, top_k_finfo_min),
    (checks.check_top_k, top_k_in_place_on_a_copy),
    (checks.check_top_p, top_p_searchsorted),
    (checks.check_top_p, top_p_ascending),
    (checks.check_top_p, top_p_mass_before),
    (checks.check_beam_search, make_beam_search()),
    (checks.check_beam_search, make_beam_search(tensor_scores=True)),
    (checks.check_beam_search, reference_beam_search_with()),
]


@pytest.mark.parametrize(
    "check, fn", CORRECT, ids=[f"{c.__name__}-{f.__name__}-{i}" for i, (c, f) in enumerate(CORRECT)]
)
def test_correct_alternatives_pass(check, fn, capsys):
    check(fn)
    assert "passed" in capsys.readouterr().out


def test_the_checks_reference_beam_search_passes(capsys):
    def reference(
        model,
        tokens,
        num_beams,
        max_new_tokens,
        *,
        length_penalty=1.0,
        no_repeat_ngram_size=0,
        stop_token=None,
    ):
        return S._beam_search(
            model,
            tokens,
            num_beams,
            max_new_tokens,
            length_penalty,
            no_repeat_ngram_size,
            stop_token,
        )

    checks.check_beam_search(reference)
    assert "beam_search passed" in capsys.readouterr().out


# ------------------------------------------------------------- what else the checks refuse, and say


@pytest.mark.parametrize(
    "check, fn, name",
    [
        (checks.check_temperature, temperature_in_place, "logits"),
        (checks.check_frequency_penalty, penalty_in_place, "logits"),
        (checks.check_top_k, top_k_in_place, "logits"),
        (checks.check_top_p, top_p_in_place, "logits"),
        (checks.check_frequency_penalty, penalty_reverses_tokens, "tokens"),
    ],
)
def test_changing_the_callers_tensors_is_refused_with_the_reason(check, fn, name):
    with pytest.raises(
        AssertionError,
        match=rf"changed the {name} it was given.*calling it twice on the same logits",
    ):
        check(fn)


def test_a_penalty_without_minlength_says_what_to_check():
    with pytest.raises(
        AssertionError,
        match=r"(?s)raised RuntimeError.*In your code: penalty_no_minlength.*minlength=d_vocab",
    ):
        checks.check_frequency_penalty(penalty_no_minlength)


def test_top_k_past_d_vocab_must_keep_everything():
    with pytest.raises(
        AssertionError,
        match=r"(?s)apply_top_k\(logits, k=50\) raised RuntimeError.*min\(k, logits.shape\[-1\]\)",
    ):
        checks.check_top_k(top_k_crashes_past_d_vocab)


def test_a_zero_fill_that_removes_nothing_is_named_even_when_k_keeps_all():
    with pytest.raises(AssertionError, match="no logit was removed, and some were set to 0"):
        checks.check_top_k(top_k_zero_fill)


def test_returning_nothing_says_so():
    with pytest.raises(
        AssertionError, match=r"got NoneType \(did the function end without a return\?\)"
    ):
        checks.check_temperature(lambda logits, temperature: None)


def test_a_wrong_row_is_shown():
    with pytest.raises(
        AssertionError,
        match=r"(?s)Rows that differ: \[0, 1\]; row 0:\n    expected \[.*\]\n    got      \[",
    ):
        checks.check_frequency_penalty(penalty_added)


def test_a_stub_reaches_the_learner_unwrapped():
    def stub(logits, p):
        raise NotImplementedError("keep the nucleus")

    with pytest.raises(NotImplementedError, match="keep the nucleus"):
        checks.check_top_p(stub)


def test_unsorted_beams_are_refused():
    with pytest.raises(AssertionError, match="not sorted best first"):
        checks.check_beam_search(beam_search_unsorted)


def test_beams_must_start_with_the_prompt():
    def new_tokens_only(model, tokens, num_beams, max_new_tokens, **kwargs):
        return [
            (seq[tokens.shape[1] :], score)
            for seq, score in make_beam_search()(model, tokens, num_beams, max_new_tokens, **kwargs)
        ]

    with pytest.raises(AssertionError, match="must start with the prompt"):
        checks.check_beam_search(new_tokens_only)


def test_beam_search_check_leaves_the_learners_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_beam_search(make_beam_search())
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------ the beam search reference is Hugging Face's


def test_the_beam_cases_agree_with_hugging_face_and_show_every_mistake():
    """Each case: our reference gives Hugging Face's beams and scores; together the cases stop beams
    early, change the winner by normalising, and ban n-grams; each mistake changes the beams or
    their scores in some case."""
    hf, model = S._models()
    stopped_early = banned = False
    shown = set()
    for prompt, num_beams, max_new, lp, ngram, stop in S.BEAM_CASES:
        tokens = torch.tensor([prompt])
        ours = S._beam_search(model, tokens, num_beams, max_new, lp, ngram, stop)
        theirs = S._hf_beam_search(hf, tokens, num_beams, max_new, lp, ngram, stop)
        assert [s.tolist() for s, _ in ours] == [s.tolist() for s, _ in theirs]
        assert all(
            math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for (_, a), (_, b) in zip(ours, theirs)
        )
        # no near-tie between beams: their order is the same however the scores are rounded
        assert all(a[1] - b[1] > 1e-3 for a, b in zip(ours, ours[1:]))
        stopped_early |= len(ours[0][0]) - len(prompt) < max_new
        banned |= (
            ngram > 0
            and ours[0][0].tolist()
            != S._beam_search(model, tokens, num_beams, max_new, lp, 0, stop)[0][0].tolist()
        )
        for mistake in S.mistakes_in("beam_search"):
            theirs = S._beam_search(model, tokens, num_beams, max_new, lp, ngram, stop, mistake)
            if not S._same_beams(
                [(s.tolist(), score) for s, score in theirs],
                [(s.tolist(), score) for s, score in ours],
            ):
                shown.add(mistake.name)
    assert stopped_early and banned
    assert shown == {m.name for m in S.mistakes_in("beam_search")}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_reference_agrees_with_hugging_face_on_other_weights_and_settings(seed):
    hf, model = S._models(seed)
    generator = torch.Generator().manual_seed(seed)
    for trial in range(6):
        prompt = torch.randint(0, S.BEAM_CFG.d_vocab, (1, 1 + trial % 4), generator=generator)
        settings = dict(
            num_beams=2 + trial % 3,
            max_new_tokens=5 + trial,
            length_penalty=(0.5, 1.0, 2.0)[trial % 3],
            no_repeat_ngram_size=(0, 2, 3)[trial % 3],
            stop_token=(None, 20, 28)[(trial + seed) % 3],
        )
        args = [
            settings[k]
            for k in (
                "num_beams",
                "max_new_tokens",
                "length_penalty",
                "no_repeat_ngram_size",
                "stop_token",
            )
        ]
        ours, theirs = S._beam_search(model, prompt, *args), S._hf_beam_search(hf, prompt, *args)
        assert [s.tolist() for s, _ in ours] == [s.tolist() for s, _ in theirs], settings
        assert all(
            math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for (_, a), (_, b) in zip(ours, theirs)
        ), settings


def test_every_beam_and_its_score_are_compared():
    """Not only the best beam: a wrong score for the last beam, or a beam too many, fails."""

    def last_score_off(model, tokens, num_beams, max_new_tokens, **kwargs):
        beams = make_beam_search()(model, tokens, num_beams, max_new_tokens, **kwargs)
        return beams[:-1] + [(beams[-1][0], beams[-1][1] - 0.01)]

    def one_beam_too_many(model, tokens, num_beams, max_new_tokens, **kwargs):
        beams = make_beam_search()(model, tokens, num_beams + 1, max_new_tokens, **kwargs)
        return beams

    with pytest.raises(AssertionError, match=r"beam 2's score differs.*\n  expected:\n    0: "):
        checks.check_beam_search(last_score_off)
    with pytest.raises(
        AssertionError, match=r"it returned 4 beams, expected every finished beam: 3"
    ):
        checks.check_beam_search(one_beam_too_many)


# ------------------------------------------------------------------------------- the KV cache


def kv_learners(*edits):
    """utils.sampling's attention_with_cache and forward_with_cache as a learner would paste them,
    each (old, new) edit applied."""
    source = (
        inspect.getsource(utils.sampling.attention_with_cache)
        + "\n\n"
        + inspect.getsource(utils.sampling.forward_with_cache)
    )
    return _pasted(source, edits, "forward_with_cache")


# in attention_with_cache, after k, v = cache.update(...): cache.length then counts the last layer's
# positions, the old count for every earlier layer and the new one for the last
LENGTH_AFTER_UPDATE = {
    "minus new_posn": ("past = all_posn - new_posn", "past = cache.length - new_posn"),
    "as the past": ("past = all_posn - new_posn", "past = cache.length"),
}
# read before this layer's cache.update (the old count, in every layer): right
LENGTH_BEFORE_UPDATE = [
    (
        "    k, v = cache.update(layer, k, v)",
        "    past = cache.length\n    k, v = cache.update(layer, k, v)",
    ),
    ("    past = all_posn - new_posn\n", ""),
]


@pytest.mark.parametrize("edit", LENGTH_AFTER_UPDATE.values(), ids=LENGTH_AFTER_UPDATE)
def test_kv_cache_length_read_after_update_is_named(edit):
    with pytest.raises(AssertionError) as err:
        checks.check_kv_cache(kv_learners(edit))
    assert names(str(err.value), "kv_length_read_mid_forward"), str(err.value)
    assert "off by one" not in str(err.value), str(err.value)


def test_kv_cache_length_read_before_each_update_passes_and_other_mistakes_keep_their_name(capsys):
    checks.check_kv_cache(kv_learners(*LENGTH_BEFORE_UPDATE))
    assert "forward_with_cache passed" in capsys.readouterr().out
    with pytest.raises(AssertionError) as err:
        checks.check_kv_cache(
            kv_learners(*LENGTH_BEFORE_UPDATE, (".triu(past + 1)", ".triu(past)"))
        )
    assert names(str(err.value), "kv_mask_off_by_one"), str(err.value)


def test_kv_cache_nan_from_a_mask_times_minus_inf_is_not_blamed_on_the_mask_diagonal():
    """0 * -inf is NaN: a mask added as future * -inf gives NaN everywhere, as a mask off by one
    does (a query that sees no key); a query with keys to see tells them apart."""
    times_inf = (
        ".masked_fill(future, attn.IGNORE).softmax(-1)",
        ' + future * float("-inf")).softmax(-1)',
    )
    with pytest.raises(AssertionError) as err:
        checks.check_kv_cache(kv_learners(times_inf, ("(scores / math", "((scores / math")))
    assert "0 * -inf" in str(err.value) and "off by one" not in str(err.value), str(err.value)


# ---------------------------------------------------------------- round 8: what the cases hid


@torch.no_grad()
def beam_search_never_truncated(
    model,
    tokens,
    num_beams,
    max_new_tokens,
    *,
    length_penalty=1.0,
    no_repeat_ngram_size=0,
    stop_token=None,
):  # wrong: keeps every finished beam, so a step where more finish than slots are left adds extra
    cache = utils.sampling.KVCache(model.cfg, num_beams)
    beams, finished = tokens.repeat(num_beams, 1), []
    scores = torch.full((num_beams,), -1e9)
    scores[0] = 0.0
    for step in range(max_new_tokens):
        logits = utils.sampling.next_logits(model, beams, cache).log_softmax(-1)
        if no_repeat_ngram_size:
            logits = utils.sampling.ban_repeated_ngrams(beams, logits, no_repeat_ngram_size)
        top_scores, top = (scores[:, None] + logits).flatten().topk(2 * num_beams)
        beam, token = top // logits.shape[-1], top % logits.shape[-1]
        seqs = torch.cat([beams[beam], token[:, None]], dim=1)
        ends = token == stop_token if stop_token is not None else torch.zeros_like(token).bool()
        if step == max_new_tokens - 1:
            ends = torch.ones_like(ends)
        for i in range(num_beams):
            if ends[i]:
                score = (top_scores[i] / (step + 1) ** length_penalty).item()
                finished.append((seqs[i], score))
        finished.sort(key=lambda pair: pair[1], reverse=True)  # never cut to num_beams
        if len(finished) >= num_beams:
            break
        keep = (top_scores - 1e9 * ends).topk(num_beams).indices
        beams, scores = seqs[keep], (top_scores - 1e9 * ends)[keep]
        cache.reorder(beam[keep])
    return finished


def kv_cache_always_runs_the_mlp(model, tokens, cache):  # no attn_only guard
    past = cache.length
    residual = model.embed(tokens) + model.pos_embed.W_pos[past : past + tokens.shape[1]]
    for layer, block in enumerate(model.blocks):
        attention = utils.sampling.attention_with_cache(
            block.attn, block.ln1(residual), cache, layer
        )
        residual = residual + attention
        residual = residual + block.mlp(block.ln2(residual))
    return model.unembed(model.ln_final(residual))


def kv_cache_positions_from_the_text_start(model, tokens, cache):  # wrong once the window slid
    past = cache.start + cache.length
    residual = model.embed(tokens) + model.pos_embed.W_pos[past : past + tokens.shape[1]]
    for layer, block in enumerate(model.blocks):
        attention = utils.sampling.attention_with_cache(
            block.attn, block.ln1(residual), cache, layer
        )
        residual = residual + attention
        if not model.cfg.attn_only:
            residual = residual + block.mlp(block.ln2(residual))
    return model.unembed(model.ln_final(residual))


def beam_search_scores_of_shape_one(*args, **kwargs):  # f"{score:.3f}" cannot format them
    return [
        (seq, torch.tensor([float(score)])) for seq, score in make_beam_search()(*args, **kwargs)
    ]


def temperature_ignored(logits, temperature):
    return logits.clone()


def kv_cache_logits_in_float64(model, tokens, cache):
    return utils.sampling.forward_with_cache(model, tokens, cache).double()


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_beam_search, beam_search_never_truncated, "it returned 5 beams"),
        (checks.check_temperature, temperature_ignored, "the temperature changed nothing"),
        (
            checks.check_beam_search,
            beam_search_scores_of_shape_one,
            r"score.item\(\) gives a float",
        ),
        (checks.check_temperature, temperature_in_float16, "Your output is torch.float16"),
        (checks.check_kv_cache, kv_cache_logits_in_float64, "float64 logits"),
        (checks.check_kv_cache, kv_cache_always_runs_the_mlp, "no attribute 'mlp'"),
        (checks.check_kv_cache, kv_cache_positions_from_the_text_start, "cache.start \\+ cache"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_sampling_checks_refuse_what_their_cases_used_to_hide(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


def top_p_softmax_over_batch(logits, p):  # the probabilities of each token across the batch
    if p >= 1:
        return logits
    sorted_logits, indices = logits.sort(-1, descending=True)
    sorted_probs = sorted_logits.softmax(0)  # dim=0: over the batch, not the vocabulary
    remove = sorted_probs.cumsum(-1) - sorted_probs >= p
    return logits.masked_fill(remove.scatter(-1, indices, remove), NEG_INF)


def test_a_mistake_is_named_only_when_it_fits_every_case():
    """softmax over the batch gives, in the first case, what a dropped crossing token gives: that
    mistake was named; it does not fit the other cases."""
    with pytest.raises(AssertionError, match="apply_top_p") as err:
        checks.check_top_p(top_p_softmax_over_batch)
    assert "Likely cause" not in str(err.value), str(err.value)
