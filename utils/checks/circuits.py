"""Notebook 05's checks: direct_logit_attribution, induction_score and ablate_heads.

Each is checked against a reference below, on inputs built so that each known mistake gives a
different answer: vectors with a non-zero mean and a LayerNorm with weights and biases far from 1
and 0 (attribution); attention patterns whose diagonals all differ, for two lengths of the repeat
(induction score); a small model with random weights large enough that every head matters
(ablation). Each reference can make the known mistakes (its `mistake=` argument); a failing check
names the first mistake that gives what the learner's code gave.

What the checks accept:
- Attribution: any shape of `vectors` (the result has their shape without d_model); a 0-d tensor for
  a single vector.
- Ablation: zeroing the head's z (hook_z) or its attention pattern (hook_pattern): z is the pattern
  times the values, so the two are the same ablation. Hooks that change the activation in place and
  return None, or return a new tensor.
"""

from __future__ import annotations

import inspect

import torch

from utils.printing import print_wrapped
from utils.checks.core import (
    CheckUsageError,
    call_learner,
    fail,
    fits_every_case,
    known_mistake,
    learner_facing,
    mistakes_in,
    recognise,
)
from utils.model import Config

# --------------------------------------------------------------------------- known mistakes

DLA_NO_SCALE = known_mistake(
    "dla_no_scale",
    "direct_logit_attribution",
    "the vectors are not divided by the final LayerNorm's scale. The LayerNorm divides the whole "
    "residual stream, and so each vector in it, by that scale before the unembedding: "
    "(centred / scale) * ln_final.w, then dot W_U[:, token].",
)
DLA_SCALE_MULTIPLIED = known_mistake(
    "dla_scale_multiplied",
    "direct_logit_attribution",
    "the vectors are multiplied by the scale. LayerNorm divides by it (scale = sqrt(variance + "
    "eps)): centred / scale.",
)
DLA_NO_CENTRING = known_mistake(
    "dla_no_centring",
    "direct_logit_attribution",
    "the vectors are not centred. LayerNorm subtracts the mean over d_model first, "
    "and since that is linear, so does each vector's share: vectors - vectors.mean(dim=-1, "
    "keepdim=True).",
)
DLA_NO_LN_WEIGHT = known_mistake(
    "dla_no_ln_weight",
    "direct_logit_attribution",
    "ln_final.w is left out. After dividing by the scale, LayerNorm multiplies by its weight, "
    "elementwise: (centred / scale) * model.ln_final.w.",
)
DLA_WITH_BIASES = known_mistake(
    "dla_with_biases",
    "direct_logit_attribution",
    "ln_final.b or b_U (or both) are added to every vector's attribution. They are added once to "
    "the logit, not once per component: leave them out here (the notebook adds them as their own "
    "term).",
)
DLA_LN_PER_VECTOR = known_mistake(
    "dla_ln_per_vector",
    "direct_logit_attribution",
    "each vector goes through the final LayerNorm on its own (model.ln_final(vectors), "
    "or F.layer_norm), which divides it by ITS OWN scale (and adds ln_final.b). "
    "The LayerNorm's scale comes from the whole residual stream, the sum of all the vectors: "
    "use the `scale` given, the same for every vector: (vectors - vectors.mean(-1, "
    "keepdim=True)) / scale * ln_final.w.",
)
DLA_EMBEDDING = known_mistake(
    "dla_embedding",
    "direct_logit_attribution",
    "the dot product is with the token's embedding (W_E[token]), not its unembedding column. "
    "The logit is read by W_U: model.unembed.W_U[:, token].",
)
IND_DUPLICATE_DIAGONAL = known_mistake(
    "ind_duplicate_diagonal",
    "induction_score",
    "the score reads the diagonal at offset -seq_len: attention to the earlier copy of the SAME "
    "token (a duplicate-token head). An induction head attends to the token AFTER the earlier "
    "copy, one position later: offset -(seq_len - 1).",
)
IND_WRONG_DIAGONAL = known_mistake(
    "ind_wrong_diagonal",
    "induction_score",
    "the score reads a diagonal other than offset -(seq_len - 1) ({offset} here). "
    "Query q = seq_len + 1 + j (a token of the repeat) should attend to key q - seq_len + 1 = 2 + "
    "j, the token after its earlier copy at 1 + j.",
)
IND_UPPER_DIAGONAL = known_mistake(
    "ind_upper_diagonal",
    "induction_score",
    "the score reads a diagonal ABOVE the main one, where the causal mask leaves only zeros: "
    "the offset must be negative, -(seq_len - 1), or query and key are swapped (the pattern is "
    "[batch, n_heads, query_posn, key_posn]).",
)
IND_ALL_QUERIES = known_mistake(
    "ind_all_queries",
    "induction_score",
    "the average takes in queries of the first copy (the diagonal's first two entries are "
    "queries seq_len - 1 and seq_len): their tokens have no earlier copy to look back to. "
    "Average over the seq_len queries of the repeat only (from seq_len + 1 on: entries 2 "
    "onwards).",
)
IND_QUERIES_SHIFTED = known_mistake(
    "ind_queries_shifted",
    "induction_score",
    "the queries are off by one: the repeat's queries are positions seq_len + 1 to 2 * seq_len "
    "(position 0 is BOS), so on pattern.diagonal(offset=-(seq_len - 1)), whose first entry is "
    "query seq_len - 1, they are entries 2 onwards.",
)
IND_SUM = known_mistake(
    "ind_sum",
    "induction_score",
    "the attention is summed, not averaged: a score is a mean, between 0 and 1, "
    "so that heads compare across sequence lengths.",
)
ABL_WRONG_AXIS = known_mistake(
    "abl_wrong_axis",
    "ablate_heads",
    "the zeros go into the position dimension: z is [batch, posn, n_heads, d_head], so z[:, "
    "head] is a position. Zero z[:, :, head].",
)
ABL_SCORES_ZEROED = known_mistake(
    "abl_scores_zeroed",
    "ablate_heads",
    "the head's attention scores are set to 0. After the softmax that is attention spread evenly "
    "over every key (future ones too, since the scores hook comes after the mask), "
    "not no attention. Zero the head's z (hook_z) instead.",
)
ABL_WHOLE_LAYER = known_mistake(
    "abl_whole_layer",
    "ablate_heads",
    "the whole attention layer's output is zeroed (hook_attn_out: every head, and b_O). "
    "Zero only the given heads: their slice of hook_z, z[:, :, head].",
)
ABL_EVERY_LAYER = known_mistake(
    "abl_every_layer",
    "ablate_heads",
    "the head is ablated in every layer. Each (layer, head) pair names one head: "
    'hook only f"blocks.{layer}.attn.hook_z".',
)
ABL_LATE_BINDING = known_mistake(
    "abl_late_binding",
    "ablate_heads",
    "every hook zeroes the head of the LAST (layer, head) pair. A function defined in a loop "
    "looks its variables up when it is called, after the loop has ended (Python's late binding): "
    "bind them when it is defined (def hook(z, hook, head=head)), use functools.partial, "
    "or read the layer from hook.name.",
)
ABL_ONE_HEAD_PER_LAYER = known_mistake(
    "abl_one_head_per_layer",
    "ablate_heads",
    "only the last head given for each layer is zeroed: the heads were gathered one per layer "
    "(by_layer[layer] = head overwrites the head before). Keep a list per layer, "
    "by_layer.setdefault(layer, []).append(head), and zero all of them.",
)
ABL_NO_EFFECT = known_mistake(
    "abl_no_effect",
    "ablate_heads",
    "nothing was ablated: the logits are the model's own. A hook that changes a copy (z.clone()) "
    "must return it; one that returns None keeps the activation as it was, unless it changed it "
    "in place.",
)

RTOL, ATOL = 1e-4, 1e-5


def _learner_function(fn, name: str, parameters: tuple[str, ...]) -> None:
    """A TypeError unless fn is a function (not a class, not a result) that takes these parameters,
    by position."""
    call = f"{name}({', '.join(parameters)})"
    if isinstance(fn, type) or not callable(fn):
        got = (
            f"the class {fn.__name__}"
            if isinstance(fn, type)
            else "None"
            if fn is None
            else f"a {type(fn).__name__}"
            + (" (the result of calling it?)" if isinstance(fn, torch.Tensor) else "")
        )
        raise CheckUsageError(
            f"check_{name} takes your function {call} itself, e.g. checks.check_{name}({name}); "
            f"got {got}"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some built-in callables have none: the call itself will say
        return
    try:
        signature.bind(*parameters)
    except TypeError:
        raise CheckUsageError(
            f"check_{name} calls your function as {call}, with {len(parameters)} "
            f"argument{'s' * (len(parameters) != 1)}; "
            f"{getattr(fn, '__name__', name)}{signature} does not take them"
        ) from None


# ------------------------------------------------------------------------- direct logit attribution


def _dla_model(seed: int = 0):
    """A small model whose final LayerNorm and unembedding are far from their initial values (w !=
    1, b != 0, b_U != 0)."""
    from utils.hooks import HookedDemoTransformer

    generator = torch.Generator().manual_seed(seed)
    cfg = Config(d_model=16, d_vocab=12, n_ctx=8, d_head=4, d_mlp=32, n_heads=4, n_layers=1)
    model = HookedDemoTransformer(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        model.ln_final.w.add_(1.0)
    return model


def _dla(vectors, scale, model, token, mistake=None):
    """(centred / scale * ln_final.w) . W_U[:, token]; or with a known mistake."""
    centred = (
        vectors if mistake is DLA_NO_CENTRING else vectors - vectors.mean(dim=-1, keepdim=True)
    )
    scaled = (
        centred * scale
        if mistake is DLA_SCALE_MULTIPLIED
        else centred
        if mistake is DLA_NO_SCALE
        else centred / scale
    )
    weighted = scaled if mistake is DLA_NO_LN_WEIGHT else scaled * model.ln_final.w
    column = model.embed.W_E[token] if mistake is DLA_EMBEDDING else model.unembed.W_U[:, token]
    if mistake is DLA_LN_PER_VECTOR:
        own = torch.nn.functional.layer_norm(
            vectors, vectors.shape[-1:], eps=model.cfg.layer_norm_eps
        )
        return [model.ln_final(vectors) @ column, (own * model.ln_final.w) @ column, own @ column]
    out = weighted @ column
    if mistake is DLA_WITH_BIASES:  # both, or one of them
        ln_bias = model.ln_final.b @ model.unembed.W_U[:, token]
        b_U = model.unembed.b_U[token]
        return [out + ln_bias + b_U, out + ln_bias, out + b_U]
    return out


def _same(got, expected) -> bool:
    return (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and got.is_floating_point()
        and torch.allclose(got.detach().float(), expected.float(), rtol=RTOL, atol=ATOL)
    )


@learner_facing
def check_direct_logit_attribution(fn) -> None:
    _learner_function(fn, "direct_logit_attribution", ("vectors", "scale", "model", "token"))
    what = "direct_logit_attribution(vectors, scale, model, token)"
    things = (
        "centre each vector, divide by scale, multiply by ln_final.w, then dot with W_U[:, "
        "token]; no biases."
    )
    model = _dla_model()
    generator = torch.Generator().manual_seed(1)
    cases = [
        (
            torch.randn(3, 4, 16, generator=generator) + 0.7,
            torch.tensor(1.7),
            5,
        ),  # a [layer, head] grid of vectors
        (torch.randn(16, generator=generator) - 0.4, torch.tensor(0.6), 9),
    ]  # one vector: a 0-d result
    with torch.no_grad():
        for vectors, scale, token in cases:
            saved = vectors.clone()
            got = call_learner(
                fn,
                vectors,
                scale,
                model,
                token,
                what=what,
                things_to_check=things,
                leaves_unchanged="weights",
            )
            if not torch.equal(vectors, saved):
                fail(
                    f"{what} changed the vectors it was given (an in-place operation such as "
                    "vectors -= ...). They are the cache's activations: work on a new tensor "
                    "(vectors - vectors.mean(...))."
                )
            expected = _dla(vectors, scale, model, token)
            if not isinstance(got, torch.Tensor):
                fail(
                    f"{what} must return a tensor, got {type(got).__name__}"
                    + (" (no return?)" if got is None else "")
                )
            if got.shape != expected.shape:
                hint = (
                    " One logit for every token: take the token's column, W_U[:, token], "
                    "not all of W_U."
                    if got.shape[-1:] == (model.cfg.d_vocab,)
                    else ""
                )
                fail(
                    f"{what} returned shape {tuple(got.shape)} for vectors of "
                    f"shape {tuple(vectors.shape)}; expected {tuple(expected.shape)}: "
                    f"one number per vector (the vectors' shape without d_model).{hint}"
                )
            if not _same(got, expected):
                mistake = recognise(
                    got,
                    mistakes_in("direct_logit_attribution"),
                    lambda m: _dla(vectors, scale, model, token, mistake=m),
                    _same,
                )
                fail(
                    [
                        f"{what}: wrong attributions for vectors of shape {tuple(vectors.shape)}, "
                        f"token {token}",
                        f"  got      {got.flatten()[:4].tolist()}",
                        f"  expected {expected.flatten()[:4].tolist()}",
                    ],
                    mistake,
                    things,
                )
    print_wrapped(
        "direct_logit_attribution: correct (a grid of vectors and a single one; centring, scale, "
        "ln_final.w, W_U)"
    )


# --------------------------------------------------------------------------- induction score


def _patterns(seq_len: int, n_heads: int = 6, batch: int = 2, seed: int = 0):
    """Causal attention patterns over BOS, r, r whose diagonals all differ: head h favours a
    different offset."""
    generator = torch.Generator().manual_seed(seed)
    posn = 2 * seq_len + 1
    scores = torch.randn(batch, n_heads, posn, posn, generator=generator)
    q, k = torch.arange(posn)[:, None], torch.arange(posn)[None, :]
    for head, offset in enumerate((seq_len - 1, seq_len, 1, seq_len + 1, 0)[:n_heads]):
        scores[:, head] += 3.0 * (
            q - k == offset
        )  # an induction head, a duplicate-token head, a previous-token head, ...
    return scores.masked_fill(k > q, float("-inf")).softmax(-1)


def WRONG_OFFSETS(seq_len: int) -> tuple[int, ...]:
    """Diagonals below the main one that learners read by mistake: one too close, one too far, the
    previous token's."""
    return (seq_len - 2, seq_len + 1, 1)


def _induction(pattern, seq_len, mistake=None):
    """The mean of pattern[:, :, q, q - seq_len + 1] over the batch and q in [seq_len + 1, 2 *
    seq_len]; or with a mistake."""
    if mistake is IND_DUPLICATE_DIAGONAL:  # whichever queries are kept
        duplicate = pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1)
        return [duplicate[..., start:].mean(dim=(0, 2)) for start in (0, 1, 2)]
    if mistake is IND_WRONG_DIAGONAL:
        return [
            pattern.diagonal(offset=-o, dim1=-2, dim2=-1)[..., start:].mean(dim=(0, 2))
            for o in WRONG_OFFSETS(seq_len)
            for start in (0, 1, 2)
        ]
    if mistake is IND_UPPER_DIAGONAL:
        return [
            pattern.diagonal(offset=seq_len - 1, dim1=-2, dim2=-1).mean(dim=(0, 2)),
            pattern.transpose(-1, -2)
            .diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 2:]
            .mean(dim=(0, 2)),
        ]
    stripe = pattern.diagonal(
        offset=-(seq_len - 1), dim1=-2, dim2=-1
    )  # queries seq_len - 1 .. 2 * seq_len
    if mistake is IND_ALL_QUERIES:
        return [stripe.mean(dim=(0, 2)), stripe[..., 1:].mean(dim=(0, 2))]
    if mistake is IND_QUERIES_SHIFTED:
        return [stripe[..., 1:-1].mean(dim=(0, 2)), stripe[..., 3:].mean(dim=(0, 2))]
    if mistake is IND_SUM:
        return [stripe[..., 2:].sum(dim=(0, 2)), stripe[..., 2:].sum(dim=2).mean(0)]
    return stripe[..., 2:].mean(dim=(0, 2))


@learner_facing
def check_induction_score(fn) -> None:
    _learner_function(fn, "induction_score", ("pattern", "seq_len"))
    what = "induction_score(pattern, seq_len)"
    things = (
        "pattern[:, :, q, q - seq_len + 1] for the queries of the repeat, q from seq_len + 1 to 2 "
        "* seq_len: pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 2:], "
        "averaged over batch and queries."
    )
    # two lengths and batch sizes: a number written into the code for one fails the other
    for seq_len, batch in ((6, 2), (9, 3)):
        pattern = _patterns(seq_len, batch=batch)
        saved = pattern.clone()
        got = call_learner(
            fn, pattern, seq_len, what=f"{what} with seq_len={seq_len}", things_to_check=things
        )
        if not torch.equal(pattern, saved):
            fail(
                f"{what} changed the pattern it was given: it is the cache's activation; read it, "
                "do not write to it."
            )
        expected = _induction(pattern, seq_len)
        if not isinstance(got, torch.Tensor):
            fail(
                f"{what} must return a tensor [n_heads], got {type(got).__name__}"
                + (" (no return?)" if got is None else "")
            )
        if got.shape != expected.shape:
            hint = (
                " Average over the batch too (dim 0)."
                if tuple(got.shape) == (pattern.shape[0], pattern.shape[1])
                else " Average over the batch and the queries, not over the heads; "
                "and take the diagonal over the last two dimensions (query and key): "
                "pattern.diagonal(offset, dim1=-2, dim2=-1), since by default .diagonal() "
                "takes the first two (batch and heads)."
                if got.ndim == 0 or got.shape[-1] != pattern.shape[1]
                else ""
            )
            fail(
                f"{what} returned shape {tuple(got.shape)} for a pattern of "
                f"shape {tuple(pattern.shape)}; expected ({pattern.shape[1]},): "
                f"one score per head.{hint}"
            )
        if not _same(got, expected):
            offsets = {}
            mistake = recognise(
                got,
                mistakes_in("induction_score"),
                lambda m: _induction(pattern, seq_len, mistake=m),
                _same,
            )
            if mistake is IND_WRONG_DIAGONAL:
                offsets["offset"] = next(
                    f"-{o}"
                    for o in WRONG_OFFSETS(seq_len)
                    for start in (0, 1, 2)
                    if _same(
                        got,
                        pattern.diagonal(offset=-o, dim1=-2, dim2=-1)[..., start:].mean(dim=(0, 2)),
                    )
                )
            if mistake is None and torch.isnan(got).any():
                fail(
                    [
                        f"{what}: the scores are nan with seq_len={seq_len}: the mean of an empty "
                        "selection. Are the positions computed from seq_len (not from a number "
                        f"written in), within the {pattern.shape[-1]} positions?"
                    ]
                )
            fail(
                [
                    f"{what}: wrong scores with seq_len={seq_len} (heads built to favour offsets "
                    "-(seq_len - 1), -seq_len, -1, -(seq_len + 1), 0)",
                    f"  got      {[round(x, 4) for x in got.tolist()]}",
                    f"  expected {[round(x, 4) for x in expected.tolist()]}",
                ],
                mistake,
                things,
                **offsets,
            )
    print_wrapped(
        "induction_score: correct (two lengths of the repeat, batches of 2 and 3; only the "
        "induction diagonal, only the repeat's queries)"
    )


# --------------------------------------------------------------------------- ablation


def _ablation_model(seed: int = 0, n_layers: int = 2, n_heads: int = 4):
    """A small model whose heads all matter: random weights, larger than at initialisation."""
    from utils.hooks import HookedDemoTransformer

    generator = torch.Generator().manual_seed(seed)
    cfg = Config(
        d_model=32, d_vocab=50, n_ctx=16, d_head=8, d_mlp=64, n_heads=n_heads, n_layers=n_layers
    )
    model = HookedDemoTransformer(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(
                torch.randn(param.shape, generator=generator) * (0.4 if "attn.W_" in name else 0.2)
            )
            if name.endswith(".w"):
                param.add_(1.0)
    return model


def _ablate(model, tokens, heads, mistake=None):
    """The logits with each (layer, head) zero-ablated at hook_z; or with a known mistake."""
    by_layer = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    if mistake is ABL_NO_EFFECT:
        return model(tokens)
    if mistake is ABL_LATE_BINDING:
        by_layer = {layer: [heads[-1][1]] for layer in by_layer}
    if mistake is ABL_ONE_HEAD_PER_LAYER:
        by_layer = {layer: [here[-1]] for layer, here in by_layer.items()}
    if mistake is ABL_EVERY_LAYER:
        by_layer = {layer: sorted({h for _, h in heads}) for layer in range(model.cfg.n_layers)}
    name, index = "z", lambda here: (slice(None), slice(None), here)
    if mistake is ABL_WRONG_AXIS:
        index = lambda here: (slice(None), here)  # noqa: E731
    elif mistake is ABL_SCORES_ZEROED:
        name, index = "attn_scores", lambda here: (slice(None), here)  # noqa: E731
    elif mistake is ABL_WHOLE_LAYER:
        name, index = "attn_out", lambda here: (slice(None),)  # noqa: E731

    def hook_for(here):
        def zero(activation, hook):
            activation = activation.clone()
            activation[index(here)] = 0.0
            return activation

        return zero

    return model.run_with_hooks(
        tokens, [((name, layer), hook_for(here)) for layer, here in by_layer.items()]
    )


@learner_facing
def check_ablate_heads(fn) -> None:
    _learner_function(fn, "ablate_heads", ("model", "tokens", "heads"))
    what = "ablate_heads(model, tokens, heads)"
    things = (
        'a hook on f"blocks.{layer}.attn.hook_z" for each layer in heads, '
        "setting z[:, :, head] = 0 for that layer's heads and returning z; "
        "model.run_with_hooks(tokens, fwd_hooks=[...])."
    )
    model = _ablation_model()
    tokens = torch.randint(
        0, model.cfg.d_vocab, (2, 10), generator=torch.Generator().manual_seed(2)
    )
    results = []  # (heads, the learner's logits)
    given = tokens.clone()
    with torch.no_grad():
        plain = model(tokens)
        for heads in ([(1, 2)], [(0, 1), (1, 3)], [(1, 0), (1, 3)], [(0, 2), (1, 2), (0, 0)]):
            got = call_learner(
                fn,
                model,
                tokens,
                list(heads),
                what=f"{what} with heads={heads}",
                things_to_check=things,
            )
            left = [name for name, point in model.hook_points().items() if point.active]
            if left:
                model.reset_hooks()
                fail(
                    f"{what} left hooks attached afterwards, on {left[:3]}: "
                    "every later forward pass of the model would still be ablated. "
                    "Use model.run_with_hooks (or `with model.hooks(...)`), "
                    "which removes them when it ends, also if something fails."
                )
            if not torch.equal(tokens, given):
                fail(
                    f"{what} changed the tokens it was given (in place, such as tokens[...] = "
                    "...): it only reads them, or the caller's next use of them is off. Work on "
                    "a copy (tokens.clone()) if you must edit them."
                )
            if not torch.equal(model(tokens), plain):
                fail(
                    f"{what} changed the model itself (its weights): after the call, "
                    "the model's own logits differ from before. Ablate with a hook, "
                    "for one forward pass (model.run_with_hooks), so that the model is unchanged "
                    "afterwards: zeroing W_O under torch.no_grad() ablates the head for every "
                    "later cell too."
                )
            if not isinstance(got, torch.Tensor) or got.shape != plain.shape:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                fail(
                    f"{what} must return the logits, shape {tuple(plain.shape)} [batch, posn, "
                    f"d_vocab], got {shape}" + (" (no return?)" if got is None else "")
                )
            results.append((heads, got))
        for heads, got in results:
            expected = _ablate(model, tokens, heads)
            if not _same(got, expected):
                mistake = next(
                    (
                        m
                        for m in mistakes_in("ablate_heads")
                        if fits_every_case(
                            m, results, lambda m, case: _ablate(model, tokens, case, m), _same
                        )
                    ),
                    None,
                )
                fail(
                    [
                        f"{what} with heads={heads}: the logits differ from those with exactly "
                        "these heads' z set to 0 (largest "
                        f"difference {(got - expected).abs().max().item():.3g})"
                    ],
                    mistake,
                    things,
                )
    print_wrapped(
        "ablate_heads: correct (one head; heads in two layers; two heads of one layer; "
        "and no hooks left attached)"
    )
