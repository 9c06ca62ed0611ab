"""The state of the teacher–student model: finite-``N`` weights and the order parameters they define.

``Weights`` holds one realisation per replica (student, teacher, second layers, feedback vector); the simulation
evolves it. ``OrderParameters`` holds the overlaps ``Q = w wᵀ/N``, ``R = w w*ᵀ/N``, ``T = w* w*ᵀ/N`` and the
second layers; the ODEs evolve it. Both carry any leading batch axes (replicas, and time in a trajectory), so that
"ODE and simulation from the same initial conditions" is ``OrderParameters.from_weights(weights)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from optodfa.seeding import check_seed, numpy_generator
from optodfa.theory.integrals import covariance, generalisation_error
from optodfa.validation import check_int, check_real

# Stream labels under each seed, so that teacher, feedback and student never share random numbers.
_STUDENT, _TEACHER, _FEEDBACK = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Weights:
    """One finite-``N`` network per replica (``S`` replicas).

    Attributes:
        w: student first layer, (S, K, N).
        w_teacher: teacher first layer, (S, M, N).
        v: student second layer, (S, K).
        A: teacher second layer, (S, M).
        b: feedback vector of DFA (also the reference of ``cos(v, b)`` under BP), (S, K).
    """

    w: np.ndarray
    w_teacher: np.ndarray
    v: np.ndarray
    A: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.w) != 3 or np.ndim(self.w_teacher) != 3:
            raise ValueError(f"w and w_teacher must have shapes (S, K, N) and (S, M, N), got {np.shape(self.w)} "
                             f"and {np.shape(self.w_teacher)}")
        S, K, N = np.shape(self.w)
        M = np.shape(self.w_teacher)[1]
        for name, want in {"w_teacher": (S, M, N), "v": (S, K), "A": (S, M), "b": (S, K)}.items():
            got = np.shape(getattr(self, name))
            if got != want:
                raise ValueError(f"{name} must have shape {want} to match w of shape {(S, K, N)}, got {got}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(S, K, M, N)``: replicas, student units, teacher units, input dimension."""
        S, K, N = self.w.shape
        return S, K, self.w_teacher.shape[1], N


@dataclasses.dataclass(frozen=True)
class OrderParameters:
    """Overlaps and second layers, with any leading batch shape ``(...)``.

    Attributes:
        Q: student–student overlaps ``w_k·w_l/N``, (..., K, K).
        R: student–teacher overlaps ``w_k·w*_m/N``, (..., K, M).
        T: teacher–teacher overlaps ``w*_m·w*_n/N``, (..., M, M); constant in time.
        v: student second layer, (..., K).
        A: teacher second layer, (..., M); constant.
        b: feedback vector, (..., K); constant.
    """

    Q: np.ndarray
    R: np.ndarray
    T: np.ndarray
    v: np.ndarray
    A: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        for name in ("Q", "R", "T", "v", "A", "b"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))
        K, M = self.v.shape[-1] if self.v.ndim else 0, self.A.shape[-1] if self.A.ndim else 0
        wanted = {"Q": (K, K), "R": (K, M), "T": (M, M), "v": (K,), "A": (M,), "b": (K,)}
        batch = self.v.shape[:-1]
        for name, tail in wanted.items():
            got = getattr(self, name).shape
            if got != (*batch, *tail) or K == 0 or M == 0:
                raise ValueError(f"{name} must have shape {(*batch, *tail)} (batch {batch}, K = {K}, M = {M}), "
                                 f"got {got}")
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must hold finite numbers, got NaN or inf")

    @classmethod
    def from_weights(cls, weights: Weights) -> OrderParameters:
        """The exact overlaps of finite-``N`` weights; batch shape ``(S,)``."""
        N = weights.w.shape[-1]
        w, ws = weights.w, weights.w_teacher
        return cls(Q=w @ np.swapaxes(w, -1, -2) / N, R=w @ np.swapaxes(ws, -1, -2) / N,
                   T=ws @ np.swapaxes(ws, -1, -2) / N, v=weights.v, A=weights.A, b=weights.b)

    @property
    def K(self) -> int:
        return self.v.shape[-1]

    @property
    def M(self) -> int:
        return self.A.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.v.shape[:-1]

    def covariance(self) -> np.ndarray:
        """``C = [[Q, R], [Rᵀ, T]]`` of the pre-activations, (..., K+M, K+M)."""
        return covariance(self.Q, self.R, self.T)

    def generalisation_error(self, activation: str = "erf") -> np.ndarray:
        """``ε_g = ½ E[(y − ŷ)²]`` (teacher output noise excluded), (...)."""
        return generalisation_error(self.Q, self.R, self.T, self.v, self.A, activation)

    def cos_vb(self) -> np.ndarray:
        """Cosine between the second layer ``v`` and the feedback vector ``b``, (...); 0 where ``v = 0``."""
        norm = np.linalg.norm(self.v, axis=-1) * np.linalg.norm(self.b, axis=-1)
        dot = np.sum(self.v * self.b, axis=-1)
        return np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0)

    def sign_agreement(self) -> np.ndarray:
        """Fraction of units whose ``v_k`` has the sign of ``b_k``, (...)."""
        return np.mean(np.sign(self.v) == np.sign(self.b), axis=-1)

    def index(self, key: int | tuple | slice) -> OrderParameters:
        """The same parameters indexed on the batch axes (``key`` must not touch the unit axes)."""
        return OrderParameters(Q=self.Q[key], R=self.R[key], T=self.T[key], v=self.v[key], A=self.A[key],
                               b=self.b[key])


def draw_weights(K: int, M: int, N: int, *, seeds: int | Sequence[int], teacher_seed: int = 0,
                 feedback_seed: int = 0, init_w: float = 1e-3 ** 0.5, init_v: float = 1e-3 ** 0.5,
                 teacher_A: float = 1.0, teacher_orthonormal: bool = False) -> Weights:
    """Draw the initial weights of ``S = len(seeds)`` replicas.

    Each replica's student comes from its own seed: ``w_k ~ N(0, init_w² I_N)`` (so ``Q ≈ init_w² I``) and
    ``v_k ~ N(0, init_v²)``. The teacher (``w*_m ~ N(0, I_N)``, so ``T ≈ I``, and ``A_m = teacher_A``) and the
    feedback vector (``b_k ~ N(0, 1)``) come from ``teacher_seed`` and ``feedback_seed`` and are shared by all
    replicas, as when runs differ only in their initialisation. ``teacher_orthonormal`` rescales and orthogonalises
    the teacher vectors so that ``T = I`` exactly. Repeating a seed repeats the replica.

    Returns weights of shapes ``w`` (S, K, N), ``w_teacher`` (S, M, N), ``v`` (S, K), ``A`` (S, M), ``b`` (S, K).
    """
    K = check_int("K", K, low=1)
    M = check_int("M", M, low=1)
    N = check_int("N", N, low=max(K, M))
    seed_list = [seeds] if isinstance(seeds, int | np.integer) else list(seeds)
    if not seed_list:
        raise ValueError("seeds must name at least one replica, got an empty sequence")
    seed_list = [check_seed(s, "seeds") for s in seed_list]
    teacher_seed = check_seed(teacher_seed, "teacher_seed")
    feedback_seed = check_seed(feedback_seed, "feedback_seed")
    init_w = check_real("init_w", init_w, low=0.0)
    init_v = check_real("init_v", init_v, low=0.0)
    teacher_A = check_real("teacher_A", teacher_A)
    if not isinstance(teacher_orthonormal, bool | np.bool_):
        raise TypeError(f"teacher_orthonormal must be a bool, got {teacher_orthonormal!r} "
                        f"({type(teacher_orthonormal).__name__})")

    teacher_rng = numpy_generator(teacher_seed, _TEACHER)
    w_teacher = teacher_rng.standard_normal((M, N))
    if teacher_orthonormal:
        w_teacher = np.linalg.qr(w_teacher.T)[0].T * np.sqrt(N)
    b = numpy_generator(feedback_seed, _FEEDBACK).standard_normal(K)
    w = np.empty((len(seed_list), K, N))
    v = np.empty((len(seed_list), K))
    for r, seed in enumerate(seed_list):
        rng = numpy_generator(seed, _STUDENT)
        w[r] = init_w * rng.standard_normal((K, N))
        v[r] = init_v * rng.standard_normal(K)
    S = len(seed_list)
    return Weights(w=w, w_teacher=np.broadcast_to(w_teacher, (S, M, N)).copy(), v=v,
                   A=np.full((S, M), teacher_A), b=np.broadcast_to(b, (S, K)).copy())


def initial_order_parameters(K: int, M: int, N: int, *, seeds: int | Sequence[int], **kwargs: object
                             ) -> OrderParameters:
    """Initial order parameters drawn like the simulation's: those of :func:`draw_weights` at size ``N``.

    Finite ``N`` matters: the ``O(1/√N)`` asymmetries of a random start are what lets units specialise; from the
    exactly symmetric ``N → ∞`` start the ODE stays on its symmetric plateau forever.
    """
    return OrderParameters.from_weights(draw_weights(K, M, N, seeds=seeds, **kwargs))  # type: ignore[arg-type]


