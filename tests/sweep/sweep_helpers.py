"""Helpers of the sweep tests: test-only feedback devices (registered when this module is imported), a tiny run.

Sweep workers import it by name (the grid's ``imports``), which is how a plug-in reaches dask workers; the
tests' folder is on the workers' ``sys.path`` because spawned processes inherit the parent's.

* ``sweep-slow``: the digital projector, sleeping ``delay_s`` seconds per projection (a run long enough to kill
  mid-way); a negative ``delay_s`` is rejected when the projector is built, as a device rejects a bad setting.
* ``sweep-raise``: raises ``RuntimeError`` at every projection (a run that fails every time).
* ``sweep-explode``: the digital projection times infinity, so the weights and then the error turn non-finite.
"""

from __future__ import annotations

import time

import torch

from optodfa.device import Projector
from optodfa.registry import ProjectorSpec, register_device
from optodfa.sim.digital import feedback_matrix


class _Feedback(Projector):
    def __init__(self, spec: ProjectorSpec, *, delay_s: float = 0.0, gain: float = 1.0, fail: bool = False) -> None:
        super().__init__(spec.in_features, spec.out_features)
        self.matrix = feedback_matrix(spec.out_features, spec.in_features, seed=spec.feedback_seed)
        self.delay_s, self.gain, self.fail = delay_s, gain, fail

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("sweep-raise: this device fails at every projection")
        time.sleep(self.delay_s)
        return self.gain * (e @ self.matrix.T.to(e.dtype))

    def effective_matrix(self) -> torch.Tensor:
        return self.matrix


def slow(spec: ProjectorSpec) -> Projector:
    """Digital projection that sleeps delay_s seconds per call (sweep tests)."""
    delay = float(spec.overrides.get("delay_s", 0.0))
    if delay < 0:
        raise ValueError(f"delay_s must be a number of seconds >= 0, got {delay}")
    return _Feedback(spec, delay_s=delay)


def failing(spec: ProjectorSpec) -> Projector:
    """Fails at every projection (sweep tests)."""
    return _Feedback(spec, fail=True)


def exploding(spec: ProjectorSpec) -> Projector:
    """Digital projection times infinity: training diverges (sweep tests)."""
    return _Feedback(spec, gain=float("inf"))


def tiny(**changes: object) -> dict:
    """Settings of a run of about a second: digits, 200 samples, one hidden layer of 16, one epoch."""
    return {"dataset": "digits", "limit": 200, "hidden": [16], "epochs": 1, "batch_size": 50, "lr": 3e-3,
            "alignment_every": 2, **changes}


def warm_up() -> None:
    """Import what a run needs and load its data once, so that tests time runs rather than imports."""
    import torch.utils.tensorboard  # noqa: F401

    import optodfa.tensorboard_log
    import optodfa.train  # noqa: F401
    from optodfa.data import load_dataset

    load_dataset("digits", limit=1)


register_device("sweep-slow", slow)
register_device("sweep-raise", failing)
register_device("sweep-explode", exploding)
