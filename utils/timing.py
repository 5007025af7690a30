"""Timing for the notebooks' speed comparisons: a warm-up run first (the first call pays for
memory allocation and kernel selection), then repeats, waiting for a GPU to finish each one."""

from __future__ import annotations

import time
from typing import Callable

import torch

from utils.validation import require_int


def run_times(fn: Callable[[], object], repeats: int = 5, device: str = "cpu") -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after one warm-up call that is not counted.
    Other programs on the machine slow some runs down and never speed one up: take the min for
    the speed of the code, the median for what a run typically takes."""
    if not callable(fn):
        raise TypeError(f"run_times: fn must be a function to call, got {type(fn).__name__}")
    repeats = require_int("repeats", repeats)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]
