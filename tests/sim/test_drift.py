"""Medium drift: R ← ρR + sqrt(1 − ρ²)G every k frames, correlation ρ^floor(frames / k)."""

from __future__ import annotations

import math

import pytest
import torch

from optodfa.sim.drift import Drift


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    # Columns have different variances (elements vs reference): correlate column by column, then average.
    num = (a.conj() * b).real.sum(dim=0)
    den = (a.abs().square().sum(dim=0) * b.abs().square().sum(dim=0)).sqrt()
    return float((num / den).mean())


def test_correlation_decays_as_rho_to_the_steps(device_factory):
    rho, period, outputs = 0.9, 10, 40000
    device = device_factory(elements=4, outputs=outputs, drift=Drift(rho, period))
    start = device.field_matrix()
    frames = torch.zeros(1, 4, dtype=torch.bool)
    shown = 0
    # Frame f sees the medium after floor(f / k) steps: after showing frames 0..f-1 the last one used
    # floor((f - 1) / k) steps. SE of each column's correlation estimate is below 1/sqrt(M); tolerance 5 SE.
    for total in (10, 11, 25, 31, 60):
        device.acquire(frames.expand(total - shown, 4))
        shown = total
        steps = (total - 1) // period
        assert abs(correlation(start, device.field_matrix()) - rho**steps) < 5 / math.sqrt(outputs)
    # The law is kept: each column keeps its variance (SE of a mean of |z|² is its mean / sqrt(M)).
    variance = device.field_matrix().abs().square().mean(dim=0)
    expected = start.abs().square().mean(dim=0)
    assert torch.all((variance / expected - 1).abs() < 10 / math.sqrt(outputs))


def test_frames_of_one_acquisition_see_the_medium_of_their_own_time(device_factory):
    device = device_factory(elements=3, outputs=50, drift=Drift(0.5, 2))
    frames = torch.ones(5, 3, dtype=torch.bool)
    counts = device.acquire(frames).counts  # ideal camera: counts are intensities
    # Frames 0-1 share a medium, 2-3 the next, 4 the third.
    assert torch.equal(counts[0], counts[1]) and torch.equal(counts[2], counts[3])
    assert not torch.equal(counts[1], counts[2]) and not torch.equal(counts[3], counts[4])
    assert torch.allclose(counts[4], device.intensity(frames[:1])[0], rtol=1e-12)


def test_segments_split_at_step_boundaries():
    assert list(Drift(0.9, 4).segments(2, 9)) == [(0, 2), (2, 6), (6, 9)]
    assert list(Drift(0.9, 4).segments(0, 4)) == [(0, 4)]
    assert Drift(0.9, 4).steps_at(9) == 2


@pytest.mark.parametrize(("rho", "period", "match"), [
    (1.5, 10, r"drift.rho must be a finite real number in \[0, 1\], got 1.5"),
    (-0.1, 10, r"drift.rho must be a finite real number in \[0, 1\], got -0.1"),
    (0.9, 0, "drift.period must be an integer >= 1, got 0"),
])
def test_bad_drift(rho, period, match):
    with pytest.raises(ValueError, match=match):
        Drift(rho, period)
