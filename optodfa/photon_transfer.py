"""Photon transfer: a camera's read noise and gain from the spread of repeated readings, through its ADC.

Used by :func:`optodfa.calibration.calibrate`; separate because it is a property of the camera alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Readings", "code_variance", "fit_photon_transfer"]


class Readings(NamedTuple):
    """Repeated readings of one kind of frame, as the photon-transfer fit takes them."""

    counts: torch.Tensor  # (K, D) float64 readings
    intensity: torch.Tensor  # (K, D) float64, each reading taken at the centre of its code
    dark_offset: float
    code_offset: float
    saturation_level: float  # lowest reading the device called saturated (inf if none)


def fit_photon_transfer(groups: list[Readings], top: float, *, quantised: bool) -> tuple[float, float]:
    """Fit the noise variance ``a + b · mean`` (counts², mean in counts above the dark offset) to the readings.

    The readings of a quantised camera are codes, and the variance of a code is not the variance of the noise:
    below about half a count of noise it mostly says where the pixel's mean sits inside its step. Speckle puts the
    means of the many pixels at uniformly spread positions inside their steps, so the expected code variance of a
    pixel with noise ``σ`` is :func:`code_variance` ``(σ)`` (``σ² + 1/12`` for ``σ`` above half a count, about
    ``0.56 σ`` far below); the fit matches that, by iteratively reweighted least squares, to the variance of each
    pixel never clipped at 0 or full scale. Without quantisation ``code_variance(σ) = σ²``. ``(a, b) >= 0``: ``a`` is
    the read noise variance, ``b`` the gain in counts per photo-electron (shot noise variance ``b · mean``).
    """
    from scipy.optimize import least_squares

    means, variances = [], []
    for group in groups:
        clean = ((group.counts > 0) & (group.counts < top)).all(dim=0)
        if not bool(clean.any()):
            continue
        means.append(group.counts[:, clean].mean(dim=0) + (group.code_offset - group.dark_offset))
        variances.append(group.counts[:, clean].var(dim=0))
    if not means:
        return 0.0, 0.0
    mean, var = torch.cat(means).numpy(), torch.cat(variances).numpy()
    if mean.size < 2 or float(var.max(initial=0.0)) == 0.0:
        return 0.0, 0.0
    # Start from the linear fit, which is right wherever the noise exceeds a count.
    slope, offset = np.polyfit(mean, var - (1 / 12 if quantised else 0.0), 1)
    start = np.array([max(offset, 1e-6), max(slope, 1e-6)])
    damping = 1.0 / (2 * len(groups[0].counts))  # a code variance of 0 over the repeats is no evidence of σ = 0

    def expected(theta: np.ndarray) -> np.ndarray:
        return code_variance(np.sqrt(theta[0] + theta[1] * np.maximum(mean, 0.0)), quantised=quantised)

    # Iteratively reweighted: the scale of each residual is fixed from the previous fit. Dividing by the fitted
    # variance inside the objective would pull the fit up by about 2 / (repeats − 1) (a chi-square's skew).
    theta = start
    for _ in range(4):
        scale = expected(theta) + damping
        theta = least_squares(lambda t, s=scale: (var - expected(t)) / s, theta, bounds=(0.0, np.inf),
                              x_scale="jac").x
    return float(theta[0]), float(theta[1])


_SIGMA_GRID = np.geomspace(0.05, 4.0, 121)
_CODE_VARIANCE: np.ndarray | None = None


def code_variance(sigma: np.ndarray | float, *, quantised: bool = True) -> np.ndarray:
    """Expected variance of ``floor(u + σ z)`` (``z ~ N(0, 1)``) for a phase ``u`` uniform in ``[0, 1)``, in counts².

    ``σ² + 1/12`` (Sheppard) from ``σ ≈ 0.5`` up; ``σ / sqrt(π)`` as ``σ → 0``, where only pixels within about ``σ``
    of a code boundary flicker (exact to ``exp(−1/(4σ²))``, used below ``σ = 0.05``). Tabulated on a log grid of
    ``σ`` in ``[0.05, 4]`` (512 phases, ``k`` summed over ±8σ) and interpolated; ``σ²`` when not ``quantised``.
    """
    global _CODE_VARIANCE
    sigma = np.asarray(sigma, dtype=np.float64)
    if not quantised:
        return np.square(sigma)
    if _CODE_VARIANCE is None:
        from scipy.special import ndtr

        phase = (np.arange(512) + 0.5) / 512
        table = []
        for s in _SIGMA_GRID:
            k = np.arange(-int(8 * s) - 2, int(8 * s) + 3)[:, None]
            p = ndtr((k + 1 - phase) / s) - ndtr((k - phase) / s)
            mean = (k * p).sum(axis=0)
            table.append(float(((k * k * p).sum(axis=0) - mean * mean).mean()))
        _CODE_VARIANCE = np.array(table)
    inside = np.interp(np.log(np.clip(sigma, _SIGMA_GRID[0], _SIGMA_GRID[-1])), np.log(_SIGMA_GRID), _CODE_VARIANCE)
    return np.where(sigma > _SIGMA_GRID[-1], sigma * sigma + 1 / 12,
                    np.where(sigma < _SIGMA_GRID[0], sigma / math.sqrt(math.pi), inside))
