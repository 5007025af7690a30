"""GENERATED from notebooks/03_training.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/03_training.ipynb, code cell 22
"""Fused twins of notebook 02's layers: the same parameters, so state dicts load into either, but PyTorch's fused kernels.
The trainer uses FusedTransformer for speed; the explicit classes in utils.model stay the ones to read and to look inside."""


import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import utils.model  # qualified names, so that running this cell never replaces a LayerNorm or DemoTransformer you pasted above
from utils.model import Float, Int


class FusedLayerNorm(utils.model.LayerNorm):
    def forward(
        self, residual: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        return F.layer_norm(residual, (self.cfg.d_model,), self.w, self.b, self.cfg.layer_norm_eps)


class FusedAttention(utils.model.Attention):
    def forward(
        self, x: Float[Tensor, "batch posn d_model"], cache=None, layer: int = 0
    ) -> Float[Tensor, "batch posn d_model"]:
        # q, k and v from one matmul (like GPT-2's c_attn), then PyTorch's fused causal attention: no pattern in memory.
        # Plain view/transpose rather than einops here: this path is about speed, and each einops call costs a few microseconds.
        if cache is not None:
            return self.forward_with_cache(x, cache, layer)
        q, k, v = self.project_qkv(x)  # each [batch, posn, n_heads, d_head]
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.project_out(z.transpose(1, 2))

    def qkv_weight(
        self,
    ) -> tuple[Float[Tensor, "d_model qkv_n_heads_d_head"], Float[Tensor, "qkv_n_heads_d_head"]]:
        """W_Q, W_K and W_V side by side as one matrix, like GPT-2's c_attn (a copy), and their biases."""
        d_model, width = self.cfg.d_model, self.cfg.n_heads * self.cfg.d_head
        W_QKV = (
            torch.cat([self.W_Q, self.W_K, self.W_V]).permute(1, 0, 2).reshape(d_model, 3 * width)
        )
        return W_QKV, torch.cat([self.b_Q, self.b_K, self.b_V]).flatten()

    def project_qkv(
        self, x: Float[Tensor, "batch posn d_model"], qkv_weight=None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k and v, each [batch, posn, n_heads, d_head], from one matmul (with qkv_weight(), or the copy of it given)."""
        batch, posn, d_model = x.shape
        W_QKV, b_QKV = qkv_weight or self.qkv_weight()
        qkv = torch.addmm(
            b_QKV, x.reshape(-1, d_model), W_QKV
        )  # [(batch posn), (qkv n_heads d_head)]
        return qkv.view(batch, posn, 3, self.cfg.n_heads, self.cfg.d_head).unbind(2)

    def project_out(
        self, z: Float[Tensor, "batch posn n_heads d_head"]
    ) -> Float[Tensor, "batch posn d_model"]:
        """Every head's z through its W_O, summed over heads, plus b_O: one matmul."""
        batch, posn, n_heads, d_head = z.shape
        out = torch.addmm(
            self.b_O,
            z.reshape(batch * posn, n_heads * d_head),
            self.W_O.reshape(n_heads * d_head, self.cfg.d_model),
        )
        return out.view(batch, posn, self.cfg.d_model)

    def forward_with_cache(
        self, x: Float[Tensor, "batch new_posn d_model"], cache, layer: int
    ) -> Float[Tensor, "batch new_posn d_model"]:
        """Notebook 04's KV cache: the new positions' queries against every key so far."""
        posn = x.shape[1]
        # Generating, one position at a time, the copy that qkv_weight makes would cost as much as the matmul itself: keep it,
        # and make it again only when a weight changed (in-place updates, such as an optimizer step or load_state_dict, move a
        # tensor's _version; .to() moves its data_ptr). With gradients on, always afresh, so that they flow to W_Q, W_K and W_V.
        if torch.is_grad_enabled():
            qkv_weight = self.qkv_weight()
        else:
            versions = [
                (w.data_ptr(), w._version)
                for w in (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V)
            ]
            if getattr(self, "qkv_versions", None) != versions:
                self.qkv, self.qkv_versions = self.qkv_weight(), versions
            qkv_weight = self.qkv
        q, k, v = self.project_qkv(x, qkv_weight)  # each [batch, posn, n_heads, d_head]
        k, v = cache.update(layer, k, v)  # [batch, past + posn, n_heads, d_head]
        past = k.shape[1] - posn
        # query i sits at position past + i and sees keys 0..past + i; one new position sees every key, so it needs no mask
        mask = (
            None
            if posn == 1
            else torch.ones(posn, past + posn, dtype=torch.bool, device=x.device).tril(
                diagonal=past
            )
        )
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )
        return self.project_out(z.transpose(1, 2))


class FusedMLP(utils.model.MLP):
    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pre = torch.addmm(self.b_in, x.reshape(-1, self.cfg.d_model), self.W_in)
        return torch.addmm(self.b_out, F.gelu(pre, approximate="tanh"), self.W_out).view(x.shape)


class FusedUnembed(utils.model.Unembed):
    def forward(
        self, normalized_resid_final: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_vocab"]:
        x = normalized_resid_final
        return torch.addmm(self.b_U, x.reshape(-1, self.cfg.d_model), self.W_U).view(
            *x.shape[:-1], self.cfg.d_vocab
        )


class FusedTransformerBlock(utils.model.TransformerBlock):
    def __init__(self, cfg: utils.model.Config):
        nn.Module.__init__(
            self
        )  # TransformerBlock's forward (the residual stream) with fused parts, built in the same order
        self.cfg = cfg
        self.ln1, self.attn = FusedLayerNorm(cfg), FusedAttention(cfg)
        if not cfg.attn_only:
            self.ln2, self.mlp = FusedLayerNorm(cfg), FusedMLP(cfg)

    def forward(
        self, resid_pre: Float[Tensor, "batch posn d_model"], cache=None, layer: int = 0
    ) -> Float[Tensor, "batch posn d_model"]:
        if cache is None:
            return super().forward(resid_pre)
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre), cache, layer)
        return resid_mid if self.cfg.attn_only else resid_mid + self.mlp(self.ln2(resid_mid))


class FusedTransformer(utils.model.DemoTransformer):
    """DemoTransformer with fused layers. Built in the same order as DemoTransformer, so the same seed gives the same weights."""

    def __init__(self, cfg: utils.model.Config):
        nn.Module.__init__(self)
        self.cfg = cfg
        self.embed = utils.model.Embed(cfg)
        self.pos_embed = utils.model.PosEmbed(cfg)
        self.blocks = nn.ModuleList([FusedTransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = FusedLayerNorm(cfg)
        self.unembed = FusedUnembed(cfg)

    def forward(
        self, tokens: Int[Tensor, "batch posn"], cache=None
    ) -> Float[Tensor, "batch posn d_vocab"]:
        # On a GPU, checking the ids' range would make the CPU wait for the GPU on every call; Trainer checks its data once instead.
        utils.model.validate_tokens(
            tokens, self.cfg, check_values=not getattr(tokens, "is_cuda", False)
        )
        if (
            cache is not None
        ):  # notebook 04's KV cache: only the new positions, at positions cache.length onwards
            cache.check(tokens, self.cfg)
            past = cache.length
            residual = (
                F.embedding(tokens, self.embed.W_E)
                + self.pos_embed.W_pos[past : past + tokens.shape[1]]
            )
            for layer, block in enumerate(self.blocks):
                residual = block(residual, cache, layer)
            return self.unembed(self.ln_final(residual))
        residual = (
            F.embedding(tokens, self.embed.W_E) + self.pos_embed.W_pos[: tokens.shape[1]]
        )  # positions broadcast over the batch
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(self.ln_final(residual))
