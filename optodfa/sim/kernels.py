"""The camera's Gaussian-noise readout fused into one compiled pass per reading (CPU, numba).

From the speckle fields of a block of pixels to ADC counts, :func:`gaussian_counts` does in one pass what the
tensor code of :meth:`optodfa.sim.camera.Camera.expose` and :meth:`~optodfa.sim.camera.Camera.adc` does in about
ten: intensity ``|F|²`` (times the frame's exposure factor), gain and dark offset, noise level
``sqrt(μ + σ_read²)``, the table normal of :mod:`optodfa.sim.noise`, clip, truncation to an integer count and the
saturation count. It repeats the tensor code's arithmetic operation for operation, in its dtype, with a fused
multiply-add wherever torch's CPU kernels use one (``add`` with ``alpha``, ``addcmul``), so the counts are the same
number for number (``tests/sim/test_reference_outputs.py`` checks both against the recorded outputs).

For the narrow binary frames of DFA's error vectors (at most 64 elements, float32), :func:`binary_counts` goes
further: the speckle fields (:func:`binary_fields`' sums), the noise (drawn where it is used from the counter stream
of :mod:`optodfa.sim.noise`) and the camera pass in one call, a distinct frame's levels computed once and its frames
read while they are in cache, on several threads where torch has them (:mod:`optodfa.sim.threads`).
:func:`counter_words` draws the same stream's words for the tensor code.

Only the case that dominates a simulated projection is compiled: shot noise drawn as a Gaussian everywhere
(``poisson_exact_below = 0``) and a finite bit depth. Everything else, and any machine without numba, uses the tensor
code. Compiled code is cached on disk (numba's ``cache=True``): the first call on a machine compiles for about
2 s per kernel and dtype combination, later processes load it in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType

import numpy as np

__all__ = ["AVAILABLE", "binary_counts", "binary_fields", "counter_words", "distinct_binary_rows",
           "gaussian_counts", "signed_sum", "start_parallel"]

# OPTODFA_NO_KERNELS=1 turns the compiled path off (the tests compare both paths).
AVAILABLE = (importlib.util.find_spec("numba") is not None
             and os.environ.get("OPTODFA_NO_KERNELS", "") in ("", "0"))


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


def signed_sum(counts: np.ndarray, signed: np.ndarray, out: np.ndarray, *, groups: int = 1) -> None:
    """``out[i] = Σ_f signed[i, f] · counts[i, f]`` for ``(n, F, D)`` integer counts and ``(n, F)`` float weights,
    rounded as ``counts[:, 0] · signed[:, 0]`` followed by ``addcmul_`` for each further frame.

    ``groups`` > 1 (at most :func:`optodfa.sim.threads.parts`) sums that many groups of planes on as many threads,
    with the same sums."""
    if groups <= 1:
        _compiled().signed_sum(counts, signed, out)
        return
    with _numba_threads(groups):
        _compiled().signed_sum_parallel(counts, signed, out, groups)


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


def binary_counts(frames: np.ndarray, weights: np.ndarray, rows: np.ndarray, shared: bool, table: np.ndarray, *,
                  gain: float, offset: float, read_noise: float, top: float, code: int, out: np.ndarray,
                  key: int, first: int, tile: int, scratch: np.ndarray) -> int:
    """:func:`binary_fields` and :func:`gaussian_counts` in one compiled pass (float32), with the noise drawn in it.

    A tile of pixel columns at a time, it sums the fields of each distinct row, turns them into the row's mean
    reading and noise level (once per distinct row, not per frame), and reads the row's frames while those are in
    cache, each reading's normal drawn where it is used from the counter stream of :mod:`optodfa.sim.noise`: the
    same normals and the same operations in the same order as ``NoiseSource.normal_bits`` and the two kernels,
    so the same counts, without a Python call per block, the fields' round trip through memory or a buffer of
    noise words. With ``g`` scratch spaces the tiles run in ``g`` groups on ``g`` threads (``g`` at most
    :func:`optodfa.sim.threads.parts`), with the same counts.

    Args:
        frames: ``(u, d + 1)`` float32 binary frames (0 or one value per row), as in :func:`binary_fields`.
        weights: ``(d + 1, 2M)`` ``[Re | Im]`` float32 weights.
        rows, shared, table, gain, offset, read_noise, top, code: as in :func:`gaussian_counts`.
        out: ``(k, M)`` integer counts.
        key, first: the counter stream's key and the index of the stream's 16-bit index that reading ``(0, 0)``
            takes (4 × the words drawn before); reading ``(f, c)`` takes index ``first + f·M + c``.
        tile: pixel columns per tile (at most ``scratch.shape[2]``).
        scratch: ``(g, 3, ≥ tile)`` float32, one space per thread (a row's levels and a frame's normals).

    Returns:
        readings that reached the top code.
    """
    real = np.float32
    levels = (real(gain), real(offset), real(gain * gain * read_noise * read_noise - gain * offset),
              real(read_noise * read_noise), real(top), code, real(0))
    compiled = _compiled()
    stream = (np.uint64(key), np.uint64(first))
    if scratch.shape[0] == 1:
        return int(compiled.binary_counts(frames, weights, rows, shared, *stream, table, *levels, out, tile,
                                          scratch[0]))
    with _numba_threads(scratch.shape[0]):
        return int(compiled.binary_counts_parallel(frames, weights, rows, shared, *stream, table, *levels, out,
                                                   tile, scratch))


def counter_words(key: int, first: int, count: int) -> np.ndarray:
    """Words ``first … first + count − 1`` of the counter stream of ``key`` (:mod:`optodfa.sim.noise`), uint64."""
    out = np.empty(count, dtype=np.uint64)
    _compiled().counter_words(np.uint64(key), np.uint64(first), out)
    return out


def distinct_binary_rows(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First indices and inverse of the distinct rows of ``(k, ≤ 64)`` frames (non-zero = lit), exactly as
    :func:`optodfa.sim.speckle.distinct_rows` gives them for the packed frames, without packing them."""
    return _compiled().distinct_binary_rows(frames)


def start_parallel() -> str:
    """Run a first parallel loop, which starts numba's threading layer (raises if none can load); its name."""
    import numba

    _compiled().started(np.ones(2, dtype=np.int64))
    return str(numba.threading_layer())


@contextlib.contextmanager
def _numba_threads(count: int) -> Iterator[None]:
    """numba's parallel loops on ``count`` threads, and the calling thread's own setting back afterwards."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
