"""What an ODE integration or a simulation returns: order parameters on a time grid, and what they imply."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optodfa.theory.order_parameters import OrderParameters


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Order parameters at times ``t``.

    Attributes:
        t: times (n_t,), in units of ``N`` steps.
        state: order parameters with batch shape ``(n_t, *batch)`` (``batch`` is the replica axis, or empty).
        activation: the activation the model used (needed for ``ε_g``).
        info: how it was computed (solver, function evaluations, wall time, N, seeds...), plain data.
    """

    t: np.ndarray
    state: OrderParameters
    activation: str
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def generalisation_error(self) -> np.ndarray:
        """``ε_g`` (n_t, *batch)."""
        return self.state.generalisation_error(self.activation)

    @property
    def cos_vb(self) -> np.ndarray:
        """``cos(v, b)`` (n_t, *batch)."""
        return self.state.cos_vb()

    @property
    def sign_agreement(self) -> np.ndarray:
        """Fraction of units with ``sign(v_k) = sign(b_k)``, (n_t, *batch)."""
        return self.state.sign_agreement()

    def final(self) -> OrderParameters:
        """The state at the last time, batch shape ``batch``."""
        return self.state.index(-1)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every time series as a named array, for run files."""
        s = self.state
        return {"t": self.t, "Q": s.Q, "R": s.R, "T": s.T, "v": s.v, "A": s.A, "b": s.b,
                "eg": self.generalisation_error, "cos_vb": self.cos_vb, "sign_agreement": self.sign_agreement}
