"""Random numbers for device noise (camera, drift), drawn on the torch device that computes.

One :class:`NoiseSource` per simulated device, seeded from the device's noise seed (separate from the feedback
seed). Its whole state fits in :meth:`NoiseSource.state_dict`, so a checkpointed run continues bit-identically.

Two back ends, chosen by the torch device:

* CUDA: a CUDA ``torch.Generator``; ``torch.randn`` (exact Gaussian) and ``torch.poisson``. Nothing leaves the GPU.
* CPU: the CPU ``torch.Generator`` (Mersenne Twister) costs about 7 ns per number on this project's machines, which
  made Gaussian noise 2/3 of a simulated projection. The CPU back end therefore draws raw bits from numpy's SFC64
  generator (about 0.6 ns per 64-bit word) and maps each 16 bits through an inverse-CDF table of the standard normal:
  entry ``i`` is ``Φ⁻¹((i + ½) / 2¹⁶)``, the whole table rescaled by 1.00001 so its variance is exactly 1. This is a
  documented approximation of N(0, 1): its CDF differs from Φ by at most 1.1·10⁻⁵ everywhere and its tails are
  cut at ``|z| = 4.32`` (true mass beyond: 1.5·10⁻⁵). The values are discrete, 4·10⁻⁵ σ apart near 0, far finer than
  any camera's ADC step; the truncated tails matter only for events rarer than 1 in 65 000 per pixel. Poisson
  draws on the CPU use numpy's exact sampler on the same bit stream.

Bytes are read in little-endian order (every platform torch supports for this project is little-endian).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from optodfa.seeding import check_seed, derive_seed

__all__ = ["TABLE_BITS", "NoiseSource", "normal_table"]

TABLE_BITS = 16
_TABLE: torch.Tensor | None = None


def normal_table() -> torch.Tensor:
    """``(2**16,)`` float32 inverse-CDF table of N(0, 1) at bin midpoints, scaled to unit variance (CPU)."""
    global _TABLE
    if _TABLE is None:
        size = 2**TABLE_BITS
        midpoints = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        table = torch.special.ndtri(midpoints)
        table = table / table.square().mean().sqrt()
        _TABLE = table.to(torch.float32)
    return _TABLE


class NoiseSource:
    """Standard normal and Poisson draws on one torch device, from one seed.

    Args:
        seed: noise seed (non-negative integer), keyword-only.
        device: torch device the draws live on.
        labels: sub-stream labels (so that one seed can feed several independent sources).
    """

    def __init__(self, *, seed: int, device: torch.device | str = "cpu", labels: tuple[int, ...] = ()) -> None:
        self.seed = check_seed(seed, "noise seed")
        self.device = torch.device(device)
        self.labels = tuple(int(x) for x in labels)
        root = derive_seed(self.seed, *self.labels)
        if self.device.type == "cpu":
            self._bits: np.random.SFC64 | None = np.random.SFC64(root)
            self._numpy = np.random.Generator(self._bits)
            self._torch: torch.Generator | None = None
        else:
            self._bits = None
            self._torch = torch.Generator(device=self.device)
            self._torch.manual_seed(root)

    @property
    def exact_gaussian(self) -> bool:
        """Whether :meth:`normal` draws an exact Gaussian (CUDA) or the 16-bit table approximation (CPU)."""
        return self._torch is not None

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32, *, out: torch.Tensor | None = None,
               index_out: torch.Tensor | None = None) -> torch.Tensor:
        """Standard normal samples of ``shape`` on the source's device.

        ``out`` (``shape``, ``dtype``) and, on the CPU, ``index_out`` (``(prod(shape),)`` int32) are optional
        preallocated buffers (see :mod:`optodfa.sim.workspace`).
        """
        if self._torch is not None:
            if out is None:
                return torch.randn(shape, generator=self._torch, device=self.device, dtype=dtype)
            return out.normal_(generator=self._torch)
        bits = self.normal_bits(math.prod(shape))
        if out is not None and dtype == torch.float32:
            return self.lookup(bits, out=out.view(-1), index_out=index_out).view(shape)
        values = self.lookup(bits, index_out=index_out).view(shape)
        return values if dtype == torch.float32 else values.to(dtype)

    def normal_bits(self, count: int) -> np.ndarray:
        """CPU back end: the next ``count`` 16-bit table indices, ``(count,)`` uint16 (a view of fresh words).

        ``lookup(normal_bits(c))`` is what ``normal((c,))`` returns; drawing the bits of a whole batch first lets a
        caller turn them into normals block by block while the block is in cache, in the same order.
        """
        assert self._bits is not None, "normal_bits exists on the CPU back end only"
        words = self._bits.random_raw((count + 3) // 4)
        return words.view(np.uint16)[:count]

    def raw_state(self) -> np.ndarray:
        """CPU back end: a copy of the ``(4,)`` uint64 SFC64 state that :meth:`normal_bits` draws from; a compiled
        kernel that draws the same words from it hands the advanced state back with :meth:`set_raw_state`."""
        assert self._bits is not None, "raw_state exists on the CPU back end only"
        return np.array(self._bits.state["state"]["state"], dtype=np.uint64)

    def set_raw_state(self, state: np.ndarray) -> None:
        """Continue from a ``(4,)`` uint64 SFC64 state (see :meth:`raw_state`)."""
        assert self._bits is not None, "set_raw_state exists on the CPU back end only"
        full = self._bits.state
        full["state"]["state"] = np.asarray(state, dtype=np.uint64).copy()
        self._bits.state = full

    @staticmethod
    def lookup(bits: np.ndarray, *, out: torch.Tensor | None = None,
               index_out: torch.Tensor | None = None) -> torch.Tensor:
        """float32 standard normals for table indices ``bits`` (uint16, any shape; ``out`` and ``index_out``:
        optional float32 and int32 buffers of ``bits.shape``), in the shape of ``bits``."""
        # int32 because index_select wants a signed index type.
        index = index_out if index_out is not None else torch.empty(bits.shape, dtype=torch.int32)
        np.copyto(index.numpy(), bits)
        table = normal_table()
        if out is None:
            return table.index_select(0, index.view(-1)).view(bits.shape)
        return torch.index_select(table, 0, index.view(-1), out=out.view(-1)).view(bits.shape)

    def complex_normal(self, shape: tuple[int, ...], dtype: torch.dtype = torch.complex64) -> torch.Tensor:
        """Circular complex Gaussian samples with ``E|z|² = 1`` (real and imaginary parts N(0, ½))."""
        real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
        pair = self.normal((*shape, 2), real_dtype) * math.sqrt(0.5)
        return torch.view_as_complex(pair)

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Exact Poisson samples with the given non-negative ``rates`` (same shape, dtype and device)."""
        if self._torch is not None:
            return torch.poisson(rates, generator=self._torch)
        draws = self._numpy.poisson(rates.detach().cpu().numpy().astype(np.float64))
        return torch.from_numpy(draws).to(dtype=rates.dtype)

    def state_dict(self) -> dict[str, Any]:
        """The generator state (plain data for the CPU back end, a byte tensor for CUDA)."""
        if self._torch is not None:
            return {"backend": "torch", "state": self._torch.get_state()}
        assert self._bits is not None
        return {"backend": "sfc64", "state": self._bits.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = "torch" if self._torch is not None else "sfc64"
        if state.get("backend") != expected:
            raise ValueError(f"noise state is for the {state.get('backend')!r} back end but this source on "
                             f"{self.device} uses {expected!r}; resume on the same kind of torch device")
        if self._torch is not None:
            self._torch.set_state(state["state"])
        else:
            assert self._bits is not None
            self._bits.state = state["state"]
