"""The camera's Gaussian-noise readout fused into one compiled pass per reading (CPU, numba).

From the speckle fields of a block of pixels to ADC counts, :func:`gaussian_counts` does in one pass what the
tensor code of :meth:`optodfa.sim.camera.Camera.expose` and :meth:`~optodfa.sim.camera.Camera.adc` does in about
ten: intensity ``|F|²`` (times the frame's exposure factor), gain and dark offset, noise level
``sqrt(μ + σ_read²)``, the table normal of :mod:`optodfa.sim.noise`, clip, truncation to an integer count and the
saturation count. It repeats the tensor code's arithmetic operation for operation, in its dtype, with a fused
multiply-add wherever torch's CPU kernels use one (``add`` with ``alpha``, ``addcmul``), so the counts are the same
number for number (``tests/sim/test_reference_outputs.py`` checks both against the recorded outputs).

Only the case that dominates a simulated projection is compiled: shot noise drawn as a Gaussian everywhere
(``poisson_exact_below = 0``) and a finite bit depth. Everything else, and any machine without numba, uses the tensor
code. Compiled code is cached on disk (numba's ``cache=True``): the first call on a machine compiles for about
2 s per dtype combination, later processes load it in milliseconds.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

import numpy as np

__all__ = ["AVAILABLE", "TILE", "binary_counts", "binary_fields", "gaussian_counts", "signed_sum"]

# OPTODFA_NO_KERNELS=1 turns the compiled path off (the tests compare both paths).
AVAILABLE = (importlib.util.find_spec("numba") is not None
             and os.environ.get("OPTODFA_NO_KERNELS", "") in ("", "0"))
# Pixel columns binary_counts takes at once: the mean and noise level of every distinct row of a tile (2 x 4 B
# each) stay in the per-core cache for a few hundred distinct rows.
TILE = 256


@functools.cache
def _compiled() -> ModuleType:
    """The compiled kernels; numba is imported on first use (it adds about a second to an import of optodfa)."""
    from optodfa.sim import _compiled as compiled

    return compiled


def binary_fields(frames: np.ndarray, weights: np.ndarray, c0: int, c1: int, out: np.ndarray) -> None:
    """``out = frames @ [Re W[:, c0:c1] | Im W[:, c0:c1]]`` for frames whose entries are 0 or one value per row.

    ``frames`` ``(u, d + 1)``, ``weights`` ``(d + 1, 2M)`` ``[Re | Im]``, ``out`` ``(u, 2(c1 − c0))``. The sum runs over
    the lit elements in order with a fused multiply-add, as the BLAS product does for such a narrow inner
    dimension (the recorded outputs check it bit for bit); dark elements are skipped (they add exact zeros).
    """
    _compiled().binary_fields(frames, weights, c0, c1, out)


def signed_sum(counts: np.ndarray, signed: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ_f signed[i, f] · counts[i, f]`` for ``(n, F, D)`` integer counts and ``(n, F)`` float weights,
    rounded as ``counts[:, 0] · signed[:, 0]`` followed by ``addcmul_`` for each further frame."""
    _compiled().signed_sum(counts, signed, out)


def gaussian_counts(fields: np.ndarray, scale: np.ndarray, rows: np.ndarray, shared: bool, bits: np.ndarray,
                    table: np.ndarray, *, gain: float, offset: float, read_noise: float, top: float, code: int,
                    out: np.ndarray) -> int:
    """Counts of ``(k, b)`` readings written into ``out``; returns how many reached the top code.

    Args:
        fields: ``(u, 2b)`` ``[Re F | Im F]`` of the distinct rows (float32 or float64).
        scale: ``(u,)`` factor on ``|F|²`` per row (ones where the exposure is folded into the fields).
        rows: ``(k,)`` int64 row of each frame; ``shared``: whether rows repeat (the camera then computes the
            per-row mean and noise level first, with their own rounding).
        bits: ``(k, b)`` uint16 table indices of the frames' noise (any strides); ``table``: the normal table in the
            dtype of ``fields`` (float32 values, exactly).
        gain, offset, read_noise: the camera's counts per electron, dark offset and read noise (e⁻).
        top, code: highest reading and the top integer code; ``out``: ``(k, b)`` integer counts (any strides).
    """
    real = fields.dtype.type
    saturated = _compiled().gaussian_counts(fields, scale.astype(fields.dtype, copy=False), rows, shared, bits, table,
                                            real(gain), real(offset),
                                            real(gain * gain * read_noise * read_noise - gain * offset),
                                            real(read_noise * read_noise), real(top), code, real(0), out)
    return int(saturated)


def binary_counts(frames: np.ndarray, weights: np.ndarray, rows: np.ndarray, shared: bool, bits: np.ndarray,
                  table: np.ndarray, *, gain: float, offset: float, read_noise: float, top: float, code: int,
                  out: np.ndarray, columns: tuple[int, int], scratch: np.ndarray) -> int:
    """:func:`binary_fields` and :func:`gaussian_counts` in one compiled call over pixel ``columns`` (float32).

    A tile of :data:`TILE` columns at a time, it sums the fields of each distinct row, turns them into the row's
    mean reading and noise level (once per distinct row, not per frame), then reads every frame of the tile: the
    same operations in the same order as the two kernels, so the same counts, without a Python call per block or
    the fields' round trip through memory.

    Args:
        frames: ``(u, d + 1)`` float32 binary frames (0 or one value per row), as in :func:`binary_fields`.
        weights: ``(d + 1, 2M)`` ``[Re | Im]`` float32 weights.
        rows, shared, bits, table, gain, offset, read_noise, top, code: as in :func:`gaussian_counts`, with
            ``bits`` the ``(k, M)`` indices of all pixels.
        out: ``(k, M)`` integer counts, written in ``columns``.
        columns: ``(c0, c1)``, the pixel columns to read.
        scratch: ``(≥ u, 2, ≥ TILE)`` float32 buffer of the calling thread.

    Returns:
        readings in ``columns`` that reached the top code.
    """
    real = np.float32
    c0, c1 = columns
    tile = min(TILE, scratch.shape[2])
    saturated = _compiled().binary_counts(frames, weights, rows, shared, bits, table, real(gain), real(offset),
                                          real(gain * gain * read_noise * read_noise - gain * offset),
                                          real(read_noise * read_noise), real(top), code, real(0), out, c0, c1,
                                          tile, scratch)
    return int(saturated)
