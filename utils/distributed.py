"""Notebook 03's trainer on several processes: PyTorch's DistributedDataParallel, launched with
`torchrun --nproc_per_node=N -m utils.train ...` (`gloo` on CPUs, `nccl` on GPUs).

What each process (rank) does, and why:
- it holds a whole copy of the model and of AdamW's state; DDP makes every copy start from rank
  0's weights and, during backward, averages the gradients across ranks (an all-reduce, in buckets
  that overlap the rest of backward), so every rank takes the same step;
- it trains on its own slice of each step's batch: the rows of `batch_rows(step)` (the one-process
  batch) cut into N equal parts, so that the union over ranks is exactly the one-process batch and
  the data order does not depend on N; the mean of the ranks' mean losses is then the batch's;
- gradient accumulation: every micro-batch but the last runs forward and backward under
  `no_sync()` (no all-reduce), the last one's backward all-reduces the sum; clipping and AdamW
  then see the averaged gradients, the same on every rank;
- only rank 0 writes checkpoints, samples and the progress bar; a checkpoint holds the weights and
  optimizer state that every rank shares, so a run saved by N processes resumes on M;
- Ctrl-C or SIGTERM on any rank: the ranks agree (one all-reduce per step) to stop after the step
  they are in, rank 0 saves, all return.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import utils.training
from utils.fused import fused_next_token_loss  # the trainer's loss (notebook 03)
from utils.model import next_token_loss
from utils.printing import print_wrapped
from utils.safe_training import SafeTrainer, _StopAfterThisStep
from utils.scaling import mean_over_ranks, rows_for_rank  # notebook 06's
from utils.validation import require_number


def launched_by_torchrun() -> bool:
    """Whether this process is one of torchrun's workers (it sets RANK, WORLD_SIZE, LOCAL_RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def why_torchrun_failed(stderr: str, returncode: int) -> str:
    """One line on why a torchrun job failed, from its stderr: a rank's error (a command line's
    "error:" line, or the last line of a rank's traceback), else how the ranks ended. (torchrun's
    own report of a failure ends in a line of "=".)"""
    lines = [line.strip() for line in stderr.splitlines()]
    for line in lines:
        if ": error: " in line:  # python -m utils.train: error: ...
            return line
    for line in lines:
        if re.match(r"[\w.]*(Error|Exception|Interrupt)\b.*: \S", line) and not line.startswith(
            "torch.distributed.elastic"  # torchrun's own ChildFailedError, which says nothing
        ):
            return line
    signals = sorted(set(re.findall(r"exitcode\s*: (-?\d+).*?\((SIG\w+)\)", stderr)))
    if signals:
        ends = ", ".join(f"{name} (exit code {code})" for code, name in signals)
        said = next((line for line in lines if line.startswith("terminate called")), None)
        return f"torchrun's processes were ended by {ends}" + (
            f": {said}" if said else ", without an error message of their own"
        )
    return f"torchrun exited with code {returncode}; its last line: {lines[-1] if lines else ''}"


def start(timeout_s: float = 300) -> tuple[int, int, str]:
    """Join torchrun's process group: (rank, world size, this rank's device). nccl when each rank
    on this machine has a GPU of its own, else gloo on the CPU; a rank that waits longer than
    timeout_s for the others fails (a crashed rank ends the run instead of hanging it)."""
    import datetime

    timeout_s = require_number("timeout_s", timeout_s)  # seconds, > 0: a clear line for '5' or -1
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "start() joins torchrun's processes: run this under `torchrun --nproc_per_node=N` "
            "(python -m torch.distributed.run), which sets RANK and WORLD_SIZE"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # every rank decides alike
    on_gpu = torch.cuda.is_available() and torch.cuda.device_count() >= ranks_here
    if on_gpu:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if on_gpu else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), f"cuda:{local_rank}" if on_gpu else "cpu"


def stop() -> None:
    """Leave the process group. Models wrapped by DDP or FSDP that only reference cycles keep alive
    still hold on to it: collect them first, or the process can abort as it exits ("terminate
    called without an active exception", seen with FSDP on gloo)."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


class DistributedTrainer(SafeTrainer):
    """SafeTrainer on one rank of a torchrun job (after `start()`): the same steps, checkpoints and
    resume, with the batch split across ranks and the gradients averaged by DDP."""

    def __init__(self, model, args, train_sequences, val_sequences, sample=None, **recorded):
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedTrainer runs in torchrun's processes, after start() (which joins "
                "them); in one process use SafeTrainer, or run this under torchrun"
            )
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        local = args.batch_size // self.world
        micro = args.micro_batch_size  # per process; one at least as large as `local`: no split
        # every rank must take the same share, or the averaged gradient is not the batch's
        if args.batch_size % self.world:
            below = args.batch_size // self.world * self.world
            nearest = f"{below} or {below + self.world}" if below else f"{self.world}"
            raise ValueError(
                f"batch_size {args.batch_size} does not split evenly over {self.world} processes: "
                f"choose a multiple of {self.world} ({nearest}) or another number of processes"
            )
        if micro and micro < local and local % micro:
            raise ValueError(
                f"each of the {self.world} processes takes {local} rows of batch_size "
                f"{args.batch_size}, which do not split into micro-batches of {micro}: choose a "
                f"micro_batch_size that divides {local}"
            )
        super().__init__(model, args, train_sequences, val_sequences, sample, **recorded)
        on_gpu = args.device.startswith("cuda")
        self.ddp = DistributedDataParallel(
            self.model, device_ids=[torch.device(args.device).index] if on_gpu else None
        )
        # the same compiled or eager loss as SafeTrainer's, through the DDP wrapper
        self._loss = torch.compile(self._eager_loss) if args.compile else self._eager_loss
        torch.manual_seed(args.seed + 1 + self.rank)  # randomness that must differ (dropout)

    def training_step(self, batch: torch.Tensor) -> torch.Tensor:
        self._forwards_left = len(batch.split(self.args.micro_batch_size or len(batch)))
        return super().training_step(batch)

    def _eager_loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """The loss through DDP. DDP decides in the forward pass whether the backward that follows
        all-reduces: every micro-batch but the step's last runs forward under no_sync(), so its
        gradients only add up locally, and the last one's backward all-reduces their sum."""
        self._forwards_left = getattr(self, "_forwards_left", 1) - 1
        local = self._forwards_left > 0 and torch.is_grad_enabled()
        with self.autocast(), self.ddp.no_sync() if local else contextlib.nullcontext():
            return fused_next_token_loss(self.ddp(tokens), tokens)

    def batch(self, step: int) -> torch.Tensor:
        """This rank's share of the one-process batch for `step`; first, every rank learns whether
        any rank was asked to stop."""
        if self._stop is not None:
            flag = torch.tensor([float(self._stop.requested)], device=self.args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item():
                self._stop.requested = True
                raise _StopAfterThisStep()
        self.phase = f"step {step + 1}"
        rows = utils.training.batch_rows(
            step, len(self.train_sequences), self.args.batch_size, self.args.seed
        )
        mine = rows_for_rank(rows, self.rank, self.world)
        return self.train_sequences[mine].to(self.args.device)

    def record_loss(self, step: int, loss: torch.Tensor) -> None:
        super().record_loss(step, mean_over_ranks(torch.as_tensor(loss, device=self.args.device)))

    def sample(self) -> str:
        return super().sample() if self.rank == 0 else ""

    def save_checkpoint(self) -> Path | None:
        """Rank 0 saves (every rank holds the same weights and optimizer state)."""
        if self.rank == 0:
            return super().save_checkpoint()
        self._flush_losses()
        self._refuse_non_finite_weights()  # as rank 0 does: every rank stops, or none
        return None

    def train(self, max_steps: int | None = None):
        """As SafeTrainer.train; SIGTERM (a scheduler's or torchrun's stop) is treated as Ctrl-C."""

        def on_sigterm(signum, frame):
            if self._stop is not None:
                self._stop.requested = True

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            return super().train(max_steps)
        finally:
            signal.signal(signal.SIGTERM, previous)


def compare_ddp_and_fsdp(steps: int = 3) -> None:
    """Under torchrun: one small model trained `steps` steps with DDP and with FSDP's fully_shard
    (each block, then the whole model), on the same shares of one batch; rank 0 prints how many
    parameters it stores under each, and the losses (averaged over ranks)."""
    from torch.distributed.fsdp import fully_shard

    from utils.fused import FusedTransformer
    from utils.model import Config

    rank, world, device = start()
    cfg = Config(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=128)
    tokens = torch.randint(
        0, cfg.d_vocab, (8, cfg.n_ctx), generator=torch.Generator().manual_seed(0)
    )
    mine = tokens[rows_for_rank(torch.arange(len(tokens)), rank, world)].to(device)
    lines = []
    for name in ("DDP", "FSDP"):
        torch.manual_seed(0)
        model = FusedTransformer(cfg).to(device)
        total = sum(p.numel() for p in model.parameters())
        if name == "DDP":
            wrapped = DistributedDataParallel(model)
        else:
            for block in model.blocks:
                fully_shard(block)
            wrapped = fully_shard(model)
        stored = sum(getattr(p, "to_local", lambda p=p: p)().numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(steps):
            loss = next_token_loss(wrapped(mine), mine)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(mean_over_ranks(loss).item())
        lines.append(
            f"{name}: rank 0 of {world} stores {stored:,} of the {total:,} parameters; losses "
            + ", ".join(f"{value:.5f}" for value in losses)
        )
    if rank == 0:
        print_wrapped("\n".join(lines))
    stop()


if __name__ == "__main__":  # torchrun --nproc_per_node=2 -m utils.distributed
    compare_ddp_and_fsdp()
