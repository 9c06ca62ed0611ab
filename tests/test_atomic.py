"""Atomic replacement: the old file or the new one, never half; modes as open() would give them."""

from __future__ import annotations

import os
import stat

import pytest

from optodfa.atomic import atomic_path


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.bin") as temporary:
            temporary.write_bytes(b"new")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["a.bin"]


def test_replacement_keeps_the_target_mode(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    target.chmod(0o604)
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o604


def test_error_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_missing_folder_raises_before_anything(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "none" / "a.bin"):
        pass
