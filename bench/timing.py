"""Timing shared by the benchmarks: contestants run interleaved, round by round, so that drift in
the machine's load affects every contestant alike."""

from __future__ import annotations

import statistics
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


def interleaved_step_times(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    sync: Callable[[], None] = lambda: None,
    min_sample_s: float = 0.2,
) -> tuple[dict[str, list[float]], int]:
    """Seconds per call, as `interleaved_times`, but each sample times the call `repeat` times, as
    many as the fastest needs to fill `min_sample_s`: one 10 ms call is at the mercy of the
    machine's jitter. Returns the times per call and `repeat`."""
    one_call = min(ts[0] for ts in interleaved_times(calls, 1, sync).values())
    repeat = max(1, round(min_sample_s / one_call))
    repeated = {
        label: lambda call=call: [call() for _ in range(repeat)] for label, call in calls.items()
    }
    times = interleaved_times(repeated, rounds, sync)
    return {label: [t / repeat for t in ts] for label, ts in times.items()}, repeat


def paired_spread(peer_times: list[float], times: list[float]) -> str:
    """The ratio round by round (peer's time over this one's in the same round, so that drift in the
    machine's load cancels): its quartiles say how far one run's figure can be trusted."""
    ratios = [p / t for p, t in zip(peer_times, times, strict=True)]
    low, mid, high = statistics.quantiles(ratios, n=4)
    return f"round by round: median {mid:.2f}, quartiles {low:.2f}-{high:.2f}"
