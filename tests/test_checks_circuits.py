"""Notebook 05's checks: each passes correct alternatives and catches each known mistake, naming it
(and no other).

Every broken function below is written as a learner would write it, independently of the checks'
reference (which makes the mistakes through its `mistake=` argument): a check that passed
everything, or named the wrong mistake, fails here.
"""

import re

import pytest
import torch
from named_mistakes import assert_check_names_only

from utils import checks, circuits
from utils.checks import MISTAKES

CIRCUITS_PARTS = {"direct_logit_attribution", "induction_score", "ablate_heads"}


# ---------------------------------------------------------------- direct logit attribution


def dla(vectors, scale, model, token):
    centred = vectors - vectors.mean(-1, keepdim=True)
    return (centred / scale * model.ln_final.w) @ model.unembed.W_U[:, token]


def dla_einsum(
    vectors, scale, model, token
):  # another way to write it: multiply and sum over d_model
    normalized = (vectors - vectors.mean(dim=-1, keepdim=True)) / scale
    return (normalized * model.ln_final.w * model.unembed.W_U[:, token]).sum(-1)


def dla_folded(
    vectors, scale, model, token
):  # TransformerLens's way: fold ln_final.w into W_U first
    folded = model.ln_final.w[:, None] * model.unembed.W_U
    return ((vectors - vectors.mean(-1, keepdim=True)) / scale) @ folded[:, token]


def dla_no_scale(vectors, scale, model, token):
    return ((vectors - vectors.mean(-1, keepdim=True)) * model.ln_final.w) @ model.unembed.W_U[
        :, token
    ]


def dla_times_scale(vectors, scale, model, token):
    return (
        (vectors - vectors.mean(-1, keepdim=True)) * scale * model.ln_final.w
    ) @ model.unembed.W_U[:, token]


def dla_no_centring(vectors, scale, model, token):
    return (vectors / scale * model.ln_final.w) @ model.unembed.W_U[:, token]


def dla_no_ln_weight(vectors, scale, model, token):
    return ((vectors - vectors.mean(-1, keepdim=True)) / scale) @ model.unembed.W_U[:, token]


def dla_with_biases(vectors, scale, model, token):
    normalized = (
        vectors - vectors.mean(-1, keepdim=True)
    ) / scale * model.ln_final.w + model.ln_final.b
    return normalized @ model.unembed.W_U[:, token] + model.unembed.b_U[token]


def dla_with_ln_bias(vectors, scale, model, token):  # ln_final.b only: b_U left out
    normalized = (
        vectors - vectors.mean(-1, keepdim=True)
    ) / scale * model.ln_final.w + model.ln_final.b
    return normalized @ model.unembed.W_U[:, token]


def dla_with_b_U(vectors, scale, model, token):  # b_U only
    normalized = (vectors - vectors.mean(-1, keepdim=True)) / scale * model.ln_final.w
    return normalized @ model.unembed.W_U[:, token] + model.unembed.b_U[token]


def dla_layer_norm_each(
    vectors, scale, model, token
):  # the LayerNorm module on each vector: its own scale, and ln_final.b
    return model.ln_final(vectors) @ model.unembed.W_U[:, token]


def dla_divide_last(
    vectors, scale, model, token
):  # the scale applied after the dot product: the same numbers
    centred = vectors - vectors.mean(-1, keepdim=True)
    return (centred * model.ln_final.w) @ model.unembed.W_U[:, token] / scale


def induction_duplicate_whole(pattern, seq_len):  # the duplicate-token diagonal, every query on it
    return pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_previous_token(pattern, seq_len):
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_default_dims(pattern, seq_len):
    return pattern.diagonal(-(seq_len - 1))[..., 2:].mean(0)


def induction_hard_coded(
    pattern, seq_len
):  # positions from the notebook's seq_len of 24: nothing left to average
    return pattern[:, :, 25:49, 2:26].diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_batch_of_two(pattern, seq_len):  # right only for a batch of 2
    stripe = pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 2:]
    return (stripe[0] + stripe[1]).mean(-1) / 2


def ablate_by_zeroing_weights(model, tokens, heads):
    with torch.no_grad():
        for layer, head in heads:
            model.blocks[layer].attn.W_O[head] = 0
    return model(tokens)


def ablate_editing_the_tokens(model, tokens, heads):  # writes into the caller's tokens
    tokens[:, 0] = 0
    return ablate_with_context_manager(model, tokens, heads)


def dla_embedding(vectors, scale, model, token):
    return (
        (vectors - vectors.mean(-1, keepdim=True)) / scale * model.ln_final.w
    ) @ model.embed.W_E[token]


def dla_every_token(vectors, scale, model, token):
    return (
        (vectors - vectors.mean(-1, keepdim=True)) / scale * model.ln_final.w
    ) @ model.unembed.W_U


def dla_sum_over_dim_2(
    vectors, scale, model, token
):  # right for a [layer, head, d_model] grid only
    normalized = (vectors - vectors.mean(-1, keepdim=True)) / scale
    return (normalized * model.ln_final.w * model.unembed.W_U[:, token]).sum(dim=2)


def dla_in_place(vectors, scale, model, token):
    vectors -= vectors.mean(-1, keepdim=True)
    return (vectors / scale * model.ln_final.w) @ model.unembed.W_U[:, token]


# ---------------------------------------------------------------- induction score


def induction(pattern, seq_len):
    stripe = pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)
    return stripe[..., 2:].mean(dim=(0, 2))


def induction_by_index(pattern, seq_len):  # the same entries, picked one by one
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len + 1].mean(dim=(0, 2))


def induction_duplicate(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len].mean(dim=(0, 2))


def induction_offset_too_small(pattern, seq_len):
    return pattern.diagonal(offset=-(seq_len - 2), dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_upper(pattern, seq_len):
    return pattern.diagonal(offset=seq_len - 1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_whole_diagonal(pattern, seq_len):  # ARENA's shortcut: every query on the stripe
    return pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_forgot_bos(
    pattern, seq_len
):  # queries seq_len .. 2 * seq_len - 1, as if there were no BOS
    queries = torch.arange(seq_len, 2 * seq_len)
    return pattern[:, :, queries, queries - seq_len + 1].mean(dim=(0, 2))


def induction_summed(pattern, seq_len):
    return pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 2:].sum(dim=-1).mean(0)


def induction_per_sequence(pattern, seq_len):
    return pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 2:].mean(-1)


def induction_fixed_length(pattern, seq_len):  # a number from the notebook written in
    return pattern.diagonal(offset=-5, dim1=-2, dim2=-1)[..., 2:].mean(dim=(0, 2))


# ---------------------------------------------------------------- ablation


def _names(heads):
    return sorted({layer for layer, _ in heads})


def ablate(model, tokens, heads):
    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        z = z.clone()
        z[:, :, [h for at, h in heads if at == layer]] = 0
        return z

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_z", hook) for layer in _names(heads)]
    )


def ablate_pattern(
    model, tokens, heads
):  # zeroing the pattern is the same ablation: z = pattern @ v
    def hook(pattern, hook):
        for layer, head in heads:
            if hook.name == f"blocks.{layer}.attn.hook_pattern":
                pattern[:, head] = 0

    return model.run_with_hooks(tokens, [(("pattern", layer), hook) for layer in _names(heads)])


def ablate_one_hook_per_pair(
    model, tokens, heads
):  # several hooks on one hook point, each returning None after an in-place change
    from functools import partial

    def hook(z, hook, head):
        z[:, :, head] = 0.0

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_z", partial(hook, head=head)) for layer, head in heads]
    )


def ablate_with_context_manager(model, tokens, heads):
    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        return (
            z
            * torch.tensor([0.0 if (layer, h) in heads else 1.0 for h in range(z.shape[2])])[
                :, None
            ]
        )

    with model.hooks([(lambda name: name.endswith("hook_z"), hook)]):
        return model(tokens)


def ablate_wrong_axis(model, tokens, heads):
    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        z = z.clone()
        z[:, [h for at, h in heads if at == layer]] = 0
        return z

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_z", hook) for layer in _names(heads)]
    )


def ablate_scores(model, tokens, heads):
    def hook(scores, hook):
        layer = int(hook.name.split(".")[1])
        scores = scores.clone()
        scores[:, [h for at, h in heads if at == layer]] = 0
        return scores

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_attn_scores", hook) for layer in _names(heads)]
    )


def ablate_attn_out(model, tokens, heads):
    return model.run_with_hooks(
        tokens,
        [(f"blocks.{layer}.hook_attn_out", lambda out, hook: out * 0) for layer in _names(heads)],
    )


def ablate_every_layer(model, tokens, heads):
    def hook(z, hook):
        z = z.clone()
        z[:, :, [h for _, h in heads]] = 0
        return z

    return model.run_with_hooks(tokens, [(lambda name: name.endswith("attn.hook_z"), hook)])


def ablate_late_binding(model, tokens, heads):
    fwd_hooks = []
    for layer, head in heads:

        def hook(z, hook):
            z = z.clone()
            z[:, :, head] = 0  # `head` is looked up when the hook runs: the last pair's
            return z

        fwd_hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return model.run_with_hooks(tokens, fwd_hooks)


def ablate_copy_not_returned(model, tokens, heads):
    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        z = z.clone()
        z[:, :, [h for at, h in heads if at == layer]] = 0

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_z", hook) for layer in _names(heads)]
    )


def ablate_one_head_per_layer(
    model, tokens, heads
):  # a dict {layer: head} keeps only the last head of each layer
    by_layer = {layer: head for layer, head in heads}

    def hook(z, hook):
        z = z.clone()
        z[:, :, by_layer[int(hook.name.split(".")[1])]] = 0
        return z

    return model.run_with_hooks(
        tokens, [(f"blocks.{layer}.attn.hook_z", hook) for layer in by_layer]
    )


def ablate_leaving_hooks(model, tokens, heads):
    for layer, head in heads:
        model.hook_points()[f"blocks.{layer}.attn.hook_z"].hooks.append(
            lambda z, hook, head=head: z.index_fill(2, torch.tensor([head]), 0.0)
        )
    return model(tokens)


BROKEN_CIRCUITS = {
    "dla_no_scale": (checks.check_direct_logit_attribution, dla_no_scale),
    "dla_scale_multiplied": (checks.check_direct_logit_attribution, dla_times_scale),
    "dla_no_centring": (checks.check_direct_logit_attribution, dla_no_centring),
    "dla_no_ln_weight": (checks.check_direct_logit_attribution, dla_no_ln_weight),
    "dla_with_biases": (checks.check_direct_logit_attribution, dla_with_biases),
    "dla_embedding": (checks.check_direct_logit_attribution, dla_embedding),
    "dla_ln_per_vector": (checks.check_direct_logit_attribution, dla_layer_norm_each),
    "ind_duplicate_diagonal": (checks.check_induction_score, induction_duplicate),
    "ind_wrong_diagonal": (checks.check_induction_score, induction_offset_too_small),
    "ind_upper_diagonal": (checks.check_induction_score, induction_upper),
    "ind_all_queries": (checks.check_induction_score, induction_whole_diagonal),
    "ind_queries_shifted": (checks.check_induction_score, induction_forgot_bos),
    "ind_sum": (checks.check_induction_score, induction_summed),
    "abl_wrong_axis": (checks.check_ablate_heads, ablate_wrong_axis),
    "abl_scores_zeroed": (checks.check_ablate_heads, ablate_scores),
    "abl_whole_layer": (checks.check_ablate_heads, ablate_attn_out),
    "abl_every_layer": (checks.check_ablate_heads, ablate_every_layer),
    "abl_late_binding": (checks.check_ablate_heads, ablate_late_binding),
    "abl_one_head_per_layer": (checks.check_ablate_heads, ablate_one_head_per_layer),
    "abl_no_effect": (checks.check_ablate_heads, ablate_copy_not_returned),
}


def test_every_circuits_mistake_has_a_broken_variant():
    assert set(BROKEN_CIRCUITS) == {
        name for name, m in MISTAKES.items() if m.part in CIRCUITS_PARTS
    }
    assert {checks.CHECKS[p].__name__ for p in CIRCUITS_PARTS} == {
        "check_direct_logit_attribution",
        "check_induction_score",
        "check_ablate_heads",
    }


@pytest.mark.parametrize("mistake", sorted(BROKEN_CIRCUITS))
def test_check_catches_mistake_and_names_it(mistake):
    check, broken = BROKEN_CIRCUITS[mistake]
    assert_check_names_only(check, broken, mistake)


def test_the_wrong_offset_is_named():
    with pytest.raises(AssertionError, match=r"\(-4 here\)"):  # seq_len 6: offset -(seq_len - 2)
        checks.check_induction_score(induction_offset_too_small)


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_direct_logit_attribution, dla),
        (checks.check_direct_logit_attribution, dla_einsum),
        (checks.check_direct_logit_attribution, dla_folded),
        (checks.check_direct_logit_attribution, dla_divide_last),
        (checks.check_induction_score, induction),
        (checks.check_induction_score, induction_by_index),
        (checks.check_ablate_heads, ablate),
        (checks.check_ablate_heads, ablate_pattern),
        (checks.check_ablate_heads, ablate_one_hook_per_pair),
        (checks.check_ablate_heads, ablate_with_context_manager),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_correct_alternatives_pass(check, fn, capsys):
    check(fn)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (
            checks.check_direct_logit_attribution,
            dla_every_token,
            r"take the token's column, W_U\[:, token\]",
        ),
        (checks.check_direct_logit_attribution, dla_in_place, r"changed the vectors it was given"),
        (
            checks.check_direct_logit_attribution,
            dla_sum_over_dim_2,
            r"raised IndexError",
        ),  # the single vector finds it
        (
            checks.check_direct_logit_attribution,
            lambda v, s, m, t: None,
            r"must return a tensor, got NoneType \(no return\?\)",
        ),
        (checks.check_induction_score, induction_per_sequence, r"Average over the batch too"),
        (checks.check_induction_score, induction_fixed_length, r"wrong scores with seq_len="),
        (checks.check_ablate_heads, ablate_leaving_hooks, r"left hooks attached afterwards"),
        (
            checks.check_ablate_heads,
            lambda model, tokens, heads: None,
            r"must return the logits.*\(no return\?\)",
        ),
        (
            checks.check_ablate_heads,
            ablate_by_zeroing_weights,
            r"changed the model itself \(its weights\)",
        ),
        (checks.check_ablate_heads, ablate_editing_the_tokens, r"changed the tokens it was given"),
        (
            checks.check_induction_score,
            induction_default_dims,
            r"by default \.diagonal\(\) takes the first two",
        ),
        (
            checks.check_induction_score,
            induction_hard_coded,
            r"the scores are nan with seq_len=6: the mean of an empty selection",
        ),
        (
            checks.check_induction_score,
            induction_duplicate_whole,
            re.escape(MISTAKES["ind_duplicate_diagonal"].advice[:60]),
        ),
        (checks.check_induction_score, induction_previous_token, r"\(-1 here\)"),
        (checks.check_induction_score, induction_batch_of_two, "seq_len=9"),
    ],
)
def test_other_failures_say_what_is_wrong(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_direct_logit_attribution, circuits.direct_logit_attribution),
        (checks.check_induction_score, circuits.induction_score),
        (checks.check_ablate_heads, circuits.ablate_heads),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_the_library_functions_pass_their_checks(check, fn, capsys):
    """utils.circuits' own versions (which the notebook's later cells and other code import) are
    right too."""
    check(fn)
    assert "correct" in capsys.readouterr().out


def test_a_stub_reaches_the_learner_unwrapped():
    def stub(pattern, seq_len):
        raise NotImplementedError("take the diagonal")

    with pytest.raises(NotImplementedError, match="take the diagonal"):
        checks.check_induction_score(stub)


def test_the_induction_patterns_make_every_mistake_visible():
    """The check's patterns favour different diagonals per head, so that each mistake's scores
    differ from the right ones."""
    from utils.checks import circuits as C

    pattern = C._patterns(6)
    right = C._induction(pattern, 6)
    assert right[0] > 0.5 and right[1:].max() < 0.2  # head 0 is the induction head
    for mistake in C.mistakes_in("induction_score"):
        for wrong in (lambda out: out if isinstance(out, list) else [out])(
            C._induction(pattern, 6, mistake=mistake)
        ):
            assert not torch.allclose(wrong, right, atol=1e-3), mistake.name


class InductionScore:  # a class where a function is expected
    def __init__(self, pattern, seq_len):
        self.score = pattern


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (
            checks.check_induction_score,
            InductionScore,
            r"check_induction_score takes your function induction_score\(pattern, "
            r"seq_len\) itself, e.g. checks.check_induction_score\(induction_score\); "
            r"got the class InductionScore",
        ),
        (checks.check_induction_score, None, r"got None"),
        (
            checks.check_induction_score,
            torch.zeros(6),
            r"got a Tensor \(the result of calling it\?\)",
        ),
        (
            checks.check_ablate_heads,
            "ablate_heads",
            r"check_ablate_heads takes your function ablate_heads\(model, tokens, heads\) itself",
        ),
        (
            checks.check_induction_score,
            lambda pattern: pattern,
            r"calls your function as induction_score\(pattern, seq_len\), with 2 "
            r"arguments; <lambda>\(pattern\) does not take them",
        ),
        (
            checks.check_direct_logit_attribution,
            lambda v, s, m: v,
            r"direct_logit_attribution\(vectors, scale, model, token\), with 4 arguments",
        ),
    ],
    ids=lambda x: "",
)
def test_checks_given_something_other_than_the_function_say_what_they_take(check, fn, message):
    with pytest.raises(TypeError, match=message):
        check(fn)


def test_checks_accept_functions_with_extra_defaults_and_callable_objects(capsys):
    def induction_with_default(pattern, seq_len, offset=1):
        return induction(pattern, seq_len)

    class Ablate:
        def __call__(self, model, tokens, heads):
            return ablate(model, tokens, heads)

    checks.check_induction_score(induction_with_default)
    checks.check_ablate_heads(Ablate())
    assert capsys.readouterr().out.count("correct") == 2


@pytest.mark.parametrize("broken", [dla_with_ln_bias, dla_with_b_U])
def test_one_bias_added_is_named_as_well_as_both(broken):
    with pytest.raises(AssertionError, match="Likely cause: ln_final.b or b_U") as err:
        checks.check_direct_logit_attribution(broken)
    assert "direct_logit_attribution" in str(err.value)
