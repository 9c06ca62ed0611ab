"""Run files: layout, append-as-you-go, atomic flushes, unwritable paths, checkpoints without pickle."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import torch

from optodfa.integrity import USERBLOCK, seal
from optodfa.runlog import FORMAT, FORMAT_VERSION, RunFile, RunFileError


def test_roundtrip_and_resizable_series(tmp_path):
    path = tmp_path / "r.h5"
    run = RunFile.create(path, {"method": "dfa", "config": {"hidden": [8, 8]}, "seed": 3})
    for value in (0.5, 0.75):
        run.append("metrics/test_accuracy", value)
    run.append("alignment/gradient/layer1", 0.1)
    weight = torch.randn(3, 2)
    original = weight.clone()
    run.set_checkpoint({"model": {"0.weight": weight}, "epoch": 1},
                       {"epoch": 1, "batch": 0, "step": 7, "series_lengths": run.lengths()})
    weight += 1  # the checkpoint is a snapshot: training on does not change it
    run.flush()

    with h5py.File(path, "r") as f:  # any HDF5 reader sees the fixed names, past the seal in the user block
        assert f.userblock_size == USERBLOCK
        data = f["metrics/test_accuracy"]
        assert data.maxshape == (None,) and data.fletcher32
        np.testing.assert_array_equal(data[()], [0.5, 0.75])
        assert f.attrs["method"] == "dfa" and f.attrs["format"] == "optodfa-run" and f.attrs["format_version"] == 2
        np.testing.assert_array_equal(f["checkpoint/model/0.weight"][()], original.numpy())
    loaded = RunFile.load(path)
    assert loaded.attrs["config"] == {"hidden": [8, 8]} and loaded.attrs["seed"] == 3
    assert loaded.series["alignment/gradient/layer1"] == [0.1]
    state, attrs = loaded.checkpoint
    assert torch.equal(state["model"]["0.weight"], original) and state["epoch"] == 1 and attrs["step"] == 7
    assert attrs["series_lengths"] == {"metrics/test_accuracy": 2, "alignment/gradient/layer1": 1}
    assert RunFile.load(path, checkpoint=False).checkpoint is None


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
    with pytest.raises(RunFileError, match="junk.h5' is not an optodfa file"):
        RunFile.load(tmp_path / "junk.h5")
    (tmp_path / "adir.h5").mkdir()
    with pytest.raises(RunFileError, match="adir.h5' is a directory"):
        RunFile.load(tmp_path / "adir.h5")


class Payload:
    """A pickle that, when loaded, creates the folder ``marker``: proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def legacy_file(path, marker, *, sealed: bool) -> None:
    """A run file as optodfa 0.1 wrote it (a pickle in checkpoint/state), optionally with a valid seal."""
    with h5py.File(path, "w", userblock_size=USERBLOCK if sealed else 0) as f:
        f.attrs["config"] = "json:{}"
        f.attrs["status"] = "running"
        if sealed:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
        dataset = f.create_dataset("checkpoint/state", data=np.frombuffer(pickle.dumps(Payload(marker)), np.uint8))
        dataset.attrs["series_lengths"] = "json:{}"
    if sealed:
        seal(path, FORMAT, FORMAT_VERSION)


def test_the_payload_is_live(tmp_path):
    """The test below means something only if its pickle would run code when loaded."""
    pickle.loads(pickle.dumps(Payload(str(tmp_path / "ran"))))
    assert (tmp_path / "ran").is_dir()


@pytest.mark.parametrize(("sealed", "match"), [
    (False, "plain HDF5 file without an optodfa seal: .*pickles, which optodfa no longer loads"),
    (True, "holds a pickled checkpoint .optodfa 0.1.; it is refused because a pickle can run code"),
])
def test_a_pickled_checkpoint_is_never_loaded(tmp_path, sealed, match):
    from optodfa.train import resume

    marker = tmp_path / "ran"
    path = tmp_path / "legacy.h5"
    legacy_file(path, str(marker), sealed=sealed)
    with pytest.raises(RunFileError, match=match):
        RunFile.load(path)
    with pytest.raises(RunFileError, match=match):
        resume(path, progress=False, log=lambda _: None)
    assert not marker.exists()


def test_other_trees_roundtrip_beside_the_series(tmp_path):
    path = tmp_path / "r.h5"
    run = RunFile.create(path, {})
    run.append("metrics/train_loss", 1.0)
    weights = {"initial": {"layer1": torch.randn(4, 3)}, "steps": [0, 10]}
    run.trees["weights"] = weights
    run.flush()
    with h5py.File(path, "r") as f:  # readable without torch: plain datasets named by layer
        np.testing.assert_array_equal(f["weights/initial/layer1"][()], weights["initial"]["layer1"].numpy())
    loaded = RunFile.load(path)
    assert torch.equal(loaded.trees["weights"]["initial"]["layer1"], weights["initial"]["layer1"])
    assert loaded.trees["weights"]["steps"] == [0, 10] and loaded.series == {"metrics/train_loss": [1.0]}
    run.trees["metrics"] = {"x": 1}
    with pytest.raises(ValueError, match="a tree cannot be named 'metrics'"):
        run.flush()
