"""chip-sim and the lighton plug-in train DFA through the command line (on a tiny Fashion-MNIST-format set).

The set is synthetic but learnable in one short epoch (chance is 0.1; digital DFA reaches 1.0 on it), so
"trains" means more than "runs": test accuracy above 0.5.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import pytest

from optodfa.cli import main
from optodfa.datasets.idx import write_idx
from optodfa.registry import build_projector

HAS_LIGHTON = any(point.name == "lighton" for point in metadata.entry_points(group="optodfa.devices"))
NEEDS_LIGHTON = pytest.mark.skipif(not HAS_LIGHTON, reason="the lighton plug-in is not installed (`make` installs "
                                   "lightonml and devices/lighton; see devices/lighton/README.md)")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """Four IDX files in the Fashion-MNIST layout: 512 training and 64 test images of 28 x 28, 10 classes."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 512), ("t10k", 64)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        # Class k lights rows 2k to 2k + 2 over noise, so that one short epoch learns it.
        images = rng.normal(60, 30, (n, 28, 28))
        for row in range(3):
            images[np.arange(n), 2 * labels + row] += 120
        images = np.clip(images, 0, 255).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, compress=True)
    return folder


def train(fashion: Path, out: Path, *args: str) -> dict:
    code = main(["train", "--dataset", "fashion-mnist", "--data-root", str(fashion), "--epochs", "1", "--limit",
                 "512", "--hidden", "32", "--batch-size", "16", "--optimizer", "adam", "--lr", "3e-3",
                 "--alignment-every", "4", "--no-progress", "--out", str(out), *args])
    assert code == 0
    with h5py.File(out, "r") as file:
        return {"status": file.attrs["status"], "accuracy": float(file["metrics/test_accuracy"][-1]),
                "seconds": float(file["device/hardware_seconds"][-1]), "faults": int(file["device/faults"][-1])}


@pytest.mark.parametrize("profile", ["chip-8bit", "chip-4bit"])
def test_chip_sim_trains(fashion, tmp_path, profile):
    run = train(fashion, tmp_path / "chip.h5", "--device", "chip-sim", "--profile", profile)
    assert run["status"] == "completed" and run["accuracy"] > 0.5 and run["seconds"] > 0 and run["faults"] == 0


@NEEDS_LIGHTON
def test_lighton_trains(fashion, tmp_path, capsys):
    run = train(fashion, tmp_path / "lighton.h5", "--device", "lighton")
    assert run["status"] == "completed" and run["accuracy"] > 0.5 and run["seconds"] > 0 and run["faults"] == 0


@NEEDS_LIGHTON
def test_lighton_refuses_a_setting_it_would_ignore(fashion, tmp_path, capsys):
    code = main(["train", "--dataset", "fashion-mnist", "--data-root", str(fashion), "--device", "lighton",
                 "--set", "camera.bits=4", "--out", str(tmp_path / "r.h5")])
    assert code == 2
    assert "'camera.bits' not used by device 'lighton'" in capsys.readouterr().err
    # An encoding setting is the projector's, so every driver takes it, uses it and records it.
    projector = build_projector("lighton", 10, 32, overrides={"encoding.threshold": "0.05"})
    assert projector.describe()["encoding"]["threshold"] == 0.05
    assert projector.describe()["profile"]["encoding"]["threshold"]["source"] == "override"
