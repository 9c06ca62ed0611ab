"""Interleaved timing shared by the benchmarks: variants alternating round by round, medians of medians, and
ratios paired round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_rounds(calls: dict[str, Callable[[], None]], *, rounds: int, sync: Callable[[], None],
                       repeats: int = 50, min_time: float = float("inf"),
                       warmup: int = 1) -> dict[str, list[float]]:
    """The median seconds per call of each variant in each of ``rounds`` rounds.

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
    return per_round


def medians(per_round: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of each variant's per-round median (seconds per call)."""
    return {name: statistics.median(values) for name, values in per_round.items()}


def paired_ratio(per_round: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator``'s time over ``denominator``'s in the same round.

    Two variants timed in one round share that round's machine load, so the ratio within a round moves less than
    either time; on a shared machine it is the steadier figure of the two.
    """
    return statistics.median(a / b for a, b in zip(per_round[numerator], per_round[denominator], strict=True))


def interleaved_medians(calls: dict[str, Callable[[], None]], *, rounds: int, sync: Callable[[], None],
                        repeats: int = 50, min_time: float = float("inf"), warmup: int = 1) -> dict[str, float]:
    """Median over ``rounds`` of the median seconds per call of each variant (see :func:`interleaved_rounds`)."""
    return medians(interleaved_rounds(calls, rounds=rounds, sync=sync, repeats=repeats, min_time=min_time,
                                      warmup=warmup))
