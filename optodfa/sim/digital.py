"""The ideal digital projector: exact ``B e`` in floating point, the baseline of every comparison."""

from __future__ import annotations

from typing import Any

import torch

from optodfa.device import Projector
from optodfa.registry import ProjectorSpec
from optodfa.seeding import torch_generator
from optodfa.validation import check_choice, check_int, check_keys, check_memory

DISTRIBUTIONS = ("gaussian", "uniform")


def feedback_matrix(out_features: int, in_features: int, *, seed: int, distribution: str = "gaussian",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``(D, d)`` random feedback matrix drawn on the CPU from ``seed``.

    ``gaussian``: i.i.d. N(0, 1). ``uniform``: i.i.d. U[-1, 1) (variance 1/3), the convention of the paper's
    reference code. Drawn on the CPU so that every torch device gets the same numbers.
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"feedback matrix dtype must be a floating dtype (torch.float32, torch.float64), got {dtype}")
    check_int("out_features", out_features, low=1)
    check_int("in_features", in_features, low=1)
    check_memory(f"a digital feedback matrix of D = {out_features} x d = {in_features}",
                 8.0 * out_features * in_features * (1 + dtype.itemsize / 8))
    generator = torch_generator(seed, 0)
    if distribution == "gaussian":
        matrix = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
    else:
        matrix = torch.rand(out_features, in_features, generator=generator, dtype=torch.float64) * 2 - 1
    return matrix.to(dtype)


class DigitalProjector(Projector):
    """Exact ``e @ Bᵀ`` with a fixed random ``B`` of shape ``(D, d)``."""

    def __init__(self, matrix: torch.Tensor, *, seed: int | None = None, distribution: str | None = None) -> None:
        if not isinstance(matrix, torch.Tensor) or not matrix.is_floating_point():
            got = matrix.dtype if isinstance(matrix, torch.Tensor) else type(matrix).__name__
            raise TypeError(f"feedback matrix must be a floating torch.Tensor (D, d), got {got}")
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(f"feedback matrix must be 2-D (D, d) with D, d >= 1, got shape {tuple(matrix.shape)}")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("feedback matrix holds NaN or inf")
        super().__init__(in_features=matrix.shape[1], out_features=matrix.shape[0])
        self.matrix = matrix
        self._seed = seed
        self._distribution = distribution

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        matrix = self.matrix
        if matrix.device != e.device or matrix.dtype != e.dtype:
            matrix = matrix.to(device=e.device, dtype=e.dtype)
        return e @ matrix.T

    def effective_matrix(self) -> torch.Tensor:
        return self.matrix

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": "digital", "distribution": self._distribution,
                "feedback_seed": self._seed, "compute": str(self.matrix.device)}


def build(spec: ProjectorSpec) -> DigitalProjector:
    """Exact digital projection B e (Gaussian or uniform B from the feedback seed); the baseline."""
    check_keys("digital device settings", spec.overrides, ["distribution"])
    if spec.profile is not None:
        raise ValueError(f"device 'digital' takes no profile, got profile={spec.profile!r}")
    distribution = spec.overrides.get("distribution", "gaussian")
    matrix = feedback_matrix(spec.out_features, spec.in_features, seed=spec.feedback_seed,
                             distribution=distribution, dtype=spec.dtype).to(spec.device)
    return DigitalProjector(matrix, seed=spec.feedback_seed, distribution=distribution)
