"""Online SGD: the update rule by hand, reproducibility, and agreement with the ODEs at N = 1000."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from optodfa.seeding import torch_generator
from optodfa.theory import Dynamics, OrderParameters, draw_weights, integrate, log_time_grid, simulate
from optodfa.theory.trajectory import Trajectory


def _direct_sgd(weights, dyn: Dynamics, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule of SPEC §5 one step at a time on explicit vectors, with the simulator's random streams
    (labels 1, 2, 3 of ``seed`` for inputs, label noise and feedback noise; replica r is sub-stream r)."""
    S, K, _, N = weights.shape
    g = (lambda u: erf(u / math.sqrt(2))) if dyn.activation == "erf" else (lambda u: u)
    gp = ((lambda u: math.sqrt(2 / math.pi) * np.exp(-u * u / 2)) if dyn.activation == "erf"
          else (lambda u: np.ones_like(u)))
    w_out, v_out = np.empty_like(weights.w), np.empty_like(weights.v)
    for r in range(S):
        def draw(label: int, shape: tuple[int, ...], r: int = r) -> np.ndarray:
            return torch.randn(shape, generator=torch_generator(seed, label, r), dtype=torch.float32).double().numpy()
        X = draw(1, (steps, N))
        label_noise = draw(2, (steps,)) if dyn.teacher_noise else np.zeros(steps)
        fb_noise = draw(3, (steps, K)) if dyn.feedback_noise else np.zeros((steps, K))
        w, v = weights.w[r].copy(), weights.v[r].copy()
        for j in range(steps):
            x = X[j]
            lam, nu = w @ x / math.sqrt(N), weights.w_teacher[r] @ x / math.sqrt(N)
            error = weights.A[r] @ g(nu) + dyn.teacher_noise * label_noise[j] - v @ g(lam)
            c = weights.b[r] if dyn.algorithm == "dfa" else v
            s = dyn.feedback_noise * fb_noise[j]
            delivered = c * error + s if dyn.feedback_noise_mode == "additive" else (c + s) * error
            w_next = (1 - dyn.lr_w * dyn.weight_decay / N) * w + dyn.lr_w / math.sqrt(N) * np.outer(
                delivered * gp(lam), x)
            v = (1 - dyn.lr_v * dyn.weight_decay / N) * v + dyn.lr_v / N * g(lam) * error
            w = w_next
        w_out[r], v_out[r] = w, v
    return w_out, v_out


@pytest.mark.parametrize("dyn", [
    Dynamics(algorithm="dfa", lr_w=2.0, lr_v=1.5),
    Dynamics(algorithm="bp", lr_w=2.0, lr_v=1.5, teacher_noise=0.3, weight_decay=5.0),
    Dynamics(algorithm="dfa", lr_w=1.0, lr_v=0.5, feedback_noise=0.7, feedback_noise_mode="additive",
             weight_decay=2.0),
    Dynamics(algorithm="bp", activation="linear", lr_w=0.5, lr_v=0.5, feedback_noise=0.7,
             feedback_noise_mode="redrawn"),
], ids=["dfa", "bp-noise-decay", "dfa-additive", "bp-linear-redrawn"])
def test_chunked_updates_equal_the_step_by_step_rule(dyn: Dynamics) -> None:
    weights = draw_weights(3, 2, 40, seeds=[1, 2], init_w=0.5, init_v=0.5)
    steps = 30
    sim = simulate(weights, dyn, np.array([0.0, steps / 40]), seed=9, chunk=steps)
    w, v = _direct_sgd(weights, dyn, steps, seed=9)
    expected = OrderParameters.from_weights(dataclasses.replace(weights, w=w, v=v))
    np.testing.assert_allclose(sim.state.Q[-1], expected.Q, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.state.R[-1], expected.R, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.state.v[-1], v, rtol=1e-9, atol=1e-12)


def test_runs_are_reproducible_independent_of_batch_and_grid_and_leave_the_weights_alone() -> None:
    weights = draw_weights(2, 1, 50, seeds=[3, 4, 5], init_w=0.5, init_v=0.5)
    before = weights.w.copy()
    coarse = simulate(weights, Dynamics(), np.array([0.0, 2.0]), seed=1, chunk=8)
    fine = simulate(weights, Dynamics(), log_time_grid(2.0, points=7, N=50), seed=1, chunk=8)
    first_two = dataclasses.replace(weights, w=weights.w[:2], w_teacher=weights.w_teacher[:2], v=weights.v[:2],
                                    A=weights.A[:2], b=weights.b[:2])
    alone = simulate(first_two, Dynamics(), np.array([0.0, 2.0]), seed=1, chunk=8)
    np.testing.assert_array_equal(weights.w, before)
    np.testing.assert_allclose(fine.state.Q[-1], coarse.state.Q[-1], rtol=1e-12)
    np.testing.assert_allclose(alone.state.Q[-1], coarse.state.Q[-1, :2], rtol=1e-12)
    np.testing.assert_allclose(coarse.state.Q[0], OrderParameters.from_weights(weights).Q)
    other = simulate(weights, Dynamics(), np.array([0.0, 2.0]), seed=2, chunk=8)
    assert np.abs(other.state.Q[-1] - coarse.state.Q[-1]).max() > 1e-3


# ODE against simulation. Both start from the same finite-N weights (one initialisation, REPLICAS input streams),
# so the only differences are SGD fluctuations and finite-N corrections. Per time and entry we allow
# Z standard errors of the replica mean (estimated from the replicas) plus a bias of (1 + |ODE value|)/N.
# With 16 replicas the mean over replicas is Student-t with 15 degrees of freedom: P(|t| > 7) ~ 4e-6 per entry,
# so the ~400 entries checked per run leave a correct ODE a ~0.2% chance of failing (seeds are fixed anyway).
N_SIM = 1000
REPLICAS = 16
Z = 7.0


def _excess(sim: Trajectory, ode: Trajectory) -> float:
    """Largest deviation beyond the tolerance over the whole trajectory, in units of the tolerance (<= 0 is ok)."""
    worst = -np.inf
    pairs = [(sim.state.Q, ode.state.Q), (sim.state.R, ode.state.R), (sim.state.v, ode.state.v),
             (sim.generalisation_error, ode.generalisation_error), (sim.cos_vb, ode.cos_vb)]
    for simulated, predicted in pairs:
        mean = simulated.mean(axis=1)
        se = simulated.std(axis=1, ddof=1) / np.sqrt(REPLICAS)
        tolerance = Z * se + (1.0 + np.abs(predicted)) / N_SIM
        worst = max(worst, float(np.max((np.abs(mean - predicted) - tolerance) / tolerance)))
    return worst


def _compare(dyn: Dynamics, K: int, M: int) -> tuple[Trajectory, Trajectory, OrderParameters, np.ndarray]:
    weights = draw_weights(K, M, N_SIM, seeds=[0] * REPLICAS, init_w=0.3, init_v=0.3)
    times = log_time_grid(8.0, points=12, t_min=0.05, N=N_SIM)
    initial = OrderParameters.from_weights(weights).index(0)
    return simulate(weights, dyn, times, seed=5), integrate(dyn, initial, times), initial, times


@pytest.mark.parametrize("algorithm", ["bp", "dfa"])
def test_ode_follows_the_simulation_mean_over_the_whole_trajectory(algorithm: str) -> None:
    dyn = Dynamics(algorithm=algorithm, lr_w=1.0, lr_v=1.0)
    sim, ode, _, _ = _compare(dyn, 2, 2)
    assert ode.state.Q[-1].max() > 2 * ode.state.Q[0].max()    # the run goes somewhere
    assert _excess(sim, ode) <= 0


@pytest.mark.parametrize("mode", ["additive", "redrawn"])
def test_noisy_feedback_ode_follows_the_simulation_and_needs_its_noise_term(mode: str) -> None:
    dyn = Dynamics(algorithm="dfa", lr_w=1.0, lr_v=1.0, feedback_noise=1.0, feedback_noise_mode=mode)
    sim, ode, initial, times = _compare(dyn, 3, 2)
    assert _excess(sim, ode) <= 0
    # The same comparison rejects the ODE without the noise term: the tolerance has power at this size.
    noiseless = integrate(dataclasses.replace(dyn, feedback_noise=0.0), initial, times)
    assert _excess(sim, noiseless) > 1.0


def test_bad_arguments_are_refused_with_a_message() -> None:
    weights = draw_weights(2, 1, 20, seeds=0)
    with pytest.raises(ValueError, match=r"times must be whole numbers of steps k/N with N = 20"):
        simulate(weights, Dynamics(), np.array([0.0, 0.01]), seed=0)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        simulate(weights, Dynamics(), np.array([0.5, 0.5]), seed=0)
    with pytest.raises(ValueError, match="times must be a non-empty 1-D array of finite times >= 0"):
        simulate(weights, Dynamics(), np.array([-1.0]), seed=0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
        simulate(weights, Dynamics(), np.array([0.0]), seed=-1)
    with pytest.raises(ValueError, match=r"chunk must be an integer >= 1, got 0"):
        simulate(weights, Dynamics(), np.array([0.0]), seed=0, chunk=0)
    with pytest.raises(ValueError, match=r"threads must be an integer >= 1, got 0"):
        simulate(weights, Dynamics(), np.array([0.0]), seed=0, threads=0)
    with pytest.raises(TypeError, match="weights must be a Weights, got OrderParameters"):
        simulate(OrderParameters.from_weights(weights), Dynamics(), np.array([0.0]), seed=0)
    with pytest.raises(TypeError, match="dynamics must be a Dynamics, got str"):
        simulate(weights, "dfa", np.array([0.0]), seed=0)
