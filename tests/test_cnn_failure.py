"""experiments/cnn_failure runs end to end in its quick form: outputs, fields, ranges, and the feedback files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from experiments import cnn_failure
from optodfa.runlog import RunFile

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run "
                                "installs it)")


def test_quick_run_writes_figure_table_and_arrays_in_range(tmp_path, capsys):
    paths = cnn_failure.main(["--quick", "--out", str(tmp_path), "--workers", "0"])
    folder = tmp_path / "cnn_failure"
    assert all(paths[suffix].is_file() and paths[suffix].stat().st_size > 0 for suffix in ("h5", "png", "md"))
    keys = list(cnn_failure.LABELS)
    # One seed: run names carry no seed.
    assert {p.name for p in (folder / "runs").glob("*.h5")} == {f"{key}.h5" for key in keys}

    with h5py.File(paths["h5"], "r") as handle:
        settings = json.loads(handle.attrs["settings"])
        assert settings["input_size"] == cnn_failure.QUICK.input_size
        for key in keys:
            group = handle[key]
            steps = group["steps"][()]
            assert steps.ndim == 1 and steps.size >= 2 and (np.diff(steps) > 0).all()
            for layer in ("layer1", "layer2"):
                curve = group[f"gradient_alignment_{layer}"][()]
                assert curve.shape == (1, steps.size) and (np.abs(curve) <= 1).all()
            accuracy = group["test_accuracy"][()]
            assert accuracy.shape == (1, cnn_failure.QUICK.epochs) and ((accuracy >= 0) & (accuracy <= 1)).all()
            for name in ("weight_alignment_layer2", "cosine_to_aligned_layer2"):
                assert (np.abs(group[name][()]) <= 1).all()
            bound = float(group["attainable_alignment"][()])
            assert 0 <= bound <= 1
        # The SVD of a random conv satisfies the alignment condition with that conv; random B are far from it.
        assert float(handle["cnn-svd/attainable_alignment"][()]) > 0.99
        assert float(handle["cnn-random/attainable_alignment"][()]) < 0.5
        assert handle["svd/kernel"].shape == (*cnn_failure.QUICK.channels[::-1], 3, 3)

    table = paths["md"].read_text()
    assert all(f"| {label} |" in table for label in cnn_failure.LABELS.values())

    # Each structured run used its feedback file, recorded by hash; the random-B CNN drew its own B.
    for key in cnn_failure.STRUCTURED:
        run = RunFile.load(folder / "runs" / f"{key}.h5", checkpoint=False)
        description = run.attrs["device_description"]
        description = json.loads(description) if isinstance(description, str) else description
        npy = folder / "feedback" / f"{key}.npy"
        assert description["matrix_sha256"] == hashlib.sha256(npy.read_bytes()).hexdigest()
        side, (c1, c2) = cnn_failure.QUICK.input_size, cnn_failure.QUICK.channels
        assert np.load(npy).shape == ((c1 + c2) * side * side, cnn_failure.CLASSES)
    capsys.readouterr()
    cnn_failure.main(["--quick", "--out", str(tmp_path), "--workers", "0"])  # all done: nothing trains again
    assert "5 runs, 5 already done, 0 to run" in capsys.readouterr().out
