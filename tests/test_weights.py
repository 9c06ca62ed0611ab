"""Weights in run files (initial, final, log-grid snapshots), the log schedule, and the cross-seed cosine."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import optodfa.sweep
import optodfa.train
from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.cross_seed import cross_seed
from optodfa.runlog import RunFile, RunFileError
from optodfa.schedule import log_grid, on_log_grid, schedule_steps
from optodfa.sweep.cli import report
from optodfa.train import resume, train
from optodfa.weights import read_weights

LOG = {"dataset": "digits", "hidden": (12, 10), "bias": False, "epochs": 2, "batch_size": 40, "limit": 400,
       "lr": 3e-3, "alignment_schedule": "log", "alignment_per_decade": 4}  # 10 steps per epoch, 20 in all


def quiet(*_: object) -> None:
    pass


# -- the log grid ---------------------------------------------------------------------------------------------------
def test_log_grid_values():
    assert log_grid(1000, 1).tolist() == [0, 1, 10, 100, 1000]
    assert log_grid(999, 1).tolist() == [0, 1, 10, 100]
    assert log_grid(0, 3).tolist() == [0]
    assert log_grid(100, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100]
    grid = log_grid(10 ** 4, 10)
    assert len(grid[grid > 10]) == 30  # (10, 10⁴]: three decades of 10 points each


@pytest.mark.parametrize("per_decade", [1, 3, 10, 25])
def test_on_log_grid_agrees_with_the_grid(per_decade):
    grid = set(log_grid(20000, per_decade).tolist())
    assert [s for s in range(20001) if on_log_grid(s, per_decade)] == sorted(grid)
    assert not on_log_grid(-1, per_decade)


def test_schedule_steps_and_bad_input():
    assert schedule_steps("every", 10, every=4).tolist() == [0, 4, 8]
    assert schedule_steps("every", 10, every=0).tolist() == []
    assert schedule_steps("log", 10, per_decade=1).tolist() == [0, 1, 10]
    with pytest.raises(ValueError, match=r"alignment_schedule must be one of 'every', 'log'; got 'sometimes'"):
        schedule_steps("sometimes", 10)
    with pytest.raises(ValueError, match="per_decade must be an integer >= 1, got 0"):
        log_grid(10, 0)


def test_config_refuses_a_bad_schedule():
    with pytest.raises(ValueError, match="alignment_schedule must be one of 'every', 'log'; got 'logarithmic'"):
        TrainConfig(alignment_schedule="logarithmic")
    with pytest.raises(ValueError, match="alignment_per_decade must be an integer >= 1, got 0"):
        TrainConfig(alignment_per_decade=0)
    with pytest.raises(TypeError, match="alignment_per_decade must be an integer"):
        TrainConfig(alignment_per_decade=2.5)


def test_cli_refuses_a_bad_schedule(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--alignment-schedule", "sometimes", "--out",
                 str(tmp_path / "r.h5")]) == 2
    err = capsys.readouterr().err
    assert "--alignment-schedule" in err and "'sometimes'" in err and "'log'" in err
    assert main(["train", "--dataset", "digits", "--alignment-schedule", "log", "--alignment-per-decade", "0",
                 "--out", str(tmp_path / "r.h5")]) == 2
    assert "alignment_per_decade must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


# -- weights in the run file ----------------------------------------------------------------------------------------
def test_log_schedule_records_alignment_and_snapshots_on_the_grid(tmp_path):
    path = train(TrainConfig(**LOG), tmp_path / "r.h5", progress=False, log=quiet)
    run = RunFile.load(path)
    expected = log_grid(19, 4).tolist()  # steps 0 … 19 are measured (before each of the 20 updates)
    assert expected == [0, 1, 2, 3, 6, 10, 18]
    assert run.series["alignment/step"] == [float(s) for s in expected]
    weights = read_weights(path)
    assert weights.steps.tolist() == expected
    assert set(weights.initial) == set(weights.final) == set(weights.snapshots) == {"layer1", "layer2", "output"}
    shapes = {"layer1": (12, 64), "layer2": (10, 12), "output": (10, 10)}
    for name, shape in shapes.items():
        assert weights.initial[name].shape == weights.final[name].shape == shape
        assert weights.snapshots[name].shape == (len(expected), *shape)
        assert weights.initial[name].dtype == np.float32
        np.testing.assert_array_equal(weights.at(0)[name], weights.initial[name])  # both before the first update
    # The final weights are the trained network's: the checkpoint's model state holds the same matrices.
    state = run.checkpoint[0]["model"]
    matrices = [state[k].numpy() for k in state if k.endswith("weight")]
    for name, matrix in zip(shapes, matrices, strict=True):
        np.testing.assert_array_equal(weights.final[name], matrix)
    assert not np.array_equal(weights.final["layer1"], weights.initial["layer1"])
    with pytest.raises(KeyError, match=r"no weight snapshot at step 5; snapshots at steps \[0, 1, 2, 3, 6, 10, 18\]"):
        weights.at(5)


def test_every_schedule_keeps_initial_and_final_weights_only(tmp_path):
    path = train(TrainConfig(**{**LOG, "alignment_schedule": "every", "alignment_every": 5}), tmp_path / "r.h5",
                 progress=False, log=quiet)
    weights = read_weights(path)
    assert set(weights.initial) == set(weights.final) == {"layer1", "layer2", "output"}
    assert weights.steps.tolist() == [] and weights.snapshots == {}
    assert RunFile.load(path).series["alignment/step"] == [0.0, 5.0, 10.0, 15.0]


def test_weights_are_plain_hdf5_readable_without_torch(tmp_path):
    path = train(TrainConfig(**LOG), tmp_path / "r.h5", progress=False, log=quiet)
    expected = read_weights(path)
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import h5py\n"
        f"with h5py.File({str(path)!r}, 'r') as f:\n"
        "    w = f['weights']\n"
        "    print(json.dumps({'steps': w['snapshots/step'][()].tolist(),\n"
        "                      'final': w['final/layer2'][()].tolist(),\n"
        "                      'snap': w['snapshots/output'][()][3].tolist()}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    read = json.loads(out.stdout)
    assert read["steps"] == expected.steps.tolist()
    np.testing.assert_array_equal(np.array(read["final"], dtype=np.float32), expected.final["layer2"])
    np.testing.assert_array_equal(np.array(read["snap"], dtype=np.float32), expected.snapshots["output"][3])


def test_resumed_run_gives_the_snapshots_of_an_uninterrupted_one(tmp_path):
    config = TrainConfig(**{**LOG, "epochs": 3, "checkpoint_every": 4})
    whole = read_weights(train(config, tmp_path / "whole.h5", progress=False, log=quiet))
    broken = tmp_path / "broken.h5"
    # Killed after 15 steps: the file is as of the last checkpoint (step 12), so it holds the snapshots taken
    # before step 12; the resumed run takes those of steps 12 and later.
    train(config, broken, progress=False, log=quiet, stop_after_steps=15)
    partial = read_weights(broken)
    assert partial.steps.tolist() == [0, 1, 2, 3, 6, 10] and not partial.final
    resume(broken, progress=False, log=quiet, stop_after_steps=7)  # killed again, at step 19 (checkpoint 16)
    resume(broken, progress=False, log=quiet)
    again = read_weights(broken)
    assert again.steps.tolist() == whole.steps.tolist() == [0, 1, 2, 3, 6, 10, 18]
    for part in ("initial", "final", "snapshots"):
        first, second = getattr(whole, part), getattr(again, part)
        assert first.keys() == second.keys()
        for name in first:
            np.testing.assert_array_equal(first[name], second[name], err_msg=f"{part}/{name}")


def test_read_weights_refuses_a_run_file_without_weights(tmp_path):
    path = tmp_path / "old.h5"
    RunFile(path, {"config": TrainConfig().to_dict()}).flush()
    with pytest.raises(RunFileError, match="holds no weights"):
        read_weights(path)


# -- the cross-seed cosine ------------------------------------------------------------------------------------------
def fake_run(path, seed: int, final: dict, steps: list[int], snapshots: dict, **config: object):
    """A run file holding hand-made weights (initial = final / 2) and the configuration of a seed."""
    run = RunFile(path, {"config": TrainConfig(seed=seed, **config).to_dict(), "status": "completed"})
    run.trees["weights"] = {"initial": {k: v / 2 for k, v in final.items()}, "final": final,
                            "snapshots": {"step": np.array(steps, dtype=np.int64), **snapshots}}
    run.flush()
    return path


def test_cross_seed_on_hand_made_weights(tmp_path):
    w = np.array([[1.0, 2.0], [0.0, -1.0]], dtype=np.float32)  # |w|² = 6
    x = np.array([[3.0, 0.0, 4.0]], dtype=np.float32)  # |x|² = 25
    u = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)  # |u|² = 2, w·u = 2
    a = fake_run(tmp_path / "a.h5", 0, {"layer1": w, "output": x}, [0, 1, 10],
                 {"layer1": np.stack([w, w, u]), "output": np.stack([x, x, x])})
    b = fake_run(tmp_path / "b.h5", 1, {"layer1": 2 * w, "output": -x}, [0, 10],
                 {"layer1": np.stack([w, -w]), "output": np.stack([x, x])})
    result = cross_seed([a, b])
    assert result.seeds == (0, 1)
    assert result.final["layer1"] == pytest.approx(1.0) and result.final["output"] == pytest.approx(-1.0)
    total = (2 * 6 - 25) / (math.sqrt(6 + 25) * math.sqrt(4 * 6 + 25))
    assert result.final["total"] == pytest.approx(total)
    assert result.initial == pytest.approx(result.final)  # halving every weight changes no cosine
    assert result.steps.tolist() == [0, 10]  # the steps both runs hold
    np.testing.assert_allclose(result.course["layer1"], [1.0, -2 / math.sqrt(12)], rtol=1e-6)  # cos(u, -w)
    np.testing.assert_allclose(result.course["output"], [1.0, 1.0])
    total_10 = (-2 + 25) / (math.sqrt(2 + 25) * math.sqrt(6 + 25))
    np.testing.assert_allclose(result.course["total"], [1.0, total_10], rtol=1e-6)


def test_cross_seed_refuses_what_is_not_a_set_of_seeds(tmp_path):
    w = {"layer1": np.ones((2, 2), dtype=np.float32)}
    snap = {"layer1": np.ones((1, 2, 2), dtype=np.float32)}
    a = fake_run(tmp_path / "a.h5", 0, w, [0], snap)
    with pytest.raises(ValueError, match="at least 2 runs, got 1"):
        cross_seed([a])
    same = fake_run(tmp_path / "same.h5", 0, w, [0], snap)
    with pytest.raises(ValueError, match=r"seeds \[0, 0\] repeat"):
        cross_seed([a, same])
    other = fake_run(tmp_path / "other.h5", 1, w, [0], snap, method="bp", lr=0.1)
    with pytest.raises(ValueError, match=r"differs from .* in: lr = 0.0001 vs 0.1; method = 'dfa' vs 'bp'"):
        cross_seed([a, other])
    shape = fake_run(tmp_path / "shape.h5", 2, {"layer1": np.ones((3, 2), dtype=np.float32)}, [0],
                     {"layer1": np.ones((1, 3, 2), dtype=np.float32)})
    with pytest.raises(ValueError, match=r"layer 'layer1' has shape \(3, 2\) in run 1 and \(2, 2\) in run 0"):
        cross_seed([a, shape])


def test_report_shows_the_cross_seed_cosine_of_a_sweep(tmp_path, capsys):
    grid = {"base": {**LOG, "hidden": list(LOG["hidden"]), "epochs": 1}, "seeds": [0, 1, 2],
            "grid": {"method": ["dfa", "bp"]}}
    folder = tmp_path / "sweep"
    optodfa.sweep.run(grid, folder, workers=0, progress=False, tensorboard=False, figures=False, log=quiet)
    text = report(folder)
    assert "Cross-seed cosine of the final weights, per layer" in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| dfa")
             or line.startswith("| bp")}
    for method in ("dfa", "bp"):
        cells = [c.strip() for c in lines[method].split("|")[1:-1]]
        assert cells[1] == "0,1,2" and len(cells) == 2 + 4  # method, seeds, layer1, layer2, output, total
        runs = sorted((folder / "runs").glob("*.h5"))
        paths = [p for p in runs if RunFile.load(p, checkpoint=False).attrs["method"] == method]
        expected = cross_seed(paths).final
        assert [float(c) for c in cells[2:]] == pytest.approx(
            [round(expected[k], 3) for k in ("layer1", "layer2", "output", "total")], abs=1e-3)
    assert main(["report", str(folder)]) == 0
    assert "Cross-seed cosine" in capsys.readouterr().out


def test_a_failed_run_resumes_to_the_snapshots_of_an_uninterrupted_one(tmp_path, monkeypatch):
    config = TrainConfig(**{**LOG, "epochs": 3, "checkpoint_every": 4})
    whole = read_weights(train(config, tmp_path / "whole.h5", progress=False, log=quiet))
    original = optodfa.train.record_snapshot

    def fail_after_step_18(trees, step, weights):
        original(trees, step, weights)
        if step == 18:  # after the snapshot, past the checkpoint of step 16
            raise RuntimeError("injected failure")

    monkeypatch.setattr(optodfa.train, "record_snapshot", fail_after_step_18)
    broken = tmp_path / "broken.h5"
    with pytest.raises(RuntimeError, match="injected failure"):
        train(config, broken, progress=False, log=quiet)
    assert RunFile.load(broken, checkpoint=False).attrs["status"] == "failed"
    assert read_weights(broken).steps.tolist() == [0, 1, 2, 3, 6, 10]  # as of the checkpoint at step 16
    monkeypatch.setattr(optodfa.train, "record_snapshot", original)
    resume(broken, progress=False, log=quiet)
    again = read_weights(broken)
    assert again.steps.tolist() == whole.steps.tolist()
    for name in whole.snapshots:
        np.testing.assert_array_equal(whole.snapshots[name], again.snapshots[name])
        np.testing.assert_array_equal(whole.final[name], again.final[name])


# -- optodfa train --model residual ---------------------------------------------------------------------------------
def test_cli_trains_a_residual_mlp_one_step(tmp_path, capsys):
    out = tmp_path / "residual.h5"
    assert main(["train", "--dataset", "digits", "--model", "residual", "--hidden", "32,32,32", "--limit", "64",
                 "--batch-size", "64", "--epochs", "1", "--alignment-every", "1", "--no-progress",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    run = RunFile.load(out)
    assert run.attrs["status"] == "completed" and run.series["metrics/step"] == [1.0]
    assert set(run.attrs["model"]["hidden"]) == {"stem", "block1", "block2"}
    assert set(k.rsplit("/", 1)[1] for k in run.series if k.startswith("alignment/gradient/")) == {
        "stem", "block1", "block2", "total"}
    weights = read_weights(out)
    assert set(weights.final) == {"stem", "output"}  # the blocks' points name no layer, so no weight by layer
    assert not np.array_equal(weights.final["stem"], weights.initial["stem"])  # the one step trained the stem


def test_cli_refuses_residual_widths_that_differ(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--model", "residual", "--hidden", "32,16", "--out",
                 str(tmp_path / "r.h5")]) == 2
    assert "model 'residual' takes hidden = the stem's width then one equal width" in capsys.readouterr().err
    with pytest.raises(ValueError, match="got 32"):
        TrainConfig(model="residual", hidden=(32,))
