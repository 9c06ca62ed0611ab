"""Atomic file replacement: write beside the target, then rename over it.

A rename within one folder is atomic, so readers see the old file or the new one, never half of either, and a
process killed mid-write leaves the old file in place, and its temporary ``.NAME.XXXXXXXX.tmp`` beside it (the
next writer of a run file removes those: :mod:`optodfa.runlock`). Used by run files, calibration records and
downloads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_mode() -> int:
    # mkstemp creates 0600 files; a finished file should get the mode open() would give it (0666 minus umask).
    # The umask can only be read by setting it, so set it back at once.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on normal exit it replaces ``target``, on error it is deleted.

    The temporary file exists (empty) when the block starts. The result keeps ``target``'s mode if ``target``
    existed, else gets the default mode for new files.

    Raises:
        OSError: the folder of ``target`` cannot hold a new file (missing, read-only, full).
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=folder)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_mode()
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
