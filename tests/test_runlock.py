"""Files are never lost by accident: one writer per run file, no silent overwrite, stale temporaries cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.runlock import RunLock, stale_temporaries
from optodfa.runlog import RunFile, RunFileError
from optodfa.train import resume, train

TINY = TrainConfig(dataset="digits", hidden=(8,), epochs=2, batch_size=32, limit=64, alignment_every=0)


def quiet(*_: object) -> None:
    pass


def test_a_second_lock_names_the_holder(tmp_path):
    path = tmp_path / "r.h5"
    with RunLock(path) as held:
        assert held.info_path.name == ".r.h5.lock.info" and held.info_path.exists()
        with pytest.raises(RunFileError, match=rf"r.h5' is being written by another process \(pid {os.getpid()} "
                                               rf"on host .+ since .+\); wait for it to end or stop it first"):
            RunLock(path).acquire()
    assert not held.info_path.exists()  # released: the next writer records itself
    with RunLock(path):
        pass


def test_stale_temporaries_of_this_run_only_are_removed(tmp_path):
    path = tmp_path / "r.h5"
    mine = [tmp_path / ".r.h5.abcd_123.tmp", tmp_path / ".r.h5.zz99yy88.tmp"]
    others = [tmp_path / ".r.h5.x.h5.abcd1234.tmp", tmp_path / ".other.h5.abcd1234.tmp", tmp_path / "r.h5.tmp"]
    for file in mine + others:
        file.write_bytes(b"half a flush")
    assert stale_temporaries(path) == sorted(mine)
    with RunLock(path) as lock:
        assert lock.removed == sorted(mine)
    assert not any(file.exists() for file in mine) and all(file.exists() for file in others)


def test_existing_run_files_are_refused_unless_forced(tmp_path, capsys):
    path = tmp_path / "r.h5"
    train(TINY, path, progress=False, log=quiet)
    before = path.read_bytes()
    with pytest.raises(RunFileError, match=r"r.h5' already exists; overwrite it with force=True \(optodfa train "
                                           r"--force\) or continue it with resume\(\)"):
        train(TINY, path, progress=False, log=quiet)
    args = ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--limit", "64", "--no-progress",
            "--out", str(path)]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_bytes() == before  # nothing was touched
    assert main([*args, "--force"]) == 0
    assert RunFile.load(path).attrs["config"]["epochs"] == 1


def test_a_stale_temporary_is_removed_when_the_run_resumes(tmp_path):
    path = tmp_path / "r.h5"
    train(TINY, path, progress=False, stop_after_steps=3, log=quiet)
    stale = tmp_path / ".r.h5.k1lled00.tmp"
    stale.write_bytes(b"a flush killed half-way")
    resume(path, progress=False, log=quiet)
    assert not stale.exists() and RunFile.load(path).attrs["status"] == "completed"


WRITER = textwrap.dedent("""
    import pathlib, sys, time
    from optodfa.config import TrainConfig
    from optodfa.train import train

    go = pathlib.Path(sys.argv[2])

    def log(line):  # called at each epoch end, with the lock held and the file written: wait for the test
        while not go.exists():
            time.sleep(0.01)

    train(TrainConfig(dataset="digits", hidden=(8,), epochs=2, batch_size=32, limit=64, alignment_every=0),
          sys.argv[1], progress=False, log=log)
""")


def test_two_writers_on_one_file(tmp_path):
    """A second process is refused with a message naming the first; the first's file ends intact."""
    path, go = tmp_path / "r.h5", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".r.h5.lock.info").exists() or not path.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        holder = rf"is being written by another process \(pid {first.pid} on host "
        with pytest.raises(RunFileError, match=holder):
            train(TINY, path, force=True, progress=False, log=quiet)
        with pytest.raises(RunFileError, match=holder):
            resume(path, progress=False, log=quiet)
    finally:
        go.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    result = RunFile.load(path)
    assert result.attrs["status"] == "completed" and len(result.series["metrics/test_accuracy"]) == 2
    assert sorted(os.listdir(tmp_path)) == [".r.h5.lock", "go", "r.h5"]
