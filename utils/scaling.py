"""GENERATED from notebooks/06_scaling_out.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/06_scaling_out.ipynb, code cell 2
"""Notebook 06's pieces of data parallelism: each process's share of a batch, a number averaged
over the processes, and gradient accumulation with one all-reduce. utils/distributed.py's
DistributedTrainer takes each rank's rows and the logged loss's mean from here."""


import contextlib
from typing import Callable

import torch

import torch.distributed as dist
from torch import Tensor, nn

from utils.validation import require_micro_batches, require_rank_value, require_rows_split


# --- notebooks/06_scaling_out.ipynb, code cell 3
def rows_for_rank(rows: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's share of a batch's row ids, whose number world_size divides: len(rows) //
    world_size of them, each row of the batch on exactly one rank."""
    require_rows_split(rows, rank, world_size)  # a 1-D tensor, 0 <= rank < world_size, divisible
    size = len(rows) // world_size
    return rows[rank * size : (rank + 1) * size]


# --- notebooks/06_scaling_out.ipynb, code cell 5
def mean_over_ranks(value: Tensor) -> Tensor:
    """The mean of `value` over all ranks (every rank calls it with its own), on every rank."""
    require_rank_value(value)  # a tensor, in a process group (under torchrun): one clear line
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


# --- notebooks/06_scaling_out.ipynb, code cell 7
def backward_micro_batches(
    ddp_model: nn.Module, micro_batches: list[Tensor], loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Forward and backward of each micro-batch: adds the mean loss's gradients to those already
    in .grad (the caller zeroes them, once a step); all but the last under ddp_model.no_sync(),
    so that gradients are all-reduced once. loss_fn is called as loss_fn(output, micro_batch).
    Returns the mean loss, detached."""
    # a model with no_sync (DDP's), a non-empty list of tensors, a loss_fn: one clear line if not;
    # the loss_fn it hands back says so in one line when a loss is not one number with a graph
    loss_fn = require_micro_batches(ddp_model, micro_batches, loss_fn)
    n, total = len(micro_batches), torch.zeros(())
    for i, micro in enumerate(micro_batches):
        local = ddp_model.no_sync() if i < n - 1 else contextlib.nullcontext()
        with local:
            loss = loss_fn(ddp_model(micro), micro) / n
            loss.backward()
        total = total + loss.detach()
    return total


# written by `make export`; sha256 of the text above: 2a7255535aaba41f
