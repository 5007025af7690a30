"""GENERATED from notebooks/05_looking_inside.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/05_looking_inside.ipynb, code cell 2

import math
from typing import Callable

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

import utils.fused  # as modules: running this cell never replaces a class you pasted above
import utils.model
from utils.hook_tools import ActivationCache, HookMethods, checked_replacement, not_reentered
from utils.hook_tools import require_names_selected
from utils.model import Float, Int
from utils.validation import hooks_attached, require_token_ids


# --- notebooks/05_looking_inside.ipynb, code cell 3
HookFn = Callable[[Tensor, "HookPoint"], "Tensor | None"]  # None: keep the activation


class HookPoint(torch.nn.Module):
    """An identity layer with a name: the functions attached to it see, and may replace, the
    activation passing through."""

    def __init__(self):
        super().__init__()
        self.name = ""  # its full name in the model, such as "blocks.0.attn.hook_pattern"
        self.hooks: list[HookFn] = []

    def forward(self, activation: Tensor) -> Tensor:
        if self.hooks and activation.requires_grad:  # a hook's in-place edit (a.mul_(2)) then
            activation = (
                activation.clone()
            )  # changes this copy, which flows on, not what backward saved
        with not_reentered(self):  # a hook that runs the model would come back here, without end
            for hook in self.hooks:
                result = hook(activation, hook=self)
                if result is not None:  # a replacement: the rest of the forward pass sees it
                    activation = checked_replacement(self, hook, activation, result)
        return activation

    @property
    def active(self) -> bool:
        """Whether anything is attached: our hook functions, or PyTorch forward hooks."""
        return bool(self.hooks or self._forward_hooks or self._forward_pre_hooks)

    def __call__(self, activation: Tensor) -> Tensor:
        # nothing attached: the activation as it is, without nn.Module's call machinery
        return super().__call__(activation) if self.active else activation


# --- notebooks/05_looking_inside.ipynb, code cell 4
class HookedLayerNorm(utils.fused.FusedLayerNorm):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_scale = HookPoint()  # [batch, posn, 1]
        self.hook_normalized = HookPoint()  # [batch, posn, d_model], before w and b

    def forward(self, residual: Float[Tensor, "batch posn d_model"]) -> Tensor:
        if not (self.hook_scale.active or self.hook_normalized.active):
            return super().forward(residual)  # PyTorch's fused LayerNorm: neither is in memory
        centred = residual - residual.mean(dim=-1, keepdim=True)
        scale = self.hook_scale(
            (centred.pow(2).mean(-1, keepdim=True) + self.cfg.layer_norm_eps).sqrt()
        )
        return self.hook_normalized(centred / scale) * self.w + self.b


class HookedAttention(utils.fused.FusedAttention):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [b p h d]
        self.hook_attn_scores = HookPoint()  # [batch, n_heads, query_posn, key_posn]
        self.hook_pattern = HookPoint()  # [batch, n_heads, query_posn, key_posn]
        self.hook_z = HookPoint()  # [batch, posn, n_heads, d_head]

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        q, k, v = self.project_qkv(x)  # each [batch, posn, n_heads, d_head]
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.hook_attn_scores.active or self.hook_pattern.active:  # notebook 02's attention
            scores = einops.einsum(
                q,
                k,
                "batch query n_heads d_head, batch key n_heads d_head -> batch n_heads query key",
            )
            scores = self.hook_attn_scores(
                self.apply_causal_mask(scores / math.sqrt(self.cfg.d_head))
            )
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = einops.einsum(
                pattern,
                v,
                "batch n_heads query key, batch key n_heads d_head -> batch query n_heads d_head",
            )
        else:  # fused: the pattern is never written to memory
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        return self.project_out(self.hook_z(z))


# --- notebooks/05_looking_inside.ipynb, code cell 5
class HookedMLP(utils.fused.FusedMLP):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # [batch, posn, d_mlp]

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pre = torch.addmm(self.b_in, x.reshape(-1, self.cfg.d_model), self.W_in)
        post = self.hook_post(utils.model.gelu_new(self.hook_pre(pre.view(*x.shape[:-1], -1))))
        return torch.addmm(self.b_out, post.reshape(-1, self.cfg.d_mlp), self.W_out).view(x.shape)


class HookedUnembed(utils.fused.FusedUnembed):
    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_in, self.hook_out = HookPoint(), HookPoint()  # [b, p, d_model], [b, p, d_vocab]

    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_vocab"]:
        return self.hook_out(super().forward(self.hook_in(x)))


# --- notebooks/05_looking_inside.ipynb, code cell 6
class HookedTransformerBlock(utils.fused.FusedTransformerBlock):
    LayerNorm, Attention, MLP = HookedLayerNorm, HookedAttention, HookedMLP

    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        if not cfg.attn_only:
            self.hook_resid_mid, self.hook_mlp_out = HookPoint(), HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid_pre: Float[Tensor, "batch posn d_model"]) -> Tensor:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid_pre)))
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(resid_mid)))
        return self.hook_resid_post(resid_mid + mlp_out)


class HookedDemoTransformer(HookMethods, utils.fused.FusedTransformer):
    """Your transformer with TransformerLens's hook points: run_with_cache, run_with_hooks, hooks().
    DemoTransformer's parameters: from_model(model) or load_state_dict take any of your models."""

    TransformerBlock, LayerNorm, Unembed = HookedTransformerBlock, HookedLayerNorm, HookedUnembed

    def __init__(self, cfg: utils.model.Config):
        super().__init__(cfg)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.name_hook_points()  # each its full name ("blocks.0.attn.hook_q"), in forward order

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_vocab"]:
        # bad ids, shapes, dtypes, tokens where the weights are not, a replaced cfg: one clear error
        require_token_ids(tokens, self.cfg, model=self)
        embed = self.hook_embed(self.embed(tokens))
        pos_embed = self.pos_embed(tokens).expand_as(embed)  # [posn] rows, shown [batch] times
        if self.hook_pos_embed.active:  # hooks get a copy: the expanded view cannot be written to
            pos_embed = self.hook_pos_embed(pos_embed.clone())
        residual = embed + pos_embed
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(self.ln_final(residual))

    def run_with_cache(self, tokens: Tensor, names_filter=None) -> tuple[Tensor, ActivationCache]:
        """The logits, and the activations at the hook points `names_filter` selects (default:
        all)."""
        activations: dict[str, Tensor] = {}
        copy = bool(hooks_attached(self))  # other hooks may edit an activation in place, later

        def record(activation: Tensor, hook: HookPoint) -> None:
            activations[hook.name] = activation.detach().clone() if copy else activation.detach()

        names = self.matching_names(names_filter)  # unknown names are an error, not an empty cache
        require_names_selected(names, names_filter)
        logits = self.run_with_hooks(tokens, [(name, record) for name in names])
        return logits, ActivationCache(activations, self)


# written by `make export`; sha256 of the text above: fd0e72266cd93f6f
