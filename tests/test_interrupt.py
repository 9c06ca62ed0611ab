"""Signals: SIGINT, SIGTERM and SIGHUP stop training at a step boundary with a checkpoint; resume is bit-identical."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from training_process import start_and_signal

import optodfa.runlog
import optodfa.train
from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.interrupt import Interrupted, StopOnSignals
from optodfa.runlog import RunFile
from optodfa.train import resume, train

ARGS = ["--dataset", "digits", "--hidden", "16", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
        "--alignment-every", "10", "--checkpoint-every", "7", "--no-progress"]
SMALL = {"dataset": "digits", "hidden": (16,), "epochs": 2, "batch_size": 64, "lr": 3e-3, "alignment_every": 3,
         "limit": 600}


def quiet(*_: object) -> None:
    pass


def same_series(a: RunFile, b: RunFile) -> None:
    assert a.series.keys() == b.series.keys()
    for name in a.series:
        if name != "metrics/epoch_seconds":  # wall time is the one thing allowed to differ
            assert a.series[name] == b.series[name], name


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> RunFile:
    out = tmp_path_factory.mktemp("full") / "full.h5"
    assert main(["train", *ARGS, "--out", str(out)]) == 0
    return RunFile.load(out)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_checkpoints_and_resumes_bit_identical(tmp_path, full_run, signum, code):
    """A real `optodfa train` process gets the signal mid-run, says how to resume, and resume matches."""
    killed = tmp_path / "killed.h5"
    returncode, err = start_and_signal(ARGS, killed, signum)
    state = RunFile.load(killed)
    if state.attrs["status"] == "completed":
        pytest.fail("the run finished before the signal came; make it longer")
    assert returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    step = state.checkpoint[1]["step"]
    assert lines[0] == (f"optodfa train: stopped at step {step} ({signal.Signals(signum).name}); continue with "
                        f"`optodfa train --resume {killed}`")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    same_series(full_run, RunFile.load(killed))


def send_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver ``signum`` to this process when training measures alignment at ``step``."""
    original = optodfa.train._record_alignment

    def record(run, model, x, y):
        if model.step == step:
            os.kill(os.getpid(), signum)
        return original(run, model, x, y)

    monkeypatch.setattr(optodfa.train, "_record_alignment", record)


def test_sighup_in_process_stops_at_the_next_step_and_resumes_bit_identical(tmp_path, monkeypatch):
    config = TrainConfig(**SMALL)
    full = RunFile.load(train(config, tmp_path / "full.h5", progress=False, log=quiet))
    send_at_step(monkeypatch, 12, signal.SIGHUP)
    with pytest.raises(Interrupted) as caught:
        train(config, tmp_path / "cut.h5", progress=False, log=quiet)
    assert caught.value.exit_code == 129 and caught.value.step == 13  # the step in flight finishes first
    assert RunFile.load(tmp_path / "cut.h5").checkpoint[1]["step"] == 13
    monkeypatch.undo()
    resume(tmp_path / "cut.h5", progress=False, log=quiet)
    same_series(full, RunFile.load(tmp_path / "cut.h5"))


def test_cli_prints_one_line_and_exits_129_for_sighup(tmp_path, monkeypatch, capsys):
    send_at_step(monkeypatch, 3, signal.SIGHUP)
    out = tmp_path / "r.h5"
    assert main(["train", *ARGS, "--epochs", "1", "--alignment-every", "1", "--out", str(out)]) == 129
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"optodfa train: stopped at step 4 (SIGHUP); continue with `optodfa train --resume {out}`"]


def test_second_signal_stops_at_once_and_leaves_the_file_whole(tmp_path, monkeypatch):
    """The second Ctrl-C lands in the middle of writing the checkpoint: the previous file stays, no temp file."""
    out = tmp_path / "r.h5"
    send_at_step(monkeypatch, 5, signal.SIGINT)  # step 6 finishes, then the stop's checkpoint (step 6) is written
    original_write = optodfa.runlog.RunFile._write
    before: dict[str, object] = {}

    def write(self, path: Path) -> None:
        if not before and self.checkpoint is not None and self.checkpoint[1]["step"] == 6:
            before["series"] = RunFile.load(self.path).series
            before["checkpoint"] = RunFile.load(self.path).checkpoint[1]["step"]
            original_write(self, path)  # half way: the temporary file is written, not yet renamed
            os.kill(os.getpid(), signal.SIGINT)
        original_write(self, path)

    monkeypatch.setattr(optodfa.runlog.RunFile, "_write", write)
    config = TrainConfig(**{**SMALL, "checkpoint_every": 4, "alignment_every": 1})
    with pytest.raises(Interrupted) as caught:
        train(config, out, progress=False, log=quiet)
    assert caught.value.immediate and caught.value.exit_code == 130
    after = RunFile.load(out)
    assert after.series == before["series"] and after.checkpoint[1]["step"] == before["checkpoint"] == 4
    assert sorted(os.listdir(tmp_path)) == [".r.h5.lock", "r.h5"]  # no temporary left; the empty lock file stays


def test_stop_on_signals_restores_handlers_and_never_swallows():
    previous = signal.getsignal(signal.SIGTERM)
    with StopOnSignals() as stop:
        assert signal.getsignal(signal.SIGTERM) != previous
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(Interrupted, match="stopped at once by SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == previous
    # A signal that arrives after the loop last looked is handed to the previous handler on the way out.
    with pytest.raises(KeyboardInterrupt), StopOnSignals():
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
