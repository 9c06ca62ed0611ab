"""chip-sim physics: exact quantisation levels, noise variance, crosstalk, tiling, per-tile ADC, time and energy."""

from __future__ import annotations

import math

import pytest
import torch

from optodfa.profiles import ProfileError
from optodfa.registry import build_projector
from optodfa.sim.chip import ChipProjector, quantise_symmetric

IDEAL = {"weights.bits": "unlimited", "weights.noise": "0", "dac.bits": "unlimited", "adc.bits": "unlimited",
         "analog.noise": "0", "analog.crosstalk": "0"}


def chip(d: int, big_d: int, **settings: object) -> ChipProjector:
    projector = build_projector("chip-sim", d, big_d, feedback_seed=3, overrides={**IDEAL, **settings},
                                dtype=torch.float64)
    assert isinstance(projector, ChipProjector)
    return projector


def errors(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_weight_levels_are_exactly_the_symmetric_grid(bits):
    projector = chip(64, 64, **{"weights.bits": str(bits), "weights.clip": "1"})
    values = torch.unique(projector.programmed[:64, :64])
    expected = torch.tensor([-1.0, 1.0]) if bits == 1 else \
        torch.arange(-(2 ** (bits - 1) - 1), 2 ** (bits - 1), dtype=torch.float64) / (2 ** (bits - 1) - 1)
    # 4096 Gaussian entries clipped at one standard deviation fill every level of up to 5 bits.
    torch.testing.assert_close(values, expected.double(), rtol=0, atol=1e-15)
    assert len(values) == (2 if bits == 1 else 2**bits - 1)


def test_dac_and_adc_readings_lie_on_their_grids():
    # One tile (d <= cols), no noise: each output is s * c * (ADC reading); readings are multiples of A / L.
    projector = chip(20, 32, **{"adc.bits": "5", "dac.bits": "3"})
    e = errors(64, 20, seed=1)
    out = projector.project(e)
    scale = e.abs().amax(dim=1, keepdim=True) * projector.weight_clip
    step = projector.full_scale / (2**4 - 1)
    codes = out / scale / step
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-9)
    assert codes.abs().max() <= 2**4 - 1
    # The DAC: the projection equals the effective matrix applied to the 3-bit input codes (before the ADC).
    exact = chip(20, 32, **{"dac.bits": "3"})
    x = quantise_symmetric(e / e.abs().amax(dim=1, keepdim=True), 3)
    assert len(torch.unique(x)) == 2**3 - 1
    torch.testing.assert_close(exact.project(e), (x @ exact.effective_matrix().T) * e.abs().amax(dim=1,
                                                                                                 keepdim=True))


def test_detector_noise_has_the_set_variance_per_tile():
    # d = 40 on 32 input channels: two tiles along d, each reading adds N(0, (noise * A)^2); in output units the
    # variance is tiles * (noise * A * s * c)^2. N = 300 x 40 = 12 000 draws: the variance estimate has relative
    # standard error sqrt(2 / N) = 1.3%; 6% is more than 4 of them.
    noise = 0.05
    projector = chip(40, 40, **{"analog.noise": str(noise)})
    e = errors(1, 40, seed=2).expand(300, 40).contiguous()
    residual = projector.project(e) - e @ projector.effective_matrix().T
    scale = float(e[0].abs().max()) * projector.weight_clip
    expected = 2 * (noise * projector.full_scale * scale) ** 2
    assert float(residual.var()) == pytest.approx(expected, rel=0.06)
    assert abs(float(residual.mean())) < 5 * math.sqrt(expected / residual.numel())


def test_weight_noise_has_the_set_standard_deviation():
    # 64 x 64 = 4096 entries, unlimited weight bits, clip 10 (nothing clips): the programming error is
    # N(0, 0.01^2); relative standard error of its variance sqrt(2 / 4096) = 2.2%, tolerance 10%.
    projector = chip(64, 64, **{"weights.noise": "0.01", "weights.clip": "10"})
    ideal = chip(64, 64, **{"weights.clip": "10"})
    error = projector.programmed - ideal.programmed
    assert float(error.var()) == pytest.approx(1e-4, rel=0.10)


def test_crosstalk_mixes_neighbouring_channels_within_a_tile():
    kappa = 0.1
    projector = chip(40, 8, **{"analog.crosstalk": str(kappa)})
    weights = projector.programmed  # (32, 64): padded to whole tiles of 32 channels
    mix = torch.zeros(64, 64, dtype=torch.float64)
    for tile in range(2):
        block = slice(32 * tile, 32 * (tile + 1))
        mix[block, block] = torch.eye(32) + kappa * (torch.eye(32).roll(1, 0) + torch.eye(32).roll(-1, 0))
        mix[32 * tile, 32 * tile + 31] = mix[32 * tile + 31, 32 * tile] = 0.0  # no wrap-around inside a tile
    torch.testing.assert_close(projector.effective_matrix(), (projector.weight_clip * weights @ mix)[:8, :40])
    # Lighting channel 31 alone (the last of tile 1) reads its column plus kappa of column 30, and nothing of 32.
    e = torch.zeros(1, 40, dtype=torch.float64)
    e[0, 31] = 1.0
    expected = projector.weight_clip * (weights[:8, 31] + kappa * weights[:8, 30])
    torch.testing.assert_close(projector.project(e)[0], expected)


def test_tiling_equals_the_untiled_product_without_noise_or_adc():
    e = errors(16, 70)
    tiled = chip(70, 45)  # 2 x 3 tiles of 32 x 32, ragged at both edges
    assert tiled.tiles == (2, 3)
    torch.testing.assert_close(tiled.project(e), e @ tiled.effective_matrix().T, rtol=1e-12, atol=1e-12)
    whole = chip(70, 45, **{"chip.rows": "128", "chip.cols": "128"})
    torch.testing.assert_close(tiled.effective_matrix(), whole.effective_matrix(), rtol=0, atol=0)
    torch.testing.assert_close(tiled.project(e), whole.project(e), rtol=1e-12, atol=1e-12)


def test_each_tile_is_digitised_and_clipped_on_its_own():
    # Weights all +1 (B = 3 everywhere, clip 3), inputs all +1 on the first 32 channels: tile 1's partial sum is
    # 32, clipped at A = 0.125 * 32 = 4; tile 2 reads 0. One 64-channel tile would clip at A = 8 instead.
    settings = {"adc.bits": "8"}
    e = torch.zeros(1, 64, dtype=torch.float64)
    e[0, :32] = 1.0
    for cols, clipped in ((32, 4.0), (64, 8.0)):
        projector = chip(64, 4, **settings, **{"chip.cols": str(cols)})
        projector._weights = torch.ones_like(projector._weights)  # program the all-ones bank
        out = projector.project(e)
        torch.testing.assert_close(out, torch.full((1, 4), clipped * projector.weight_clip, dtype=torch.float64))
        assert projector.counters().saturated_pixels == 4


def test_time_and_energy_per_tile_operation():
    projector = chip(70, 45, **{"chip.tile_time": "2ns", "chip.tile_energy": "500pJ"})
    projector.project(errors(16, 70))
    counters = projector.counters()
    assert counters.hardware_seconds == pytest.approx(16 * 6 * 2e-9)
    assert counters.energy_joules == pytest.approx(16 * 6 * 500e-12)
    assert counters.frames == 0


def test_profiles_carry_sources_and_the_wrong_kind_is_refused():
    for name in ("chip-8bit", "chip-4bit"):
        description = build_projector("chip-sim", 4, 8, profile=name).describe()["profile"]
        assert description["kind"] == "chip" and description["weights"]["bits"]["value"] == int(name[5])
        assert all(entry["source"] for section in ("chip", "weights", "dac", "adc", "analog")
                   for entry in description[section].values())
    with pytest.raises(ProfileError, match="chip-sim' needs a chip profile"):
        build_projector("chip-sim", 4, 8, profile="lighton-aurora")
    with pytest.raises(ProfileError, match="opu-sim' needs an OPU profile"):
        build_projector("opu-sim", 4, 8, profile="chip-8bit")
    with pytest.raises(ProfileError, match="unknown setting.*'camera.bits'"):
        build_projector("chip-sim", 4, 8, overrides={"camera.bits": "4"})
