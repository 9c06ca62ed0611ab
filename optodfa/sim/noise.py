"""Random numbers for device noise (camera, drift), drawn on the torch device that computes.

One :class:`NoiseSource` per simulated device, seeded from the device's noise seed (separate from the feedback
seed). Its whole state fits in :meth:`NoiseSource.state_dict`, so a checkpointed run continues bit-identically.

Two back ends, chosen by the torch device:

* CUDA: a CUDA ``torch.Generator``; ``torch.randn`` (exact Gaussian) and ``torch.poisson``. Nothing leaves the GPU.
* CPU: the CPU ``torch.Generator`` (Mersenne Twister) costs about 7 ns per number on this project's machines, which
  made Gaussian noise 2/3 of a simulated projection. The CPU back end therefore draws raw 64-bit words and maps each
  16 bits through an inverse-CDF table of the standard normal: entry ``i`` is ``Φ⁻¹((i + ½) / 2¹⁶)``, the whole
  table rescaled by 1.00001 so its variance is exactly 1. This is a documented approximation of N(0, 1): its CDF
  differs from Φ by at most 1.1·10⁻⁵ everywhere and its tails are cut at ``|z| = 4.32`` (true mass beyond:
  1.5·10⁻⁵). The values are discrete, 4·10⁻⁵ σ apart near 0, far finer than any camera's ADC step; the truncated
  tails matter only for events rarer than 1 in 65 000 per pixel. Poisson draws on the CPU use numpy's exact
  sampler on numpy's SFC64 generator.

The words come from one of two streams (``stream``, the profile key ``noise.stream``):

* ``"counter"`` (the default): word ``j`` is SplitMix64's output function of ``key + (j + 1)·γ`` (Steele, Lea and
  Flood, OOPSLA 2014; the generator of Java's ``SplittableRandom``, which passes TestU01's BigCrush), ``key`` a
  63-bit sub-seed of the noise seed and ``γ = 0x9E3779B97F4A7C15``. Any word can be computed from its index
  alone, so the compiled camera pass draws each reading's normal where it uses it, tile by tile on several threads
  (:func:`optodfa.sim.kernels.binary_counts`), and the tensor code draws the same words in bulk. The state is the
  count of words drawn.
* ``"sfc64"``: numpy's SFC64 generator, one chain of dependent operations (about 1.7 ns a word compiled, on one
  thread only), shared with the Poisson draws: the stream of optodfa before the counter stream, kept so that runs
  and checkpoints made with it continue bit for bit, and so that the outputs recorded before the speed work can
  still be checked (``tests/sim/test_reference_outputs.py``).

Bytes are read in little-endian order (every platform torch supports for this project is little-endian).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from optodfa.seeding import check_seed, derive_seed
from optodfa.validation import check_choice

__all__ = ["STREAMS", "TABLE_BITS", "NoiseSource", "counter_words", "normal_table"]

TABLE_BITS = 16
STREAMS = ("counter", "sfc64")
_COUNTER_LABEL = 0x5350  # sub-stream of the source's seed that keys the counter stream
# SplitMix64's increment and the multipliers of its output function (the compiled kernels use the same).
SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX_MIX_2 = np.uint64(0x94D049BB133111EB)
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


def counter_words(key: int, first: int, count: int) -> np.ndarray:
    """Words ``first … first + count − 1`` of the counter stream of ``key``, ``(count,)`` uint64 (compiled where
    numba is available, in numpy otherwise: the same words)."""
    from optodfa.sim import kernels

    if kernels.AVAILABLE:
        return kernels.counter_words(key, first, count)
    z = np.arange(first + 1, first + 1 + count, dtype=np.uint64)
    z *= SPLITMIX_GAMMA  # uint64 arithmetic wraps modulo 2⁶⁴, as the generator's does
    z += np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= SPLITMIX_MIX_1
    z ^= z >> np.uint64(27)
    z *= SPLITMIX_MIX_2
    z ^= z >> np.uint64(31)
    return z


class NoiseSource:
    """Standard normal and Poisson draws on one torch device, from one seed.

    Args:
        seed: noise seed (non-negative integer), keyword-only.
        device: torch device the draws live on.
        labels: sub-stream labels (so that one seed can feed several independent sources).
        stream: the CPU back end's stream of normal words, one of :data:`STREAMS` (see the module docstring).
    """

    def __init__(self, *, seed: int, device: torch.device | str = "cpu", labels: tuple[int, ...] = (),
                 stream: str = "counter") -> None:
        self.seed = check_seed(seed, "noise seed")
        self.device = torch.device(device)
        self.labels = tuple(int(x) for x in labels)
        self.stream = check_choice("noise.stream", stream, STREAMS)
        root = derive_seed(self.seed, *self.labels)
        self._key = derive_seed(self.seed, *self.labels, _COUNTER_LABEL)
        self._words = 0  # counter stream: words drawn so far
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

    @property
    def counter_based(self) -> bool:
        """Whether the CPU back end draws the counter stream (whose words a compiled kernel computes itself)."""
        return self._bits is not None and self.stream == "counter"

    def normal_bits(self, count: int) -> np.ndarray:
        """CPU back end: the next ``count`` 16-bit table indices, ``(count,)`` uint16 (a view of fresh words).

        ``lookup(normal_bits(c))`` is what ``normal((c,))`` returns; drawing the bits of a whole batch first lets a
        caller turn them into normals block by block while the block is in cache, in the same order. Whole words
        are drawn: a count that is not a multiple of 4 leaves the rest of the last word unused.
        """
        assert self._bits is not None, "normal_bits exists on the CPU back end only"
        size = (count + 3) // 4
        if self.stream == "counter":
            words = counter_words(self._key, self._words, size)
            self._words += size
        else:
            words = self._bits.random_raw(size)
        return words.view(np.uint16)[:count]

    def counter_position(self) -> tuple[int, int]:
        """Counter stream: its key and the words drawn so far. A compiled kernel that draws ``w`` words of the
        stream itself (16-bit index ``i`` of them is lane ``i mod 4`` of word ``position + i div 4``) moves the
        source past them with :meth:`skip_words`."""
        assert self.counter_based, "counter_position exists for the CPU counter stream only"
        return self._key, self._words

    def skip_words(self, count: int) -> None:
        """Counter stream: continue after ``count`` more words, as if :meth:`normal_bits` had drawn them."""
        assert self.counter_based, "skip_words exists for the CPU counter stream only"
        self._words += int(count)

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
        if self.stream == "counter":
            return {"backend": "counter", "words": self._words, "poisson": self._bits.state}
        return {"backend": "sfc64", "state": self._bits.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = "torch" if self._torch is not None else self.stream
        backend = state.get("backend")
        if backend != expected:
            if self._torch is None and backend in STREAMS:
                raise ValueError(f"noise state is of the {backend!r} stream but this source draws the "
                                 f"{expected!r} stream; set the profile key noise.stream = {backend!r} to continue "
                                 f"that run bit for bit (checkpoints saved before the counter stream existed are "
                                 f"'sfc64')")
            uses = "torch" if self._torch is not None else "a CPU stream"
            raise ValueError(f"noise state is for the {backend!r} back end but this source on {self.device} uses "
                             f"{uses!r}; resume on the same kind of torch device")
        if self._torch is not None:
            self._torch.set_state(state["state"])
            return
        assert self._bits is not None
        if self.stream == "counter":
            self._words = int(state["words"])
            self._bits.state = state["poisson"]
        else:
            self._bits.state = state["state"]
