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

``s = feedback_noise``. The teacher's label carries output noise ``σ ζ`` (``σ = teacher_noise``). Time is
``t = steps / N``; ``κ = weight_decay`` is a decay rate per unit time and per unit of learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
        feedback_noise: ``s >= 0``, standard deviation of the feedback noise (see the module docstring).
        feedback_noise_mode: ``"additive"`` or ``"redrawn"``.
    """

    algorithm: str = "dfa"
    activation: str = "erf"
    lr_w: float = 0.2
    lr_v: float = 0.2
    teacher_noise: float = 0.0
    weight_decay: float = 0.0
    feedback_noise: float = 0.0
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
        object.__setattr__(self, "feedback_noise", check_real("feedback_noise", self.feedback_noise, low=0.0))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (for run files)."""
        return dataclasses.asdict(self)
