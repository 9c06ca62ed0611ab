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

import os
from typing import Any

import numpy as np

__all__ = ["AVAILABLE", "gaussian_counts", "signed_sum"]

try:
    import numba
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba is optional: the tensor code computes the same counts
    numba = None

# OPTODFA_NO_KERNELS=1 turns the compiled path off (the tests compare both paths).
AVAILABLE = numba is not None and os.environ.get("OPTODFA_NO_KERNELS", "") in ("", "0")

if numba is not None:

    @intrinsic
    def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
        """``a · b + c`` rounded once (LLVM's fma), as torch's vectorised CPU kernels compute it."""
        signature = a(a, b, c)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            kind = args[0].type
            name = "llvm.fma.f32" if isinstance(kind, ir.FloatType) else "llvm.fma.f64"
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(kind, [kind] * 3), name)
            return builder.call(function, args)

        return signature, codegen

    @numba.njit(cache=True, nogil=True)
    def _kernel(fields: np.ndarray, scale: np.ndarray, rows: np.ndarray, shared: bool, bits: np.ndarray,
                table: np.ndarray, gain: Any, offset: Any, base: Any, read2: Any, top: Any,
                code: int, zero: Any, out: np.ndarray) -> int:  # pragma: no cover - compiled
        frames, width = out.shape
        saturated = 0
        z = np.empty(width, dtype=table.dtype)
        counts = np.empty(width, dtype=np.int32)
        for f in range(frames):
            r = rows[f]
            s = scale[r]
            re = fields[r, :width]
            im = fields[r, width:]
            # The table gathers first, then branch-free arithmetic on unit-stride rows, which LLVM vectorises.
            for p in range(width):
                z[p] = table[bits[f, p]]
            if shared:
                for p in range(width):
                    mu = _fma(im[p], im[p], re[p] * re[p]) * s
                    # camera.expose with shared rows: mu·gain + offset and sqrt(mu + r²)·gain, each op rounded.
                    value = _fma(np.sqrt(mu + read2) * gain, z[p], mu * gain + offset)
                    counts[p] = np.int32(min(max(value, zero), top))
            else:
                for p in range(width):
                    mu = _fma(im[p], im[p], re[p] * re[p]) * s
                    value = _fma(mu, gain, offset)
                    # max(·, 0) matters only with a dark offset (gain·value + gain²r² − gain·offset may round
                    # below 0 on a dark pixel); without one the sum is of non-negative terms.
                    std = np.sqrt(max(_fma(value, gain, base), zero))
                    counts[p] = np.int32(min(max(_fma(std, z[p], value), zero), top))
            for p in range(width):
                out[f, p] = counts[p]
                saturated += counts[p] == code
        return saturated


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _signed_sum_kernel(counts: np.ndarray, signed: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
        planes, frames, width = counts.shape
        for i in range(planes):
            first = signed[i, 0]
            row = out[i]
            block = counts[i]
            for p in range(width):
                row[p] = block[0, p] * first
            for f in range(1, frames):
                weight = signed[i, f]
                for p in range(width):
                    row[p] = _fma(out.dtype.type(block[f, p]), weight, row[p])


def signed_sum(counts: np.ndarray, signed: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ_f signed[i, f] · counts[i, f]`` for ``(n, F, D)`` integer counts and ``(n, F)`` float weights,
    rounded as ``counts[:, 0] · signed[:, 0]`` followed by ``addcmul_`` for each further frame."""
    _signed_sum_kernel(counts, signed, out)


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
    saturated = _kernel(fields, scale.astype(fields.dtype, copy=False), rows, shared, bits, table, real(gain),
                        real(offset), real(gain * gain * read_noise * read_noise - gain * offset),
                        real(read_noise * read_noise), real(top), code, real(0), out)
    return int(saturated)
