"""Notebook 07's checks: each passes correct alternatives and catches each known mistake, naming it
(and no other). Every broken function is written as a learner would write it, independently of the
checks' reference (which makes the mistakes through its `mistake=` argument)."""

import pytest
import torch
from named_mistakes import assert_check_names_only

from utils import checks, patching
from utils.checks import MISTAKES
from utils.printing import wrap_lines

PATCHING_PARTS = {
    "patch_effect",
    "patch_residual_stream",
    "patch_head_outputs",
    "ov_circuit",
    "copying_score",
    "composition_score",
}


# ---------------------------------------------------------------- the effect


def effect_unnormalised(value, clean, corrupted):
    return value - corrupted


def effect_from_clean(value, clean, corrupted):
    return (value - clean) / (corrupted - clean)


def effect_abs(value, clean, corrupted):  # "a distance is positive"
    return (value - corrupted) / abs(clean - corrupted)


def effect_min_max(value, clean, corrupted):  # normalised to the baselines' range
    low, high = min(clean, corrupted), max(clean, corrupted)
    return (value - low) / (high - low)


def effect_tensor(value, clean, corrupted):  # right: a 0-d tensor is a number too
    return torch.tensor((value - corrupted) / (clean - corrupted))


def effect_one_minus(value, clean, corrupted):  # right, written another way
    return 1 - (clean - value) / (clean - corrupted)


# ---------------------------------------------------------------- patching


def _resid_patcher(index_of, source_is_clean=True, point="resid_pre"):
    def patch_residual_stream(model, clean_tokens, corrupted_tokens, metric):
        source, target = (
            (clean_tokens, corrupted_tokens)
            if source_is_clean
            else (corrupted_tokens, clean_tokens)
        )
        _, cache = model.run_with_cache(source)
        out = torch.zeros(model.cfg.n_layers, target.shape[1])
        for layer in range(model.cfg.n_layers):
            for pos in range(target.shape[1]):
                where = index_of(pos)

                def hook(x, hook):
                    x = x.clone()
                    x[:, where] = cache[point, layer][:, where]
                    return x

                logits = model.run_with_hooks(
                    target, fwd_hooks=[(f"blocks.{layer}.hook_{point}", hook)]
                )
                out[layer, pos] = metric(logits)
        return out

    return patch_residual_stream


resid_into_clean = _resid_patcher(lambda pos: pos, source_is_clean=False)
resid_whole_layer = _resid_patcher(lambda pos: slice(None))
resid_prefix = _resid_patcher(lambda pos: slice(None, pos + 1))
resid_post_instead = _resid_patcher(lambda pos: pos, point="resid_post")


def resid_hooks_left(model, clean_tokens, corrupted_tokens, metric):  # never removes its hooks
    _, cache = model.run_with_cache(clean_tokens)
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(corrupted_tokens.shape[1]):
            point = model.hook_points()[f"blocks.{layer}.hook_resid_pre"]
            point.hooks.append(lambda x, hook, p=pos, at=layer: _set(x, p, cache["resid_pre", at]))
            out[layer, pos] = metric(model(corrupted_tokens))
    return out


def resid_no_return(model, clean_tokens, corrupted_tokens, metric):  # the clone is never returned
    _, cache = model.run_with_cache(clean_tokens)
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(corrupted_tokens.shape[1]):

            def hook(x, hook):
                x = x.clone()
                x[:, pos] = cache["resid_pre", layer][:, pos]

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)]
            )
            out[layer, pos] = metric(logits)
    return out


def resid_cache_of_corrupted(model, clean_tokens, corrupted_tokens, metric):  # the wrong run cached
    return patching.patch_residual_stream(model, corrupted_tokens, corrupted_tokens, metric)


def heads_cache_of_corrupted(model, clean_tokens, corrupted_tokens, metric):
    return patching.patch_head_outputs(model, corrupted_tokens, corrupted_tokens, metric)


def resid_without_hooks(model, clean_tokens, corrupted_tokens, metric):  # the patch never runs
    model.run_with_cache(clean_tokens)  # hooks of run_with_cache's own: not a patch
    return torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1]) + metric(
        model(corrupted_tokens)
    )


def resid_edits_the_clean_cache(model, clean_tokens, corrupted_tokens, metric):  # a learner's
    _, cache = model.run_with_cache(clean_tokens)
    n_posn = corrupted_tokens.shape[1]
    out = torch.zeros(model.cfg.n_layers, n_posn)
    for layer in range(model.cfg.n_layers):
        for pos in range(n_posn):

            def hook(resid, hook):
                patched = cache["resid_pre", layer]  # the clean activation itself
                keep = [p for p in range(n_posn) if p != pos]
                patched[:, keep] = resid[:, keep]
                return patched

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)]
            )
            out[layer, pos] = metric(logits)
    return out


def resid_hooks_made_first(model, clean_tokens, corrupted_tokens, metric):  # closures bind late
    _, cache = model.run_with_cache(clean_tokens)
    n_posn = corrupted_tokens.shape[1]
    runs = []
    for layer in range(model.cfg.n_layers):
        for pos in range(n_posn):

            def hook(x, hook):
                x = x.clone()
                x[:, pos] = cache["resid_pre", layer][:, pos]
                return x

            runs.append((layer, pos, f"blocks.{layer}.hook_resid_pre", hook))
    out = torch.zeros(model.cfg.n_layers, n_posn)
    for row, column, name, hook in runs:
        out[row, column] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def heads_no_return(model, clean_tokens, corrupted_tokens, metric):
    _, cache = model.run_with_cache(clean_tokens)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):

            def hook(z, hook):
                z = z.clone()
                z[:, :, head] = cache["z", layer][:, :, head]

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]
            )
            out[layer, head] = metric(logits)
    return out


def heads_without_hooks(model, clean_tokens, corrupted_tokens, metric):
    return torch.zeros(model.cfg.n_layers, model.cfg.n_heads) + metric(model(corrupted_tokens))


def heads_edit_the_clean_cache(model, clean_tokens, corrupted_tokens, metric):
    _, cache = model.run_with_cache(clean_tokens)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):

            def hook(z, hook):
                patched = cache["z", layer]  # the clean z itself
                others = [h for h in range(model.cfg.n_heads) if h != head]
                patched[:, :, others] = z[:, :, others]
                return patched

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]
            )
            out[layer, head] = metric(logits)
    return out


def heads_hooks_made_first(model, clean_tokens, corrupted_tokens, metric):
    _, cache = model.run_with_cache(clean_tokens)
    hooks = {}
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):

            def hook(z, hook):
                z = z.clone()
                z[:, :, head] = cache["z", layer][:, :, head]
                return z

            hooks[layer, head] = (f"blocks.{layer}.attn.hook_z", hook)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for (i, j), name_and_hook in hooks.items():
        out[i, j] = metric(model.run_with_hooks(corrupted_tokens, [name_and_hook]))
    return out


def _set(x, pos, clean):
    x = x.clone()
    x[:, pos] = clean[:, pos]
    return x


def resid_with_hooks_context(model, clean_tokens, corrupted_tokens, metric):  # right: hooks()
    _, cache = model.run_with_cache(clean_tokens)
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(corrupted_tokens.shape[1]):
            name = f"blocks.{layer}.hook_resid_pre"
            fn = lambda x, hook, p=pos, at=layer: _set(x, p, cache["resid_pre", at])  # noqa: E731
            with model.hooks([(name, fn)]):
                out[layer, pos] = metric(model(corrupted_tokens))
    return out


def _head_patcher(index_of, source_is_clean=True):
    def patch_head_outputs(model, clean_tokens, corrupted_tokens, metric):
        source, target = (
            (clean_tokens, corrupted_tokens)
            if source_is_clean
            else (corrupted_tokens, clean_tokens)
        )
        _, cache = model.run_with_cache(source)
        out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                where = index_of(head)

                def hook(z, hook):
                    z = z.clone()
                    z[where] = cache["z", layer][where]
                    return z

                logits = model.run_with_hooks(
                    target, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]
                )
                out[layer, head] = metric(logits)
        return out

    return patch_head_outputs


heads_into_clean = _head_patcher(lambda h: (slice(None), slice(None), h), source_is_clean=False)
heads_whole_layer = _head_patcher(lambda h: (slice(None),))
heads_wrong_axis = _head_patcher(lambda h: (slice(None), h))
heads_ellipsis = _head_patcher(lambda h: (..., h, slice(None)))  # right: z[..., h, :]


# ---------------------------------------------------------------- the weights


def ov_qk(model, layer, head):
    attn = model.blocks[layer].attn
    return model.embed.W_E @ attn.W_Q[head] @ attn.W_K[head].T @ model.unembed.W_U


def ov_tied(model, layer, head):
    attn = model.blocks[layer].attn
    return model.embed.W_E @ attn.W_V[head] @ attn.W_O[head] @ model.embed.W_E.T


def ov_every_head(model, layer, head):
    attn = model.blocks[layer].attn
    ov = sum(attn.W_V[h] @ attn.W_O[h] for h in range(model.cfg.n_heads))
    return model.embed.W_E @ ov @ model.unembed.W_U


def ov_einsum(model, layer, head):  # right, with einsum
    attn = model.blocks[layer].attn
    return torch.einsum(
        "vm,md,dn,nw->vw", model.embed.W_E, attn.W_V[head], attn.W_O[head], model.unembed.W_U
    )


def copy_by_columns(circuit):
    return (circuit.argmax(0) == torch.arange(len(circuit))).float().mean().item()


def copy_positive(circuit):
    return (circuit.diag() > 0).float().mean().item()


def copy_above_mean(circuit):
    return (circuit.diag() > circuit.mean(dim=1)).float().mean().item()


def copy_in_top_two(circuit):  # the diagonal among the two largest of its row: not the largest
    top_two = circuit.topk(2, dim=-1).indices
    return (top_two == torch.arange(len(circuit))[:, None]).any(-1).float().mean()


def copy_by_max(circuit):  # right: the diagonal equals each row's max
    return (circuit.diag() == circuit.max(-1).values).float().mean()


def comp_reversed(W_A, W_B):
    return ((W_B @ W_A).norm() / (W_A.norm() * W_B.norm())).item()


def comp_raw(W_A, W_B):
    return (W_A @ W_B).norm().item()


def comp_one_norm(W_A, W_B):
    return ((W_A @ W_B).norm() / W_A.norm()).item()


def comp_flattened(W_A, W_B):  # right: the Frobenius norm is the vector norm of the entries
    return float((W_A @ W_B).flatten().norm() / (W_A.flatten().norm() * W_B.flatten().norm()))


BROKEN_PATCHING = {
    "effect_not_normalised": (checks.check_patch_effect, effect_unnormalised),
    "effect_wrong_baseline": (checks.check_patch_effect, effect_from_clean),
    "effect_abs_denominator": (checks.check_patch_effect, effect_abs),
    "resid_into_clean": (checks.check_patch_residual_stream, resid_into_clean),
    "resid_whole_layer": (checks.check_patch_residual_stream, resid_whole_layer),
    "resid_prefix": (checks.check_patch_residual_stream, resid_prefix),
    "resid_layer_off_by_one": (checks.check_patch_residual_stream, resid_post_instead),
    "resid_not_returned": (checks.check_patch_residual_stream, resid_no_return),
    "resid_late_binding": (checks.check_patch_residual_stream, resid_hooks_made_first),
    "resid_no_hook_ran": (checks.check_patch_residual_stream, resid_without_hooks),
    "resid_nothing_clean_copied": (checks.check_patch_residual_stream, resid_edits_the_clean_cache),
    "heads_into_clean": (checks.check_patch_head_outputs, heads_into_clean),
    "heads_whole_layer": (checks.check_patch_head_outputs, heads_whole_layer),
    "heads_wrong_axis": (checks.check_patch_head_outputs, heads_wrong_axis),
    "heads_not_returned": (checks.check_patch_head_outputs, heads_no_return),
    "heads_late_binding": (checks.check_patch_head_outputs, heads_hooks_made_first),
    "heads_no_hook_ran": (checks.check_patch_head_outputs, heads_without_hooks),
    "heads_nothing_clean_copied": (checks.check_patch_head_outputs, heads_edit_the_clean_cache),
    "ov_uses_qk": (checks.check_ov_circuit, ov_qk),
    "ov_embed_as_unembed": (checks.check_ov_circuit, ov_tied),
    "ov_all_heads": (checks.check_ov_circuit, ov_every_head),
    "copy_columns": (checks.check_copying_score, copy_by_columns),
    "copy_positive_diagonal": (checks.check_copying_score, copy_positive),
    "copy_above_mean": (checks.check_copying_score, copy_above_mean),
    "comp_wrong_order": (checks.check_composition_score, comp_reversed),
    "comp_not_normalised": (checks.check_composition_score, comp_raw),
    "comp_one_norm": (checks.check_composition_score, comp_one_norm),
}


def test_every_patching_mistake_has_a_broken_variant():
    assert set(BROKEN_PATCHING) == {
        name for name, m in MISTAKES.items() if m.part in PATCHING_PARTS
    }


@pytest.mark.parametrize("mistake", sorted(BROKEN_PATCHING))
def test_check_catches_mistake_and_names_it(mistake):
    check, broken = BROKEN_PATCHING[mistake]
    assert_check_names_only(check, broken, mistake)


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_patch_effect, patching.patch_effect),
        (checks.check_patch_effect, effect_tensor),
        (checks.check_patch_effect, effect_one_minus),
        (checks.check_patch_residual_stream, patching.patch_residual_stream),
        (checks.check_patch_residual_stream, resid_with_hooks_context),
        (checks.check_patch_head_outputs, patching.patch_head_outputs),
        (checks.check_patch_head_outputs, heads_ellipsis),
        (checks.check_ov_circuit, patching.ov_circuit),
        (checks.check_ov_circuit, ov_einsum),
        (checks.check_copying_score, patching.copying_score),
        (checks.check_copying_score, copy_by_max),
        (checks.check_composition_score, patching.composition_score),
        (checks.check_composition_score, comp_flattened),
    ],
)
def test_correct_alternatives_pass(check, fn, capsys):
    check(fn)
    assert "correct" in capsys.readouterr().out


def test_min_max_normalisation_is_named_as_measuring_from_clean():
    """Right when clean > corrupted; for a loss, exactly (value - clean) / (corrupted - clean)."""
    with pytest.raises(AssertionError, match=r"clean=1.0, corrupted=5.0.*\n.*from the clean run"):
        checks.check_patch_effect(effect_min_max)


def test_hooks_left_attached_are_named():
    with pytest.raises(AssertionError, match="left hooks attached afterwards"):
        checks.check_patch_residual_stream(resid_hooks_left)


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_patch_effect, patching.patch_residual_stream, "patch_effect"),
        (checks.check_patch_residual_stream, lambda m, c, k, f: None, "must return a tensor"),
        (checks.check_ov_circuit, lambda m, layer, h: m.embed.W_E, r"must be \[d_vocab, d_vocab\]"),
        (
            checks.check_copying_score,
            lambda c: "high",
            r"returned a str \(.high.\), not one number",
        ),
        (checks.check_copying_score, copy_in_top_two, "expected"),
    ],
)
def test_other_failures_say_what_is_wrong(check, fn, message):
    with pytest.raises((AssertionError, TypeError), match=message):
        check(fn)


def test_a_check_given_the_wrong_thing_says_so_in_one_line():
    """A tensor where the function is wanted: a CheckUsageError, which IPython shows as one line."""
    from utils.checks.core import CheckUsageError

    with pytest.raises(CheckUsageError, match="takes your function") as err:
        checks.check_copying_score(torch.eye(3))
    # one message (wrapped to the output area), no frames
    assert err.value._render_traceback_() == [wrap_lines(f"TypeError: {err.value}")]
    frame = err.value.__traceback__
    while frame.tb_next:
        frame = frame.tb_next
    assert frame.tb_frame.f_code.co_name == "run_check"  # the check's wrapper: no deeper frames


def _model():
    from utils.checks.circuits import _ablation_model

    return _ablation_model(seed=0)


def _tokens(model, positions=5):
    return torch.randint(
        0, model.cfg.d_vocab, (2, positions), generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: patching.ov_circuit(m, 0, True), TypeError, "head must be an int"),
        (lambda m: patching.ov_circuit(m, 0, slice(0, 2)), TypeError, "head must be an int"),
        (lambda m: patching.ov_circuit(m, 2, 0), ValueError, r"layer must be an int >= 0 and <= 1"),
        (lambda m: patching.ov_circuit(m, 0, -1), ValueError, "head must be an int >= 0"),
        (lambda m: patching.ov_circuit(torch.nn.Linear(2, 2), 0, 0), TypeError, "notebook 02"),
        (lambda m: patching.copying_score(torch.zeros(3, 4)), ValueError, r"square \[n, n\]"),
        (lambda m: patching.copying_score(torch.full((3, 3), float("nan"))), ValueError, "finite"),
        (lambda m: patching.copying_score([[1.0]]), ValueError, "got list"),
        (
            lambda m: patching.composition_score(torch.zeros(4, 4), torch.eye(4)),
            ValueError,
            "zeros",
        ),
        (lambda m: patching.composition_score(torch.eye(4), torch.eye(3)), ValueError, "chain"),
        (lambda m: patching.composition_score(torch.ones(4), torch.eye(4)), ValueError, "2-D"),
        (
            lambda m: patching.patch_head_outputs(
                m, _tokens(m), _tokens(m), lambda lg: lg[:, -1, 0]
            ),
            TypeError,
            r"metric\(logits\) must return one finite number .* shape \(2,\)",
        ),
        (
            lambda m: patching.patch_residual_stream(m, _tokens(m), _tokens(m), lambda lg: "high"),
            TypeError,
            "must return one finite number",
        ),
        (
            lambda m: patching.patch_effect(0.5, torch.tensor([1.0, 2.0]), 0.0),
            TypeError,
            "clean must be a finite number",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(call, error, message):
    with pytest.raises(error, match=message):
        call(_model())


# ---------------------------------------------------------------- round 8: a learner's edits


def ov_circuit_normalising_W_E_in_place(model, layer, head):
    W_E = model.embed.W_E
    with torch.no_grad():
        W_E /= W_E.norm(dim=-1, keepdim=True)  # the model's own embedding, changed for good
    return patching.ov_circuit(model, layer, head)


def composition_normalising_W_A_in_place(W_A, W_B):
    W_A /= torch.linalg.matrix_norm(W_A)  # the caller's matrix
    return patching.composition_score(W_A, W_B)


def patch_residual_stream_for_two_layers(model, clean_tokens, corrupted_tokens, metric):
    full = patching.patch_residual_stream(model, clean_tokens, corrupted_tokens, metric)
    return full[:2]  # as if `for layer in range(2)`: notebook 07's model has 2


def patch_head_outputs_for_2_by_4(model, clean_tokens, corrupted_tokens, metric):
    return patching.patch_head_outputs(model, clean_tokens, corrupted_tokens, metric)[:2, :4]


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_ov_circuit, ov_circuit_normalising_W_E_in_place, "changed the model's embed"),
        (
            checks.check_composition_score,
            composition_normalising_W_A_in_place,
            "argument 1 in place",
        ),
        (checks.check_patch_residual_stream, patch_residual_stream_for_two_layers, "shape"),
        (checks.check_patch_head_outputs, patch_head_outputs_for_2_by_4, "shape"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_patching_checks_refuse_edits_and_shapes_their_cases_used_to_hide(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


@pytest.mark.parametrize(
    "check, fn",
    [
        (
            checks.check_copying_score,
            lambda c: (c.argmax(-1) == torch.arange(len(c))).float().mean().numpy(),
        ),
        (
            checks.check_composition_score,
            lambda A, B: patching.composition_score(A, B) * __import__("numpy").float32(1),
        ),
    ],
)
def test_numpy_numbers_pass(check, fn, capsys):
    check(fn)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "check, broken, mistake",
    [
        (
            checks.check_patch_residual_stream,
            resid_cache_of_corrupted,
            "resid_nothing_clean_copied",
        ),
        (checks.check_patch_head_outputs, heads_cache_of_corrupted, "heads_nothing_clean_copied"),
    ],
)
def test_a_cache_of_the_corrupted_run_is_named(check, broken, mistake):
    """Patching from a cache of the corrupted run changes nothing: the likely cause names the run
    to cache (it said "the patches after the first took no effect", which none did)."""
    with pytest.raises(AssertionError) as err:
        check(broken)
    message = str(err.value)
    assert MISTAKES[mistake].likely_cause() in message, message
    assert "model.run_with_cache(clean_tokens)" in message and "after the first" not in message
