"""``benchmarks/gpu.sh --dry`` runs every step of the GPU checks on the CPU at tiny sizes, so the script cannot rot
between the sessions that have a GPU to run it on."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_reaches_every_step() -> None:
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PY": sys.executable}, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "tests collected" in out  # the GPU tests exist and are selected by the marker
    assert "frames/s" in out and "target >= 2000 frames/s" in out
    assert "target DFA opu-sim <= 1.2 x DFA digital" in out and "step targets" in out
