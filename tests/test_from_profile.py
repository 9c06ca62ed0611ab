"""OpticalProjector.from_profile: any device gets opu-sim's settings, and no setting is accepted and ignored."""

from __future__ import annotations

import pytest
import torch

from optodfa.faults import GuardedDevice
from optodfa.optical import OpticalProjector
from optodfa.profiles import ProfileError, load_profile
from optodfa.registry import build_projector


def simulated(**overrides: str) -> OpticalProjector:
    projector = build_projector("opu-sim", 6, 40, feedback_seed=2, overrides=overrides)
    assert isinstance(projector, OpticalProjector)
    return projector


def test_a_driver_built_from_the_profile_projects_like_opu_sim():
    settings = {"encoding.kind": "bitplane", "encoding.bits": "3", "readout.mode": "strong-reference",
                "readout.evening": "true"}
    reference = simulated(**settings)
    device = simulated(**settings).device.inner  # a fresh simulator in the same state, as a "driver"
    driver = OpticalProjector.from_profile(device, "lighton-aurora", settings, in_features=6, out_features=40,
                                           intensities=reference.intensities)
    assert isinstance(driver.device, GuardedDevice) and driver.device.inner is device
    for key in ("encoding", "readout", "evening", "evening_floor"):
        assert driver.describe()[key] == reference.describe()[key]
    e = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(driver.project(e), reference.project(e), rtol=0, atol=0)
    assert driver.describe()["profile"]["encoding"]["bits"]["source"] == "override"


def test_an_override_the_device_does_not_read_is_an_error_naming_it():
    device = simulated().device.inner
    with pytest.raises(ProfileError, match=r"setting\(s\) 'camera.bits' not used by device 'opu-sim'.*"
                                           r"settings it uses: .*encoding.threshold"):
        OpticalProjector.from_profile(device, None, {"camera.bits": "4"}, in_features=6, out_features=40, uses=())
    with pytest.raises(ProfileError, match=r"unknown setting\(s\) 'camera.bitz'"):
        OpticalProjector.from_profile(device, None, {"camera.bitz": "4"}, in_features=6, out_features=40)
    with pytest.raises(ProfileError, match="describes a 'chip' device"):
        OpticalProjector.from_profile(device, load_profile("chip-8bit"), in_features=6, out_features=40)


def test_fault_settings_reach_the_guard():
    projector = simulated(**{"faults.attempts": "5", "faults.backoff": "2ms", "faults.timeout": "3s"})
    policy = projector.describe()["device"]["fault_policy"]
    assert policy == {"attempts": 5, "backoff_s": 0.002, "backoff_factor": 2.0, "timeout_s": 3.0}
    assert simulated().describe()["device"]["fault_policy"]["timeout_s"] is None  # simulators declare none
    assert simulated(**{"faults.timeout": "inf"}).device.timeout_s is None
    with pytest.raises(ProfileError, match="faults.attempts must be an integer in \\[1, 100\\]"):
        simulated(**{"faults.attempts": "0"})
