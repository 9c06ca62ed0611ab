"""Reusable scratch buffers for the simulators' large temporaries.

A fresh multi-megabyte CPU tensor is served by the C allocator straight from the operating system (``mmap``), so
every first touch of its pages faults: about 0.3 ms per MB on this project's machines, which made allocation the
largest cost of a simulated projection. Temporaries that never leave a call (fields, noise, indices) therefore
live in buffers that grow once and are reused; anything returned to the caller is a fresh tensor.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Workspace"]


class Workspace:
    """Named flat buffers, grown on demand, handed out as views of the requested shape.

    A view stays valid until the same name is requested again; callers must not keep it across calls.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` backed by buffer ``name``."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            buffer = torch.empty(size, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:size].view(shape)

    def clear(self) -> None:
        """Release every buffer."""
        self._buffers.clear()

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())
