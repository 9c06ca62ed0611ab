"""The command line: train, report, devices, and its errors (each leaves no file behind)."""

from __future__ import annotations

import argparse
import errno
import os
import re
import subprocess
import sys

import pytest
import torch

import optodfa
import optodfa.runlog
import optodfa.train
from optodfa.cli import build_parser, main, parse_settings
from optodfa.report import summary_table
from optodfa.validation import ResourceError, TorchDeviceError, check_memory, check_torch_device

TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--limit", "300", "--no-progress",
        "--alignment-every", "2"]


def test_train_prints_table_writes_png_and_report_repeats_it(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--device", "digital", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "r.png").stat().st_size > 0
    table = summary_table(out)
    assert table in printed
    assert "test accuracy (final)" in table and "gradient alignment layer1" in table
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == table


def test_devices_lists_builtins(capsys):
    assert main(["devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert "digital" in names and "opu-sim" in names
    assert all("[" in line for line in lines)


@pytest.mark.parametrize(("args", "match"), [
    (["--device", "nope"], "unknown device 'nope'; known devices: .*digital"),
    (["--device", "digital", "--set", "colour=blue"], "unknown key.*'colour'.*allowed: distribution"),
    (["--device", "digital", "--set", "novalue"], "--set expects KEY=VALUE"),
    (["--hidden", "8,x"], "hidden widths must be comma-separated positive integers"),
])
def test_bad_train_input_fails_cleanly(tmp_path, capsys, args, match):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


def test_missing_dataset_names_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTODFA_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--dataset", "kmnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "kmnist" in err and "download" in err
    assert not out.exists()


def test_unwritable_output_path(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "dir" / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_train_needs_out_or_resume(capsys):
    assert main(["train", *TINY]) == 2
    assert "train needs --out RUN.h5" in capsys.readouterr().err


def test_parse_settings():
    assert parse_settings(["camera.bits=4", " readout.mode = intensity "]) == {"camera.bits": "4",
                                                                              "readout.mode": "intensity"}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        parse_settings(["=3"])


# -- one clear line for every error --------------------------------------------------------------------------------
def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_torch_device_cuda_without_cuda_is_one_line_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--torch-device", "cuda", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert re.fullmatch(r"optodfa train: error: torch device 'cuda' needs CUDA, but this torch .* was built "
                        r"without CUDA; use --torch-device cpu or install a CUDA build", line) or \
        "CUDA is not available" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("device", "match"), [
    ("gpu", "unknown torch device 'gpu'; expected 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("cuda:99", "cuda:99"),
    ("", "torch_device must be a string|torch device must be a string"),
])
def test_bad_torch_device(tmp_path, capsys, device, match):
    assert main(["train", *TINY, "--torch-device", device, "--out", str(tmp_path / "r.h5")]) == 2
    assert re.search(match, one_error_line(capsys))


def test_check_torch_device_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(TorchDeviceError, match=r"'cuda:2' does not exist: this machine has 2 CUDA device\(s\) "
                                               r"\(cuda:0 to cuda:1\)"):
        check_torch_device("cuda:2")
    assert check_torch_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TorchDeviceError, match="CUDA is not available on this machine"):
        check_torch_device("cuda")


def test_disk_full_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(optodfa.runlog.os, "fsync", full)
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 1
    line = one_error_line(capsys)
    assert line.startswith("optodfa train: error: cannot write run file") and "No space left on device" in line
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_corrupt_run_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "r.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 50)
    for argv in (["report", str(bad)], ["train", "--resume", str(bad)]):
        assert main(argv) == 2
        assert re.search(r"error: .*r\.h5", one_error_line(capsys))


def test_unexpected_exception_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside\nspanning two lines")

    monkeypatch.setattr(optodfa.train, "build_session", broken)
    argv = ["train", *TINY, "--out", str(tmp_path / "r.h5")]
    assert main(argv) == 1
    assert one_error_line(capsys) == ("optodfa train: error: internal error: RuntimeError: something inside "
                                      "spanning two lines (this is a bug; rerun with --debug for the traceback)")
    assert main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith("for the traceback)")
    assert main(["--debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_memory_estimate_refuses_before_allocating(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTODFA_MEMORY_LIMIT", "2G")  # below any real machine
    assert main(["train", *TINY, "--device", "opu-twin", "--set", "probes=1000000000",
                 "--out", str(tmp_path / "r.h5")]) == 2
    assert re.fullmatch(r"optodfa train: error: calibration with probes = 1000000000 \(d = 10, D = 16\) needs "
                        r"[0-9.]+ GiB; this machine has 2 GiB available .*", one_error_line(capsys))
    assert main(["train", *TINY, "--hidden", "200000,200000", "--out", str(tmp_path / "r.h5")]) == 2
    assert re.search(r"training hidden = 200000,200000 at batch size 128 on digits needs [0-9.]+ GiB; this machine "
                     r"has 2 GiB", one_error_line(capsys))
    assert os.listdir(tmp_path) == []


def test_check_memory_message():
    with pytest.raises(ResourceError, match=r"^probes needs 74.5 GiB; this machine has 23 GiB available"):
        check_memory("probes", 80e9, available=23 * 2**30)
    check_memory("probes", 1e9, available=23 * 2**30)


def test_usage_errors_are_one_line_exit_2(capsys):
    assert main(["train", "--epochs", "x"]) == 2
    assert one_error_line(capsys) == ("optodfa train: error: argument --epochs: invalid int value: 'x' "
                                      "(see `optodfa train --help`)")
    assert main(["nope"]) == 2
    assert "invalid choice: 'nope'" in one_error_line(capsys)


# -- --resume with flags -------------------------------------------------------------------------------------------
def test_resume_with_conflicting_flags_names_them(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3", "--lr", "0.5"]) == 2
    line = one_error_line(capsys)
    assert re.search(r"conflict with it: epochs = 3 \(stored: 1\); lr = 0.5 \(stored: 0.0001\)", line)
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "other.h5")]) == 2
    assert "names another one" in one_error_line(capsys)
    # flags that agree with the stored configuration are fine
    assert main(["train", "--resume", str(out), "--dataset", "digits", "--hidden", "16", "--no-progress"]) == 0


# -- version, python -m, help -----------------------------------------------------------------------------------------
def test_version_and_python_m(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"optodfa {optodfa.__version__}"
    done = subprocess.run([sys.executable, "-m", "optodfa", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"optodfa {optodfa.__version__}"


def test_every_help_shows_defaults():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    assert set(subparsers) == {"train", "report", "devices", "demo", "sweep"}
    for name, sub in [("optodfa", parser), *subparsers.items()]:
        assert sub.formatter_class is argparse.ArgumentDefaultsHelpFormatter, name
    text = " ".join(subparsers["train"].format_help().split())
    assert "(default: 128)" in text and "(default: cpu)" in text
    assert "(default: list)" in " ".join(subparsers["devices"].format_help().split())


# -- the reference-faithful settings (issue 9) ---------------------------------------------------------------------
def test_help_lists_the_new_train_flags_with_their_defaults():
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train_parser.format_help().split())
    for flag, default in [("--feedback", "gaussian"), ("--loss-reduction", "mean"), ("--input-size", "None"),
                          ("--feedback-file", "None"), ("--optimizer", "adam"), ("--model", "mlp")]:
        assert re.search(rf"{flag} .*?\(default: {default}\)", text), flag
    assert "--label-noise-test" in text and "sgd-plain" in text and "cnn" in text


@pytest.mark.parametrize(("args", "match"), [
    (["--loss-reduction", "max"], r"argument --loss-reduction: invalid choice: 'max'"),
    (["--device", "opu-sim", "--feedback", "uniform"], r"device 'opu-sim' has its own projection"),
    (["--feedback-file", "missing.npy"], r"feedback matrix file 'missing.npy' does not exist"),
    (["--optimizer", "sgd-plain", "--momentum", "0.9"], r"sgd-plain is SGD without momentum; got --momentum 0.9"),
    (["--input-size", "0"], r"input_size must be .*got 0"),
    (["--feedback", "uniform", "--set", "distribution=gaussian"], r"set the same thing"),
])
def test_bad_new_train_flags_fail_in_one_line(tmp_path, capsys, args, match):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 2
    assert re.search(match, one_error_line(capsys))
    assert not out.exists()


def test_new_flags_reach_the_run_file_and_resume_checks_them(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["train", *TINY, "--feedback", "uniform", "--loss-reduction", "sum", "--optimizer", "sgd-plain",
                 "--lr", "0.001", "--input-size", "6", "--label-noise", "0.1", "--label-noise-test",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    config = optodfa.runlog.RunFile.load(out, checkpoint=False).attrs["config"]
    assert {k: config[k] for k in ("feedback", "loss_reduction", "optimizer", "momentum", "input_size",
                                   "label_noise_test")} == {"feedback": "uniform", "loss_reduction": "sum",
                                                            "optimizer": "sgd-plain", "momentum": 0.0,
                                                            "input_size": 6, "label_noise_test": True}
    assert main(["train", "--resume", str(out), "--loss-reduction", "mean", "--input-size", "14"]) == 2
    assert re.search(r"input_size = 14 \(stored: 6\); loss_reduction = 'mean' \(stored: 'sum'\)",
                     one_error_line(capsys))
    assert main(["train", "--resume", str(out), "--feedback", "uniform", "--optimizer", "sgd-plain",
                 "--no-progress"]) == 0


def test_model_cnn_defaults_its_channels(tmp_path, capsys):
    args = build_parser().parse_args(["train", "--model", "cnn"])
    from optodfa.cli import _config_from

    assert _config_from(args).hidden == (16, 32)
    assert _config_from(build_parser().parse_args(["train"])).hidden == (800, 800)
    out = tmp_path / "c.h5"
    assert main(["train", *TINY[:2], "--model", "cnn", "--hidden", "4", "--epochs", "1", "--limit", "100",
                 "--no-progress", "--out", str(out)]) == 0
    assert optodfa.runlog.RunFile.load(out, checkpoint=False).attrs["model"]["hidden"] == {"layer1": [4, 8, 8]}
