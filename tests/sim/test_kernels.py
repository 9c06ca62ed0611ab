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
from optodfa.sim.noise import NoiseSource
from optodfa.sim.opu import SimulatedOPU

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (or OPTODFA_NO_KERNELS=1)")


def _acquire(dtype: torch.dtype, offset: float, elements: int) -> list[torch.Tensor]:
    # Exposure fixed so that the reference frames saturate about 9% of their pixels.
    camera = Camera(bits=8, photon_rate=20000.0, exposure_s=400e-6, auto_exposure="off", read_noise_e=5.0,
                    dark_offset=offset, full_well_e=10000.0, gain=None, poisson_exact_below=0.0)
    device = SimulatedOPU(DMDLayout(64, 64, 4, elements, 512), camera, output_pixels=1000, seed=2, noise_seed=4,
                          dtype=dtype, block_pixels=1)
    g = torch.Generator().manual_seed(1)
    distinct = torch.rand(6, elements, generator=g) < 0.4
    frames = distinct[torch.randint(0, 6, (60,), generator=g)]  # 6 distinct frames among 60: shared rows
    reference = torch.arange(60) % 3 == 0
    acquisition = device.acquire(frames, reference=reference)
    return [acquisition.counts, acquisition.saturated]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [0.0, 12.0])
@pytest.mark.parametrize("elements", [8, 96])
def test_compiled_and_tensor_paths_agree(dtype: torch.dtype, offset: float, elements: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opu, "MIN_BLOCK_WIDTH", 300)  # blocks of 300 pixels: 300, 300, 300, 100
    compiled = _acquire(dtype, offset, elements)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    tensor = _acquire(dtype, offset, elements)
    assert compiled[1] > 0  # the top code is reached, so the saturation count is compared too
    for a, b in zip(compiled, tensor, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("count", [1, 3, 4, 4001])
def test_compiled_draw_gives_normal_bits_word_for_word_and_the_same_next_state(count: int) -> None:
    # The compiled camera pass draws its own noise words from the source's SFC64 state; they must be the words
    # normal_bits draws (numpy's), and the source must go on as if normal_bits had drawn them (Poisson draws, which
    # go through numpy's Generator on the same bit generator, included).
    compiled, reference = NoiseSource(seed=5), NoiseSource(seed=5)
    expected = reference.normal_bits(count)
    state = compiled.raw_state()
    words = np.empty(-(-count // 4), dtype=np.uint64)
    kernels._compiled().draw_words(state, words)
    compiled.set_raw_state(state)
    assert np.array_equal(words.view(np.uint16)[:count], expected)
    assert np.array_equal(compiled.normal_bits(9), reference.normal_bits(9))
    rates = torch.full((50,), 3.0)
    assert torch.equal(compiled.poisson(rates), reference.poisson(rates))
    assert np.array_equal(compiled.raw_state(), reference.raw_state())
