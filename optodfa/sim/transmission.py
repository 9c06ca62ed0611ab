"""The transmission matrix of the scattering medium, reproducible block by block from its seed.

``R ∈ C^{rows × cols}`` has i.i.d. circular complex Gaussian entries: real and imaginary parts each ``N(0, σ²/2)``,
so ``E|R_ij|² = σ²`` (``variance``). Rows are camera pixels, columns DMD mirrors (or macropixels, see below).

Definition (generator version 1). The matrix is cut into tiles of ``TILE_ROWS`` rows of one column. Tile ``(r, j)``
(rows ``r·TILE_ROWS …``, column ``j``) is drawn by numpy's Philox generator seeded with
``derive_seed(seed, version, stream, j, r)``: ``standard_normal((TILE_ROWS, 2))`` in float64, the two columns being
the real and imaginary parts, times ``sqrt(σ²/2)``, then rounded to ``dtype``. So the matrix is a function of
``(seed, stream, dtype, version)`` and of nothing else: its shape only says how much of an unbounded array is read,
any block can be regenerated alone (only the tiles it touches are drawn), a block of a larger matrix equals the
smaller matrix, and the numbers are the same whatever torch device they are later moved to (they are drawn on the
CPU). A real OPU is about 10⁶ × 10⁶; nothing here ever materialises more than the block asked for.

Statistically exact shortcuts (each covered by a statistical test in ``tests/sim``):

* Macropixels: the field of one input element that drives ``m`` mirrors is the sum of ``m`` i.i.d. columns, which
  is in distribution one circular Gaussian column of variance ``m σ²``. :func:`element_columns` draws that one
  column instead of ``m``; :func:`summed_columns` computes the exact sum from the full matrix for comparison.
* Reference field: ``R r`` for a reference region of ``k`` mirrors is likewise one circular Gaussian vector of
  variance ``k σ²``, drawn as one column of its own stream.

The shortcut and the exact sum agree in distribution, not number by number: a device built with the shortcut is a
different (equally likely) medium than the one built from the mirror-level matrix with the same seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from optodfa.seeding import check_seed, derive_seed
from optodfa.validation import check_choice, check_int, check_real

__all__ = [
    "GENERATOR_VERSION",
    "STREAM_MIRRORS",
    "STREAM_REFERENCE",
    "STREAM_SIGNAL",
    "TILE_ROWS",
    "TransmissionMatrix",
    "element_columns",
    "reference_field",
    "summed_columns",
]

GENERATOR_VERSION = 1
TILE_ROWS = 4096
# Streams keep the mirror-level matrix, the shortcut element columns and the shortcut reference field independent.
STREAM_MIRRORS = 0
STREAM_SIGNAL = 1
STREAM_REFERENCE = 2

COMPLEX_DTYPES = (torch.complex64, torch.complex128)


@dataclasses.dataclass(frozen=True)
class TransmissionMatrix:
    """A ``(rows, cols)`` complex Gaussian matrix defined by ``(seed, stream, dtype, version)``.

    Attributes:
        seed: root seed (the feedback seed of the device).
        shape: ``(rows, cols)`` = (camera pixels, DMD mirrors or elements).
        dtype: ``torch.complex64`` or ``torch.complex128``.
        variance: ``σ² = E|R_ij|²`` in intensity units per mirror.
        stream: independent sub-matrix label (see ``STREAM_*``).
        version: generator version; only ``1`` exists.
    """

    seed: int
    shape: tuple[int, int]
    dtype: torch.dtype = torch.complex64
    variance: float = 1.0
    stream: int = STREAM_MIRRORS
    version: int = GENERATOR_VERSION

    def __post_init__(self) -> None:
        check_seed(self.seed, "seed")
        if not isinstance(self.shape, Sequence) or len(self.shape) != 2:
            raise ValueError(f"shape must be (rows, cols), got {self.shape!r}")
        rows = check_int("shape[0] (rows)", self.shape[0], low=1)
        cols = check_int("shape[1] (cols)", self.shape[1], low=1)
        object.__setattr__(self, "shape", (rows, cols))
        check_choice("dtype", self.dtype, COMPLEX_DTYPES)
        check_real("variance", self.variance, low=0.0, low_open=True)
        check_int("stream", self.stream, low=0)
        check_choice("version", self.version, (GENERATOR_VERSION,))

    def block(self, rows: slice | range = slice(None), cols: slice | range = slice(None)) -> torch.Tensor:
        """The sub-matrix ``R[rows, cols]`` (unit-step slices) drawn on the CPU: ``(len(rows), len(cols))``."""
        r0, r1 = _bounds("rows", rows, self.shape[0])
        c0, c1 = _bounds("cols", cols, self.shape[1])
        out = np.empty((r1 - r0, c1 - c0), dtype=np.complex128)
        scale = math.sqrt(self.variance / 2.0)
        for j in range(c0, c1):
            out[:, j - c0] = self._column(j, r0, r1)
        return torch.from_numpy(out * scale).to(self.dtype)

    def full(self) -> torch.Tensor:
        """The whole ``(rows, cols)`` matrix on the CPU."""
        return self.block()

    def _column(self, j: int, r0: int, r1: int) -> np.ndarray:
        pieces = []
        for tile in range(r0 // TILE_ROWS, (r1 - 1) // TILE_ROWS + 1):
            start = tile * TILE_ROWS
            generator = np.random.Generator(np.random.Philox(derive_seed(self.seed, self.version, self.stream, j,
                                                                         tile)))
            values = generator.standard_normal((TILE_ROWS, 2))
            lo, hi = max(r0, start) - start, min(r1, start + TILE_ROWS) - start
            pieces.append(values[lo:hi, 0] + 1j * values[lo:hi, 1])
        return np.concatenate(pieces)


def element_columns(seed: int, rows: int, elements: int, *, macropixel: int, variance: float = 1.0,
                    dtype: torch.dtype = torch.complex64, row_block: slice | range = slice(None)) -> torch.Tensor:
    """Shortcut field columns of ``elements`` input elements that each drive ``macropixel`` mirrors.

    Each column is one circular Gaussian column of variance ``macropixel · variance``: in distribution the sum of
    ``macropixel`` i.i.d. mirror columns (the exact sum is :func:`summed_columns`). Returns ``(rows, elements)``
    complex on the CPU; ``row_block`` regenerates a range of camera pixels alone.
    """
    check_int("macropixel", macropixel, low=1)
    matrix = TransmissionMatrix(seed, (rows, elements), dtype, variance * macropixel, STREAM_SIGNAL)
    return matrix.block(rows=row_block)


def reference_field(seed: int, rows: int, *, mirrors: int, variance: float = 1.0,
                    dtype: torch.dtype = torch.complex64, row_block: slice | range = slice(None)) -> torch.Tensor:
    """Shortcut reference field ``R r`` of a reference region of ``mirrors`` lit mirrors: ``(rows,)`` complex.

    One circular Gaussian vector of variance ``mirrors · variance`` (in distribution the sum of the region's
    columns), from a stream of its own so that it does not depend on the number of signal elements.
    """
    check_int("mirrors", mirrors, low=1)
    matrix = TransmissionMatrix(seed, (rows, 1), dtype, variance * mirrors, STREAM_REFERENCE)
    return matrix.block(rows=row_block)[:, 0]


def summed_columns(matrix: TransmissionMatrix, groups: Sequence[range],
                   row_block: slice | range = slice(None)) -> torch.Tensor:
    """Exact sums of the columns of ``matrix`` in each group of mirrors: ``(rows, len(groups))`` complex (CPU).

    Only the columns named by the groups are drawn, so a macropixel layout on a 10⁶-mirror DMD costs what its lit
    mirrors cost.
    """
    r0, r1 = _bounds("rows", row_block, matrix.shape[0])
    out = torch.zeros(r1 - r0, len(groups), dtype=matrix.dtype)
    for g, group in enumerate(groups):
        if group.step != 1 or len(group) == 0:
            raise ValueError(f"groups must be non-empty unit-step ranges of columns, got {group!r} at index {g}")
        out[:, g] = matrix.block(range(r0, r1), group).sum(dim=1)
    return out


def _bounds(name: str, index: slice | range, size: int) -> tuple[int, int]:
    if isinstance(index, range):
        if index.step != 1:
            raise ValueError(f"{name} must be a unit-step range or slice, got {index!r}")
        start, stop = index.start, index.stop
    elif isinstance(index, slice):
        if index.step not in (None, 1):
            raise ValueError(f"{name} must be a unit-step range or slice, got {index!r}")
        start, stop, _ = index.indices(size)
    else:
        raise TypeError(f"{name} must be a slice or range, got {type(index).__name__}")
    if not 0 <= start < stop <= size:
        raise ValueError(f"{name} must select a non-empty range inside [0, {size}), got [{start}, {stop})")
    return start, stop
