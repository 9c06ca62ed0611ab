"""The transmission matrix: block reproducibility, its law, and the statistically exact shortcuts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from optodfa.sim.transmission import (
    TILE_ROWS,
    TransmissionMatrix,
    element_columns,
    reference_field,
    summed_columns,
)


def test_any_block_regenerated_alone_equals_the_same_block_of_the_whole_matrix():
    matrix = TransmissionMatrix(7, (TILE_ROWS + 900, 9))
    whole = matrix.full()
    # Blocks inside one tile, across the tile boundary, and single entries: bit-identical.
    for rows, cols in [(range(10, 50), range(0, 3)), (range(TILE_ROWS - 100, TILE_ROWS + 300), range(4, 9)),
                       (range(TILE_ROWS + 899, TILE_ROWS + 900), range(8, 9))]:
        assert torch.equal(matrix.block(rows, cols), whole[rows.start:rows.stop, cols.start:cols.stop])
    # The shape only says how much is read: a larger matrix with the same seed contains the smaller one.
    larger = TransmissionMatrix(7, (TILE_ROWS + 2000, 20)).full()
    assert torch.equal(larger[: TILE_ROWS + 900, :9], whole)


def test_defined_by_seed_stream_dtype_and_version():
    a = TransmissionMatrix(3, (300, 4)).full()
    assert torch.equal(a, TransmissionMatrix(3, (300, 4)).full())
    assert not torch.equal(a, TransmissionMatrix(4, (300, 4)).full())
    assert not torch.equal(a, TransmissionMatrix(3, (300, 4), stream=1).full())
    double = TransmissionMatrix(3, (300, 4), dtype=torch.complex128).full()
    assert a.dtype == torch.complex64 and double.dtype == torch.complex128
    assert torch.equal(a, double.to(torch.complex64))  # complex64 is the rounding of the complex128 matrix


def test_entries_are_circular_complex_gaussian_with_variance_sigma2():
    sigma2 = 2.5
    z = TransmissionMatrix(11, (TILE_ROWS, 16), dtype=torch.complex128, variance=sigma2).full().flatten().numpy()
    n = z.size
    # Each part N(0, σ²/2): sample variance within 5 standard errors (SE = (σ²/2)·sqrt(2/n)).
    for part in (z.real, z.imag):
        assert abs(part.var() - sigma2 / 2) < 5 * (sigma2 / 2) * math.sqrt(2 / n)
        assert stats.kstest(part / math.sqrt(sigma2 / 2), "norm").pvalue > 1e-3
    # Circular: E[z²] = 0, i.e. parts uncorrelated and of equal variance (SE of a correlation ~ 1/sqrt(n)).
    assert abs(np.corrcoef(z.real, z.imag)[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.mean(np.abs(z) ** 2) - sigma2) < 5 * sigma2 / math.sqrt(n)


def test_macropixel_shortcut_has_the_law_of_summed_mirror_columns():
    rows, m, elements = 3000, 8, 6
    mirrors = TransmissionMatrix(5, (rows, m * elements), dtype=torch.complex128)
    exact = summed_columns(mirrors, [range(j * m, (j + 1) * m) for j in range(elements)]).numpy()
    shortcut = element_columns(5, rows, elements, macropixel=m, dtype=torch.complex128).numpy()
    n = exact.size
    for sample in (exact, shortcut):
        # |field|² of a column of variance mσ² is exponential with mean m (σ² = 1); SE of the mean = m/sqrt(n).
        intensity = np.abs(sample.flatten()) ** 2
        assert abs(intensity.mean() - m) < 5 * m / math.sqrt(n)
        assert stats.kstest(intensity, "expon", args=(0, m)).pvalue > 1e-3
    assert stats.ks_2samp(np.abs(exact.flatten()), np.abs(shortcut.flatten())).pvalue > 1e-3
    # The exact sum really is the sum of those columns.
    block = mirrors.block(range(0, rows), range(m, 2 * m)).numpy()
    np.testing.assert_allclose(exact[:, 1], block.sum(axis=1), rtol=1e-12)


def test_reference_field_is_one_vector_of_region_size_variance():
    field = reference_field(2, 20000, mirrors=300, dtype=torch.complex128).numpy()
    intensity = np.abs(field) ** 2
    assert abs(intensity.mean() - 300) < 5 * 300 / math.sqrt(field.size)
    assert stats.kstest(intensity, "expon", args=(0, 300)).pvalue > 1e-3
    # Rows of the reference field regenerate alone too.
    part = reference_field(2, 20000, mirrors=300, dtype=torch.complex128, row_block=range(5000, 5100)).numpy()
    np.testing.assert_array_equal(part, field[5000:5100])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(seed=-1, shape=(2, 2)), ValueError, r"seed must be an integer in \[0, "),
    (dict(seed=0, shape=(2,)), ValueError, r"shape must be \(rows, cols\), got \(2,\)"),
    (dict(seed=0, shape=(0, 2)), ValueError, r"shape\[0\] \(rows\) must be an integer >= 1, got 0"),
    (dict(seed=0, shape=(2, 2), dtype=torch.float32), ValueError, "dtype must be one of"),
    (dict(seed=0, shape=(2, 2), variance=0.0), ValueError, r"variance must be a finite real number in \(0, inf\)"),
    (dict(seed=0, shape=(2, 2), version=2), ValueError, "version must be one of 1; got 2"),
])
def test_bad_matrix_definitions(kwargs, error, match):
    with pytest.raises(error, match=match):
        TransmissionMatrix(**kwargs)


def test_bad_blocks_and_groups():
    matrix = TransmissionMatrix(0, (10, 4))
    with pytest.raises(ValueError, match=r"rows must select a non-empty range inside \[0, 10\), got \[5, 12\)"):
        matrix.block(range(5, 12))
    with pytest.raises(ValueError, match="cols must be a unit-step range or slice"):
        matrix.block(cols=slice(0, 4, 2))
    with pytest.raises(TypeError, match="rows must be a slice or range, got list"):
        matrix.block([0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups must be non-empty unit-step ranges"):
        summed_columns(matrix, [range(0, 0)])
    with pytest.raises(ValueError, match="macropixel must be an integer >= 1, got 0"):
        element_columns(0, 4, 2, macropixel=0)
