"""GENERATED from notebooks/02_clean_implementation.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/02_clean_implementation.ipynb, code cell 2

import math
from dataclasses import dataclass

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from utils.validation import (
    check_config,
    check_gpt2_compatible,
    check_hf_state_dict,
    require_config,
    require_hf_config,
    require_logits_and_tokens,
    require_model,
    require_token_ids,
)


class Float:
    """Shape annotation, as in jaxtyping: `Float[Tensor, "batch posn d_model"]` names the
    dimensions. Documentation only: nothing is checked at run time."""

    def __class_getitem__(cls, params):
        return params[0]


class Int:
    """Shape annotation for integer tensors (token ids): `Int[Tensor, "batch posn"]`.
    Documentation only, like Float."""

    def __class_getitem__(cls, params):
        return params[0]


# --- notebooks/02_clean_implementation.ipynb, code cell 4
@dataclass(frozen=True)  # a built model's shapes are fixed: change a copy, replace(cfg, ...)
class Config:
    d_model: int = 768
    layer_norm_eps: float = 1e-5
    d_vocab: int = 50257
    init_range: float = 0.02
    n_ctx: int = 1024
    d_head: int = 64
    d_mlp: int = 3072
    n_heads: int = 12
    n_layers: int = 12
    attn_only: bool = False  # blocks of attention alone, no MLP (notebook 05's induction model)

    def __post_init__(self):
        check_config(self)  # sizes are positive ints, eps and init_range positive numbers


# --- notebooks/02_clean_implementation.ipynb, code cell 6
class LayerNorm(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(
        self, residual: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        mean = residual.mean(dim=-1, keepdim=True)
        variance = residual.var(dim=-1, keepdim=True, unbiased=False)
        normalized = (residual - mean) / (variance + self.cfg.layer_norm_eps).sqrt()
        return normalized * self.w + self.b


# --- notebooks/02_clean_implementation.ipynb, code cell 8
class Embed(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        nn.init.normal_(self.W_E, std=cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        nn.init.normal_(self.W_pos, std=cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_model"]:
        batch, seq_len = tokens.shape
        rows = einops.repeat(
            self.W_pos[:seq_len], "posn d_model -> batch posn d_model", batch=batch
        )
        return rows.clone()  # a copy: repeat returns a view of W_pos (see above)


# --- notebooks/02_clean_implementation.ipynb, code cell 10
class Attention(nn.Module):
    IGNORE: Float[Tensor, ""]

    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_model, cfg.d_head))
        self.W_K = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_model, cfg.d_head))
        self.W_V = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_model, cfg.d_head))
        self.W_O = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_head, cfg.d_model))
        for weight in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(weight, std=cfg.init_range)
        self.b_Q = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_K = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_V = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_O = nn.Parameter(torch.zeros(cfg.d_model))
        self.register_buffer("IGNORE", torch.tensor(float("-inf")), persistent=False)

    def apply_causal_mask(
        self, scores: Float[Tensor, "batch n_heads query_posn key_posn"]
    ) -> Float[Tensor, "batch n_heads query_posn key_posn"]:
        """Hide the future: key positions after the query position get -inf, so softmax gives them
        zero weight."""
        query_len, key_len = scores.shape[-2:]
        future = torch.triu(
            torch.ones(query_len, key_len, dtype=torch.bool, device=scores.device), diagonal=1
        )
        return scores.masked_fill(future, self.IGNORE)

    def attention_pattern(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch n_heads query_posn key_posn"]:
        q = (
            einops.einsum(
                x,
                self.W_Q,
                "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head",
            )
            + self.b_Q
        )
        k = (
            einops.einsum(
                x,
                self.W_K,
                "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head",
            )
            + self.b_K
        )
        scores = einops.einsum(
            q,
            k,
            "batch query_posn n_heads d_head, batch key_posn n_heads d_head "
            "-> batch n_heads query_posn key_posn",
        )
        scores = self.apply_causal_mask(scores / math.sqrt(self.cfg.d_head))
        return scores.softmax(dim=-1)

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pattern = self.attention_pattern(x)
        v = (
            einops.einsum(
                x,
                self.W_V,
                "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head",
            )
            + self.b_V
        )
        z = einops.einsum(
            pattern,
            v,
            "batch n_heads query_posn key_posn, batch key_posn n_heads d_head "
            "-> batch query_posn n_heads d_head",
        )
        return (
            einops.einsum(
                z,
                self.W_O,
                "batch posn n_heads d_head, n_heads d_head d_model -> batch posn d_model",
            )
            + self.b_O
        )


# --- notebooks/02_clean_implementation.ipynb, code cell 13
def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's GELU: the tanh approximation."""
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        nn.init.normal_(self.W_in, std=cfg.init_range)
        nn.init.normal_(self.W_out, std=cfg.init_range)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pre = (
            einops.einsum(x, self.W_in, "batch posn d_model, d_model d_mlp -> batch posn d_mlp")
            + self.b_in
        )
        post = gelu_new(pre)
        return (
            einops.einsum(post, self.W_out, "batch posn d_mlp, d_mlp d_model -> batch posn d_model")
            + self.b_out
        )


# --- notebooks/02_clean_implementation.ipynb, code cell 15
class TransformerBlock(nn.Module):
    LayerNorm, Attention, MLP = LayerNorm, Attention, MLP  # notebook 03's twin swaps in faster ones

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.ln1 = self.LayerNorm(cfg)
        self.attn = self.Attention(cfg)
        if not cfg.attn_only:  # notebook 05 trains a model of attention alone
            self.ln2 = self.LayerNorm(cfg)
            self.mlp = self.MLP(cfg)

    def forward(
        self, resid_pre: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        if self.cfg.attn_only:
            return resid_mid
        resid_post = resid_mid + self.mlp(self.ln2(resid_mid))
        return resid_post


# --- notebooks/02_clean_implementation.ipynb, code cell 17
class Unembed(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # an instance: not the class, a dict or None
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        nn.init.normal_(self.W_U, std=cfg.init_range)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))

    def forward(
        self, normalized_resid_final: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_vocab"]:
        return (
            einops.einsum(
                normalized_resid_final,
                self.W_U,
                "batch posn d_model, d_model d_vocab -> batch posn d_vocab",
            )
            + self.b_U
        )


# --- notebooks/02_clean_implementation.ipynb, code cell 19
class DemoTransformer(nn.Module):
    # the classes of its layers, which notebook 03's faster twin swaps for fused ones
    Embed, PosEmbed, TransformerBlock = Embed, PosEmbed, TransformerBlock
    LayerNorm, Unembed = LayerNorm, Unembed

    def __init__(self, cfg: Config):
        super().__init__()
        require_config("cfg", cfg, Config)  # not None, a dict or GPT-2's config: one clear error
        self.cfg = cfg
        self.embed = self.Embed(cfg)
        self.pos_embed = self.PosEmbed(cfg)
        self.blocks = nn.ModuleList([self.TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = self.LayerNorm(cfg)
        self.unembed = self.Unembed(cfg)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_vocab"]:
        # bad ids, shapes, dtypes, tokens where the weights are not, a replaced cfg: one clear error
        require_token_ids(tokens, self.cfg, model=self)
        residual = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(self.ln_final(residual))


def next_token_loss(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> Float[Tensor, ""]:
    """Mean cross-entropy of predicting tokens[:, 1:] from logits[:, :-1].
    The last position has no next token: its target is -100, which cross_entropy ignores. That is
    the same mean as slicing logits[:, :-1], without copying the (large) sliced logits."""
    require_logits_and_tokens(logits, tokens)  # swapped, mismatched or one position: a clear line
    # the model also takes int32 ids; cross_entropy wants int64
    targets = F.pad(tokens[:, 1:].long(), (0, 1), value=-100)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


# --- notebooks/02_clean_implementation.ipynb, code cell 22
def convert_hf_state_dict(hf_state_dict: dict[str, Tensor], cfg: Config) -> dict[str, Tensor]:
    """Map a Hugging Face GPT2LMHeadModel / GPT2Model state dict to DemoTransformer's parameter
    names and layouts. A state dict does not say how d_model splits into heads: cfg must be the
    model's own, config_from_hf(hf_model.config)."""
    check_hf_state_dict(hf_state_dict, cfg, Config)  # missing layers, other sizes: one clear line
    sd = {key.removeprefix("transformer."): value for key, value in hf_state_dict.items()}
    heads = dict(n_heads=cfg.n_heads)
    ours = {
        "embed.W_E": sd["wte.weight"],
        "pos_embed.W_pos": sd["wpe.weight"],
        "ln_final.w": sd["ln_f.weight"],
        "ln_final.b": sd["ln_f.bias"],
        "unembed.W_U": sd["wte.weight"].T,  # GPT-2 ties the unembedding to the embedding
        "unembed.b_U": torch.zeros(cfg.d_vocab, dtype=sd["wte.weight"].dtype),
    }
    for layer in range(cfg.n_layers):
        hf, our = f"h.{layer}.", f"blocks.{layer}."
        W_Q, W_K, W_V = sd[hf + "attn.c_attn.weight"].chunk(
            3, dim=1
        )  # Conv1D weight: [d_model, 3 * d_model]
        b_Q, b_K, b_V = sd[hf + "attn.c_attn.bias"].chunk(3)
        for name, weight, bias in (("Q", W_Q, b_Q), ("K", W_K, b_K), ("V", W_V, b_V)):
            ours[our + f"attn.W_{name}"] = einops.rearrange(
                weight, "d_model (n_heads d_head) -> n_heads d_model d_head", **heads
            )
            ours[our + f"attn.b_{name}"] = einops.rearrange(
                bias, "(n_heads d_head) -> n_heads d_head", **heads
            )
        ours[our + "attn.W_O"] = einops.rearrange(
            sd[hf + "attn.c_proj.weight"],
            "(n_heads d_head) d_model -> n_heads d_head d_model",
            **heads,
        )
        ours[our + "attn.b_O"] = sd[hf + "attn.c_proj.bias"]
        ours[our + "mlp.W_in"] = sd[hf + "mlp.c_fc.weight"]
        ours[our + "mlp.b_in"] = sd[hf + "mlp.c_fc.bias"]
        ours[our + "mlp.W_out"] = sd[hf + "mlp.c_proj.weight"]
        ours[our + "mlp.b_out"] = sd[hf + "mlp.c_proj.bias"]
        for ln in ("1", "2"):
            ours[our + f"ln{ln}.w"] = sd[hf + f"ln_{ln}.weight"]
            ours[our + f"ln{ln}.b"] = sd[hf + f"ln_{ln}.bias"]
    return {name: tensor.detach().clone().contiguous() for name, tensor in ours.items()}


# --- notebooks/02_clean_implementation.ipynb, code cell 23
def config_from_hf(hf_config, **overrides) -> Config:
    """Our Config for a transformers GPT2Config; `overrides` replace any of its fields."""
    require_hf_config(hf_config, overrides, Config)  # None, a dict, unknown fields: one clear line
    from_hf = dict(
        d_model=hf_config.n_embd,
        layer_norm_eps=hf_config.layer_norm_epsilon,
        d_vocab=hf_config.vocab_size,
        init_range=hf_config.initializer_range,
        n_ctx=hf_config.n_positions,
        d_head=hf_config.n_embd // hf_config.n_head,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd,
        n_heads=hf_config.n_head,
        n_layers=hf_config.n_layer,
    )
    return Config(**{**from_hf, **overrides})


def load_gpt2_weights(model: DemoTransformer, hf_model) -> DemoTransformer:
    """Copy a Hugging Face GPT-2's weights into `model` (strict: every parameter must be set).
    The configs must agree: some mismatches (more layers, other head splits) would otherwise load
    without an error."""
    check_gpt2_compatible(model, hf_model, config_from_hf)  # one clear error for what cannot load
    model.load_state_dict(convert_hf_state_dict(hf_model.state_dict(), model.cfg), strict=True)
    return model


# --- notebooks/02_clean_implementation.ipynb, code cell 27
def get_attention_patterns(
    model: DemoTransformer, tokens: Int[Tensor, "batch posn"]
) -> list[Float[Tensor, "batch n_heads query_posn key_posn"]]:
    """Every layer's attention pattern, captured with forward hooks (works whichever attention path
    the model uses)."""
    require_model(model)  # not None, a tensor (arguments swapped) or another module
    patterns = []

    def save_pattern(attn: Attention, inputs: tuple[Tensor], output: Tensor) -> None:
        patterns.append(attn.attention_pattern(inputs[0]).detach())

    def save_hooked(hook_point: nn.Module, inputs: tuple[Tensor], output: Tensor) -> None:
        patterns.append(output.detach())  # the pattern as the model used it, hooks and all

    handles = [  # notebook 05's hooked model has its own hook_pattern: read that one
        block.attn.hook_pattern.register_forward_hook(save_hooked)
        if hasattr(block.attn, "hook_pattern")
        else block.attn.register_forward_hook(save_pattern)
        for block in model.blocks
    ]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return patterns


# written by `make export`; sha256 of the text above: e0d87a65066ee433
