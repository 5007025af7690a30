"""Timing shared by the benchmarks: contestants run interleaved, round by round, so that drift in
the machine's load affects every contestant alike."""

from __future__ import annotations

import time
from typing import Callable


def interleaved_times(
    calls: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Seconds of each call in each round, by label. `sync` waits for queued GPU work
    (torch.cuda.synchronize) around each call."""
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            sync()
            start = time.perf_counter()
            call()
            sync()
            times[label].append(time.perf_counter() - start)
    return times
