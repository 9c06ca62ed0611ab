"""The driver template (devices/template) installs as a package, registers by entry point and passes the kit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optodfa.cli import main
from optodfa.conformance import run_checks
from optodfa.profiles import ProfileError
from optodfa.registry import available_devices, build_projector

TEMPLATE = Path(__file__).resolve().parents[1] / "devices" / "template"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target`` of a copy of the template (the checkout stays free of build files)."""
    root = tmp_path_factory.mktemp("template")
    source = root / "source"
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True)
    return target


@pytest.fixture
def template(installed, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(installed))


def test_template_registers_and_passes_the_kit(template, capsys):
    entry = available_devices()["template-opu"]
    assert entry.source == "optodfa_template.driver:build" and entry.description.startswith("Template driver")
    results = run_checks("template-opu")
    assert [r for r in results if r.status == "fail"] == []
    assert {r.check for r in results if r.status == "n/a"} == {"effective_matrix"}  # no matrix without calibration
    assert main(["devices", "check", "template-opu"]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_template_takes_projector_settings_and_refuses_ignored_ones(template):
    projector = build_projector("template-opu", 5, 37, overrides={"encoding.threshold": "0.05",
                                                                 "camera.bits": "10"})
    assert projector.describe()["encoding"]["threshold"] == 0.05
    assert projector.device.bit_depth == 10
    with pytest.raises(ProfileError, match=r"'camera.read_noise' not used by device 'template-opu'"):
        build_projector("template-opu", 5, 37, overrides={"camera.read_noise": "3"})
