"""Device faults, injected through a plug-in registered by entry point (tests/plugins/optodfa_faulty.py).

The plug-in is made an installed distribution for each test: a ``.dist-info`` with its entry point beside the
module, on ``sys.path`` — what ``pip install --target`` leaves — so optodfa finds it exactly as it finds any driver.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import h5py
import pytest
import torch

from optodfa.cli import main
from optodfa.device import Acquisition, Counters
from optodfa.faults import DeviceError, FaultPolicy, GuardedDevice, check_acquisition
from optodfa.registry import available_devices, build_projector
from optodfa.runlog import RunFile

PLUGIN = Path(__file__).parent / "plugins" / "optodfa_faulty.py"
TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--limit", "320", "--batch-size", "16",
        "--alignment-every", "0", "--checkpoint-every", "5", "--no-progress", "--device", "faulty",
        "--set", "faults.backoff=1ms"]


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    """Install the fault-injecting plug-in (entry point ``faulty``) for this test; yields its module."""
    site = tmp_path / "site"
    info = site / "optodfa_faulty-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: optodfa-faulty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[optodfa.devices]\nfaulty = optodfa_faulty:build\n")
    shutil.copy(PLUGIN, site / "optodfa_faulty.py")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("OPTODFA_FAULTY", raising=False)
    import optodfa_faulty

    optodfa_faulty.RELEASE.clear()
    yield optodfa_faulty
    optodfa_faulty.RELEASE.set()  # let a hung acquire end


def project(**overrides: str) -> torch.Tensor:
    projector = build_projector("faulty", 5, 37, overrides={"faults.backoff": "1ms", **overrides})
    return projector, projector.project(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)))


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_plugin_registers_by_entry_point(faulty):
    assert available_devices()["faulty"].source == "optodfa_faulty:build"


def test_one_transient_error_is_retried_and_counted(faulty, monkeypatch, tmp_path):
    monkeypatch.setenv("OPTODFA_FAULTY", "once:3")
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    with h5py.File(out, "r") as file:
        assert file.attrs["status"] == "completed"
        assert (int(file["device/faults"][-1]), int(file["device/retries"][-1])) == (1, 1)


def test_a_dead_device_stops_the_run_cleanly_and_it_resumes(faulty, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPTODFA_FAULTY", "after:13")  # acquire 13 is step 13: checkpoints at steps 5 and 10
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "device 'faulty': acquire failed: OSError: camera not responding (after 3 attempt(s)" in line
    assert "error batch" not in line
    run = RunFile.load(out)  # intact: opens, and holds the checkpoint of step 10
    assert run.checkpoint is not None and run.checkpoint[1]["step"] == 10
    monkeypatch.delenv("OPTODFA_FAULTY")  # the device is healthy again
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    with h5py.File(out, "r") as file:
        assert file.attrs["status"] == "completed" and int(file["metrics/step"][-1]) == 20
        assert torch.isfinite(torch.as_tensor(file["metrics/test_accuracy"][:])).all()


def test_final_fault_marks_run_failed(faulty, monkeypatch, tmp_path):
    # Needs train.py to record the failure (the trustfiles helper's change): status, error and step in the file.
    monkeypatch.setenv("OPTODFA_FAULTY", "after:13")
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    with h5py.File(out, "r") as file:
        assert file.attrs["status"] == "failed"
        assert "device 'faulty'" in str(file.attrs["error"]) and int(file.attrs["error_step"]) in (12, 13)


def test_a_hung_acquire_times_out(faulty, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPTODFA_FAULTY", "hang:1")
    started = time.perf_counter()
    with pytest.raises(DeviceError, match=r"device 'faulty': acquire failed: no answer within 0.2 s"):
        project(**{"faults.timeout": "200ms"})
    assert time.perf_counter() - started < 10  # the hang would last 30 s
    faulty.RELEASE.set()
    faulty.RELEASE.clear()
    assert main(["train", *TINY, "--set", "faults.timeout=0.2", "--out", str(tmp_path / "r.h5")]) == 2
    assert "no answer within 0.2 s (faults.timeout)" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("mode", "settings", "match"), [
    ("range", {}, r"counts span \[300, .*\], outside \[0, 255\] of a 8-bit camera"),
    ("nan", {"camera.bits": "unlimited"}, r"counts hold 1 non-finite value\(s\) \(NaN or inf\) out of 1184"),
    ("shape", {}, r"counts have shape \(32, 36\), expected \(32, 37\) \(frames, output_pixels\)"),
    ("type", {}, r"returned tuple, expected an optodfa.device.Acquisition"),
])
def test_bad_acquisitions_raise_a_device_error_naming_the_driver(faulty, monkeypatch, tmp_path, capsys, mode,
                                                                 settings, match):
    monkeypatch.setenv("OPTODFA_FAULTY", f"{mode}:1")
    with pytest.raises(DeviceError, match=r"device 'faulty': acquire failed: " + match) as caught:
        project(**settings)
    assert caught.value.driver == "faulty" and caught.value.call == "acquire"
    args = [f"--set={key}={value}" for key, value in settings.items()]
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 2
    assert "device 'faulty': acquire failed" in one_line(capsys.readouterr().err)
    assert RunFile.load(out).checkpoint is None  # the first step failed: nothing trained was written


def test_faults_count_in_the_projector_and_survive_a_state_round_trip(faulty, monkeypatch):
    monkeypatch.setenv("OPTODFA_FAULTY", "once:1")
    projector, _ = project()
    assert (projector.counters().faults, projector.counters().retries) == (1, 1)
    fresh = build_projector("faulty", 5, 37)
    fresh.load_state_dict(projector.state_dict())
    assert fresh.counters() == projector.counters()


class Flaky:
    """A minimal raw device that fails with its own declared transient error, then works."""

    input_pixels, output_pixels, bit_depth, frame_time_s = 3, 4, 8, 1e-3

    class Glitch(Exception):
        pass

    transient_errors = (Glitch,)
    acquire_timeout_s = None

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def acquire(self, frames, *, reference=False):
        if self.failures:
            self.failures -= 1
            raise Flaky.Glitch("bus reset")
        n = frames.shape[0]
        return Acquisition(torch.zeros(n, 4, dtype=torch.uint8), torch.ones(n))

    def open(self): ...
    def close(self): ...
    def __enter__(self): return self
    def __exit__(self, *exc): ...
    def describe(self): return {"device": "flaky"}
    def counters(self): return Counters()


def test_declared_transient_errors_retry_with_the_set_attempts_and_backoff():
    frames = torch.zeros(2, 3)
    guard = GuardedDevice(Flaky(failures=2), FaultPolicy(attempts=3, backoff_s=0.0))
    assert guard.acquire(frames).counts.shape == (2, 4)
    assert (guard.counters().faults, guard.counters().retries) == (2, 2)
    guard = GuardedDevice(Flaky(failures=2), FaultPolicy(attempts=2, backoff_s=0.0))
    with pytest.raises(DeviceError, match=r"device 'flaky': acquire failed: Glitch: bus reset \(after 2 attempt"):
        guard.acquire(frames)


def test_validation_of_a_good_acquisition_passes_and_scale_is_checked():
    good = Acquisition(torch.full((2, 4), 255, dtype=torch.uint8), torch.ones(2))
    assert check_acquisition(good, frames=2, output_pixels=4, bit_depth=8, driver="x") is good
    with pytest.raises(DeviceError, match=r"intensity_per_count must be finite and positive"):
        check_acquisition(good._replace(intensity_per_count=torch.tensor([1.0, 0.0])), frames=2, output_pixels=4,
                          bit_depth=8, driver="x")
    with pytest.raises(DeviceError, match=r"dtype torch.float32; a 8-bit camera returns an integer dtype"):
        check_acquisition(good._replace(counts=good.counts.float()), frames=2, output_pixels=4, bit_depth=8,
                          driver="x")
