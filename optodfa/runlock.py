"""One writer per run file: an exclusive lock beside it, naming its holder to whoever is refused.

``RUN.h5`` is locked through ``.RUN.h5.lock`` (an OS lock through :mod:`filelock`; the kernel drops it when the
holder dies, even by SIGKILL, so a killed run never blocks its resume). The lock file stays in place after
release, as filelock needs so that every process locks the same file; it is empty and may be deleted whenever no
training runs. The holder writes its pid, host, start time and command line into ``.RUN.h5.lock.info`` (the lock
file itself cannot hold them: filelock empties it on every attempt) and deletes it on release.

Holding the lock also makes it safe to delete the temporary files of a flush that was killed half-way
(``.RUN.h5.XXXXXXXX.tmp``, see :mod:`optodfa.atomic`): no other process can be writing one.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import sys
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from optodfa.integrity import RunFileError

__all__ = ["RunLock", "stale_temporaries"]


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that a flush of the run file ``path`` left behind (``.NAME.XXXXXXXX.tmp``)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # mkstemp's random part is 8 characters of [a-z0-9_]; the strict pattern keeps another run's temporaries
    # (e.g. those of "NAME.x.h5") out.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file())
    except OSError:
        return []


class RunLock:
    """The exclusive writer's lock of the run file ``path``; a context manager.

    Raises (from :meth:`acquire`):
        RunFileError: another process holds it (the message names its pid, host and command when known), or the
            lock file cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = _sidecar(self.path, ".lock")
        self.info_path = _sidecar(self.path, ".lock.info")
        self._lock = FileLock(self.lock_path, timeout=0)
        self.removed: list[Path] = []  # stale temporaries deleted when the lock was taken

    def acquire(self) -> RunLock:
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFileError(f"run file {str(self.path)!r} is being written by another process "
                               f"({self._holder()}); wait for it to end or stop it first") from None
        except OSError as exc:
            raise RunFileError(f"cannot lock run file {str(self.path)!r}: {exc.strerror or exc}") from None
        try:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                    "since_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            self.info_path.write_text(json.dumps(info))
            self.removed = stale_temporaries(self.path)
            for stale in self.removed:
                stale.unlink(missing_ok=True)
        except OSError:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self.info_path.unlink(missing_ok=True)  # before the release: the next holder writes its own
            self._lock.release()

    def _holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text())
            command = " ".join(str(part) for part in info.get("command", [])) or "?"
            return f"pid {info['pid']} on host {info['host']} since {info['since_utc']}: {command}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its pid is not recorded yet"

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
