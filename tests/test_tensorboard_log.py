"""TensorBoard as a view of the run file: `train --tensorboard`, and a resumed run writes each value once."""

from __future__ import annotations

import pytest

from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.runlog import RunFile
from optodfa.train import resume, train

pytest.importorskip("tensorboard", reason="the TensorBoard view needs the tensorboard extra (make installs it)")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SMALL = {"dataset": "digits", "hidden": (16,), "epochs": 2, "batch_size": 50, "limit": 300, "alignment_every": 2,
         "checkpoint_every": 3}


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_train_with_tensorboard_mirrors_every_series_of_the_run_file(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--hidden", "16", "--epochs", "2", "--limit", "300",
                 "--batch-size", "50", "--alignment-every", "2", "--out", str(tmp_path / "r.h5"), "--no-progress",
                 "--tensorboard", str(tmp_path / "tb")])
    assert code == 0
    run, logged = RunFile.load(tmp_path / "r.h5"), scalars(tmp_path / "tb")
    mirrored = set(run.series) - {"alignment/step", "metrics/step"}
    assert {"metrics/test_accuracy", "alignment/gradient/layer1", "alignment/gradient/total",
            "device/frames"} <= mirrored
    assert set(logged) == mirrored
    for name in mirrored:
        steps = run.series["alignment/step" if name.startswith(("alignment/", "fidelity/")) else "metrics/step"]
        assert [s for s, _ in logged[name]] == [int(s) for s in steps], name
        assert [v for _, v in logged[name]] == pytest.approx(run.series[name], rel=1e-6), name


def test_a_resumed_run_writes_each_value_once(tmp_path):
    config = TrainConfig(**SMALL)
    path, folder = tmp_path / "r.h5", tmp_path / "tb"
    train(config, path, progress=False, log=lambda _: None, tensorboard=folder, stop_after_steps=8)  # as if killed
    resume(path, progress=False, log=lambda _: None, tensorboard=folder)
    run, logged = RunFile.load(path), scalars(folder)
    assert len(logged["metrics/test_accuracy"]) == 2
    assert [s for s, _ in logged["alignment/gradient/total"]] == [int(s) for s in run.series["alignment/step"]]
