"""The compiled kernels of :mod:`optodfa.sim.kernels` (numba); imported on first use, cached on disk."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from optodfa.sim.noise import SPLITMIX_GAMMA, SPLITMIX_MIX_1, SPLITMIX_MIX_2

__all__ = ["binary_counts", "binary_counts_parallel", "binary_fields", "counter_words", "distinct_binary_rows",
           "gaussian_counts", "signed_sum", "signed_sum_parallel", "started"]

# optodfa.sim.noise: word j of a key's counter stream is mix(key + (j + 1)·GAMMA).
GAMMA, MIX_1, MIX_2 = SPLITMIX_GAMMA, SPLITMIX_MIX_1, SPLITMIX_MIX_2


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


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z: Any) -> Any:  # pragma: no cover - compiled
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def counter_words(key: Any, first: Any, out: np.ndarray) -> None:  # pragma: no cover - compiled
    # Words first, first + 1, ... of the counter stream of `key` (optodfa.sim.noise).
    j = first + np.uint64(1)
    for i in range(out.shape[0]):
        out[i] = _mix(key + j * GAMMA)
        j += np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _table_normals(key: Any, first: Any, table: np.ndarray, normals: np.ndarray) -> None:  # pragma: no cover
    # normals[p] = table[16-bit lane (first + p) mod 4 of counter word (first + p) div 4], lane 0 the low bits, as
    # NoiseSource.normal_bits' uint16 view of the words gives them: a partial word first, whole words, a partial
    # word last.
    count = normals.shape[0]
    p = 0
    i = first
    while p < count and (i & np.uint64(3)) != 0:
        word = _mix(key + ((i >> np.uint64(2)) + np.uint64(1)) * GAMMA)
        normals[p] = table[(word >> (np.uint64(16) * (i & np.uint64(3)))) & np.uint64(0xFFFF)]
        p += 1
        i += np.uint64(1)
    j = (i >> np.uint64(2)) + np.uint64(1)
    while p + 3 < count:
        word = _mix(key + j * GAMMA)
        normals[p] = table[word & np.uint64(0xFFFF)]
        normals[p + 1] = table[(word >> np.uint64(16)) & np.uint64(0xFFFF)]
        normals[p + 2] = table[(word >> np.uint64(32)) & np.uint64(0xFFFF)]
        normals[p + 3] = table[word >> np.uint64(48)]
        p += 4
        j += np.uint64(1)
    if p < count:
        word = _mix(key + j * GAMMA)
        lane = np.uint64(0)
        while p < count:
            normals[p] = table[(word >> lane) & np.uint64(0xFFFF)]
            p += 1
            lane += np.uint64(16)


@numba.njit(cache=True, nogil=True)
def distinct_binary_rows(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    # np.unique's first indices and inverse for the rows of frames of at most 64 elements, each row a big-endian
    # 64-bit key (element 0 the highest bit, as speckle.distinct_rows packs them) and a stable sort, as np.unique
    # sorts when asked for first indices.
    count, width = frames.shape
    keys = np.zeros(count, dtype=np.uint64)
    for r in range(count):
        key = np.uint64(0)
        for e in range(width):
            if frames[r, e] != 0:
                key |= np.uint64(1) << np.uint64(63 - e)
        keys[r] = key
    order = np.argsort(keys, kind="mergesort")
    first = np.empty(count, dtype=np.int64)
    inverse = np.empty(count, dtype=np.int64)
    distinct = -1
    for i in range(count):
        f = order[i]
        if i == 0 or keys[f] != keys[order[i - 1]]:
            distinct += 1
            first[distinct] = f
        inverse[f] = distinct
    return first[: distinct + 1].copy(), inverse


@numba.njit(cache=True, nogil=True)
def _lit_elements(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    distinct, elements = frames.shape
    lit = np.zeros((distinct, elements), dtype=np.int64)
    lit_n = np.zeros(distinct, dtype=np.int64)
    for r in range(distinct):
        n = 0
        for e in range(elements):
            if frames[r, e] != 0:
                lit[r, n] = e
                n += 1
        lit_n[r] = n
    return lit, lit_n


@numba.njit(cache=True, nogil=True)
def _row_levels(frames: np.ndarray, weights: np.ndarray, lit: np.ndarray, count: int, r: int, c0: int, c1: int,
                shared: bool, gain: Any, offset: Any, base: Any, read2: Any, zero: Any, mean: np.ndarray,
                std: np.ndarray) -> None:  # pragma: no cover - compiled
    # The fields of row r over pixels c0..c1-1, summed over its lit elements in order as binary_fields sums them
    # (four elements per pass over the row, the same chain of fused multiply-adds), then the row's mean reading
    # and noise level as gaussian_counts computes them, written where the real and imaginary fields were.
    pixels = weights.shape[1] // 2
    width = c1 - c0
    for p in range(width):
        mean[p] = 0
        std[p] = 0
    j = 0
    while j + 3 < count:
        ea, eb, ec, ed = lit[j], lit[j + 1], lit[j + 2], lit[j + 3]
        xa, xb, xc, xd = frames[r, ea], frames[r, eb], frames[r, ec], frames[r, ed]
        wa, wb, wc, wd = weights[ea, c0:c1], weights[eb, c0:c1], weights[ec, c0:c1], weights[ed, c0:c1]
        for p in range(width):
            mean[p] = _fma(xd, wd[p], _fma(xc, wc[p], _fma(xb, wb[p], _fma(xa, wa[p], mean[p]))))
        wa, wb = weights[ea, pixels + c0 : pixels + c1], weights[eb, pixels + c0 : pixels + c1]
        wc, wd = weights[ec, pixels + c0 : pixels + c1], weights[ed, pixels + c0 : pixels + c1]
        for p in range(width):
            std[p] = _fma(xd, wd[p], _fma(xc, wc[p], _fma(xb, wb[p], _fma(xa, wa[p], std[p]))))
        j += 4
    while j < count:
        ea = lit[j]
        xa = frames[r, ea]
        wa, wb = weights[ea, c0:c1], weights[ea, pixels + c0 : pixels + c1]
        for p in range(width):
            mean[p] = _fma(xa, wa[p], mean[p])
        for p in range(width):
            std[p] = _fma(xa, wb[p], std[p])
        j += 1
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


@numba.njit(cache=True, nogil=True)
def _frame_counts(mean: np.ndarray, std: np.ndarray, key: Any, first: Any, table: np.ndarray, top: Any, code: int,
                  zero: Any, counts: np.ndarray, normals: np.ndarray) -> int:  # pragma: no cover - compiled
    # mean + noise level x table normal, clipped and truncated, as gaussian_counts reads a frame, with the normals
    # of readings first, first + 1, ... of the counter stream. The normals go first, on their own: the arithmetic
    # after them then runs on whole vectors.
    width = counts.shape[0]
    _table_normals(key, first, table, normals)
    top_codes = 0
    for p in range(width):
        value = _fma(std[p], normals[p], mean[p])
        value = value if value > zero else zero
        value = value if value < top else top
        count = np.int32(value)
        counts[p] = count
        top_codes += np.int32(count == code)
    return top_codes


@numba.njit(cache=True, nogil=True)
def _frames_by_row(rows: np.ndarray, distinct: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    # The frames of each distinct row, in order: order[starts[r]:starts[r + 1]].
    starts = np.zeros(distinct + 1, dtype=np.int64)
    for f in range(rows.shape[0]):
        starts[rows[f] + 1] += 1
    for r in range(distinct):
        starts[r + 1] += starts[r]
    order = np.empty(rows.shape[0], dtype=np.int64)
    filled = starts[:-1].copy()
    for f in range(rows.shape[0]):
        order[filled[rows[f]]] = f
        filled[rows[f]] += 1
    return starts, order


@numba.njit(cache=True, nogil=True)
def _tile_counts(frames: np.ndarray, weights: np.ndarray, lit: np.ndarray, lit_n: np.ndarray, starts: np.ndarray,
                 order: np.ndarray, shared: bool, key: Any, first: Any, table: np.ndarray, gain: Any, offset: Any,
                 base: Any, read2: Any, top: Any, code: int, zero: Any, out: np.ndarray, t0: int, t1: int, tile: int,
                 scratch: np.ndarray) -> int:  # pragma: no cover - compiled
    # Tiles t0..t1-1 of `tile` pixel columns; in each, a distinct row's levels, then the counts of its frames
    # while the levels are in cache (scratch: (3, tile), the levels and the table normals of a frame). Reading
    # (f, c) takes the normal of reading first + f·pixels + c of the counter stream, as normal_bits orders them.
    pixels = out.shape[1]
    saturated = 0
    for t in range(t0, t1):
        c0 = t * tile
        c1 = min(pixels, c0 + tile)
        width = c1 - c0
        mean, std, normals = scratch[0, :width], scratch[1, :width], scratch[2, :width]
        for r in range(frames.shape[0]):
            _row_levels(frames, weights, lit[r], lit_n[r], r, c0, c1, shared, gain, offset, base, read2, zero, mean,
                        std)
            for i in range(starts[r], starts[r + 1]):
                f = order[i]
                start = first + np.uint64(f * pixels + c0)
                saturated += _frame_counts(mean, std, key, start, table, top, code, zero, out[f, c0:c1], normals)
    return saturated


@numba.njit(cache=True, nogil=True)
def binary_counts(frames: np.ndarray, weights: np.ndarray, rows: np.ndarray, shared: bool, key: Any, first: Any,
                  table: np.ndarray, gain: Any, offset: Any, base: Any, read2: Any, top: Any, code: int, zero: Any,
                  out: np.ndarray, tile: int, scratch: np.ndarray) -> int:  # pragma: no cover - compiled
    lit, lit_n = _lit_elements(frames)
    starts, order = _frames_by_row(rows, frames.shape[0])
    return _tile_counts(frames, weights, lit, lit_n, starts, order, shared, key, first, table, gain, offset, base,
                        read2, top, code, zero, out, 0, -(-out.shape[1] // tile), tile, scratch)


@numba.njit(cache=True, nogil=True, parallel=True)
def binary_counts_parallel(frames: np.ndarray, weights: np.ndarray, rows: np.ndarray, shared: bool, key: Any,
                           first: Any, table: np.ndarray, gain: Any, offset: Any, base: Any, read2: Any,
                           top: Any, code: int, zero: Any, out: np.ndarray, tile: int,
                           scratch: np.ndarray) -> int:  # pragma: no cover - compiled
    # One group of whole tiles per scratch space (per thread); the lit elements and the frames of each row are
    # found once for all groups.
    lit, lit_n = _lit_elements(frames)
    starts, order = _frames_by_row(rows, frames.shape[0])
    groups = scratch.shape[0]
    tiles = -(-out.shape[1] // tile)
    share = -(-tiles // groups)
    saturated = np.zeros(groups, dtype=np.int64)
    for g in numba.prange(groups):
        saturated[g] = _tile_counts(frames, weights, lit, lit_n, starts, order, shared, key, first, table, gain, offset,
                                    base, read2, top, code, zero, out, g * share, min(tiles, (g + 1) * share), tile,
                                    scratch[g])
    result = 0
    for g in range(groups):
        result += saturated[g]
    return result


@numba.njit(cache=True, nogil=True, parallel=True)
def signed_sum_parallel(counts: np.ndarray, signed: np.ndarray, out: np.ndarray,
                        groups: int) -> None:  # pragma: no cover - compiled
    planes = counts.shape[0]
    step = -(-planes // groups)
    for g in numba.prange(groups):
        a = g * step
        b = min(planes, a + step)
        if a < b:
            signed_sum(counts[a:b], signed[a:b], out[a:b])


@numba.njit(cache=True, parallel=True)
def started(values: np.ndarray) -> int:  # pragma: no cover - compiled
    total = 0
    for i in numba.prange(values.shape[0]):
        total += values[i]
    return total
