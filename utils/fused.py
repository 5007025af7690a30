"""GENERATED from notebooks/03_training.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/03_training.ipynb, code cell 11
"""Fused twins of notebook 02's layers: the same parameters (state dicts load into either), but
PyTorch's fused kernels. The explicit classes stay the ones to read and to look inside."""


import torch
import torch.nn.functional as F
from torch import Tensor

import utils.model  # qualified names: running this cell never replaces a class you pasted above
from utils.model import Float, Int


class FusedLayerNorm(utils.model.LayerNorm):
    def forward(self, residual: Float[Tensor, "batch posn d_model"]) -> Tensor:
        return F.layer_norm(residual, (self.cfg.d_model,), self.w, self.b, self.cfg.layer_norm_eps)


class FusedEmbed(utils.model.Embed):
    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_model"]:
        return F.embedding(tokens, self.W_E)


class FusedPosEmbed(utils.model.PosEmbed):
    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "posn d_model"]:
        # posn rows, broadcast over the batch when added; a copy, so that a hook editing it in
        # place never edits W_pos
        return self.W_pos[: tokens.shape[1]].clone()


class FusedAttention(utils.model.Attention):
    def forward(self, x: Float[Tensor, "batch posn d_model"]) -> Tensor:
        q, k, v = (t.transpose(1, 2) for t in self.project_qkv(x))  # [batch, n_heads, posn, d_head]
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # no pattern in memory
        return self.project_out(z.transpose(1, 2))

    def qkv_weights(self) -> tuple[Tensor, Tensor]:
        """W_Q, W_K, W_V side by side, [d_model, 3 * n_heads * d_head] as GPT-2's c_attn; biases"""
        W_QKV = torch.cat([self.W_Q, self.W_K, self.W_V]).permute(1, 0, 2).flatten(1)
        return W_QKV, torch.cat([self.b_Q, self.b_K, self.b_V]).flatten()

    def project_qkv(self, x: Float[Tensor, "batch posn d_model"], weights=None) -> tuple:
        """q, k and v, each [batch, posn, n_heads, d_head], from one matmul (with qkv_weights(), or
        the ones given). Plain view and reshape rather than einops: this path is about speed."""
        batch, posn, d_model = x.shape
        W_QKV, b_QKV = weights or self.qkv_weights()
        qkv = torch.addmm(b_QKV, x.reshape(-1, d_model), W_QKV)  # [batch * posn, 3 * h * d_head]
        qkv = qkv.view(batch, posn, 3, self.cfg.n_heads, self.cfg.d_head)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # not unbind: a hook may edit q in place

    def project_out(self, z: Float[Tensor, "batch posn n_heads d_head"]) -> Tensor:
        """Every head's z through its W_O, summed over heads, plus b_O: one matmul."""
        batch, posn, n_heads, d_head = z.shape
        W_O = self.W_O.reshape(n_heads * d_head, self.cfg.d_model)
        out = torch.addmm(self.b_O, z.reshape(batch * posn, n_heads * d_head), W_O)
        return out.view(batch, posn, self.cfg.d_model)


class FusedMLP(utils.model.MLP):
    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_model"]:
        pre = torch.addmm(self.b_in, x.reshape(-1, self.cfg.d_model), self.W_in)
        return torch.addmm(self.b_out, F.gelu(pre, approximate="tanh"), self.W_out).view(x.shape)


class FusedUnembed(utils.model.Unembed):
    def forward(
        self, x: Float[Tensor, "batch posn d_model"]
    ) -> Float[Tensor, "batch posn d_vocab"]:
        logits = torch.addmm(self.b_U, x.reshape(-1, self.cfg.d_model), self.W_U)
        return logits.view(*x.shape[:-1], self.cfg.d_vocab)


class FusedTransformerBlock(utils.model.TransformerBlock):
    LayerNorm, Attention, MLP = FusedLayerNorm, FusedAttention, FusedMLP


class FusedTransformer(utils.model.DemoTransformer):
    """DemoTransformer built from fused layers, in the same order: the same seed, the same
    weights."""

    Embed, PosEmbed, TransformerBlock = FusedEmbed, FusedPosEmbed, FusedTransformerBlock
    LayerNorm, Unembed = FusedLayerNorm, FusedUnembed


# --- notebooks/03_training.ipynb, code cell 13
from utils.validation import require_logits_and_tokens


class NextTokenLoss(torch.autograd.Function):
    """next_token_loss with its gradient written by hand, (softmax - one_hot) / n, made in place
    from the log-probabilities the forward keeps: no other tensor the size of the logits."""

    @staticmethod
    def forward(ctx, logits: Tensor, tokens: Tensor) -> Tensor:
        dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16 logits: float32 maths
        log_probs = torch.log_softmax(logits, dim=-1, dtype=dtype)  # [batch, posn, d_vocab]
        targets = tokens[:, 1:, None].long()  # position i predicts token i + 1
        ctx.save_for_backward(log_probs, targets)
        return -log_probs[:, :-1].gather(-1, targets).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, None]:
        log_probs, targets = ctx.saved_tensors
        grad = log_probs.exp_()  # the softmax, in place: the log-probabilities are done with
        predicting = grad[:, :-1]
        predicting.scatter_(-1, targets, predicting.gather(-1, targets) - 1)  # minus the one-hot
        grad[:, -1] = 0  # the last position predicts nothing
        return grad.mul_(grad_loss / targets.numel()), None  # the mean over n positions


def fused_next_token_loss(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> Float[Tensor, ""]:
    """next_token_loss's value and gradient, to float32 rounding, with two tensors the size of the
    logits fewer. The trainer's loss."""
    require_logits_and_tokens(logits, tokens)  # swapped, mismatched or one position: a clear line
    return NextTokenLoss.apply(logits, tokens)


# written by `make export`; sha256 of the text above: c1b7af2f1cccec30
