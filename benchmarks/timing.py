"""Interleaved timing shared by the benchmarks: medians of medians, variants alternating round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(calls: dict[str, Callable[[], None]], *, rounds: int, sync: Callable[[], None],
                        repeats: int = 50, min_time: float = float("inf"), warmup: int = 1) -> dict[str, float]:
    """Median over ``rounds`` of the median seconds per call of each variant.

    Each round runs every variant in turn ``repeats`` times, or fewer once ``min_time`` seconds are spent, so that
    machine noise falls on all variants alike. ``sync`` waits for queued device work (CUDA) before each reading.
    """
    for call in calls.values():  # allocator, thread pools, lazily built matrices
        for _ in range(warmup):
            call()
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times: list[float] = []
            while len(times) < repeats and sum(times) < min_time:
                sync()
                start = time.perf_counter()
                call()
                sync()
                times.append(time.perf_counter() - start)
            per_round[name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in per_round.items()}
