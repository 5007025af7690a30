"""Notebook 07's checks: patch_effect, patch_residual_stream, patch_head_outputs, ov_circuit,
copying_score and composition_score.

Each is checked against a reference below, on inputs where each known mistake gives another answer:
metrics on both sides of the baselines (the effect); a small model with random weights large enough
that every position and head matters, and clean and corrupted tokens that differ at several
positions (patching); a model whose heads' W_Q W_K and W_V W_O differ and whose W_U is not W_E's
transpose (the OV circuit); circuits whose row and column maxima differ (copying); matrices that
do not commute (composition). Each reference can make the known mistakes (its `mistake=`
argument); a failing check names the first mistake that gives what the learner's code gave.
"""

from __future__ import annotations

import torch

from utils.printing import print_wrapped
from utils.checks.circuits import _ablation_model, _learner_function, _same
from utils.checks.core import call_learner, fail, known_mistake, learner_facing, mistakes_in
from utils.checks.core import as_number, recognise

# --------------------------------------------------------------------------- known mistakes

EFFECT_NOT_NORMALISED = known_mistake(
    "effect_not_normalised",
    "patch_effect",
    "the effect is not normalised: value - corrupted is in the metric's units, so it cannot be "
    "compared across metrics or read as a share. Divide by clean - corrupted: 0 is the corrupted "
    "run, 1 the clean run.",
)
EFFECT_WRONG_BASELINE = known_mistake(
    "effect_wrong_baseline",
    "patch_effect",
    "the effect is measured from the clean run: (value - clean) / (corrupted - clean) is 0 for "
    "the clean run's metric and 1 for the corrupted run's, the other way round (as (value - min) "
    "/ (max - min) is, for a metric where lower is better). Measure from the corrupted run: "
    "(value - corrupted) / (clean - corrupted).",
)
EFFECT_ABS_DENOMINATOR = known_mistake(
    "effect_abs_denominator",
    "patch_effect",
    "the distance is divided by abs(clean - corrupted): right when the clean run's metric is the "
    "larger, but for a metric where lower is better (a loss) every effect has the wrong sign. "
    "Divide by clean - corrupted itself.",
)
RESID_INTO_CLEAN = known_mistake(
    "resid_into_clean",
    "patch_residual_stream",
    "the patch goes the wrong way: the clean tokens run, with the corrupted run's activation "
    "patched in. Take the activations from the clean run (run_with_cache(clean_tokens)) and patch "
    "them into a run of the corrupted tokens.",
)
RESID_WHOLE_LAYER = known_mistake(
    "resid_whole_layer",
    "patch_residual_stream",
    "every position is patched at once (resid[:] or the whole clean activation returned), not "
    "the one position: set only resid[:, position], and leave the other positions corrupted.",
)
RESID_PREFIX = known_mistake(
    "resid_prefix",
    "patch_residual_stream",
    "the positions up to and including `position` are patched (a slice, resid[:, :position + 1]), "
    "not `position` alone: index it, resid[:, position] = clean[:, position].",
)
RESID_LAYER_OFF_BY_ONE = known_mistake(
    "resid_layer_off_by_one",
    "patch_residual_stream",
    "row `layer` patches the stream leaving block `layer` (hook_resid_post), not the one "
    "entering it: patch f'blocks.{layer}.hook_resid_pre' (resid_pre) in row `layer`.",
)
RESID_NOT_RETURNED = known_mistake(
    "resid_not_returned",
    "patch_residual_stream",
    "no patch took effect: every entry is the corrupted run's metric. A hook that changes a clone "
    "must return it (a hook that returns None leaves the activation as it was): end the hook with "
    "return resid.",
)
RESID_NO_HOOK_RAN = known_mistake(
    "resid_no_hook_ran",
    "patch_residual_stream",
    "no patch took effect, and no hook ran while your function did: model(corrupted_tokens) runs "
    "the model without them. Run it as model.run_with_hooks(corrupted_tokens, "
    "fwd_hooks=[(f'blocks.{layer}.hook_resid_pre', patch)]).",
)
RESID_NOTHING_CLEAN_COPIED = known_mistake(
    "resid_nothing_clean_copied",
    "patch_residual_stream",
    "no patch took effect, though your hooks ran and returned a tensor: what they put in is the "
    "corrupted run's own activation. Either the cache is the corrupted run's: cache the clean one, "
    "model.run_with_cache(clean_tokens); or a hook wrote into clean_cache['resid_pre', layer] "
    "itself (not a copy), overwriting the clean run with the corrupted one for every later patch: "
    "write into the hook's own activation, resid[:, position] = "
    "clean_cache['resid_pre', layer][:, position], and return it.",
)
RESID_LATE_BINDING = known_mistake(
    "resid_late_binding",
    "patch_residual_stream",
    "every patch used the last layer and position: the hooks were made in the loop and run after "
    "it, and a Python function reads `layer` and `position` when it runs, not when it is made. "
    "Run each patched forward inside the loop, or bind them: def patch(resid, hook, "
    "position=position, layer=layer).",
)
HEADS_INTO_CLEAN = known_mistake(
    "heads_into_clean",
    "patch_head_outputs",
    "the patch goes the wrong way: the clean tokens run, with the corrupted run's z patched in. "
    "Take z from the clean run and patch it into a run of the corrupted tokens.",
)
HEADS_WHOLE_LAYER = known_mistake(
    "heads_whole_layer",
    "patch_head_outputs",
    "every head of the layer is patched, not one: set z[:, :, head] only (z is [batch, posn, "
    "n_heads, d_head]).",
)
HEADS_WRONG_AXIS = known_mistake(
    "heads_wrong_axis",
    "patch_head_outputs",
    "z[:, head] is position `head` of every head, not head `head`: z is [batch, posn, n_heads, "
    "d_head], so one head is z[:, :, head].",
)
HEADS_NOT_RETURNED = known_mistake(
    "heads_not_returned",
    "patch_head_outputs",
    "no patch took effect: every entry is the corrupted run's metric. A hook that changes a clone "
    "must return it (a hook that returns None leaves z as it was): end the hook with return z.",
)
HEADS_NO_HOOK_RAN = known_mistake(
    "heads_no_hook_ran",
    "patch_head_outputs",
    "no patch took effect, and no hook ran while your function did: model(corrupted_tokens) runs "
    "the model without them. Run it as model.run_with_hooks(corrupted_tokens, "
    "fwd_hooks=[(f'blocks.{layer}.attn.hook_z', patch)]).",
)
HEADS_NOTHING_CLEAN_COPIED = known_mistake(
    "heads_nothing_clean_copied",
    "patch_head_outputs",
    "no patch took effect, though your hooks ran and returned a tensor: what they put in is the "
    "corrupted run's own z. Either the cache is the corrupted run's: cache the clean one, "
    "model.run_with_cache(clean_tokens); or a hook wrote into clean_cache['z', layer] itself (not "
    "a copy), overwriting the clean run with the corrupted one for every later patch: write into "
    "the hook's own z, z[:, :, head] = clean_cache['z', layer][:, :, head], and return it.",
)
HEADS_LATE_BINDING = known_mistake(
    "heads_late_binding",
    "patch_head_outputs",
    "every patch used the last layer and head: the hooks were made in the loop and run after it, "
    "and a Python function reads `layer` and `head` when it runs. Run each patched forward inside "
    "the loop, or bind them: def patch(z, hook, head=head, layer=layer).",
)
OV_USES_QK = known_mistake(
    "ov_uses_qk",
    "ov_circuit",
    "this is the QK circuit's weights (W_Q, W_K): the OV circuit is what a head writes, through "
    "W_V and then W_O: W_E @ W_V[head] @ W_O[head] @ W_U.",
)
OV_EMBED_AS_UNEMBED = known_mistake(
    "ov_embed_as_unembed",
    "ov_circuit",
    "the circuit ends in W_E.T, the embedding transposed: GPT-2 ties the two, this model does not. "
    "End in model.unembed.W_U.",
)
OV_ALL_HEADS = known_mistake(
    "ov_all_heads",
    "ov_circuit",
    "this is the sum over all the layer's heads: take one head's slices, W_V[head] and W_O[head].",
)
COPY_COLUMNS = known_mistake(
    "copy_columns",
    "copying_score",
    "the maxima are taken down the columns (dim=0): row t is what attending to token t does to "
    "every logit, so take each row's argmax (dim=-1) and compare it with t.",
)
COPY_POSITIVE_DIAGONAL = known_mistake(
    "copy_positive_diagonal",
    "copying_score",
    "this counts the positive diagonal entries: a head copies token t when t's own logit rises "
    "the most of all, so compare each row's argmax with its index.",
)
COPY_ABOVE_MEAN = known_mistake(
    "copy_above_mean",
    "copying_score",
    "this counts diagonal entries above their row's mean: a head copies token t when t's own logit "
    "rises the most of all, not more than average; compare each row's argmax with its index.",
)
COMP_WRONG_ORDER = known_mistake(
    "comp_wrong_order",
    "composition_score",
    "the product is W_B @ W_A: W_A's output is what W_B reads, so the product is W_A @ W_B "
    "(the two do not commute).",
)
COMP_NOT_NORMALISED = known_mistake(
    "comp_not_normalised",
    "composition_score",
    "the score is not normalised: divide ||W_A W_B|| by ||W_A|| * ||W_B||, so that it lies in "
    "[0, 1] whatever the sizes of the weights.",
)
COMP_ONE_NORM = known_mistake(
    "comp_one_norm",
    "composition_score",
    "the product's norm is divided by one matrix's norm only: divide by ||W_A|| * ||W_B||.",
)

# --------------------------------------------------------------------------- references


def _effect(value, clean, corrupted, mistake=None):
    if mistake is EFFECT_NOT_NORMALISED:
        return value - corrupted
    if mistake is EFFECT_WRONG_BASELINE:
        return (value - clean) / (corrupted - clean)
    if mistake is EFFECT_ABS_DENOMINATOR:
        return (value - corrupted) / abs(clean - corrupted)
    return (value - corrupted) / (clean - corrupted)


def _edited_in_place(clean: torch.Tensor, corrupted: torch.Tensor, index) -> torch.Tensor:
    """A learner's patch that builds it in the clean cache's own tensor: the corrupted run's
    activation everywhere but `index`, in the cache, for every later patch too."""
    kept = clean[index].clone()
    clean.copy_(corrupted)
    clean[index] = kept
    return clean


def _patch_resid(model, clean, corrupted, metric, mistake=None):
    source, target = (corrupted, clean) if mistake is RESID_INTO_CLEAN else (clean, corrupted)
    point = "resid_post" if mistake is RESID_LAYER_OFF_BY_ONE else "resid_pre"
    _, cache = model.run_with_cache(source)
    n_layers, n_posn = model.cfg.n_layers, target.shape[1]
    results = torch.zeros(n_layers, n_posn)
    if mistake is RESID_NOT_RETURNED:
        return results + float(metric(model(target)))
    if mistake is RESID_NO_HOOK_RAN:
        return None  # told apart from RESID_NOT_RETURNED by what the hooks did (_hooks_seen)
    edits_cache = mistake is RESID_NOTHING_CLEAN_COPIED
    for layer in range(n_layers):
        for position in range(n_posn):
            where = {
                RESID_WHOLE_LAYER: slice(None),
                RESID_PREFIX: slice(0, position + 1),
                RESID_LATE_BINDING: n_posn - 1,
            }
            index = where.get(mistake, position)
            source_layer = n_layers - 1 if mistake is RESID_LATE_BINDING else layer

            def patch(resid, hook, index=index, source_layer=source_layer):
                if edits_cache:  # the clean tensor itself, the corrupted run written into it
                    return _edited_in_place(cache[point, source_layer], resid, (slice(None), index))
                resid = resid.clone()
                resid[:, index] = cache[point, source_layer][:, index]
                return resid

            logits = model.run_with_hooks(
                target, fwd_hooks=[(f"blocks.{layer}.hook_{point}", patch)]
            )
            results[layer, position] = float(metric(logits))
    return results


def _patch_heads(model, clean, corrupted, metric, mistake=None):
    source, target = (corrupted, clean) if mistake is HEADS_INTO_CLEAN else (clean, corrupted)
    _, cache = model.run_with_cache(source)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    results = torch.zeros(n_layers, n_heads)
    if mistake is HEADS_NOT_RETURNED:
        return results + float(metric(model(target)))
    if mistake is HEADS_NO_HOOK_RAN:
        return None  # told apart from HEADS_NOT_RETURNED by what the hooks did (_hooks_seen)
    edits_cache = mistake is HEADS_NOTHING_CLEAN_COPIED
    for layer in range(n_layers):
        for head in range(n_heads):
            index = {
                HEADS_WHOLE_LAYER: (slice(None), slice(None)),
                HEADS_WRONG_AXIS: (slice(None), head),
                HEADS_LATE_BINDING: (slice(None), slice(None), n_heads - 1),
            }.get(mistake, (slice(None), slice(None), head))
            source_layer = n_layers - 1 if mistake is HEADS_LATE_BINDING else layer

            def patch(z, hook, index=index, source_layer=source_layer):
                if edits_cache:
                    return _edited_in_place(cache["z", source_layer], z, index)
                z = z.clone()
                z[index] = cache["z", source_layer][index]
                return z

            logits = model.run_with_hooks(
                target, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]
            )
            results[layer, head] = float(metric(logits))
    return results


def _ov(model, layer, head, mistake=None):
    attn = model.blocks[layer].attn
    if mistake is OV_USES_QK:
        middle = attn.W_Q[head] @ attn.W_K[head].T
    elif mistake is OV_ALL_HEADS:
        middle = torch.einsum("hmd,hdn->mn", attn.W_V, attn.W_O)
    else:
        middle = attn.W_V[head] @ attn.W_O[head]
    end = model.embed.W_E.T if mistake is OV_EMBED_AS_UNEMBED else model.unembed.W_U
    return model.embed.W_E @ middle @ end


def _copying(circuit, mistake=None):
    rows = torch.arange(circuit.shape[0])
    if mistake is COPY_COLUMNS:
        return (circuit.argmax(dim=0) == rows).float().mean().item()
    if mistake is COPY_POSITIVE_DIAGONAL:
        return (circuit.diagonal() > 0).float().mean().item()
    if mistake is COPY_ABOVE_MEAN:
        return (circuit.diagonal() > circuit.mean(dim=-1)).float().mean().item()
    return (circuit.argmax(dim=-1) == rows).float().mean().item()


def _composition(W_A, W_B, mistake=None):
    norm = torch.linalg.matrix_norm
    product = W_B @ W_A if mistake is COMP_WRONG_ORDER else W_A @ W_B
    if mistake is COMP_NOT_NORMALISED:
        return norm(product).item()
    if mistake is COMP_ONE_NORM:
        return (norm(product) / norm(W_A)).item()
    return (norm(product) / (norm(W_A) * norm(W_B))).item()


def _shown(raw) -> str:
    """What the learner returned, as a message shows it: the number, or what it was instead."""
    value = as_number(raw)
    if value is not None:
        return f"{value:.4g}"
    if isinstance(raw, torch.Tensor):
        dtype = str(raw.dtype).removeprefix("torch.")
        return f"a tensor of shape {tuple(raw.shape)} ({dtype}), not one number"
    return f"a {type(raw).__name__} ({raw!r:.40}), not one number"


def _close(a, b) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-5 + 1e-4 * abs(b)


# --------------------------------------------------------------------------- the checks


@learner_facing
def check_patch_effect(fn) -> None:
    _learner_function(fn, "patch_effect", ("value", "clean", "corrupted"))
    cases = [(-2.0, -0.5, -8.0), (-8.0, -0.5, -8.0), (-0.5, -0.5, -8.0), (1.0, 3.0, -1.0)]
    cases += [(-9.0, -0.5, -8.0), (5.0, 4.0, 2.0)]  # worse than corrupted; better than clean
    cases += [(2.0, 1.0, 5.0), (0.5, 1.0, 5.0)]  # lower is better (a loss): clean < corrupted
    for value, clean, corrupted in cases:
        what = f"patch_effect(value={value}, clean={clean}, corrupted={corrupted})"
        got = as_number(call_learner(fn, value, clean, corrupted, what=what))
        expected = _effect(value, clean, corrupted)
        if not _close(got, expected):
            mistake = recognise(
                got,
                mistakes_in("patch_effect"),
                lambda m: _effect(value, clean, corrupted, m),
                _close,
            )
            fail(
                f"{what} returned {got}, expected {expected:.4g}",
                mistake,
                "0 for the corrupted run's metric, 1 for the clean run's, in between linearly.",
            )
    print_wrapped(
        f"patch_effect: correct ({len(cases)} cases: below the corrupted baseline, above the clean "
        "one, and a metric where lower is better)"
    )


def _patching_case():
    """A small random model, clean and corrupted tokens that differ at 3 positions, and a metric:
    the mean log-probability of fixed tokens at the last positions."""
    # 3 layers of 6 heads, a batch of 2: not notebook 07's 2 x 4, and no size equals another
    model = _ablation_model(seed=3, n_layers=3, n_heads=6)
    generator = torch.Generator().manual_seed(4)
    clean = torch.randint(0, model.cfg.d_vocab, (2, 7), generator=generator)
    corrupted = clean.clone()
    corrupted[:, [1, 2, 4]] = torch.randint(0, model.cfg.d_vocab, (2, 3), generator=generator)
    targets = torch.randint(0, model.cfg.d_vocab, (2, 3), generator=generator)

    def metric(logits):
        log_probs = logits[:, -3:].log_softmax(-1)
        return log_probs.gather(-1, targets[..., None]).mean().item()

    return model, clean, corrupted, metric


def _records(hook_fn) -> bool:
    """Whether a hook is run_with_cache's, which records the activation and changes nothing."""
    return getattr(hook_fn, "__qualname__", "").endswith("run_with_cache.<locals>.record")


def _hooks_seen(model, run) -> dict[str, int]:
    """Run `run()`, counting the calls of the model's hook points with a hook of the learner's
    attached ("hooked": run_with_cache's do not count) and the hook calls that returned a
    replacement ("returned")."""
    seen = {"hooked": 0, "returned": 0}

    def counted(hook_fn):
        def counting(activation, hook):  # hook: the HookPoint, as HookPoint.forward passes it
            result = hook_fn(activation, hook=hook)
            seen["returned"] += result is not None
            return result

        return counting

    points = list(model.hook_points().values())
    for point in points:

        def forward(activation, point=point, original=point.forward):
            seen["hooked"] += any(not _records(hook_fn) for hook_fn in point.hooks)
            hooks, point.hooks = point.hooks, [counted(hook_fn) for hook_fn in point.hooks]
            try:
                return original(activation)
            finally:
                point.hooks = hooks

        point.forward = forward  # an instance's forward: nn.Module's call runs it
    try:
        run()
    finally:
        for point in points:
            del point.forward
    return seen


# no patch changed anything: which of these it was, told by what the hooks did (none ran; they
# returned tensors, the corrupted run's own; or they returned None)
_NOTHING_PATCHED = {
    RESID_NOT_RETURNED: (RESID_NO_HOOK_RAN, RESID_NOTHING_CLEAN_COPIED),
    HEADS_NOT_RETURNED: (HEADS_NO_HOOK_RAN, HEADS_NOTHING_CLEAN_COPIED),
}


def _check_patching(fn, name, reference, shape_of, things):
    _learner_function(fn, name, ("model", "clean_tokens", "corrupted_tokens", "metric"))
    model, clean, corrupted, metric = _patching_case()
    what = f"{name}(model, clean_tokens, corrupted_tokens, metric)"
    with torch.no_grad():
        got = call_learner(
            fn,
            model,
            clean,
            corrupted,
            metric,
            what=what,
            things_to_check=things,
            leaves_unchanged="all",
        )
        left = [point_name for point_name, point in model.hook_points().items() if point.active]
        if left:
            model.reset_hooks()
            fail(
                f"{what} left hooks attached afterwards, on {left[:3]}: every later run of the "
                "model would still be patched, and the next patch would add to this one. Use "
                "model.run_with_hooks, which removes them when it ends."
            )
        expected = reference(model, clean, corrupted, metric)
        shape = shape_of(model, clean)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
            got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            fail(f"{what} must return a tensor of shape {shape}, got {got_shape}")
        if not _same(got.float(), expected):
            mistake = recognise(
                got.float(),
                mistakes_in(name),
                lambda m: reference(model, clean, corrupted, metric, mistake=m),
                _same,
            )
            if mistake in _NOTHING_PATCHED:
                seen = _hooks_seen(model, lambda: fn(model, clean, corrupted, metric))
                no_hook_ran, nothing_clean_copied = _NOTHING_PATCHED[mistake]
                if not seen["hooked"]:
                    mistake = no_hook_ran
                elif seen["returned"]:
                    mistake = nothing_clean_copied
            bad = (got.float() - expected).abs()
            worst = tuple(int(i) for i in torch.unravel_index(bad.argmax(), bad.shape))
            fail(
                f"{what}: entry {worst} is {got[worst].item():.4g}, expected "
                f"{expected[worst].item():.4g} (largest difference {bad.max().item():.3g})",
                mistake,
                things,
            )


@learner_facing
def check_patch_residual_stream(fn) -> None:
    _check_patching(
        fn,
        "patch_residual_stream",
        _patch_resid,
        lambda model, tokens: (model.cfg.n_layers, tokens.shape[1]),
        "for each layer and position, a hook on f'blocks.{layer}.hook_resid_pre' in a run of the "
        "corrupted tokens that sets resid[:, position] to the clean run's; metric of its logits.",
    )
    print_wrapped(
        "patch_residual_stream: correct (3 layers x 7 positions of a random model, the tokens "
        "differing at 3 of them; no hooks left attached)"
    )


@learner_facing
def check_patch_head_outputs(fn) -> None:
    _check_patching(
        fn,
        "patch_head_outputs",
        _patch_heads,
        lambda model, tokens: (model.cfg.n_layers, model.cfg.n_heads),
        "for each head, a hook on f'blocks.{layer}.attn.hook_z' in a run of the corrupted tokens "
        "that sets z[:, :, head] to the clean run's; metric of its logits.",
    )
    print_wrapped(
        "patch_head_outputs: correct (3 layers x 6 heads of a random model; no hooks left)"
    )


@learner_facing
def check_ov_circuit(fn) -> None:
    _learner_function(fn, "ov_circuit", ("model", "layer", "head"))
    model = _ablation_model(seed=5)
    with torch.no_grad():
        for layer, head in ((0, 1), (1, 3)):
            what = f"ov_circuit(model, {layer}, {head})"
            got = call_learner(fn, model, layer, head, what=what, leaves_unchanged="weights")
            expected = _ov(model, layer, head)
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                got_shape = (
                    tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                )
                fail(
                    f"{what} must be [d_vocab, d_vocab] = {tuple(expected.shape)}, got "
                    f"{got_shape}: W_E @ W_V[head] @ W_O[head] @ W_U"
                )
            if not _same(got, expected):
                mistake = recognise(
                    got, mistakes_in("ov_circuit"), lambda m: _ov(model, layer, head, m), _same
                )
                fail(
                    f"{what} differs from W_E @ W_V[{head}] @ W_O[{head}] @ W_U (largest "
                    f"difference {(got - expected).abs().max().item():.3g})",
                    mistake,
                    "token embeddings, the head's values and output, then the unembedding.",
                )
    print_wrapped(
        "ov_circuit: correct (two heads of a random model whose W_U is not W_E's transpose)"
    )


@learner_facing
def check_copying_score(fn) -> None:
    _learner_function(fn, "copying_score", ("circuit",))
    generator = torch.Generator().manual_seed(6)
    circuit = torch.randn(40, 40, generator=generator)
    circuit[:15] += 4 * torch.eye(40)[:15]  # rows 0-14 copy
    circuit[20:25, 20:25] -= 8  # diagonal entries negative
    circuit[30:, 5] += 9  # column maxima away from rows
    circuit[25:30] -= 6  # rows 25-29: negative diagonals above their row's mean, most not maxima
    circuit[range(25, 30), range(25, 30)] += 2.5
    circuit[range(15, 20), range(16, 21)] += 12  # rows 15-19: the diagonal second, just behind
    circuit[range(15, 20), range(15, 20)] += 11
    for case in (circuit, circuit.T.contiguous()):
        raw = call_learner(fn, case, what="copying_score(circuit)", leaves_unchanged="all")
        got = as_number(raw)
        expected = _copying(case)
        if not _close(got, expected):
            mistake = recognise(
                got, mistakes_in("copying_score"), lambda m: _copying(case, m), _close
            )
            fail(
                f"copying_score(circuit) returned {_shown(raw)}, expected {expected:.4g} (the "
                "share of rows whose largest entry is on the diagonal)",
                mistake,
                "circuit.argmax(dim=-1) == torch.arange(len(circuit)), as a share of rows.",
            )
    print_wrapped(
        "copying_score: correct (two 40 x 40 circuits whose row and column maxima differ, some "
        "rows with the diagonal a close second)"
    )


@learner_facing
def check_composition_score(fn) -> None:
    _learner_function(fn, "composition_score", ("W_A", "W_B"))
    generator = torch.Generator().manual_seed(7)
    for scale in (1.0, 3.0):
        W_A = (
            scale
            * torch.randn(16, 4, generator=generator)
            @ torch.randn(4, 16, generator=generator)
        )
        W_B = torch.randn(16, 4, generator=generator) @ torch.randn(4, 16, generator=generator)
        raw = call_learner(fn, W_A, W_B, what="composition_score(W_A, W_B)", leaves_unchanged="all")
        got = as_number(raw)
        expected = _composition(W_A, W_B)
        if not _close(got, expected):
            mistake = recognise(
                got, mistakes_in("composition_score"), lambda m: _composition(W_A, W_B, m), _close
            )
            fail(
                f"composition_score(W_A, W_B) returned {_shown(raw)}, expected {expected:.4g}",
                mistake,
                "||W_A @ W_B|| / (||W_A|| * ||W_B||), Frobenius norms (torch.linalg.matrix_norm).",
            )
    print_wrapped("composition_score: correct (two pairs of low-rank matrices that do not commute)")
