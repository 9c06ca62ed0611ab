"""The training loop end to end on small data: determinism, resume, non-finite batches, the run file."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from training_process import start_and_signal

import optodfa
import optodfa.train
from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.data import add_label_noise, load_dataset
from optodfa.device import NonFiniteError
from optodfa.report import summary_table
from optodfa.runlog import RunFile
from optodfa.seeding import derive_seed
from optodfa.train import resume, train

SMALL = {"dataset": "digits", "hidden": (24, 16), "epochs": 2, "batch_size": 64, "lr": 3e-3,
         "alignment_every": 5, "limit": 600}


def quiet(*_: object) -> None:
    pass


def run(tmp_path, name: str, **changes: object) -> RunFile:
    path = train(TrainConfig(**{**SMALL, **changes}), tmp_path / name, progress=False, log=quiet)
    return RunFile.load(path)


def same_series(a: RunFile, b: RunFile) -> None:
    assert a.series.keys() == b.series.keys()
    for name in a.series:
        if name != "metrics/epoch_seconds":  # wall time is the one thing allowed to differ
            assert a.series[name] == b.series[name], name


def test_run_file_layout(tmp_path):
    result = run(tmp_path, "r.h5")
    attrs = result.attrs
    assert (attrs["method"], attrs["device"], attrs["dataset"], attrs["seed"], attrs["feedback_seed"]) == (
        "dfa", "digital", "digits", 0, 0)
    assert attrs["status"] == "completed" and attrs["config"]["hidden"] == [24, 16]
    assert {"optodfa", "torch", "numpy", "h5py", "python"} <= set(attrs["versions"])
    accuracy = result.series["metrics/test_accuracy"]
    assert len(accuracy) == 2 and all(0 <= a <= 1 for a in accuracy)
    for layer in ("layer1", "layer2", "total"):
        assert len(result.series[f"alignment/gradient/{layer}"]) == len(result.series["alignment/step"]) == 4
    assert len(result.series["alignment/weight/output"]) == 4
    assert len(result.series["device/frames"]) == 2


def test_same_seeds_give_bit_identical_runs(tmp_path):
    same_series(run(tmp_path, "a.h5"), run(tmp_path, "b.h5"))


def test_init_seed_and_feedback_seed_are_separate(tmp_path):
    base = run(tmp_path, "a.h5", epochs=1)
    other_init = run(tmp_path, "b.h5", epochs=1, seed=1)
    other_feedback = run(tmp_path, "c.h5", epochs=1, feedback_seed=1)
    key = "alignment/gradient/total"
    assert base.series[key][0] != other_init.series[key][0]
    assert base.series[key][0] != other_feedback.series[key][0]


@pytest.mark.parametrize("checkpoint_every", [0, 3])
def test_resume_ends_with_the_same_numbers(tmp_path, checkpoint_every):
    config = TrainConfig(**{**SMALL, "epochs": 3, "checkpoint_every": checkpoint_every})
    full = RunFile.load(train(config, tmp_path / "full.h5", progress=False, log=quiet))
    # 10 batches per epoch: stopping after 17 steps is a kill in the middle of epoch 2.
    train(config, tmp_path / "killed.h5", progress=False, stop_after_steps=17, log=quiet)
    killed = RunFile.load(tmp_path / "killed.h5")
    assert killed.attrs["status"] == "running"
    assert len(killed.series["metrics/test_accuracy"]) == 1
    resumed = RunFile.load(resume(tmp_path / "killed.h5", progress=False, log=quiet))
    assert resumed.attrs["status"] == "completed"
    same_series(full, resumed)


def test_bp_method_trains(tmp_path):
    result = run(tmp_path, "bp.h5", method="bp", epochs=3)
    assert result.series["metrics/test_accuracy"][-1] > 0.5


@pytest.fixture
def poisoned_digits(monkeypatch):
    """Digits with one NaN training sample: the batch that holds it has a non-finite error."""

    def load(name, **kwargs):
        data = load_dataset(name, **kwargs)
        x = data.x_train.clone()
        x[5, 0] = float("nan")
        return dataclasses.replace(data, x_train=x)

    monkeypatch.setattr(optodfa.train, "load_dataset", load)


def test_nonfinite_raise_names_the_step(tmp_path, poisoned_digits):
    with pytest.raises(NonFiniteError, match="training step [0-9]+: error batch holds [0-9]+ non-finite"):
        run(tmp_path, "nan.h5", alignment_every=0)
    failed = RunFile.load(tmp_path / "nan.h5")
    assert failed.series == {}  # the file holds what was checkpointed: nothing yet
    assert failed.attrs["status"] == "failed" and failed.attrs["error_type"] == "NonFiniteError"
    assert failed.attrs["error"].startswith(f"NonFiniteError: training step {failed.attrs['error_step']}: ")


def test_nonfinite_skip_counts_batches(tmp_path, poisoned_digits):
    result = run(tmp_path, "nan.h5", on_nonfinite="skip", alignment_every=0)
    assert result.series["metrics/skipped_batches"] == [1.0, 2.0]  # one poisoned batch per epoch
    assert all(np.isfinite(result.series["metrics/train_loss"]))


def test_sigkill_keeps_the_file_readable_and_resumable(tmp_path):
    """A real kill -9 in the middle of training: the file holds the last flush and resumes to the same numbers."""
    args = ["--dataset", "digits", "--hidden", "16", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
            "--alignment-every", "10", "--checkpoint-every", "7", "--no-progress"]
    full = tmp_path / "full.h5"
    assert main(["train", *args, "--out", str(full)]) == 0
    killed = tmp_path / "killed.h5"
    start_and_signal(args, killed, signal.SIGKILL)
    state = RunFile.load(killed)
    if state.attrs["status"] == "completed":
        pytest.fail("the run finished before it could be killed; make it longer")
    resume(killed, progress=False, log=quiet)
    same_series(RunFile.load(full), RunFile.load(killed))


def test_run_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["optodfa", "train", "--out", "r.h5"])
    attrs = run(tmp_path, "r.h5", epochs=1).attrs
    assert attrs["command"] == ["optodfa", "train", "--out", "r.h5"]
    started = datetime.datetime.fromisoformat(attrs["started_utc"].replace("Z", "+00:00"))
    ended = datetime.datetime.fromisoformat(attrs["ended_utc"].replace("Z", "+00:00"))
    assert started.utcoffset() == datetime.timedelta(0) and started <= ended
    versions = attrs["versions"]
    assert versions["torch"] == torch.__version__ and versions["torch_cuda"] == torch.version.cuda
    commit = subprocess.run(["git", "-C", os.path.dirname(optodfa.__file__), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if commit:  # a git checkout: the commit is recorded (with -dirty when tracked files changed)
        assert versions["git_commit"].removesuffix("-dirty") == commit
    else:
        assert versions["git_commit"] is None


class FailingProjection:
    """Wraps a projector's ``project`` so that its ``fail_at``-th call raises, as a device fault would."""

    def __init__(self, project, fail_at: int) -> None:
        self.project, self.fail_at, self.calls = project, fail_at, 0

    def __call__(self, error):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("device fault: laser interlock open")
        return self.project(error)


@pytest.fixture
def fault_at(monkeypatch):
    """``fault_at(n)``: the projector of the next training fails at its n-th projection."""
    faults = []

    def arm(n: int) -> None:
        real = optodfa.train.convert

        def convert(*args, **kwargs):
            model, report = real(*args, **kwargs)
            fault = FailingProjection(model.projector.project, n)
            model.projector.project = fault
            faults.append((model, fault))
            return model, report

        monkeypatch.setattr(optodfa.train, "convert", convert)

    arm.faults = faults
    return arm


def test_a_run_time_failure_is_recorded_and_resumable(tmp_path, fault_at, monkeypatch):
    config = TrainConfig(**{**SMALL, "epochs": 3, "alignment_every": 0})
    full = RunFile.load(train(config, tmp_path / "full.h5", progress=False, log=quiet))
    fault_at(25)  # 10 batches per epoch: the 25th projection is in epoch 3
    with pytest.raises(OSError, match="laser interlock open"):
        train(config, tmp_path / "failed.h5", progress=False, log=quiet)
    model, _ = fault_at.faults[-1]
    failed = RunFile.load(tmp_path / "failed.h5")
    attrs = failed.attrs
    assert attrs["status"] == "failed" and attrs["error"] == "OSError: device fault: laser interlock open"
    assert attrs["error_type"] == "OSError" and attrs["error_step"] == model.step == 25 and attrs["ended_utc"]
    assert failed.checkpoint[1]["epoch"] == 2  # everything up to the last checkpoint, nothing after it
    assert failed.lengths() == failed.checkpoint[1]["series_lengths"]
    assert len(failed.series["metrics/test_accuracy"]) == 2
    assert "failed at step 25: OSError: device fault" in summary_table(tmp_path / "failed.h5")

    monkeypatch.undo()  # the device is healthy again
    resumed = RunFile.load(resume(tmp_path / "failed.h5", progress=False, log=quiet))
    assert resumed.attrs["status"] == "completed" and "error" not in resumed.attrs
    assert resumed.attrs["failures"][0]["error_step"] == 25
    same_series(full, resumed)


def test_a_failure_before_the_first_checkpoint_keeps_no_series(tmp_path, fault_at):
    fault_at(3)
    with pytest.raises(OSError, match="device fault"):
        run(tmp_path, "early.h5")
    failed = RunFile.load(tmp_path / "early.h5")
    assert failed.attrs["status"] == "failed" and failed.series == {} and failed.checkpoint is None


def test_resuming_a_completed_run_changes_nothing(tmp_path):
    path = train(TrainConfig(**{**SMALL, "epochs": 1}), tmp_path / "done.h5", progress=False, log=quiet)
    before = path.read_bytes()
    lines = []
    assert resume(path, progress=False, log=lines.append) == path
    assert path.read_bytes() == before and lines == [f"{path} is already completed; nothing to resume"]


# -- the reference-faithful settings (issue 9) ---------------------------------------------------------------------
TINY = {"dataset": "digits", "hidden": (16,), "epochs": 1, "batch_size": 50, "limit": 200, "alignment_every": 2}


def tiny(tmp_path, name: str, **changes: object) -> RunFile:
    path = train(TrainConfig(**{**TINY, **changes}), tmp_path / name, progress=False, log=quiet)
    return RunFile.load(path)


def final_weights(result: RunFile) -> dict[str, torch.Tensor]:
    return dict(result.checkpoint[0]["model"])


def test_sum_reduction_is_mean_reduction_with_lr_times_batch_size(tmp_path):
    mean = tiny(tmp_path, "mean.h5", optimizer="sgd-plain", lr=0.05)
    summed = tiny(tmp_path, "sum.h5", optimizer="sgd-plain", lr=0.05 / 50, loss_reduction="sum")
    other = tiny(tmp_path, "sum-same-lr.h5", optimizer="sgd-plain", lr=0.05, loss_reduction="sum")
    assert summed.attrs["config"]["loss_reduction"] == "sum"
    for name, weight in final_weights(mean).items():
        torch.testing.assert_close(final_weights(summed)[name], weight, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(final_weights(other)["1.weight"], final_weights(mean)["1.weight"])
    # the recorded training loss stays a per-sample mean, comparable with a mean-reduced run
    assert summed.series["metrics/train_loss"] == pytest.approx(mean.series["metrics/train_loss"], rel=1e-4)


def test_sgd_plain_is_sgd_with_momentum_zero(tmp_path):
    plain = tiny(tmp_path, "plain.h5", optimizer="sgd-plain", lr=0.05)
    zero = tiny(tmp_path, "zero.h5", optimizer="sgd", momentum=0.0, lr=0.05)
    assert plain.attrs["config"]["momentum"] == 0.0
    for name, weight in final_weights(plain).items():
        assert torch.equal(final_weights(zero)[name], weight), name


def test_feedback_uniform_and_feedback_file_reach_the_digital_device(tmp_path):
    uniform = tiny(tmp_path, "u.h5", feedback="uniform")
    assert uniform.attrs["device_description"]["distribution"] == "uniform"
    assert uniform.attrs["config"]["feedback"] == "uniform"
    same = tiny(tmp_path, "u-set.h5", overrides={"distribution": "uniform"})
    same_series(uniform, same)  # the flag is the device override, nothing more
    matrix = np.random.default_rng(5).standard_normal((16, 10))
    np.save(tmp_path / "B.npy", matrix)
    with h5py.File(tmp_path / "B.h5", "w") as file:
        file["runs/W"] = matrix
    from_npy = tiny(tmp_path, "f.h5", feedback_file=str(tmp_path / "B.npy"))
    from_h5 = tiny(tmp_path, "g.h5", feedback_file=f"{tmp_path / 'B.h5'}:runs/W")
    described = from_npy.attrs["device_description"]
    assert described["matrix_sha256"] == hashlib.sha256((tmp_path / "B.npy").read_bytes()).hexdigest()
    assert from_h5.attrs["device_description"]["matrix_dataset"] == "runs/W"
    same_series(from_npy, from_h5)  # the same B, whichever file held it
    assert from_npy.series["alignment/gradient/total"] != uniform.series["alignment/gradient/total"]


def test_a_feedback_file_of_the_wrong_shape_fails_before_a_run_file_exists(tmp_path):
    np.save(tmp_path / "B.npy", np.zeros((15, 10)))
    with pytest.raises(ValueError, match=r"must have shape \(D, d\) = \(16, 10\).*got \(15, 10\)"):
        tiny(tmp_path, "r.h5", feedback_file=str(tmp_path / "B.npy"))
    assert not (tmp_path / "r.h5").exists()


def test_label_noise_on_test_labels_keeps_the_training_labels(tmp_path):
    clean = load_dataset("digits", limit=200)
    sessions = {}
    for test in (False, True):
        config = TrainConfig(**{**TINY, "label_noise": 0.5, "label_noise_test": test})
        sessions[test] = optodfa.train.build_session(config, tmp_path / f"{test}.h5")
        sessions[test].lock.release()
    expected = add_label_noise(clean.y_train, 0.5, 10, seed=derive_seed(0, 3))  # what runs drew before
    assert torch.equal(sessions[False].data.y_train, expected)
    assert torch.equal(sessions[True].data.y_train, expected)
    assert torch.equal(sessions[False].data.y_test, clean.y_test)
    changed = float((sessions[True].data.y_test != clean.y_test).float().mean())
    assert 0.35 < changed < 0.55  # p (1 - 1/10) = 0.45 of 360 test labels; ±0.1 is over 3.8 standard errors


def test_input_size_and_cnn_model(tmp_path):
    small = tiny(tmp_path, "s.h5", input_size=4)
    assert final_weights(small)["1.weight"].shape == (16, 16)  # 4 x 4 pixels in
    conv = tiny(tmp_path, "c.h5", model="cnn", hidden=(4, 6), activation="relu", bias=False)
    assert conv.attrs["model"]["hidden"] == {"layer1": [4, 8, 8], "layer2": [6, 8, 8]}
    assert final_weights(conv)["0.weight"].shape == (4, 1, 3, 3)
    assert all(0 <= a <= 1 for a in conv.series["metrics/test_accuracy"])
    assert len(conv.series["alignment/gradient/layer2"]) == 2
