"""The sweep folder: its manifest (grid, runs, statuses), its lock, and where each file of a run lives.

Layout of a sweep folder::

    sweep.json               the manifest: the grid, every expanded run with its status, attempts and error
    runs/<name>.h5           one run file per run (the record; see optodfa.runlog)
    runs/<name>.attempts     one JSON line per start of the run on a worker (pid, worker, time)
    tensorboard/<name>/      TensorBoard event files of the run (a view of the run file) and its hparams
    summary.csv, summary.md  mean ± sd per setting
    figures/*.png            metric against a setting, heat maps

Only the process that runs the sweep writes the manifest (workers write their run files), always whole and
atomically, so a killed sweep leaves the manifest of its last update. One sweep at a time holds the folder's lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

import optodfa
from optodfa.atomic import atomic_path
from optodfa.sweep.grid import Grid

MANIFEST = "sweep.json"
LOCK = ".sweep.lock"
STATUSES = ("pending", "running", "completed", "failed", "invalid", "diverged")
# Runs in these states are results: a rerun of the sweep leaves them alone.
FINAL = ("completed", "invalid", "diverged")


class SweepError(OSError):
    """A sweep that cannot start or go on: the folder is busy or holds another grid, the scheduler is unreachable.

    An ``OSError``, like :class:`optodfa.runlog.RunFileError`: the trouble is in the files or the cluster, not in
    the arguments.
    """


@dataclasses.dataclass
class RunEntry:
    """What the manifest says about one run.

    Attributes:
        name, settings, config: from :class:`optodfa.sweep.grid.Run` (``config`` as a dict).
        status: one of :data:`STATUSES`.
        attempts: how many times a worker started the run (killed and retried starts included).
        error: the last error message (failed, invalid, diverged), else ``None``.
        step: training step at which a diverged run stopped.
        seconds: wall seconds of the last attempt on its worker.
        hparams: whether the run's hparams entry has been written to TensorBoard.
    """

    name: str
    settings: dict[str, Any]
    config: dict[str, Any]
    status: str = "pending"
    attempts: int = 0
    error: str | None = None
    step: int | None = None
    seconds: float | None = None
    hparams: bool = False


class Manifest:
    """The manifest of the sweep folder ``folder``: load with :meth:`open`, change entries, :meth:`save`."""

    def __init__(self, folder: Path, grid: dict[str, Any], runs: dict[str, RunEntry], setting_keys: list[str],
                 description: str = "", created: str | None = None) -> None:
        self.folder = Path(folder)
        self.grid = grid
        self.runs = runs
        self.setting_keys = setting_keys
        self.description = description
        self.created = created or time.strftime("%Y-%m-%dT%H:%M:%S%z")

    # -- paths ------------------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    def run_path(self, name: str) -> Path:
        return self.folder / "runs" / f"{name}.h5"

    def attempts_path(self, name: str) -> Path:
        return self.folder / "runs" / f"{name}.attempts"

    def tensorboard_dir(self, name: str) -> Path:
        return self.folder / "tensorboard" / name

    # -- creating, loading, saving ---------------------------------------------------------------------------
    @classmethod
    def for_grid(cls, folder: str | os.PathLike[str], grid: Grid) -> Manifest:
        """The manifest of ``grid`` in ``folder``: the existing one if it holds the same grid, else a new one.

        Raises:
            SweepError: ``folder`` holds a sweep of a different grid (the message shows the difference).
        """
        folder = Path(folder)
        runs = {run.name: RunEntry(run.name, _plain(run.settings), run.config.to_dict()) for run in grid.runs()}
        wanted = grid.to_dict()
        if (folder / MANIFEST).exists():
            existing = cls.load(folder)
            if existing.grid != wanted:
                raise SweepError(f"{folder} holds a sweep of a different grid; use another folder (--out) or "
                                 f"delete it. Difference (- in the folder, + asked for):\n"
                                 + grid_difference(existing.grid, wanted))
            return existing
        return cls(folder, wanted, runs, grid.setting_keys, grid.description)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest:
        """Read ``folder/sweep.json``; needs no workers."""
        folder = Path(folder)
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            runs = {name: RunEntry(**entry) for name, entry in data["runs"].items()}
            return cls(folder, data["grid"], runs, data["setting_keys"], data.get("description", ""),
                       data.get("created"))
        except FileNotFoundError:
            raise SweepError(f"{folder} is not a sweep folder (no {MANIFEST})") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SweepError(f"{path} is not a valid sweep manifest: {exc}") from None

    def save(self) -> None:
        """Write the manifest whole, atomically (a reader sees the old one or the new one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"format": 1, "optodfa": optodfa.__version__, "created": self.created,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "description": self.description,
                "setting_keys": self.setting_keys, "grid": self.grid,
                "runs": {name: dataclasses.asdict(entry) for name, entry in self.runs.items()}}
        with atomic_path(self.path) as temporary:
            temporary.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")

    # -- queries ----------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Runs per status (every status listed, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.runs.values():
            counts[entry.status] += 1
        return counts

    def read_attempts(self, name: str) -> list[dict[str, Any]]:
        """The starts of run ``name`` on workers, oldest first (a line cut by a kill is skipped)."""
        path = self.attempts_path(name)
        if not path.exists():
            return []
        starts = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                starts.append(json.loads(line))
        return starts


def is_sweep_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST).is_file()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the sweep folder's lock for the block; a second sweep on the folder is refused at once.

    Raises:
        SweepError: another sweep holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise SweepError(f"another sweep is running on {folder} (it holds {folder / LOCK}); wait for it to end or "
                         f"use another folder") from None
    try:
        yield
    finally:
        lock.release()


def grid_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Unified diff of two grids as sorted, indented JSON."""
    lines = difflib.unified_diff(json.dumps(old, indent=1, sort_keys=True).splitlines(),
                                 json.dumps(new, indent=1, sort_keys=True).splitlines(),
                                 fromfile="folder", tofile="asked", lineterm="", n=1)
    return "\n".join(list(lines)[2:])


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))
