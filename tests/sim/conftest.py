"""Small simulated devices for the physics tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.opu import SimulatedOPU

IDEAL_CAMERA = dict(bits=None, shot_noise=False, read_noise_e=0.0, full_well_e=math.inf, gain=1.0,
                    auto_exposure="off", photon_rate=1.0, exposure_s=1.0)


def make_device(*, elements: int = 6, outputs: int = 512, macropixel: int = 1, reference: int = 64,
                seed: int = 0, noise_seed: int = 1, dmd: tuple[int, int] = (64, 64),
                camera: dict[str, Any] | None = None, **kw: Any) -> SimulatedOPU:
    """A float64 device, by default with an ideal camera (no noise, unlimited bits, 1 count per unit intensity)."""
    settings = {**IDEAL_CAMERA, **(camera or {})}
    layout = DMDLayout(dmd[0], dmd[1], macropixel, elements, reference)
    kw.setdefault("dtype", torch.float64)
    kw.setdefault("frame_time_s", max(1.0, settings["exposure_s"]))
    return SimulatedOPU(layout, Camera(**settings), output_pixels=outputs, seed=seed, noise_seed=noise_seed, **kw)


@pytest.fixture
def device_factory() -> Callable[..., SimulatedOPU]:
    return make_device
