"""Fuzzing the file readers (run files, calibration records) and the command line (``main(argv)`` in process).

The readers are held to their documented error types: :class:`~optodfa.runlog.RunFileError` for run files;
:class:`~optodfa.calibration.CalibrationFileError` or ``FileNotFoundError`` for calibration records (and
``RunFileError``, which the checksummed readers of the ``trust`` branch raise for both). Files are random bytes,
junk after an HDF5 signature, and valid files truncated anywhere. Damage *inside* a whole HDF5 file (flipped bytes,
attributes replaced by wrong values) is the checksummed readers' business: a flipped byte in an HDF5 header can
crash the HDF5 library itself, so those readers verify a checksum before h5py sees the file, and their own tests
flip every byte region. The ``attribute``/``dataset``/``drop`` damages below are drawn only with
``OPTODFA_FUZZ_SEMANTIC=1`` (for those readers: every such file must then be a RunFileError).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import hypothesis.strategies as st
import numpy as np
from fuzzlib import INPUT_ERRORS, OUTCOMES, attempt, budget
from hypothesis import given

from optodfa.calibration import Calibration, CalibrationFileError, calibrate
from optodfa.cli import main
from optodfa.registry import build_projector
from optodfa.runlog import RunFile, RunFileError
from optodfa.train import train

WORK = Path(tempfile.mkdtemp(prefix="optodfa-fuzz-"))
SEMANTIC = os.environ.get("OPTODFA_FUZZ_SEMANTIC", "") == "1"


@functools.lru_cache(maxsize=1)
def valid_run() -> Path:
    from optodfa.config import TrainConfig

    path = WORK / "valid-run.h5"
    config = TrainConfig(dataset="digits", hidden=(8,), epochs=1, limit=128, batch_size=64, alignment_every=1,
                         checkpoint_every=1)
    train(config, path, progress=False, log=lambda *_: None)
    return path


@functools.lru_cache(maxsize=1)
def valid_calibration() -> Path:
    device = build_projector("opu-sim", 4, 6, feedback_seed=0).device
    return calibrate(device, 4, 6, probes=16, repeats=2, exposure_points=2, seed=0).save(WORK / "valid-cal.h5")


JUNK = st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=True), st.text(max_size=8),
                 st.sampled_from(["json:{", "json:[1, 2", "json:null", 'json:{"epochs": "x"}', "json:[]",
                                  'json:{"hidden": 8}', "completed", b"\xff\xfe"]),
                 st.binary(max_size=8))


@st.composite
def damaged(draw, source: Path) -> bytes | tuple[str, str, object]:
    """A damaged copy: random bytes, a truncation, or an attribute/dataset replaced."""
    kinds = ["bytes", "hdf5-prefix", "truncate", "truncate"]
    if SEMANTIC:
        kinds += ["attribute", "attribute", "dataset", "drop"]
    kind = draw(st.sampled_from(kinds))
    data = source.read_bytes()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "hdf5-prefix":
        return data[:8] + draw(st.binary(min_size=0, max_size=256))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    with h5py.File(source, "r") as f:
        attrs = sorted(f.attrs)
        datasets: list[str] = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
    if kind == "attribute":
        return ("attribute", draw(st.sampled_from(attrs)), draw(JUNK))
    if kind == "dataset":
        return ("dataset", draw(st.sampled_from(datasets)), draw(JUNK))
    return ("drop", draw(st.sampled_from(datasets + attrs)), None)


def write_damaged(source: Path, damage: bytes | tuple[str, str, object]) -> Path:
    path = Path(tempfile.mkstemp(suffix=".h5", dir=WORK)[1])
    if isinstance(damage, bytes):
        path.write_bytes(damage)
        return path
    shutil.copyfile(source, path)
    kind, name, value = damage
    with h5py.File(path, "r+") as f:
        if kind == "attribute":
            f.attrs[name] = np.void(value) if isinstance(value, bytes) else value
        elif kind == "dataset":
            del f[name]
            f[name] = np.void(value) if isinstance(value, bytes) else value
        elif name in f:
            del f[name]
        else:
            del f.attrs[name]
    return path


@budget(full=600, smoke=8)
@given(data=st.data())
def test_run_file_reader(data):
    path = write_damaged(valid_run(), data.draw(damaged(valid_run())))
    try:
        accepted, run = attempt("RunFile.load", lambda: RunFile.load(path), (RunFileError,), anywhere=(RunFileError,))
        if accepted:
            assert isinstance(run.attrs, dict) and isinstance(run.series, dict)
            # what a user then does with it: a report, never a traceback
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                code = main(["report", str(path)])
            assert code in (0, 2) and "internal error" not in err.getvalue(), err.getvalue()
    finally:
        path.unlink(missing_ok=True)


@budget(full=600, smoke=8)
@given(data=st.data())
def test_calibration_reader(data):
    path = write_damaged(valid_calibration(), data.draw(damaged(valid_calibration())))
    try:
        accepted, record = attempt("Calibration.load", lambda: Calibration.load(path),
                                   (CalibrationFileError, FileNotFoundError, RunFileError),
                                   anywhere=(CalibrationFileError, RunFileError))
        if accepted:
            assert isinstance(record, Calibration)
            json.dumps(record.describe(), allow_nan=True)
    finally:
        path.unlink(missing_ok=True)


# `demo` is left out: it is a full-size training (minutes); its argument handling is the same code.
WORDS = ["train", "report", "devices", "fidelity", "list", "--dataset", "digits", "mnist", "--hidden", "8",
         "8,x", "0", "--epochs", "1", "-3", "--limit", "64", "--batch-size", "32", "--lr", "nan", "1e-3",
         "--device", "digital", "opu-sim", "nope", "--set", "camera.bits=4", "camera.bits=99", "probes=10",
         "--profile", "ideal-opu", "missing", "--torch-device", "cuda", "cpu", "gpu", "--optimizer", "sgd",
         "--resume", "--no-progress", "--feedback-scale", "auto", "-1", "--alignment-every", "--checkpoint-every",
         "--label-noise", "2", "--on-nonfinite", "skip", "--seed", "18446744073709551616", "--bogus", "--", "",
         "--version", "--help", "-h"]


@budget(full=700, smoke=10)
@given(words=st.lists(st.sampled_from(WORDS), max_size=10), target=st.sampled_from(["new", "valid", "junk"]))
def test_cli_argv(words, target):
    folder = Path(tempfile.mkdtemp(dir=WORK))
    try:
        out = {"new": folder / "r.h5", "valid": folder / "copy.h5", "junk": folder / "junk.h5"}[target]
        if target == "valid":
            shutil.copyfile(valid_run(), out)
        elif target == "junk":
            out.write_bytes(b"not a run file")
        argv = [str(out) if w == "--resume" else w for w in words]
        if "train" in argv:  # a training that is accepted stays tiny
            argv += ["--limit", "64", "--epochs", "1", "--hidden", "8", "--out", str(out), "--no-progress"]
        argv = [w if w != "--resume" else "--resume" for w in argv]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            accepted, code = attempt("cli main(argv)", lambda: main(argv), INPUT_ERRORS)
        assert accepted, f"main raised {code!r}"
        assert isinstance(code, int) and code in (0, 1, 2), (argv, code)
        err = stderr.getvalue()
        assert "Traceback" not in err and "internal error" not in err, (argv, err)
        if code:
            assert len(err.strip().splitlines()) == 1, (argv, err)
        # counted by exit code rather than as "accepted"
        OUTCOMES["cli main(argv)", "accepted"] -= 1
        if not OUTCOMES["cli main(argv)", "accepted"]:
            del OUTCOMES["cli main(argv)", "accepted"]
        OUTCOMES["cli main(argv)", f"exit {code}"] += 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def teardown_module() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
