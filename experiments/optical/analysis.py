"""Statistics over the optical feedback study's records (:mod:`.records`): mean ± sd over seeds, device
counters per epoch, statuses in words, and the Pareto front of cost against accuracy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def stat(record: Mapping[str, Any], metric: str) -> tuple[float, float, int]:
    """``(mean, sd, n)`` of ``metric`` over the completed seeds of a record (sd NaN below 2 seeds)."""
    values = np.asarray(record["values"].get(metric, []), dtype=float)
    if not len(values):
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan, len(values)


def status_of(record: Mapping[str, Any]) -> str:
    """The statuses of a record's seeds in words: ``"2 completed, 1 invalid"``."""
    return ", ".join(f"{n} {s}" for s, n in record["statuses"].items())


def per_epoch(record: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """Mean and sd over seeds of a device counter divided by the run's epochs (frames, seconds, joules)."""
    mean, sd, _ = stat(record, metric)
    epochs = record["setting"]["epochs"]
    return mean / epochs, sd / epochs


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For ``(cost, accuracy)`` points: whether no other point has lower-or-equal cost and higher-or-equal accuracy
    with one of them strictly better."""
    flags = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags
