"""The camera model's own floor on the CPU: the per-reading pass alone, with nothing else to do.

Every camera reading of ``opu-sim`` needs at least: its 16-bit noise index from the counter stream (a quarter of a
SplitMix64 word), one table normal, ``mean + level · z``, a clip to the ADC's range, the truncation to an integer
code, the saturation count and the 1-byte store. :func:`floor_seconds` times exactly that — the simulator's own
compiled frame pass (``optodfa.sim._compiled._frame_counts``) over ``readings`` readings of one 1024-pixel row
whose mean and noise level stay in the first-level cache — so it is what ``opu-sim`` would take with no speckle
fields, no levels, no frame bookkeeping, no readout and no Python. The fraction ``floor / measured`` says how much of
a projection is the camera model itself; the GEMM and bandwidth roofs of :mod:`benchmarks.projection` are far
below it at narrow frames.
"""

from __future__ import annotations

import statistics
import time

import numba
import numpy as np

from optodfa.sim import _compiled
from optodfa.sim.noise import normal_table

WIDTH = 1024  # pixels of the row read over and over (the compiled pass's tile)


@numba.njit(nogil=True)
def _read_rows(rows: int, mean: np.ndarray, level: np.ndarray, key: np.uint64, table: np.ndarray,
               counts: np.ndarray, normals: np.ndarray) -> int:  # pragma: no cover - compiled
    saturated = 0
    width = counts.shape[0]
    for row in range(rows):
        saturated += _compiled._frame_counts(mean, level, key, np.uint64(row * width), table, np.float32(255.0),
                                             255, np.float32(0.0), counts, normals)
    return saturated


def floor_seconds(readings: int, repeats: int = 15) -> float:
    """Median seconds of the per-reading camera pass over ``readings`` readings (one thread; compiled on first
    use, about a second, outside the timing)."""
    mean = np.linspace(0.0, 300.0, WIDTH, dtype=np.float32)  # some readings clip at the top code, as in use
    level = np.full(WIDTH, 4.0, dtype=np.float32)
    counts = np.empty(WIDTH, dtype=np.uint8)
    normals = np.empty(WIDTH, dtype=np.float32)
    table = normal_table().numpy()
    rows = max(1, readings // WIDTH)
    key = np.uint64(0x5EED)
    _read_rows(1, mean, level, key, table, counts, normals)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _read_rows(rows, mean, level, key, table, counts, normals)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * readings / (rows * WIDTH)
