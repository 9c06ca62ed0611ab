"""Closed-form averages I2, I3, I4, J2 and ε_g against Monte-Carlo estimates and hand-written sums."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from optodfa.theory import covariance, draw_weights, generalisation_error, i2, i3, i4, j2
from optodfa.theory.order_parameters import OrderParameters

# 2e5 samples: the standard error of each average is ~2e-3 of its scale, and every check below allows
# Z_BOUND standard errors, estimated from the same samples. With ~300 entries checked the chance that a correct
# formula fails one is below 1e-6 (two-sided normal tail at 6 is 2e-9 per entry); the seeds are fixed anyway.
SAMPLES = 200_000
Z_BOUND = 6.0


def _random_covariance(P: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(P, P)) * 0.7
    return L @ L.T + 0.2 * np.eye(P)


def _samples(C: np.ndarray, activation: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.random.default_rng(seed).multivariate_normal(np.zeros(len(C)), C, size=SAMPLES)
    if activation == "erf":
        return z, erf(z / np.sqrt(2.0)), np.sqrt(2.0 / np.pi) * np.exp(-z**2 / 2.0)
    return z, z, np.ones_like(z)


def _assert_mc(closed: np.ndarray, products: np.ndarray) -> None:
    """``products`` (SAMPLES, ...) has the sample of each average; compare means within Z_BOUND errors."""
    mean = products.mean(axis=0)
    se = products.std(axis=0) / np.sqrt(SAMPLES)
    excess = np.abs(mean - closed) - (Z_BOUND * se + 1e-12)
    assert np.all(excess <= 0), f"worst excess {excess.max():.3g} over {Z_BOUND} standard errors"


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_i2_j2_match_monte_carlo(activation: str) -> None:
    C = _random_covariance(4, seed=1)
    _, g, gp = _samples(C, activation, seed=2)
    _assert_mc(i2(C, activation), g[:, :, None] * g[:, None, :])
    _assert_mc(j2(C, activation), gp[:, :, None] * gp[:, None, :])


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_i3_matches_monte_carlo_for_every_index_triple(activation: str) -> None:
    C = _random_covariance(4, seed=3)
    z, g, gp = _samples(C, activation, seed=4)
    closed = i3(C, activation)
    assert closed.shape == (4, 4, 4)
    # Summing over c inside the loop keeps memory at SAMPLES x 4 x 4 while still checking every (a, b, c).
    for c in range(4):
        _assert_mc(closed[:, :, c], gp[:, :, None] * z[:, None, :] * g[:, None, c, None])


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_i4_matches_monte_carlo_for_every_index_quadruple(activation: str) -> None:
    C = _random_covariance(3, seed=5)
    _, g, gp = _samples(C, activation, seed=6)
    closed = i4(C, activation)
    assert closed.shape == (3, 3, 3, 3)
    for c in range(3):
        for d in range(3):
            _assert_mc(closed[:, :, c, d], gp[:, :, None] * gp[:, None, :] * (g[:, c] * g[:, d])[:, None, None])


def test_first_restricts_the_derivative_indices_and_batches_broadcast() -> None:
    C = np.stack([_random_covariance(5, seed=s) for s in range(3)])
    full3, full4 = i3(C), i4(C)
    np.testing.assert_allclose(i3(C, first=2), full3[:, :2])
    np.testing.assert_allclose(i4(C, first=2), full4[:, :2, :2])
    np.testing.assert_allclose(i4(C[1]), full4[1])


def test_linear_closed_forms_are_the_covariance_entries() -> None:
    C = _random_covariance(3, seed=7)
    P = range(3)
    assert all(i3(C, "linear")[a, b, c] == C[b, c] for a in P for b in P for c in P)
    assert all(i4(C, "linear")[a, b, c, d] == C[c, d] for a in P for b in P for c in P for d in P)
    np.testing.assert_array_equal(i2(C, "linear"), C)
    np.testing.assert_array_equal(j2(C, "linear"), np.ones((3, 3)))


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_generalisation_error_matches_a_monte_carlo_test_error(activation: str) -> None:
    weights = draw_weights(3, 2, 40, seeds=11, init_w=0.8, init_v=0.7, teacher_seed=4)
    state = OrderParameters.from_weights(weights)
    x = np.random.default_rng(12).standard_normal((SAMPLES, 40))
    lam = x @ weights.w[0].T / np.sqrt(40)
    nu = x @ weights.w_teacher[0].T / np.sqrt(40)
    g = (lambda u: erf(u / np.sqrt(2.0))) if activation == "erf" else (lambda u: u)
    half_squared = 0.5 * (g(nu) @ weights.A[0] - g(lam) @ weights.v[0]) ** 2
    _assert_mc(state.generalisation_error(activation)[0], half_squared)


def test_generalisation_error_is_zero_for_a_student_equal_to_its_teacher() -> None:
    Q = np.array([[1.0, 0.3], [0.3, 2.0]])
    assert generalisation_error(Q, Q, Q, np.array([1.0, -0.5]), np.array([1.0, -0.5])) == pytest.approx(0, abs=1e-15)


def test_covariance_assembles_the_blocks() -> None:
    Q, R, T = np.eye(2), np.arange(6.0).reshape(2, 3), 2 * np.eye(3)
    C = covariance(Q, R, T)
    np.testing.assert_array_equal(C[:2, 2:], R)
    np.testing.assert_array_equal(C[2:, :2], R.T)


def test_bad_input_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="activation must be one of 'erf', 'linear'; got 'relu'"):
        i2(np.eye(2), "relu")
    with pytest.raises(ValueError, match=r"C must be a covariance matrix of shape \(..., P, P\), got shape \(2, 3\)"):
        i3(np.ones((2, 3)))
    with pytest.raises(ValueError, match="C must hold finite numbers"):
        j2(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="C must have a non-negative diagonal"):
        i4(-np.eye(2))
    with pytest.raises(ValueError, match=r"first must be an integer in \[1, 2\], got 3"):
        i4(np.eye(2), first=3)
    with pytest.raises(ValueError, match=r"Q, R, T must have shapes"):
        covariance(np.eye(2), np.ones((3, 1)), np.eye(1))
