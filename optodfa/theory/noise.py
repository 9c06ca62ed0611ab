"""Noisy feedback in the teacher–student ODEs, and how a device's noise level maps to ``s``.

The first layer moves by ``(η_w/√N) f_k g'(λ_k) x`` with ``f_k`` the delivered feedback (see
:mod:`optodfa.theory.dynamics`). Zero-mean noise independent of the input leaves the drift (order ``η``) of ``R``
and ``Q`` unchanged; only the diffusion term of ``dQ/dt`` (order ``η²``) sees it, through the second moment
``E[f_i f_k g'(λ_i) g'(λ_k)]``, which :func:`feedback_second_moment` computes (derivation in ``docs/theory.md``):

* exact feedback:  ``c_i c_k E2_ik``
* ``"additive"``:  ``c_i c_k E2_ik + s² δ_ik J2(i, i)``
* ``"redrawn"``:   ``(c_i c_k + s² δ_ik) E2_ik``

with ``E2_ik = E[ε² g'(λ_i) g'(λ_k)] = Σ_pq u_p u_q I4(i, k, p, q) + σ² J2(i, k)``.
"""

from __future__ import annotations

import numpy as np

from optodfa.theory.dynamics import FEEDBACK_NOISE_MODES
from optodfa.validation import check_choice, check_real


def feedback_second_moment(c: np.ndarray, E2: np.ndarray, J2: np.ndarray, *, s: float | np.ndarray,
                           mode: str) -> np.ndarray:
    """``E[f_i f_k g'(λ_i) g'(λ_k)]`` per unit of ``η_w²``.

    Shapes: feedback ``c`` (..., K); ``E2`` and ``J2`` (..., K, K) for the student units → (..., K, K); the noise
    level ``s`` is one number or per unit, (K,) (``s² δ_ik`` becomes ``s_i² δ_ik``).
    """
    out = c[..., :, None] * c[..., None, :] * E2
    if np.all(np.asarray(s) == 0.0):
        return out
    diagonal = np.diagonal(E2 if mode == "redrawn" else J2, axis1=-2, axis2=-1)
    K = c.shape[-1]
    out[..., np.arange(K), np.arange(K)] += s**2 * diagonal
    return out


def feedback_noise_from_snr(snr_db: float, b: np.ndarray, *, mode: str = "redrawn",
                            error_rms: float = 1.0) -> float:
    """The noise level ``s`` of a device whose feedback has signal-to-noise ratio ``snr_db`` (decibels).

    SNR is the feedback fidelity of SPEC §4: power of the exact projection over power of the error it makes,
    ``10 log10(E[(b_k ε)²] / E[noise_k²])`` averaged over units. ``b`` (K,) is the feedback vector.

    * ``"redrawn"``: the noise scales with the error (an encoder that normalises each error vector and a decoder
      that restores its norm, as the optical path does), so ``noise_k = s ξ_k ε`` and
      ``s = rms(b) · 10^(−snr_db/20)``, independent of the error. ``error_rms`` is ignored.
    * ``"additive"``: the noise has a fixed size in feedback units (``noise_k = s ζ_k``), so the SNR holds only at
      one error scale, ``error_rms = sqrt(E[ε²]) = sqrt(2 ε_g)``: ``s = rms(b) · error_rms · 10^(−snr_db/20)``.
    """
    snr_db = check_real("snr_db", snr_db)
    check_choice("mode", mode, FEEDBACK_NOISE_MODES)
    error_rms = check_real("error_rms", error_rms, low=0.0, low_open=True)
    b = np.asarray(b, dtype=float)
    if b.ndim != 1 or b.size == 0 or not np.all(np.isfinite(b)):
        raise ValueError(f"b must be a non-empty finite vector of shape (K,), got shape {b.shape}")
    rms_b = float(np.sqrt(np.mean(b**2)))
    scale = rms_b if mode == "redrawn" else rms_b * error_rms
    return scale * 10.0 ** (-snr_db / 20.0)
