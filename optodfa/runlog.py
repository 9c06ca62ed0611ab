"""HDF5 run files: one file per run, appended as training goes, always whole on disk.

Layout (fixed names so other tools can read them)::

    /                      attributes: method, device, dataset, seed, feedback_seed, config (JSON), versions (JSON),
                           device_description (JSON), status ("running" | "completed")
    /metrics/test_accuracy one value per epoch, in [0, 1]
    /metrics/train_loss    mean training loss per epoch
    /alignment/step        global steps at which alignment was measured
    /alignment/gradient/<layer>, /alignment/weight/<layer>
    /device/frames, /device/hardware_seconds, /device/energy_joules, ...   cumulative, one value per epoch
    /checkpoint/state      the latest checkpoint (``torch.save`` bytes) with its attributes

Every series is a 1-D resizable dataset. Crash safety: the whole file is rewritten into a temporary file next to
the target and renamed over it at each :meth:`RunFile.flush`. A rename is atomic, so a run killed at any moment
leaves the file exactly as it was at its last flush; the series are small, so rewriting them costs little next to
the checkpoint, which must be written anyway.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from optodfa.atomic import atomic_path

CHECKPOINT = "checkpoint/state"


class RunFileError(OSError):
    """A run file that cannot be written or read as expected."""


class RunFile:
    """A run file held in memory and written whole at each flush.

    Args:
        path: the ``.h5`` file.
        attrs: root attributes (dicts and lists are stored as JSON strings).
        series: ``{"metrics/test_accuracy": [...], ...}``.
        checkpoint: latest checkpoint bytes and their attributes, if any.
    """

    def __init__(self, path: str | os.PathLike[str], attrs: Mapping[str, Any] | None = None,
                 series: Mapping[str, list[float]] | None = None,
                 checkpoint: tuple[bytes, dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.series: dict[str, list[float]] = {k: list(v) for k, v in (series or {}).items()}
        self.checkpoint = checkpoint

    # -- creating and opening ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> RunFile:
        """Start a run file at ``path`` and write it at once, so an unwritable path fails before training."""
        check_writable(path)
        run = cls(path, attrs)
        run.flush()
        return run

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunFile:
        """Read a whole run file (series, attributes and the latest checkpoint)."""
        path = Path(path)
        if not path.is_file():
            raise RunFileError(f"run file {str(path)!r} does not exist")
        try:
            with h5py.File(path, "r") as f:
                attrs = {k: _decode(v) for k, v in f.attrs.items()}
                series: dict[str, list[float]] = {}
                checkpoint = None

                def visit(name: str, obj: Any) -> None:
                    nonlocal checkpoint
                    if not isinstance(obj, h5py.Dataset):
                        return
                    if name == CHECKPOINT:
                        checkpoint = (obj[()].tobytes(), {k: _decode(v) for k, v in obj.attrs.items()})
                    else:
                        series[name] = obj[()].tolist()

                f.visititems(visit)
        except OSError as exc:
            raise RunFileError(f"cannot read run file {str(path)!r}: {exc}") from exc
        return cls(path, attrs, series, checkpoint)

    # -- appending ----------------------------------------------------------------------------------------------
    def append(self, name: str, value: float) -> None:
        """Append one value to the series ``name`` (e.g. ``"metrics/test_accuracy"``); kept until :meth:`flush`."""
        self.series.setdefault(name, []).append(float(value))

    def lengths(self) -> dict[str, int]:
        return {name: len(values) for name, values in self.series.items()}

    def truncate(self, lengths: Mapping[str, int]) -> None:
        """Cut every series back to ``lengths`` (series absent from it are dropped): the state of a checkpoint."""
        self.series = {name: values[: lengths[name]] for name, values in self.series.items() if name in lengths}

    def set_checkpoint(self, state: bytes, attrs: Mapping[str, Any]) -> None:
        self.checkpoint = (state, dict(attrs))

    # -- writing ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the whole file beside ``path`` and rename it over ``path`` (atomic: see :mod:`optodfa.atomic`)."""
        try:
            with atomic_path(self.path) as temporary:
                self._write(temporary)
        except OSError as exc:
            raise RunFileError(f"cannot write run file {str(self.path)!r}: {exc.strerror or exc}") from exc

    def _write(self, path: Path) -> None:
        with h5py.File(path, "w") as f:
            for key, value in self.attrs.items():
                f.attrs[key] = _encode(value)
            for name, values in self.series.items():
                data = np.asarray(values, dtype=np.float64)
                f.create_dataset(name, data=data, maxshape=(None,), chunks=(max(1, min(len(data), 4096)),))
            if self.checkpoint is not None:
                state, attrs = self.checkpoint
                dataset = f.create_dataset(CHECKPOINT, data=np.frombuffer(state, dtype=np.uint8))
                for key, value in attrs.items():
                    dataset.attrs[key] = _encode(value)
        with open(path, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the run file


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`RunFileError` unless a file can be written at ``path`` (nothing is left behind)."""
    path = Path(path)
    if path.suffix not in (".h5", ".hdf5"):
        raise RunFileError(f"run file must end in .h5 or .hdf5, got {str(path)!r}")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise RunFileError(f"cannot write run file {str(path)!r}: directory {str(directory)!r} does not exist")
    if path.is_dir():
        raise RunFileError(f"cannot write run file {str(path)!r}: it is a directory")
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RunFileError(f"cannot write run file {str(path)!r}: permission denied")


def _encode(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) or value is None:
        return "json:" + json.dumps(value, default=str)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    if isinstance(value, np.generic):
        return value.item()
    return value
