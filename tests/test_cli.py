"""The command line: train, report, devices, and its errors (each leaves no file behind)."""

from __future__ import annotations

import os
import re

import pytest

from optodfa.cli import main, parse_settings
from optodfa.report import summary_table

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
