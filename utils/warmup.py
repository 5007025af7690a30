"""GENERATED from notebooks/00_warmup.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/00_warmup.ipynb, code cell 2
"""Notebook 00's exercises: tensors, einops and einsum, autograd and nn.Module, as small functions
(the warm-up for notebooks 01 to 07)."""


from typing import Callable

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.validation import require_float_tensor


# --- notebooks/00_warmup.ipynb, code cell 7
def normalise(x: Tensor) -> Tensor:
    """[..., d] -> [..., d]: each row (last axis) minus its mean, over its standard deviation."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.var(dim=-1, keepdim=True, unbiased=False).sqrt()
    return (x - mean) / std


# --- notebooks/00_warmup.ipynb, code cell 10
def pick_log_probs(log_probs: Tensor, tokens: Tensor) -> Tensor:
    """log_probs [batch, posn, vocab], tokens [batch, posn] -> [batch, posn]: log_probs[b, p,
    tokens[b, p]] for every b and p."""
    return log_probs.gather(-1, tokens[..., None])[..., 0]


# --- notebooks/00_warmup.ipynb, code cell 12
def mask_future(scores: Tensor) -> Tensor:
    """[..., query, key] -> the same, with scores[..., i, j] = -inf wherever j > i."""
    q, k = scores.shape[-2:]
    future = torch.ones(q, k, dtype=torch.bool, device=scores.device).triu(diagonal=1)
    return scores.masked_fill(future, float("-inf"))


# --- notebooks/00_warmup.ipynb, code cell 14
def zero_feature(activations: Tensor, index: int) -> Tensor:
    """[..., d] -> a new [..., d] with feature `index` set to 0 in every row; the input as it
    was."""
    ablated = activations.clone()
    ablated[..., index] = 0
    return ablated


# --- notebooks/00_warmup.ipynb, code cell 16
def scale_rows_(x: Tensor, factors: Tensor) -> None:
    """x [n, m], factors [n]: multiply row i of x by factors[i], in place (x itself changes)."""
    x *= factors[:, None]


# --- notebooks/00_warmup.ipynb, code cell 19
def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """[batch, posn, n_heads * d_head] -> [batch, posn, n_heads, d_head]; head h is features
    h * d_head to (h + 1) * d_head."""
    return einops.rearrange(
        x, "batch posn (n_heads d_head) -> batch posn n_heads d_head", n_heads=n_heads
    )


# --- notebooks/00_warmup.ipynb, code cell 21
def mean_over_heads(pattern: Tensor) -> Tensor:
    """[batch, n_heads, query, key] -> [batch, query, key]: the mean of the heads' patterns."""
    return einops.reduce(pattern, "batch head query key -> batch query key", "mean")


# --- notebooks/00_warmup.ipynb, code cell 23
def repeat_positions(W_pos: Tensor, batch: int) -> Tensor:
    """[posn, d_model] -> [batch, posn, d_model]: the same positional embeddings for each row."""
    return einops.repeat(W_pos, "posn d_model -> batch posn d_model", batch=batch)


# --- notebooks/00_warmup.ipynb, code cell 25
def outer_product(u: Tensor, v: Tensor) -> Tensor:
    """u [n], v [m] -> [n, m] with out[i, j] = u[i] * v[j]."""
    return einops.einsum(u, v, "n, m -> n m")


# --- notebooks/00_warmup.ipynb, code cell 27
def batched_dot(a: Tensor, c: Tensor) -> Tensor:
    """a [batch, d], c [batch, d] -> [batch]: the dot product of each row of a with the same row
    of c."""
    return einops.einsum(a, c, "batch d, batch d -> batch")


# --- notebooks/00_warmup.ipynb, code cell 29
def attention_scores(q: Tensor, k: Tensor) -> Tensor:
    """q [batch, q_posn, n_heads, d_head], k [batch, k_posn, n_heads, d_head] ->
    [batch, n_heads, q_posn, k_posn]: each head's dot products of every query with every key."""
    return einops.einsum(
        q, k, "batch q_posn head d_head, batch k_posn head d_head -> batch head q_posn k_posn"
    )


# --- notebooks/00_warmup.ipynb, code cell 31
def weighted_values(pattern: Tensor, v: Tensor) -> Tensor:
    """pattern [batch, n_heads, q_posn, k_posn], v [batch, k_posn, n_heads, d_head] ->
    z [batch, q_posn, n_heads, d_head]: each query's average of the values, by its pattern."""
    return einops.einsum(
        pattern, v, "batch head q_posn k_posn, batch k_posn head d_head -> batch q_posn head d_head"
    )


# --- notebooks/00_warmup.ipynb, code cell 33
def combine_heads(z: Tensor, W_O: Tensor) -> Tensor:
    """z [batch, posn, n_heads, d_head], W_O [n_heads, d_head, d_model] -> [batch, posn, d_model]:
    every head's output, summed."""
    return einops.einsum(
        z, W_O, "batch posn head d_head, head d_head d_model -> batch posn d_model"
    )


# --- notebooks/00_warmup.ipynb, code cell 37
def mean_squared_error(predictions: Tensor, targets: Tensor) -> Tensor:
    """predictions [n, 1], targets [n] -> a 0-d tensor: the mean of the squared differences."""
    return ((predictions[:, 0] - targets) ** 2).mean()


# --- notebooks/00_warmup.ipynb, code cell 39
def numerical_gradient(f: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-3) -> Tensor:
    """The gradient of f (a 0-d tensor) at x, by central differences: same shape as x."""
    require_float_tensor("x", x)  # an int x cannot move by eps: one clear line instead of zeros
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step.view(-1)[i] = eps
        grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


# --- notebooks/00_warmup.ipynb, code cell 42
class TwoLayerNet(nn.Module):
    """x [batch, d_in] -> [batch, d_out]: a linear layer, ReLU, and another linear layer."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.hidden = nn.Linear(d_in, d_hidden)
        self.out = nn.Linear(d_hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(x)))


# --- notebooks/00_warmup.ipynb, code cell 44
def train_loop(model: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float) -> list[float]:
    """Train model on (x, y) for `steps` full-batch steps of AdamW; the loss before each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# written by `make export`; sha256 of the text above: 54d6f36803b9f729
