"""The theory bridge: measured gain and noise variance against known injected ones, and device-driven DFA."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from optodfa.device import Projector
from optodfa.feedback_noise import DeviceFeedback, measure_feedback_noise, teacher_student_errors
from optodfa.registry import build_projector
from optodfa.seeding import torch_generator
from optodfa.theory import Dynamics, draw_weights, log_time_grid, simulate


class _NoisyProjector(Projector):
    """Exact ``gain ⊙ (B e)`` plus Gaussian noise: ``sd_add ζ`` (fixed size) and ``sd_prop ξ · rms(e)``."""

    def __init__(self, B: torch.Tensor, *, gain: torch.Tensor, sd_add: torch.Tensor, sd_prop: torch.Tensor,
                 seed: int) -> None:
        super().__init__(B.shape[1], B.shape[0])
        self.B, self.gain, self.sd_add, self.sd_prop = B, gain, sd_add, sd_prop
        self.generator = torch_generator(seed, 0)

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        n, D = e.shape[0], self.out_features
        zeta = torch.randn(n, D, generator=self.generator, dtype=e.dtype)
        xi = torch.randn(n, D, generator=self.generator, dtype=e.dtype)
        size = e.square().mean(dim=1, keepdim=True).sqrt()
        return self.gain * (e @ self.B.T) + self.sd_add * zeta + self.sd_prop * xi * size

    def effective_matrix(self) -> torch.Tensor:
        return self.B


def _standard_errors(q: np.ndarray, r2_variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of the least-squares ``α, β`` in ``r² ≈ α + β q`` when ``Var(r²) = r2_variance``
    (per sample, (n, D)): ``sqrt(diag((XᵀX)⁻¹ Xᵀ diag(v) X (XᵀX)⁻¹))``."""
    X = np.stack([np.ones_like(q), q], axis=1)
    inverse = np.linalg.inv(X.T @ X)
    H = inverse @ X.T                                               # (2, n)
    se = np.sqrt((H**2) @ r2_variance)                              # (2, D)
    return se[0], se[1]


@pytest.mark.parametrize("kind", ["additive", "proportional"])
def test_measurement_recovers_an_injected_gain_and_noise_variance(kind: str) -> None:
    n, D = 20000, 6
    B = torch.randn(D, 1, generator=torch_generator(1, 0), dtype=torch.float64)
    gain = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.8, 1.2], dtype=torch.float64)
    sd = torch.tensor([0.1, 0.3, 0.05, 0.2, 0.15, 0.25], dtype=torch.float64)
    zero = torch.zeros(D, dtype=torch.float64)
    projector = _NoisyProjector(B, gain=gain, sd_add=sd if kind == "additive" else zero,
                                sd_prop=sd if kind == "proportional" else zero, seed=3)
    errors = teacher_student_errors(n, M=2, seed=4)
    noise = measure_feedback_noise(projector, errors)

    q = errors[:, 0] ** 2
    x = errors @ B.numpy().T
    variance = (sd**2).numpy()
    # Gain: the regression slope's standard error is sd_residual / sqrt(Σ x²) per component.
    residual_var = variance[None, :] * (q[:, None] if kind == "proportional" else np.ones((n, 1)))
    se_gain = np.sqrt(np.sum(x**2 * residual_var, axis=0)) / np.sum(x**2, axis=0)
    assert np.all(np.abs(noise.gain - gain.numpy()) <= 5 * se_gain)
    # Noise: r² = σ² χ²₁ (times q), whose variance is 2 σ⁴ (times q²); 5 standard errors, fixed seed.
    se_a, se_b = _standard_errors(q, 2 * residual_var**2)
    expected_a = variance if kind == "additive" else np.zeros(D)
    expected_b = variance if kind == "proportional" else np.zeros(D)
    assert np.all(np.abs(noise.additive - expected_a) <= 5 * se_a)
    assert np.all(np.abs(noise.proportional - expected_b) <= 5 * se_b)
    # The tolerance has power: it is under half the injected variance (OLS on q spanning 6 decades of ε²).
    injected_se = se_a if kind == "additive" else se_b
    assert np.all(5 * injected_se < 0.5 * variance)
    mode = "additive" if kind == "additive" else "redrawn"
    assert noise.mode == mode
    np.testing.assert_allclose(noise.levels(), np.sqrt(np.clip(noise.additive if kind == "additive"
                                                               else noise.proportional, 0, None)))
    np.testing.assert_allclose(noise.b(), noise.gain * B.numpy()[:, 0])
    assert noise.gain_spread < 0.1
    dyn = noise.dynamics(Dynamics(lr_w=0.5, lr_v=0.5))
    assert dyn.feedback_noise_mode == mode and len(dyn.feedback_noise) == D


def test_scale_multiplies_the_feedback_vector_and_the_noise_levels() -> None:
    B = torch.randn(3, 1, generator=torch_generator(2, 0), dtype=torch.float64)
    sd = torch.full((3,), 0.2, dtype=torch.float64)
    errors = teacher_student_errors(4000, M=1, seed=1)
    one = measure_feedback_noise(_NoisyProjector(B, gain=torch.ones(3, dtype=torch.float64), sd_add=sd,
                                                 sd_prop=0 * sd, seed=5), errors)
    half = measure_feedback_noise(_NoisyProjector(B, gain=torch.ones(3, dtype=torch.float64), sd_add=sd,
                                                  sd_prop=0 * sd, seed=5), errors, scale=0.5)
    np.testing.assert_allclose(half.b(), 0.5 * one.b())
    np.testing.assert_allclose(half.levels("additive"), 0.5 * one.levels("additive"))


def test_an_error_dependent_gain_shows_in_the_gain_spread() -> None:
    # A ternary encoding with a fixed threshold delivers nothing for |ε| below it: the gain depends on the size.
    projector = build_projector("opu-sim", 1, 4, feedback_seed=5, profile="ideal-opu",
                                overrides={"encoding.rule": "fixed", "encoding.threshold": 0.05},
                                dtype=torch.float64)
    noise = measure_feedback_noise(projector, teacher_student_errors(2000, M=2, seed=1))
    assert noise.gain_spread > 0.5
    assert np.all(np.abs(noise.gain_by_size[0]) < 0.1)          # the smallest errors: no feedback at all
    # The same ideal device with the scale-invariant default encoding is exact for a scalar error.
    exact = measure_feedback_noise(build_projector("opu-sim", 1, 4, feedback_seed=5, profile="ideal-opu",
                                                   dtype=torch.float64),
                                   teacher_student_errors(2000, M=2, seed=1))
    np.testing.assert_allclose(exact.gain, 1.0, atol=1e-9)
    assert exact.gain_spread < 1e-9 and np.all(exact.residual < 1e-18)


def test_sign_code_of_a_scalar_error_is_exact_so_only_camera_noise_remains() -> None:
    # d = 1: ternary (rule max) and sign both give t = sign(ε) and scale |ε|, so the device output is
    # ε · (B_eff + camera noise) with noise independent of |ε|: the redrawn model, gain 1 up to camera effects.
    errors = teacher_student_errors(8000, M=2, seed=2)
    for encoding in ({}, {"encoding.kind": "sign"}):
        projector = build_projector("opu-sim", 1, 4, feedback_seed=5, profile="lighton-aurora",
                                    overrides={"camera.bits": 12, **encoding}, dtype=torch.float64)
        noise = measure_feedback_noise(projector, errors)
        assert noise.mode == "redrawn"
        assert noise.gain_spread < 0.1
        assert np.all(np.abs(noise.gain - 1.0) < 0.05)
        assert np.all(np.abs(noise.additive) < 0.02 * noise.proportional.max())


def test_device_driven_simulation_with_the_digital_projector_is_the_noiseless_simulation() -> None:
    K, M, N = 3, 2, 60
    projector = build_projector("digital", 1, K, feedback_seed=7, dtype=torch.float64)
    feedback = DeviceFeedback(projector)
    weights = draw_weights(K, M, N, seeds=[0, 1, 2], init_w=0.3, init_v=0.3)
    weights = dataclasses.replace(weights, b=np.broadcast_to(feedback.exact_b(), (3, K)).copy())
    dyn = Dynamics(algorithm="dfa", lr_w=1.0, lr_v=0.7)
    times = log_time_grid(3.0, points=5, t_min=0.1, N=N)
    plain = simulate(weights, dyn, times, seed=4)
    driven = simulate(weights, dyn, times, seed=4, feedback=feedback)
    np.testing.assert_array_equal(driven.state.Q, plain.state.Q)
    np.testing.assert_array_equal(driven.state.R, plain.state.R)
    np.testing.assert_array_equal(driven.state.v, plain.state.v)
    assert projector.counters().calls == round(3.0 * N)            # one projector call per SGD step
    assert projector.counters().projections == 3 * round(3.0 * N)  # the replicas are the batch


def test_device_noise_changes_the_run_and_bad_feedback_is_refused() -> None:
    weights = draw_weights(2, 1, 30, seeds=[0], init_w=0.3, init_v=0.3)
    times = np.array([0.0, 1.0])
    dyn = Dynamics(lr_w=1.0, lr_v=1.0)
    with pytest.raises(ValueError, match=r"feedback must return shape \(S, K\) = \(1, 2\)"):
        simulate(weights, dyn, times, seed=0, feedback=lambda e: np.zeros((1, 3)))
    with pytest.raises(ValueError, match="feedback returned NaN or inf"):
        simulate(weights, dyn, times, seed=0, feedback=lambda e: np.full((1, 2), math.nan))
    with pytest.raises(ValueError, match="cannot drive algorithm 'bp'"):
        simulate(weights, Dynamics(algorithm="bp"), times, seed=0, feedback=lambda e: e[:, None] * weights.b)
    with pytest.raises(ValueError, match="dynamics.feedback_noise must be 0 when a feedback callable is given"):
        simulate(weights, Dynamics(feedback_noise=0.1), times, seed=0, feedback=lambda e: e[:, None] * weights.b)
    with pytest.raises(TypeError, match="feedback must be a callable"):
        simulate(weights, dyn, times, seed=0, feedback=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_features = 1, got 2"):
        DeviceFeedback(build_projector("digital", 2, 2))


def test_bad_measurement_input_is_refused_with_a_message() -> None:
    projector = build_projector("digital", 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"errors must be a finite \(n, 1\) array with n >= 32"):
        measure_feedback_noise(projector, np.ones((10, 1)))
    with pytest.raises(ValueError, match=r"reference must be a finite \(3, 1\) matrix, got shape \(2, 1\)"):
        measure_feedback_noise(projector, np.ones((64, 1)), reference=np.ones((2, 1)))
    intensity = build_projector("opu-sim", 1, 3, profile="ideal-opu", overrides={"readout.mode": "intensity"})
    with pytest.raises(ValueError, match="no effective matrix"):
        measure_feedback_noise(intensity, np.ones((64, 1)))
    with pytest.raises(ValueError, match="feedback_noise has 2 per-unit levels but the student has K = 3 units"):
        Dynamics(feedback_noise=(0.1, 0.2)).noise_levels(3)
