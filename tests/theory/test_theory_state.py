"""Settings, initial conditions, order parameters, time grids and the noise mapping: behaviour and messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optodfa.theory import (
    Dynamics,
    OrderParameters,
    Weights,
    draw_weights,
    feedback_noise_from_snr,
    feedback_second_moment,
    initial_order_parameters,
    log_time_grid,
    steps_at,
)


def test_draw_weights_shares_teacher_and_feedback_and_repeats_a_repeated_seed() -> None:
    weights = draw_weights(3, 2, 400, seeds=[5, 6, 5], init_w=0.1, init_v=0.2, teacher_seed=1, feedback_seed=2)
    assert weights.shape == (3, 3, 2, 400)
    np.testing.assert_array_equal(weights.w[0], weights.w[2])
    assert not np.allclose(weights.w[0], weights.w[1])
    np.testing.assert_array_equal(weights.w_teacher[0], weights.w_teacher[1])
    np.testing.assert_array_equal(weights.b[0], weights.b[1])
    np.testing.assert_array_equal(weights.A, np.ones((3, 2)))
    other_b = draw_weights(3, 2, 400, seeds=5, feedback_seed=3).b[0]
    assert not np.allclose(other_b, weights.b[0])
    np.testing.assert_array_equal(draw_weights(3, 2, 400, seeds=5, init_w=0.1, teacher_seed=1).w[0], weights.w[0])


def test_initial_overlaps_have_the_drawn_scales() -> None:
    # Q_kk = init_w² χ²_N/N: mean init_w², relative spread sqrt(2/N) = 0.02 at N = 5000; 5 spreads allowed.
    state = initial_order_parameters(4, 3, 5000, seeds=0, init_w=0.3, init_v=0.5, teacher_orthonormal=True)
    np.testing.assert_allclose(np.diagonal(state.Q[0]), 0.09, rtol=5 * np.sqrt(2 / 5000))
    np.testing.assert_allclose(state.T[0], np.eye(3), atol=1e-12)
    # Off-diagonal overlaps are O(init_w² /√N) and O(init_w/√N): 5 standard deviations.
    assert np.abs(state.Q[0] - np.diag(np.diagonal(state.Q[0]))).max() < 5 * 0.09 / np.sqrt(5000)
    assert np.abs(state.R[0]).max() < 5 * 0.3 / np.sqrt(5000)


def test_order_parameters_measure_alignment_and_index_batches() -> None:
    state = OrderParameters(Q=np.eye(2), R=np.zeros((2, 1)), T=np.eye(1), v=[1.0, -2.0], A=[1.0], b=[2.0, -1.0])
    assert state.cos_vb() == pytest.approx(4 / 5)
    assert state.sign_agreement() == 1.0
    zero = dataclasses.replace(state, v=np.zeros(2))
    assert zero.cos_vb() == 0.0
    batch = initial_order_parameters(2, 1, 50, seeds=[1, 2, 3])
    assert batch.batch_shape == (3,)
    np.testing.assert_array_equal(batch.index(slice(1, 3)).Q, batch.Q[1:3])
    assert (batch.K, batch.M) == (2, 1)


def test_feedback_second_moment_adds_noise_to_the_diagonal_only() -> None:
    c = np.array([1.0, -2.0])
    E2, J2 = np.array([[2.0, 0.5], [0.5, 3.0]]), np.array([[0.4, 0.1], [0.1, 0.3]])
    exact = np.outer(c, c) * E2
    np.testing.assert_allclose(feedback_second_moment(c, E2, J2, s=0.0, mode="additive"), exact)
    np.testing.assert_allclose(feedback_second_moment(c, E2, J2, s=0.5, mode="additive"),
                               exact + 0.25 * np.diag([0.4, 0.3]))
    np.testing.assert_allclose(feedback_second_moment(c, E2, J2, s=0.5, mode="redrawn"),
                               exact + 0.25 * np.diag([2.0, 3.0]))


def test_feedback_noise_from_snr_inverts_the_fidelity_snr() -> None:
    b = np.array([3.0, -4.0])                      # rms(b) = sqrt(12.5)
    s = feedback_noise_from_snr(20.0, b)
    assert s == pytest.approx(np.sqrt(12.5) / 10)
    # The SNR of the redrawn model, E[(b ε)²] / E[(s ξ ε)²] = mean(b²)/s², comes back as 20 dB.
    assert 10 * np.log10(np.mean(b**2) / s**2) == pytest.approx(20.0)
    assert feedback_noise_from_snr(0.0, b, mode="additive", error_rms=0.2) == pytest.approx(np.sqrt(12.5) * 0.2)


def test_log_time_grid_lands_on_whole_steps() -> None:
    grid = log_time_grid(10.0, points=50, t_min=0.001, N=100)
    assert grid[0] == 0.0 and grid[-1] == 10.0
    np.testing.assert_array_equal(steps_at(grid, 100), np.rint(grid * 100))
    assert np.all(np.diff(grid) > 0) and len(grid) < 51
    assert len(log_time_grid(1.0, points=5)) == 6


def test_bad_settings_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="algorithm must be one of 'bp', 'dfa'; got 'fa'"):
        Dynamics(algorithm="fa")
    with pytest.raises(ValueError, match="activation must be one of 'erf', 'linear'; got 'relu'"):
        Dynamics(activation="relu")
    with pytest.raises(ValueError, match="feedback_noise_mode must be one of 'additive', 'redrawn'; got 'x'"):
        Dynamics(feedback_noise_mode="x")
    with pytest.raises(ValueError, match=r"lr_w must be a finite real number in \(0, inf\), got 0"):
        Dynamics(lr_w=0)
    with pytest.raises(ValueError, match=r"lr_v must be a finite real number in \[0, inf\), got -1"):
        Dynamics(lr_v=-1)
    with pytest.raises(TypeError, match="teacher_noise must be a real number"):
        Dynamics(teacher_noise="0.1")
    with pytest.raises(ValueError, match=r"weight_decay must be a finite real number in \[0, inf\), got -0.5"):
        Dynamics(weight_decay=-0.5)
    with pytest.raises(ValueError, match=r"feedback_noise must be a finite real number in \[0, inf\), got nan"):
        Dynamics(feedback_noise=float("nan"))
    assert Dynamics(lr_w=np.float32(0.5)).lr_w == 0.5
    assert Dynamics().to_dict()["algorithm"] == "dfa"


def test_bad_weights_and_states_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match=r"N must be an integer >= 3, got 2"):
        draw_weights(3, 1, 2, seeds=0)
    with pytest.raises(ValueError, match="seeds must name at least one replica, got an empty sequence"):
        draw_weights(2, 1, 10, seeds=[])
    with pytest.raises(ValueError, match=r"seeds must be an integer in \[0, "):
        draw_weights(2, 1, 10, seeds=[-1])
    with pytest.raises(ValueError, match=r"init_w must be a finite real number in \[0, inf\), got -1"):
        draw_weights(2, 1, 10, seeds=0, init_w=-1)
    with pytest.raises(TypeError, match=r"teacher_orthonormal must be a bool, got 1 \(int\)"):
        draw_weights(2, 1, 10, seeds=0, teacher_orthonormal=1)
    good = draw_weights(2, 1, 10, seeds=0)
    with pytest.raises(ValueError, match=r"v must have shape \(1, 2\) to match w of shape \(1, 2, 10\), got \(1, 3\)"):
        Weights(w=good.w, w_teacher=good.w_teacher, v=np.zeros((1, 3)), A=good.A, b=good.b)
    with pytest.raises(ValueError, match=r"R must have shape \(2, 1\) \(batch \(\), K = 2, M = 1\), got \(1, 2\)"):
        OrderParameters(Q=np.eye(2), R=np.zeros((1, 2)), T=np.eye(1), v=np.zeros(2), A=np.ones(1), b=np.ones(2))
    with pytest.raises(ValueError, match="Q must hold finite numbers, got NaN or inf"):
        OrderParameters(Q=np.full((1, 1), np.inf), R=np.zeros((1, 1)), T=np.eye(1), v=[0.0], A=[1.0], b=[1.0])


def test_bad_grid_and_noise_arguments_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match=r"t_max must be a finite real number in \(0, inf\), got 0"):
        log_time_grid(0.0)
    with pytest.raises(ValueError, match=r"t_min must be a finite real number in \(0, 1\], got 2"):
        log_time_grid(1.0, t_min=2.0)
    with pytest.raises(ValueError, match=r"points must be an integer >= 1, got 0"):
        log_time_grid(1.0, points=0)
    with pytest.raises(ValueError, match="mode must be one of 'additive', 'redrawn'; got 'both'"):
        feedback_noise_from_snr(10.0, np.ones(2), mode="both")
    with pytest.raises(ValueError, match=r"b must be a non-empty finite vector of shape \(K,\), got shape \(2, 2\)"):
        feedback_noise_from_snr(10.0, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"error_rms must be a finite real number in \(0, inf\), got 0"):
        feedback_noise_from_snr(10.0, np.ones(2), mode="additive", error_rms=0.0)


def test_theory_imports_only_seeding_and_validation_of_optodfa() -> None:
    # docs/architecture.md: theory/ stands alone; devices reach it only as a feedback callable.
    import ast
    from pathlib import Path

    import optodfa.theory

    allowed = {"optodfa.seeding", "optodfa.validation"}
    for path in Path(optodfa.theory.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("optodfa") and not name.startswith("optodfa.theory"):
                    assert name in allowed, f"{path.name} imports {name}"
