"""The compiled kernels of :mod:`optodfa.sim.kernels` (numba); imported on first use, cached on disk."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["binary_counts", "binary_fields", "gaussian_counts", "signed_sum"]


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
def gaussian_counts(fields: np.ndarray, scale: np.ndarray, rows: np.ndarray, shared: bool, bits: np.ndarray,
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

@numba.njit(cache=True, nogil=True)
def signed_sum(counts: np.ndarray, signed: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
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


@numba.njit(cache=True, nogil=True)
def binary_fields(frames: np.ndarray, weights: np.ndarray, c0: int, c1: int,
                  out: np.ndarray) -> None:  # pragma: no cover - compiled
    pixels = weights.shape[1] // 2
    width = c1 - c0
    rows, elements = frames.shape
    for r in range(rows):
        re = out[r, :width]
        im = out[r, width:]
        re[:] = 0
        im[:] = 0
        for k in range(elements):
            x = frames[r, k]
            if x != 0:  # a dark element adds an exact zero: skipping it changes no bit of the sum
                w_re = weights[k, c0:c1]
                w_im = weights[k, pixels + c0 : pixels + c1]
                for p in range(width):
                    re[p] = _fma(x, w_re[p], re[p])
                    im[p] = _fma(x, w_im[p], im[p])


@numba.njit(cache=True, nogil=True)
def binary_counts(frames: np.ndarray, weights: np.ndarray, rows: np.ndarray, shared: bool, bits: np.ndarray,
                  table: np.ndarray, gain: Any, offset: Any, base: Any, read2: Any, top: Any, code: int, zero: Any,
                  out: np.ndarray, c_start: int, c_stop: int, tile: int,
                  scratch: np.ndarray) -> int:  # pragma: no cover - compiled
    distinct, elements = frames.shape
    frames_total = out.shape[0]
    pixels = weights.shape[1] // 2
    lit = np.empty(elements, dtype=np.int64)
    saturated = 0
    for c0 in range(c_start, c_stop, tile):
        c1 = min(c_stop, c0 + tile)
        width = c1 - c0
        # Pass 1, per distinct row: fields summed over the lit elements in order (binary_fields' sums, two
        # elements per pass over the row), then the row's mean reading and noise level, kept where the fields were.
        for r in range(distinct):
            mean = scratch[r, 0, :width]
            std = scratch[r, 1, :width]
            n = 0
            for e in range(elements):
                if frames[r, e] != 0:
                    lit[n] = e
                    n += 1
            mean[:] = 0
            std[:] = 0
            j = 0
            while j + 1 < n:
                xa, xb = frames[r, lit[j]], frames[r, lit[j + 1]]
                re_a, re_b = weights[lit[j], c0:c1], weights[lit[j + 1], c0:c1]
                im_a = weights[lit[j], pixels + c0 : pixels + c1]
                im_b = weights[lit[j + 1], pixels + c0 : pixels + c1]
                for p in range(width):
                    mean[p] = _fma(xb, re_b[p], _fma(xa, re_a[p], mean[p]))
                for p in range(width):
                    std[p] = _fma(xb, im_b[p], _fma(xa, im_a[p], std[p]))
                j += 2
            if j < n:
                xa = frames[r, lit[j]]
                re_a, im_a = weights[lit[j], c0:c1], weights[lit[j], pixels + c0 : pixels + c1]
                for p in range(width):
                    mean[p] = _fma(xa, re_a[p], mean[p])
                for p in range(width):
                    std[p] = _fma(xa, im_a[p], std[p])
            if shared:
                for p in range(width):
                    mu = _fma(std[p], std[p], mean[p] * mean[p])
                    std[p] = np.sqrt(mu + read2) * gain
                    mean[p] = mu * gain + offset
            else:
                for p in range(width):
                    mu = _fma(std[p], std[p], mean[p] * mean[p])
                    value = _fma(mu, gain, offset)
                    std[p] = np.sqrt(max(_fma(value, gain, base), zero))
                    mean[p] = value
        # Pass 2, per frame: mean + noise level x table normal, clipped and truncated, as gaussian_counts.
        for f in range(frames_total):
            r = rows[f]
            mean = scratch[r, 0, :width]
            std = scratch[r, 1, :width]
            drawn = bits[f, c0:c1]
            counts = out[f, c0:c1]
            top_codes = 0
            for p in range(width):
                value = _fma(std[p], table[drawn[p]], mean[p])
                value = value if value > zero else zero
                value = value if value < top else top
                count = np.int32(value)
                counts[p] = count
                top_codes += np.int32(count == code)
            saturated += top_codes
    return saturated
