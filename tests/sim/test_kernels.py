"""The compiled camera pass gives the tensor code's counts number for number, where the recorded cases do not reach.

``test_reference_outputs.py`` ties the tensor code to the outputs recorded before the speed work; here the two
paths meet on frames that repeat within a chunk (shared rows), with a dark offset, in float64 and across several
blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optodfa.sim import kernels, opu
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.noise import NoiseSource, counter_words
from optodfa.sim.opu import SimulatedOPU

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (or OPTODFA_NO_KERNELS=1)")


def _acquire(dtype: torch.dtype, offset: float, elements: int, pixels: int = 1000) -> list[torch.Tensor]:
    # Exposure fixed so that the reference frames saturate about 9% of their pixels.
    camera = Camera(bits=8, photon_rate=20000.0, exposure_s=400e-6, auto_exposure="off", read_noise_e=5.0,
                    dark_offset=offset, full_well_e=10000.0, gain=None, poisson_exact_below=0.0)
    device = SimulatedOPU(DMDLayout(64, 64, 4, elements, 512), camera, output_pixels=pixels, seed=2, noise_seed=4,
                          dtype=dtype, block_pixels=1)
    g = torch.Generator().manual_seed(1)
    distinct = torch.rand(6, elements, generator=g) < 0.4
    frames = distinct[torch.randint(0, 6, (60,), generator=g)]  # 6 distinct frames among 60: shared rows
    reference = torch.arange(60) % 3 == 0
    out = []
    for count in (60, 37):  # the second acquisition continues the noise stream (37·pixels: not whole words)
        acquisition = device.acquire(frames[:count], reference=reference[:count])
        out += [acquisition.counts, acquisition.saturated]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [0.0, 12.0])
@pytest.mark.parametrize(("elements", "pixels"), [(8, 1000), (8, 997), (96, 1000)])
def test_compiled_and_tensor_paths_agree(dtype: torch.dtype, offset: float, elements: int, pixels: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opu, "MIN_BLOCK_WIDTH", 300)  # blocks of 300 pixels: 300, 300, 300, 100
    compiled = _acquire(dtype, offset, elements, pixels)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    tensor = _acquire(dtype, offset, elements, pixels)
    assert compiled[1] > 0  # the top code is reached, so the saturation count is compared too
    for a, b in zip(compiled, tensor, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("first", "count"), [(0, 5), (3, 1), (2**40 + 7, 4001)])
def test_compiled_counter_words_are_numpys_and_splitmix64s(first: int, count: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = counter_words(1234567, first, count)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert np.array_equal(compiled, counter_words(1234567, first, count))
    if first == 0:
        # SplitMix64 seeded with 1234567 (the reference implementation's first outputs).
        assert compiled.tolist() == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                     4593380528125082431, 16408922859458223821]


def test_normal_bits_and_skipped_words_leave_the_source_in_the_same_place() -> None:
    drawn, skipped = NoiseSource(seed=5), NoiseSource(seed=5)
    drawn.normal_bits(4001)  # 1001 words, the last one partly used
    key, _ = skipped.counter_position()
    skipped.skip_words(1001)
    assert key == drawn.counter_position()[0] and skipped.counter_position()[1] == 1001
    assert np.array_equal(drawn.normal_bits(9), skipped.normal_bits(9))
    assert np.array_equal(drawn.normal_bits(9), counter_words(key, 1001 + 3, 3).view(np.uint16)[:9])
