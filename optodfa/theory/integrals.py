"""Closed-form Gaussian averages of the teacher–student ODEs (SPEC §5) and the generalisation error.

The pre-activations of all units, students first then teachers, ``z = (λ_1 … λ_K, ν_1 … ν_M)``, are jointly
Gaussian with covariance ``C = [[Q, R], [Rᵀ, T]]`` of shape ``(P, P)``, ``P = K + M``. With ``g`` the activation
and ``g'`` its derivative the averages are

* ``I2(a, b)       = E[g(z_a) g(z_b)]``
* ``I3(a, b, c)    = E[g'(z_a) z_b g(z_c)]``
* ``I4(a, b, c, d) = E[g'(z_a) g'(z_b) g(z_c) g(z_d)]``
* ``J2(a, b)       = E[g'(z_a) g'(z_b)]``

for ``g(u) = erf(u/√2)`` (Saad & Solla's closed forms) and ``g(u) = u``. Every function computes all index
tuples at once with numpy broadcasting and accepts any leading batch axes on ``C``.
"""

from __future__ import annotations

import numpy as np

from optodfa.validation import check_choice, check_int

ACTIVATIONS = ("erf", "linear")

_TWO_OVER_PI = 2.0 / np.pi
_FOUR_OVER_PI2 = 4.0 / np.pi**2


def covariance(Q: np.ndarray, R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``C = [[Q, R], [Rᵀ, T]]``: ``Q`` (..., K, K), ``R`` (..., K, M), ``T`` (..., M, M) → (..., K+M, K+M)."""
    Q, R, T = np.asarray(Q, float), np.asarray(R, float), np.asarray(T, float)
    batch = np.broadcast_shapes(Q.shape[:-2], R.shape[:-2], T.shape[:-2])
    K, M = Q.shape[-1], T.shape[-1]
    if Q.shape[-2:] != (K, K) or R.shape[-2:] != (K, M) or T.shape[-2:] != (M, M):
        raise ValueError(f"Q, R, T must have shapes (..., K, K), (..., K, M), (..., M, M); got "
                         f"{Q.shape}, {R.shape}, {T.shape}")
    C = np.empty((*batch, K + M, K + M))
    C[..., :K, :K] = Q
    C[..., :K, K:] = R
    C[..., K:, :K] = np.swapaxes(R, -1, -2)
    C[..., K:, K:] = T
    return C


def i2(C: np.ndarray, activation: str = "erf") -> np.ndarray:
    """``I2(a, b) = E[g(z_a) g(z_b)]`` for all pairs: ``C`` (..., P, P) → (..., P, P)."""
    C, _ = _check(C, activation, None)
    return _i2(C, activation)


def i3(C: np.ndarray, activation: str = "erf", *, first: int | None = None) -> np.ndarray:
    """``I3(a, b, c) = E[g'(z_a) z_b g(z_c)]``: ``C`` (..., P, P) → (..., F, P, P).

    ``a`` runs over the first ``F = first`` units (the students, where only they carry ``g'``; default all ``P``).
    """
    C, F = _check(C, activation, first)
    if activation == "linear":
        return np.broadcast_to(C[..., None, :, :], (*C.shape[:-2], F, *C.shape[-2:])).copy()
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)
    daa = d[..., :F, None, None]
    Cab = C[..., :F, :, None]
    Cac = C[..., :F, None, :]
    Cbc = C[..., None, :, :]
    lam3 = daa * d[..., None, None, :] - Cac**2
    return _TWO_OVER_PI * (Cbc * daa - Cab * Cac) / (daa * np.sqrt(lam3))


def i4(C: np.ndarray, activation: str = "erf", *, first: int | None = None) -> np.ndarray:
    """``I4(a, b, c, d) = E[g'(z_a) g'(z_b) g(z_c) g(z_d)]``: ``C`` (..., P, P) → (..., F, F, P, P).

    ``a`` and ``b`` run over the first ``F = first`` units (default all ``P``).
    """
    C, F = _check(C, activation, first)
    return _i4(C, activation, F)


def j2(C: np.ndarray, activation: str = "erf") -> np.ndarray:
    """``J2(a, b) = E[g'(z_a) g'(z_b)]`` for all pairs: ``C`` (..., P, P) → (..., P, P)."""
    C, _ = _check(C, activation, None)
    return _j2(C, activation)


def generalisation_error(Q: np.ndarray, R: np.ndarray, T: np.ndarray, v: np.ndarray, A: np.ndarray,
                         activation: str = "erf") -> np.ndarray:
    """``ε_g = ½ E[(y − ŷ)²]`` over a fresh input, teacher output noise excluded.

    Shapes: ``Q`` (..., K, K), ``R`` (..., K, M), ``T`` (..., M, M), ``v`` (..., K), ``A`` (..., M) → (...).
    ``ε_g = ½ uᵀ I2 u`` with ``u = (−v, A)``; the ½ is the convention of SPEC §5, so a simulation's mean squared
    error is ``2 ε_g``.
    """
    check_choice("activation", activation, ACTIVATIONS)
    C = covariance(Q, R, T)
    return _generalisation_error(C, error_readout(v, A), activation)


def error_readout(v: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``u = (−v, A)``, so that the error is ``ε = y − ŷ = Σ_p u_p g(z_p)``: (..., K), (..., M) → (..., K+M)."""
    v, A = np.asarray(v, float), np.asarray(A, float)
    batch = np.broadcast_shapes(v.shape[:-1], A.shape[:-1])
    return np.concatenate([np.broadcast_to(-v, (*batch, v.shape[-1])),
                           np.broadcast_to(A, (*batch, A.shape[-1]))], axis=-1)


def _generalisation_error(C: np.ndarray, u: np.ndarray, activation: str) -> np.ndarray:
    return 0.5 * np.einsum("...p,...pq,...q->...", u, _i2(C, activation), u)


# The private versions skip validation: the ODE right-hand side calls them thousands of times.

def _i2(C: np.ndarray, activation: str) -> np.ndarray:
    if activation == "linear":
        return C.copy()
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)
    return _TWO_OVER_PI * np.arcsin(C / np.sqrt(d[..., :, None] * d[..., None, :]))


def _j2(C: np.ndarray, activation: str) -> np.ndarray:
    if activation == "linear":
        return np.ones_like(C)
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)
    return _TWO_OVER_PI / np.sqrt(d[..., :, None] * d[..., None, :] - C**2)


def _i4(C: np.ndarray, activation: str, F: int) -> np.ndarray:
    if activation == "linear":
        return np.broadcast_to(C[..., None, None, :, :], (*C.shape[:-2], F, F, *C.shape[-2:])).copy()
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)
    da = d[..., :F, None, None, None]
    db = d[..., None, :F, None, None]
    dc = d[..., None, None, :, None]
    dd = d[..., None, None, None, :]
    Cab = C[..., :F, :F, None, None]
    Cac = C[..., :F, None, :, None]
    Cad = C[..., :F, None, None, :]
    Cbc = C[..., None, :F, :, None]
    Cbd = C[..., None, :F, None, :]
    Ccd = C[..., None, None, :, :]
    lam4 = da * db - Cab**2
    lam0 = lam4 * Ccd - Cbc * Cbd * da - Cac * Cad * db + Cab * Cac * Cbd + Cab * Cad * Cbc
    lam1 = lam4 * dc - Cbc**2 * da - Cac**2 * db + 2.0 * Cab * Cac * Cbc
    lam2 = lam4 * dd - Cbd**2 * da - Cad**2 * db + 2.0 * Cab * Cad * Cbd
    return _FOUR_OVER_PI2 * np.arcsin(lam0 / np.sqrt(lam1 * lam2)) / np.sqrt(lam4)


def _check(C: np.ndarray, activation: str, first: int | None) -> tuple[np.ndarray, int]:
    check_choice("activation", activation, ACTIVATIONS)
    C = np.asarray(C, dtype=float)
    if C.ndim < 2 or C.shape[-1] != C.shape[-2]:
        raise ValueError(f"C must be a covariance matrix of shape (..., P, P), got shape {C.shape}")
    if not np.all(np.isfinite(C)):
        raise ValueError("C must hold finite numbers, got NaN or inf")
    if np.any(np.diagonal(C, axis1=-2, axis2=-1) < 0):
        raise ValueError("C must have a non-negative diagonal (variances), got a negative entry")
    P = C.shape[-1]
    F = P if first is None else check_int("first", first, low=1, high=P)
    return C, F
