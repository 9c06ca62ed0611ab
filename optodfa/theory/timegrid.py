"""Log-spaced time grids that land on whole SGD steps (``t = steps / N``)."""

from __future__ import annotations

import numpy as np

from optodfa.validation import check_int, check_real


def log_time_grid(t_max: float, *, points: int = 60, t_min: float | None = None, N: int | None = None
                  ) -> np.ndarray:
    """``0`` followed by about ``points`` log-spaced times from ``t_min`` to ``t_max``, shape (n,).

    ``t_min`` defaults to ``t_max / 10⁴``. With ``N`` every time is rounded to a whole number of steps ``k/N``
    (at least one step) and duplicates are dropped, so the grid may hold fewer than ``points + 1`` times.
    """
    t_max = check_real("t_max", t_max, low=0.0, low_open=True)
    points = check_int("points", points, low=1)
    t_min = t_max * 1e-4 if t_min is None else check_real("t_min", t_min, low=0.0, high=t_max, low_open=True)
    times = np.concatenate([[0.0], np.geomspace(t_min, t_max, points)])
    if N is None:
        return times
    N = check_int("N", N, low=1)
    steps = np.unique(np.maximum(np.rint(times * N), 0).astype(np.int64))
    return steps / N


def steps_at(times: np.ndarray, N: int) -> np.ndarray:
    """Whole step counts for ``times`` (n,) at input size ``N``; raise if they are not increasing steps."""
    N = check_int("N", N, low=1)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"times must be a non-empty 1-D array of finite times >= 0, got shape {times.shape}")
    steps = np.rint(times * N).astype(np.int64)
    if np.any(np.abs(steps - times * N) > 1e-6 * np.maximum(1.0, times * N)):
        raise ValueError(f"times must be whole numbers of steps k/N with N = {N} (use log_time_grid(..., N=N))")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("times must be strictly increasing (at least one step 1/N apart)")
    return steps
