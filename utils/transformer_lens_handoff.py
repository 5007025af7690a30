"""The hand-off of notebook 05: your model to TransformerLens and back, 3.x and 4.x.

TransformerLens is optional (not a dependency of this project: it brings about 30 packages), so
it is imported only when these functions are called, with a clear message naming the version to
install. `to_hooked_transformer(model)` gives a TransformerLens 3.x HookedTransformer with your
model's weights (the same logits); `from_hooked_transformer(hooked)` the way back, refusing
TransformerLens settings that our architecture cannot hold, each named. TransformerLens 4.x has no
HookedTransformer: `to_transformer_bridge(model)` gives its TransformerBridge, through the Hugging
Face export of utils/hf_export.py, and `from_transformer_bridge(bridge)` the way back.
"""

from __future__ import annotations

import math
import tempfile
import warnings

import torch
import torch.nn as nn

import utils.model

# 3.9.0: the last release with HookedTransformer (4.x removed it)
TRANSFORMER_LENS_INSTALL = 'pip install "transformer-lens==3.9.0"'


def _transformer_lens():
    """The transformer_lens module, or an ImportError saying how to install it (it is optional,
    not a project dependency)."""
    try:
        import transformer_lens
    except ImportError as err:  # not installed, or a dependency of it is broken: `err` says which
        raise ImportError(
            f"TransformerLens is optional and could not be imported ({err}); "
            f"install it: {TRANSFORMER_LENS_INSTALL}"
        ) from err
    try:  # 4.x removed it, and raises an ImportError for the name
        has_hooked = hasattr(transformer_lens, "HookedTransformer")
    except ImportError:
        has_hooked = False
    if not has_hooked:
        raise ImportError(
            "this transformer_lens "
            f"({getattr(transformer_lens, '__version__', 'unknown version')}) has no "
            f"HookedTransformer (4.x removed it): {TRANSFORMER_LENS_INSTALL}"
        )
    return transformer_lens


def _transformer_lens_buffers(keys) -> list[str]:
    """The state-dict keys that are TransformerLens's constant buffers (the causal mask and the
    -inf fill), not weights."""
    return [key for key in keys if key.rsplit(".", 1)[-1] in ("mask", "IGNORE")]


def to_hooked_transformer(model: nn.Module, tokenizer=None):
    """A TransformerLens HookedTransformer with `model`'s weights (the same logits), on the model's
    device, in eval mode.

    tokenizer: optional Hugging Face tokenizer (e.g. load_tokenizer()), for TransformerLens's text
    methods (to_tokens, to_str_tokens, generate from a string). Prompts are not given a BOS token
    (default_prepend_bos=False): our models were not trained with one. Without a tokenizer, call
    generate(tokens, ..., use_past_kv_cache=False): TransformerLens 3.9.0's KV cache then gives the
    new tokens the wrong positions (other tokens, or a shape error near n_ctx)."""
    inner = getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module inside it
    if not isinstance(inner, nn.Module) or not isinstance(
        getattr(inner, "cfg", None), utils.model.Config
    ):
        raise TypeError(
            "model must be a DemoTransformer "
            "(or FusedTransformer: a module whose .cfg is a utils.model.Config), "
            f"got {type(model).__name__}"
        )
    cfg, weight = inner.cfg, inner.embed.W_E
    if tokenizer is not None:
        from transformers import PreTrainedTokenizerBase

        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(
                "tokenizer must be None or a Hugging Face tokenizer such as load_tokenizer()'s, "
                f"got {type(tokenizer).__name__}"
            )
        if len(tokenizer) > cfg.d_vocab:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the model only {cfg.d_vocab} "
                "(d_vocab): its ids would not fit"
            )
    tl = _transformer_lens()
    hooked_cfg = tl.HookedTransformerConfig(
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        n_layers=cfg.n_layers,
        n_ctx=cfg.n_ctx,
        d_vocab=cfg.d_vocab,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        eps=cfg.layer_norm_eps,
        initializer_range=cfg.init_range,
        attn_only=cfg.attn_only,
        default_prepend_bos=False,  # our models were trained on text without a BOS token in front
        device=str(weight.device),
        dtype=weight.dtype,
        init_weights=False,
    )  # every weight is overwritten below
    # 3.9.0 says HookedTransformer goes in 4.0: hence the pinned version,
    # nothing a learner can act on
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        hooked = tl.HookedTransformer(hooked_cfg)
    result = hooked.load_state_dict(inner.state_dict(), strict=False)
    missing = sorted(set(result.missing_keys) - set(_transformer_lens_buffers(result.missing_keys)))
    if (
        missing or result.unexpected_keys
    ):  # e.g. a class with weights of its own: they would be silently left behind
        problems = [
            f"{label} {', '.join(sorted(keys)[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("lacks", missing), ("has extra", result.unexpected_keys))
            if keys
        ]
        raise ValueError(
            f"model ({type(inner).__name__}) does not have DemoTransformer's weights, "
            f"so TransformerLens cannot hold them: it {' and '.join(problems)}"
        )
    if tokenizer is not None:
        # TransformerLens reloads the tokenizer by its name_or_path (to add a BOS option), which
        # fails for one built in memory, such as load_tokenizer()'s offline one: save it and give
        # it a folder that exists while set_tokenizer runs
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as folder:
            tokenizer.save_pretrained(folder)
            hooked.set_tokenizer(AutoTokenizer.from_pretrained(folder))
    return hooked.eval()


# TransformerLens settings our architecture cannot hold: (setting, what it must be, why a different
# value is refused). Settings that only add hook points (use_attn_result, use_split_qkv_input,
# use_hook_mlp_in, use_attn_in, use_hook_tokens) change no weight.
_GELU_TANH = (
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
)  # the same tanh-approximated GELU, three names
_TRANSFORMER_LENS_REQUIRED = [
    (
        "normalization_type",
        ("LN",),
        "ours is LayerNorm with weights and biases; 'LNPre' means TransformerLens folded them "
        "into the next layer (fold_ln=True, the default of HookedTransformer.from_pretrained, "
        "which also centres the weights): the same model in another parametrisation; load it "
        "with HookedTransformer.from_pretrained_no_processing(...) instead",
    ),
    (
        "positional_embedding_type",
        ("standard",),
        "ours is a learned table added to the residual stream",
    ),
    ("attention_dir", ("causal",), "ours is causal"),
    ("parallel_attn_mlp", (False,), "our blocks run the MLP after attention"),
    ("gated_mlp", (False,), "our MLP has no gate"),
    ("n_key_value_heads", (None,), "grouped-query attention: ours has one key and value per head"),
    ("num_experts", (None,), "mixture of experts"),
    ("final_rms", (False,), "our final norm is a LayerNorm"),
    ("uses_rms_norm", (False,), "our norms are LayerNorms"),
    ("post_embedding_ln", (False,), "ours has no LayerNorm after the embedding"),
    ("use_normalization_before_and_after", (False,), "ours normalises sublayer inputs only"),
    ("layer_norm_folding", (False,), "the LayerNorm weights were folded into the next layer"),
    ("use_local_attn", (False,), "ours attends to every earlier position"),
    ("use_attn_scale", (True,), "ours divides attention scores by sqrt(d_head)"),
    (
        "scale_attn_by_inverse_layer_idx",
        (False,),
        "ours divides attention scores by sqrt(d_head) alone",
    ),
    ("use_qk_norm", (False,), "ours has no query/key norm"),
    ("clip_qkv", (None,), "ours does not clip queries, keys and values"),
    ("use_logn_attn", (False,), "ours does not rescale queries by position"),
    ("use_attention_sinks", (False,), "ours has no attention sinks"),
    ("attn_scores_soft_cap", (-1.0,), "ours does not soft-cap attention scores"),
    ("output_logits_soft_cap", (-1.0,), "ours does not soft-cap logits"),
    ("load_in_4bit", (False,), "4-bit weights"),
]


def from_hooked_transformer(hooked, model_class=None) -> nn.Module:
    """Our model (model_class, default utils.model.DemoTransformer) with a TransformerLens
    HookedTransformer's weights.

    Only GPT-2-style TransformerLens models convert; any other setting is refused with a ValueError
    naming it. A model loaded with center_unembed=True converts but its logits differ from the
    original's by a constant per position (the same probabilities)."""
    tl = _transformer_lens()
    if not isinstance(hooked, tl.HookedTransformer):
        raise TypeError(
            f"hooked must be a transformer_lens.HookedTransformer, got {type(hooked).__name__}"
        )
    model_class = utils.model.DemoTransformer if model_class is None else model_class
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise TypeError(
            "model_class must be a model class taking a utils.model.Config, "
            "such as utils.model.DemoTransformer or "
            f"utils.fused.FusedTransformer, got {model_class!r}"
        )
    hcfg = hooked.cfg
    if not hcfg.attn_only and hcfg.act_fn not in _GELU_TANH:
        raise ValueError(
            f"cannot convert a TransformerLens model with act_fn={hcfg.act_fn!r}; "
            f"supported: {' or '.join(map(repr, _GELU_TANH))} "
            "(one function, three names: our MLP uses GPT-2's tanh-approximated GELU)"
        )
    for name, allowed, why in _TRANSFORMER_LENS_REQUIRED:
        value = getattr(
            hcfg, name, allowed[0]
        )  # a setting this version of TransformerLens lacks cannot be in use
        if value not in allowed:
            raise ValueError(
                f"cannot convert a TransformerLens model with {name}={value!r}; supported: "
                f"{' or '.join(map(repr, allowed))} ({why})"
            )
    if hcfg.d_vocab_out != hcfg.d_vocab:
        raise ValueError(
            f"cannot convert a TransformerLens model with d_vocab_out={hcfg.d_vocab_out}; "
            "supported: d_vocab_out == d_vocab "
            f"= {hcfg.d_vocab} (our unembedding predicts the input vocabulary)"
        )
    if not math.isclose(hcfg.attn_scale, math.sqrt(hcfg.d_head), rel_tol=1e-6):
        raise ValueError(
            f"cannot convert a TransformerLens model with attn_scale={hcfg.attn_scale}; "
            "supported: sqrt(d_head) = "
            f"{math.sqrt(hcfg.d_head):g} (ours divides attention scores by it)"
        )
    cfg = utils.model.Config(
        d_model=hcfg.d_model,
        layer_norm_eps=hcfg.eps,
        d_vocab=hcfg.d_vocab,
        init_range=hcfg.initializer_range,
        n_ctx=hcfg.n_ctx,
        d_head=hcfg.d_head,
        d_mlp=hcfg.d_mlp,
        n_heads=hcfg.n_heads,
        n_layers=hcfg.n_layers,
        attn_only=hcfg.attn_only,
    )
    weight = hooked.embed.W_E
    model = model_class(cfg).to(device=weight.device, dtype=weight.dtype)
    state = hooked.state_dict()
    for key in _transformer_lens_buffers(state):
        del state[key]
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------- TransformerLens 4.x

# 4.x: TransformerBridge, which wraps a Hugging Face model (no HookedTransformer)
TRANSFORMER_LENS_4_INSTALL = 'pip install "transformer-lens>=4"'


def _transformer_lens_4():
    """The transformer_lens module with TransformerBridge (4.x), or an ImportError saying which
    version to install."""
    try:
        import transformer_lens
    except ImportError as err:
        raise ImportError(
            f"TransformerLens is optional and could not be imported ({err}); "
            f"install it: {TRANSFORMER_LENS_4_INSTALL}"
        ) from err
    if not hasattr(transformer_lens, "TransformerBridge"):
        version = getattr(transformer_lens, "__version__", "3.x")
        raise ImportError(
            f"this transformer_lens ({version}) has no TransformerBridge (4.0 brought it): "
            f"{TRANSFORMER_LENS_4_INSTALL}, or keep it and use to_hooked_transformer"
        )
    return transformer_lens


def to_transformer_bridge(model: nn.Module, tokenizer=None, drop_unembed_bias: bool = False):
    """A TransformerLens 4.x TransformerBridge of `model`: its Hugging Face export
    (utils/hf_export.py, in a temporary folder) booted offline with
    TransformerBridge.boot_transformers(folder). The same logits; its run_with_cache gives our hook
    names too (blocks.0.attn.hook_z, hook_embed...). bridge.enable_compatibility_mode() then folds
    the LayerNorms and centres weights, which changes the weights and each position's logits by a
    constant; enable_compatibility_mode(no_processing=True) keeps them as they are.
    drop_unembed_bias: as for to_hf_gpt2 (GPT-2's format has no b_U)."""
    from utils.hf_export import _no_progress_bars, save_hf_folder

    tl = _transformer_lens_4()
    inner = getattr(model, "_orig_mod", model)
    weight = next(inner.parameters(), None) if isinstance(inner, nn.Module) else None
    with tempfile.TemporaryDirectory() as folder:
        path = save_hf_folder(inner, f"{folder}/model", tokenizer, drop_unembed_bias)
        with _no_progress_bars(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on processing weights: the docstring's
            bridge = tl.TransformerBridge.boot_transformers(
                str(path), device=weight.device, dtype=weight.dtype, tokenizer=tokenizer
            )
    return bridge


def from_transformer_bridge(bridge, model_class=None) -> nn.Module:
    """Our model (model_class, DemoTransformer unless given) with a TransformerBridge's weights, as
    they are now (after enable_compatibility_mode's processing too: a folded final LayerNorm's
    bias becomes b_U); checked against the bridge's own logits, and refused if they differ."""
    from utils.hf_export import from_hf_gpt2

    tl = _transformer_lens_4()
    if not isinstance(bridge, tl.TransformerBridge):
        raise TypeError(
            f"bridge must be a transformer_lens.TransformerBridge, got {type(bridge).__name__}"
        )
    hf = getattr(bridge, "original_model", None)
    if type(hf).__name__ != "GPT2LMHeadModel":
        raise ValueError(
            f"the bridge wraps a {type(hf).__name__}; only GPT-2 (GPT2LMHeadModel) converts"
        )
    from transformers import GPT2LMHeadModel

    # the bridge wraps each module: its state dict names say _original_component in between
    state = {k.replace("._original_component", ""): v for k, v in hf.state_dict().items()}
    b_U = state.pop("lm_head.bias", None)
    plain = GPT2LMHeadModel(hf.config).to(device=hf.device, dtype=hf.dtype)
    plain.load_state_dict(state, strict=False)
    model = from_hf_gpt2(plain, model_class)
    if b_U is not None:
        with torch.no_grad():
            model.unembed.b_U.copy_(b_U)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, min(8, model.cfg.n_ctx)), device=hf.device)
    with torch.no_grad():
        difference = (model(tokens) - bridge(tokens)).abs().max().item()
    if difference > 1e-4:
        raise ValueError(
            f"this bridge's weights do not convert to our model (logits differ by "
            f"{difference:.3g}): convert before enable_compatibility_mode, or use it with "
            "no_processing=True"
        )
    return model
