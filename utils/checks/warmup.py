"""Notebook 00's checks: tensors (normalise, pick_log_probs, mask_future, zero_feature,
scale_rows_), einops and einsum (split_heads, mean_over_heads, repeat_positions, attention_scores,
combine_heads, outer_product, batched_dot, weighted_values), autograd (mean_squared_error,
numerical_gradient) and nn.Module (TwoLayerNet, train).

Each function is checked against a reference on several inputs, the first of each chosen so that a
known mistake gives a wrong answer without an error (square matrices where a forgotten keepdim
broadcasts, equal sizes where two axes can be swapped); later inputs have every size different, so
that a right answer cannot pass by chance. Each reference can make the known mistakes (its
`mistake=` argument); a failing check names the first mistake that gives what the learner's code
gave. Every check also fails a function that changes an argument it was meant only to read.
"""

from __future__ import annotations

import copy
import math

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

from utils.printing import print_wrapped
from utils.checks.circuits import _learner_function
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

# --------------------------------------------------------------------------- known mistakes


def _mistake(name: str, part: str, advice: str, raises=None) -> Mistake:
    return known_mistake(name, part, advice, raises)


NORM_NO_KEEPDIM = _mistake(
    "norm_no_keepdim",
    "normalise",
    "keepdim is missing: x.mean(dim=-1) is [batch], and x - [batch] lines it up with x's LAST "
    "axis, not its rows (a square x gives no error, only wrong numbers). Keep the axis: "
    "x.mean(dim=-1, keepdim=True) is [batch, 1], which broadcasts along each row.",
)
NORM_WRONG_DIM = _mistake(
    "norm_wrong_dim",
    "normalise",
    "the mean and standard deviation are taken over the wrong axis: over the batch (dim=0) or "
    "another axis, not over each row's features. Reduce over the last axis, dim=-1, which is "
    "right whatever the number of batch axes.",
)
NORM_UNBIASED = _mistake(
    "norm_unbiased",
    "normalise",
    "x.std() divides by n - 1 (the unbiased estimate): LayerNorm divides by n. Use "
    "x.var(dim=-1, keepdim=True, unbiased=False).sqrt(), or x.std(..., correction=0).",
)
PICK_NOT_SQUEEZED = _mistake(
    "pick_not_squeezed",
    "pick_log_probs",
    "the result keeps gather's last axis, [batch, posn, 1]: remove it with [..., 0] or "
    ".squeeze(-1), to give [batch, posn].",
)
PICK_ALL_PAIRS = _mistake(
    "pick_all_pairs",
    "pick_log_probs",
    "log_probs[..., tokens] picks every token of every row at every position, [batch, posn, "
    "batch, posn]: each position needs its own token only. Use log_probs.gather(-1, "
    "tokens[..., None])[..., 0] (gather's index has the input's number of axes).",
)
PICK_WRONG_DIM = _mistake(
    "pick_wrong_dim",
    "pick_log_probs",
    "gather runs along the wrong axis: the token ids index the vocabulary, the last axis, so "
    "gather(dim=-1, ...), not dim=1 (positions).",
)
MASK_DIAGONAL = _mistake(
    "mask_diagonal",
    "mask_future",
    "the diagonal is masked too (triu() with diagonal=0): a query may attend to its own position. "
    "Mask only the keys after it: torch.ones(q, k, dtype=torch.bool).triu(diagonal=1).",
)
MASK_PAST = _mistake(
    "mask_past",
    "mask_future",
    "the past is masked, not the future (tril instead of triu): row i is query i, column j key j, "
    "and the keys to hide are those with j > i, above the diagonal: triu(diagonal=1).",
)
MASK_ZERO = _mistake(
    "mask_zero",
    "mask_future",
    "the masked scores are 0, not -inf: softmax turns 0 into a weight like any other (exp(0) = 1), "
    "so the future still gets attention. Fill with float('-inf').",
)
MASK_LARGE_NEGATIVE = _mistake(
    "mask_large_negative",
    "mask_future",
    "the masked scores are a large negative number, not -inf: softmax gives them almost no weight, "
    "but not none, and in float16 (-65504 at most) -1e9 overflows anyway. Fill with "
    "float('-inf'), as asked.",
)
MASK_IN_PLACE = _mistake(
    "mask_in_place",
    "mask_future",
    "the scores you were given were changed: masked_fill_ (with an underscore) works in place, and "
    "so does assigning into scores or into another name for it (y = scores; y[mask] = ...). "
    "Whoever called mask_future has lost their own tensor. Use masked_fill (no underscore), or "
    "clone first.",
)
ZERO_IN_PLACE = _mistake(
    "zero_feature_in_place",
    "zero_feature",
    "the activations you were given were changed: y = x (or a slice, or x.view(...)) is the same "
    "memory under another name, so setting y[:, index] = 0 zeros the caller's tensor too. Copy "
    "first: y = x.clone().",
)
ZERO_ROW = _mistake(
    "zero_feature_row",
    "zero_feature",
    "a row was zeroed, not a feature: x[index] is row `index` (one example of the batch); feature "
    "`index` of every row is x[:, index], or x[..., index] for any number of batch axes.",
)
SCALE_NOT_IN_PLACE = _mistake(
    "scale_not_in_place",
    "scale_rows_",
    "the caller's tensor did not change: x = x * factors[:, None] makes a new tensor and points "
    "the local name x at it, which the caller never sees. Change x's own memory: "
    "x *= factors[:, None], x.mul_(...), or x[:] = ...",
)
SCALE_COLUMNS = _mistake(
    "scale_columns",
    "scale_rows_",
    "the columns were scaled, not the rows: x * factors lines factors [n] up with x's last axis. "
    "Give factors the shape [n, 1] (factors[:, None]), so that row i is multiplied by factors[i].",
)
SPLIT_ORDER = _mistake(
    "split_heads_order",
    "split_heads",
    "the pattern splits d_model as (d_head n_heads): the features are laid out head after head, "
    "so head 0 is the first d_head of them: 'batch posn (n_heads d_head) -> batch posn n_heads "
    "d_head'.",
)
SPLIT_HEADS_FIRST = _mistake(
    "split_heads_first",
    "split_heads",
    "the heads and the positions are mixed up: either the result is [batch, n_heads, posn, "
    "d_head], or x was reshaped to (batch, n_heads, posn, d_head) and then transposed, which "
    "splits the positions' memory, not each position's features. Split the last axis only: "
    "x.view(batch, posn, n_heads, d_head), [batch, posn, n_heads, d_head] as in notebook 02.",
)
SPLIT_AXES_SWAPPED = _mistake(
    "split_heads_axes_swapped",
    "split_heads",
    "the last two axes are [d_head, n_heads]: n_heads comes first, [batch, posn, n_heads, d_head] "
    "(x.view(batch, posn, n_heads, -1)).",
)
REDUCE_WRONG_AXIS = _mistake(
    "reduce_wrong_axis",
    "mean_over_heads",
    "the mean is over the wrong axis: pattern is [batch, n_heads, query, key], so the heads are "
    "axis 1: reduce(pattern, 'batch head query key -> batch query key', 'mean').",
)
REDUCE_SUM = _mistake(
    "reduce_sum",
    "mean_over_heads",
    "this is the sum over heads, not the mean: reduce with 'mean' (each row then still sums to 1, "
    "as an attention pattern does).",
)
REPEAT_WRONG_PLACE = _mistake(
    "repeat_wrong_place",
    "repeat_positions",
    "the new batch axis is in the wrong place: the result is [batch, posn, d_model], so "
    "repeat(W_pos, 'posn d_model -> batch posn d_model', batch=batch).",
)
REPEAT_TILED = _mistake(
    "repeat_tiled",
    "repeat_positions",
    "W_pos.repeat(batch, 1) stacks the copies along the existing first axis, [batch * posn, "
    "d_model]: the copies need an axis of their own, [batch, posn, d_model].",
)
SCORES_SUM_HEADS = _mistake(
    "scores_sum_heads",
    "attention_scores",
    "the einsum sums over the heads and keeps d_head: each head has its own scores, a sum over "
    "d_head only: 'batch q head d, batch k head d -> batch head q k'.",
)
SCORES_SWAPPED = _mistake(
    "scores_swapped",
    "attention_scores",
    "the last two axes are swapped, [..., key, query]: row i must be query i's scores for every "
    "key, '-> batch head q k'.",
)
SCORES_SCALED = _mistake(
    "scores_scaled",
    "attention_scores",
    "the scores are scaled (divided by sqrt(d_head)): here only the dot products are asked for; "
    "attention applies the scale afterwards (the cell after the exercises does).",
)
COMBINE_KEEPS_HEADS = _mistake(
    "combine_keeps_heads",
    "combine_heads",
    "the heads are kept, [batch, posn, n_heads, d_model]: the layer's output is the sum over heads "
    "and d_head, 'batch posn head d_head, head d_head d_model -> batch posn d_model'.",
)
COMBINE_MEAN = _mistake(
    "combine_mean",
    "combine_heads",
    "this is the mean over heads: the heads' outputs add up in the residual stream, so sum them.",
)
OUTER_SWAPPED = _mistake(
    "outer_swapped",
    "outer_product",
    "the result is [m, n], v's entries down the rows: u's go down the rows, 'n, m -> n m'.",
)
OUTER_DOT = _mistake(
    "outer_dot",
    "outer_product",
    "this is the dot product (one number): an outer product keeps both axes, out[i, j] = u[i] * "
    "v[j], 'n, m -> n m'.",
)
OUTER_ELEMENTWISE = _mistake(
    "outer_elementwise",
    "outer_product",
    "this is the elementwise product u * v, [n]: an outer product pairs every entry of u with "
    "every entry of v, 'n, m -> n m' (two letters: the axes are different).",
)
DOT_ALL_PAIRS = _mistake(
    "dot_all_pairs",
    "batched_dot",
    "every row of a is dotted with every row of c, [batch, batch]: give both the same batch "
    "letter, 'batch d, batch d -> batch'.",
)
DOT_NO_SUM = _mistake(
    "dot_no_sum",
    "batched_dot",
    "the products are not summed, [batch, d]: leave d out of the output, 'batch d, batch d -> "
    "batch', and einsum sums over it.",
)
WEIGHTED_OVER_QUERIES = _mistake(
    "weighted_over_queries",
    "weighted_values",
    "the sum runs over the queries: the values are indexed by key, so the pattern's key axis (its "
    "last) must share its letter with v's posn: 'batch head q k, batch k head d -> batch q head "
    "d'.",
)
WEIGHTED_HEADS_FIRST = _mistake(
    "weighted_heads_first",
    "weighted_values",
    "the result is [batch, head, q, d_head]: notebook 02's z is [batch, posn, n_heads, d_head], "
    "'-> batch q head d'.",
)
MSE_BROADCAST = _mistake(
    "mse_broadcast",
    "mean_squared_error",
    "predictions [n, 1] - targets [n] broadcasts to [n, n], every prediction against every target, "
    "and the mean of that is a number like any other: no error. Make the shapes equal first: "
    "predictions[:, 0] (or .squeeze(-1)) - targets.",
)
MSE_SUM = _mistake(
    "mse_sum",
    "mean_squared_error",
    "this is the sum of the squared errors: take the mean (.mean()), so that the loss does not "
    "grow with the number of examples.",
)
MSE_ITEM = _mistake(
    "mse_item",
    "mean_squared_error",
    "the result is a Python number: .item() (or float()) takes the value out of autograd's graph, "
    "so loss.backward() has nothing to run on. Return the tensor; call .item() only to print or "
    "log it.",
)
MSE_DETACHED = _mistake(
    "mse_detached",
    "mean_squared_error",
    "the result is detached from the graph (.detach(), torch.no_grad(), or a new tensor made from "
    "its numbers): backward() cannot reach the predictions. Compute it from the tensors you were "
    "given.",
)
NUMGRAD_FORWARD = _mistake(
    "numgrad_forward",
    "numerical_gradient",
    "this is the forward difference (f(x + eps) - f(x)) / eps, whose error shrinks only like eps: "
    "use the central difference (f(x + eps) - f(x - eps)) / (2 * eps), whose error shrinks like "
    "eps ** 2.",
)
NUMGRAD_ONE_EPS = _mistake(
    "numgrad_one_eps",
    "numerical_gradient",
    "the central difference is divided by eps: x + eps and x - eps are 2 * eps apart, so divide "
    "by 2 * eps.",
)
NUMGRAD_FIXED_EPS = _mistake(
    "numgrad_fixed_eps",
    "numerical_gradient",
    "the step is 1e-3 whatever eps the caller passed: a number written in the code instead of the "
    "argument. Use eps (this case passes eps=0.01).",
)
NUMGRAD_CHANGES_X = _mistake(
    "numgrad_changes_x",
    "numerical_gradient",
    "x was changed and not put back: x[i] += eps works on the caller's tensor. Perturb a copy "
    "(x_plus = x.clone(); x_plus[i] += eps), or undo each change exactly.",
)
NET_PLAIN_LIST = _mistake(
    "net_plain_list",
    "TwoLayerNet",
    "parameters() misses layers: a module finds its submodules among its attributes, not inside a "
    "Python list or dict. Assign each layer to self (self.hidden = nn.Linear(...)), or use "
    "nn.ModuleList / nn.Sequential.",
)
NET_NO_RELU = _mistake(
    "net_no_relu",
    "TwoLayerNet",
    "there is no ReLU between the layers: two linear layers in a row are one linear map, whatever "
    "d_hidden is. Apply torch.relu (or nn.ReLU) to the hidden layer's output.",
)
NET_NO_SUPER_INIT = _mistake(
    "net_no_super_init",
    "TwoLayerNet",
    "super().__init__() must run first in __init__, before any layer is assigned: nn.Module sets "
    "up the places where it records parameters and submodules there.",
    raises=AttributeError,
)
NET_LAYERS_IN_FORWARD = _mistake(
    "net_layers_in_forward",
    "TwoLayerNet",
    "layers made inside forward are new, random and untrained on every call, and parameters() "
    "never holds them (an optimizer would train nothing). Make them once, in __init__, and "
    "assign each to self.",
)
TRAIN_NO_ZERO_GRAD = _mistake(
    "train_no_zero_grad",
    "train_loop",
    "the gradients are never zeroed: backward() adds to .grad, so each step uses the sum of every "
    "step's gradients so far. Call optimizer.zero_grad() once per step, before backward().",
)
TRAIN_OPTIMIZER_IN_LOOP = _mistake(
    "train_optimizer_in_loop",
    "train_loop",
    "the optimizer is made anew in every step: AdamW's running averages of the gradients (its "
    "state) start from zero each time. Make it once, before the loop.",
)
TRAIN_ADAM = _mistake(
    "train_adam",
    "train_loop",
    "this is another optimizer (Adam, SGD, or AdamW with other settings): the exercise, like "
    "notebook 03, uses torch.optim.AdamW(model.parameters(), lr=lr), its weight decay (0.01) "
    "decoupled from the gradient.",
)
TRAIN_LOSS_AFTER_STEP = _mistake(
    "train_loss_after_step",
    "train_loop",
    "each recorded loss is the model's after the step, not the one the step was computed from: "
    "record loss.item() of the loss you called backward() on.",
)
TRAIN_NO_UPDATE = _mistake(
    "train_no_update",
    "train_loop",
    "the model's parameters never changed: optimizer.step() is missing; or zero_grad() runs "
    "between backward() and step(), so that the step sees no gradients (the order is "
    "zero_grad(), forward, loss, backward(), step()); or the loss that backward() ran on is not "
    "connected to the model (a new tensor made from loss.item()).",
)
TRAIN_TENSOR_LOSSES = _mistake(
    "train_tensor_losses",
    "train_loop",
    "the losses are tensors, not numbers: one that is not detached keeps its step's whole graph "
    "(every activation) alive, so memory grows with every step, and on a GPU each stays there. "
    "Append loss.item(), a Python number.",
)

# the mistake a check names when the function changed an argument it was meant only to read
CHANGES_INPUT = {
    "mask_future": MASK_IN_PLACE,
    "zero_feature": ZERO_IN_PLACE,
    "numerical_gradient": NUMGRAD_CHANGES_X,
}

# --------------------------------------------------------------------------- references


def _normalise(x, mistake=None):
    if mistake is NORM_NO_KEEPDIM:  # both reductions without keepdim, or just one of them
        out = []
        for std in (x.var(-1, unbiased=False).sqrt(), x.std(-1)):  # with the unbiased std too
            mean, mean_k, std_k = x.mean(-1), x.mean(-1, keepdim=True), std[..., None]
            for m, s in ((mean, std), (mean_k, std), (mean, std_k)):
                try:
                    out.append((x - m) / s)
                except RuntimeError:
                    pass
        return out
    if mistake is NORM_WRONG_DIM:
        return [
            (x - x.mean(d, keepdim=True)) / x.var(d, keepdim=True, unbiased=False).sqrt()
            for d in range(x.dim() - 1)
        ]
    if mistake is NORM_UNBIASED:
        return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    if mistake is not None:
        return None
    return (x - x.mean(-1, keepdim=True)) / x.var(-1, keepdim=True, unbiased=False).sqrt()


def _pick(log_probs, tokens, mistake=None):
    if mistake is PICK_NOT_SQUEEZED:
        return log_probs.gather(-1, tokens[..., None])
    if mistake is PICK_ALL_PAIRS:
        return log_probs[..., tokens]
    if mistake is PICK_WRONG_DIM:
        if int(tokens.max()) >= log_probs.shape[1]:
            return None
        picked = log_probs.gather(1, tokens[..., None])
        return [picked, picked[..., 0]]
    if mistake is not None:
        return None
    return log_probs.gather(-1, tokens[..., None])[..., 0]


def _mask(scores, mistake=None):
    q, k = scores.shape[-2:]
    above = {MASK_DIAGONAL: 0}.get(mistake, 1)
    future = torch.ones(q, k, dtype=torch.bool).triu(above)
    if mistake is MASK_PAST:
        future = torch.ones(q, k, dtype=torch.bool).tril(-1)
    elif mistake is MASK_LARGE_NEGATIVE:
        return [scores.masked_fill(future, value) for value in (-1e9, -1e4, -1e10, -1e30)]
    elif mistake not in (None, MASK_DIAGONAL, MASK_ZERO):
        return None
    return scores.masked_fill(future, 0.0 if mistake is MASK_ZERO else float("-inf"))


def _zero_feature(x, index, mistake=None):
    y = x.clone()
    if mistake is ZERO_ROW:
        y[index] = 0
    elif mistake is None:
        y[..., index] = 0
    else:
        return None
    return y


def _scale_rows(x, factors, mistake=None):
    if mistake is SCALE_NOT_IN_PLACE:
        return x.clone()
    if mistake is SCALE_COLUMNS:
        return x * factors if x.shape[-1] == factors.shape[0] else None
    if mistake is not None:
        return None
    return x * factors[:, None]


def _split_heads(x, n_heads, mistake=None):
    pattern = {
        SPLIT_ORDER: "b p (d h) -> b p h d",
        SPLIT_HEADS_FIRST: "b p (h d) -> b h p d",
        None: "b p (h d) -> b p h d",
    }
    if mistake is SPLIT_AXES_SWAPPED:  # view(batch, posn, -1, n_heads), or the axes permuted
        return [
            einops.rearrange(x, "b p (d h) -> b p d h", h=n_heads),
            einops.rearrange(x, "b p (h d) -> b p d h", h=n_heads),
        ]
    if mistake not in pattern:
        return None
    return einops.rearrange(x, pattern[mistake], h=n_heads)


def _mean_over_heads(pattern, mistake=None):
    if mistake is REDUCE_WRONG_AXIS:
        return [pattern.mean(0), pattern.mean(2), pattern.mean(3)]
    if mistake is REDUCE_SUM:
        return pattern.sum(1)
    return pattern.mean(1) if mistake is None else None


def _repeat_positions(W_pos, batch, mistake=None):
    if mistake is REPEAT_WRONG_PLACE:
        return [
            einops.repeat(W_pos, "p d -> p b d", b=batch),
            einops.repeat(W_pos, "p d -> p d b", b=batch),
        ]
    if mistake is REPEAT_TILED:
        return W_pos.repeat(batch, 1)
    return einops.repeat(W_pos, "p d -> b p d", b=batch) if mistake is None else None


def _attention_scores(q, k, mistake=None):
    if mistake is SCORES_SCALED:
        return einops.einsum(q, k, "b q h d, b k h d -> b h q k") / q.shape[-1] ** 0.5
    out = {
        SCORES_SUM_HEADS: "b q h d, b k h d -> b d q k",
        SCORES_SWAPPED: "b q h d, b k h d -> b h k q",
        None: "b q h d, b k h d -> b h q k",
    }
    return einops.einsum(q, k, out[mistake]) if mistake in out else None


def _combine_heads(z, W_O, mistake=None):
    if mistake is COMBINE_KEEPS_HEADS:
        return einops.einsum(z, W_O, "b p h d, h d m -> b p h m")
    combined = einops.einsum(z, W_O, "b p h d, h d m -> b p m")
    if mistake is COMBINE_MEAN:
        return combined / z.shape[2]
    return combined if mistake is None else None


def _outer(u, v, mistake=None):
    if mistake is OUTER_SWAPPED:
        return einops.einsum(u, v, "n, m -> m n")
    if mistake is OUTER_DOT:
        return (u * v).sum() if u.shape == v.shape else None
    if mistake is OUTER_ELEMENTWISE:
        return u * v if u.shape == v.shape else None
    return einops.einsum(u, v, "n, m -> n m") if mistake is None else None


def _batched_dot(a, c, mistake=None):
    if mistake is DOT_ALL_PAIRS:
        return einops.einsum(a, c, "b d, c d -> b c")
    if mistake is DOT_NO_SUM:
        return a * c
    return einops.einsum(a, c, "b d, b d -> b") if mistake is None else None


def _weighted_values(pattern, v, mistake=None):
    if mistake is WEIGHTED_OVER_QUERIES:
        if pattern.shape[-1] != pattern.shape[-2]:
            return None
        return einops.einsum(pattern, v, "b h k q, b k h d -> b q h d")
    if mistake is WEIGHTED_HEADS_FIRST:
        return einops.einsum(pattern, v, "b h q k, b k h d -> b h q d")
    return einops.einsum(pattern, v, "b h q k, b k h d -> b q h d") if mistake is None else None


def _mse(predictions, targets, mistake=None):
    if mistake is MSE_BROADCAST:
        return ((predictions - targets) ** 2).mean()
    if mistake is MSE_SUM:
        return ((predictions[:, 0] - targets) ** 2).sum()
    return ((predictions[:, 0] - targets) ** 2).mean() if mistake is None else None


def _numerical_gradient(f, x, eps, mistake=None):
    if mistake not in (None, NUMGRAD_FORWARD, NUMGRAD_ONE_EPS, NUMGRAD_FIXED_EPS):
        return None
    if mistake is NUMGRAD_FIXED_EPS:
        eps = 1e-3  # the signature's default, written in
    grad = torch.zeros_like(x)
    flat = grad.view(-1)
    for i in range(x.numel()):
        step = torch.zeros_like(x).view(-1)
        step[i] = eps
        step = step.view_as(x)
        if mistake is NUMGRAD_FORWARD:
            flat[i] = (f(x + step) - f(x)) / eps
        else:
            divisor = eps if mistake is NUMGRAD_ONE_EPS else 2 * eps
            flat[i] = (f(x + step) - f(x - step)) / divisor
    return grad


# --------------------------------------------------------------------------- shared machinery


def _shape(value) -> str:
    if isinstance(value, Tensor):
        return f"[{', '.join(map(str, value.shape))}]"
    return repr(value) if not callable(value) else getattr(value, "__name__", "f")


def _same(a, b) -> bool:
    """Two tensors of one shape and (close) values; inf where the other has the same inf."""
    return (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-4, atol=1e-5)
    )


def _difference(what: str, got, expected: Tensor) -> str:
    """What is wrong with got, in one line: its type, its shape, or its largest difference."""
    if got is None:
        return f"{what} returned None (is a return missing?), expected a tensor of shape " + (
            _shape(expected)
        )
    if not isinstance(got, Tensor):
        shown = " ".join(repr(got).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{what} returned a {type(got).__name__}, {shown}; expected a tensor of shape " + (
            _shape(expected)
        )
    if got.shape != expected.shape:
        return f"{what} returned shape {_shape(got)}, expected {_shape(expected)}"
    if got.dim() == 0:
        return f"{what} returned {got.item():.6g}, expected {expected.item():.6g}"
    bad = (got.detach().double() - expected.double()).abs().nan_to_num(math.inf)
    both_inf = torch.isinf(got.detach()) & (got.detach() == expected)
    bad[both_inf] = 0.0
    worst = tuple(int(i) for i in torch.unravel_index(bad.argmax(), bad.shape))
    return (
        f"{what}: entry {list(worst)} is {got[worst].item():.6g}, expected "
        f"{expected[worst].item():.6g}"
    )


def _check_cases(fn, name, params, cases, reference, things, in_place=False) -> None:
    """fn(*args) against reference(*args) for each case: its result (or, in_place, its first
    argument afterwards), and that it changed no argument it was meant only to read."""
    _learner_function(fn, name, params)
    mistakes = mistakes_in(name)
    for args in cases:
        what = f"{name}({', '.join(map(_shape, args))})"
        given = [a.clone() if isinstance(a, Tensor) else a for a in args]
        got = call_learner(fn, *given, what=what, things_to_check=things)
        if in_place:
            got = given[0]
        expected = reference(*args)
        changed = [
            p
            for p, a, g in zip(params, args, given)
            if isinstance(a, Tensor) and not (in_place and g is given[0]) and not _equal(a, g)
        ]
        if changed:
            fail(
                f"{what} changed its argument {changed[0]}, which it should only read",
                CHANGES_INPUT.get(name),
                "work on a copy (.clone()), or use the functions without a trailing underscore.",
            )
        if not _same(got, expected):
            mistake = recognise(got, mistakes, lambda m: reference(*args, mistake=m), _same)
            fail(_difference(what, got, expected), mistake, things)
        if isinstance(got, Tensor) and got.dtype != expected.dtype:
            fail(
                f"{what} returned {str(got.dtype).removeprefix('torch.')}, expected "
                f"{str(expected.dtype).removeprefix('torch.')}, the input's dtype: no .double(), "
                ".float() or torch.tensor(...) of Python numbers on the way"
            )


def _equal(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)


def _randn(*shape, seed: int, dtype=torch.float32) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- tensors


@learner_facing
def check_normalise(fn) -> None:
    cases = [
        (_randn(4, 4, seed=0) * 3 + 1,),  # square: a forgotten keepdim gives no error
        (_randn(3, 5, seed=1) * 2 - 1,),
        (_randn(2, 3, 6, seed=2),),  # two batch axes: dim=1 is not the features' axis
    ]
    _check_cases(
        fn,
        "normalise",
        ("x",),
        cases,
        _normalise,
        "(x - x.mean(dim=-1, keepdim=True)) / x.var(dim=-1, keepdim=True, unbiased=False).sqrt()",
    )
    print_wrapped("normalise: correct ([4, 4], [3, 5] and [2, 3, 6] inputs)")


@learner_facing
def check_pick_log_probs(fn) -> None:
    shapes = [(2, 7, 5), (3, 4, 11), (1, 1, 6)]  # the last: squeeze() would drop every axis
    log_probs = [_randn(*shape, seed=3 + i).log_softmax(-1) for i, shape in enumerate(shapes)]
    tokens = [
        torch.randint(0, v, (b, p), generator=torch.Generator().manual_seed(5 + i))
        for i, (b, p, v) in enumerate(shapes)
    ]
    _check_cases(
        fn,
        "pick_log_probs",
        ("log_probs", "tokens"),
        list(zip(log_probs, tokens)),
        _pick,
        "log_probs.gather(-1, tokens[..., None]) is [batch, posn, 1]; then [..., 0].",
    )
    print_wrapped("pick_log_probs: correct ([2, 7, 5], [3, 4, 11] and [1, 1, 6] log-probabilities)")


@learner_facing
def check_mask_future(fn) -> None:
    cases = [(_randn(2, 3, 5, 5, seed=7),), (_randn(4, 4, seed=8),), (_randn(1, 6, 6, seed=9),)]
    cases += [(_randn(2, 3, 5, seed=70),)]  # 3 queries, 5 keys: the mask is [query, key]
    _check_cases(
        fn,
        "mask_future",
        ("scores",),
        cases,
        _mask,
        "scores.masked_fill(torch.ones(q, k, dtype=torch.bool).triu(diagonal=1), float('-inf'))",
    )
    print_wrapped(
        "mask_future: correct (2, 3 and 4 axes, 3 queries with 5 keys; your input unchanged)"
    )


@learner_facing
def check_zero_feature(fn) -> None:
    cases = [(_randn(4, 6, seed=10), 2), (_randn(2, 3, 5, seed=11), 0), (_randn(3, 3, seed=12), 1)]
    _check_cases(
        fn,
        "zero_feature",
        ("activations", "index"),
        cases,
        _zero_feature,
        "a copy (activations.clone()) with [..., index] set to 0; the input unchanged.",
    )
    print_wrapped(
        "zero_feature: correct (a new tensor each time; the activations you were given unchanged)"
    )


@learner_facing
def check_scale_rows_(fn) -> None:
    cases = [
        (_randn(4, 4, seed=13), _randn(4, seed=14)),
        (_randn(3, 5, seed=15), _randn(3, seed=16)),
    ]
    _check_cases(
        fn,
        "scale_rows_",
        ("x", "factors"),
        cases,
        _scale_rows,
        "x *= factors[:, None] (in place: the caller's x changes).",
        in_place=True,
    )
    print_wrapped("scale_rows_: correct (x changed in place, [4, 4] and [3, 5])")


# --------------------------------------------------------------------------- einops and einsum


@learner_facing
def check_split_heads(fn) -> None:
    cases = [
        (_randn(2, 3, 12, seed=17), 3),
        (_randn(1, 4, 8, seed=18), 4),
        (_randn(2, 5, 6, seed=19), 2),
    ]
    _check_cases(
        fn,
        "split_heads",
        ("x", "n_heads"),
        cases,
        _split_heads,
        "einops.rearrange(x, 'batch posn (n_heads d_head) -> batch posn n_heads d_head', "
        "n_heads=n_heads)",
    )
    print_wrapped("split_heads: correct (3, 4 and 2 heads)")


@learner_facing
def check_mean_over_heads(fn) -> None:
    pattern = _randn(3, 3, 4, 4, seed=20).softmax(-1)  # batch = n_heads: a wrong axis is silent
    cases = [(pattern,), (_randn(2, 4, 5, 5, seed=21).softmax(-1),)]
    _check_cases(
        fn,
        "mean_over_heads",
        ("pattern",),
        cases,
        _mean_over_heads,
        "einops.reduce(pattern, 'batch head q k -> batch q k', 'mean')",
    )
    print_wrapped("mean_over_heads: correct ([3, 3, 4, 4] and [2, 4, 5, 5] patterns)")


@learner_facing
def check_repeat_positions(fn) -> None:
    cases = [(_randn(4, 3, seed=22), 2), (_randn(5, 6, seed=23), 3)]
    _check_cases(
        fn,
        "repeat_positions",
        ("W_pos", "batch"),
        cases,
        _repeat_positions,
        "einops.repeat(W_pos, 'posn d_model -> batch posn d_model', batch=batch)",
    )
    print_wrapped("repeat_positions: correct ([4, 3] twice, [5, 6] three times)")


@learner_facing
def check_attention_scores(fn) -> None:
    cases = [
        (_randn(2, 4, 3, 3, seed=24), _randn(2, 4, 3, 3, seed=25)),  # n_heads = d_head, q = k
        (_randn(1, 5, 2, 4, seed=26), _randn(1, 6, 2, 4, seed=27)),
    ]
    _check_cases(
        fn,
        "attention_scores",
        ("q", "k"),
        cases,
        _attention_scores,
        "einops.einsum(q, k, 'batch q_posn head d_head, batch k_posn head d_head -> batch head "
        "q_posn k_posn')",
    )
    print_wrapped("attention_scores: correct (self-attention shapes and 5 queries against 6 keys)")


@learner_facing
def check_combine_heads(fn) -> None:
    cases = [
        (_randn(2, 3, 4, 5, seed=28), _randn(4, 5, 6, seed=29)),
        (_randn(1, 2, 3, 3, seed=30), _randn(3, 3, 3, seed=31)),
    ]
    _check_cases(
        fn,
        "combine_heads",
        ("z", "W_O"),
        cases,
        _combine_heads,
        "einops.einsum(z, W_O, 'batch posn head d_head, head d_head d_model -> batch posn "
        "d_model')",
    )
    print_wrapped("combine_heads: correct (4 heads into 6 features, 3 into 3)")


@learner_facing
def check_outer_product(fn) -> None:
    cases = [(_randn(4, seed=32), _randn(4, seed=33)), (_randn(3, seed=34), _randn(5, seed=35))]
    _check_cases(
        fn,
        "outer_product",
        ("u", "v"),
        cases,
        _outer,
        "einops.einsum(u, v, 'n, m -> n m'), or u[:, None] * v[None, :]",
    )
    print_wrapped("outer_product: correct ([4] with [4], [3] with [5])")


@learner_facing
def check_batched_dot(fn) -> None:
    cases = [
        (_randn(3, 3, seed=36), _randn(3, 3, seed=37)),
        (_randn(4, 6, seed=38), _randn(4, 6, seed=39)),
    ]
    _check_cases(
        fn,
        "batched_dot",
        ("a", "c"),
        cases,
        _batched_dot,
        "einops.einsum(a, c, 'batch d, batch d -> batch'), or (a * c).sum(-1)",
    )
    print_wrapped("batched_dot: correct ([3, 3] and [4, 6] rows)")


@learner_facing
def check_weighted_values(fn) -> None:
    cases = [
        (_randn(2, 3, 4, 4, seed=40).softmax(-1), _randn(2, 4, 3, 5, seed=41)),
        (_randn(1, 2, 3, 3, seed=42).softmax(-1), _randn(1, 3, 2, 2, seed=43)),
    ]
    _check_cases(
        fn,
        "weighted_values",
        ("pattern", "v"),
        cases,
        _weighted_values,
        "einops.einsum(pattern, v, 'batch head q k, batch k head d_head -> batch q head d_head')",
    )
    print_wrapped("weighted_values: correct (3 heads of 4 positions, 2 heads of 3)")


# --------------------------------------------------------------------------- autograd


@learner_facing
def check_mean_squared_error(fn) -> None:
    _learner_function(fn, "mean_squared_error", ("predictions", "targets"))
    things = "((predictions[:, 0] - targets) ** 2).mean(), a tensor autograd can go back through."
    for n, seed in ((5, 44), (3, 45)):
        predictions = _randn(n, 1, seed=seed).requires_grad_()
        targets = _randn(n, seed=seed + 100)
        what = f"mean_squared_error(predictions [{n}, 1], targets [{n}])"
        got = call_learner(
            fn, predictions, targets, what=what, things_to_check=things, leaves_unchanged="all"
        )
        expected = _mse(predictions, targets).detach()
        number = _as_tensor(got)
        if number is None or number.shape != ():
            fail(
                _difference(what, got, expected) + " (one number: a 0-d tensor, as .mean() with "
                "no dim gives)",
                None,
                things,
            )
        if not _same(number, expected):
            mistake = recognise(
                number,
                mistakes_in("mean_squared_error"),
                lambda m: _mse(predictions, targets, m),
                _same,
            )
            fail(_difference(what, number, expected), mistake, things)
        if not isinstance(got, Tensor):
            fail(
                f"{what} returned a {type(got).__name__}, {got:.4g}: right, but no gradient",
                MSE_ITEM,
            )
        if got.grad_fn is None:
            fail(
                f"{what} returned the right value, but a tensor with no graph behind it",
                MSE_DETACHED,
            )
        try:
            got.sum().backward()
        except RuntimeError as err:  # the learner's code already ran backward on this graph
            fail(
                f"{what}: backward() on the loss it returned failed ({str(err)[:60]}...): "
                "do not call backward() inside; return the loss, and the caller runs backward"
            )
        want = 2 * (predictions.detach()[:, 0] - targets)[:, None] / n
        if predictions.grad is None or not _same(predictions.grad, want):
            fail(
                f"{what}: the gradient with respect to predictions is not "
                "2 * (predictions - targets) / n",
                None,
                things,
            )
    print_wrapped(
        "mean_squared_error: correct (its value, and backward() gives the right gradient)"
    )


def _as_tensor(value) -> Tensor | None:
    """A Python number as a 0-d tensor, to compare it; a tensor as it is; None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value))
    return value if isinstance(value, Tensor) else None


@learner_facing
def check_numerical_gradient(fn) -> None:
    _learner_function(fn, "numerical_gradient", ("f", "x", "eps"))
    w = _randn(2, 3, seed=46, dtype=torch.float64)

    def cubes(x):
        return (x**3).sum()

    def weighted_sine(x):
        return (x.sin() * w).sum()

    def fast_sine(x):  # a large third derivative: eps 1e-3 and 0.01 give clearly different results
        return (10 * x).sin().sum()

    cases = [
        (cubes, _randn(3, seed=47, dtype=torch.float64) + 1, 1e-3),
        (weighted_sine, _randn(2, 3, seed=48, dtype=torch.float64), 1e-3),
        (fast_sine, _randn(4, seed=49, dtype=torch.float64), 1e-2),  # is the eps passed used?
    ]
    for f, x, eps in cases:
        what = f"numerical_gradient({f.__name__}, {_shape(x)}, eps={eps})"
        given = x.clone()
        got = call_learner(fn, f, given, eps, what=what)
        if not _equal(x, given):
            fail(f"{what} changed x, which it should only read", NUMGRAD_CHANGES_X)
        expected = _numerical_gradient(f, x, eps)
        if isinstance(got, Tensor) and got.dtype != x.dtype:
            fail(
                f"{what} returned {got.dtype} for a {x.dtype} x: float32 keeps about 7 digits, "
                "and a difference of two nearly equal values loses most of them. Keep x's dtype "
                "(torch.zeros_like(x))."
            )
        if not _close_grad(got, expected):
            mistake = recognise(
                got,
                mistakes_in("numerical_gradient"),
                lambda m: _numerical_gradient(f, x, eps, m),
                _close_grad,
            )
            if mistake is None and isinstance(got, Tensor) and _same(got, torch.func.grad(f)(x)):
                fail(
                    f"{what} returned the exact gradient (autograd's, or worked out by hand): the "
                    "exercise asks for the finite difference itself, which differs from it after "
                    "about six digits. The cell below compares the two."
                )
            fail(
                _difference(what, got, expected),
                mistake,
                "for each entry i: (f(x + eps at i) - f(x - eps at i)) / (2 * eps), on copies of "
                "x.",
            )
    print_wrapped(
        "numerical_gradient: correct (three functions, [3], [2, 3] and [4] inputs, eps 1e-3 and "
        "0.01, x unchanged)"
    )


def _runs_without_parameters(model, x) -> bool:
    """A model with no parameters that still gives a tensor: its layers are made inside forward."""
    try:
        with torch.no_grad():
            return isinstance(model(x), Tensor)
    except Exception:  # a diagnosis only: the check's own failure says what is wrong
        return False


def _close_grad(a, b) -> bool:
    return (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and torch.allclose(a.detach().double(), b.double(), rtol=1e-6, atol=1e-8)
    )


# --------------------------------------------------------------------------- nn.Module


def _linears(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@learner_facing
def check_two_layer_net(cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise CheckUsageError(
            "check_two_layer_net takes your class itself, e.g. checks.check_two_layer_net("
            "TwoLayerNet); got "
            + (
                f"an instance of {type(cls).__name__} (give the class itself)"
                if isinstance(cls, torch.nn.Module)
                else f"a {type(cls).__name__}"
            )
        )
    d_in, d_hidden, d_out = 3, 8, 2
    torch.manual_seed(0)
    what = f"TwoLayerNet({d_in}, {d_hidden}, {d_out})"
    model = call_learner(cls, d_in, d_hidden, d_out, what=what, known=[NET_NO_SUPER_INIT])
    expected_count = d_in * d_hidden + d_hidden + d_hidden * d_out + d_out
    count = sum(p.numel() for p in model.parameters())
    x = _randn(5, d_in, seed=49)
    if count != expected_count:
        hidden_in_a_list = any(
            isinstance(value, (list, tuple, dict))
            and any(
                isinstance(item, torch.nn.Module)
                for item in (value.values() if isinstance(value, dict) else value)
            )
            for name, value in vars(model).items()
            if not name.startswith("_")  # nn.Module's own records, _modules among them
        )
        fail(
            f"{what}.parameters() holds {count} numbers, expected {expected_count}: nn.Linear("
            f"{d_in}, {d_hidden}) and nn.Linear({d_hidden}, {d_out}), with their biases, "
            f"{d_in * d_hidden} + {d_hidden} + {d_hidden * d_out} + {d_out}",
            NET_PLAIN_LIST
            if hidden_in_a_list
            else NET_LAYERS_IN_FORWARD
            if count == 0 and _runs_without_parameters(model, x)
            else None,
            "the two layers' sizes, and their biases (nn.Linear has one unless bias=False).",
        )
    with torch.no_grad():
        first = call_learner(model, x, what=f"{what}(x [5, {d_in}])")
        second = model(x)
    if not isinstance(first, Tensor) or first.shape != (5, d_out):
        fail(f"{what}(x [5, {d_in}]) must return [5, {d_out}], got {_shape(first)}")
    if not torch.equal(first, second):
        if any(isinstance(m, torch.nn.Dropout) for m in model.modules()):
            fail(
                f"{what}: two calls on the same x differ: dropout is random in training mode. "
                "The exercise has no dropout: the hidden layer, ReLU, the output layer."
            )
        fail(f"{what}: two calls on the same x differ", NET_LAYERS_IN_FORWARD)
    layers = _linears(model)
    if len(layers) == 2:
        hidden, out = sorted(layers, key=lambda m: m.in_features != d_in)
        with torch.no_grad():
            expected = out(torch.relu(hidden(x)))
            linear = out(hidden(x))
        if not _same(first, expected):
            mistake = NET_NO_RELU if _same(first, linear) else None
            fail(
                _difference(f"{what}(x)", first, expected),
                mistake,
                "forward: the hidden layer, torch.relu, then the output layer.",
            )
    # whatever the layers are made of (nn.Linear or nn.Parameter): each parameter shapes the
    # output, and the output is not an affine function of x
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            saved = parameter.clone()
            parameter.add_(1.0)
            used = not torch.allclose(model(x), first)
            parameter.copy_(saved)
            if not used:
                fail(
                    f"{what}: adding 1 to {name} leaves the output as it was: forward never uses "
                    "it (every weight and bias of both layers takes part)"
                )
        a, b = _randn(5, d_in, seed=50), _randn(5, d_in, seed=51)
        if torch.allclose(model((a + b) / 2), (model(a) + model(b)) / 2, atol=1e-5):
            fail(
                f"{what}: the output of the midpoint of two inputs is the midpoint of their "
                "outputs: the net is affine, with nothing non-linear between the layers",
                NET_NO_RELU,
            )
    print_wrapped(
        f"TwoLayerNet: correct ({count} parameters, all registered; relu between the layers)"
    )


def _reference_train(model, x, y, steps, lr, mistake=None):
    """(the losses, the trained copy of model); with mistake, a list of (losses, model) for each
    way of making it."""
    if mistake is TRAIN_ADAM:
        makers = [
            lambda p: torch.optim.Adam(p, lr=lr),
            lambda p: torch.optim.SGD(p, lr=lr),
            lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.0),
        ]
        return [_reference_train_with(model, x, y, steps, make, None) for make in makers]
    run = _reference_train_with(model, x, y, steps, lambda p: torch.optim.AdamW(p, lr=lr), mistake)
    return [run] if mistake is not None else run


def _reference_train_with(model, x, y, steps, make_optimizer, mistake):
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model.parameters())
    losses = []
    for _ in range(steps):
        if mistake is TRAIN_OPTIMIZER_IN_LOOP:
            optimizer = make_optimizer(model.parameters())
        if mistake is not TRAIN_NO_ZERO_GRAD:
            optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if mistake is TRAIN_LOSS_AFTER_STEP:
            with torch.no_grad():
                loss = F.mse_loss(model(x), y)
        losses.append(loss.item())
    return losses, model


@learner_facing
def check_train_loop(fn) -> None:
    _learner_function(fn, "train_loop", ("model", "x", "y", "steps", "lr"))
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x, y = _randn(16, 3, seed=50), _randn(16, 2, seed=51)
    steps, lr = 6, 0.05
    start = copy.deepcopy(model)  # the mistakes are reproduced from here: train changes model
    expected, trained = _reference_train(start, x, y, steps, lr)
    what = f"train_loop(model, x [16, 3], y [16, 2], steps={steps}, lr={lr})"
    got = call_learner(fn, model, x, y, steps, lr, what=what)
    if isinstance(got, (list, tuple)) and any(isinstance(v, Tensor) for v in got):
        fail(f"{what} returned a list of tensors", TRAIN_TENSOR_LOSSES)
    if not (isinstance(got, (list, tuple)) and len(got) == steps):
        got_what = (
            f"{len(got)} losses" if isinstance(got, (list, tuple)) else _shape(got)
        )  # a count, not every float of a list one step short
        fail(f"{what} must return the {steps} losses, one float per step, got {got_what}")
    if all(torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters())):
        fail(f"{what}: the model you gave it is exactly as it was", TRAIN_NO_UPDATE)

    def same_losses(losses):
        return all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(got, losses))

    if not same_losses(expected):
        mistake = next(
            (
                m
                for m in mistakes_in("train_loop")
                if m not in (TRAIN_TENSOR_LOSSES, TRAIN_NO_UPDATE)
                and any(
                    same_losses(losses) for losses, _ in _reference_train(start, x, y, steps, lr, m)
                )
            ),
            None,
        )
        fail(
            f"{what}: losses {[round(v, 4) for v in got]}, expected "
            f"{[round(v, 4) for v in expected]}",
            mistake,
            "AdamW(model.parameters(), lr=lr) made once; each step: zero_grad(), "
            "F.mse_loss(model(x), y), backward(), step(); append loss.item().",
        )
    for (name, p), q in zip(model.named_parameters(), trained.parameters()):
        if not _same(p, q):
            fail(
                f"{what}: the losses are right, but the model's {name} is not what the "
                "training gives: train the model you were given, in place"
            )
    print_wrapped(
        f"train_loop: correct ({steps} steps of AdamW: the reference's losses and weights)"
    )
