"""When a run measures alignment and keeps weight snapshots: every N steps, or on a log-spaced step grid.

A run of 10⁴ epochs measured every 100 steps holds thousands of points, almost all of them late in training where
nothing changes; the paper's curves are read on a log time axis. The log grid puts ``per_decade`` points in each
decade of steps: step 0, then the distinct integers ``round(10^(k / per_decade))`` for ``k = 0, 1, …``, so the
first decade (steps 1 … 10) holds every step it can and later decades hold ``per_decade`` points each.
"""

from __future__ import annotations

import math

import numpy as np

from optodfa.validation import check_choice, check_int

__all__ = ["SCHEDULES", "log_grid", "on_log_grid", "schedule_steps"]

SCHEDULES = ("every", "log")


def log_grid(last: int, per_decade: int) -> np.ndarray:
    """The log-spaced steps in ``[0, last]``: 0 and the distinct ``round(10^(k / per_decade))``, ascending.

    Args:
        last: the last step that may be on the grid (inclusive), ``>= 0``.
        per_decade: points per decade, ``>= 1``.

    Returns:
        An int64 array starting at 0 (``[0]`` when ``last`` is 0).
    """
    last = check_int("last", last, low=0)
    per_decade = check_int("per_decade", per_decade, low=1)
    if last == 0:
        return np.zeros(1, dtype=np.int64)
    count = math.floor(per_decade * math.log10(last)) + 2  # one past the last k whose point can be <= last
    points = np.rint(10.0 ** (np.arange(count) / per_decade)).astype(np.int64)
    return np.unique(np.concatenate([[0], points[points <= last]]))


def on_log_grid(step: int, per_decade: int) -> bool:
    """Whether ``step`` is on :func:`log_grid` (without building it): 0, or ``round(10^(k/per_decade))`` for
    some integer ``k >= 0``."""
    if step == 0:
        return True
    if step < 0:
        return False
    centre = round(per_decade * math.log10(step))
    # Rounding maps an interval of exponents onto one integer, so the k nearest to it and its neighbours suffice.
    return any(k >= 0 and round(10.0 ** (k / per_decade)) == step for k in (centre - 1, centre, centre + 1))


def schedule_steps(schedule: str, last: int, *, every: int = 0, per_decade: int = 10) -> np.ndarray:
    """The steps in ``[0, last]`` at which ``schedule`` measures: ``"every"``: the multiples of ``every`` (none
    when ``every`` is 0); ``"log"``: :func:`log_grid`."""
    schedule = check_choice("alignment_schedule", schedule, SCHEDULES)
    if schedule == "log":
        return log_grid(last, per_decade)
    every = check_int("alignment_every", every, low=0)
    return np.arange(0, last + 1, every, dtype=np.int64) if every else np.zeros(0, dtype=np.int64)
