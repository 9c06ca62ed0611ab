"""The conformance kit (optodfa.conformance) on every registered device, and on a broken one.

Every device registered when the tests are collected — the built-ins and every installed plug-in (``lighton``
when ``make`` installed devices/lighton) — goes through every check, through the same one-line pytest entry point a
driver's own suite uses (:func:`optodfa.testing.parametrize_with_checks`).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from optodfa.cli import main
from optodfa.conformance import D_IN, D_OUT, run_checks
from optodfa.device import Projector
from optodfa.registry import ProjectorSpec, available_devices, build_projector, register_device
from optodfa.testing import parametrize_with_checks

DEVICES = sorted(available_devices())


@parametrize_with_checks(DEVICES)
def test_conformance(check):
    check()


@parametrize_with_checks(["chip-sim"], profile="chip-4bit")
def test_conformance_of_the_4bit_chip(check):
    check()


@parametrize_with_checks(["opu-sim"], profile="ideal-opu", overrides={"readout.mode": "strong-reference"})
def test_conformance_of_a_noiseless_two_frame_opu(check):
    check()


class Broken(Projector):
    """Returns float64 whatever it gets, counts nothing it should, describes a tensor, forgets its state."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__(spec.in_features, spec.out_features)
        self.calls = 0

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.randn(e.shape[0], self.out_features, dtype=torch.float64)

    def project(self, e: Any) -> torch.Tensor:  # skips the protocol's validation and counters
        return self._project(e if isinstance(e, torch.Tensor) else torch.tensor(e))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": "broken", "matrix": torch.zeros(2)}


def test_a_broken_device_fails_with_a_readable_table(capsys):
    register_device("broken-test-device", Broken, "deliberately broken (tests)")
    assert main(["devices", "check", "broken-test-device"]) == 1
    table = capsys.readouterr().out
    rows = {line.split()[0]: line for line in table.splitlines()[2:-1]}
    assert "fail" in rows["shapes_and_dtypes"] and "project of torch.float32 errors returned torch.float64" in \
        rows["shapes_and_dtypes"]
    assert "fail" in rows["counters"] and "(calls, projections, macs) = (0, 0, 0)" in rows["counters"]
    assert "fail" in rows["describe"] and "not JSON-serialisable" in rows["describe"]
    assert "fail" in rows["bad_input"] and "was accepted" in rows["bad_input"]
    assert "fail" in rows["repeatability"] and "n/a" in rows["binary_input"]
    assert table.splitlines()[-1].endswith("1 passed, 7 failed, 4 not applicable")


def test_every_builtin_passes_through_the_cli(capsys):
    for name in ("digital", "opu-sim", "opu-twin", "chip-sim"):
        assert main(["devices", "check", name]) == 0, capsys.readouterr().out
        table = capsys.readouterr().out
        assert "0 failed" in table.splitlines()[-1]


def test_bad_settings_fail_before_any_check(capsys):
    assert main(["devices", "check", "opu-sim", "--set", "camera.bitz=4"]) == 2
    assert "unknown setting(s) 'camera.bitz'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="unknown device 'nope'"):
        run_checks("nope")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
@pytest.mark.parametrize("name", DEVICES)
def test_cuda_tensors_stay_on_cuda(name):
    projector = build_projector(name, D_IN, D_OUT, device=torch.device("cuda"))
    out = projector.project(torch.randn(8, D_IN).cuda())
    assert out.device.type == "cuda" and out.shape == (8, D_OUT)
