"""Notebook 00's checks: each passes right alternatives (plain PyTorch instead of einops, loops
instead of vectorised code) and catches each known mistake, naming it and no other. Every broken
function is written as a learner new to PyTorch would write it, independently of the checks'
reference (which makes the mistakes through its `mistake=` argument)."""

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils import checks, warmup
from utils.checks import MISTAKES
from utils.checks.core import CheckUsageError
from named_mistakes import assert_check_names_only

WARMUP_PARTS = {
    "normalise",
    "pick_log_probs",
    "mask_future",
    "zero_feature",
    "scale_rows_",
    "split_heads",
    "mean_over_heads",
    "repeat_positions",
    "attention_scores",
    "combine_heads",
    "outer_product",
    "batched_dot",
    "weighted_values",
    "mean_squared_error",
    "numerical_gradient",
    "TwoLayerNet",
    "train_loop",
}

# ---------------------------------------------------------------- tensors


def norm_no_keepdim(x):
    return (x - x.mean(dim=-1)) / x.std(dim=-1, unbiased=False)


def norm_first_try(x):  # keepdim forgotten and the unbiased std: the commonest first attempt
    return (x - x.mean(-1)) / x.std(-1)


def norm_mean_keepdim_only(x):  # the same mistake, made in one of the two reductions
    return (x - x.mean(-1, keepdim=True)) / x.var(-1, unbiased=False).sqrt()


def norm_dim_1(x):  # "the features are axis 1"
    return (x - x.mean(1, keepdim=True)) / x.var(1, keepdim=True, unbiased=False).sqrt()


def norm_std(x):
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)


def norm_loop(x):  # right: one row at a time
    rows = x.reshape(-1, x.shape[-1])
    out = torch.stack([(r - r.mean()) / ((r - r.mean()) ** 2).mean().sqrt() for r in rows])
    return out.reshape(x.shape)


def norm_layer_norm(x):  # right: PyTorch's own, without eps or weights
    return F.layer_norm(x, x.shape[-1:], eps=0.0)


def pick_keepdim(log_probs, tokens):
    return torch.gather(log_probs, 2, tokens.unsqueeze(-1))


def pick_fancy(log_probs, tokens):
    return log_probs[:, :, tokens]


def pick_dim1(log_probs, tokens):
    return log_probs.gather(1, tokens.unsqueeze(-1)).squeeze(-1)


def pick_squeeze_all(log_probs, tokens):  # right unless batch or posn is 1
    return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze()


def pick_loops(log_probs, tokens):  # right: loops
    out = torch.empty(tokens.shape)
    for b in range(tokens.shape[0]):
        for p in range(tokens.shape[1]):
            out[b, p] = log_probs[b, p, tokens[b, p]]
    return out


def pick_arange(log_probs, tokens):  # right: advanced indexing with every axis given
    b, p = tokens.shape
    return log_probs[torch.arange(b)[:, None], torch.arange(p)[None, :], tokens]


def mask_with_diagonal(scores):
    n = scores.shape[-1]
    return scores.masked_fill(torch.triu(torch.ones(n, n)).bool(), float("-inf"))


def mask_tril(scores):
    n = scores.shape[-1]
    return scores.masked_fill(torch.tril(torch.ones(n, n), diagonal=-1).bool(), float("-inf"))


def mask_zeros(scores):
    n = scores.shape[-1]
    return scores.masked_fill(torch.triu(torch.ones(n, n), 1).bool(), 0.0)


def mask_underscore(scores):
    n = scores.shape[-1]
    return scores.masked_fill_(torch.triu(torch.ones(n, n), 1).bool(), float("-inf"))


def mask_minus_1e9(scores):
    n = scores.shape[-1]
    return scores.masked_fill(torch.triu(torch.ones(n, n), 1).bool(), -1e9)


def mask_alias(scores):  # another name for scores, then index assignment
    y = scores
    q, k = scores.shape[-2:]
    y[..., torch.ones(q, k, dtype=torch.bool).triu(1)] = float("-inf")
    return y


def mask_square_from_last_axis(scores):  # right only when there are as many queries as keys
    n = scores.shape[-1]
    return scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))


def mask_where(scores):  # right: torch.where and tril
    q, k = scores.shape[-2:]
    keep = torch.tril(torch.ones(q, k, dtype=torch.bool))
    return torch.where(keep, scores, torch.tensor(float("-inf")))


def zero_alias(activations, index):
    y = activations
    y[..., index] = 0
    return y


def zero_row(activations, index):
    y = activations.clone()
    y[index] = 0
    return y


def zero_mask(activations, index):  # right: multiply by a mask
    keep = torch.ones(activations.shape[-1])
    keep[index] = 0
    return activations * keep


def scale_rebinding(x, factors):
    x = x * factors[:, None]


def scale_columns(x, factors):
    x *= factors


def scale_loop(x, factors):  # right: a row at a time, in place
    for i in range(x.shape[0]):
        x[i] = x[i] * factors[i]


def scale_mul_(x, factors):  # right, returning x as PyTorch's in-place functions do
    return x.mul_(factors.unsqueeze(1))


# ---------------------------------------------------------------- einops and einsum


def split_d_first(x, n_heads):
    return einops.rearrange(x, "b p (d h) -> b p h d", h=n_heads)


def split_heads_before_posn(x, n_heads):
    return einops.rearrange(x, "b p (h d) -> b h p d", h=n_heads)


def split_d_then_heads(x, n_heads):
    return x.view(x.shape[0], x.shape[1], -1, n_heads)


def split_reshape_then_transpose(x, n_heads):
    b, p, _ = x.shape
    return x.reshape(b, n_heads, p, -1).transpose(1, 2)


def split_view(x, n_heads):  # right: view
    return x.view(x.shape[0], x.shape[1], n_heads, -1)


def mean_dim0(pattern):
    return pattern.mean(0)


def sum_heads(pattern):
    return einops.reduce(pattern, "b h q k -> b q k", "sum")


def mean_plain(pattern):  # right: plain PyTorch
    return pattern.mean(dim=1)


def repeat_middle(W_pos, batch):
    return einops.repeat(W_pos, "p d -> p b d", b=batch)


def repeat_tiled(W_pos, batch):
    return W_pos.repeat(batch, 1)


def repeat_expand(W_pos, batch):  # right: expand (a view, with no copy)
    return W_pos.unsqueeze(0).expand(batch, -1, -1)


def scores_over_heads(q, k):
    return einops.einsum(q, k, "b q h d, b k h d -> b d q k")


def scores_key_first(q, k):
    return einops.einsum(q, k, "b q h d, b k h d -> b h k q")


def scores_scaled(q, k):
    return einops.einsum(q, k, "b q h d, b k h d -> b h q k") / q.shape[-1] ** 0.5


def scores_matmul(q, k):  # right: matmul after moving the heads forward
    return q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)


def combine_per_head(z, W_O):
    return einops.einsum(z, W_O, "b p h d, h d m -> b p h m")


def combine_mean(z, W_O):
    return einops.einsum(z, W_O, "b p h d, h d m -> b p h m").mean(dim=2)


def combine_loop(z, W_O):  # right: one head at a time
    return sum(z[:, :, h] @ W_O[h] for h in range(z.shape[2]))


def outer_vu(u, v):
    return einops.einsum(v, u, "m, n -> m n")


def outer_dot(u, v):
    return einops.einsum(u, v, "n, n ->")


def outer_same_letter(u, v):
    return einops.einsum(u, v, "n, n -> n")


def outer_broadcast(u, v):  # right: broadcasting
    return u[:, None] * v[None, :]


def dot_pairs(a, c):
    return a @ c.T


def dot_product_only(a, c):
    return a * c


def dot_sum(a, c):  # right: plain PyTorch
    return (a * c).sum(dim=-1)


def weighted_by_query(pattern, v):
    return einops.einsum(pattern, v, "b h q k, b q h d -> b k h d")


def weighted_heads_first(pattern, v):
    return einops.einsum(pattern, v, "b h q k, b k h d -> b h q d")


def weighted_matmul(pattern, v):  # right: matmul with the heads moved forward and back
    return (pattern @ v.transpose(1, 2)).transpose(1, 2)


# ---------------------------------------------------------------- autograd


def mse_broadcast(predictions, targets):
    return ((predictions - targets) ** 2).mean()


def mse_sum(predictions, targets):
    return ((predictions.squeeze(-1) - targets) ** 2).sum()


def mse_item(predictions, targets):
    return ((predictions.squeeze() - targets) ** 2).mean().item()


def mse_detached(predictions, targets):
    return ((predictions.detach().squeeze(1) - targets) ** 2).mean()


def mse_new_tensor(predictions, targets):  # detached too: a new tensor from the numbers
    return torch.tensor(((predictions[:, 0] - targets) ** 2).mean().item())


def mse_keepdim(predictions, targets):  # [1], not 0-d
    return ((predictions[:, 0] - targets) ** 2).mean(0, keepdim=True)


def mse_functional(predictions, targets):  # right: PyTorch's own
    return F.mse_loss(predictions.view(-1), targets)


def numgrad_forward(f, x, eps=1e-3):
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        x_plus = x.clone()
        x_plus.view(-1)[i] += eps
        grad.view(-1)[i] = (f(x_plus) - f(x)) / eps
    return grad


def numgrad_one_eps(f, x, eps=1e-3):
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        plus, minus = x.clone(), x.clone()
        plus.view(-1)[i] += eps
        minus.view(-1)[i] -= eps
        grad.view(-1)[i] = (f(plus) - f(minus)) / eps
    return grad


def numgrad_in_place(f, x, eps=1e-3):  # nudges x itself and never puts it back
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(x.numel()):
        flat[i] += eps
        up = f(x)
        flat[i] -= 2 * eps
        grad.view(-1)[i] = (up - f(x)) / (2 * eps)
    return grad


def numgrad_float32(f, x, eps=1e-3):
    x = x.float()
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step.view(-1)[i] = eps
        grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def numgrad_fixed_eps(f, x, eps=1e-3):  # the default's 1e-3 written in, eps never read
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step.view(-1)[i] = 1e-3
        grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * 1e-3)
    return grad


def numgrad_autograd(f, x, eps=1e-3):  # the exact gradient, not a finite difference
    x = x.clone().requires_grad_()
    f(x).backward()
    return x.grad


def numgrad_restored(f, x, eps=1e-3):  # right: in place, each change undone
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(x.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        up = f(x).item()
        flat[i] = original - eps
        down = f(x).item()
        flat[i] = original
        grad.view(-1)[i] = (up - down) / (2 * eps)
    return grad


# ---------------------------------------------------------------- nn.Module


class NetList(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.layers = [nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out)]

    def forward(self, x):
        return self.layers[1](torch.relu(self.layers[0](x)))


class NetNoRelu(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.l1 = nn.Linear(d_in, d_hidden)
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.l2(self.l1(x))


class NetNoSuper(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        self.l1 = nn.Linear(d_in, d_hidden)
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


class NetLayersInForward(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.sizes = (d_in, d_hidden, d_out)
        self.l1 = nn.Linear(d_in, d_hidden)  # its parameters, counted...
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        d_in, d_hidden, d_out = self.sizes  # ...but new layers used
        return nn.Linear(d_hidden, d_out)(torch.relu(nn.Linear(d_in, d_hidden)(x)))


class NetBuiltInForward(nn.Module):  # no layer in __init__: parameters() is empty
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.sizes = (d_in, d_hidden, d_out)

    def forward(self, x):
        d_in, d_hidden, d_out = self.sizes
        return nn.Linear(d_hidden, d_out)(torch.relu(nn.Linear(d_in, d_hidden)(x)))


class NetNoBiases(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(d_in, d_hidden))
        self.W2 = nn.Parameter(torch.randn(d_hidden, d_out))

    def forward(self, x):
        return torch.relu(x @ self.W1) @ self.W2


class NetHiddenSize(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.l1 = nn.Linear(d_in, d_in)
        self.l2 = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


class NetDropout(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.l1 = nn.Linear(d_in, d_hidden)
        self.drop = nn.Dropout(0.1)
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.l2(self.drop(torch.relu(self.l1(x))))


class NetSequential(nn.Module):  # right: nn.Sequential
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))

    def forward(self, x):
        return self.net(x)


def train_no_zero_grad(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train_zero_grad_late(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train_new_optimizer(model, x, y, steps, lr):
    losses = []
    for _ in range(steps):
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train_tensor_losses(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss)
    return losses


def train_adam(model, x, y, steps, lr):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train_records_after_step(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
        losses.append(F.mse_loss(model(x), y).item())
    return losses


def train_no_step(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
    return losses


def train_item_then_backward(model, x, y, steps, lr):  # backward on a new tensor
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y).item()
        torch.tensor(loss, requires_grad=True).backward()
        optimizer.step()
        losses.append(loss)
    return losses


def train_detached_losses(model, x, y, steps, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def train_zero_grad_after_step(model, x, y, steps, lr):  # right: zeroed at the end of each step
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


BROKEN_WARMUP = {
    "norm_no_keepdim": [
        (checks.check_normalise, norm_no_keepdim),
        (checks.check_normalise, norm_mean_keepdim_only),
        (checks.check_normalise, norm_first_try),
    ],
    "norm_wrong_dim": [(checks.check_normalise, norm_dim_1)],
    "norm_unbiased": [(checks.check_normalise, norm_std)],
    "pick_not_squeezed": [(checks.check_pick_log_probs, pick_keepdim)],
    "pick_all_pairs": [(checks.check_pick_log_probs, pick_fancy)],
    "pick_wrong_dim": [(checks.check_pick_log_probs, pick_dim1)],
    "mask_diagonal": [(checks.check_mask_future, mask_with_diagonal)],
    "mask_past": [(checks.check_mask_future, mask_tril)],
    "mask_zero": [(checks.check_mask_future, mask_zeros)],
    "mask_large_negative": [(checks.check_mask_future, mask_minus_1e9)],
    "mask_in_place": [
        (checks.check_mask_future, mask_underscore),
        (checks.check_mask_future, mask_alias),
    ],
    "zero_feature_in_place": [(checks.check_zero_feature, zero_alias)],
    "zero_feature_row": [(checks.check_zero_feature, zero_row)],
    "scale_not_in_place": [(checks.check_scale_rows_, scale_rebinding)],
    "scale_columns": [(checks.check_scale_rows_, scale_columns)],
    "split_heads_order": [(checks.check_split_heads, split_d_first)],
    "split_heads_first": [
        (checks.check_split_heads, split_heads_before_posn),
        (checks.check_split_heads, split_reshape_then_transpose),
    ],
    "split_heads_axes_swapped": [(checks.check_split_heads, split_d_then_heads)],
    "reduce_wrong_axis": [(checks.check_mean_over_heads, mean_dim0)],
    "reduce_sum": [(checks.check_mean_over_heads, sum_heads)],
    "repeat_wrong_place": [(checks.check_repeat_positions, repeat_middle)],
    "repeat_tiled": [(checks.check_repeat_positions, repeat_tiled)],
    "scores_sum_heads": [(checks.check_attention_scores, scores_over_heads)],
    "scores_swapped": [(checks.check_attention_scores, scores_key_first)],
    "scores_scaled": [(checks.check_attention_scores, scores_scaled)],
    "combine_keeps_heads": [(checks.check_combine_heads, combine_per_head)],
    "combine_mean": [(checks.check_combine_heads, combine_mean)],
    "outer_swapped": [(checks.check_outer_product, outer_vu)],
    "outer_dot": [(checks.check_outer_product, outer_dot)],
    "outer_elementwise": [(checks.check_outer_product, outer_same_letter)],
    "dot_all_pairs": [(checks.check_batched_dot, dot_pairs)],
    "dot_no_sum": [(checks.check_batched_dot, dot_product_only)],
    "weighted_over_queries": [(checks.check_weighted_values, weighted_by_query)],
    "weighted_heads_first": [(checks.check_weighted_values, weighted_heads_first)],
    "mse_broadcast": [(checks.check_mean_squared_error, mse_broadcast)],
    "mse_sum": [(checks.check_mean_squared_error, mse_sum)],
    "mse_item": [(checks.check_mean_squared_error, mse_item)],
    "mse_detached": [
        (checks.check_mean_squared_error, mse_detached),
        (checks.check_mean_squared_error, mse_new_tensor),
    ],
    "numgrad_forward": [(checks.check_numerical_gradient, numgrad_forward)],
    "numgrad_one_eps": [(checks.check_numerical_gradient, numgrad_one_eps)],
    "numgrad_changes_x": [(checks.check_numerical_gradient, numgrad_in_place)],
    "numgrad_fixed_eps": [(checks.check_numerical_gradient, numgrad_fixed_eps)],
    "net_plain_list": [(checks.check_two_layer_net, NetList)],
    "net_no_relu": [(checks.check_two_layer_net, NetNoRelu)],
    "net_no_super_init": [(checks.check_two_layer_net, NetNoSuper)],
    "net_layers_in_forward": [
        (checks.check_two_layer_net, NetLayersInForward),
        (checks.check_two_layer_net, NetBuiltInForward),
    ],
    "train_no_zero_grad": [(checks.check_train_loop, train_no_zero_grad)],
    "train_optimizer_in_loop": [(checks.check_train_loop, train_new_optimizer)],
    "train_tensor_losses": [
        (checks.check_train_loop, train_tensor_losses),
        (checks.check_train_loop, train_detached_losses),
    ],
    "train_adam": [(checks.check_train_loop, train_adam)],
    "train_loss_after_step": [(checks.check_train_loop, train_records_after_step)],
    "train_no_update": [
        (checks.check_train_loop, train_no_step),
        (checks.check_train_loop, train_zero_grad_late),
        (checks.check_train_loop, train_item_then_backward),
    ],
}
CASES = [(m, check, fn) for m, pairs in BROKEN_WARMUP.items() for check, fn in pairs]


def test_every_warmup_mistake_has_a_broken_variant():
    assert set(BROKEN_WARMUP) == {name for name, m in MISTAKES.items() if m.part in WARMUP_PARTS}


@pytest.mark.parametrize(
    "mistake, check, broken", CASES, ids=[f"{m}-{b.__name__}" for m, _, b in CASES]
)
def test_check_catches_mistake_and_names_it(mistake, check, broken):
    assert_check_names_only(check, broken, mistake)


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_normalise, warmup.normalise),
        (checks.check_normalise, norm_loop),
        (checks.check_normalise, norm_layer_norm),
        (checks.check_pick_log_probs, warmup.pick_log_probs),
        (checks.check_pick_log_probs, pick_loops),
        (checks.check_pick_log_probs, pick_arange),
        (checks.check_mask_future, warmup.mask_future),
        (checks.check_mask_future, mask_where),
        (checks.check_zero_feature, warmup.zero_feature),
        (checks.check_zero_feature, zero_mask),
        (checks.check_scale_rows_, warmup.scale_rows_),
        (checks.check_scale_rows_, scale_loop),
        (checks.check_scale_rows_, scale_mul_),
        (checks.check_split_heads, warmup.split_heads),
        (checks.check_split_heads, split_view),
        (checks.check_mean_over_heads, warmup.mean_over_heads),
        (checks.check_mean_over_heads, mean_plain),
        (checks.check_repeat_positions, warmup.repeat_positions),
        (checks.check_repeat_positions, repeat_expand),
        (checks.check_attention_scores, warmup.attention_scores),
        (checks.check_attention_scores, scores_matmul),
        (checks.check_combine_heads, warmup.combine_heads),
        (checks.check_combine_heads, combine_loop),
        (checks.check_outer_product, warmup.outer_product),
        (checks.check_outer_product, outer_broadcast),
        (checks.check_batched_dot, warmup.batched_dot),
        (checks.check_batched_dot, dot_sum),
        (checks.check_weighted_values, warmup.weighted_values),
        (checks.check_weighted_values, weighted_matmul),
        (checks.check_mean_squared_error, warmup.mean_squared_error),
        (checks.check_mean_squared_error, mse_functional),
        (checks.check_numerical_gradient, warmup.numerical_gradient),
        (checks.check_numerical_gradient, numgrad_restored),
        (checks.check_two_layer_net, warmup.TwoLayerNet),
        (checks.check_two_layer_net, NetSequential),
        (checks.check_train_loop, warmup.train_loop),
        (checks.check_train_loop, train_zero_grad_after_step),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_right_alternatives_pass(check, fn, capsys):
    check(fn)
    assert "correct" in capsys.readouterr().out


def test_an_exercise_stub_shows_its_hint():
    def normalise(x):
        raise NotImplementedError("subtract the mean and divide by the standard deviation")

    with pytest.raises(NotImplementedError, match="subtract the mean"):
        checks.check_normalise(normalise)


@pytest.mark.parametrize(
    "check, given, message",
    [
        (checks.check_normalise, torch.ones(3), "takes your function"),
        (checks.check_two_layer_net, warmup.TwoLayerNet(2, 3, 1), "takes your class itself"),
        (checks.check_train_loop, lambda model, x: [], "calls your function as"),
    ],
)
def test_a_check_given_the_wrong_thing_says_so(check, given, message):
    with pytest.raises(CheckUsageError, match=message):
        check(given)


def test_an_error_of_several_lines_keeps_the_messages_indentation():
    def split_heads(x, n_heads):
        return einops.rearrange(x, "b p (h d) -> b p h d", h=3)  # 3 written in: einops refuses

    with pytest.raises(AssertionError) as err:
        checks.check_split_heads(split_heads)
    first, *rest = str(err.value).split("\n")
    assert "raised EinopsError" in first and len(rest) >= 2, str(err.value)
    assert all(line.startswith("  ") for line in rest), str(err.value)


def test_a_learners_error_is_reported_with_their_line():
    def split_heads(x, n_heads):
        return x.view(x.shape[0], x.shape[1], n_heads, n_heads)  # d_head taken as n_heads

    with pytest.raises(AssertionError, match=r"raised RuntimeError.*\n  In your code: split_heads"):
        checks.check_split_heads(split_heads)


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_mask_future, mask_square_from_last_axis, r"raised RuntimeError"),
        (checks.check_pick_log_probs, pick_squeeze_all, r"returned shape \[\], expected \[1, 1\]"),
        (checks.check_mean_squared_error, mse_keepdim, r"returned shape \[1\], expected \[\]"),
        (
            checks.check_numerical_gradient,
            numgrad_float32,
            "returned torch.float32 for a torch.float64",
        ),
        (checks.check_numerical_gradient, numgrad_autograd, "returned the exact gradient"),
        (
            checks.check_normalise,
            lambda x: warmup.normalise(x.double()),
            r"returned float64, expected float32, the input's dtype",
        ),
        (
            checks.check_two_layer_net,
            NetNoBiases,
            r"holds 40 numbers, expected 50: .*\n.*Things to",
        ),
        (
            checks.check_two_layer_net,
            NetHiddenSize,
            r"holds 20 numbers, expected 50: .*\n.*Things to",
        ),
        (checks.check_two_layer_net, NetDropout, "dropout is random in training mode"),
        (
            checks.check_split_heads,
            lambda x, n_heads: None,
            r"returned None \(is a return missing\?\)",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_other_wrong_code_fails_with_a_message_that_fits_it(check, fn, message):
    """Wrong code the known mistakes do not describe: the check fails, says what is wrong, and
    names no known mistake (rather than a wrong one)."""
    with pytest.raises(AssertionError, match=message) as err:
        check(fn)
    assert "Likely cause" not in str(err.value), str(err.value)


def test_numerical_gradient_refuses_an_integer_x():
    with pytest.raises(TypeError, match="x must be a floating-point tensor .* got torch.int64"):
        warmup.numerical_gradient(lambda x: x.sum(), torch.arange(3))


# ---------------------------------------------------------------- round 8: what the cases hid


class NetOfParametersWithoutReLU(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(d_in, d_hidden) * 0.5)
        self.b1 = nn.Parameter(torch.zeros(d_hidden))
        self.W2 = nn.Parameter(torch.randn(d_hidden, d_out) * 0.5)
        self.b2 = nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        return (x @ self.W1 + self.b1) @ self.W2 + self.b2


class NetOfParametersIgnoringB1(NetOfParametersWithoutReLU):
    def forward(self, x):
        return torch.relu(x @ self.W1) @ self.W2 + self.b2


class NetOfParameters(NetOfParametersWithoutReLU):  # right, without nn.Linear
    def forward(self, x):
        return torch.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2


def mse_with_its_own_backward(predictions, targets):
    loss = ((predictions[:, 0] - targets) ** 2).mean()
    loss.backward()
    return loss


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_two_layer_net, NetOfParametersWithoutReLU, "the net is affine"),
        (checks.check_two_layer_net, NetOfParametersIgnoringB1, "adding 1 to b1"),
        (checks.check_mean_squared_error, mse_with_its_own_backward, "do not call backward"),
        (
            checks.check_mean_squared_error,
            lambda p, t: ((p - t.unsqueeze_(1)) ** 2).mean(),
            "changed the tensor given as its argument 2 in place",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_warmup_checks_refuse_what_their_cases_used_to_hide(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


def test_a_net_of_parameters_passes(capsys):
    checks.check_two_layer_net(NetOfParameters)
    assert "correct" in capsys.readouterr().out


def test_a_loop_one_step_short_is_told_how_many_losses_it_gave():
    def train_loop(model, x, y, steps, lr):  # the lesson's loop, one step too few
        return warmup.train_loop(model, x, y, steps - 1, lr)

    with pytest.raises(AssertionError, match=r"must return the 6 losses.*got 5 losses$"):
        checks.check_train_loop(train_loop)
