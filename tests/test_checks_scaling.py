"""Notebook 06's checks: each passes right alternatives (contiguous or strided shares,
tensor_split, chunk) and catches each known mistake, naming it and no other; every broken function
is written as a learner would write it."""

import pytest
import torch
import torch.distributed as dist

from utils import checks, scaling
from utils.checks import MISTAKES
from named_mistakes import assert_check_names_only

SCALING_PARTS = {"rows_for_rank", "mean_over_ranks", "backward_micro_batches"}


def rows_all(rows, rank, world_size):
    return rows


def rows_world_sized(rows, rank, world_size):
    return rows[rank * world_size : (rank + 1) * world_size]


def rows_one_too_many(rows, rank, world_size):
    size = len(rows) // world_size
    return rows[rank * size : (rank + 1) * size + 1]


def rows_one_too_few(rows, rank, world_size):
    size = len(rows) // world_size
    return rows[rank * size : (rank + 1) * size - 1]


def rows_strided(rows, rank, world_size):  # right: every world_size-th row
    return rows[rank::world_size]


def rows_chunk(rows, rank, world_size):  # right: torch.chunk
    return torch.chunk(rows, world_size)[rank]


def mean_summed(value):
    total = value.clone()
    dist.all_reduce(total)
    return total


def mean_reduces_value(value):
    dist.all_reduce(value)
    return value / dist.get_world_size()


def mean_local(value):
    return value / dist.get_world_size()


def mean_uses_return(value):
    return dist.all_reduce(value.clone()) / dist.get_world_size()


def mean_explicit_op(value):  # right: the op named
    total = value.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


import contextlib  # noqa: E402 (the micro-batch variants below)


def micro_all_no_sync(ddp_model, micro_batches, loss_fn):
    total = 0.0
    with ddp_model.no_sync():
        for micro in micro_batches:
            loss = loss_fn(ddp_model(micro), micro) / len(micro_batches)
            loss.backward()
            total += loss.detach()
    return total


def micro_backward_only(ddp_model, micro_batches, loss_fn):
    total = 0.0
    for i, micro in enumerate(micro_batches):
        loss = loss_fn(ddp_model(micro), micro) / len(micro_batches)
        if i < len(micro_batches) - 1:
            with ddp_model.no_sync():
                loss.backward()
        else:
            loss.backward()
        total += loss.detach()
    return total


def micro_unscaled(ddp_model, micro_batches, loss_fn):
    losses = []
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < len(micro_batches) - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(ddp_model(micro), micro)
            loss.backward()
        losses.append(loss.item())
    return torch.tensor(sum(losses) / len(losses))


def micro_exit_stack(ddp_model, micro_batches, loss_fn):  # right: an ExitStack per micro-batch
    n, total = len(micro_batches), torch.zeros(())
    for i, micro in enumerate(micro_batches):
        with contextlib.ExitStack() as stack:
            if i != n - 1:
                stack.enter_context(ddp_model.no_sync())
            loss = loss_fn(ddp_model(micro), micro) / n
            loss.backward()
        total += loss.detach()
    return total


BROKEN_SCALING = {
    "rows_repeated": (checks.check_rows_for_rank, rows_all),
    "rows_size_is_world": (checks.check_rows_for_rank, rows_world_sized),
    "rows_overlap": (checks.check_rows_for_rank, rows_one_too_many),
    "rows_missed": (checks.check_rows_for_rank, rows_one_too_few),
    "mean_sum": (checks.check_mean_over_ranks, mean_summed),
    "mean_in_place": (checks.check_mean_over_ranks, mean_reduces_value),
    "mean_not_reduced": (checks.check_mean_over_ranks, mean_local),
    "mean_uses_result": (checks.check_mean_over_ranks, mean_uses_return),
    "nosync_on_last": (checks.check_backward_micro_batches, micro_all_no_sync),
    "nosync_forward_outside": (checks.check_backward_micro_batches, micro_backward_only),
    "nosync_unscaled": (checks.check_backward_micro_batches, micro_unscaled),
}


def micro_nanogpt_flag(ddp_model, micro_batches, loss_fn):  # right: the flag no_sync() sets
    n, total = len(micro_batches), torch.zeros(())
    for i, micro in enumerate(micro_batches):
        ddp_model.require_backward_grad_sync = i == n - 1
        loss = loss_fn(ddp_model(micro), micro) / n
        loss.backward()
        total += loss.detach()
    return total


def micro_mean_in_float64(ddp_model, micro_batches, loss_fn):  # right value, as numpy gives it
    values = []
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < len(micro_batches) - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(ddp_model(micro), micro)
            (loss / len(micro_batches)).backward()
        values.append(loss.item())
    return torch.tensor(sum(values) / len(values), dtype=torch.float64)


def test_every_scaling_mistake_has_a_broken_variant():
    assert set(BROKEN_SCALING) == {n for n, m in MISTAKES.items() if m.part in SCALING_PARTS}


@pytest.mark.parametrize("mistake", sorted(BROKEN_SCALING))
def test_check_catches_mistake_and_names_it(mistake):
    check, broken = BROKEN_SCALING[mistake]
    assert_check_names_only(check, broken, mistake)


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_rows_for_rank, scaling.rows_for_rank),
        (checks.check_rows_for_rank, rows_strided),
        (checks.check_rows_for_rank, rows_chunk),
        (checks.check_mean_over_ranks, scaling.mean_over_ranks),
        (checks.check_mean_over_ranks, mean_explicit_op),
        (checks.check_backward_micro_batches, scaling.backward_micro_batches),
        (checks.check_backward_micro_batches, micro_exit_stack),
        (checks.check_backward_micro_batches, micro_nanogpt_flag),
        (checks.check_backward_micro_batches, micro_mean_in_float64),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_right_alternatives_pass(check, fn, capsys):
    check(fn)
    assert "correct" in capsys.readouterr().out


def test_the_pretend_group_is_taken_away_afterwards():
    before = dist.all_reduce, dist.get_world_size
    checks.check_mean_over_ranks(scaling.mean_over_ranks)
    assert (dist.all_reduce, dist.get_world_size) == before


def mean_divide_first(value):  # right: divide, then sum
    part = value.detach() / dist.get_world_size()
    dist.all_reduce(part)
    return part


def mean_all_gather(value):  # right: gather every rank's value, then average
    parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, value.detach())
    return torch.stack(parts).mean(0)


def mean_all_gather_into_tensor(value):  # right: gather into one tensor, then average
    parts = value.new_empty(dist.get_world_size(), *value.shape)
    dist.all_gather_into_tensor(parts, value.detach())
    return parts.mean(0)


def mean_async_wait(value):  # right: asynchronous, then waited for
    total = value.clone()
    dist.all_reduce(total, async_op=True).wait()
    return total / dist.get_world_size()


def mean_async_no_wait(value):
    total = value.clone()
    dist.all_reduce(total, async_op=True)
    return total / dist.get_world_size()


def mean_floor(value):
    total = value.clone()
    dist.all_reduce(total)
    return total // dist.get_world_size()


def mean_by_rank(value):
    total = value.clone()
    dist.all_reduce(total)
    return total / (dist.get_rank() + 1)


def mean_one_less(value):
    total = value.clone()
    dist.all_reduce(total)
    return total / (dist.get_world_size() - 1)


def rows_float(rows, rank, world_size):
    size = len(rows) // world_size
    return rows[rank * size : (rank + 1) * size].float()


def micro_not_detached(ddp_model, micro_batches, loss_fn):
    n, total = len(micro_batches), 0.0
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(ddp_model(micro), micro) / n
            loss.backward()
        total = total + loss
    return total


def micro_arguments_swapped(ddp_model, micro_batches, loss_fn):
    n, total = len(micro_batches), torch.zeros(())
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(micro, ddp_model(micro)) / n
            loss.backward()
        total += loss.detach()
    return total


def mean_two_collectives(value):  # right: the total, then the count, each all-reduced
    total = value.detach().clone()
    dist.all_reduce(total)
    count = torch.ones_like(total)
    dist.all_reduce(count)
    return total / count


def micro_one_backward_at_the_end(ddp_model, micro_batches, loss_fn):
    n, losses = len(micro_batches), []
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with context:
            losses.append(loss_fn(ddp_model(micro), micro) / n)
    sum(losses).backward()  # every micro-batch's activations held until here
    return sum(loss.detach() for loss in losses)


def micro_loss_of_shape_one(ddp_model, micro_batches, loss_fn):
    n, total = len(micro_batches), torch.zeros(1)
    for i, micro in enumerate(micro_batches):
        context = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(ddp_model(micro), micro) / n
            loss.backward()
        total = total + loss.detach()
    return total


def micro_zero_grad_each(ddp_model, micro_batches, loss_fn):
    n, total = len(micro_batches), torch.zeros(())
    for i, micro in enumerate(micro_batches):
        ddp_model.zero_grad()  # keeps only the last micro-batch's gradient
        context = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with context:
            loss = loss_fn(ddp_model(micro), micro) / n
            loss.backward()
        total += loss.detach()
    return total


def micro_normalises_in_place(ddp_model, micro_batches, loss_fn):
    for micro in micro_batches:
        micro.sub_(micro.mean())  # the caller's batch, edited
    return scaling.backward_micro_batches(ddp_model, micro_batches, loss_fn)


def micro_steps_sgd(ddp_model, micro_batches, loss_fn):
    total = scaling.backward_micro_batches(ddp_model, micro_batches, loss_fn)
    torch.optim.SGD(ddp_model.parameters(), lr=0.1).step()  # the caller's job, after clipping
    return total


def micro_whole_batch_once(ddp_model, micro_batches, loss_fn):
    batch = torch.cat(micro_batches)
    loss = loss_fn(ddp_model(batch), batch)
    loss.backward()
    return loss.detach()


def micro_zero_grad_first(ddp_model, micro_batches, loss_fn):
    ddp_model.zero_grad()  # drops what the caller's earlier micro-batches added
    return scaling.backward_micro_batches(ddp_model, micro_batches, loss_fn)


def micro_grad_to_none_first(ddp_model, micro_batches, loss_fn):
    for parameter in ddp_model.parameters():
        parameter.grad = None
    return scaling.backward_micro_batches(ddp_model, micro_batches, loss_fn)


def mean_in_float64(value):  # right: a float64 mean is the mean
    total = value.detach().clone().double()
    dist.all_reduce(total)
    return total / dist.get_world_size()


from torch.distributed import all_reduce, get_world_size  # noqa: E402 (as a learner imports them)


def mean_imported_by_name(value):  # right: the functions imported by name
    total = value.detach().clone()
    all_reduce(total)
    return total / get_world_size()


def mean_world_size_from_environ(value):  # right: torchrun sets WORLD_SIZE
    import os

    total = value.detach().clone()
    dist.all_reduce(total)
    return total / int(os.environ["WORLD_SIZE"])


def mean_reduce_then_broadcast(value):  # right: rank 0 sums, then sends the sum to every rank
    total = value.detach().clone()
    dist.reduce(total, dst=0)
    dist.broadcast(total, src=0)
    return total / dist.get_world_size()


def mean_reduce_without_broadcast(value):  # only rank 0 has the sum
    total = value.detach().clone()
    dist.reduce(total, dst=0)
    return total / dist.get_world_size()


def mean_reduced_copy_unused(value):  # reduces a copy, then returns its own value's share
    total = value.detach().clone()
    dist.all_reduce(total)
    return value / dist.get_world_size()


def micro_bias_gradient_dropped(ddp_model, micro_batches, loss_fn):
    total = scaling.backward_micro_batches(ddp_model, micro_batches, loss_fn)
    for parameter in ddp_model.parameters():
        if parameter.ndim == 1:
            parameter.grad = None
    return total


@pytest.mark.parametrize(
    "fn",
    [
        mean_divide_first,
        mean_all_gather,
        mean_all_gather_into_tensor,
        mean_async_wait,
        mean_two_collectives,
        mean_in_float64,
        mean_imported_by_name,
        mean_world_size_from_environ,
        mean_reduce_then_broadcast,
    ],
    ids=lambda f: f.__name__,
)
def test_other_right_ways_to_average_pass(fn, capsys):
    checks.check_mean_over_ranks(fn)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_mean_over_ranks, mean_async_no_wait, "arrives only at work.wait"),
        (
            checks.check_mean_over_ranks,
            mean_floor,
            r"rank 0 returned \[2.0, 0.0\], expected the mean",
        ),
        (checks.check_mean_over_ranks, mean_by_rank, r"rank 0 returned \[6.5, 0.5\]"),
        (checks.check_mean_over_ranks, mean_one_less, "rank 0 returned"),
        (
            checks.check_mean_over_ranks,
            mean_reduced_copy_unused,
            r"expected the mean \[2.1667, 0.1667\]\n  None of",
        ),
        (checks.check_mean_over_ranks, mean_reduce_without_broadcast, "rank 1 returned"),
        (
            checks.check_backward_micro_batches,
            micro_bias_gradient_dropped,
            "the weight's gradient is right, but bias's is missing",
        ),
        (checks.check_rows_for_rank, rows_float, "returned torch.float32 ids"),
        (checks.check_backward_micro_batches, micro_not_detached, "still holds its graph"),
        (checks.check_backward_micro_batches, micro_arguments_swapped, "differ from the mean"),
        (
            checks.check_backward_micro_batches,
            micro_one_backward_at_the_end,
            "each micro-batch's backward before the next one's forward",
        ),
        (checks.check_backward_micro_batches, micro_loss_of_shape_one, r"returned shape \(1,\)"),
        (
            checks.check_backward_micro_batches,
            micro_zero_grad_first,
            "already in .grad: they are gone",
        ),
        (
            checks.check_backward_micro_batches,
            micro_grad_to_none_first,
            "already in .grad: they are gone",
        ),
        (checks.check_backward_micro_batches, micro_zero_grad_each, "the last micro-batch's alone"),
        (checks.check_backward_micro_batches, micro_normalises_in_place, "micro-batches in place"),
        (checks.check_backward_micro_batches, micro_steps_sgd, "changed the model's weights"),
        (
            checks.check_backward_micro_batches,
            micro_whole_batch_once,
            "1 forward passes through ddp_model for 3 micro-batches",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_other_wrong_code_fails_without_a_wrong_cause(check, fn, message):
    with pytest.raises(AssertionError, match=message) as err:
        check(fn)
    assert "Likely cause" not in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: scaling.rows_for_rank(torch.arange(10), 0, 3), ValueError, "10 rows do not split"),
        (lambda: scaling.rows_for_rank(torch.arange(6), 3, 3), ValueError, "rank must be an int"),
        (lambda: scaling.rows_for_rank(torch.arange(6), 0, 0), ValueError, "world_size must be"),
        (lambda: scaling.rows_for_rank([0, 1], 0, 1), TypeError, "rows must be a 1-D tensor"),
        (
            lambda: scaling.rows_for_rank(torch.tensor([True, False]), 0, 2),
            TypeError,
            "integer row ids",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), list(torch.randn(5, 4).split(4)), lambda o, b: o.sum()
            ),
            ValueError,
            "micro_batches hold 1 and 4 rows",
        ),
        (
            lambda: scaling.backward_micro_batches(torch.nn.Linear(2, 2), [], None),
            ValueError,
            "micro_batches must be a non-empty list",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), [torch.tensor(1.0), torch.tensor(2.0)], lambda o, b: o.sum()
            ),
            TypeError,
            r"tensors of rows \(at least 1-D\)",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), torch.randn(3, 2, 4), lambda o, b: o.sum()
            ),
            ValueError,
            r"got a tensor of shape \(3, 2, 4\)$",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), [torch.randn(2, 4)], lambda o, b: (o - b).pow(2).mean(0)
            ),
            ValueError,
            r"loss_fn must return the micro-batch's loss as one number .* shape \(4,\)",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), [torch.randn(2, 4)], lambda o, b: (o - b).abs().sum().item()
            ),
            ValueError,
            "loss as one number .* got float",
        ),
        (
            lambda: scaling.backward_micro_batches(
                torch.nn.Linear(4, 4), [torch.randn(2, 4)], lambda o, b: (o - b).sum().detach()
            ),
            ValueError,
            "without a graph back to the model's weights",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(call, error, message):
    with pytest.raises(error, match=message):
        call()
