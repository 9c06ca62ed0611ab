"""The ODEs of online learning in the teacher–student model, for BP and DFA (SPEC §5), and their integrators.

With ``u = (−v, A)`` (so that ``ε = Σ_p u_p g(z_p)``), feedback ``c = b`` (DFA) or ``c = v`` (BP), student
indices ``i, k`` and teacher index ``n``:

* ``dR_in/dt = η_w c_i D_i,K+n − η_w κ R_in``
* ``dQ_ik/dt = η_w (c_i D_ik + c_k D_ki) + η_w² S_ik − 2 η_w κ Q_ik``
* ``dv_i/dt  = η_v Σ_p u_p I2(i, p) − η_v κ v_i``

where ``D_ab = Σ_p u_p I3(a, b, p)`` and ``S_ik = E[f_i f_k g'(λ_i) g'(λ_k)]`` is the second moment of the delivered
feedback (:func:`optodfa.theory.noise.feedback_second_moment`), ``c_i c_k (Σ_pq u_p u_q I4(i, k, p, q) + σ² J2(i, k))``
for exact feedback. ``T``, ``A`` and ``b`` are constant. There is no ``η²`` term in ``dR``: ``w*`` does not move,
so ``ΔR`` is linear in the step.

Solvers are chosen by name from :data:`SOLVERS`: the adaptive ones of :func:`scipy.integrate.solve_ivp`, and
``"euler"``, fixed steps ``dt`` (``dt = 1/N`` is the classical scheme that mirrors one SGD step per ``1/N``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp
from scipy.sparse import block_diag

from optodfa.theory.dynamics import Dynamics
from optodfa.theory.integrals import covariance, error_readout
from optodfa.theory.noise import feedback_second_moment
from optodfa.theory.order_parameters import OrderParameters
from optodfa.theory.trajectory import Trajectory
from optodfa.validation import check_real

_TWO_OVER_PI = 2.0 / np.pi
_FOUR_OVER_PI2 = 4.0 / np.pi**2

Derivative = Callable[[float, np.ndarray], np.ndarray]


class IntegrationError(RuntimeError):
    """An ODE solver stopped before the last requested time, or its state became NaN or infinite."""


def derivatives(dynamics: Dynamics, state: OrderParameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dQ/dt, dR/dt, dv/dt)`` at ``state``, shapes (..., K, K), (..., K, M), (..., K)."""
    return _derivatives(dynamics, state.Q, state.R, state.v, state.T, state.A, state.b)


def _derivatives(dyn: Dynamics, Q: np.ndarray, R: np.ndarray, v: np.ndarray, T: np.ndarray, A: np.ndarray,
                 b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    K = v.shape[-1]
    C = covariance(Q, R, T)
    u = error_readout(v, A)
    if dyn.activation == "linear":
        # I2 = C, J2 = 1, and I3(a, b, c) = C_bc, I4(i, k, p, q) = C_pq do not depend on the student indices.
        i2_rows = C[..., :K, :]
        j2_students = np.ones((*C.shape[:-2], K, K))
        Cu = np.einsum("...bc,...c->...b", C, u)
        drift = np.broadcast_to(Cu[..., None, :], (*Cu.shape[:-1], K, Cu.shape[-1]))
        error_power = np.einsum("...p,...p->...", u, Cu)[..., None, None] * j2_students
    else:
        i2_rows, drift, j2_students, error_power = _erf_terms(C, u, K)
    if dyn.teacher_noise:
        error_power = error_power + dyn.teacher_noise**2 * j2_students
    c = b if dyn.algorithm == "dfa" else v
    second = feedback_second_moment(c, error_power, j2_students, s=dyn.noise_levels(K),
                                    mode=dyn.feedback_noise_mode)
    cross = c[..., :, None] * drift[..., :K]
    dQ = dyn.lr_w * (cross + np.swapaxes(cross, -1, -2)) + dyn.lr_w**2 * second
    dR = dyn.lr_w * c[..., :, None] * drift[..., K:]
    dv = dyn.lr_v * np.einsum("...ip,...p->...i", i2_rows, u)
    if dyn.weight_decay:
        dQ = dQ - 2.0 * dyn.lr_w * dyn.weight_decay * Q
        dR = dR - dyn.lr_w * dyn.weight_decay * R
        dv = dv - dyn.lr_v * dyn.weight_decay * v
    return dQ, dR, dv


def _erf_terms(C: np.ndarray, u: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The erf averages the right-hand side needs, contracted with ``u`` as soon as possible.

    Returns ``I2(i, p)`` (..., K, P); the drift ``D_ip = Σ_c u_c I3(i, p, c)`` (..., K, P); ``J2(i, k)``
    (..., K, K); and ``E[ε² g'(λ_i) g'(λ_k)] = Σ_pq u_p u_q I4(i, k, p, q)`` (..., K, K) — the closed forms of
    :mod:`optodfa.theory.integrals`, rearranged so that only one (K, K, P, P) array (the arcsin of I4) is built:

    * ``I3(a,b,c) = (2/π)[C_bc − C_ab C_ac/(1+C_aa)] / sqrt(Λ3(a,c))``, so with ``α_ac = u_c / sqrt(Λ3(a,c))``
      the drift is ``(2/π)[(α C)_ab − C_ab/(1+C_aa) Σ_c α_ac C_ac]``, two matrix products;
    * in I4, ``Λ1`` depends on ``(a, b, c)`` only and ``Λ2`` is the same function of ``d``, so
      ``sqrt(Λ1 Λ2)`` is an outer product of one (K, K, P) array; ``Λ0`` is built from the outer product
      ``O_abcd = C_ac C_bd`` and its diagonal ``O_bbcd``.
    """
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)                   # 1 + C_pp, (..., P)
    X = C[..., :K, :]                                              # C_ap, students first, (..., K, P)
    dK = d[..., :K]
    norm2 = dK[..., :, None] * d[..., None, :]                     # (1+C_aa)(1+C_pp), (..., K, P)
    i2_rows = _TWO_OVER_PI * np.arcsin(X / np.sqrt(norm2))
    alpha = u[..., None, :] / np.sqrt(norm2 - X**2)                # u_c / sqrt(Λ3(a, c))
    drift = _TWO_OVER_PI * (alpha @ C - X / dK[..., :, None] * np.sum(alpha * X, axis=-1, keepdims=True))
    Cs = X[..., :K]                                                # C_ab between students, (..., K, K)
    lam4 = dK[..., :, None] * dK[..., None, :] - Cs**2
    j2_students = _TWO_OVER_PI / np.sqrt(lam4)
    Xa = X[..., :, None, :]                                        # C_ac as (a, ·, c)
    Xb = X[..., None, :, :]                                        # C_bc as (·, b, c)
    lam1 = (lam4[..., None] * d[..., None, None, :] - Xb**2 * dK[..., :, None, None] - Xa**2 * dK[..., None, :, None]
            + 2.0 * Cs[..., None] * Xa * Xb)                       # Λ1(a, b, c), (..., K, K, P)
    root = np.sqrt(lam1)
    outer = X[..., :, None, :, None] * X[..., None, :, None, :]    # C_ac C_bd, (..., K, K, P, P)
    diag = X[..., :, :, None] * X[..., :, None, :]                 # C_bc C_bd, (..., K, P, P)
    lam0 = (lam4[..., None, None] * C[..., None, None, :, :] - dK[..., :, None, None, None] * diag[..., None, :, :, :]
            - dK[..., None, :, None, None] * diag[..., :, None, :, :]
            + Cs[..., None, None] * (outer + np.swapaxes(outer, -1, -2)))
    angles = np.arcsin(lam0 / (root[..., :, None] * root[..., None, :]))
    error_power = _FOUR_OVER_PI2 / np.sqrt(lam4) * np.einsum("...ikpq,...p,...q->...ik", angles, u, u)
    return i2_rows, drift, j2_students, error_power


class _Packing:
    """Flat state vector ``[Q, R, v]`` per batch element ↔ arrays; the fixed ``T, A, b`` ride along."""

    def __init__(self, state: OrderParameters) -> None:
        self.batch = state.batch_shape
        self.K, self.M = state.K, state.M
        self.T, self.A, self.b = state.T, state.A, state.b
        self.size = self.K * self.K + self.K * self.M + self.K

    def pack(self, Q: np.ndarray, R: np.ndarray, v: np.ndarray) -> np.ndarray:
        flat = (*self.batch, -1)
        return np.concatenate([Q.reshape(flat), R.reshape(flat), v.reshape(flat)], axis=-1).ravel()

    def unpack(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K, M = self.K, self.M
        y = y.reshape(*self.batch, self.size)
        Q = y[..., : K * K].reshape(*self.batch, K, K)
        R = y[..., K * K : K * K + K * M].reshape(*self.batch, K, M)
        return Q, R, y[..., K * K + K * M :]

    def states(self, ys: np.ndarray) -> OrderParameters:
        """Rows of ``ys`` (n_t, size·B) → order parameters with batch shape (n_t, *batch)."""
        n = ys.shape[0]
        K, M = self.K, self.M
        y = ys.reshape(n, *self.batch, self.size)
        Q = y[..., : K * K].reshape(n, *self.batch, K, K)
        Q = 0.5 * (Q + np.swapaxes(Q, -1, -2))  # symmetric by construction; remove round-off drift
        R = y[..., K * K : K * K + K * M].reshape(n, *self.batch, K, M)
        def fixed(x: np.ndarray) -> np.ndarray:
            return np.broadcast_to(x, (n, *x.shape)).copy()
        return OrderParameters(Q=Q, R=R, T=fixed(self.T), v=y[..., K * K + K * M :].copy(), A=fixed(self.A),
                               b=fixed(self.b))


def _scipy_solver(method: str) -> Callable[..., tuple[np.ndarray, dict[str, Any]]]:
    def solve(f: Derivative, y0: np.ndarray, times: np.ndarray, *, rtol: float, atol: float,
              dt: float | None, block: int) -> tuple[np.ndarray, dict[str, Any]]:
        if dt is not None:
            raise ValueError(f"dt is for the fixed-step solver 'euler'; solver {method.lower()!r} is adaptive "
                             f"(set rtol and atol instead), got dt={dt}")
        # Replicas do not interact: the Jacobian is block diagonal. Telling the implicit solvers so makes their
        # finite-difference Jacobian cost ~2 blocks of evaluations instead of one per state variable
        # (measured: 32 replicas of K = 6, M = 2 over t = 500, LSODA, loaded 2-core machine: 59 s -> 7-11 s).
        options: dict[str, Any] = {}
        if y0.size > block and method == "LSODA":
            options.update(lband=block - 1, uband=block - 1)
        elif y0.size > block and method in ("Radau", "BDF"):
            options["jac_sparsity"] = block_diag([np.ones((block, block))] * (y0.size // block), format="csc")
        result = solve_ivp(f, (times[0], times[-1]), y0, method=method, t_eval=times, rtol=rtol, atol=atol,
                           **options)
        if not result.success:
            reached = result.t[-1] if result.t.size else times[0]
            raise IntegrationError(f"solver {method.lower()!r} failed at t = {reached:.6g} (asked for "
                                   f"t = {times[-1]:.6g}): {result.message}")
        return result.y.T, {"nfev": int(result.nfev), "njev": int(result.njev)}
    solve.__doc__ = f"Adaptive scipy.integrate.solve_ivp method {method!r}."
    return solve


def _euler(f: Derivative, y0: np.ndarray, times: np.ndarray, *, rtol: float, atol: float,
           dt: float | None, block: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Fixed steps of ``dt`` (a last shorter step lands on each requested time); ``dt = 1/N`` is classical."""
    del rtol, atol, block  # fixed step: no error control, no Jacobian
    if dt is None:
        raise ValueError("dt must be given for the fixed-step solver 'euler' (the classical scheme uses dt = 1/N)")
    out = np.empty((times.size, y0.size))
    out[0] = y = y0.copy()
    t, nfev = float(times[0]), 0
    for j, target in enumerate(times[1:], start=1):
        # A tolerance of dt·1e-9 keeps round-off from adding a spurious tiny step at each output time.
        while t < target - dt * 1e-9:
            h = min(dt, target - t)
            y = y + h * f(t, y)
            t += h
            nfev += 1
        t = float(target)
        if not np.all(np.isfinite(y)):
            raise IntegrationError(f"solver 'euler' failed at t = {t:.6g} (asked for t = {times[-1]:.6g}): "
                                   f"the state became NaN or infinite; try a smaller dt or learning rate")
        out[j] = y
    return out, {"nfev": nfev, "njev": 0}


SOLVERS: dict[str, Callable[..., tuple[np.ndarray, dict[str, Any]]]] = {
    "rk45": _scipy_solver("RK45"),
    "rk23": _scipy_solver("RK23"),
    "dop853": _scipy_solver("DOP853"),
    "lsoda": _scipy_solver("LSODA"),
    "radau": _scipy_solver("Radau"),
    "bdf": _scipy_solver("BDF"),
    "euler": _euler,
}


def integrate(dynamics: Dynamics, initial: OrderParameters, times: np.ndarray, *, solver: str = "lsoda",
              rtol: float = 1e-6, atol: float = 1e-9, dt: float | None = None) -> Trajectory:
    """Integrate the ODEs from ``initial`` (taken at ``times[0]``) and return the state at every time.

    Args:
        dynamics: the learning rule (algorithm, activation, learning rates, noise, weight decay).
        initial: order parameters with any batch shape ``(*batch,)``; a batch is integrated as one system
            (one adaptive step size for all), so replicas cost little more than one.
        times: increasing output times (n_t,), in units of ``N`` SGD steps.
        solver: a key of :data:`SOLVERS`. LSODA by default: it switches to a stiff method once the student has
            converged, where RK45 is held to small steps (5-10x more evaluations over t = 5000, measured).
        rtol, atol: tolerances of the adaptive solvers.
        dt: step of ``"euler"`` (required there, refused elsewhere).

    Returns:
        a :class:`Trajectory` with batch shape ``(n_t, *batch)``; ``info`` holds solver, ``nfev`` and ``wall_s``.

    Raises:
        IntegrationError: the solver failed (its message and the time reached are given) or the state blew up.
    """
    if not isinstance(dynamics, Dynamics):
        raise TypeError(f"dynamics must be a Dynamics, got {type(dynamics).__name__}")
    if not isinstance(initial, OrderParameters):
        raise TypeError(f"initial must be an OrderParameters, got {type(initial).__name__}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise ValueError(f"times must be a strictly increasing 1-D array of at least 2 finite times, "
                         f"got shape {times.shape}")
    rtol = check_real("rtol", rtol, low=0.0, low_open=True)
    atol = check_real("atol", atol, low=0.0, low_open=True)
    if dt is not None:
        dt = check_real("dt", dt, low=0.0, low_open=True)

    packing = _Packing(initial)
    reached = [float(times[0])]

    def f(t: float, y: np.ndarray) -> np.ndarray:
        reached[0] = t
        Q, R, v = packing.unpack(y)
        return packing.pack(*_derivatives(dynamics, Q, R, v, packing.T, packing.A, packing.b))

    start = time.perf_counter()
    # Overflow or an arcsin out of range means the state left the region where the equations hold; stop there
    # rather than hand back NaN.
    with np.errstate(invalid="raise", divide="raise", over="raise"):
        try:
            ys, info = SOLVERS[solver](f, packing.pack(initial.Q, initial.R, initial.v), times, rtol=rtol,
                                       atol=atol, dt=dt, block=packing.size)
        except FloatingPointError as error:
            raise IntegrationError(f"solver {solver!r} failed at t = {reached[0]:.6g} (asked for "
                                   f"t = {times[-1]:.6g}): the state left the domain of the equations "
                                   f"({error}); try a smaller learning rate or step") from error
    wall = time.perf_counter() - start
    if not np.all(np.isfinite(ys)):
        raise IntegrationError(f"solver {solver!r} returned NaN or infinite order parameters")
    info.update(solver=solver, wall_s=wall, rtol=rtol, atol=atol, dt=dt)
    return Trajectory(t=times.copy(), state=packing.states(ys), activation=dynamics.activation, info=info)
