"""Sweeps on a real LocalCluster of two worker processes: results, restarts, faults, TensorBoard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sweep_helpers import tiny

import optodfa.sweep
from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.runlog import RunFile
from optodfa.sweep import GridError, Manifest, SweepError
from optodfa.sweep.manifest import LOCK
from optodfa.train import train

IMPORTS = ["sweep_devices"]  # imported on the workers only; tests/sweep is on their sys.path (spawn inherits it)


def quiet(_: str) -> None:
    pass


def sweep(grid: dict, out: Path, client, **kw):
    return optodfa.sweep.run(grid, out, client=client, progress=False, log=quiet, **kw)


def test_a_sweep_writes_runs_summary_figures_and_tensorboard_then_reruns_nothing(tmp_path, client):
    pytest.importorskip("tensorboard", reason="the TensorBoard view needs the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    grid = {"base": tiny(), "grid": {"set": {"distribution": ["gaussian", "uniform"]}}, "seeds": [0, 1]}
    summary = sweep(grid, tmp_path, client)
    assert summary.counts()["completed"] == 4 and not summary.failed
    assert [row.settings for row in summary.rows] == [{"distribution": "gaussian"}, {"distribution": "uniform"}]
    row = summary.row(distribution="uniform")
    accuracies = [RunFile.load(tmp_path / "runs" / f"distribution=uniform,seed={s}.h5").series[
        "metrics/test_accuracy"][-1] for s in (0, 1)]
    assert row.mean("test_accuracy") == pytest.approx(sum(accuracies) / 2)
    assert row.metrics["test_accuracy"][2] == 2 and row.sd("test_accuracy") >= 0
    assert {"gradient_alignment/layer1", "gradient_alignment/total", "frames", "energy_joules"} <= set(row.metrics)
    assert "| uniform | 2 completed |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.csv").read_text().startswith("distribution,pending,running,completed")
    assert (tmp_path / "figures" / "test_accuracy_vs_distribution.png").stat().st_size > 0

    # TensorBoard: one run per grid run, with the run file's scalars and an hparams entry of its settings
    for run in summary.runs:
        events = EventAccumulator(str(tmp_path / "tensorboard" / run.name))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"metrics/test_accuracy", "alignment/gradient/total", "device/frames",
                "final/test_accuracy"} <= tags
        assert len(events.Scalars("alignment/gradient/layer1")) == len(run.load().series["alignment/step"])
        content = events.PluginTagToContent("hparams")
        start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info for c in content.values()
                     if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("session_start_info"))
        assert start.hparams["distribution"].string_value == run.settings["distribution"]
        assert start.hparams["seed"].number_value == run.settings["seed"]

    attempts = {p.name: p.read_text() for p in (tmp_path / "runs").glob("*.attempts")}
    lines: list[str] = []
    again = optodfa.sweep.run(grid, tmp_path, client=client, progress=False, log=lines.append)
    assert "4 already done, 0 to run" in lines[0]
    assert {p.name: p.read_text() for p in (tmp_path / "runs").glob("*.attempts")} == attempts  # nothing ran
    assert again.rows == summary.rows
    code = main(["report", str(tmp_path)])
    assert code == 0


def test_a_run_that_always_raises_fails_after_one_retry_and_the_others_complete(tmp_path, client, capsys):
    grid = (f'imports = {IMPORTS!r}\nseeds = [0, 1]\n[base]\ndataset = "digits"\nlimit = 200\nhidden = [16]\n'
            f'epochs = 1\nbatch_size = 50\n[variants.good]\ndevice = "digital"\n[variants.bad]\n'
            f'device = "sweep-raise"\n')
    (tmp_path / "g.toml").write_text(grid)
    out = tmp_path / "s"
    address = client.scheduler.address
    code = main(["sweep", str(tmp_path / "g.toml"), "--out", str(out), "--scheduler", address, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    manifest = Manifest.load(out)
    for seed in (0, 1):
        bad, good = manifest.runs[f"bad,seed={seed}"], manifest.runs[f"good,seed={seed}"]
        assert (bad.status, bad.attempts) == ("failed", 2)
        assert "RuntimeError: sweep-raise: this device fails at every projection" in bad.error
        assert good.status == "completed" and good.attempts == 1
    assert "2 of 4 runs failed:" in err and "bad,seed=0: RuntimeError" in err
    assert f"optodfa sweep {tmp_path / 'g.toml'} --out {out}" in err and "failed ones run again" in err


def test_bad_settings_are_invalid_and_diverged_runs_diverged_without_retries(tmp_path, client):
    grid = {"imports": IMPORTS, "base": tiny(optimizer="sgd", lr=1e-2),
            "variants": {"ok": {"device": "digital"}, "bad-delay": {"device": "sweep-slow", "set": {"delay_s": -1}},
                         "exploding": {"device": "sweep-explode"}}}
    summary = sweep(grid, tmp_path, client)
    manifest = Manifest.load(tmp_path)
    invalid, diverged = manifest.runs["bad-delay"], manifest.runs["exploding"]
    assert (invalid.status, invalid.attempts) == ("invalid", 1)
    assert invalid.error == "ValueError: delay_s must be a number of seconds >= 0, got -1.0"
    # the projector's infinite output is caught in the first step, before it reaches the weights
    assert (diverged.status, diverged.attempts, diverged.step) == ("diverged", 1, 1)
    assert manifest.runs["ok"].status == "completed" and not summary.failed
    table = summary.markdown()
    assert "| bad-delay | 1 invalid |" in table and "diverged at step 1" in table


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, client):
    config = tiny(device="sweep-slow", limit=400, batch_size=20, epochs=2, checkpoint_every=4,
                  set={"delay_s": 0.05})
    grid = {"imports": IMPORTS, "base": config, "seeds": [0, 1]}
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=sweep(grid, tmp_path, client)))
    thread.start()
    victim = "seed=0"
    attempts, path = tmp_path / "runs" / f"{victim}.attempts", tmp_path / "runs" / f"{victim}.h5"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the run has a checkpoint on disk, then kill its worker
        if attempts.exists() and path.exists() and RunFile.load(path).checkpoint is not None:
            break
        time.sleep(0.05)
    assert RunFile.load(path).attrs["status"] != "completed", "the run finished before it could be killed"
    pid = int(__import__("json").loads(attempts.read_text().splitlines()[0])["pid"])
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert not thread.is_alive()
    summary = outcome["summary"]
    assert summary.counts()["completed"] == 2 and not summary.failed
    assert Manifest.load(tmp_path).runs[victim].attempts >= 2
    # the rerun resumed from the checkpoint and ends exactly where an uninterrupted run does
    # sweep-slow computes the digital projection, so the digital device gives the same run uninterrupted
    settings = {**Manifest.load(tmp_path).runs[victim].config, "device": "digital", "overrides": {}}
    reference = RunFile.load(train(TrainConfig.from_dict(settings), tmp_path / "reference.h5", progress=False,
                                   log=quiet))
    killed = RunFile.load(path)
    for name in reference.series:
        if name != "metrics/epoch_seconds":
            assert killed.series[name] == reference.series[name], name
    for record in summary.runs:
        assert len(record.load().series["metrics/test_accuracy"]) == 2


def test_an_unreachable_scheduler_is_a_clear_error_within_seconds(tmp_path, capsys):
    started = time.monotonic()
    with pytest.raises(SweepError, match=r"cannot reach the dask scheduler 'tcp://127.0.0.1:9' within 2 s"):
        optodfa.sweep.run({"base": tiny()}, tmp_path, scheduler="tcp://127.0.0.1:9", connect_timeout=2,
                          progress=False, log=quiet)
    assert time.monotonic() - started < 10
    (tmp_path / "g.toml").write_text('[base]\ndataset = "digits"\n')
    code = main(["sweep", str(tmp_path / "g.toml"), "--out", str(tmp_path / "s"), "--scheduler",
                 str(tmp_path / "missing.json")])
    assert code == 2 and "scheduler file" in capsys.readouterr().err


def test_a_folder_holding_a_different_grid_is_refused_with_the_difference(tmp_path):
    sweep({"base": tiny(), "grid": {"lr": [1e-3]}}, tmp_path, None, workers=0)
    with pytest.raises(SweepError, match=r"holds a sweep of a different grid(.|\n)*-\s+0\.001(.|\n)*\+\s+0\.01"):
        sweep({"base": tiny(), "grid": {"lr": [1e-2]}}, tmp_path, None, workers=0)
    with pytest.raises(GridError):  # a bad grid fails before the folder is touched
        sweep({"base": tiny(), "grid": {"lr": []}}, tmp_path / "new", None, workers=0)
    assert not (tmp_path / "new").exists()


def test_two_sweeps_on_one_folder_at_once_are_refused(tmp_path, capsys):
    # The other sweep is another process holding the folder's lock (filelock alone: no torch to import).
    code = "import sys, time, filelock\nwith filelock.FileLock(sys.argv[1]):\n    print('held', flush=True)\n" \
           "    time.sleep(60)\n"
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path / LOCK)], stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            (tmp_path / "g.toml").write_text('[base]\ndataset = "digits"\n')
            code = main(["sweep", str(tmp_path / "g.toml"), "--out", str(tmp_path), "--workers", "0"])
            assert code == 2
            assert "another sweep is running on" in capsys.readouterr().err
        finally:
            holder.kill()
