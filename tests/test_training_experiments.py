"""The training experiments run end to end in their quick form and reuse finished runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import encoding_ablation, fashion_mnist
from optodfa.runlog import RunFile

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run "
                                "installs it)")


def test_fashion_mnist_quick_writes_runs_figure_and_table(tmp_path, capsys):
    fashion_mnist.main(["--quick", "--out", str(tmp_path)])
    folder = tmp_path / "fashion_mnist"
    assert {p.name for p in (folder / "runs").glob("*.h5")} == {"BP.h5", "DFA-digital.h5", "DFA-opu-sim.h5"}
    assert {p.name for p in folder.iterdir()} >= {"fashion_mnist.png", "fashion_mnist.md", "fashion_mnist.h5",
                                                   "sweep.json", "summary.md"}
    optical = RunFile.load(folder / "runs" / "DFA-opu-sim.h5")
    assert optical.attrs["status"] == "completed" and optical.series["device/frames"][-1] > 0
    assert "| DFA opu-sim |" in (folder / "fashion_mnist.md").read_text()
    capsys.readouterr()
    fashion_mnist.main(["--quick", "--out", str(tmp_path)])  # everything done: nothing is trained again
    assert "3 runs, 3 already done, 0 to run" in capsys.readouterr().out


def test_encoding_ablation_quick_counts_frames_per_vector(tmp_path):
    encoding_ablation.main(["--quick", "--out", str(tmp_path)])
    table = (tmp_path / "encoding_ablation" / "encoding_ablation.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table.splitlines()[4:]}
    # frames per error vector: 0 digital, 4 for one ternary plane (holographic), 4 per bit plane
    assert rows["digital"] == "0" and rows["opu-sim, ternary 0.25"] == "4"
    assert rows["ideal-opu, bit-plane 2"] == "8" and rows["ideal-opu, bit-plane 3"] == "12"
