"""Test-only feedback devices of the sweep tests, registered when this module is imported.

Only sweep workers import it, by name (the grid's ``imports``), which is how a plug-in reaches dask workers; the
tests' folder is on the workers' ``sys.path`` because spawned processes inherit the parent's. The test process
itself never imports it, so the conformance kit, which runs against every registered device, never sees these.

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


register_device("sweep-slow", slow)
register_device("sweep-raise", failing)
register_device("sweep-explode", exploding)
