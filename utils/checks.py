"""Checks for the code a learner writes, which say precisely what is wrong.

Notebook 02's layer checks are below first; notebook 01's tokenizer checks and notebook 03's training checks follow, and
CHECKS maps each checked name to its check (for `make check NOTEBOOK=...`). An exercise stub's NotImplementedError passes
through every check unchanged, so the learner sees its hint.

Each layer check takes the learner's class (not an instance), builds it and the matching Hugging Face module with the same
random weights (every bias and LayerNorm weight randomised too: GPT-2's zero biases and unit LayerNorm weights would
hide mistakes), runs several seeds, batch sizes and sequence lengths, and compares with float32 tolerances.
On failure it raises AssertionError naming the layer, the shapes, the largest error and where the first mismatch is,
and the most likely cause: it re-runs a catalogue of known mistakes and reports the one that reproduces your output.
"""

from __future__ import annotations

import functools
import math
import sysconfig
import traceback
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from utils.model import Config, convert_hf_state_dict, next_token_loss
from utils.resources import new_gpt2

ATOL, RTOL = 1e-4, 1e-3  # float32
SEEDS = (0, 1, 2)
SHAPES = ((2, 5), (3, 17), (1, 32))  # (batch, posn); 32 = the check config's n_ctx
CHECK_CFG = Config(d_model=64, d_vocab=1000, n_ctx=32, d_head=16, d_mlp=256, n_heads=4, n_layers=2, layer_norm_eps=1e-5)

# name -> what to tell the learner when their output matches that mistake
MISTAKES = {
    "ln_eps_outside_sqrt": "LayerNorm: eps is added outside the square root. Use (x - mean) / sqrt(var + eps).",
    "ln_unbiased_var": "LayerNorm: the variance is unbiased (divides by N-1). Use x.var(dim=-1, unbiased=False), i.e. divide by N.",
    "ln_no_mean": "LayerNorm: the mean is not subtracted. Normalise (x - mean), not x.",
    "ln_wrong_dim": "LayerNorm: normalising over the wrong dimension. Mean and variance run over d_model, the last dim (dim=-1).",
    "attn_no_mask": "Attention: no causal mask. Scores for key positions after the query must be set to -inf before the softmax.",
    "attn_mask_diagonal": "Attention: the causal mask also hides the diagonal, so a position cannot see itself "
                          "(with a -inf fill, position 0 sees nothing and gives NaN). Use torch.triu(..., diagonal=1).",
    "attn_mask_shows_next": "Attention: the mask is off by one and lets each position see the next token. Use torch.triu(..., diagonal=1).",
    "attn_mask_after_softmax": "Attention: the mask is applied after the softmax, so rows no longer sum to 1. Mask the scores, then softmax.",
    "attn_scale_d_head": "Attention: scores are divided by d_head. Divide by sqrt(d_head).",
    "attn_no_scale": "Attention: scores are not scaled. Divide q·k by sqrt(d_head).",
    "attn_softmax_wrong_axis": "Attention: softmax runs over the query axis. It must run over keys (the last dim), so each query's weights sum to 1.",
    "attn_no_b_O": "Attention: the output bias b_O is missing.",
    "attn_no_b_Q": "Attention: the query bias b_Q is missing: q = x W_Q + b_Q.",
    "attn_no_b_V": "Attention: the value bias b_V is missing: v = x W_V + b_V.",
    "mlp_exact_gelu": "MLP: exact GELU (nn.GELU() or F.gelu(x)). GPT-2 uses gelu_new, the tanh approximation: F.gelu(x, approximate='tanh').",
    "mlp_no_b_in": "MLP: the input bias b_in is missing.",
    "block_post_ln": "TransformerBlock: post-LayerNorm (normalising after adding). GPT-2 is pre-LN: resid + attn(ln1(resid)).",
    "block_no_attn_residual": "TransformerBlock: the residual connection around attention is missing: resid_mid = resid_pre + attn(ln1(resid_pre)).",
    "block_no_mlp_residual": "TransformerBlock: the residual connection around the MLP is missing: resid_post = resid_mid + mlp(ln2(resid_mid)).",
    "no_final_ln": "DemoTransformer: the final LayerNorm (ln_final) is missing before the unembedding.",
    "pos_from_tokens": "PosEmbed: positions are taken from the token ids. Index W_pos with positions 0..posn-1, not with tokens.",
    "pos_offset_by_one": "PosEmbed: positions are offset by one. The first position is 0: W_pos[:posn].",
    "unembed_no_b_U": "Unembed: the bias b_U is missing.",
}

# which mistakes each check looks for (a block uses the learner's own LayerNorm, Attention and MLP, so theirs too)
_LN = [m for m in MISTAKES if m.startswith("ln_")]
_ATTN = [m for m in MISTAKES if m.startswith("attn_")]
_MLP = [m for m in MISTAKES if m.startswith("mlp_")]
_BLOCK = _LN + _ATTN + _MLP + [m for m in MISTAKES if m.startswith("block_")]
_POS = ["pos_from_tokens", "pos_offset_by_one"]
_ALL = list(MISTAKES)


# --------------------------------------------------------------------------- a functional GPT-2 that can make each mistake

def _layernorm(x, w, b, eps, mistake=None):
    dim = -2 if mistake == "ln_wrong_dim" else -1
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=mistake == "ln_unbiased_var")
    centred = x if mistake == "ln_no_mean" else x - mean
    if mistake == "ln_eps_outside_sqrt":
        return centred / (var.sqrt() + eps) * w + b
    return centred / (var + eps).sqrt() * w + b


def _attention(x, sd, cfg, mistake=None, fill=float("-inf")):
    pattern = _attention_pattern(x, sd, cfg, mistake, fill)
    v = torch.einsum("bpd,hde->bphe", x, sd["W_V"]) + (0 if mistake == "attn_no_b_V" else sd["b_V"])
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    out = torch.einsum("bqhe,hem->bqm", z, sd["W_O"])
    return out if mistake == "attn_no_b_O" else out + sd["b_O"]


def _attention_pattern(x, sd, cfg, mistake=None, fill=float("-inf")):
    q = torch.einsum("bpd,hde->bphe", x, sd["W_Q"]) + (0 if mistake == "attn_no_b_Q" else sd["b_Q"])
    k = torch.einsum("bpd,hde->bphe", x, sd["W_K"]) + sd["b_K"]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k)
    scale = {"attn_scale_d_head": cfg.d_head, "attn_no_scale": 1.0}.get(mistake, math.sqrt(cfg.d_head))
    scores = scores / scale
    n = x.shape[1]
    diagonal = {"attn_mask_diagonal": 0, "attn_mask_shows_next": 2}.get(mistake, 1)
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=diagonal)
    if mistake == "attn_mask_after_softmax":
        pattern = scores.softmax(-1).masked_fill(future, 0.0)
    else:
        if mistake != "attn_no_mask":
            scores = scores.masked_fill(future, fill)
        pattern = scores.softmax(-2 if mistake == "attn_softmax_wrong_axis" else -1)
    return pattern


def _mlp(x, sd, mistake=None):
    pre = x @ sd["W_in"] + (0 if mistake == "mlp_no_b_in" else sd["b_in"])
    post = F.gelu(pre) if mistake == "mlp_exact_gelu" else F.gelu(pre, approximate="tanh")
    return post @ sd["W_out"] + sd["b_out"]


def _sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _block(x, sd, cfg, mistake=None):
    eps = cfg.layer_norm_eps
    ln1 = lambda t: _layernorm(t, sd["ln1.w"], sd["ln1.b"], eps, mistake)
    ln2 = lambda t: _layernorm(t, sd["ln2.w"], sd["ln2.b"], eps, mistake)
    attn = lambda t: _attention(t, _sub(sd, "attn."), cfg, mistake)
    mlp = lambda t: _mlp(t, _sub(sd, "mlp."), mistake)
    if mistake == "block_post_ln":
        mid = ln1(x + attn(x))
        return ln2(mid + mlp(mid))
    mid = attn(ln1(x)) + (0 if mistake == "block_no_attn_residual" else x)
    return mlp(ln2(mid)) + (0 if mistake == "block_no_mlp_residual" else mid)


def _pos_embed(tokens, W_pos, mistake=None):
    batch, n = tokens.shape
    if mistake == "pos_from_tokens":
        return W_pos[tokens % W_pos.shape[0]]
    offset = 1 if mistake == "pos_offset_by_one" else 0
    if offset + n > W_pos.shape[0]:
        return None  # this mistake cannot even produce an output here
    return W_pos[offset:offset + n].expand(batch, n, -1)


def _unembed(x, sd, mistake=None):
    return x @ sd["W_U"] + (0 if mistake == "unembed_no_b_U" else sd["b_U"])


def _transformer(tokens, sd, cfg, mistake=None):
    pos = _pos_embed(tokens, sd["pos_embed.W_pos"], mistake)
    if pos is None:
        return None
    x = sd["embed.W_E"][tokens] + pos
    for layer in range(cfg.n_layers):
        x = _block(x, _sub(sd, f"blocks.{layer}."), cfg, mistake)
    if mistake != "no_final_ln":
        x = _layernorm(x, sd["ln_final.w"], sd["ln_final.b"], cfg.layer_norm_eps, mistake)
    return _unembed(x, _sub(sd, "unembed."), mistake)


# --------------------------------------------------------------------------- the reference: Hugging Face's GPT-2

def _randomised_hf_gpt2(cfg: Config, seed: int):
    """A Hugging Face GPT-2 of cfg's shape with every parameter random and away from its initial value."""
    torch.manual_seed(seed)
    hf = new_gpt2(cfg, attn_implementation="eager")
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 1:
                p.copy_((1.0 if "ln" in name and name.endswith("weight") else 0.0) + 0.5 * torch.randn_like(p))
            elif "wte" in name or "wpe" in name:
                p.normal_(0.0, 1.0)
            else:  # Conv1D weights are [in, out]: this keeps activations O(1) and attention patterns sharp
                p.normal_(0.0, 1.5 / math.sqrt(p.shape[0]))
    return hf


def _hf_module_output(hf, module, x):
    """Run `module` of the Hugging Face model on our input `x`, inside a full forward pass (so it gets GPT-2's causal mask)."""
    captured = {}

    def swap_input(mod, args, kwargs):
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    def save_output(mod, args, output):
        captured["out"] = output[0] if isinstance(output, tuple) else output

    handles = [module.register_forward_pre_hook(swap_input, with_kwargs=True), module.register_forward_hook(save_output)]
    try:
        hf.transformer(input_ids=torch.zeros(x.shape[:2], dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    return captured["out"]


# --------------------------------------------------------------------------- comparing and reporting

def _share(part: int, whole: int) -> str:
    """'3 of 1,280 (0.2%)', never a rounded '0.0%' for a few wrong entries."""
    percent = 100 * part / whole
    shown = f"{percent:.1f}%" if percent >= 0.1 or part == 0 else "under 0.1%"
    return f"{part:,} of {whole:,} ({shown})"


def _describe_mismatch(name, got, expected, dims):
    diff = (got - expected).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    bad = ~torch.isclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    first = tuple(int(i) for i in bad.nonzero()[0])
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    where = lambda idx: ", ".join(f"{d}={i}" for d, i in zip(dims, idx))
    lines = [f"{name}: output differs from GPT-2's (float32 tolerance atol={ATOL}, rtol={RTOL}).",
             f"  max |error| = {diff.max().item():.3g} at ({where(worst)}); first mismatch at ({where(first)}); "
             f"{_share(int(bad.sum()), bad.numel())} of entries differ"]
    if torch.isnan(got).any():
        nan_at = tuple(int(i) for i in torch.isnan(got).nonzero()[0])
        lines.append(f"  your output has NaN, first at ({where(nan_at)})")
    if dims[1] == "posn" and got.ndim >= 2:
        positions = bad.flatten(2).any(-1).any(0).nonzero().flatten().tolist() if got.ndim > 2 else []
        if positions:
            lines.append(f"  positions with errors: {positions[:10]}{' ...' if len(positions) > 10 else ''}")
    return lines


def _diagnose(got, variants: dict):
    for mistake, outputs in variants.items():
        for output in outputs if isinstance(outputs, list) else [outputs]:
            if output is not None and output.shape == got.shape and torch.allclose(got, output, rtol=RTOL, atol=ATOL, equal_nan=True):
                return f"  Likely cause: {MISTAKES[mistake]}"
    return None


def _fail(lines, hint=None, generic=None):
    lines = list(lines)
    lines.append(hint or f"  None of the known mistakes reproduces your output. Things to check: {generic}")
    raise AssertionError("\n".join(lines))


def _build(cls, cfg, name):
    try:
        return cls(cfg)
    except NotImplementedError:
        raise  # an exercise stub: its own message says what to write
    except Exception as err:
        raise AssertionError(f"{name}: {cls.__name__}(cfg) raised {type(err).__name__}: {err}{_your_line(err)}") from None


def _load(layer, state, name, cls):
    expected = {k: tuple(v.shape) for k, v in state.items()}
    actual = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    if expected != actual:
        missing = {k: v for k, v in expected.items() if k not in actual}
        unexpected = {k: v for k, v in actual.items() if k not in expected}
        wrong = {k: f"{actual[k]} should be {v}" for k, v in expected.items() if k in actual and actual[k] != v}
        raise AssertionError(
            f"{name}: {cls.__name__}'s parameters do not match GPT-2's (TransformerLens names and layouts).\n"
            f"  expected: {expected}\n  missing: {missing or 'none'}; unexpected: {unexpected or 'none'}; wrong shape: {wrong or 'none'}")
    layer.load_state_dict(state, strict=True)


# Frames in these places are not the learner's: the checks themselves, installed packages (torch...) and the standard library
_NOT_YOURS = (str(Path(__file__).resolve()), str(Path(torch.__file__).resolve().parent.parent), sysconfig.get_paths()["stdlib"])


def _is_yours(filename: str) -> bool:
    return not filename.startswith(_NOT_YOURS)


def _your_line(err: BaseException) -> str:
    """Where in the learner's own code an exception was raised, as one line for the message ('' if nowhere)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_yours(f.filename)]
    if not frames:
        return ""
    last = frames[-1]
    return f"\n  In your code: {last.name}, line {last.lineno}" + (f": {last.line.strip()}" if last.line else "")


def _from_your_code(tb):
    """The traceback from the learner's first frame on, without the checks' and torch's frames before it."""
    while tb is not None and not _is_yours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def learner_facing(check):
    """A check as the learner meets it: on failure, the message alone (the checks' own frames hidden, in IPython and pytest);
    for an exercise stub, its NotImplementedError raised from the stub's own line."""
    @functools.wraps(check)
    def run_check(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (read by IPython and pytest)
        try:
            return check(*args, **kwargs)
        except AssertionError as err:
            raise AssertionError(str(err)) from None
        except NotImplementedError as err:
            raise err.with_traceback(_from_your_code(err.__traceback__) or err.__traceback__) from None
    return run_check


def _call(layer, inp, name, generic, method="forward"):
    before = inp.clone()
    try:
        out = layer(inp) if method == "forward" else getattr(layer, method)(inp)
    except NotImplementedError:
        raise  # an exercise stub: its own message says what to write
    except Exception as err:
        raise AssertionError(f"{name}: {method} raised {type(err).__name__}: {err}{_your_line(err)}\n  Things to check: {generic}") from None
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{name}: {method} must return a Tensor, got {type(out).__name__}")
    if not torch.equal(before, inp):
        raise AssertionError(f"{name}: {method} modified its input in place (e.g. x -= mean, x.add_() or scores.masked_fill_()). "
                             "Build new tensors instead: the caller's tensor must not change.")
    return out


def _compare(name, got, expected, dims, variants, generic):
    if tuple(got.shape) != tuple(expected.shape):
        shape_hint = _diagnose(got, variants)
        _fail([f"{name}: wrong output shape: expected {tuple(expected.shape)} ({', '.join(dims)}), got {tuple(got.shape)}"],
              shape_hint, generic)
    if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        _fail(_describe_mismatch(name, got, expected, dims), _diagnose(got, variants), generic)


def _check_causal(name, layer, inp, generic):
    """Changing the last position must not change any earlier output."""
    with torch.no_grad():
        base = layer(inp.clone())
        changed = inp.clone()
        if changed.is_floating_point():
            changed[:, -1] = changed[:, -1] + 3.0 * torch.randn_like(changed[:, -1])
        else:
            changed[:, -1] = (changed[:, -1] + 1) % CHECK_CFG.d_vocab
        after = layer(changed)
    leaked = ~torch.isclose(base[:, :-1], after[:, :-1], rtol=RTOL, atol=ATOL, equal_nan=True)
    if leaked.any():
        positions = leaked.flatten(2).any(-1).any(0).nonzero().flatten().tolist()
        _fail([f"{name}: not causal: changing the last position changed the outputs at earlier positions {positions[:10]}."],
              f"  Likely cause: {MISTAKES['attn_no_mask']}" if positions else None, generic)


def _check_causal_mask(layer, scores):
    """apply_causal_mask must keep scores[..., q, k] for k <= q and set the rest to -inf (or a large negative number)."""
    name = "Attention.apply_causal_mask"
    generic = "return scores.masked_fill(torch.triu(torch.ones(q, k, dtype=torch.bool), diagonal=1), self.IGNORE)"
    masked = _call(layer, scores, name, generic, method="apply_causal_mask")
    n = scores.shape[-1]
    if tuple(masked.shape) != tuple(scores.shape):
        _fail([f"{name}: returned shape {tuple(masked.shape)}, expected the scores' shape {tuple(scores.shape)}"], None, generic)
    hidden = masked <= -1e4  # -inf, or a large negative number such as ARENA's -1e5
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    if torch.equal(hidden.all(0).all(0), future) and torch.equal(masked[..., ~future], scores[..., ~future]):
        return
    if not hidden.any():
        zeros = (masked[..., future] == 0).all()
        cause = ("the future is filled with 0, and a score of 0 still gets weight e^0 after the softmax, so the model sees the "
                 "future (it is not causal). Fill with self.IGNORE (-inf)." if zeros else MISTAKES["attn_no_mask"])
    elif hidden[..., range(n), range(n)].any():
        cause = MISTAKES["attn_mask_diagonal"]
    elif (hidden & torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)).any():
        cause = "past positions (below the diagonal) are hidden: mask the upper triangle, torch.triu(..., diagonal=1), not the lower."
    elif not hidden[..., range(n - 1), range(1, n)].any():
        cause = MISTAKES["attn_mask_shows_next"]
    else:
        cause = "the scores it keeps (key <= query) have changed: only the future positions should be replaced."
    _fail([f"{name}: the mask is wrong on scores of shape {tuple(scores.shape)}."], f"  Likely cause: {cause}", generic)


def _float_input(batch, n, cfg, case):
    x = torch.randn(batch, n, cfg.d_model)
    if case == 1:
        return 3.0 * x + 2.0  # a nonzero mean per position
    if case == 2:
        return 1e-3 * x  # tiny variance: where eps sits matters
    return x


def _run(name, make_layer, run_case, generic, cfgs):
    n_runs = 0
    for cfg in cfgs:
        for seed in SEEDS:
            for batch, n in SHAPES:
                n = min(n, cfg.n_ctx)
                hf = _randomised_hf_gpt2(cfg, seed)
                sd = convert_hf_state_dict(hf.state_dict(), cfg)
                sd["unembed.b_U"] = 0.5 * torch.randn(cfg.d_vocab)
                layer = make_layer(cfg, sd)
                with torch.no_grad():
                    run_case(cfg, hf, sd, layer, batch, n, seed)
                n_runs += 1
    print(f"{name} passed: {n_runs} cases ({len(SEEDS)} seeds x {len(SHAPES)} shapes) match Hugging Face's GPT-2")


def _layer_factory(cls, name, prefix):
    def make(cfg, sd):
        layer = _build(cls, cfg, name)
        _load(layer, _sub(sd, prefix), name, cls)
        return layer.eval()
    return make


def _cfgs(cfg):
    return [cfg or CHECK_CFG]


# --------------------------------------------------------------------------- the checks

@learner_facing
def check_layernorm(cls, cfg: Config | None = None) -> None:
    name, generic = "LayerNorm", "mean and biased variance over the last dim; eps inside the sqrt; then * w + b"

    def case(cfg, hf, sd, layer, batch, n, seed):
        for kind in range(3):
            x = _float_input(batch, n, cfg, kind)
            got = _call(layer, x, name, generic)
            expected = hf.transformer.ln_f(x)
            variants = {m: _layernorm(x, sd["ln_final.w"], sd["ln_final.b"], cfg.layer_norm_eps, m) for m in _LN}
            _compare(name, got, expected, ("batch", "posn", "d_model"), variants, generic)

    _run(name, _layer_factory(cls, name, "ln_final."), case, generic, _cfgs(cfg))


@learner_facing
def check_embed(cls, cfg: Config | None = None) -> None:
    name, generic = "Embed", "return W_E[tokens]: one row of W_E [d_vocab, d_model] per token"

    def case(cfg, hf, sd, layer, batch, n, seed):
        tokens = torch.randint(0, cfg.d_vocab, (batch, n))
        _compare(name, _call(layer, tokens, name, generic), hf.transformer.wte(tokens), ("batch", "posn", "d_model"), {}, generic)

    _run(name, _layer_factory(cls, name, "embed."), case, generic, _cfgs(cfg))


@learner_facing
def check_pos_embed(cls, cfg: Config | None = None) -> None:
    name = "PosEmbed"
    generic = ("return W_pos[:posn] repeated over the batch: rows indexed by position 0..posn-1, never by token id "
               "(an IndexError here usually means positions were taken from token ids, or shifted by one)")

    def case(cfg, hf, sd, layer, batch, n, seed):
        for high in (n, cfg.d_vocab):  # first ids small enough that indexing W_pos by them would not crash
            tokens = torch.randint(0, high, (batch, n))
            expected = hf.transformer.wpe(torch.arange(n)).expand(batch, n, cfg.d_model)
            variants = {m: _pos_embed(tokens, sd["pos_embed.W_pos"], m) for m in _POS}
            got = _call(layer, tokens, name, generic)
            if tuple(got.shape) == tuple(expected.shape[1:]):
                got = got.expand_as(expected)  # [posn, d_model] is right too: adding it to [batch, posn, d_model] broadcasts
            _compare(name, got, expected, ("batch", "posn", "d_model"), variants, generic)

    _run(name, _layer_factory(cls, name, "pos_embed."), case, generic, _cfgs(cfg))


@learner_facing
def check_attention(cls, cfg: Config | None = None) -> None:
    name = "Attention"
    generic = ("q/k/v = x W + b per head; scores q·k / sqrt(d_head); mask future keys with -inf (torch.triu(..., diagonal=1)); "
               "softmax over keys; weighted sum of v; project with W_O and add b_O")

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        attn_sd = _sub(sd, "blocks.0.attn.")
        # every method the exercise asks for, in the order it is written: the mask, the pattern, then forward
        if n > 1:
            _check_causal_mask(layer, torch.randn(batch, cfg.n_heads, n, n, generator=torch.Generator().manual_seed(seed)))
        pattern_variants = {m: [_attention_pattern(x, attn_sd, cfg, m), _attention_pattern(x, attn_sd, cfg, m, fill=-1e5)]
                            for m in _ATTN if m != "attn_no_b_O"}
        pattern = _call(layer, x, f"{name}.attention_pattern", generic, method="attention_pattern")
        expected_pattern = _attention_pattern(x, attn_sd, cfg)
        if tuple(pattern.shape) == tuple(expected_pattern.shape) and not torch.allclose(pattern, expected_pattern, rtol=RTOL, atol=ATOL):
            if _diagnose(pattern, pattern_variants) is None and not torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-3):
                _fail([f"{name}.attention_pattern: its rows do not sum to 1 over the key positions"
                       + (" and it holds -inf" if torch.isinf(pattern).any() else "") + "."],
                      "  Likely cause: it returns the masked scores, not probabilities. attention_pattern must end with the softmax "
                      "over keys (dim=-1); forward then uses the pattern it returns.", generic)
        _compare(f"{name}.attention_pattern", pattern, expected_pattern, ("batch", "n_heads", "query_posn", "key_posn"),
                 pattern_variants, generic)
        expected = _hf_module_output(hf, hf.transformer.h[0].attn, x)
        # masks filled with -inf or with a large negative number (as ARENA does) differ when a row is fully masked
        variants = {m: [_attention(x, attn_sd, cfg, m), _attention(x, attn_sd, cfg, m, fill=-1e5)] for m in _ATTN}
        _compare(name, _call(layer, x, name, generic), expected, ("batch", "posn", "d_model"), variants, generic)
        if n > 1:
            _check_causal(name, layer, x, generic)

    _run(name, _layer_factory(cls, name, "blocks.0.attn."), case, generic, _cfgs(cfg))


@learner_facing
def check_mlp(cls, cfg: Config | None = None) -> None:
    name, generic = "MLP", "x W_in + b_in, then gelu_new (F.gelu(x, approximate='tanh')), then W_out + b_out"

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        mlp_sd = _sub(sd, "blocks.0.mlp.")
        variants = {m: _mlp(x, mlp_sd, m) for m in _MLP}
        _compare(name, _call(layer, x, name, generic), hf.transformer.h[0].mlp(x), ("batch", "posn", "d_model"), variants, generic)

    _run(name, _layer_factory(cls, name, "blocks.0.mlp."), case, generic, _cfgs(cfg))


@learner_facing
def check_block(cls, cfg: Config | None = None) -> None:
    name = "TransformerBlock"
    generic = ("pre-LN with two residual connections: resid_mid = resid_pre + attn(ln1(resid_pre)); "
               "resid_post = resid_mid + mlp(ln2(resid_mid)). Do LayerNorm, Attention and MLP pass their own checks?")

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        block_sd = _sub(sd, "blocks.0.")
        variants = {m: _block(x, block_sd, cfg, m) for m in _BLOCK}
        expected = _hf_module_output(hf, hf.transformer.h[0], x)
        _compare(name, _call(layer, x, name, generic), expected, ("batch", "posn", "d_model"), variants, generic)
        if n > 1:
            _check_causal(name, layer, x, generic)

    _run(name, _layer_factory(cls, name, "blocks.0."), case, generic, _cfgs(cfg))


@learner_facing
def check_unembed(cls, cfg: Config | None = None) -> None:
    name, generic = "Unembed", "x W_U + b_U, with W_U [d_model, d_vocab]"

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        expected = hf.lm_head(x) + sd["unembed.b_U"]
        variants = {m: _unembed(x, _sub(sd, "unembed."), m) for m in ["unembed_no_b_U"]}
        _compare(name, _call(layer, x, name, generic), expected, ("batch", "posn", "d_vocab"), variants, generic)

    _run(name, _layer_factory(cls, name, "unembed."), case, generic, _cfgs(cfg))


@learner_facing
def check_transformer(cls, cfg: Config | None = None) -> None:
    name = "DemoTransformer"
    generic = ("embed(tokens) + pos_embed(tokens); every block in order; ln_final; unembed. "
               "Do all the layers pass their own checks?")

    def case(cfg, hf, sd, layer, batch, n, seed):
        for high in (n, cfg.d_vocab):  # small ids first: a PosEmbed indexed by token ids then gives wrong values, not a crash
            tokens = torch.randint(0, high, (batch, n))
            got = _call(layer, tokens, name, generic)
            hf_out = hf(tokens, labels=tokens)
            expected = hf_out.logits + sd["unembed.b_U"]
            variants = {m: _transformer(tokens, sd, cfg, m) for m in _ALL}
            _compare(name, got, expected, ("batch", "posn", "d_vocab"), variants, generic)
        if n > 1:
            _check_causal(name, layer, tokens, generic)
            # the loss too: with b_U = 0 the model is exactly GPT-2, so Hugging Face's own loss must match
            with torch.no_grad():
                if hasattr(layer, "unembed") and hasattr(layer.unembed, "b_U"):
                    layer.unembed.b_U.zero_()
                loss = next_token_loss(layer(tokens), tokens)
            if not math.isclose(loss.item(), hf_out.loss.item(), rel_tol=RTOL, abs_tol=ATOL):
                _fail([f"{name}: loss {loss.item():.6f} differs from Hugging Face's {hf_out.loss.item():.6f} although the logits match"],
                      "  Likely cause: Unembed ignores b_U (b_U was set to zero for this comparison).", generic)

    _run(name, _layer_factory(cls, name, ""), case, generic, _cfgs(cfg))


# --------------------------------------------------------------------------- tokenizer checks (notebook 01)

def _call_fn(fn, args, label, hints: dict | None = None):
    """Call the learner's function; an exception becomes one AssertionError with their line and, for known ones, a hint."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise  # an exercise stub: its own message says what to write
    except Exception as err:
        hint = next((f"\n  Likely cause: {why}" for kind, why in (hints or {}).items() if isinstance(err, kind)), "")
        raise AssertionError(f"{label} raised {type(err).__name__}: {err}{_your_line(err)}{hint}") from None


@learner_facing
def check_merge_word(fn) -> None:
    """`fn(word, pair, new_id)` must replace each occurrence of `pair`, left to right, without changing `word`."""
    cases = [  # word, pair, new_id, expected, what the case tests
        ([1, 2, 3, 1, 2], (1, 2), 9, [9, 3, 9], "every occurrence is replaced"),
        ([1, 1, 1], (1, 1), 9, [9, 1], "overlapping occurrences: left to right, and each id takes part in one merge only"),
        ([1, 1, 1, 1], (1, 1), 9, [9, 9], "overlapping occurrences: left to right, and each id takes part in one merge only"),
        ([2, 1], (1, 2), 9, [2, 1], "order matters: (2, 1) is not the pair (1, 2)"),
        ([3, 1], (1, 2), 9, [3, 1], "a pair's first id at the end of the word is not a match"),
        ([7], (1, 2), 9, [7], "a word of one id has no pairs"),
        ([], (1, 2), 9, [], "an empty word"),
    ]
    for word, pair, new_id, expected, what in cases:
        original = list(word)
        label = f"merge_word({original}, {pair}, {new_id})"
        got = _call_fn(fn, (word, pair, new_id), label)
        if word != original:
            raise AssertionError(f"{label} changed its input to {word}. Build and return a new list: train_merges still needs the old word.")
        if not isinstance(got, list) or got != expected:
            raise AssertionError(f"{label} returned {got!r}, expected {expected} ({what}).")
    print(f"merge_word passed: {len(cases)} cases, including overlapping pairs and the end of a word")


_MERGE_TEXT = ("the cat sat on the mat. the cat ate the rat, then the bat sat by the hat!\n" * 3
               + "<|endoftext|>" + "these thin threads throw three thousand thorns; thither and thence.\n" * 2
               + "<|endoftext|>" + "naïve café déjà vu 🤖🤖 1234 123 12 aaaa aaa aa\n\tindented    spaces    here\n" * 2)


@learner_facing
def check_train_merges(fn, n_merges: int = 80) -> None:
    """`fn(text, n_merges)` must learn the same merges, in the same order, as the reference trainer."""
    from utils.bpe import train_merges as reference

    expected_tokens, expected = reference(_MERGE_TEXT, n_merges)
    result = _call_fn(fn, (_MERGE_TEXT, n_merges), f"train_merges(text, {n_merges})")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AssertionError(f"train_merges must return (tokens, merges), got {type(result).__name__}")
    tokens, merges = result
    merges = [tuple(pair) for pair in merges]
    for k, (got, want) in enumerate(zip(merges, expected)):
        if got != want:
            counts = _pair_counts_after(expected[:k])
            tie = counts.get(got, 0) == counts.get(want, 0) > 0
            raise AssertionError(
                f"train_merges: merge {k} is {tokens[got[0]]!r} + {tokens[got[1]]!r}, expected {expected_tokens[want[0]]!r} + "
                f"{expected_tokens[want[1]]!r} ({_matching(k)}).\n"
                + (f"  Likely cause: a tie. Both pairs occur {counts[want]} times at this point; ties go to the smallest ids "
                   f"({want} before {got}), which the heap of (-count, pair) gives for free, and dict order does not."
                   if tie else
                   f"  At this point the expected pair occurs {counts.get(want, 0)} times and yours {counts.get(got, 0)}. Things to check: "
                   "each affected word's count is subtracted from every pair of the old word and added to every pair of the new word; "
                   "words_with records the new pairs; every changed pair that still occurs is pushed back on the heap."))
    if len(merges) != len(expected):
        raise AssertionError(f"train_merges learned {len(merges)} merges, expected {len(expected)} ({_matching(min(len(merges), len(expected)))}). "
                             "Stopping early usually means changed pairs were not pushed back on the heap.")
    if len(tokens) != 256 + len(merges) or any(tokens[256 + k] != tokens[a] + tokens[b] for k, (a, b) in enumerate(merges)):
        raise AssertionError("train_merges: tokens must hold the 256 byte tokens, then one new token per merge, "
                             "tokens[a] + tokens[b] for merge (a, b), appended in order.")
    print(f"train_merges passed: the same {len(merges)} merges, in the same order, as the reference trainer")


def _matching(k: int) -> str:
    return "none match before it" if k == 0 else "the first merge matches" if k == 1 else f"the first {k} merges match"


def _pair_counts_after(merges) -> dict:
    """How often each pair of token ids occurs in the check's text once `merges` have been applied (the reference's way)."""
    from collections import Counter

    from utils.bpe import END_OF_TEXT, bytes_to_unicode, merge_word, pretokenize

    byte_id = {byte: i for i, byte in enumerate(bytes_to_unicode())}
    words = Counter(word for chunk in _MERGE_TEXT.split(END_OF_TEXT) for word in pretokenize(chunk))
    counts = Counter()
    for word, n in words.items():
        ids = [byte_id[b] for b in word.encode("utf-8")]
        for k, pair in enumerate(merges):
            ids = merge_word(ids, pair, 256 + k)
        for pair in zip(ids, ids[1:]):
            counts[pair] += n
    return counts


_DECODE_HINTS = {UnicodeDecodeError: "each token's bytes are decoded as UTF-8 on their own, but one character can span two tokens "
                                    "(an emoji is 4 bytes). Join the bytes of all the tokens, then decode once, with errors='replace' "
                                    "as GPT-2 does."}

_TOKENIZER_TEXTS = [
    "Hello world!", "  leading and   multiple   spaces  ", "tabs\tand\nnew\n\n\nlines\r\n", "I'm sure they'd've said it's John's",
    "emoji 🤖🚀 and accents: café naïve", "中文字符和日本語のテキスト", "def f(x):\n    return x**2  # square\n",
    "1234567890 + 3.14159 = ?", "<|endoftext|>between<|endoftext|>docs", "antidisestablishmentarianism unbelievably",
]


@learner_facing
def check_bpe_tokenizer(cls) -> None:
    """`cls(vocab, merges)` loaded with GPT-2's vocabulary and merges must encode and decode exactly as GPT-2 does."""
    from utils.bpe import BPETokenizer as Reference
    from utils.resources import gpt2_vocab_and_merges

    vocab, merges = gpt2_vocab_and_merges()
    reference = Reference(vocab, merges)
    tokenizer = _call_fn(cls, (vocab, merges), f"{cls.__name__}(vocab, merges)")
    show = lambda ids: [reference.id_to_token.get(i, i) for i in ids]  # noqa: E731
    for text in _TOKENIZER_TEXTS:
        expected = reference.encode(text)
        got = _call_fn(tokenizer.encode, (text,), f"encode({text!r})")
        if list(got) != expected:
            raise AssertionError(
                f"encode({text!r}):\n  got      {show(got)}\n  expected {show(expected)}\n"
                "  Things to check (_bpe): each round merges the adjacent pair with the LOWEST rank in merge_ranks (not the first "
                "mergeable pair, nor the most frequent), replaces all its occurrences left to right, and repeats until no pair is a merge.")
        decoded = _call_fn(tokenizer.decode, (expected,), f"decode(encode({text!r}))", _DECODE_HINTS)
        if decoded != text:
            raise AssertionError(f"decode(encode({text!r})) gave {decoded!r}. Map each character of each token back to its byte with "
                                 "byte_decoder, join all the bytes, then decode UTF-8 once (a character may span two tokens).")
    robot = reference.encode("🤖")
    half = _call_fn(tokenizer.decode, (robot[:1],), "decode(half of an emoji's tokens)", _DECODE_HINTS)
    if half != reference.decode(robot[:1]):
        raise AssertionError(f"decoding half of an emoji's bytes gave {half!r}, expected {reference.decode(robot[:1])!r}: "
                             "decode the joined bytes with errors='replace', as GPT-2 does.")
    print(f"{cls.__name__} passed: GPT-2's ids on {len(_TOKENIZER_TEXTS)} tricky strings, and decode(encode(s)) == s for each")


# --------------------------------------------------------------------------- training checks (notebook 03)

def _lr_variants(step, args):
    """Learning-rate schedules with one known mistake each."""
    lr, warm, total, low = args.lr, args.warmup_steps, args.max_steps, args.min_lr_ratio
    cosine = lambda progress, floor: lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))  # noqa: E731
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return {
        "the warmup starts at 0 (lr * step / warmup_steps), so step 0 learns nothing; use (step + 1) / warmup_steps":
            lr * step / warm if step < warm else cosine(progress, low),
        "the decay ends at 0 instead of lr * min_lr_ratio": lr * (step + 1) / warm if step < warm else cosine(progress, 0.0),
        "there is no warmup": cosine(progress, low),
        "the decay is linear, not cosine":
            lr * (step + 1) / warm if step < warm else lr * (low + (1 - low) * (1 - progress)),
        "the cosine's progress counts from step 0, not from the end of warmup":
            lr * (step + 1) / warm if step < warm else cosine(min(1.0, step / total), low),
        "after max_steps the cosine comes back up: clamp the progress at 1":
            lr * (step + 1) / warm if step < warm else cosine((step - warm) / max(1, total - warm), low),
    }


@learner_facing
def check_lr_at(fn) -> None:
    """`fn(step, args)` must give linear warmup to args.lr, then cosine decay to args.lr * args.min_lr_ratio at args.max_steps."""
    from utils.training import TrainingArgs, lr_at as reference

    settings = [TrainingArgs(lr=1e-3, warmup_steps=10, max_steps=100, min_lr_ratio=0.1),
                TrainingArgs(lr=6e-4, warmup_steps=3, max_steps=40, min_lr_ratio=0.0),
                TrainingArgs(lr=1e-3, warmup_steps=5, max_steps=5, min_lr_ratio=0.1)]  # no decay phase: max_steps - warmup_steps = 0
    for args in settings:
        for step in range(args.max_steps + 10):
            got = _call_fn(fn, (step, args), f"lr_at({step}, args)")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()  # a 0-d tensor holds a number too (the trainer converts it with float())
            want = reference(step, args)
            # rel_tol 1e-5: a schedule computed in float32 (torch.cos on a float32 tensor) is right to about 4e-6
            if not (isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-12)):
                cause = next((why for why, value in _lr_variants(step, args).items()
                              if isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-12)), None)
                raise AssertionError(
                    f"lr_at({step}, args) = {got!r}, expected {want:.6g} (lr={args.lr}, warmup_steps={args.warmup_steps}, "
                    f"max_steps={args.max_steps}, min_lr_ratio={args.min_lr_ratio}).\n"
                    + (f"  Likely cause: {cause}." if cause else "  Things to check: warmup lr * (step + 1) / warmup_steps; then "
                       "progress = (step - warmup_steps) / (max_steps - warmup_steps), clamped to 1; "
                       "lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * progress)))."))
    print(f"lr_at passed: every step of {len(settings)} schedules, including past max_steps")


def _tiny_model(seed=0):
    from utils.model import DemoTransformer

    torch.manual_seed(seed)
    return DemoTransformer(replace(CHECK_CFG, n_layers=1, d_vocab=50, n_ctx=8))


@learner_facing
def check_make_optimizer(fn) -> None:
    """`fn(model, args)` must return AdamW with weight decay on the weight matrices and embeddings (W_...) only, every parameter once."""
    from utils.training import TrainingArgs

    model = _tiny_model()
    args = TrainingArgs(lr=3e-4, weight_decay=0.05, betas=(0.9, 0.95))
    optimizer = _call_fn(fn, (model, args), "make_optimizer(model, args)")
    if not isinstance(optimizer, torch.optim.AdamW):
        raise AssertionError(f"make_optimizer must return torch.optim.AdamW, got {type(optimizer).__name__}")
    names = {id(p): name for name, p in model.named_parameters()}
    seen, wrong, decay_of = {}, [], {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            decay_of[id(p)] = group["weight_decay"]
            name = names.get(id(p), "a tensor that is not one of the model's parameters")
            if id(p) in seen:
                raise AssertionError(f"make_optimizer: {name} is in two parameter groups; each parameter must appear once.")
            seen[id(p)] = name
            should = args.weight_decay if _is_weight(name) else 0.0
            if group["weight_decay"] != should:
                wrong.append(f"{name} ({'a weight matrix' if _is_weight(name) else 'not a weight matrix'}) has weight_decay "
                             f"{group['weight_decay']}, expected {should}")
        if group["lr"] != args.lr or tuple(group["betas"]) != tuple(args.betas):
            raise AssertionError(f"make_optimizer: a group has lr {group['lr']} and betas {group['betas']}; use args.lr and args.betas.")
    missing = [name for name in names.values() if name not in seen.values()]
    if missing:
        raise AssertionError(f"make_optimizer: these parameters are not being trained: {missing}")
    if wrong:
        by_ndim = all((p.ndim >= 2) == (decay_of[id(p)] != 0) for p in model.parameters())
        cause = ("  Likely cause: the 'decay tensors with ndim >= 2' rule. Here b_Q, b_K and b_V are [n_heads, d_head]: two-dimensional, but "
                 "biases. Decide by the name: name.split('.')[-1].startswith('W_').\n") if by_ndim else ""
        raise AssertionError("make_optimizer: " + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else "") + "\n" + cause
                             + "  Decay the weight matrices and embeddings (W_...), not biases (b_...) or LayerNorm's w and b.")
    n_weights = sum(_is_weight(name) for name in names.values())
    print(f"make_optimizer passed: {len(seen)} parameters, decay on the {n_weights} weight matrices and embeddings (W_...) only")


def _is_weight(name: str) -> bool:
    """Weight matrices and embeddings are named W_... (TransformerLens's names); biases b_..., LayerNorm's w and b are not."""
    return name.split(".")[-1].startswith("W_")


def _steps_with(step_fn, variant=None, clip=0.5):
    """Two SGD steps, each over two micro-batches: the check runs the first micro-batch's backward, then the step function gets
    the second one's loss (SGD shows clipping and lost or leftover gradients; AdamW would hide them).
    Returns the weights, the returned values and the second micro-batches' losses."""
    model = _tiny_model()
    params = list(model.parameters())  # two groups, as make_optimizer makes: clipping must cover every group
    optimizer = torch.optim.SGD([{"params": [p for p in params if p.ndim >= 2]}, {"params": [p for p in params if p.ndim < 2]}], lr=0.5)
    tokens = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(0))
    returned, losses = [], []
    for scale in (30.0, 10.0):  # scaled so that the gradient norm is well above `clip`
        (scale * next_token_loss(model(tokens[:2]), tokens[:2])).backward()  # an earlier micro-batch
        loss = scale * next_token_loss(model(tokens[2:]), tokens[2:])
        losses.append(loss.item())
        if variant is None:
            returned.append(_call_fn(step_fn, (model, optimizer, loss, clip), "optimizer_step(model, optimizer, loss, grad_clip)"))
        else:
            if variant == "zero_first":
                optimizer.zero_grad()
            loss.backward()
            if variant == "clip_value":
                torch.nn.utils.clip_grad_value_(model.parameters(), clip)
            elif variant == "clip_at_1":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            elif variant != "no_clip":
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if variant != "no_zero_grad":
                optimizer.zero_grad()
            returned.append(loss.detach())
    return torch.cat([p.detach().flatten() for p in model.parameters()]), returned, losses


@learner_facing
def check_optimizer_step(fn) -> None:
    """`fn(model, optimizer, loss, grad_clip)` must backpropagate (adding to gradients already there), clip the gradient norm, step,
    clear the gradients, and return the loss detached."""
    from utils.training import optimizer_step as reference

    expected = _steps_with(reference)[0]
    got, returned, losses = _steps_with(fn)
    value = returned[0]
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise AssertionError("optimizer_step returned the loss still attached to its graph; return loss.detach()")
    if not (isinstance(value, float) or (isinstance(value, torch.Tensor) and value.numel() == 1)) or not math.isclose(float(value), losses[0], rel_tol=1e-5):
        raise AssertionError(f"optimizer_step must return the loss it was given, detached (loss.detach()); it returned {value!r}, "
                             f"the loss was {losses[0]:.6g}")
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-6):
        causes = {
            "zero_first": "the gradients are cleared before loss.backward(), which throws away the earlier micro-batches' gradients "
                          "(gradient accumulation): clear them after optimizer.step() instead",
            "no_zero_grad": "the gradients are never cleared, so the next step adds this step's gradients again: call "
                            "optimizer.zero_grad(set_to_none=True) after optimizer.step()",
            "no_clip": "the gradient norm is not clipped before optimizer.step() (clipping after the step changes nothing): "
                       "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) between backward and step",
            "clip_value": "clip_grad_value_ clips each gradient entry separately; clip the total norm of all gradients together, "
                          "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip), which keeps the gradient's direction",
            "clip_at_1": "the norm is clipped to 1.0, not to grad_clip (the check uses grad_clip = 0.5): pass grad_clip",
        }
        cause = next((why for variant, why in causes.items() if torch.allclose(got, _steps_with(None, variant)[0], rtol=1e-4, atol=1e-6)), None)
        raise AssertionError("optimizer_step: after two steps the weights differ from the reference (largest difference "
                             f"{(got - expected).abs().max().item():.3g}).\n"
                             + (f"  Likely cause: {cause}." if cause else
                                "  Things to check, in this order: loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) "
                                "with the grad_clip given; optimizer.step(), once; optimizer.zero_grad()."))
    note = ("\n  (It returns a Python float: that works, but on a GPU .item() makes the CPU wait for the GPU every step; "
            "return loss.detach() instead.)") if isinstance(value, float) else ""
    print("optimizer_step passed: two SGD steps over two micro-batches each, with clipping, give the reference weights and leave no "
          "gradients" + note)


@learner_facing
def check_next_token_accuracy(fn) -> None:
    """`fn(logits, tokens)` must give the fraction of positions whose argmax logit is the NEXT token."""
    from utils.training import next_token_accuracy as reference

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (3, 9), generator=generator)
    logits = torch.randn(3, 9, 7, generator=generator)
    logits[:, :-1].scatter_add_(-1, tokens[:, 1:, None], torch.where(torch.rand(3, 8, 1, generator=generator) < 0.6, 10.0, 0.0))
    expected = reference(logits, tokens)
    got = _call_fn(fn, (logits, tokens), "next_token_accuracy(logits, tokens)")
    if not isinstance(got, float) or not math.isclose(got, expected, rel_tol=1e-6):
        variants = {
            "no shift: logits at position i predict token i + 1, so compare logits[:, :-1].argmax(-1) with tokens[:, 1:]":
                (logits.argmax(-1) == tokens).float().mean().item(),
            "a count, not a fraction: divide by the number of predictions": float((logits[:, :-1].argmax(-1) == tokens[:, 1:]).sum()),
        }
        cause = next((why for why, value in variants.items() if isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=1e-6)), None)
        raise AssertionError(f"next_token_accuracy returned {got!r}, expected {expected:.6f} (a Python float between 0 and 1).\n"
                             + (f"  Likely cause: {cause}." if cause else "  Compare logits[:, :-1].argmax(-1) with tokens[:, 1:]."))
    print(f"next_token_accuracy passed: {expected:.1%} on a batch built to have a known accuracy")


# name in a notebook -> its check; `make check NOTEBOOK=...` runs the checks whose names the notebook defines
CHECKS = {
    "merge_word": check_merge_word, "train_merges": check_train_merges, "BPETokenizer": check_bpe_tokenizer,
    "LayerNorm": check_layernorm, "Embed": check_embed, "PosEmbed": check_pos_embed, "Attention": check_attention, "MLP": check_mlp,
    "TransformerBlock": check_block, "Unembed": check_unembed, "DemoTransformer": check_transformer,
    "lr_at": check_lr_at, "make_optimizer": check_make_optimizer, "optimizer_step": check_optimizer_step,
    "next_token_accuracy": check_next_token_accuracy,
}
