"""HDF5 run files: one file per run, appended as training goes, always whole on disk, verified when read.

Layout (fixed names so other tools can read them)::

    (user block)           the seal: format ``optodfa-run``, version, SHA-256 of the file (:mod:`optodfa.integrity`)
    /                      attributes: format, format_version, method, device, dataset, seed, feedback_seed,
                           config (JSON), versions (JSON: optodfa, git commit, torch and its CUDA build, ...),
                           device_description (JSON), command (JSON: the command line), started_utc, ended_utc,
                           status ("running" | "completed" | "failed"); a failed run adds error ("Type: message"),
                           error_type and error_step (the training step it failed at)
    /metrics/test_accuracy one value per epoch, in [0, 1]
    /metrics/train_loss    mean training loss per epoch
    /alignment/step        global steps at which alignment was measured
    /alignment/gradient/<layer>, /alignment/weight/<layer>
    /device/frames, /device/hardware_seconds, /device/energy_joules, ...   cumulative, one value per epoch
    /checkpoint            the latest checkpoint, a tree of plain datasets (:mod:`optodfa.h5tree`): model/<tensor
                           name>, optimizer/..., projector/..., torch_rng; attributes epoch, batch, step and
                           series_lengths (JSON: the length of every series when it was taken)
    /weights               initial/<layer>, final/<layer>, snapshots/step and snapshots/<layer>: the weight
                           matrices by layer (:mod:`optodfa.weights`), plain float32/int64 datasets
    /<name>                any other tree kept in :attr:`RunFile.trees`, same codec

Every series is a 1-D resizable float64 dataset; every dataset is chunked with a fletcher32 checksum. Nothing is
pickled: a run file cannot make its reader run code, and a checkpoint of optodfa 0.1 (a pickle in
``checkpoint/state``) is refused.

Crash safety: the whole file is rewritten into a temporary file next to the target, sealed, and renamed over it
at each :meth:`RunFile.flush`. A rename is atomic, so a run killed at any moment leaves the file exactly as it
was at its last flush; the series are small, so rewriting them costs little next to the checkpoint, which must be
written anyway. One writer per file: see :mod:`optodfa.runlock`.
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
from optodfa.h5tree import TreeFormatError, copy_tree, read_tree, write_tree
from optodfa.integrity import DATASET_OPTIONS, USERBLOCK, RunFileError, open_sealed, seal

__all__ = ["CHECKPOINT", "FORMAT", "FORMAT_VERSION", "RunFile", "RunFileError", "check_writable"]

FORMAT = "optodfa-run"
FORMAT_VERSION = 2  # 1: optodfa 0.1, unsealed, with a pickled checkpoint
CHECKPOINT = "checkpoint"
_LEGACY_CHECKPOINT = "checkpoint/state"
_CHECKPOINT_ATTRS = ("epoch", "batch", "step", "series_lengths")


class RunFile:
    """A run file held in memory and written whole at each flush.

    Args:
        path: the ``.h5`` file.
        attrs: root attributes (dicts and lists are stored as JSON strings).
        series: ``{"metrics/test_accuracy": [...], ...}``.
        checkpoint: the latest checkpoint, ``(state, attrs)``: ``state`` a tree for :mod:`optodfa.h5tree`,
            ``attrs`` its ``epoch``, ``batch``, ``step`` and ``series_lengths``.
        trees: other trees (dicts of tensors, arrays and scalars), each stored as the top-level group of its
            name (not ``checkpoint``, not a series' first part); e.g. ``{"weights": {"initial": {...}}}``.
    """

    def __init__(self, path: str | os.PathLike[str], attrs: Mapping[str, Any] | None = None,
                 series: Mapping[str, list[float]] | None = None,
                 checkpoint: tuple[dict[str, Any], dict[str, Any]] | None = None,
                 trees: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.series: dict[str, list[float]] = {k: list(v) for k, v in (series or {}).items()}
        self.checkpoint = checkpoint
        self.trees: dict[str, dict[str, Any]] = dict(trees or {})

    # -- creating and opening ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> RunFile:
        """Start a run file at ``path`` and write it at once, so an unwritable path fails before training."""
        check_writable(path)
        run = cls(path, attrs)
        run.flush()
        return run

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, checkpoint: bool = True) -> RunFile:
        """Read a whole run file: attributes, series and (unless ``checkpoint=False``) the latest checkpoint.

        The seal is verified before HDF5 sees the file (:func:`optodfa.integrity.open_sealed`).

        Raises:
            RunFileError: no such file, not a run file, a damaged file (checksum, seal, HDF5 structure), an
                unknown format version, or a pickled checkpoint of optodfa 0.1; the message names the file.
        """
        path = Path(path)
        if not path.exists():
            raise RunFileError(f"run file {str(path)!r} does not exist")
        try:
            with open_sealed(path, FORMAT, (FORMAT_VERSION,)) as f:
                return cls._read(path, f, checkpoint)
        except RunFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RecursionError) as exc:
            raise RunFileError(f"cannot read run file {str(path)!r}: {exc}") from None

    @classmethod
    def _read(cls, path: Path, f: h5py.File, with_checkpoint: bool) -> RunFile:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT or attrs.get("format_version") != FORMAT_VERSION:
            raise RunFileError(f"run file {str(path)!r}: its attributes format/format_version "
                               f"({attrs.get('format')!r}, {attrs.get('format_version')!r}) contradict its seal")
        if isinstance(f.get(_LEGACY_CHECKPOINT), h5py.Dataset) and "h5tree" not in f[CHECKPOINT].attrs:
            raise RunFileError(f"run file {str(path)!r} holds a pickled checkpoint (optodfa 0.1); it is refused "
                               f"because a pickle can run code: train the run again")
        series: dict[str, list[float]] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                if obj.ndim != 1 or obj.dtype != np.float64:
                    raise RunFileError(f"run file {str(path)!r}: series {name!r} must be 1-D float64, got "
                                       f"{obj.dtype} {obj.shape}")
                series[name] = obj[()].tolist()

        checkpoint = None
        trees: dict[str, dict[str, Any]] = {}
        for name, obj in f.items():
            if name == CHECKPOINT:
                if not isinstance(obj, h5py.Group):
                    raise RunFileError(f"run file {str(path)!r}: /checkpoint must be a group")
                if with_checkpoint:
                    checkpoint = cls._read_checkpoint(path, obj)
            elif isinstance(obj, h5py.Group) and "h5tree" in obj.attrs:
                try:
                    tree = read_tree(obj, path=f"/{name}")
                except TreeFormatError as exc:
                    raise RunFileError(f"run file {str(path)!r}: damaged tree: {exc}") from None
                if not isinstance(tree, dict):
                    raise RunFileError(f"run file {str(path)!r}: /{name} must hold a dict")
                trees[name] = tree
            elif isinstance(obj, h5py.Group):
                obj.visititems(lambda child, item, group=name: visit(f"{group}/{child}", item))
            else:
                visit(name, obj)
        return cls(path, attrs, series, checkpoint, trees)

    @staticmethod
    def _read_checkpoint(path: Path, group: h5py.Group) -> tuple[dict[str, Any], dict[str, Any]]:
        missing = [name for name in _CHECKPOINT_ATTRS if name not in group.attrs]
        if missing:
            raise RunFileError(f"run file {str(path)!r}: its checkpoint lacks attribute(s) {', '.join(missing)}")
        attrs = {name: _decode(group.attrs[name]) for name in _CHECKPOINT_ATTRS}
        lengths = attrs["series_lengths"]
        if not (all(type(attrs[n]) is int and attrs[n] >= 0 for n in ("epoch", "batch", "step"))
                and isinstance(lengths, dict) and all(type(v) is int and v >= 0 for v in lengths.values())):
            raise RunFileError(f"run file {str(path)!r}: its checkpoint's epoch, batch, step and series_lengths "
                               f"must be non-negative integers")
        try:
            state = read_tree(group, path="/checkpoint")
        except TreeFormatError as exc:
            raise RunFileError(f"run file {str(path)!r}: damaged checkpoint: {exc}") from None
        if not isinstance(state, dict):
            raise RunFileError(f"run file {str(path)!r}: its checkpoint must be a dict, got {type(state).__name__}")
        return state, attrs

    # -- appending ----------------------------------------------------------------------------------------------
    def append(self, name: str, value: float) -> None:
        """Append one value to the series ``name`` (e.g. ``"metrics/test_accuracy"``); kept until :meth:`flush`."""
        self.series.setdefault(name, []).append(float(value))

    def lengths(self) -> dict[str, int]:
        return {name: len(values) for name, values in self.series.items()}

    def truncate(self, lengths: Mapping[str, int]) -> None:
        """Cut every series back to ``lengths`` (series absent from it are dropped): the state of a checkpoint."""
        self.series = {name: values[: lengths[name]] for name, values in self.series.items() if name in lengths}

    def set_checkpoint(self, state: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Keep a snapshot of ``state`` (tensors copied, so training on cannot change it) until the next flush."""
        self.checkpoint = (copy_tree(dict(state)), dict(attrs))

    # -- writing ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the whole file beside ``path``, seal it and rename it over ``path`` (atomic: see
        :mod:`optodfa.atomic`)."""
        try:
            with atomic_path(self.path) as temporary:
                self._write(temporary)
        except OSError as exc:
            raise RunFileError(f"cannot write run file {str(self.path)!r}: {exc.strerror or exc}") from exc

    def _write(self, path: Path) -> None:
        with h5py.File(path, "w", userblock_size=USERBLOCK) as f:
            for key, value in {**self.attrs, "format": FORMAT, "format_version": FORMAT_VERSION}.items():
                f.attrs[key] = _encode(value)
            for name, values in self.series.items():
                data = np.asarray(values, dtype=np.float64)
                f.create_dataset(name, data=data, maxshape=(None,), chunks=(max(1, min(len(data), 4096)),),
                                 **DATASET_OPTIONS)
            for name, tree in self.trees.items():
                if name == CHECKPOINT or "/" in name or any(key.split("/")[0] == name for key in self.series):
                    raise ValueError(f"a tree cannot be named {name!r}: it is the checkpoint's or a series' place")
                write_tree(f.create_group(name), tree, path=f"/{name}")
            if self.checkpoint is not None:
                state, attrs = self.checkpoint
                group = f.create_group(CHECKPOINT)
                write_tree(group, state, path="/checkpoint")
                for key in _CHECKPOINT_ATTRS:
                    group.attrs[key] = _encode(attrs[key])
        seal(path, FORMAT, FORMAT_VERSION)  # fsyncs: on disk before the rename makes it the run file


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
