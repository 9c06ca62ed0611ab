"""The learning rule shared by the ODEs and the online-SGD simulation (SPEC §5).

One step on a fresh input ``x ~ N(0, I_N)``, with ``ε = y − ŷ`` and feedback ``c = v`` (BP) or ``c = b`` (DFA):

* ``w_k ← w_k + (η_w/√N) f_k g'(λ_k) x − (η_w κ/N) w_k``
* ``v_k ← v_k + (η_v/N) g(λ_k) ε − (η_v κ/N) v_k``

where ``f_k`` is the feedback the device delivers for unit ``k``:

* ``feedback_noise = 0``: ``f_k = c_k ε`` exactly;
* mode ``"additive"``: ``f_k = c_k ε + s ζ_k`` with fresh ``ζ_k ~ N(0, 1)`` (noise of fixed size on each projected
  component, independent of the error);
* mode ``"redrawn"``: ``f_k = (c_k + s ξ_k) ε`` with fresh ``ξ_k ~ N(0, 1)`` (the feedback vector redrawn as
  ``c + ξ`` every step; equivalently noise proportional to ``|ε|``).

``s = feedback_noise``, one level for all units or one per unit (``s_k``, a tuple of ``K`` levels: a device's
noise differs between output pixels). The teacher's label carries output noise ``σ ζ`` (``σ = teacher_noise``). Time is
``t = steps / N``; ``κ = weight_decay`` is a decay rate per unit time and per unit of learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optodfa.theory.integrals import ACTIVATIONS
from optodfa.validation import check_choice, check_real

ALGORITHMS = ("bp", "dfa")
FEEDBACK_NOISE_MODES = ("additive", "redrawn")


@dataclasses.dataclass(frozen=True)
class Dynamics:
    """Settings of online learning in the teacher–student model; validated on construction.

    Attributes:
        algorithm: ``"bp"`` (feedback ``c = v``) or ``"dfa"`` (fixed feedback ``c = b``).
        activation: ``"erf"`` (``g(u) = erf(u/√2)``) or ``"linear"``, for teacher and student.
        lr_w: learning rate ``η_w`` of the first layer (> 0).
        lr_v: learning rate ``η_v`` of the second layer (>= 0; 0 freezes ``v``).
        teacher_noise: standard deviation ``σ`` of the noise added to the teacher's label (>= 0).
        weight_decay: ``κ >= 0``; both layers decay at rate ``η κ`` per unit time.
        feedback_noise: ``s >= 0``, standard deviation of the feedback noise (see the module docstring): one
            number, or a tuple of ``K`` numbers, one per student unit.
        feedback_noise_mode: ``"additive"`` or ``"redrawn"``.
    """

    algorithm: str = "dfa"
    activation: str = "erf"
    lr_w: float = 0.2
    lr_v: float = 0.2
    teacher_noise: float = 0.0
    weight_decay: float = 0.0
    feedback_noise: float | tuple[float, ...] = 0.0
    feedback_noise_mode: str = "additive"

    def __post_init__(self) -> None:
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("feedback_noise_mode", self.feedback_noise_mode, FEEDBACK_NOISE_MODES)
        # Normalise numpy scalars from sweeps to plain floats so that the record prints and compares cleanly.
        object.__setattr__(self, "lr_w", check_real("lr_w", self.lr_w, low=0.0, low_open=True))
        object.__setattr__(self, "lr_v", check_real("lr_v", self.lr_v, low=0.0))
        object.__setattr__(self, "teacher_noise", check_real("teacher_noise", self.teacher_noise, low=0.0))
        object.__setattr__(self, "weight_decay", check_real("weight_decay", self.weight_decay, low=0.0))
        object.__setattr__(self, "feedback_noise", _noise_levels(self.feedback_noise))

    @property
    def noisy(self) -> bool:
        """Whether any unit's feedback carries noise."""
        levels = self.feedback_noise
        return any(levels) if isinstance(levels, tuple) else levels != 0.0

    def noise_levels(self, K: int) -> float | np.ndarray:
        """``s`` as one float, or ``(K,)`` per-unit levels; raises if a per-unit tuple does not have ``K`` entries."""
        levels = self.feedback_noise
        if not isinstance(levels, tuple):
            return levels
        if len(levels) != K:
            raise ValueError(f"feedback_noise has {len(levels)} per-unit levels but the student has K = {K} units")
        return np.asarray(levels)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (for run files)."""
        return dataclasses.asdict(self)


def _noise_levels(value: Any) -> float | tuple[float, ...]:
    """One noise level as a float, or per-unit levels as a tuple of floats (a list or array is accepted)."""
    if isinstance(value, list | tuple | np.ndarray):
        levels = tuple(check_real(f"feedback_noise[{k}]", x, low=0.0) for k, x in enumerate(np.ravel(value)))
        if not levels or np.ndim(value) != 1:
            raise ValueError(f"feedback_noise must be a number or a non-empty 1-D sequence of per-unit levels, "
                             f"got shape {np.shape(value)}")
        return levels
    return check_real("feedback_noise", value, low=0.0)
