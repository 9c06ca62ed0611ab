"""The camera model: shot and read noise, ADC levels, saturation, auto-exposure, bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from optodfa.sim.camera import Camera, count_dtype
from optodfa.sim.noise import NoiseSource


@pytest.mark.parametrize("mu", [0.3, 4.0, 20.0, 150.0, 2000.0])
@pytest.mark.parametrize("read_noise", [0.0, 3.0])
def test_variance_equals_mean_plus_read_variance_before_the_adc(mu, read_noise):
    # Means below 30 e- are drawn exactly (Poisson), the others by the Gaussian approximation.
    camera = Camera(read_noise_e=read_noise, poisson_exact_below=30.0)
    n = 200_000
    electrons = camera.electrons(torch.full((1, n), mu, dtype=torch.float64), NoiseSource(seed=int(mu * 10)))
    sample = electrons.flatten()
    var = mu + read_noise**2
    # SE of the mean: sqrt(var/n); of the variance: sqrt((μ4 − var²)/n) with μ4 − var² = μ + 2μ² + 2σ⁴ + 4μσ²
    # (Poisson plus independent Gaussian), tolerance 5 SE.
    assert abs(float(sample.mean()) - mu) < 5 * math.sqrt(var / n)
    spread = math.sqrt((mu + 2 * mu**2 + 2 * read_noise**4 + 4 * mu * read_noise**2) / n)
    assert abs(float(sample.var()) - var) < 5 * spread
    if mu < 30 and read_noise == 0:
        assert torch.equal(sample, sample.round())  # exact Poisson counts are integers


@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16])
def test_adc_returns_at_most_two_to_the_bits_levels(bits):
    camera = Camera(bits=bits, gain=None, full_well_e=5000.0, read_noise_e=2.0)
    ramp = torch.linspace(0, 8000.0, 70_000, dtype=torch.float32).view(1, -1)  # beyond full well
    counts, saturated = camera.read(ramp, NoiseSource(seed=bits))
    assert counts.dtype == count_dtype(bits)
    levels = torch.unique(counts)
    assert levels.numel() <= 2**bits and int(levels.min()) >= 0 and int(levels.max()) <= 2**bits - 1
    assert int(saturated) == int((counts == 2**bits - 1).sum()) > 0


def test_full_well_and_top_code_bound_the_readings():
    camera = Camera(bits=12, gain=0.1, full_well_e=10_000.0, dark_offset=5.0, shot_noise=False)
    # The well fills first: top reading floor(0.1 * 10000 + 5) = 1005 < 4095.
    assert camera.top_count == 1005 and camera.saturation_e == 10_000
    counts, saturated = camera.read(torch.tensor([[0.0, 9_949.0, 9_950.0, 20_000.0]]), NoiseSource(seed=0))
    assert counts.tolist() == [[5, 999, 1000, 1005]] and int(saturated) == 1


def test_unlimited_bits_give_float_readings_without_flooring():
    camera = Camera(bits=None, gain=0.5, dark_offset=3.0, shot_noise=False)
    counts, saturated = camera.read(torch.tensor([[0.25, 7.0, 1e9]], dtype=torch.float64), NoiseSource(seed=0))
    assert counts.dtype == torch.float64 and int(saturated) == 0
    assert counts.tolist() == [[3.125, 6.5, 0.5e9 + 3.0]]


def test_auto_exposure_places_the_quantile_at_the_target():
    camera = Camera(bits=8, gain=None, full_well_e=10_000.0, photon_rate=1e6, exposure_s=1e-3,
                    auto_exposure_target=0.5, auto_exposure_quantile=0.99)
    mean = torch.tensor([0.5, 1000.0, 0.0], dtype=torch.float64)
    tau = camera.exposure(mean)
    # Speckle quantile p of an exponential law is -ln(1-p) times its mean; it must land at half of saturation.
    quantile = -math.log(0.01) * mean[1]
    assert math.isclose(float(tau[1]) * camera.photon_rate * quantile, 0.5 * 10_000, rel_tol=1e-12)
    assert float(tau[0]) == 1e-3 and float(tau[2]) == 1e-3  # capped at the maximum (dark frame included)
    batch = Camera(**{**camera.describe(), "auto_exposure": "batch", "full_well_e": 10_000.0})
    assert torch.equal(batch.exposure(mean), torch.full((3,), float(tau[1]), dtype=mean.dtype))
    off = Camera(exposure_s=2e-4, auto_exposure="off", full_well_e=1e4)
    assert torch.equal(off.exposure(mean), torch.full((3,), 2e-4, dtype=torch.float64))


def test_speckle_through_auto_exposure_saturates_about_one_minus_p_of_the_pixels():
    p, target, n = 0.999, 0.8, 400_000
    camera = Camera(bits=8, gain=None, full_well_e=10_000.0, photon_rate=1e5, exposure_s=1.0, shot_noise=False,
                    auto_exposure_target=target, auto_exposure_quantile=p)
    mean_intensity = 50.0
    intensity = torch.empty(1, n, dtype=torch.float64).exponential_(1 / mean_intensity,
                                                                  generator=torch.Generator().manual_seed(0))
    tau = camera.exposure(torch.tensor([mean_intensity], dtype=torch.float64))
    counts, _ = camera.read(intensity * tau * camera.photon_rate, NoiseSource(seed=0))
    # Readings above target x full scale: expected fraction 1 - p (binomial SE sqrt(n p (1-p))).
    above = int((counts.double() >= target * 255).sum())
    expected = n * (1 - p)
    assert abs(above - expected) < 5 * math.sqrt(expected)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(bits=0), ValueError, r"camera.bits must be an integer in \[1, 16\], got 0"),
    (dict(bits=17), ValueError, r"camera.bits must be an integer in \[1, 16\], got 17"),
    (dict(bits=8.0), TypeError, r"camera.bits must be an integer in \[1, 16\], got 8.0 \(float\)"),
    (dict(exposure_s=-1e-4), ValueError, r"camera.exposure must be a finite real number in \(0, inf\)"),
    (dict(read_noise_e=-1.0), ValueError, r"camera.read_noise must be a finite real number in \[0, inf\)"),
    (dict(dark_offset=-2.0), ValueError, r"camera.dark_offset must be a finite real number in \[0, inf\)"),
    (dict(photon_rate=0.0), ValueError, r"camera.photon_rate must be a finite real number in \(0, inf\)"),
    (dict(gain=-1.0), ValueError, r"camera.gain must be a finite real number in \(0, inf\)"),
    (dict(full_well_e=0.0), ValueError, r"camera.full_well must be a finite real number in \(0, inf\)"),
    (dict(auto_exposure="always"), ValueError, "camera.auto_exposure must be one of 'frame', 'batch', 'off'"),
    (dict(auto_exposure_quantile=1.0), ValueError, r"camera.auto_exposure_quantile must be .* in \(0, 1\)"),
    (dict(auto_exposure_target=0.0), ValueError, r"camera.auto_exposure_target must be .* in \(0, 1\]"),
    (dict(shot_noise=1), TypeError, "camera.shot_noise must be true or false, got 1"),
    (dict(poisson_exact_below=-1.0), ValueError, r"camera.poisson_exact_below must be .* in \[0, inf\)"),
    (dict(bits=8, dark_offset=255.0), ValueError, "camera.dark_offset must be below the top code 255 of a 8-bit"),
])
def test_bad_camera_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        Camera(**kwargs)


def test_gain_auto_spans_the_full_well():
    assert Camera(bits=8, gain=None, full_well_e=10_000.0).gain == pytest.approx(255 / 10_000)
    assert Camera(bits=None, gain=None).gain == 1.0  # nothing to span: one count per electron
