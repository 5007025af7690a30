"""Notebook 02's checks: each layer the learner writes, against Hugging Face's GPT-2 with the same
random weights.

Each check takes the learner's class (not an instance), builds it and the matching Hugging Face
module with the same random weights (every bias and LayerNorm weight randomised too: GPT-2's zero
biases and unit LayerNorm weights would hide mistakes), runs several seeds, batch sizes and sequence
lengths, and compares with float32 tolerances. On failure it names the layer, the shapes, the
largest error and where the first mismatch is, and the likely cause: a functional GPT-2 below can
make each known mistake, and the check reports the first one that reproduces the learner's output.

In this file, in order: the known mistakes; the functional GPT-2 that makes them; Hugging Face's
GPT-2 as the reference; running and comparing; the checks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NoReturn

import torch
import torch.nn.functional as F

from utils.printing import print_wrapped
from utils.checks.core import (
    CheckUsageError,
    Mistake,
    call_learner,
    fail,
    known_mistake,
    learner_facing,
    mistakes_in,
    recognise,
)
from utils.configs import CONFIGS
from utils.model import Config, convert_hf_state_dict, next_token_loss
from utils.resources import new_gpt2
from utils.validation import require_config

ATOL, RTOL = 1e-4, 1e-3  # float32
SEEDS = (0, 1, 2)
SHAPES = ((2, 5), (3, 17), (1, 32))  # (batch, posn); 32 = the check config's n_ctx
# Sizes that no run config has (tests/test_checks.py makes sure), so that a size written into a
# layer as a number, such as ci's d_head, fails here
CHECK_CFG = Config(
    d_model=60,
    d_vocab=1000,
    n_ctx=32,
    d_head=12,
    d_mlp=240,
    n_heads=5,
    n_layers=2,
    layer_norm_eps=1e-5,
)
# sqrt(d_head) of each run config, the scale a learner may write in as a number
RUN_CONFIG_SCALES = tuple(math.sqrt(run.model["d_head"]) for run in CONFIGS.values())

# The dimensions of each tensor compared, named as in the notebook's shape annotations
RESIDUAL = "batch posn d_model"
PATTERN = "batch n_heads query_posn key_posn"
LOGITS = "batch posn d_vocab"
_POSITIONS = {
    "posn": "positions",
    "query_posn": "query positions",
}  # dimensions along which errors are listed by position

# ------------------------------------------------------ known mistakes (the part: where it is made)

LN_EPS_OUTSIDE_SQRT = known_mistake(
    "ln_eps_outside_sqrt",
    "LayerNorm",
    "LayerNorm: eps is added outside the square root. Use (x - mean) / sqrt(var + eps).",
)
LN_UNBIASED_VAR = known_mistake(
    "ln_unbiased_var",
    "LayerNorm",
    "LayerNorm: the variance is unbiased (divides by N-1). Use x.var(dim=-1, unbiased=False), "
    "i.e. divide by N.",
)
LN_NO_MEAN = known_mistake(
    "ln_no_mean", "LayerNorm", "LayerNorm: the mean is not subtracted. Normalise (x - mean), not x."
)
LN_NO_EPS = known_mistake(
    "ln_no_eps",
    "LayerNorm",
    "LayerNorm: no eps: (x - mean) / sqrt(var) divides by almost 0 where the variance is tiny. "
    "Use (x - mean) / sqrt(var + self.cfg.layer_norm_eps).",
)
LN_FIXED_EPS = known_mistake(
    "ln_fixed_eps",
    "LayerNorm",
    "LayerNorm: eps is a number written in the code (GPT-2's 1e-5?), not the config's. Use "
    "self.cfg.layer_norm_eps: this case's config has another.",
)
LN_WRONG_DIM = known_mistake(
    "ln_wrong_dim",
    "LayerNorm",
    "LayerNorm: normalising over the wrong dimension. Mean and variance run over d_model, "
    "the last dim (dim=-1).",
)
ATTN_NO_MASK = known_mistake(
    "attn_no_mask",
    "Attention.apply_causal_mask",
    "Attention: no causal mask. Scores for key positions after the query must be set to -inf "
    "before the softmax.",
)
ATTN_MASK_DIAGONAL = known_mistake(
    "attn_mask_diagonal",
    "Attention.apply_causal_mask",
    "Attention: the causal mask also hides the diagonal, so a position cannot see itself "
    "(with a -inf fill, position 0 sees nothing and gives NaN). Use torch.triu(..., diagonal=1).",
)
ATTN_MASK_SHOWS_NEXT = known_mistake(
    "attn_mask_shows_next",
    "Attention.apply_causal_mask",
    "Attention: the mask is off by one and lets each position see the next token. "
    "Use torch.triu(..., diagonal=1).",
)
ATTN_MASK_AFTER_SOFTMAX = known_mistake(
    "attn_mask_after_softmax",
    "Attention.attention_pattern",
    "Attention: the mask is applied after the softmax, so rows no longer sum to 1. "
    "Mask the scores, then softmax.",
)
ATTN_SCALE_D_HEAD = known_mistake(
    "attn_scale_d_head",
    "Attention.attention_pattern",
    "Attention: scores are divided by d_head. Divide by sqrt(d_head).",
)
ATTN_SCALE_D_MODEL = known_mistake(
    "attn_scale_d_model",
    "Attention.attention_pattern",
    "Attention: scores are divided by sqrt(d_model). Each score is a dot product over one head's "
    "d_head dimensions: divide by sqrt(d_head).",
)
ATTN_NO_SCALE = known_mistake(
    "attn_no_scale",
    "Attention.attention_pattern",
    "Attention: scores are not scaled. Divide q·k by sqrt(d_head).",
)
ATTN_FIXED_SCALE = known_mistake(
    "attn_fixed_scale",
    "Attention.attention_pattern",
    "Attention: the scores are divided by a number written in the code "
    f"({math.sqrt(CONFIGS['ci'].model['d_head']):g}, the square root of ci's d_head "
    f"{CONFIGS['ci'].model['d_head']}?), not by math.sqrt(self.cfg.d_head): these checks use "
    f"d_head {CHECK_CFG.d_head}, which no run config has.",
)
ATTN_SCALE_AFTER_SOFTMAX = known_mistake(
    "attn_scale_after_softmax",
    "Attention.attention_pattern",
    "Attention: the pattern is divided by sqrt(d_head) after the softmax, so its rows sum to "
    "1/sqrt(d_head). Scale the scores q·k, then mask, then softmax.",
)
ATTN_SOFTMAX_WRONG_AXIS = known_mistake(
    "attn_softmax_wrong_axis",
    "Attention.attention_pattern",
    "Attention: softmax runs over the query axis. It must run over keys (the last dim), "
    "so each query's weights sum to 1.",
)
ATTN_NO_B_O = known_mistake(
    "attn_no_b_O", "Attention.forward", "Attention: the output bias b_O is missing."
)
ATTN_NO_B_Q = known_mistake(
    "attn_no_b_Q",
    "Attention.attention_pattern",
    "Attention: the query bias b_Q is missing: q = x W_Q + b_Q.",
)
ATTN_NO_B_V = known_mistake(
    "attn_no_b_V", "Attention.forward", "Attention: the value bias b_V is missing: v = x W_V + b_V."
)
ATTN_MASK_FILL_ZERO = known_mistake(
    "attn_mask_fill_zero",
    "Attention.apply_causal_mask",
    "Attention: the future is filled with 0, and a score of 0 still gets weight e^0 after the "
    "softmax, so the model sees the future (it is not causal). Fill with self.IGNORE (-inf).",
)
ATTN_MASK_HIDES_PAST = known_mistake(
    "attn_mask_hides_past",
    "Attention.apply_causal_mask",
    "Attention: past positions (below the diagonal) are hidden: mask the upper triangle, "
    "torch.triu(..., diagonal=1), not the lower.",
)
ATTN_PATTERN_NO_SOFTMAX = known_mistake(
    "attn_pattern_no_softmax",
    "Attention.attention_pattern",
    "Attention: attention_pattern returns the masked scores, not probabilities. "
    "It must end with the softmax over keys (dim=-1); forward then uses the pattern it returns.",
)
MLP_EXACT_GELU = known_mistake(
    "mlp_exact_gelu",
    "MLP",
    "MLP: exact GELU (nn.GELU() or F.gelu(x)). GPT-2 uses gelu_new, the tanh approximation: "
    "F.gelu(x, approximate='tanh').",
)
MLP_NO_B_IN = known_mistake("mlp_no_b_in", "MLP", "MLP: the input bias b_in is missing.")
BLOCK_POST_LN = known_mistake(
    "block_post_ln",
    "TransformerBlock",
    "TransformerBlock: post-LayerNorm (normalising after adding). GPT-2 is pre-LN: "
    "resid + attn(ln1(resid)).",
)
BLOCK_NO_ATTN_RESIDUAL = known_mistake(
    "block_no_attn_residual",
    "TransformerBlock",
    "TransformerBlock: the residual connection around attention is missing: resid_mid = resid_pre "
    "+ attn(ln1(resid_pre)).",
)
BLOCK_NO_MLP_RESIDUAL = known_mistake(
    "block_no_mlp_residual",
    "TransformerBlock",
    "TransformerBlock: the residual connection around the MLP is missing: resid_post = resid_mid "
    "+ mlp(ln2(resid_mid)).",
)
NO_FINAL_LN = known_mistake(
    "no_final_ln",
    "DemoTransformer",
    "DemoTransformer: the final LayerNorm (ln_final) is missing before the unembedding.",
)
POS_FROM_TOKENS = known_mistake(
    "pos_from_tokens",
    "PosEmbed",
    "PosEmbed: positions are taken from the token ids. Index W_pos with positions 0..posn-1, "
    "not with tokens.",
)
POS_OFFSET_BY_ONE = known_mistake(
    "pos_offset_by_one",
    "PosEmbed",
    "PosEmbed: positions are offset by one. The first position is 0: W_pos[:posn].",
)
UNEMBED_NO_B_U = known_mistake("unembed_no_b_U", "Unembed", "Unembed: the bias b_U is missing.")

# A layer built from the learner's other layers can show their mistakes too
_BUILT_FROM = {
    "TransformerBlock": ("LayerNorm", "Attention", "MLP"),
    "DemoTransformer": ("Embed", "PosEmbed", "TransformerBlock", "LayerNorm", "Unembed"),
}


def _parts(part: str) -> list[str]:
    return [part] + [inner for outer in _BUILT_FROM.get(part, ()) for inner in _parts(outer)]


def mistakes_of(part: str) -> list[Mistake]:
    """The known mistakes a check of `part` looks for: those made in it or in the layers it is built
    from."""
    return mistakes_in(*_parts(part))


# ---------------------------------------------------- a functional GPT-2 that can make each mistake


def _layernorm(x, w, b, eps, mistake=None):
    dim = -2 if mistake is LN_WRONG_DIM else -1
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=mistake is LN_UNBIASED_VAR)
    centred = x if mistake is LN_NO_MEAN else x - mean
    if mistake is LN_FIXED_EPS:
        eps = 1e-5  # GPT-2's, whatever the config says
    if mistake is LN_NO_EPS:
        eps = 0.0
    if mistake is LN_EPS_OUTSIDE_SQRT:
        return centred / (var.sqrt() + eps) * w + b
    return centred / (var + eps).sqrt() * w + b


def _causal_mask(scores, mistake=None, fill=float("-inf")):
    if mistake is ATTN_NO_MASK:
        return scores
    ones = torch.ones(scores.shape[-2:], dtype=torch.bool)
    if mistake is ATTN_MASK_HIDES_PAST:
        hide = torch.tril(ones, diagonal=-1)
    else:
        hide = torch.triu(
            ones, diagonal={ATTN_MASK_DIAGONAL: 0, ATTN_MASK_SHOWS_NEXT: 2}.get(mistake, 1)
        )
    return scores.masked_fill(hide, 0.0 if mistake is ATTN_MASK_FILL_ZERO else fill)


def _attention_pattern(x, sd, cfg, mistake=None, fill=float("-inf"), scale=None):
    q = torch.einsum("bpd,hde->bphe", x, sd["W_Q"]) + (0 if mistake is ATTN_NO_B_Q else sd["b_Q"])
    k = torch.einsum("bpd,hde->bphe", x, sd["W_K"]) + sd["b_K"]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k)
    scores = scores / {
        ATTN_SCALE_D_HEAD: cfg.d_head,
        ATTN_SCALE_D_MODEL: math.sqrt(cfg.d_model),
        ATTN_NO_SCALE: 1.0,
        ATTN_SCALE_AFTER_SOFTMAX: 1.0,
        ATTN_FIXED_SCALE: scale or RUN_CONFIG_SCALES[0],
    }.get(mistake, math.sqrt(cfg.d_head))
    if mistake is ATTN_MASK_AFTER_SOFTMAX:
        return _causal_mask(scores.softmax(-1), fill=0.0)
    scores = _causal_mask(scores, mistake, fill)
    if mistake is ATTN_PATTERN_NO_SOFTMAX:
        return scores
    if mistake is ATTN_SCALE_AFTER_SOFTMAX:
        return scores.softmax(-1) / math.sqrt(cfg.d_head)
    return scores.softmax(-2 if mistake is ATTN_SOFTMAX_WRONG_AXIS else -1)


def _attention(x, sd, cfg, mistake=None, fill=float("-inf"), scale=None):
    pattern = _attention_pattern(x, sd, cfg, mistake, fill, scale)
    v = torch.einsum("bpd,hde->bphe", x, sd["W_V"]) + (0 if mistake is ATTN_NO_B_V else sd["b_V"])
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    out = torch.einsum("bqhe,hem->bqm", z, sd["W_O"])
    return out if mistake is ATTN_NO_B_O else out + sd["b_O"]


def _mlp(x, sd, mistake=None):
    pre = x @ sd["W_in"] + (0 if mistake is MLP_NO_B_IN else sd["b_in"])
    post = F.gelu(pre) if mistake is MLP_EXACT_GELU else F.gelu(pre, approximate="tanh")
    return post @ sd["W_out"] + sd["b_out"]


def _sub(sd, prefix):
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _block(x, sd, cfg, mistake=None):
    eps = cfg.layer_norm_eps
    ln1 = lambda t: _layernorm(t, sd["ln1.w"], sd["ln1.b"], eps, mistake)  # noqa: E731
    ln2 = lambda t: _layernorm(t, sd["ln2.w"], sd["ln2.b"], eps, mistake)  # noqa: E731
    attn = lambda t: _attention(t, _sub(sd, "attn."), cfg, mistake)  # noqa: E731
    mlp = lambda t: _mlp(t, _sub(sd, "mlp."), mistake)  # noqa: E731
    if mistake is BLOCK_POST_LN:
        mid = ln1(x + attn(x))
        return ln2(mid + mlp(mid))
    mid = attn(ln1(x)) + (0 if mistake is BLOCK_NO_ATTN_RESIDUAL else x)
    return mlp(ln2(mid)) + (0 if mistake is BLOCK_NO_MLP_RESIDUAL else mid)


def _pos_embed(tokens, W_pos, mistake=None):
    batch, n = tokens.shape
    if mistake is POS_FROM_TOKENS:
        return W_pos[tokens % W_pos.shape[0]]
    offset = 1 if mistake is POS_OFFSET_BY_ONE else 0
    if offset + n > W_pos.shape[0]:
        return None  # this mistake cannot even produce an output here
    return W_pos[offset : offset + n].expand(batch, n, -1)


def _unembed(x, sd, mistake=None):
    return x @ sd["W_U"] + (0 if mistake is UNEMBED_NO_B_U else sd["b_U"])


def _transformer(tokens, sd, cfg, mistake=None):
    pos = _pos_embed(tokens, sd["pos_embed.W_pos"], mistake)
    if pos is None:
        return None
    x = sd["embed.W_E"][tokens] + pos
    for layer in range(cfg.n_layers):
        x = _block(x, _sub(sd, f"blocks.{layer}."), cfg, mistake)
    if mistake is not NO_FINAL_LN:
        x = _layernorm(x, sd["ln_final.w"], sd["ln_final.b"], cfg.layer_norm_eps, mistake)
    return _unembed(x, _sub(sd, "unembed."), mistake)


# -------------------------------------------------------------- the reference: Hugging Face's GPT-2


def _randomised_hf_gpt2(cfg: Config, seed: int):
    """A Hugging Face GPT-2 of cfg's shape with every parameter random and away from its initial
    value."""
    torch.manual_seed(seed)
    hf = new_gpt2(cfg, attn_implementation="eager")
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 1:
                p.copy_(
                    (1.0 if "ln" in name and name.endswith("weight") else 0.0)
                    + 0.5 * torch.randn_like(p)
                )
            elif "wte" in name or "wpe" in name:
                p.normal_(0.0, 1.0)
            else:
                # Conv1D weights are [in, out]: this keeps activations O(1) and attention patterns
                # sharp
                p.normal_(0.0, 1.5 / math.sqrt(p.shape[0]))
    return hf


def _hf_module_output(hf, module, x):
    """Run `module` of the Hugging Face model on our input `x`, inside a full forward pass (so it
    gets GPT-2's causal mask)."""
    captured = {}

    def swap_input(mod, args, kwargs):
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    def save_output(mod, args, output):
        captured["out"] = output[0] if isinstance(output, tuple) else output

    handles = [
        module.register_forward_pre_hook(swap_input, with_kwargs=True),
        module.register_forward_hook(save_output),
    ]
    try:
        hf.transformer(input_ids=torch.zeros(x.shape[:2], dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    return captured["out"]


# ------------------------------------------------ running the learner's layer, comparing, reporting


def _build(cls, cfg, name, prefix, sd, expects=""):
    """The learner's class built with cfg and loaded with the reference weights under `prefix`;
    `expects` says what this case's parameters must be, when they do not match."""
    layer = call_learner(cls, cfg, what=f"{name}: {cls.__name__}(cfg)")
    state = _sub(sd, prefix)
    expected = {k: tuple(v.shape) for k, v in state.items()}
    actual = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    if expected != actual:
        missing = {k: v for k, v in expected.items() if k not in actual}
        unexpected = {k: v for k, v in actual.items() if k not in expected}
        wrong = {
            k: f"{actual[k]} should be {v}"
            for k, v in expected.items()
            if k in actual and actual[k] != v
        }
        buffers = [key for key, _ in layer.named_buffers() if key in unexpected]
        fail(
            [
                f"{name}: {cls.__name__}'s parameters do not match GPT-2's (TransformerLens names "
                "and layouts).",
                f"  expected: {expected}",
                f"  missing: {missing or 'none'}; unexpected: {unexpected or 'none'}; "
                f"wrong shape: {wrong or 'none'}",
            ]
            + [
                f"  {', '.join(buffers)}: a buffer, saved in the state_dict like a parameter, "
                "which GPT-2's weights do not have (loading them with strict=True would fail): "
                "register_buffer(..., persistent=False), or a plain attribute"
            ]
            * bool(buffers)
            + [f"  {expects}"] * bool(expects)
        )
    layer.load_state_dict(state, strict=True)
    return layer.eval()


def _output(layer, inp, name, things_to_check, method="forward"):
    """The learner's layer, or one of its methods, run on `inp`: it must return a Tensor and leave
    `inp` unchanged."""
    what = f"{name}.{method}"
    fn = layer if method == "forward" else getattr(layer, method, None)
    if fn is None:
        fail(
            f"{name} has no method {method}: the exercise asks for one (keep its name and "
            "arguments)"
        )
    before = inp.clone()
    out = call_learner(fn, inp, what=what, things_to_check=things_to_check)
    if not isinstance(out, torch.Tensor):
        fail(f"{what} must return a Tensor, got {type(out).__name__}")
    if not torch.equal(before, inp):
        fail(
            f"{what} modified its input in place (e.g. x -= mean, "
            "x.add_() or scores.masked_fill_()). Build new tensors instead: "
            "the caller's tensor must not change."
        )
    return out


_CHECK_NAMES = {
    "LayerNorm": "check_layernorm",
    "Embed": "check_embed",
    "PosEmbed": "check_pos_embed",
    "Attention": "check_attention",
    "MLP": "check_mlp",
    "TransformerBlock": "check_block",
    "Unembed": "check_unembed",
    "DemoTransformer": "check_transformer",
}


def _require_layer_class(name: str, cls) -> None:
    """A clear TypeError unless `cls` is a class of nn.Module (the check builds it from a cfg)."""
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        return
    got = (
        "None"
        if cls is None
        else f"an instance of {type(cls).__name__} (give the class itself)"
        if isinstance(cls, torch.nn.Module)
        else f"a {type(cls).__name__}"
    )
    check = _CHECK_NAMES.get(name, "check")
    raise CheckUsageError(
        f"{check} takes your class itself, e.g. checks.{check}({name}); got {got}"
    )


def _each_case(name, cls, prefix, case, cfg, seeds=SEEDS, shapes=SHAPES, also: str = "", then=None):
    """Run `case` for every seed and shape, each with fresh random weights, then `then()` if given,
    then say how many cases passed."""
    _require_layer_class(name, cls)
    if cfg is not None:
        require_config(f"{_CHECK_NAMES.get(name, 'the check')}'s cfg", cfg, Config)
    cfg, n_runs = cfg or CHECK_CFG, 0
    # the cases seed their own weights and inputs; the learner's random state is left as it was
    with torch.random.fork_rng(devices=[]):
        for seed in seeds:
            for batch, n in shapes:
                n = min(n, cfg.n_ctx)
                hf = _randomised_hf_gpt2(cfg, seed)
                sd = convert_hf_state_dict(hf.state_dict(), cfg)
                sd["unembed.b_U"] = 0.5 * torch.randn(cfg.d_vocab)
                layer = _build(cls, cfg, name, prefix, sd)
                with torch.no_grad():
                    case(cfg, hf, sd, layer, batch, n, seed)
                if n_runs == 0:  # right values, now the gradients: once, on the first case
                    _check_gradients_reach_weights(name, layer, cfg, batch, n)
                n_runs += 1
        if then is not None:
            then()
    if also != "quiet":
        print_wrapped(
            f"{name} passed: {n_runs} cases ({len(seeds)} seeds x {len(shapes)} shapes{also}) "
            "match Hugging Face's GPT-2"
        )


def _check_gradients_reach_weights(name, layer, cfg, batch, n) -> None:
    """Every weight gets a gradient from backward(): a layer that computes from W.detach(), W.data
    or W.tolist() gives the right values and never trains."""
    takes_tokens = name in ("Embed", "PosEmbed", "DemoTransformer")
    if takes_tokens:
        inp = torch.randint(0, cfg.d_vocab, (batch, n))
    else:
        inp = torch.randn(batch, n, cfg.d_model)
    layer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        out = _output(layer, inp, name, None)
        if out.requires_grad:
            out.backward(torch.randn_like(out))
    # b_K adds q . b_K to every key's score of a query: the softmax ignores it, so its gradient is
    # 0 and an attention without it is right
    missing = [
        key
        for key, p in layer.named_parameters()
        if p.requires_grad and p.grad is None and not key.endswith("b_K")
    ]
    layer.zero_grad(set_to_none=True)
    if missing:
        fail(
            f"{name}: the output is right, but backward() gives no gradient to "
            f"{', '.join(missing)}: it was computed from a copy cut off from the weights "
            "(.detach(), .data, .tolist(), torch.no_grad()), so training would never change them. "
            "Compute from the parameters themselves."
        )


def _share(part: int, whole: int) -> str:
    """'3 of 1,280 (0.2%)', never a rounded '0.0%' for a few wrong entries."""
    percent = 100 * part / whole
    shown = f"{percent:.1f}%" if percent >= 0.1 or part == 0 else "under 0.1%"
    return f"{part:,} of {whole:,} ({shown})"


def _describe_mismatch(name, got, expected, dims: list[str]) -> list[str]:
    diff = (got - expected).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    bad = ~torch.isclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    first = tuple(int(i) for i in bad.nonzero()[0])
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    where = lambda idx: ", ".join(f"{d}={i}" for d, i in zip(dims, idx))  # noqa: E731
    lines = [
        f"{name}: output differs from GPT-2's (float32 tolerance atol={ATOL}, rtol={RTOL}).",
        f"  max |error| = {diff.max().item():.3g} at ({where(worst)}); "
        f"first mismatch at ({where(first)}); {_share(int(bad.sum()), bad.numel())} of entries "
        "differ",
    ]
    if torch.isnan(got).any():
        nan_at = tuple(int(i) for i in torch.isnan(got).nonzero()[0])
        lines.append(f"  your output has NaN, first at ({where(nan_at)})")
    axis = next(
        (i for i, d in enumerate(dims) if d in _POSITIONS), None
    )  # listed along the dimension that is named so
    if axis is not None:
        positions = bad.movedim(axis, 0).flatten(1).any(1).nonzero().flatten().tolist()
        lines.append(
            f"  {_POSITIONS[dims[axis]]} with "
            f"errors: {positions[:10]}{' ...' if len(positions) > 10 else ''}"
        )
    return lines


def _same(got, output) -> bool:
    return output.shape == got.shape and torch.allclose(
        got, output, rtol=RTOL, atol=ATOL, equal_nan=True
    )


def _recognise(got, mistakes, reproduce):
    return recognise(got, mistakes, reproduce, _same) if mistakes else None


def _compare(name, got, expected, dims: str, things_to_check, mistakes=(), reproduce=None):
    """Fail unless `got` matches `expected` (its dimensions named by `dims`), naming the first of
    `mistakes` that `reproduce(mistake)` turns into `got`."""
    names = dims.split()
    if got.dtype != expected.dtype:
        fail(
            f"{name}: the output is {str(got.dtype).removeprefix('torch.')}, expected "
            f"{str(expected.dtype).removeprefix('torch.')}, the weights' dtype: no .double() or "
            "torch.tensor(...) of Python numbers on the way"
        )
    if tuple(got.shape) != tuple(expected.shape):
        fail(
            f"{name}: wrong output shape: expected {tuple(expected.shape)} ({', '.join(names)}), "
            f"got {tuple(got.shape)}",
            _recognise(got, mistakes, reproduce),
            things_to_check,
        )
    if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        fail(
            _describe_mismatch(name, got, expected, names),
            _recognise(got, mistakes, reproduce),
            things_to_check,
        )


def _check_causal(name, layer, inp, things_to_check, cfg):
    """Changing the last position must not change any earlier output."""
    base = _output(layer, inp.clone(), name, things_to_check)
    changed = inp.clone()
    if changed.is_floating_point():
        changed[:, -1] = changed[:, -1] + 3.0 * torch.randn_like(changed[:, -1])
    else:
        changed[:, -1] = (changed[:, -1] + 1) % cfg.d_vocab
    after = _output(layer, changed, name, things_to_check)
    leaked = ~torch.isclose(base[:, :-1], after[:, :-1], rtol=RTOL, atol=ATOL, equal_nan=True)
    if leaked.any():
        positions = leaked.flatten(2).any(-1).any(0).nonzero().flatten().tolist()
        fail(
            f"{name}: not causal: changing the last position changed the outputs at earlier "
            f"positions {positions[:10]}.",
            ATTN_NO_MASK if positions else None,
            things_to_check,
        )


def _check_causal_mask(layer, scores):
    """apply_causal_mask must keep scores[..., q, k] for k <= q and set the rest to -inf (or a large
    negative number)."""
    name = "Attention.apply_causal_mask"
    things_to_check = (
        "return scores.masked_fill(torch.triu(torch.ones(q, k, dtype=torch.bool), diagonal=1), "
        "self.IGNORE)"
    )
    masked = _output(layer, scores, "Attention", things_to_check, method="apply_causal_mask")
    n = scores.shape[-1]
    if tuple(masked.shape) != tuple(scores.shape):
        fail(
            f"{name}: returned shape {tuple(masked.shape)}, expected the scores' "
            f"shape {tuple(scores.shape)} ({', '.join(PATTERN.split())})",
            None,
            things_to_check,
        )
    hidden = masked <= -1e4  # -inf, or a large negative number such as ARENA's -1e5
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    if torch.equal(hidden.all(0).all(0), future) and torch.equal(
        masked[..., ~future], scores[..., ~future]
    ):
        return
    header = (
        f"{name}: the mask is wrong on scores of shape {tuple(scores.shape)} "
        f"({', '.join(PATTERN.split())})."
    )
    if not hidden.any():  # recognised by which scores it hides
        mistake = ATTN_MASK_FILL_ZERO if (masked[..., future] == 0).all() else ATTN_NO_MASK
    elif hidden[..., range(n), range(n)].any():
        mistake = ATTN_MASK_DIAGONAL
    elif (hidden & torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)).any():
        mistake = ATTN_MASK_HIDES_PAST
    elif not hidden[..., range(n - 1), range(1, n)].any():
        mistake = ATTN_MASK_SHOWS_NEXT
    else:
        fail(
            [
                header,
                "  The scores it keeps (key <= query) have changed: only the future positions "
                "should be replaced.",
            ],
            None,
            things_to_check,
        )
    fail(header, mistake)


def _float_input(batch, n, cfg, case):
    x = torch.randn(batch, n, cfg.d_model)
    if case == 1:
        return 3.0 * x + 2.0  # a nonzero mean per position
    if case == 2:
        return 1e-3 * x  # tiny variance: where eps sits matters
    return x


# --------------------------------------------------------------------------- the checks


@learner_facing
def check_layernorm(cls, cfg: Config | None = None) -> None:
    name, generic = (
        "LayerNorm",
        "mean and biased variance over the last dim; eps inside the sqrt; then * w + b",
    )

    def case(cfg, hf, sd, layer, batch, n, seed):
        for kind in (2, 0, 1):  # tiny variance first: there a missing or misplaced eps shows
            x = _float_input(batch, n, cfg, kind)
            _compare(
                name,
                _output(layer, x, name, generic),
                hf.transformer.ln_f(x),
                RESIDUAL,
                generic,
                mistakes_of(name),
                lambda m: _layernorm(x, sd["ln_final.w"], sd["ln_final.b"], cfg.layer_norm_eps, m),
            )

    if cfg is None:  # first a config with another eps: the layer must read it, not GPT-2's 1e-5
        other = dataclasses.replace(CHECK_CFG, layer_norm_eps=1e-3)
        _each_case(name, cls, "ln_final.", case, other, SEEDS[:1], SHAPES[:1], also="quiet")
    _each_case(name, cls, "ln_final.", case, cfg, also=", and one with eps 1e-3" * (cfg is None))


@learner_facing
def check_embed(cls, cfg: Config | None = None) -> None:
    name, generic = "Embed", "return W_E[tokens]: one row of W_E [d_vocab, d_model] per token"

    def case(cfg, hf, sd, layer, batch, n, seed):
        tokens = torch.randint(0, cfg.d_vocab, (batch, n))
        _compare(
            name,
            _output(layer, tokens, name, generic),
            hf.transformer.wte(tokens),
            RESIDUAL,
            generic,
            mistakes_of(name),
        )

    _each_case(name, cls, "embed.", case, cfg)


@learner_facing
def check_pos_embed(cls, cfg: Config | None = None) -> None:
    name = "PosEmbed"
    generic = (
        "return W_pos[:posn] repeated over the batch: rows indexed by position 0..posn-1, "
        "never by token id (an IndexError here usually means positions were taken from token ids, "
        "or shifted by one)"
    )

    def case(cfg, hf, sd, layer, batch, n, seed):
        for high in (
            min(n, cfg.d_vocab),
            cfg.d_vocab,
        ):  # first ids small enough that indexing W_pos by them would not crash
            tokens = torch.randint(0, high, (batch, n))
            expected = hf.transformer.wpe(torch.arange(n)).expand(batch, n, cfg.d_model)
            got = _output(layer, tokens, name, generic)
            weights = getattr(layer, "W_pos", None)
            if isinstance(weights, torch.Tensor) and isinstance(got, torch.Tensor):
                shares_memory.append(
                    got.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr()
                )
            returned_ndims.add(got.ndim)
            if tuple(got.shape) in (tuple(expected.shape[1:]), (1, *expected.shape[1:])):
                got = got.expand_as(
                    expected
                )  # [posn, d_model] or [1, ...] is right too: adding it to the tokens' broadcasts
            _compare(
                name,
                got,
                expected,
                RESIDUAL,
                generic,
                mistakes_of(name),
                lambda m: _pos_embed(tokens, sd["pos_embed.W_pos"], m),
            )

    shares_memory: list[bool] = []
    returned_ndims: set[int] = set()
    _each_case(name, cls, "pos_embed.", case, cfg)
    if 2 in returned_ndims:  # right values: adding them to the token embeddings broadcasts
        print_wrapped(
            "  note: your PosEmbed returns [posn, d_model], without the batch dimension: adding it "
            "to the token embeddings broadcasts, but the signature promises [batch, posn, d_model]"
        )
    if any(shares_memory):  # right values, but an in-place edit of them would edit W_pos
        print_wrapped(
            "  note: your PosEmbed returns a view of W_pos (the same memory): .clone() it, or "
            "a hook's in-place edit of the output under torch.no_grad() edits W_pos itself"
        )


@learner_facing
def check_attention(cls, cfg: Config | None = None) -> None:
    name = "Attention"
    generic = (
        "q/k/v = x W + b per head; scores q·k / sqrt(d_head); mask future keys with -inf "
        "(torch.triu(..., diagonal=1)); softmax over keys; weighted sum of v; "
        "project with W_O and add b_O"
    )
    pattern_mistakes = mistakes_in("Attention.apply_causal_mask", "Attention.attention_pattern")

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        attn_sd = _sub(sd, "blocks.0.attn.")
        # masks filled with -inf or with a large negative number (as ARENA does) differ when a row
        # is fully masked; a scale written in as a number may be any run config's
        both_fills = lambda fn: (  # noqa: E731
            lambda m: [
                fn(x, attn_sd, cfg, m, fill, scale)
                for fill in (float("-inf"), -1e5)
                for scale in (RUN_CONFIG_SCALES if m is ATTN_FIXED_SCALE else (None,))
            ]
        )
        # every method the exercise asks for, in the order it is written: the mask, the pattern,
        # then forward
        if n > 1:
            _check_causal_mask(
                layer,
                torch.randn(
                    batch, cfg.n_heads, n, n, generator=torch.Generator().manual_seed(seed)
                ),
            )
        pattern = _output(layer, x, name, generic, method="attention_pattern")
        expected_pattern = _attention_pattern(x, attn_sd, cfg)
        if (
            tuple(pattern.shape) == tuple(expected_pattern.shape)
            and pattern.dtype == expected_pattern.dtype
            and not torch.allclose(pattern, expected_pattern, rtol=RTOL, atol=ATOL)
            and not torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-3)
            and _recognise(pattern, pattern_mistakes, both_fills(_attention_pattern))
            in (None, ATTN_PATTERN_NO_SOFTMAX)
        ):
            _fail_rows_not_summing_to_one(f"{name}.attention_pattern", pattern, generic)
        _compare(
            f"{name}.attention_pattern",
            pattern,
            expected_pattern,
            PATTERN,
            generic,
            pattern_mistakes,
            both_fills(_attention_pattern),
        )
        expected = _hf_module_output(hf, hf.transformer.h[0].attn, x)
        _compare(
            name,
            _output(layer, x, name, generic),
            expected,
            RESIDUAL,
            generic,
            mistakes_of(name),
            both_fills(_attention),
        )
        if n > 1:
            _check_causal(name, layer, x, generic, cfg)

    _each_case(name, cls, "blocks.0.attn.", case, cfg)


def _fail_rows_not_summing_to_one(name, pattern, things_to_check) -> NoReturn:
    """A pattern whose rows do not sum to 1: scores that never went through the softmax when some
    are negative or infinite, else probabilities scaled after it."""
    sums = pattern.sum(-1)
    if torch.isinf(pattern).any() or (pattern < 0).any():
        fail(
            f"{name}: its rows do not sum to 1 over the key positions"
            + (" and it holds -inf" if torch.isinf(pattern).any() else "")
            + ".",
            ATTN_PATTERN_NO_SOFTMAX,
        )
    low, high = f"{sums.min().item():.3g}", f"{sums.max().item():.3g}"
    fail(
        f"{name}: no entry is negative, but its rows sum to "
        f"{low if low == high else f'{low} to {high}'} over the key positions, not 1: is "
        "something done to the probabilities after the softmax?",
        None,
        things_to_check,
    )


@learner_facing
def check_mlp(cls, cfg: Config | None = None) -> None:
    name, generic = (
        "MLP",
        "x W_in + b_in, then gelu_new (F.gelu(x, approximate='tanh')), then W_out + b_out",
    )

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        _compare(
            name,
            _output(layer, x, name, generic),
            hf.transformer.h[0].mlp(x),
            RESIDUAL,
            generic,
            mistakes_of(name),
            lambda m: _mlp(x, _sub(sd, "blocks.0.mlp."), m),
        )

    _each_case(name, cls, "blocks.0.mlp.", case, cfg)


@learner_facing
def check_block(cls, cfg: Config | None = None) -> None:
    name = "TransformerBlock"
    generic = (
        "pre-LN with two residual connections: resid_mid = resid_pre + attn(ln1(resid_pre)); "
        "resid_post = resid_mid + mlp(ln2(resid_mid)). Do LayerNorm, Attention and MLP pass their "
        "own checks?"
    )

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        expected = _hf_module_output(hf, hf.transformer.h[0], x)
        _compare(
            name,
            _output(layer, x, name, generic),
            expected,
            RESIDUAL,
            generic,
            mistakes_of(name),
            lambda m: _block(x, _sub(sd, "blocks.0."), cfg, m),
        )
        if n > 1:
            _check_causal(name, layer, x, generic, cfg)

    attn_only = (lambda: _check_attn_only_block(cls)) if cfg is None else None
    _each_case(
        name,
        cls,
        "blocks.0.",
        case,
        cfg,
        also=", and 2 with attn_only" * (cfg is None),
        then=attn_only,
    )


def _check_attn_only_block(cls) -> None:
    """With cfg.attn_only (notebook 05's induction model) the block is attention alone: no ln2, no
    MLP, resid_pre + attn(ln1(resid_pre))."""
    name = "TransformerBlock(cfg with attn_only=True)"
    generic = (
        "with cfg.attn_only the block has no ln2 and no mlp, and returns resid_mid = resid_pre + "
        "attn(ln1(resid_pre))"
    )
    cfg = dataclasses.replace(CHECK_CFG, attn_only=True)
    sd = convert_hf_state_dict(_randomised_hf_gpt2(CHECK_CFG, SEEDS[0]).state_dict(), CHECK_CFG)
    sd = {k: v for k, v in sd.items() if not k.startswith(("blocks.0.ln2.", "blocks.0.mlp."))}
    layer = _build(
        cls,
        cfg,
        name,
        "blocks.0.",
        sd,
        "with cfg.attn_only a block has no ln2 and no mlp: build them if not cfg.attn_only",
    )
    block = _sub(sd, "blocks.0.")
    for batch, n in SHAPES[:2]:
        x = torch.randn(batch, n, cfg.d_model)
        with torch.no_grad():
            got = _output(layer, x, name, generic)
            ln1 = _layernorm(x, block["ln1.w"], block["ln1.b"], cfg.layer_norm_eps)
            expected = x + _attention(ln1, _sub(block, "attn."), cfg)
        _compare(name, got, expected, RESIDUAL, generic)


@learner_facing
def check_unembed(cls, cfg: Config | None = None) -> None:
    name, generic = "Unembed", "x W_U + b_U, with W_U [d_model, d_vocab]"

    def case(cfg, hf, sd, layer, batch, n, seed):
        x = torch.randn(batch, n, cfg.d_model)
        expected = hf.lm_head(x) + sd["unembed.b_U"]
        _compare(
            name,
            _output(layer, x, name, generic),
            expected,
            LOGITS,
            generic,
            mistakes_of(name),
            lambda m: _unembed(x, _sub(sd, "unembed."), m),
        )

    _each_case(name, cls, "unembed.", case, cfg)


@learner_facing
def check_transformer(cls, cfg: Config | None = None) -> None:
    name = "DemoTransformer"
    generic = (
        "embed(tokens) + pos_embed(tokens); every block in order; ln_final; unembed. "
        "Do all the layers pass their own checks?"
    )

    def case(cfg, hf, sd, layer, batch, n, seed):
        # small ids first: a PosEmbed indexed by token ids then gives wrong values, not a crash
        for high in (min(n, cfg.d_vocab), cfg.d_vocab):
            tokens = torch.randint(0, high, (batch, n))
            got = _output(layer, tokens, name, generic)
            hf_out = hf(tokens, labels=tokens)
            expected = hf_out.logits + sd["unembed.b_U"]
            _compare(
                name,
                got,
                expected,
                LOGITS,
                generic,
                mistakes_of(name),
                lambda m: _transformer(tokens, sd, cfg, m),
            )
        if n > 1:
            _check_causal(name, layer, tokens, generic, cfg)
            # the loss too: with b_U = 0 the model is exactly GPT-2, so Hugging Face's own loss must
            # match
            if hasattr(layer, "unembed") and hasattr(layer.unembed, "b_U"):
                layer.unembed.b_U.zero_()
            loss = next_token_loss(_output(layer, tokens, name, generic), tokens)
            if not math.isclose(loss.item(), hf_out.loss.item(), rel_tol=RTOL, abs_tol=ATOL):
                fail(
                    [
                        f"{name}: loss {loss.item():.6f} differs from Hugging "
                        f"Face's {hf_out.loss.item():.6f} although the logits match",
                        "  (unembed.b_U was set to zero for this comparison: "
                        "do the logits use b_U other than by adding it once?)",
                    ]
                )

    _each_case(name, cls, "", case, cfg)
