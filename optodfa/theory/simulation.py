"""Online SGD in the teacher–student model, for BP and DFA, many replicas at once (SPEC §5).

Each step draws a fresh input ``x ~ N(0, I_N)`` per replica and applies the rule of
:mod:`optodfa.theory.dynamics` to the finite-``N`` weights. The ``S`` replicas are one batch of arrays, so several
seeds cost little more than one. Order parameters are measured exactly from the weights at the requested times,
and ``ε_g`` from them by its closed form (no test-set noise).

Speed. Steps are taken a block of ``L`` inputs ``X`` (S, L, N) at a time. Within a block the first layer is
``w_j = w_0 + Σ_{i<j} c_i x_i``, so the student's field at step ``j`` is exactly
``λ_j = w_0·x_j/√N + Σ_{i<j} c_i (x_i·x_j)/√N``: the ``O(N)`` work (``X w_0ᵀ``, the Gram matrix ``X Xᵀ``, and
the update ``w_L = w_0 + cᵀ X``) is done in three batched products per block, and only an ``O(S·L·K)`` loop runs
step by step. The weights are still updated and measured in full; nothing is approximated. It runs on the CPU
(numpy): the sequential loop works on (S, K) arrays, far too small for a GPU to help.
Feedback from outside. ``simulate(..., feedback=F)`` lets a callable deliver the DFA feedback: at every step it
receives the errors ``ε`` of all replicas (S,) and returns the feedback vectors ``f`` (S, K) that reach the hidden
units, e.g. ``b ε`` computed through a feedback device (:mod:`optodfa.feedback_noise` adapts a projector). It is
called once per SGD step, in order, since each error depends on the feedback of the steps before; the rest of
the rule is unchanged. This module knows nothing of devices: anything with that call signature will do.
Random numbers come from torch's generator in single precision and are cast to double (4x faster on a CPU than
double-precision draws; the rounding, 6e-8 relative, is far below every effect measured here).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from scipy.special import erf
from threadpoolctl import threadpool_limits

from optodfa.seeding import check_seed, torch_generator
from optodfa.theory.dynamics import Dynamics
from optodfa.theory.order_parameters import OrderParameters, Weights
from optodfa.theory.timegrid import steps_at
from optodfa.theory.trajectory import Trajectory
from optodfa.validation import check_int

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)

# Stream labels under the simulation seed; replica r draws from (seed, label, r) whatever the batch holds.
_INPUTS, _LABEL_NOISE, _FEEDBACK_NOISE = 1, 2, 3

Feedback = Callable[[np.ndarray], np.ndarray]
"""Errors of one step (S,) → delivered DFA feedback (S, K)."""


def simulate(weights: Weights, dynamics: Dynamics, times: np.ndarray, *, seed: int, chunk: int = 16,
             threads: int | None = 1, feedback: Feedback | None = None) -> Trajectory:
    """Run online SGD from ``weights`` and record the order parameters at ``times``.

    Args:
        weights: initial networks of ``S`` replicas (see :func:`~optodfa.theory.order_parameters.draw_weights`);
            they are copied, not changed.
        dynamics: the learning rule; the same object drives the ODEs.
        times: increasing times (n_t,), whole numbers of steps ``k/N`` (``log_time_grid(..., N=N)`` makes them).
        seed: root of the input, label-noise and feedback-noise streams; replica ``r`` uses sub-streams
            labelled ``r``, so a replica's run does not depend on how many others share the batch.
        chunk: steps per block of inputs ``L`` (memory ``S·L·N`` numbers; the Gram matrix costs ``S·L²·N``).
            The random stream depends on ``seed`` and ``chunk``, not on ``times``.
        threads: BLAS and torch threads during the run (``None`` leaves them alone). One by default: the
            products are small, and multi-threaded BLAS ran 10 to 1000 times slower on a shared 2-core machine.
        feedback: DFA only: a callable taking the errors of one step (S,) and returning the delivered feedback
            (S, K) in place of ``b ε`` (see the module docstring); ``dynamics.feedback_noise`` must then be 0,
            since the callable brings its own noise. ``weights.b`` is still the reference of ``cos(v, b)``.

    Returns:
        a :class:`Trajectory` with batch shape ``(n_t, S)``; ``info`` holds ``N``, ``steps``, ``seed``, ``wall_s``.
    """
    if not isinstance(weights, Weights):
        raise TypeError(f"weights must be a Weights, got {type(weights).__name__}")
    if not isinstance(dynamics, Dynamics):
        raise TypeError(f"dynamics must be a Dynamics, got {type(dynamics).__name__}")
    seed = check_seed(seed)
    chunk = check_int("chunk", chunk, low=1)
    N = weights.shape[3]
    steps = steps_at(times, N)

    if threads is not None:
        threads = check_int("threads", threads, low=1)
    if feedback is not None:
        if not callable(feedback):
            raise TypeError(f"feedback must be a callable (errors (S,) -> feedback (S, K)), "
                            f"got {type(feedback).__name__}")
        if dynamics.algorithm != "dfa":
            raise ValueError(f"feedback is the DFA feedback; it cannot drive algorithm {dynamics.algorithm!r}")
        if dynamics.noisy:
            raise ValueError("feedback brings its own noise: dynamics.feedback_noise must be 0 when a feedback "
                             f"callable is given, got {dynamics.feedback_noise}")
    run = _Run(weights, dynamics, seed, chunk, feedback)
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start = time.perf_counter()
    with _thread_limit(threads):
        step = 0
        for target in steps:
            while step < target:
                length = int(min(run.steps_left_in_block() or chunk, target - step))
                run.advance(length)
                step += length
            records.append(run.measure())
    wall = time.perf_counter() - start

    Q, R, v = (np.stack(parts) for parts in zip(*records, strict=True))
    n_t = steps.size
    T = run.w_teacher @ np.swapaxes(run.w_teacher, 1, 2) / N

    def fixed(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, (n_t, *x.shape)).copy()

    state = OrderParameters(Q=Q, R=R, T=fixed(T), v=v, A=fixed(weights.A), b=fixed(weights.b))
    info = {"N": N, "steps": steps, "seed": seed, "wall_s": wall, "chunk": chunk}
    return Trajectory(t=steps / N, state=state, activation=dynamics.activation, info=info)


@contextlib.contextmanager
def _thread_limit(threads: int | None) -> Iterator[None]:
    """Limit BLAS and torch threads inside the block and restore them after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)


class _Run:
    """The mutable state of one simulation: weights of all replicas, their random streams, unused inputs."""

    def __init__(self, weights: Weights, dynamics: Dynamics, seed: int, block: int,
                 feedback: Feedback | None = None) -> None:
        S, K, _, N = weights.shape
        self.feedback = feedback
        self.levels = dynamics.noise_levels(K)
        self.S, self.K, self.N, self.block = S, K, N, block
        self.dyn = dynamics
        self.w = np.array(weights.w, dtype=float)              # copies: the run updates them in place
        self.w_teacher = np.array(weights.w_teacher, dtype=float)
        self.v = np.array(weights.v, dtype=float)
        self.A = np.asarray(weights.A, dtype=float)
        self.b = np.asarray(weights.b, dtype=float)
        self.generators = {label: [torch_generator(seed, label, r) for r in range(S)]
                           for label in (_INPUTS, _LABEL_NOISE, _FEEDBACK_NOISE)}
        self.decay_w = 1.0 - dynamics.lr_w * dynamics.weight_decay / N
        self.decay_v = 1.0 - dynamics.lr_v * dynamics.weight_decay / N
        self.used = block                                       # position in the current block of inputs

    def normal(self, label: int, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals (S, *shape), replica r from its own stream."""
        out = torch.empty((self.S, *shape), dtype=torch.float32)
        for r, generator in enumerate(self.generators[label]):
            torch.randn(shape, generator=generator, out=out[r])
        return out.numpy().astype(float)

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, N = self.w, self.N
        return (w @ np.swapaxes(w, 1, 2) / N, w @ np.swapaxes(self.w_teacher, 1, 2) / N, self.v.copy())

    def steps_left_in_block(self) -> int:
        return self.block - self.used

    def _refill(self) -> None:
        """Draw the next block of inputs, labels and feedback noise.

        Always whole blocks, so the random stream depends on the seed and the block size only, not on where
        the time grid cuts the run.
        """
        dyn, L = self.dyn, self.block
        self.X = self.normal(_INPUTS, (L, self.N))                                  # (S, L, N)
        teacher = self.X @ np.swapaxes(self.w_teacher, 1, 2) / math.sqrt(self.N)   # ν, (S, L, M)
        g_teacher = erf(teacher * _INV_SQRT_2) if dyn.activation == "erf" else teacher
        self.labels = (g_teacher * self.A[:, None, :]).sum(-1)                     # (S, L)
        if dyn.teacher_noise:
            self.labels += dyn.teacher_noise * self.normal(_LABEL_NOISE, (L,))
        self.noise = self.levels * self.normal(_FEEDBACK_NOISE, (L, self.K)) if dyn.noisy else None
        self.used = 0

    def advance(self, L: int) -> None:
        """Take ``L`` SGD steps, no more than the block holds (``steps_left_in_block``, or a fresh block)."""
        if self.used == self.block:
            self._refill()
        assert L <= self.block - self.used, "advance past the end of the block"
        dyn, N, K = self.dyn, self.N, self.K
        part = slice(self.used, self.used + L)
        X, labels = self.X[:, part], self.labels[:, part]
        noise = None if self.noise is None else self.noise[:, part]
        self.used += L
        erf_act = dyn.activation == "erf"
        scale = 1.0 / math.sqrt(N)
        # fields[:, j] accumulates λ_j; with decay d, w_j = d^j (w_0 + Σ_{i<j} d^{-(i+1)} c_i x_i).
        fields = X @ np.swapaxes(self.w, 1, 2) * scale                            # (S, L, K)
        gram = dyn.lr_w * (X @ np.swapaxes(X, 1, 2)) / N                          # η_w x_i·x_j / N, (S, L, L)
        d = self.decay_w
        powers = d ** np.arange(L + 1) if d != 1.0 else None
        coefficients = np.empty((self.S, L, K))                                   # f g' d^{-(i+1)}, (S, L, K)
        v, b, dfa, additive = self.v, self.b, dyn.algorithm == "dfa", dyn.feedback_noise_mode == "additive"
        lr_v_step = dyn.lr_v / N
        for j in range(L):
            lam = fields[:, j] if powers is None else powers[j] * fields[:, j]
            if erf_act:
                g = erf(lam * _INV_SQRT_2)
                g_prime = _SQRT_2_OVER_PI * np.exp(-0.5 * lam * lam)
            else:
                g, g_prime = lam, 1.0
            error = labels[:, j] - np.einsum("sk,sk->s", v, g)
            feedback = b if dfa else v                                            # BP: the pre-step v
            if self.feedback is not None:
                delivered = self._delivered(error)
            elif noise is None:
                delivered = feedback * error[:, None]
            elif additive:
                delivered = feedback * error[:, None] + noise[:, j]
            else:
                delivered = (feedback + noise[:, j]) * error[:, None]
            c = delivered * g_prime
            if powers is not None:
                c = c / powers[j + 1]
                v *= self.decay_v
            coefficients[:, j] = c
            if j + 1 < L:
                fields[:, j + 1 :] += gram[:, j, j + 1 :, None] * c[:, None, :]
            v += lr_v_step * g * error[:, None]
        self.w += np.swapaxes(coefficients, 1, 2) @ X * (dyn.lr_w * scale)
        if powers is not None:
            self.w *= powers[L]

    def _delivered(self, error: np.ndarray) -> np.ndarray:
        """The outside feedback for this step's errors (S,), checked: (S, K) finite floats."""
        assert self.feedback is not None
        out = np.asarray(self.feedback(error), dtype=float)
        if out.shape != (self.S, self.K):
            raise ValueError(f"feedback must return shape (S, K) = {(self.S, self.K)} for errors of shape "
                             f"{error.shape}, got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError("feedback returned NaN or inf")
        return out
