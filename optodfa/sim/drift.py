"""Drift of the scattering medium: ``R ← ρ R + sqrt(1 − ρ²) G`` every ``period`` frames.

``G`` is a fresh matrix with the same law as ``R``, so ``R`` stays a circular Gaussian matrix of the same variance
and the correlation between ``R`` now and ``R`` after ``f`` frames is ``ρ^floor(f / period)`` (counting from a
step boundary). The frame with global index ``f`` (counted from the device's construction) sees the matrix after
``floor(f / period)`` steps.

Drift is linear, so it commutes with the shortcuts of :mod:`optodfa.sim.transmission`: drifting each mirror column
and summing a macropixel equals drifting the summed column with a ``G`` column of ``m``-fold variance. The device
therefore drifts its element columns and its reference field directly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch

from optodfa.sim.noise import NoiseSource
from optodfa.validation import check_int, check_real

__all__ = ["Drift"]


@dataclasses.dataclass(frozen=True)
class Drift:
    """Medium decorrelation.

    Attributes:
        rho: correlation kept per step, in [0, 1] (1: no drift).
        period: frames between steps (>= 1).
    """

    rho: float
    period: int

    def __post_init__(self) -> None:
        check_real("drift.rho", self.rho, low=0.0, high=1.0)
        check_int("drift.period", self.period, low=1)

    def segments(self, first_frame: int, count: int) -> Iterator[tuple[int, int]]:
        """Split frames ``[first_frame, first_frame + count)`` into runs that share one matrix.

        Yields ``(start, stop)`` offsets into the batch; frame ``first_frame + start`` needs
        :meth:`steps_at` of it steps.
        """
        offset = 0
        while offset < count:
            frame = first_frame + offset
            stop = min(count, offset + self.period - frame % self.period)
            yield offset, stop
            offset = stop

    def step(self, fields: torch.Tensor, variances: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        """One drift step of ``fields`` (``(M, K)`` complex) whose column ``k`` has variance ``variances[k]``."""
        fresh = noise.complex_normal(tuple(fields.shape), fields.dtype) * variances.sqrt().to(fields.dtype)
        return fields * self.rho + fresh * math.sqrt(1.0 - self.rho**2)

    def steps_at(self, frame: int) -> int:
        """Drift steps taken before global frame ``frame``."""
        return frame // self.period

    def describe(self) -> dict[str, Any]:
        return {"rho": self.rho, "period": self.period}
