"""The theory bridge: a feedback device's noise, measured, in the units of the teacher–student ODEs.

:mod:`optodfa.theory` describes noisy DFA feedback by a per-unit noise level ``s_k`` in one of two models
(docs/theory.md §4): ``"additive"``, ``f_k = b_k ε + s_k ζ_k``, and ``"redrawn"``, ``f_k = (b_k + s_k ξ_k) ε``, with
fresh standard normal ``ζ``, ``ξ`` each step. A device delivers ``y = project(e)``, an estimate of ``B e``. This
module measures, for errors drawn as learning would draw them,

* the **gain** ``g_k``: the regression of the device's output ``y_k`` on the exact projection ``x_k = (B e)_k``
  (through the origin, ``g_k = Σ x_k y_k / Σ x_k²``), so a device that applies ``g ⊙ B`` on average has the
  effective feedback vector ``g ⊙ b``;
* the **residual** ``r_k = y_k − g_k x_k`` and its variance as a function of the error's size: the least-squares
  fit ``r_k² ≈ α_k + β_k q`` with ``q = mean_j e_j²`` (``ε²`` for the scalar error of the shallow model), which
  splits it into a part of fixed size (``α``: additive, ``s_k² = α_k``) and a part proportional to the error
  (``β``: redrawn, ``s_k² = β_k``);
* whether the gain depends on the error's size (``gain_by_size``: the gain within quantile bins of ``q``), which
  the ODEs cannot represent.

Scale: projectors return ``B_eff e`` with unit-variance entries on average; DFA multiplies it by a feedback scale
(``DFAModel.feedback_scale``). The same ``scale`` here multiplies the device output in :class:`DeviceFeedback` and
the measured quantities: the ODE's ``b = scale · g ⊙ B[:, 0]`` and ``s_k = scale · sqrt(α_k)`` or
``scale · sqrt(β_k)``. The encoders restore each error's scale (the per-sample least-squares factor of
:mod:`optodfa.encoding`), so optical camera noise comes back multiplied by ``|ε|``: the redrawn model.

This module knows projectors and the theory; :mod:`optodfa.theory` itself never imports it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from scipy.special import erf

from optodfa.device import Projector
from optodfa.seeding import check_seed, numpy_generator
from optodfa.theory import FEEDBACK_NOISE_MODES, Dynamics
from optodfa.validation import check_choice, check_int, check_real

__all__ = ["DeviceFeedback", "FeedbackNoise", "measure_feedback_noise", "teacher_student_errors"]


class DeviceFeedback:
    """A projector as the DFA feedback of :func:`optodfa.theory.simulate`: ``f = scale · project(ε)``.

    One ``project`` call per SGD step with the errors of all ``S`` replicas as the batch (``(S, 1)``), so every
    replica gets its own device noise. The projector must take ``d = 1`` errors and give ``D = K`` outputs.

    Args:
        projector: the feedback device (``in_features = 1``).
        scale: feedback scale multiplying the device's output (1: unit-variance ``B_eff``, like ``b ~ N(0, 1)``).
    """

    def __init__(self, projector: Projector, *, scale: float = 1.0) -> None:
        if not isinstance(projector, Projector):
            raise TypeError(f"projector must be a Projector, got {type(projector).__name__}")
        if projector.in_features != 1:
            raise ValueError(f"the teacher–student error is a scalar: the projector must take in_features = 1, "
                             f"got {projector.in_features}")
        self.projector = projector
        self.scale = check_real("scale", scale, low=0.0, low_open=True)
        matrix = projector.effective_matrix()
        self._dtype = matrix.dtype if matrix is not None else torch.float64

    @property
    def K(self) -> int:
        """Hidden units fed: the projector's ``out_features``."""
        return self.projector.out_features

    def exact_b(self) -> np.ndarray:
        """``scale · B_eff[:, 0]`` (K,): the feedback vector the device applies when noiseless."""
        matrix = self.projector.effective_matrix()
        if matrix is None:
            raise ValueError("the projector has no effective matrix (e.g. intensity-only readout); measure the "
                             "feedback with an explicit reference matrix instead")
        return self.scale * matrix[:, 0].detach().cpu().double().numpy()

    def __call__(self, error: np.ndarray) -> np.ndarray:
        """Errors ``ε`` (S,) → delivered feedback (S, K)."""
        e = torch.from_numpy(np.ascontiguousarray(error, dtype=float)[:, None]).to(self._dtype)
        out = self.projector.project(e).detach().cpu().double().numpy()
        return out if self.scale == 1.0 else out * self.scale


@dataclasses.dataclass(frozen=True)
class FeedbackNoise:
    """A device's feedback, measured against the exact projection (see the module docstring).

    Attributes:
        reference: ``(D, d)`` matrix ``B`` of the exact projection (device units, before ``scale``).
        gain: ``(D,)`` regression gain of the device output on ``B e``.
        additive: ``(D,)`` ``α``: residual variance of fixed size (device units²).
        proportional: ``(D,)`` ``β``: residual variance per unit of ``q = mean(e²)`` (device units²).
        residual: ``(D,)`` mean residual power ``E[r²]`` over the samples (device units²).
        signal: ``(D,)`` mean power of the exact projection ``E[x²]``.
        gain_by_size: ``(bins, D)`` gain within quantile bins of ``q``, smallest errors first.
        gain_by_size_se: ``(bins, D)`` standard errors of those gains (from the residuals in each bin).
        size_edges: ``(bins + 1,)`` bin edges of ``q``.
        mean_size: ``E[q]`` over the samples.
        samples: number of error vectors projected.
        scale: feedback scale applied to the device output.
    """

    reference: np.ndarray
    gain: np.ndarray
    additive: np.ndarray
    proportional: np.ndarray
    residual: np.ndarray
    signal: np.ndarray
    gain_by_size: np.ndarray
    gain_by_size_se: np.ndarray
    size_edges: np.ndarray
    mean_size: float
    samples: int
    scale: float

    @property
    def snr_db(self) -> float:
        """Feedback SNR ``10 log10(Σ E[(g x)²] / Σ E[r²])`` in dB after the gain is taken out (inf if no noise)."""
        noise = float(np.sum(self.residual))
        power = float(np.sum(self.gain**2 * self.signal))
        if noise == 0.0:
            return math.inf
        return 10.0 * math.log10(power / noise) if power > 0 else -math.inf

    @property
    def mode(self) -> str:
        """The noise model that carries most of the residual power at the measured errors: ``"redrawn"`` when
        ``Σ β · E[q] >= Σ α``, else ``"additive"``."""
        share = np.sum(np.clip(self.proportional, 0, None)) * self.mean_size
        return "redrawn" if share >= np.sum(np.clip(self.additive, 0, None)) else "additive"

    @property
    def gain_spread(self) -> float:
        """How much the gain depends on the error's size, beyond sampling noise: the largest
        ``|gain in a size bin − overall gain| − 4 · (its standard error)`` over bins and units, floored at 0."""
        excess = np.abs(self.gain_by_size - self.gain[None, :]) - 4.0 * self.gain_by_size_se
        return float(max(0.0, np.max(excess)))

    def b(self) -> np.ndarray:
        """The ODE's feedback vector ``scale · g ⊙ B[:, 0]`` (D,) (``d = 1`` only)."""
        if self.reference.shape[1] != 1:
            raise ValueError(f"b is the feedback vector of a scalar error (d = 1); this measurement has "
                             f"d = {self.reference.shape[1]}")
        return self.scale * self.gain * self.reference[:, 0]

    def levels(self, mode: str | None = None) -> np.ndarray:
        """Per-unit noise levels ``s_k`` (D,) of the ODE in ``mode`` (default :attr:`mode`); negative fitted
        variances (sampling error around 0) count as 0."""
        mode = self.mode if mode is None else check_choice("mode", mode, FEEDBACK_NOISE_MODES)
        variance = self.proportional if mode == "redrawn" else self.additive
        return self.scale * np.sqrt(np.clip(variance, 0.0, None))

    def dynamics(self, base: Dynamics, mode: str | None = None) -> Dynamics:
        """``base`` (a DFA rule) with this device's per-unit noise levels in ``mode``."""
        mode = self.mode if mode is None else mode
        return dataclasses.replace(base, feedback_noise=tuple(float(s) for s in self.levels(mode)),
                                   feedback_noise_mode=mode)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (lists) for run files and tables."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        out.update(snr_db=self.snr_db, mode=self.mode, gain_spread=self.gain_spread)
        return out


def measure_feedback_noise(projector: Projector, errors: np.ndarray | torch.Tensor, *,
                           reference: np.ndarray | torch.Tensor | None = None, scale: float = 1.0,
                           bins: int = 4, batch: int = 4096) -> FeedbackNoise:
    """Project ``errors`` through ``projector`` and compare with the exact projection.

    Args:
        projector: the device (its counters and noise stream advance).
        errors: ``(n, d)`` error vectors drawn as training would draw them (e.g. :func:`teacher_student_errors`);
            their sizes should span the range seen in training, so that fixed-size and proportional noise can
            be told apart. ``n >= 8 · bins``.
        reference: ``(D, d)`` exact matrix; default ``projector.effective_matrix()`` (what the device applies).
            An ideal matrix here makes its mismatch with the device part of the gain and residual.
        scale: feedback scale (see the module docstring).
        bins: quantile bins of the error size for :attr:`FeedbackNoise.gain_by_size`.
        batch: error vectors per ``project`` call.

    Returns:
        the :class:`FeedbackNoise` record.
    """
    if not isinstance(projector, Projector):
        raise TypeError(f"projector must be a Projector, got {type(projector).__name__}")
    scale = check_real("scale", scale, low=0.0, low_open=True)
    bins = check_int("bins", bins, low=1)
    batch = check_int("batch", batch, low=1)
    e = np.asarray(errors.detach().cpu() if isinstance(errors, torch.Tensor) else errors, dtype=float)
    d, D = projector.in_features, projector.out_features
    if e.ndim != 2 or e.shape[1] != d or e.shape[0] < 8 * bins or not np.all(np.isfinite(e)):
        raise ValueError(f"errors must be a finite (n, {d}) array with n >= {8 * bins} (8 per size bin), "
                         f"got shape {e.shape}")
    if reference is None:
        matrix = projector.effective_matrix()
        if matrix is None:
            raise ValueError("the projector has no effective matrix (e.g. intensity-only readout); pass "
                             "reference=, the (D, d) matrix to compare with")
        reference = matrix
    B = np.asarray(reference.detach().cpu() if isinstance(reference, torch.Tensor) else reference, dtype=float)
    if B.shape != (D, d) or not np.all(np.isfinite(B)):
        raise ValueError(f"reference must be a finite ({D}, {d}) matrix, got shape {B.shape}")
    device_matrix = projector.effective_matrix()
    dtype = device_matrix.dtype if device_matrix is not None else torch.float64
    y = np.concatenate([projector.project(torch.from_numpy(e[i : i + batch]).to(dtype)).detach().cpu().double()
                        .numpy() for i in range(0, e.shape[0], batch)])
    x = e @ B.T                                                                  # exact projection, (n, D)
    power = np.sum(x * x, axis=0)
    gain = np.divide(np.sum(x * y, axis=0), power, out=np.zeros(D), where=power > 0)
    r2 = (y - gain * x) ** 2
    q = np.mean(e * e, axis=1)
    # r² ≈ α + β q by least squares; q spans decades, so the columns are scaled before solving.
    design = np.stack([np.ones_like(q), q / q.mean()], axis=1)
    coef, *_ = np.linalg.lstsq(design, r2, rcond=None)
    additive, proportional = coef[0], coef[1] / q.mean()
    edges = np.quantile(q, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, bins - 1)
    gain_by_size, gain_by_size_se = np.empty((bins, D)), np.empty((bins, D))
    for k in range(bins):
        part = which == k
        xp, yp = x[part], y[part]
        p = np.sum(xp**2, axis=0)
        g = np.divide(np.sum(xp * yp, axis=0), p, out=np.zeros(D), where=p > 0)
        spread = np.sqrt(np.sum(xp**2 * (yp - g * xp) ** 2, axis=0))    # robust (sandwich) standard error
        gain_by_size[k] = g
        gain_by_size_se[k] = np.divide(spread, p, out=np.zeros(D), where=p > 0)
    return FeedbackNoise(reference=B, gain=gain, additive=additive, proportional=proportional,
                         residual=r2.mean(axis=0), signal=power / e.shape[0], gain_by_size=gain_by_size,
                         gain_by_size_se=gain_by_size_se, size_edges=edges, mean_size=float(q.mean()),
                         samples=int(e.shape[0]), scale=scale)


def teacher_student_errors(n: int, *, M: int, teacher_A: float = 1.0, decades: float = 3.0,
                           seed: int) -> np.ndarray:
    """``(n, 1)`` scalar errors shaped like those of online teacher–student learning.

    At the start the student's output is small and ``ε ≈ y = A Σ_m erf(ν_m/√2)``, ``ν ~ N(0, I_M)``; learning
    shrinks it. Each draw is such a label times ``10^(−u·decades)``, ``u ~ U(0, 1)``, so the sizes cover the
    ``decades`` an error falls by while the student learns (sign-symmetric, as the error is).
    """
    n = check_int("n", n, low=1)
    M = check_int("M", M, low=1)
    teacher_A = check_real("teacher_A", teacher_A)
    decades = check_real("decades", decades, low=0.0)
    rng = numpy_generator(check_seed(seed), 0)
    labels = teacher_A * erf(rng.standard_normal((n, M)) / math.sqrt(2.0)).sum(axis=1)
    return (labels * 10.0 ** (-decades * rng.uniform(size=n)))[:, None]
