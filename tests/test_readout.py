"""Readout modes on a noiseless simulated OPU: what each measures, its frame cost and frame order."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from optodfa.device import Acquisition, Counters
from optodfa.readout import HolographicReadout, IntensityReadout, StrongReferenceReadout, make_readout
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.opu import SimulatedOPU

IDEAL = Camera(bits=None, shot_noise=False, full_well_e=math.inf, gain=1.0, auto_exposure="off",
               photon_rate=1.0, exposure_s=1.0)


def ideal_device(elements: int = 8, outputs: int = 400, macropixel: int = 2, reference: int = 300) -> SimulatedOPU:
    return SimulatedOPU(DMDLayout(64, 64, macropixel, elements, reference), IDEAL, output_pixels=outputs, seed=1,
                        noise_seed=2, frame_time_s=1.0, dtype=torch.float64)


def planes(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.randint(-1, 2, (n, d), generator=torch.Generator().manual_seed(seed))
    return t > 0, t < 0


def test_holographic_readout_is_exactly_m_t():
    device = ideal_device()
    plus, minus = planes(12, 8)
    raw = HolographicReadout().measure(device, plus, minus)
    exact = (plus.double() - minus.double()) @ device.holographic_matrix().T
    scale = float(device.intensity(plus, reference=True).max())
    assert (raw - exact).abs().max() < 64 * torch.finfo(torch.float64).eps * scale  # rounding of 4 intensities
    assert device.counters().frames == 4 * 12


def test_strong_reference_readout_is_m_t_plus_the_quadratic_residual():
    device = ideal_device()
    plus, minus = planes(12, 8, seed=1)
    raw = StrongReferenceReadout().measure(device, plus, minus)
    exact = ((plus.double() - minus.double()) @ device.holographic_matrix().T
             + device.intensity(plus) - device.intensity(minus))
    assert torch.allclose(raw, exact, rtol=1e-10, atol=1e-8)
    assert device.counters().frames == 2 * 12


def test_strong_reference_residual_shrinks_as_sqrt_of_signal_over_reference_mirrors():
    # k lit elements of m mirrors only in t+: residual |R t+|² has RMS sqrt(2)·k·m, the signal M t has RMS
    # sqrt(2·n_ref·m·k): ratio sqrt(k·m/n_ref). Measured over 4000 pixels x 20 samples (SE of an RMS ~ 1%).
    for reference in (200, 3200):
        device = ideal_device(outputs=4000, macropixel=4, reference=reference)
        plus = torch.zeros(20, 8, dtype=torch.bool)
        plus[:, :2] = True
        minus = torch.zeros_like(plus)
        raw = StrongReferenceReadout().measure(device, plus, minus)
        signal = plus.double() @ device.holographic_matrix().T
        ratio = float((raw - signal).square().mean().sqrt() / signal.square().mean().sqrt())
        assert ratio == pytest.approx(math.sqrt(2 * 4 / reference), rel=0.15)


def test_intensity_readout_is_the_difference_of_intensities_and_its_normalisation():
    device = ideal_device(outputs=20000)
    plus, minus = planes(6, 8, seed=2)
    raw = IntensityReadout().measure(device, plus, minus)
    assert torch.allclose(raw, device.intensity(plus) - device.intensity(minus), rtol=1e-10, atol=1e-8)
    # After normalisation the mean square per pixel is about ‖t‖² (exponential intensities: SE of the mean square
    # over 20000 pixels is a few per cent).
    scaled = IntensityReadout.normalise(raw.clone(), plus, minus, element_intensity=2.0)
    norm2 = (plus.sum(1) + minus.sum(1)).double()
    lit = norm2 > 0
    ratio = scaled.square().mean(1)[lit] / norm2[lit]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.15)


class RecordingDevice:
    """A minimal OpticalDevice that records what it is shown (intensity = number of lit elements)."""

    input_pixels, output_pixels, bit_depth, frame_time_s = 3, 2, None, 1e-3

    def __init__(self) -> None:
        self.shown: list[tuple[torch.Tensor, Any]] = []

    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        self.shown.append((frames.clone(), reference))
        counts = frames.double().sum(1, keepdim=True).expand(-1, 2).clone()
        return Acquisition(counts, torch.ones(frames.shape[0], dtype=torch.float64))

    def counters(self) -> Counters:
        return Counters()


@pytest.mark.parametrize(("readout", "order", "flags"), [
    (HolographicReadout(), ["p", "p", "m", "m"], [True, False, True, False]),
    (StrongReferenceReadout(), ["p", "m"], True),
    (IntensityReadout(), ["p", "m"], False),
])
def test_frames_of_one_plane_are_consecutive(readout, order, flags):
    device = RecordingDevice()
    plus = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    minus = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.bool)
    readout.measure(device, plus, minus)
    frames, reference = device.shown[0]
    expected = torch.stack([plus[i] if which == "p" else minus[i] for i in range(2) for which in order])
    assert torch.equal(frames, expected) and readout.frames_per_plane == len(order)
    if isinstance(flags, list):
        assert reference.tolist() == flags * 2
    else:
        assert reference is flags


@pytest.mark.parametrize("readout", [HolographicReadout(), StrongReferenceReadout(), IntensityReadout()])
def test_a_factor_per_plane_scales_each_plane_and_is_checked(readout):
    plus, minus = planes(12, 8, seed=3)
    factor = torch.linspace(-2.0, 3.0, 12, dtype=torch.float64)
    plain = readout.measure(ideal_device(), plus, minus)
    scaled = readout.measure(ideal_device(), plus, minus, factor=factor)
    torch.testing.assert_close(scaled, plain * factor[:, None], rtol=1e-12, atol=1e-12 * float(plain.abs().max()))
    for bad, got in ((torch.ones(11), r"torch.float32 \(11,\)"), (torch.ones(12, dtype=torch.int64), "torch.int64"),
                     ([1.0] * 12, "list")):
        with pytest.raises(TypeError, match=rf"factor must be a real floating tensor of shape \(12,\), got {got}"):
            readout.measure(ideal_device(), plus, minus, factor=bad)


def test_make_readout_by_name_and_bad_name():
    assert isinstance(make_readout("strong-reference"), StrongReferenceReadout)
    assert make_readout("holographic").describe() == {"mode": "holographic", "frames_per_plane": 4, "linear": True}
    with pytest.raises(ValueError, match="readout.mode must be one of 'holographic', 'strong-reference', 'intensity'"):
        make_readout("interferometric")
