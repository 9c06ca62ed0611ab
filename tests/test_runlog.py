"""Run files: layout, append-as-you-go, atomic flushes, unwritable paths."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from optodfa.runlog import RunFile, RunFileError


def test_roundtrip_and_resizable_series(tmp_path):
    path = tmp_path / "r.h5"
    run = RunFile.create(path, {"method": "dfa", "config": {"hidden": [8, 8]}, "seed": 3})
    for value in (0.5, 0.75):
        run.append("metrics/test_accuracy", value)
    run.append("alignment/gradient/layer1", 0.1)
    run.set_checkpoint(b"\x00\x01state", {"step": 7, "series_lengths": run.lengths()})
    run.flush()

    with h5py.File(path, "r") as f:  # any HDF5 reader sees the fixed names
        data = f["metrics/test_accuracy"]
        assert data.maxshape == (None,)
        np.testing.assert_array_equal(data[()], [0.5, 0.75])
        assert f.attrs["method"] == "dfa"
    loaded = RunFile.load(path)
    assert loaded.attrs["config"] == {"hidden": [8, 8]} and loaded.attrs["seed"] == 3
    assert loaded.series["alignment/gradient/layer1"] == [0.1]
    state, attrs = loaded.checkpoint
    assert state == b"\x00\x01state" and attrs["step"] == 7
    assert attrs["series_lengths"] == {"metrics/test_accuracy": 2, "alignment/gradient/layer1": 1}


def test_unflushed_values_are_not_on_disk(tmp_path):
    path = tmp_path / "r.h5"
    run = RunFile.create(path, {})
    run.append("metrics/train_loss", 1.0)
    run.flush()
    run.append("metrics/train_loss", 2.0)  # a kill now keeps only what was flushed
    assert RunFile.load(path).series["metrics/train_loss"] == [1.0]


def test_truncate_to_checkpoint_lengths(tmp_path):
    run = RunFile(tmp_path / "r.h5", series={"a": [1, 2, 3], "b": [1.0], "c": [4.0]})
    run.truncate({"a": 2, "b": 1})
    assert run.series == {"a": [1, 2], "b": [1.0]}


def test_failed_flush_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "r.h5"
    run = RunFile.create(path, {"status": "running"})
    run.append("metrics/train_loss", 1.0)
    run.flush()
    run.append("metrics/train_loss", 2.0)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        run.flush()
    monkeypatch.undo()
    assert RunFile.load(path).series["metrics/train_loss"] == [1.0]
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]  # no temporary file left behind


@pytest.mark.parametrize(("name", "match"), [
    ("missing/r.h5", "directory '.*missing' does not exist"),
    ("r.txt", "must end in .h5 or .hdf5, got '.*r.txt'"),
    ("adir.h5", "it is a directory"),
])
def test_unwritable_paths_fail_before_anything_is_written(tmp_path, name, match):
    (tmp_path / "adir.h5").mkdir()
    with pytest.raises(RunFileError, match=match):
        RunFile.create(tmp_path / name, {})
    assert sorted(os.listdir(tmp_path)) == ["adir.h5"]


def test_load_errors(tmp_path):
    with pytest.raises(RunFileError, match="does not exist"):
        RunFile.load(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(RunFileError, match="cannot read run file"):
        RunFile.load(tmp_path / "junk.h5")
