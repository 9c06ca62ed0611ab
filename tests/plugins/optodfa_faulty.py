"""A fault-injecting driver, installed for the tests as the entry point ``faulty`` (see tests/test_faults.py).

It wraps the simulated OPU of a profile and misbehaves as ``$OPTODFA_FAULTY`` says, read at every ``acquire`` so
that a run can fail and then resume against a healthy device with the same stored configuration:

* ``once:K`` — the K-th acquire raises ``OSError`` once (a transient glitch);
* ``after:K`` — every acquire from the K-th on raises ``OSError`` (a device that died);
* ``hang:K`` — the K-th acquire blocks until :data:`RELEASE` is set (at most 30 s);
* ``range:K``, ``nan:K``, ``shape:K``, ``type:K`` — from the K-th acquire on, counts above the bit depth, a NaN
  (with unlimited bits), one pixel short, or a tuple instead of an Acquisition;
* unset or empty — healthy.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

from optodfa.device import Projector
from optodfa.optical import OpticalProjector
from optodfa.profiles import SCHEMA
from optodfa.registry import ProjectorSpec
from optodfa.sim.opu import build as build_simulated

__all__ = ["RELEASE", "Faulty", "build"]

RELEASE = threading.Event()


class Faulty:
    """The simulated OPU with injected faults; every other attribute is the simulator's."""

    name = "faulty"
    profile_keys = tuple(SCHEMA)
    acquire_timeout_s = 30.0

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.acquires = 0

    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Any:
        self.acquires += 1
        mode, _, number = os.environ.get("OPTODFA_FAULTY", "").partition(":")
        due = bool(mode) and self.acquires >= int(number)
        if mode == "once" and self.acquires == int(number):
            raise OSError("USB transfer interrupted")
        if mode == "after" and due:
            raise OSError("camera not responding")
        if mode == "hang" and self.acquires == int(number):
            RELEASE.wait(30.0)
        result = self.inner.acquire(frames, reference=reference)
        if mode == "range" and due:
            return result._replace(counts=result.counts.to(torch.int16) + 300)
        if mode == "nan" and due:
            counts = result.counts.clone()
            counts[0, 0] = float("nan")
            return result._replace(counts=counts)
        if mode == "shape" and due:
            return result._replace(counts=result.counts[:, :-1])
        if mode == "type" and due:
            return tuple(result)
        return result

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Faulty:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "device": "faulty"}

    def counters(self) -> Any:
        return self.inner.counters()


def build(spec: ProjectorSpec) -> Projector:
    """Fault-injecting simulated OPU (tests only)."""
    simulated = build_simulated(spec)
    assert isinstance(simulated, OpticalProjector)
    profile = simulated.describe()["profile"]
    device = Faulty(simulated.device.inner)
    projector = OpticalProjector.from_profile(device, _profile(spec), in_features=spec.in_features,
                                              out_features=spec.out_features, intensities=simulated.intensities,
                                              raw_matrix=device.inner.holographic_matrix)
    assert projector.describe()["profile"]["name"] == profile["name"]
    return projector


def _profile(spec: ProjectorSpec) -> Any:
    from optodfa.profiles import load_profile

    return load_profile(spec.profile, spec.overrides)

