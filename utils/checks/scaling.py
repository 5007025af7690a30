"""Notebook 06's checks: rows_for_rank and mean_over_ranks.

rows_for_rank is checked by what every rank gets, over batches of several sizes and several numbers
of ranks: together the shares must hold each row of the batch exactly once, each share the same
number of rows, and each made of the batch's own row ids. Any such split passes (contiguous or
strided: both give the one-process gradient); a failing check names the mistake by its effect.

mean_over_ranks runs in one process with torch.distributed's all_reduce and world size stood in for
(a pretend group of ranks whose other values the check knows), so that summing instead of
averaging, reducing the caller's tensor in place, or not reducing at all each give a wrong answer.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from utils.checks.circuits import _learner_function
from utils.checks.core import call_learner, fail, known_mistake, learner_facing

ROWS_REPEATED = known_mistake(
    "rows_repeated",
    "rows_for_rank",
    "every rank gets the whole batch: the ranks then compute the same gradient, and N processes "
    "do the work of one, N times. Give each rank its own len(rows) // world_size rows: "
    "rows.tensor_split(world_size)[rank], or rows[rank::world_size].",
)
ROWS_SIZE_IS_WORLD = known_mistake(
    "rows_size_is_world",
    "rows_for_rank",
    "each share has world_size rows: the share's size is len(rows) // world_size, so rank r's rows "
    "start at r * (len(rows) // world_size).",
)
ROWS_OVERLAP = known_mistake(
    "rows_overlap",
    "rows_for_rank",
    "some rows go to two ranks (a slice one row too long, or shares that start too close): those "
    "rows then count twice in the gradient. rank r's rows are r * size to (r + 1) * size, end "
    "excluded, with size = len(rows) // world_size.",
)
ROWS_MISSED = known_mistake(
    "rows_missed",
    "rows_for_rank",
    "some rows go to no rank: the ranks together train on less than the batch. Together the shares "
    "must hold every row once: rows.tensor_split(world_size)[rank].",
)
MEAN_SUM = known_mistake(
    "mean_sum",
    "mean_over_ranks",
    "this is the sum over ranks: all_reduce adds the ranks' values (ReduceOp.SUM, its default); "
    "divide by dist.get_world_size() for the mean.",
)
MEAN_IN_PLACE = known_mistake(
    "mean_in_place",
    "mean_over_ranks",
    "the tensor you were given was changed: all_reduce works in place, so reducing `value` itself "
    "replaces the caller's number with the sum. Reduce a copy: total = value.clone().",
)
MEAN_NOT_REDUCED = known_mistake(
    "mean_not_reduced",
    "mean_over_ranks",
    "the other ranks' values are not in it: without dist.all_reduce, each rank only divides its "
    "own value. all_reduce a copy (it sums over ranks), then divide by the world size.",
)
MEAN_USES_RESULT = known_mistake(
    "mean_uses_result",
    "mean_over_ranks",
    "dist.all_reduce returns None (it changes its tensor in place and returns nothing unless "
    "async_op=True): call it on a copy, then use the copy.",
    raises=TypeError,
)


NOSYNC_ON_LAST = known_mistake(
    "nosync_on_last",
    "backward_micro_batches",
    "the last micro-batch runs under no_sync() too, so no backward all-reduces: every rank steps "
    "with its own gradients, and the copies of the model drift apart. Leave the last one outside "
    "no_sync().",
)
NOSYNC_FORWARD_OUTSIDE = known_mistake(
    "nosync_forward_outside",
    "backward_micro_batches",
    "the forward passes of the earlier micro-batches run outside no_sync(): DDP decides during "
    "the forward pass whether the next backward all-reduces, so each of them all-reduces (no_sync "
    "around backward() alone changes nothing). Put the forward and the backward inside it.",
)
NOSYNC_UNSCALED = known_mistake(
    "nosync_unscaled",
    "backward_micro_batches",
    "each micro-batch's loss is not divided by the number of micro-batches: the gradients add up "
    "to the sum over them, n times the mean. Divide each loss by len(micro_batches).",
)


# --------------------------------------------------------------------------- rows_for_rank


@learner_facing
def check_rows_for_rank(fn) -> None:
    _learner_function(fn, "rows_for_rank", ("rows", "rank", "world_size"))
    things = "rows.tensor_split(world_size)[rank]: len(rows) // world_size rows for each rank."
    generator = torch.Generator().manual_seed(0)
    for n_rows, world in ((16, 2), (12, 3), (8, 4), (6, 1), (18, 3)):
        rows = torch.randperm(100, generator=generator)[:n_rows]  # a batch's row ids, shuffled
        shares = []
        for rank in range(world):
            what = f"rows_for_rank(rows [{n_rows}], rank={rank}, world_size={world})"
            got = call_learner(fn, rows.clone(), rank, world, what=what, things_to_check=things)
            if not isinstance(got, torch.Tensor) or got.dim() != 1:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                fail(f"{what} must return a 1-D tensor of row ids, got {shape}", None, things)
            shares.append(got.tolist())
        _judge_shares(rows.tolist(), shares, world, things)
    print("rows_for_rank: correct (16, 12, 8, 6 and 18 rows over 2, 3, 4, 1 and 3 ranks)")


def _judge_shares(rows: list[int], shares: list[list[int]], world: int, things: str) -> None:
    what = f"the {world} ranks' shares of a batch of {len(rows)} rows"
    size = len(rows) // world
    strangers = sorted({r for share in shares for r in share} - set(rows))
    if strangers:
        fail(
            f"{what} hold ids that are not in the batch ({strangers[:3]}): return rows' own "
            "entries (rows[...]), not positions",
            None,
            things,
        )
    if world > 1 and all(sorted(share) == sorted(rows) for share in shares):
        fail(f"{what}: every rank got all {len(rows)} rows", ROWS_REPEATED)
    counts = {r: sum(share.count(r) for share in shares) for r in rows}
    sizes = [len(share) for share in shares]
    if any(len(share) == world != size for share in shares):
        fail(f"{what}: shares of {sizes} rows, expected {size} each", ROWS_SIZE_IS_WORLD)
    if any(count > 1 for count in counts.values()):
        twice = [r for r, count in counts.items() if count > 1]
        fail(
            f"{what}: rows {twice[:3]} are on more than one rank (shares of {sizes})", ROWS_OVERLAP
        )
    if any(count == 0 for count in counts.values()):
        missed = [r for r, count in counts.items() if count == 0]
        fail(f"{what}: rows {missed[:3]} are on no rank (shares of {sizes})", ROWS_MISSED)
    if len(set(sizes)) > 1:
        fail(
            f"{what}: shares of {sizes} rows: every rank must take the same number, or the "
            "averaged gradient weights some rows more",
            None,
            things,
        )


# --------------------------------------------------------------------------- mean_over_ranks


@contextlib.contextmanager
def _pretend_ranks(others: list[torch.Tensor], calls: list):
    """torch.distributed's all_reduce, world size and rank, as if this process were rank 0 of a
    group whose other ranks hold `others`; `calls` collects each all_reduce's tensor."""
    world = len(others) + 1
    saved = {name: getattr(dist, name) for name in ("all_reduce", "get_world_size", "get_rank")}

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        calls.append(tensor)
        stacked = torch.stack([tensor.detach().clone(), *[o.to(tensor) for o in others]])
        if op == dist.ReduceOp.SUM:
            result = stacked.sum(0)
        elif op == dist.ReduceOp.MAX:
            result = stacked.max(0).values
        elif op == dist.ReduceOp.MIN:
            result = stacked.min(0).values
        elif op == getattr(dist.ReduceOp, "AVG", None):
            raise RuntimeError("gloo (CPU) has no ReduceOp.AVG: reduce with SUM, then divide")
        else:
            raise RuntimeError(f"this check's pretend group supports SUM, MAX and MIN, not {op}")
        with torch.no_grad():
            tensor.copy_(result)
        return None

    dist.all_reduce = all_reduce
    dist.get_world_size = lambda group=None: world
    dist.get_rank = lambda group=None: 0
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(dist, name, value)


@learner_facing
def check_mean_over_ranks(fn) -> None:
    _learner_function(fn, "mean_over_ranks", ("value",))
    things = "total = value.clone(); dist.all_reduce(total); return total / dist.get_world_size()"
    cases = [
        (torch.tensor(2.0), [torch.tensor(4.0)]),
        (torch.tensor([1.0, -3.0]), [torch.tensor([5.0, 1.0]), torch.tensor([0.0, 2.0])]),
    ]
    for value, others in cases:
        world = len(others) + 1
        what = f"mean_over_ranks({value.tolist()}) on rank 0 of {world}, the others holding " + (
            f"{[o.tolist() for o in others]}"
        )
        given, calls = value.clone(), []
        with _pretend_ranks(others, calls):
            got = call_learner(
                fn, given, what=what, things_to_check=things, known=[MEAN_USES_RESULT]
            )
        expected = (value + sum(others)) / world
        if not torch.equal(given, value):
            fail(f"{what} changed the value it was given to {given.tolist()}", MEAN_IN_PLACE)
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            kind = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            fail(
                f"{what} must return a tensor of the value's shape {tuple(value.shape)}, got {kind}"
            )
        if torch.allclose(got, expected):
            continue
        mistake = None
        if not calls and torch.allclose(got, value / world):
            mistake = MEAN_NOT_REDUCED
        elif torch.allclose(got, value + sum(others)):
            mistake = MEAN_SUM
        fail(
            f"{what} returned {got.tolist()}, expected the mean {expected.tolist()}",
            mistake,
            things,
        )
    print("mean_over_ranks: correct (2 and 3 pretend ranks; the value you were given unchanged)")


# --------------------------------------------------------------------------- backward_micro_batches


class _RecordingDDP(torch.nn.Module):
    """A stand-in for DistributedDataParallel in one process: it records, at each forward pass,
    whether no_sync() was on, which is what decides if DDP's next backward all-reduces."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module, self.syncing, self.forwards = module, True, []

    @contextlib.contextmanager
    def no_sync(self):
        before, self.syncing = self.syncing, False
        try:
            yield
        finally:
            self.syncing = before

    def forward(self, x):
        self.forwards.append(self.syncing)
        return self.module(x)


@learner_facing
def check_backward_micro_batches(fn) -> None:
    _learner_function(fn, "backward_micro_batches", ("ddp_model", "micro_batches", "loss_fn"))
    things = (
        "each micro-batch but the last: with ddp_model.no_sync(): loss = loss_fn(ddp_model(micro), "
        "micro) / n; loss.backward(); the last one the same, outside no_sync()."
    )
    generator = torch.Generator().manual_seed(0)
    for n in (3, 1):
        torch.manual_seed(0)
        module = torch.nn.Linear(4, 4)
        micro = [torch.randn(2, 4, generator=generator) for _ in range(n)]

        def loss_fn(output, batch):
            return ((output - batch.flip(-1)) ** 2).mean()

        ddp = _RecordingDDP(module)
        what = f"backward_micro_batches(ddp_model, {n} micro-batches, loss_fn)"
        got = call_learner(fn, ddp, micro, loss_fn, what=what, things_to_check=things)
        reference = torch.nn.Linear(4, 4)
        reference.load_state_dict(module.state_dict())
        reference.zero_grad()
        losses = [loss_fn(reference(m), m) / n for m in micro]
        sum(losses).backward()
        expected_flags = [False] * (n - 1) + [True]
        if ddp.forwards and not any(ddp.forwards):
            fail(f"{what}: every forward pass ran under no_sync()", NOSYNC_ON_LAST)
        if ddp.forwards != expected_flags and len(ddp.forwards) == n and all(ddp.forwards):
            fail(f"{what}: every forward pass ran outside no_sync()", NOSYNC_FORWARD_OUTSIDE)
        if ddp.forwards != expected_flags:
            fail(
                f"{what}: forward passes under no_sync(): {[not f for f in ddp.forwards]}, "
                f"expected {[not f for f in expected_flags]}",
                None,
                things,
            )
        grad = module.weight.grad
        if grad is None:
            fail(f"{what}: the model has no gradients afterwards: call backward() on each loss")
        if torch.allclose(grad, n * reference.weight.grad) and n > 1:
            fail(f"{what}: the gradients are {n} times the mean's", NOSYNC_UNSCALED)
        if not torch.allclose(grad, reference.weight.grad, atol=1e-6):
            fail(f"{what}: the gradients differ from the mean loss's", None, things)
        mean = sum(loss.detach() for loss in losses)
        if not isinstance(got, torch.Tensor) or not torch.allclose(got.detach(), mean, atol=1e-6):
            fail(
                f"{what} returned {got!r:.40}, expected the mean loss {mean.item():.4f}",
                None,
                things,
            )
    print("backward_micro_batches: correct (3 micro-batches and 1; no_sync on all but the last)")
