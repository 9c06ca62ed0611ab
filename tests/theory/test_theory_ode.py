"""The ODE right-hand side against SPEC §5 written as sums, closed-form solutions, and learning to zero error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from optodfa.theory import (
    SOLVERS,
    Dynamics,
    IntegrationError,
    OrderParameters,
    derivatives,
    i2,
    i3,
    i4,
    initial_order_parameters,
    integrate,
    j2,
)
from optodfa.theory import ode as ode_module


def _state(K: int, M: int, *, seed: int, scale: float = 0.7) -> OrderParameters:
    """A generic state: overlaps of random finite-N weights (so C is a valid covariance) and random v."""
    return initial_order_parameters(K, M, 30, seeds=seed, init_w=scale, init_v=scale, teacher_seed=seed + 1,
                                    feedback_seed=seed + 2).index(0)


def _spec_derivatives(dyn: Dynamics, s: OrderParameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SPEC §5 as written, one index at a time, with the noise terms of docs/theory.md."""
    K, M = s.K, s.M
    C = s.covariance()
    I2, I3, I4, J2 = i2(C, dyn.activation), i3(C, dyn.activation), i4(C, dyn.activation), j2(C, dyn.activation)
    c = s.b if dyn.algorithm == "dfa" else s.v
    eta, eta_v, sig2, s2 = dyn.lr_w, dyn.lr_v, dyn.teacher_noise**2, dyn.feedback_noise**2
    teach = range(K, K + M)

    def drift(i: int, a: int) -> float:
        return (sum(s.A[m - K] * I3[i, a, m] for m in teach) - sum(s.v[j] * I3[i, a, j] for j in range(K)))

    dR = np.array([[eta * c[i] * drift(i, K + n) for n in range(M)] for i in range(K)])
    dQ = np.zeros((K, K))
    for i in range(K):
        for k in range(K):
            power = (sum(s.A[n - K] * s.A[m - K] * I4[i, k, n, m] for n in teach for m in teach)
                     - 2 * sum(s.v[j] * s.A[n - K] * I4[i, k, j, n] for j in range(K) for n in teach)
                     + sum(s.v[j] * s.v[q] * I4[i, k, j, q] for j in range(K) for q in range(K))
                     + sig2 * J2[i, k])
            feedback = c[i] * c[k]
            if dyn.feedback_noise_mode == "redrawn":
                feedback += s2 * (i == k)
            extra = s2 * (i == k) * J2[i, i] if dyn.feedback_noise_mode == "additive" else 0.0
            dQ[i, k] = (eta * c[i] * drift(i, k) + eta * c[k] * drift(k, i) + eta**2 * (feedback * power + extra)
                        - 2 * eta * dyn.weight_decay * s.Q[i, k])
    dR -= eta * dyn.weight_decay * s.R
    dv = np.array([eta_v * (sum(s.A[n - K] * I2[i, n] for n in teach) - sum(s.v[k] * I2[i, k] for k in range(K)))
                   for i in range(K)]) - eta_v * dyn.weight_decay * s.v
    return dQ, dR, dv


CASES = [
    Dynamics(algorithm="dfa", lr_w=0.7, lr_v=0.3),
    Dynamics(algorithm="bp", lr_w=0.4, lr_v=0.9, teacher_noise=0.5),
    Dynamics(algorithm="dfa", lr_w=1.1, lr_v=0.2, feedback_noise=0.8, feedback_noise_mode="additive",
             weight_decay=0.3),
    Dynamics(algorithm="bp", lr_w=0.5, lr_v=0.5, feedback_noise=0.6, feedback_noise_mode="redrawn",
             teacher_noise=0.2),
    Dynamics(algorithm="dfa", activation="linear", lr_w=0.3, lr_v=0.6, feedback_noise=0.4, teacher_noise=0.1),
]


@pytest.mark.parametrize("dyn", CASES, ids=lambda d: f"{d.algorithm}-{d.activation}-{d.feedback_noise_mode}")
def test_vectorised_derivatives_equal_the_spec_sums(dyn: Dynamics) -> None:
    state = _state(3, 2, seed=4)
    for got, want in zip(derivatives(dyn, state), _spec_derivatives(dyn, state), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def test_derivatives_of_a_batch_equal_those_of_each_member() -> None:
    batch = initial_order_parameters(3, 2, 30, seeds=[1, 2, 3], init_w=0.8, init_v=0.5)
    dyn = CASES[2]
    together = derivatives(dyn, batch)
    for r in range(3):
        for got, want in zip(together, derivatives(dyn, batch.index(r)), strict=True):
            np.testing.assert_allclose(got[r], want, rtol=1e-12)


def _linear_fixed_v_map(dyn: Dynamics, s: OrderParameters):
    """Linear g with frozen v is affine in (Q, R): the closed form of SPEC §5 with I2 = C, I3 = C_bc, I4 = C_cd."""
    c = s.b if dyn.algorithm == "dfa" else s.v
    eta, kappa, s2 = dyn.lr_w, dyn.weight_decay, dyn.feedback_noise**2
    K, M = s.K, s.M

    def rhs(y: np.ndarray) -> np.ndarray:
        Q, R = y[: K * K].reshape(K, K), y[K * K :].reshape(K, M)
        q = R @ s.A - Q @ s.v                                   # E[λ_k ε]
        power = s.v @ Q @ s.v - 2 * s.v @ R @ s.A + s.A @ s.T @ s.A + dyn.teacher_noise**2   # E[ε²]
        feedback = np.outer(c, c) + (s2 * np.eye(K) if dyn.feedback_noise_mode == "redrawn" else 0.0)
        additive = s2 * np.eye(K) if dyn.feedback_noise_mode == "additive" else 0.0
        dQ = eta * (np.outer(c, q) + np.outer(q, c)) + eta**2 * (feedback * power + additive) - 2 * eta * kappa * Q
        dR = eta * np.outer(c, s.T @ s.A - R.T @ s.v) - eta * kappa * R
        return np.concatenate([dQ.ravel(), dR.ravel()])

    return rhs


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("mode", ["additive", "redrawn"])
def test_every_solver_matches_the_matrix_exponential_of_the_linear_model(solver: str, mode: str) -> None:
    dyn = Dynamics(algorithm="dfa", activation="linear", lr_w=0.3, lr_v=0.0, teacher_noise=0.3,
                   weight_decay=0.2, feedback_noise=0.5, feedback_noise_mode=mode)
    state = _state(2, 2, seed=8)
    rhs = _linear_fixed_v_map(dyn, state)
    n = 2 * 2 + 2 * 2
    affine = np.zeros((n + 1, n + 1))
    offset = rhs(np.zeros(n))
    for j in range(n):
        affine[:n, j] = rhs(np.eye(n)[j]) - offset
    affine[:n, n] = offset
    y0 = np.concatenate([state.Q.ravel(), state.R.ravel(), [1.0]])
    times = np.array([0.0, 0.5, 1.0, 2.0])
    exact = np.array([(expm(affine * t) @ y0)[:n] for t in times])
    dt = 1e-3 if solver == "euler" else None
    trajectory = integrate(dyn, state, times, solver=solver, rtol=1e-9, atol=1e-11, dt=dt)
    got = np.concatenate([trajectory.state.Q.reshape(4, -1), trajectory.state.R.reshape(4, -1)], axis=1)
    # Adaptive: 1e-9 relative tolerance per step, a few hundred steps. Euler: global error ~ dt·t·|y''|/2, and
    # |y''| <= ||M||² |y| ~ 1 here, so 2e-3 at t = 2 (the first-order test below pins the rate).
    tolerance = 5e-3 if solver == "euler" else 1e-6
    np.testing.assert_allclose(got, exact, rtol=tolerance, atol=tolerance * np.abs(exact).max())
    np.testing.assert_array_equal(trajectory.state.v, np.broadcast_to(state.v, (4, 2)))


def test_euler_with_dt_one_over_n_converges_at_first_order_to_the_adaptive_solution() -> None:
    dyn = Dynamics(algorithm="dfa", lr_w=0.8, lr_v=0.8)
    state = _state(2, 2, seed=3, scale=0.5)
    times = np.array([0.0, 0.5, 1.5])
    reference = integrate(dyn, state, times, solver="dop853", rtol=1e-11, atol=1e-13).state
    errors = []
    for N in (200, 400, 800):
        euler = integrate(dyn, state, times, solver="euler", dt=1.0 / N).state
        errors.append(max(np.abs(euler.Q - reference.Q).max(), np.abs(euler.v - reference.v).max()))
        assert euler.Q.shape == reference.Q.shape
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    # First order: halving dt halves the error, up to O(dt) corrections of the ratio.
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios


def test_adaptive_solvers_agree_on_an_erf_trajectory() -> None:
    dyn = Dynamics(algorithm="dfa", lr_w=0.5, lr_v=0.5, teacher_noise=0.1)
    state = initial_order_parameters(3, 2, 1000, seeds=5, init_w=0.1, init_v=0.1).index(0)
    times = np.geomspace(0.01, 200, 12)
    times[0] = 0.0
    reference = integrate(dyn, state, times, solver="dop853", rtol=1e-10, atol=1e-12).generalisation_error
    for solver in ("rk45", "lsoda"):
        got = integrate(dyn, state, times, solver=solver, rtol=1e-8, atol=1e-10).generalisation_error
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("algorithm", ["bp", "dfa"])
def test_student_of_teacher_size_learns_to_zero_error(algorithm: str) -> None:
    state = initial_order_parameters(2, 2, 1000, seeds=0, init_w=0.1, init_v=0.1)
    times = np.array([0.0, 10.0, 100.0, 1000.0, 3000.0])
    trajectory = integrate(Dynamics(algorithm=algorithm, lr_w=0.5, lr_v=0.5), state, times)
    eg = trajectory.generalisation_error[:, 0]
    assert eg[0] > 0.3
    assert np.all(np.diff(eg[:4]) < 0)
    # Near zero the closed form of ε_g is within the solver's tolerance of 0, and may be a hair below it.
    assert abs(eg[-1]) < 1e-6 * eg[0]
    if algorithm == "dfa":
        # Zero error with v_k = ±A_k; DFA picks the signs of b.
        assert trajectory.sign_agreement[-1, 0] == 1.0
        np.testing.assert_allclose(np.abs(trajectory.state.v[-1, 0]), 1.0, atol=1e-3)


@pytest.mark.parametrize("solver", ["lsoda", "bdf", "rk45"])
def test_batch_integrates_like_its_members(solver: str) -> None:
    # LSODA and BDF are told the Jacobian of a batch is block diagonal; a wrong band would show up here.
    batch = initial_order_parameters(2, 2, 500, seeds=[3, 4], init_w=0.2, init_v=0.2)
    dyn = Dynamics(algorithm="bp", lr_w=0.6, lr_v=0.6)
    times = np.array([0.0, 5.0, 50.0])
    together = integrate(dyn, batch, times, rtol=1e-9, atol=1e-11, solver=solver)
    assert together.generalisation_error.shape == (3, 2)
    for r in range(2):
        alone = integrate(dyn, batch.index(r), times, rtol=1e-9, atol=1e-11, solver="dop853")
        np.testing.assert_allclose(together.state.Q[:, r], alone.state.Q, rtol=1e-6, atol=1e-8)


def test_a_diverging_state_raises_with_the_time_reached() -> None:
    # Linear DFA with frozen v: Q grows like exp((η²b²v² − 2ηbv) t) = exp(80 t) and overflows near t ≈ 9.
    state = OrderParameters(Q=[[1.0]], R=[[0.0]], T=[[1.0]], v=[1.0], A=[1.0], b=[1.0])
    dyn = Dynamics(algorithm="dfa", activation="linear", lr_w=10.0, lr_v=0.0)
    with pytest.raises(IntegrationError, match=r"solver 'lsoda' failed at t = \d.*asked for t = 100\).*left the "
                                               r"domain"):
        integrate(dyn, state, [0.0, 100.0], solver="lsoda")
    with pytest.raises(IntegrationError, match=r"solver 'euler' failed at t = \d"):
        integrate(dyn, state, [0.0, 100.0], solver="euler", dt=0.01)


def test_a_scipy_failure_is_reported_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_solve_ivp(fun, t_span, y0, **kwargs):  # what solve_ivp returns when it gives up
        from scipy.integrate._ivp.ivp import OdeResult
        return OdeResult(t=np.array([0.0, 1.25]), y=np.zeros((len(y0), 2)), success=False, status=-1, nfev=9,
                         njev=0, message="Required step size is less than spacing between numbers.")

    monkeypatch.setattr(ode_module, "solve_ivp", failing_solve_ivp)
    with pytest.raises(IntegrationError, match=r"solver 'rk45' failed at t = 1.25 \(asked for t = 3\): Required "
                                               r"step size"):
        integrate(Dynamics(), _state(2, 1, seed=0), [0.0, 3.0], solver="rk45")


def test_bad_arguments_are_refused_with_a_message() -> None:
    state = _state(2, 1, seed=0)
    dyn = Dynamics()
    with pytest.raises(ValueError, match="solver must be one of 'rk45', .*'euler'; got 'rk4'"):
        integrate(dyn, state, [0.0, 1.0], solver="rk4")
    with pytest.raises(ValueError, match="dt must be given for the fixed-step solver 'euler'"):
        integrate(dyn, state, [0.0, 1.0], solver="euler")
    with pytest.raises(ValueError, match="dt is for the fixed-step solver 'euler'; solver 'lsoda' is adaptive"):
        integrate(dyn, state, [0.0, 1.0], dt=0.1)
    with pytest.raises(ValueError, match="times must be a strictly increasing 1-D array of at least 2"):
        integrate(dyn, state, [1.0, 1.0])
    with pytest.raises(ValueError, match=r"rtol must be a finite real number in \(0, inf\), got 0"):
        integrate(dyn, state, [0.0, 1.0], rtol=0)
    with pytest.raises(ValueError, match=r"dt must be a finite real number in \(0, inf\), got -0.1"):
        integrate(dyn, state, [0.0, 1.0], solver="euler", dt=-0.1)
    with pytest.raises(TypeError, match="dynamics must be a Dynamics, got dict"):
        integrate({}, state, [0.0, 1.0])
    with pytest.raises(TypeError, match="initial must be an OrderParameters, got ndarray"):
        integrate(dyn, np.zeros(3), [0.0, 1.0])


@pytest.mark.parametrize("mode", ["additive", "redrawn"])
def test_per_unit_noise_levels_reach_only_their_own_unit(mode: str) -> None:
    from optodfa.theory import derivatives, draw_weights, initial_order_parameters, j2, simulate

    state = initial_order_parameters(3, 2, 200, seeds=[0, 1], init_w=0.5, init_v=0.5)
    scalar = derivatives(Dynamics(lr_w=0.7, feedback_noise=0.5, feedback_noise_mode=mode), state)
    per_unit = derivatives(Dynamics(lr_w=0.7, feedback_noise=(0.5, 0.5, 0.5), feedback_noise_mode=mode), state)
    for a, b in zip(scalar, per_unit, strict=True):
        np.testing.assert_array_equal(a, b)
    quiet = derivatives(Dynamics(lr_w=0.7, feedback_noise_mode=mode), state)[0]
    one = derivatives(Dynamics(lr_w=0.7, feedback_noise=(0.0, 0.6, 0.0), feedback_noise_mode=mode), state)[0]
    extra = one - quiet
    assert np.count_nonzero(extra[0]) == 1 and extra[0, 1, 1] > 0     # only dQ_11 of unit 1 moves
    if mode == "additive":
        C = state.covariance()[0]
        assert extra[0, 1, 1] == pytest.approx(0.7**2 * 0.36 * j2(C)[1, 1], rel=1e-12)
    weights = draw_weights(3, 2, 40, seeds=[2], init_w=0.5, init_v=0.5)
    times = np.array([0.0, 1.0])
    a = simulate(weights, Dynamics(feedback_noise=0.4, feedback_noise_mode=mode), times, seed=3)
    b = simulate(weights, Dynamics(feedback_noise=[0.4, 0.4, 0.4], feedback_noise_mode=mode), times, seed=3)
    np.testing.assert_array_equal(a.state.Q, b.state.Q)
    with pytest.raises(ValueError, match="feedback_noise has 2 per-unit levels but the student has K = 3 units"):
        derivatives(Dynamics(feedback_noise=(0.1, 0.2)), state)
    with pytest.raises(ValueError, match=r"feedback_noise\[1\] must be a finite real number in \[0, inf\)"):
        Dynamics(feedback_noise=(0.1, -0.2))
