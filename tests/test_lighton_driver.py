"""The lighton driver's hardware path (uint8 counts, exposure from the output context) with a stand-in OPU."""

from __future__ import annotations

from importlib import metadata
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from optodfa.cli import main

pytestmark = pytest.mark.skipif(
    not any(point.name == "lighton" for point in metadata.entry_points(group="optodfa.devices")),
    reason="the lighton plug-in is not installed (`make` installs lightonml and devices/lighton)")


class Counts(np.ndarray):
    """A uint8 array with a lightonml-like ``context`` (exposure and frame time of the acquisition)."""


def test_hardware_counts_are_uint8_and_scaled_back_to_the_base_exposure(monkeypatch):
    from optodfa_lighton.driver import LightOnDevice

    device = LightOnDevice(3, 4, macropixel=2, reference_features=8, seed=0, simulated=True)
    device.bit_depth = 8  # what a real OPU reports: 8-bit camera counts

    def transform(x):
        assert x.dtype == np.uint8 and x.shape == (2, 3 * 2 + 8)
        assert (x[0, 6:] == 1).all() and (x[1, 6:] == 0).all()  # reference region per frame
        assert (x[:, :6] == np.repeat(np.array([[1, 0, 1], [0, 1, 0]], np.uint8), 2, axis=1)).all()
        out = np.full((2, 4), 200, dtype=np.uint8).view(Counts)
        out.context = SimpleNamespace(exposure_us=200, frametime_us=1000)
        return out

    monkeypatch.setattr(device.opu, "transform", transform)
    frames = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    acquisition = device.acquire(frames, reference=torch.tensor([True, False]))
    assert acquisition.counts.dtype == torch.uint8 and acquisition.counts.shape == (2, 4)
    torch.testing.assert_close(acquisition.intensity_per_count, torch.full((2,), 2.0))  # base 400 us / 200 us
    counters = device.counters()
    assert counters.frames == 2 and counters.hardware_seconds == pytest.approx(2e-3)
    assert device.describe()["last_exposure_us"] == 200


def test_no_opu_on_this_host_is_one_clear_line(capsys):
    assert main(["devices", "check", "lighton", "--set", "simulated=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no LightOn OPU available" in err and "--set simulated=true" in err
