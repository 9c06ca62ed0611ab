"""Sealed files: any damaged byte of a run file or a calibration record is a RunFileError, before HDF5 sees it."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

import optodfa.integrity
from optodfa.calibration import Calibration, CalibrationFileError, calibrate
from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.integrity import USERBLOCK, RunFileError, seal
from optodfa.registry import build_projector
from optodfa.runlock import RunLock
from optodfa.runlog import FORMAT, FORMAT_VERSION, RunFile
from optodfa.train import resume, train

TINY = TrainConfig(dataset="digits", hidden=(8,), epochs=1, batch_size=32, limit=64, alignment_every=1)


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "r.h5"
    train(TINY, path, progress=False, log=lambda _: None)
    return path


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    projector = build_projector("opu-sim", 4, 16, feedback_seed=0)
    path = tmp_path_factory.mktemp("cal") / "cal.h5"
    calibrate(projector.device, 4, 16, probes=8, repeats=2, exposure_points=2, seed=0).save(path)
    return path


def damaged_copies(source, folder):
    """``(label, path)`` of damaged copies of ``source``: flipped bytes all over it (every byte of the seal and
    the HDF5 superblock, then every 127th), truncations, an appended byte, zeros."""
    data = source.read_bytes()
    offsets = sorted(set(range(0, min(len(data), 2 * USERBLOCK))) | set(range(0, len(data), 127)))
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF if offset % 2 else 0x01
        yield f"byte {offset} flipped", bytes(damaged)
    for size in (0, 1, 100, USERBLOCK - 1, USERBLOCK, USERBLOCK + 1, len(data) // 2, len(data) - 1):
        yield f"truncated to {size} bytes", data[:size]
    yield "one byte appended", data + b"\0"
    yield "all zeros", bytes(len(data))


def check_every_damage_is_refused(source, load, monkeypatch, tmp_path):
    def reached(*args, **kwargs):
        raise AssertionError("a damaged file reached HDF5")

    monkeypatch.setattr(optodfa.integrity.h5py, "File", reached)  # the seal must refuse first
    target = tmp_path / source.name
    count = 0
    for label, content in damaged_copies(source, tmp_path):
        target.write_bytes(content)
        with pytest.raises(RunFileError) as caught:
            load(target)
        assert str(target) in str(caught.value), label
        count += 1
    assert count > 500


def test_every_damaged_byte_of_a_run_file_is_refused(run_file, monkeypatch, tmp_path):
    expected = RunFile.load(run_file)
    check_every_damage_is_refused(run_file, RunFile.load, monkeypatch, tmp_path)
    monkeypatch.undo()
    again = RunFile.load(run_file)  # and the intact file reads back unchanged
    assert again.series == expected.series and again.attrs == expected.attrs


def test_every_damaged_byte_of_a_calibration_record_is_refused(calibration_file, monkeypatch, tmp_path):
    expected = Calibration.load(calibration_file)
    check_every_damage_is_refused(calibration_file, Calibration.load, monkeypatch, tmp_path)
    monkeypatch.undo()
    assert torch.equal(Calibration.load(calibration_file).raw_matrix, expected.raw_matrix)


def test_foreign_and_mixed_up_files(run_file, calibration_file, tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    text = tmp_path / "notes.h5"
    text.write_text("just some text\n")
    for path, match in [(foreign, "plain HDF5 file without an optodfa seal"), (text, "is not an optodfa file")]:
        with pytest.raises(RunFileError, match=match):
            RunFile.load(path)
        with pytest.raises(CalibrationFileError, match=match):
            Calibration.load(path)
    pipe = tmp_path / "pipe.h5"
    os.mkfifo(pipe)  # opening a FIFO would block until a writer came
    with pytest.raises(RunFileError, match="pipe.h5' is not a regular file"):
        RunFile.load(pipe)
    with pytest.raises(RunFileError, match="is an optodfa-calibration file, not an optodfa-run file"):
        RunFile.load(calibration_file)
    with pytest.raises(CalibrationFileError, match="is an optodfa-run file, not an optodfa-calibration file"):
        Calibration.load(run_file)


def flip_chunk(path, dataset_name):
    """Flip a byte inside the first chunk of a dataset, then re-seal: damage the seal cannot see (as if it
    happened before sealing), left to the dataset's fletcher32 checksum."""
    with h5py.File(path, "r") as f:
        offset = f[dataset_name].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dataset", ["metrics/test_accuracy", "checkpoint/model/1.weight"])
def test_dataset_checksums_catch_what_the_seal_cannot(run_file, tmp_path, dataset):
    copy = tmp_path / "r.h5"
    copy.write_bytes(run_file.read_bytes())
    with h5py.File(copy, "r") as f:
        assert f[dataset].fletcher32
    flip_chunk(copy, dataset)
    seal(copy, FORMAT, FORMAT_VERSION)
    with pytest.raises(RunFileError, match="cannot read run file .*r.h5'"):
        RunFile.load(copy)


def test_calibration_dataset_checksums(calibration_file, tmp_path):
    copy = tmp_path / "cal.h5"
    copy.write_bytes(calibration_file.read_bytes())
    flip_chunk(copy, "raw_matrix")
    seal(copy, "optodfa-calibration", 2)
    with pytest.raises(CalibrationFileError, match="cannot read calibration file .*cal.h5'"):
        Calibration.load(copy)


def test_seal_refuses_files_without_a_user_block(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w"):
        pass
    with pytest.raises(RunFileError, match="no HDF5 header after a 512-byte user block"):
        seal(path, FORMAT, FORMAT_VERSION)
    with pytest.raises(ValueError, match="format name must be lower-case"):
        seal(path, "Bad Name", 1)


def test_resume_refuses_a_damaged_file_and_leaves_it_as_it_was(run_file, tmp_path, capsys):
    copy = tmp_path / "r.h5"
    data = bytearray(run_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle, e.g. inside a weight: once resumed as "completed"
    copy.write_bytes(bytes(data))
    with pytest.raises(RunFileError, match="r.h5' is damaged: its SHA-256 checksum does not match"):
        resume(copy, progress=False, log=lambda _: None)
    assert main(["train", "--resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and len(err.strip().splitlines()) == 1
    assert copy.read_bytes() == bytes(data)
    with RunLock(copy):  # the refused resume released its lock
        pass
