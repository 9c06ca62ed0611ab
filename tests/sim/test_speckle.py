"""Speckle statistics of the simulated OPU (SPEC §2), with and without the macropixel shortcut.

Statistical tests use fixed seeds; tolerances are 5 standard errors of the estimate at the sample size used, and
goodness-of-fit tests require p > 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from optodfa.sim import kernels
from optodfa.sim.speckle import distinct_rows


def frame_with_ones(elements: int, ones: list[int]) -> torch.Tensor:
    frame = torch.zeros(1, elements, dtype=torch.bool)
    frame[0, ones] = True
    return frame


@pytest.mark.parametrize("shortcut", [True, False])
@pytest.mark.parametrize(("k", "m"), [(1, 1), (3, 1), (7, 1), (2, 4), (5, 3)])
def test_speckle_intensity_is_exponential_with_mean_k_m_sigma2(device_factory, shortcut, k, m):
    outputs = 20000 if shortcut else 4000
    device = device_factory(elements=8, outputs=outputs, macropixel=m, macropixel_shortcut=shortcut, seed=k + 10 * m)
    intensity = device.intensity(frame_with_ones(8, list(range(k))))[0].numpy()
    mean = k * m  # σ² = 1
    # Exponential law: the mean has SE = mean/sqrt(M); goodness of fit by Kolmogorov-Smirnov.
    assert abs(intensity.mean() - mean) < 5 * mean / math.sqrt(outputs)
    assert stats.kstest(intensity, "expon", args=(0, mean)).pvalue > 1e-3


def test_variance_of_the_field_is_proportional_to_ones_and_macropixel(device_factory):
    outputs = 20000
    for m in (1, 3, 8):
        device = device_factory(elements=10, outputs=outputs, macropixel=m, seed=m)
        for k in (1, 4, 9):
            field_variance = device.intensity(frame_with_ones(10, list(range(k))))[0].mean().item()
            assert abs(field_variance / (k * m) - 1) < 5 / math.sqrt(outputs)


def test_distinct_output_pixels_are_independent(device_factory):
    outputs = 40000
    device = device_factory(elements=8, outputs=outputs, seed=3)
    intensity = device.intensity(frame_with_ones(8, [0, 2, 5]))[0].numpy()
    first, second = intensity[0::2], intensity[1::2]  # disjoint pairs of distinct pixels
    # Chi-square test of independence on quartile bins of the two members of each pair.
    edges = np.quantile(intensity, [0.25, 0.5, 0.75])
    table = np.zeros((4, 4))
    np.add.at(table, (np.searchsorted(edges, first), np.searchsorted(edges, second)), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # Correlation of intensities at pixels i and i+1 (SE of a correlation ~ 1/sqrt(pairs)).
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / math.sqrt(first.size)


def test_holographic_signal_is_exactly_additive_on_disjoint_supports(device_factory):
    device = device_factory(elements=12, outputs=3000, macropixel=2, reference=200)
    none = torch.zeros(1, 12, dtype=torch.bool)
    reference_alone = device.intensity(none, reference=True)

    def psi(frame: torch.Tensor) -> torch.Tensor:
        return device.intensity(frame, reference=True) - device.intensity(frame) - reference_alone

    a, b = frame_with_ones(12, [0, 3, 4]), frame_with_ones(12, [1, 7, 11])
    total = psi(a | b)
    scale = float(device.intensity(a | b, reference=True).abs().max())
    # Noise off, float64: equality up to rounding of sums of intensities of size `scale`.
    tolerance = 64 * torch.finfo(torch.float64).eps * scale
    assert (total - psi(a) - psi(b)).abs().max() < tolerance
    matrix = device.holographic_matrix()
    assert (total[0] - matrix @ (a | b)[0].to(torch.float64)).abs().max() < tolerance


@pytest.mark.parametrize("elements", [3, 11, 64, 65, 130])
@pytest.mark.parametrize("frames", [1, 7, 512])
def test_distinct_rows_is_numpys_row_unique(elements: int, frames: int) -> None:
    # Rows of up to 8 bytes go through 64-bit keys: same first indices, same inverse, same dtypes as np.unique.
    rng = np.random.default_rng(elements * 1000 + frames)
    for density in (0.05, 0.5):
        binary = rng.random((frames, elements)) < density
        repeats = np.arange(3, frames, 3)
        binary[repeats] = binary[repeats - 2]  # repeated rows
        packed = np.packbits(binary, axis=1)
        _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
        got_first, got_inverse = distinct_rows(packed)
        assert got_first.dtype == first.dtype and got_inverse.dtype == inverse.dtype
        np.testing.assert_array_equal(got_first, first)
        np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed (or OPTODFA_NO_KERNELS=1)")
@pytest.mark.parametrize("elements", [1, 11, 63, 64])
@pytest.mark.parametrize("frames", [1, 7, 512])
def test_compiled_distinct_rows_are_numpys_row_unique(elements: int, frames: int) -> None:
    # Narrow frames skip the packing: the compiled keys must give np.unique's first indices and inverse.
    rng = np.random.default_rng(elements * 7 + frames)
    for density, dtype in ((0.05, np.float32), (0.5, np.float64)):
        lit = rng.random((frames, elements)) < density
        repeats = np.arange(3, frames, 3)
        lit[repeats] = lit[repeats - 2]
        values = (lit * rng.uniform(0.5, 2.0, (frames, 1))).astype(dtype)  # one value per row, as in a FramePlan
        _, first, inverse = np.unique(np.packbits(lit, axis=1), axis=0, return_index=True, return_inverse=True)
        got_first, got_inverse = kernels.distinct_binary_rows(values)
        assert got_first.dtype == first.dtype and got_inverse.dtype == inverse.dtype
        np.testing.assert_array_equal(got_first, first)
        np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))
