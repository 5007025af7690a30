"""Notebook 06's checks: rows_for_rank, mean_over_ranks and backward_micro_batches.

rows_for_rank is checked by what every rank gets, over batches of several sizes and several numbers
of ranks (each dividing the batch, as the trainer requires): together the shares must hold each row
of the batch exactly once, each share the same number of rows, of the batch's own integer ids. Any
such split passes (contiguous or strided: both give the one-process gradient).

mean_over_ranks runs in one process, with torch.distributed's collectives and world size stood in
for: for each rank in turn, the other ranks run the learner's function up to their first collective
(what they hand over is all that reaches the rank checked), then that rank runs to the end, so that
every rank's result is checked, whatever the function does before or after its all_reduce (or
all_gather, or async all_reduce and wait()).

backward_micro_batches runs with a stand-in for DDP that records, at each forward pass, whether
no_sync() was on: that is what decides whether DDP's next backward all-reduces.
"""

from __future__ import annotations

import contextlib
import copy
import os

import torch
import torch.distributed as dist

from utils.printing import print_wrapped
from utils.checks.circuits import _learner_function
from utils.checks.core import call_learner, fail, known_mistake, learner_facing

ROWS_REPEATED = known_mistake(
    "rows_repeated",
    "rows_for_rank",
    "every rank gets the whole batch: the ranks then compute the same gradient, and N processes "
    "do the work of one, N times. Give each rank its own len(rows) // world_size rows: "
    "rows[rank * size : (rank + 1) * size].",
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
    "must hold every row once: rows[rank * size : (rank + 1) * size], size = len(rows) // "
    "world_size.",
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
    "replaces the caller's number with the sum. Reduce a copy: total = value.detach().clone().",
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
    "the forward pass whether the backward after it all-reduces, so their gradients are "
    "all-reduced too (no_sync around backward() alone changes nothing). Put at least the forward "
    "inside it, and the backward with it.",
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
                shape = (
                    ("a 0-d tensor (one row id)" if got.dim() == 0 else f"shape {tuple(got.shape)}")
                    if isinstance(got, torch.Tensor)
                    else type(got).__name__
                )
                fail(f"{what} must return a 1-D tensor of row ids, got {shape}", None, things)
            if got.dtype != rows.dtype:
                fail(
                    f"{what} returned {got.dtype} ids: keep rows' own {rows.dtype} (float ids "
                    "cannot index the training sequences)"
                )
            shares.append(got.tolist())
        _judge_shares(rows.tolist(), shares, world, things)
    print_wrapped("rows_for_rank: correct (16, 12, 8, 6 and 18 rows over 2, 3, 4, 1 and 3 ranks)")


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


class _Recorded(Exception):
    """Raised inside a pretend rank's all_reduce once its input is recorded: that rank stops."""


class _Work:
    """What all_reduce(async_op=True) returns: the result lands in the tensor at wait()."""

    def __init__(self, finish):
        self._finish = finish

    def wait(self, timeout=None):
        self._finish()
        return True

    def is_completed(self) -> bool:
        return False


def _reduce(op, tensors: list[torch.Tensor]) -> torch.Tensor:
    stacked = torch.stack(tensors)
    if op == dist.ReduceOp.SUM:
        return stacked.sum(0)
    if op == dist.ReduceOp.MAX:
        return stacked.max(0).values
    if op == dist.ReduceOp.MIN:
        return stacked.min(0).values
    if op == getattr(dist.ReduceOp, "AVG", None):
        raise RuntimeError("gloo (CPU) has no ReduceOp.AVG: reduce with SUM, then divide")
    raise RuntimeError(f"this check's pretend group supports SUM, MAX and MIN, not {op}")


@contextlib.contextmanager
def _pretend_rank(
    rank: int, world: int, known: list[dict], calls: list, record: bool, scope: dict | None = None
):
    """torch.distributed's all_reduce, all_gather (also into one tensor), reduce, broadcast,
    world size and rank, as if this process were `rank` of `world`. known[i] maps each rank to
    what it handed to its i-th collective; a collective beyond those known raises _Recorded with
    this rank's input when `record`, else takes zeros from the others (they handed nothing
    over). `scope`, the learner's globals: the same stand-ins for those they imported by name
    (from torch.distributed import all_reduce); RANK and WORLD_SIZE are set in os.environ too,
    as torchrun sets them."""

    def inputs(tensor):
        i = len(calls) - 1
        if i >= len(known) and record:
            raise _Recorded(tensor.detach().clone())
        theirs = known[i] if i < len(known) else {}  # beyond those known: nothing handed over
        return [
            tensor.detach().clone() if r == rank else theirs.get(r, torch.zeros_like(tensor))
            for r in range(world)
        ]

    def collective(tensor, async_op, result, into):
        """Run a collective: `result(everyone's inputs)` copied into the tensors `into` gives."""
        calls.append((tensor, async_op))
        parts = inputs(tensor)

        def finish():
            with torch.no_grad():
                for out, value in into(result(parts)):
                    out.copy_(value)

        if async_op:
            return _Work(finish)
        finish()
        return None

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        return collective(
            tensor, async_op, lambda parts: _reduce(op, parts), lambda r: [(tensor, r)]
        )

    def all_gather(tensor_list, tensor, group=None, async_op=False):
        return collective(tensor, async_op, lambda parts: parts, lambda r: zip(tensor_list, r))

    def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
        gathered = lambda parts: torch.stack(parts).reshape(output_tensor.shape)  # noqa: E731
        return collective(input_tensor, async_op, gathered, lambda r: [(output_tensor, r)])

    def reduce(tensor, dst, op=dist.ReduceOp.SUM, group=None, async_op=False):
        into = lambda r: [(tensor, r)] if rank == dst else []  # noqa: E731 (dst alone gets it)
        return collective(tensor, async_op, lambda parts: _reduce(op, parts), into)

    def broadcast(tensor, src, group=None, async_op=False):
        return collective(tensor, async_op, lambda parts: parts[src], lambda r: [(tensor, r)])

    stand_ins = {
        "all_reduce": all_reduce,
        "all_gather": all_gather,
        "all_gather_into_tensor": all_gather_into_tensor,
        "reduce": reduce,
        "broadcast": broadcast,
        "get_world_size": lambda group=None: world,
        "get_rank": lambda group=None: rank,
        "is_initialized": lambda: True,
    }
    saved = {name: getattr(dist, name) for name in stand_ins}
    scope = {} if scope is None else scope
    imported = {name for name in saved if name in scope and scope[name] is saved[name]}
    environ = {key: os.environ.get(key) for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    for name, stand_in in stand_ins.items():
        setattr(dist, name, stand_in)
        if name in imported:
            scope[name] = stand_in
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(dist, name, value)
            if name in imported:
                scope[name] = value
        for key, value in environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _globals(fn) -> dict | None:
    return getattr(fn, "__globals__", None)


def _run_as_ranks(fn, values: list[torch.Tensor], what: str, things: str, depth: int = 4):
    """Each rank's result, every collective fed what the other ranks handed to it: the ranks run
    fn up to their first collective (recording its input), then again through it to their second,
    and so on (up to `depth` collectives); then each rank runs to the end. Returns (results, the
    values afterwards, whether any collective ran, whether any ran with async_op=True)."""
    world, known = len(values), []
    for _ in range(depth):
        handed = {}
        for rank in range(world):
            with _pretend_rank(rank, world, known, [], True, _globals(fn)):
                try:
                    fn(values[rank].clone())
                except _Recorded as recorded:
                    handed[rank] = recorded.args[0]
                except Exception:
                    pass  # it fails again, and is reported, when it runs as the rank checked
        if not handed:
            break  # no rank reaches another collective
        known.append(handed)
    results, after, reduced, asynchronous = [], [], False, False
    for rank in range(world):
        given, calls = values[rank].clone(), []
        with _pretend_rank(rank, world, known, calls, False, _globals(fn)):
            where = f"{what}, as rank {rank}"
            results.append(
                call_learner(
                    fn, given, what=where, things_to_check=things, known=[MEAN_USES_RESULT]
                )
            )
        after.append(given)
        reduced = reduced or bool(calls)
        asynchronous = asynchronous or any(async_op for _, async_op in calls)
    return results, after, reduced, asynchronous


def _rounded(t: torch.Tensor):
    values = t.detach().tolist()
    return [round(v, 4) for v in values] if isinstance(values, list) else round(values, 4)


@learner_facing
def check_mean_over_ranks(fn) -> None:
    _learner_function(fn, "mean_over_ranks", ("value",))
    things = (
        "total = value.detach().clone(); dist.all_reduce(total); "
        "return total / dist.get_world_size()"
    )
    cases = [
        [torch.tensor([1.0, -3.0]), torch.tensor([5.5, 1.0]), torch.tensor([0.0, 2.5])],
        [torch.tensor(2.0), torch.tensor(4.5)],
    ]
    close = lambda a, b: torch.allclose(a.double(), b.double())  # noqa: E731 (float64 is right)
    for values in cases:
        world = len(values)
        what = f"mean_over_ranks on {world} ranks holding {[v.tolist() for v in values]}"
        results, after, reduced, asynchronous = _run_as_ranks(fn, values, what, things)
        expected = torch.stack(values).mean(0)
        total = torch.stack(values).sum(0)
        for rank, (got, value, kept) in enumerate(zip(results, values, after)):
            if not torch.equal(kept, value):
                fail(f"{what}: rank {rank}'s value was changed to {kept.tolist()}", MEAN_IN_PLACE)
            if not isinstance(got, torch.Tensor) or got.shape != value.shape:
                kind = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                fail(
                    f"{what}: rank {rank} must return a tensor of the value's shape "
                    f"{tuple(value.shape)}, got {kind}"
                )
        if all(close(got, expected) for got in results):
            continue
        if not reduced:
            mistake = MEAN_NOT_REDUCED
        elif all(close(got, total) for got in results):
            mistake = MEAN_SUM
        else:
            mistake = None
        rank = next(r for r, got in enumerate(results) if not close(got, expected))
        fail(
            f"{what}: rank {rank} returned {_rounded(results[rank])}, expected the mean "
            f"{_rounded(expected)}"
            + (
                " (an async all_reduce's result arrives only at work.wait())"
                if close(results[rank], values[rank] / world) and asynchronous
                else ""
            ),
            mistake,
            things,
        )
    print_wrapped(
        "mean_over_ranks: correct (3 and 2 pretend ranks, each checked; values left unchanged)"
    )


# --------------------------------------------------------------------------- backward_micro_batches


class _RecordingDDP(torch.nn.Module):
    """A stand-in for DistributedDataParallel in one process: it records, at each forward pass,
    whether its next backward would all-reduce. As in DDP, that is require_backward_grad_sync,
    which no_sync() turns off (nanoGPT sets the flag itself)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module, self.require_backward_grad_sync = module, True
        self.forwards, self.events = [], []

    @contextlib.contextmanager
    def no_sync(self):
        before, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before

    def forward(self, x):
        self.forwards.append(bool(self.require_backward_grad_sync))
        self.events.append("forward")
        out = self.module(x)
        if out.requires_grad:  # runs when backward reaches this micro-batch's output
            out.register_hook(lambda grad: self.events.append("backward"))
        return out


@learner_facing
def check_backward_micro_batches(fn) -> None:
    _learner_function(fn, "backward_micro_batches", ("ddp_model", "micro_batches", "loss_fn"))
    things = (
        "each micro-batch but the last: with ddp_model.no_sync(): loss = loss_fn(ddp_model(micro), "
        "micro) / n; loss.backward(); the last one the same, outside no_sync()."
    )
    generator = torch.Generator().manual_seed(0)
    # the last case starts from gradients already there, as after earlier micro-batches
    for n, earlier in ((3, False), (1, False), (2, True)):
        torch.manual_seed(0)
        module = torch.nn.Linear(4, 4)
        micro = [torch.randn(2, 4, generator=generator) for _ in range(n)]
        before = [torch.randn(p.shape, generator=generator) for p in module.parameters()]
        if earlier:
            for p, grad in zip(module.parameters(), before):
                p.grad = grad.clone()

        def loss_fn(output, batch):  # not symmetric: loss_fn(batch, output) gives another loss
            return ((output.tanh() - batch) ** 2).mean() + 0.1 * output.mean()

        ddp = _RecordingDDP(module)
        what = f"backward_micro_batches(ddp_model, {n} micro-batches, loss_fn)"
        weights, batches = copy.deepcopy(module.state_dict()), [m.clone() for m in micro]
        got = call_learner(fn, ddp, micro, loss_fn, what=what, things_to_check=things)
        if not all(torch.equal(a, b) for a, b in zip(micro, batches)):
            fail(
                f"{what} changed the micro-batches in place: they are the caller's data (views of "
                "its batch, as batch.split() gives): compute from them without writing into them"
            )
        if any(not torch.equal(p, weights[k]) for k, p in module.state_dict().items()):
            fail(
                f"{what} changed the model's weights: it only adds gradients; clipping and the "
                "optimizer step come after it, once for all the micro-batches (the caller's job)"
            )
        reference = torch.nn.Linear(4, 4)
        reference.load_state_dict(weights)
        reference.zero_grad()
        losses = [loss_fn(reference(m), m) / n for m in batches]
        last_alone = torch.autograd.grad(losses[-1], reference.weight, retain_graph=True)[0]
        sum(losses).backward()
        if earlier:
            for p, grad in zip(reference.parameters(), before):
                p.grad += grad
        expected_flags = [False] * (n - 1) + [True]
        if len(ddp.forwards) != n:
            fail(
                f"{what}: {len(ddp.forwards)} forward passes through ddp_model for {n} "
                "micro-batches: one each, in order (and through ddp_model, not ddp_model.module)",
                None,
                things,
            )
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
        if ddp.events != ["forward", "backward"] * n:
            fail(
                f"{what}: forward and backward ran in the order {ddp.events}, expected each "
                "micro-batch's backward before the next one's forward: one backward of all the "
                "losses at the end keeps every micro-batch's activations in memory at once, which "
                "is what micro-batches are there to avoid",
                None,
                things,
            )
        if earlier and torch.allclose(grad, reference.weight.grad - before[0], atol=1e-6):
            fail(
                f"{what}, called with gradients already in .grad: they are gone. backward() adds "
                "to .grad, and zeroing it (zero_grad()) is the caller's job, once per optimizer "
                "step: inside, it drops what earlier micro-batches added"
            )
        if n > 1 and torch.allclose(grad, last_alone, atol=1e-6):
            fail(
                f"{what}: the gradients are the last micro-batch's alone: .grad was zeroed "
                "(zero_grad()) between micro-batches. backward() adds to .grad, so leave it: that "
                "sum over the micro-batches is the point"
            )
        if torch.allclose(grad, n * reference.weight.grad) and n > 1 and not earlier:
            fail(f"{what}: the gradients are {n} times the mean's", NOSYNC_UNSCALED)
        if not torch.allclose(grad, reference.weight.grad, atol=1e-6):
            fail(f"{what}: the gradients differ from the mean loss's", None, things)
        wanted = dict(reference.named_parameters())
        for name, p in module.named_parameters():  # the weight's is right: every other's too
            if p.grad is None or not torch.allclose(p.grad, wanted[name].grad, atol=1e-6):
                fail(
                    f"{what}: the weight's gradient is right, but {name}'s "
                    + ("is missing" if p.grad is None else "differs from the mean loss's")
                    + ": every parameter's .grad must hold what backward() put there",
                )
        mean = sum(loss.detach() for loss in losses)
        if not isinstance(got, torch.Tensor):
            fail(
                f"{what} returned a {type(got).__name__}, {got!r:.30}: return the mean loss as a "
                "tensor (add up loss.detach(), not loss.item())",
                None,
                things,
            )
        if got.shape != ():
            fail(
                f"{what} returned shape {tuple(got.shape)}: return the mean loss as one number, a "
                "0-d tensor (add up loss.detach())",
                None,
                things,
            )
        if got.requires_grad:
            fail(
                f"{what} returned a loss that still holds its graph: return it detached "
                "(loss.detach()), or every micro-batch's activations stay in memory",
                None,
                things,
            )
        if not torch.allclose(got.double(), mean.double(), atol=1e-6):  # float64 is right too
            fail(
                f"{what} returned {got!r:.40}, expected the mean loss {mean.item():.4f}",
                None,
                things,
            )
    print_wrapped(
        "backward_micro_batches: correct (3, 1 and 2 micro-batches, the last onto gradients "
        "already there; no_sync on all but the last)"
    )
