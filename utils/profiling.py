"""Profiling training steps without changing the trained model (notebook 03, "Where does the time
go?")."""

from __future__ import annotations

import contextlib
import copy
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile


@contextlib.contextmanager
def c_stderr_silenced():
    """Silence what C++ code writes to file descriptor 2 (PyTorch's profiler prints
    `USDT: ... profiler_start/stop` lines there, which Jupyter shows in the notebook). Python's own
    errors are not affected inside Jupyter, whose sys.stderr is not fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_training_steps(trainer, batch: torch.Tensor, steps: int = 3, row_limit: int = 8) -> str:
    """The profiler's table (sorted by time spent in each operation itself) for `steps` calls of
    trainer.training_step(batch). The steps really update the model, so the model, optimizer and
    scaler are copied first and put back afterwards."""
    saved = copy.deepcopy(
        (trainer.model.state_dict(), trainer.optimizer.state_dict(), trainer.scaler.state_dict())
    )
    batch = batch.to(trainer.args.device)
    on_gpu = trainer.args.device.startswith("cuda")
    try:
        with (
            c_stderr_silenced(),
            profile(
                activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
            ) as prof,
        ):
            for _ in range(steps):
                trainer.training_step(batch)
            if on_gpu:
                torch.cuda.synchronize()
    finally:
        trainer.model.load_state_dict(saved[0])
        trainer.optimizer.load_state_dict(saved[1])
        trainer.scaler.load_state_dict(saved[2])
        trainer.optimizer.zero_grad(set_to_none=True)
    return _table(prof.key_averages(), on_gpu, row_limit)


def _table(events, on_gpu: bool, row_limit: int) -> str:
    """The `row_limit` operations with the most self time: full names (PyTorch's own table cuts
    them to one width, so that a kernel and its backward can look alike), share of the time and
    number of calls, narrow enough for a notebook's output."""
    self_time = (
        (lambda e: e.self_device_time_total) if on_gpu else (lambda e: e.self_cpu_time_total)
    )
    total = sum(self_time(e) for e in events) or 1
    top = sorted(events, key=self_time, reverse=True)[:row_limit]
    width = max(len("operation"), *(len(e.key) for e in top))
    where = "GPU" if on_gpu else "CPU"
    lines = [f"{'operation':<{width}}  {where} self time  calls"]
    for e in top:
        lines.append(f"{e.key:<{width}}  {100 * self_time(e) / total:12.1f}%  {e.count:5d}")
    adamw = [e for e in events if "adamw" in e.key.lower()]  # the fused update, the step around it
    if adamw:
        share = 100 * sum(self_time(e) for e in adamw) / total
        lines.append(
            f"AdamW, its {len(adamw)} operations together: {share:.1f}% of the {where} time"
        )
    return "\n".join(lines)
