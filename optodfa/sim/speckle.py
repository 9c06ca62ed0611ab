"""Noiseless speckle intensities of a batch of frames, computed once per distinct frame.

For augmented frames ``x = [signal | ρ]`` (``ρ`` the reference flag) the field at the camera is
``F = C x_signal + ρ f`` and the intensity ``|F|²``. Readouts repeat work: the 4-frame readout shows ``t⁺`` with
and without the reference, and the codes of a small error dimension repeat across the samples of a batch. On the
CPU this module therefore

1. finds the distinct frames; when at most 3/4 of the frames are distinct it computes one intensity row per
   distinct frame and the camera copies rows as it draws independent noise per frame (copying a row costs less
   than computing it);
2. when ``d`` is large, computes the signal field once per distinct signal pattern and adds the reference field
   where the flag is set (this halves the matrix product of the 4-frame readout, which then dominates).

On a GPU it computes every frame directly: finding distinct rows needs a host round trip, and the product is cheap
there. Results agree with the direct computation up to floating-point rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from optodfa.sim import kernels
from optodfa.sim.workspace import Workspace

__all__ = ["DISTINCT_FRACTION", "distinct_rows", "frame_intensities"]

# Copying rows costs two passes over the readings (mean and noise level); computing each frame costs the product and
# three passes, so sharing rows pays when at most about 3/4 of the frames are distinct.
DISTINCT_FRACTION = 0.75
# Sharing signal fields between frames with and without the reference saves (k − u)·d multiply-adds per pixel
# pair and costs two copies of the fields: worth it from about 64 signal elements on.
SHARED_SIGNAL_MIN_WIDTH = 64


def frame_intensities(x: torch.Tensor, weights: torch.Tensor, scale: torch.Tensor,
                      workspace: Workspace) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled intensities ``scale · |F|²`` of the frames.

    Args:
        x: ``(k, d + 1)`` augmented binary frames (signal elements, then the reference flag), float.
        weights: ``(d + 1, 2M)`` real weights ``[Re Cᵀ | Im Cᵀ]`` with the reference field as the last row.
        scale: ``(k,)`` factor per frame (photo-electrons per unit intensity); frames that are equal share it.
        workspace: scratch buffers; the result lives there until the next call.

    Returns:
        ``(u, M)`` rows and the ``(k,)`` int64 row of each frame, or ``(k, M)`` and ``None`` (one row per frame).
    """
    plan = FramePlan(x, weights, scale, workspace)
    return plan.intensities(0, plan.pixels), plan.rows


class FramePlan:
    """The distinct frames of a batch, found once, and their intensities for any block of pixel columns.

    ``intensities(c0, c1)`` equals columns ``c0 … c1 − 1`` of :func:`frame_intensities`; computing a block of
    columns at a time keeps the fields, the intensities and the camera's passes over them in cache. Attributes:
    ``rows`` (``(k,)`` int64 row of each frame, or ``None``: one row per frame), ``pixels`` (``M``).
    """

    def __init__(self, x: torch.Tensor, weights: torch.Tensor, scale: torch.Tensor, workspace: Workspace) -> None:
        self.weights, self.workspace = weights, workspace
        self.pixels = weights.shape[1] // 2
        self.rows: torch.Tensor | None = None
        self._patterns: torch.Tensor | None = None
        self._pattern_rows: torch.Tensor | None = None
        self._reference: torch.Tensor | None = None
        k = x.shape[0]
        if x.device.type != "cpu":
            self._frames, self._scale = x * scale.sqrt()[:, None], None
            return
        narrow = x.shape[1] <= SHARED_SIGNAL_MIN_WIDTH
        if narrow and kernels.AVAILABLE:
            first, inverse = kernels.distinct_binary_rows(x.numpy())  # the same rows, without packing them
        else:
            binary = x.numpy() != 0
            first, inverse = distinct_rows(np.packbits(binary, axis=1))
        targets = None
        if len(first) <= DISTINCT_FRACTION * k:
            targets, self.rows = torch.from_numpy(first), torch.from_numpy(inverse.reshape(-1))
        chosen = x if targets is None else x.index_select(0, targets)
        chosen_scale = scale if targets is None else scale.index_select(0, targets)
        if narrow:
            # A narrow product costs less than the copies that sharing signal fields needs; the exposure factor
            # rides along in the frames for free.
            self._frames, self._scale = chosen * chosen_scale.sqrt()[:, None], None
            return
        self._frames, self._scale = chosen, chosen_scale[:, None]
        chosen_binary = binary if targets is None else binary[first]
        pattern_first, pattern_inverse = distinct_rows(np.packbits(chosen_binary[:, :-1], axis=1))
        if len(pattern_first) < chosen.shape[0]:
            self._patterns = chosen.index_select(0, torch.from_numpy(pattern_first))[:, :-1]
            self._pattern_rows = torch.from_numpy(pattern_inverse.reshape(-1))
            if chosen_binary[:, -1].any():
                self._reference = chosen[:, -1]

    @staticmethod
    def compiles(width: int, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether the plan of frames ``width`` elements wide (reference included) will be :attr:`compiled`:
        narrow float32 frames on the CPU with the compiled kernels, known before any plan is built."""
        return (width <= SHARED_SIGNAL_MIN_WIDTH and device.type == "cpu" and dtype == torch.float32
                and kernels.AVAILABLE)

    @property
    def compiled(self) -> bool:
        """Whether :meth:`fields` is a compiled sum over lit elements (which releases the GIL and runs on one
        thread) rather than a torch product (which uses torch's own threads): :meth:`compiles` of this plan."""
        return self.compiles(self._frames.shape[1], self.weights.dtype, self.weights.device)

    def binary_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``(u, d + 1)`` frames (exposure folded in) and ``(d + 1, 2M)`` weights :meth:`fields` sums, as numpy
        arrays sharing memory with the plan's tensors (compiled plans only: :func:`kernels.binary_counts`)."""
        assert self.compiled, "binary_inputs is for compiled plans"
        return self._frames.numpy(), self.weights.numpy()

    def fields(self, c0: int, c1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(u, 2b)`` fields ``[Re F | Im F]`` of pixels ``c0 … c1 − 1`` (``b = c1 − c0``, in the plan's workspace)
        and the ``(u, 1)`` factor their intensities still need (``None`` when the exposure is folded into the
        fields)."""
        m, w = self.pixels, self.weights
        ws = self.workspace
        if self.compiled:
            # Narrow binary frames: a compiled sum of the lit rows beats the BLAS product's small-K path (float32
            # only: the float64 product sums in another order).
            fields = ws.get("fields", (self._frames.shape[0], 2 * (c1 - c0)), w.dtype, w.device)
            kernels.binary_fields(self._frames.numpy(), w.numpy(), c0, c1, fields.numpy())
            return fields, None
        b = c1 - c0
        if self._patterns is None:
            fields = ws.get("fields", (self._frames.shape[0], 2 * b), w.dtype, w.device)
            _block_product(self._frames, w, m, c0, c1, fields)
        else:
            signal = ws.get("signal_fields", (self._patterns.shape[0], 2 * b), w.dtype, w.device)
            _block_product(self._patterns, w[:-1], m, c0, c1, signal)
            fields = torch.index_select(signal, 0, self._pattern_rows,
                                        out=ws.get("fields", (self._frames.shape[0], 2 * b), w.dtype, w.device))
            if self._reference is not None:
                fields[:, :b].addr_(self._reference, w[-1, c0:c1])
                fields[:, b:].addr_(self._reference, w[-1, m + c0 : m + c1])
        return fields, self._scale

    def intensities(self, c0: int, c1: int) -> torch.Tensor:
        """``(u, c1 − c0)`` scaled intensities of pixels ``c0 … c1 − 1`` (in the workspace until the next call)."""
        fields, scale = self.fields(c0, c1)
        intensity = _square(fields, self.workspace)
        return intensity if scale is None else intensity.mul_(scale)


def distinct_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(packed, axis=0, return_index=True, return_inverse=True)[1:]`` for ``(k, b)`` uint8 rows.

    Rows of at most 8 bytes are compared as one big-endian 64-bit key each, which orders them as the row-wise
    comparison does (byte by byte, first byte first) and sorts a plain integer array instead of a structured one
    (0.25 ms → 0.03 ms at 512 rows of 2 bytes on this project's machines); the first index and the inverse are the
    same arrays.
    """
    k, width = packed.shape
    if width > 8:
        _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1)
    keys = np.zeros((k, 8), dtype=np.uint8)
    keys[:, :width] = packed
    _, first, inverse = np.unique(keys.view(">u8").reshape(-1), return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _block_product(x: torch.Tensor, weights: torch.Tensor, m: int, c0: int, c1: int, out: torch.Tensor) -> None:
    """``out`` (``(u, 2b)``) ``= [x Re W[:, c0:c1] | x Im W[:, c0:c1]]`` for ``weights = [Re W | Im W]`` (``m``
    columns each).

    A block of columns is two products straight from strided views of the weights into the two halves of
    ``out``: gathering the block's columns first (``torch.cat``) copied ``(d + 1) × 2b`` weights a block, about
    20 % on top of the product at ``d = 1024`` on this project's machines. Each entry is the same sum in the same
    order either way.
    """
    if c0 == 0 and c1 == m:
        torch.matmul(x, weights, out=out)  # one product for the real and imaginary parts together
        return
    b = c1 - c0
    torch.matmul(x, weights[:, c0:c1], out=out[:, :b])
    torch.matmul(x, weights[:, m + c0 : m + c1], out=out[:, b:])


def _square(fields: torch.Tensor, workspace: Workspace) -> torch.Tensor:
    m = fields.shape[1] // 2
    real, imag = fields[:, :m], fields[:, m:]
    out = workspace.get("intensity", (fields.shape[0], m), fields.dtype, fields.device)
    return torch.mul(real, real, out=out).addcmul_(imag, imag)
