"""What every experiment shares: command-line flags, and one writer for its HDF5 file, figure and table.

An experiment named ``NAME`` writes ``<out>/NAME/NAME.h5`` (arrays and settings), ``NAME.png`` (its figure) and
``NAME.md`` (a markdown table with the key figures), and nothing else. Figures are built as
:class:`matplotlib.figure.Figure` objects without pyplot, so nothing depends on a display or global plot state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from matplotlib.figure import Figure

from optodfa.atomic import atomic_path

Arrays = Mapping[str, "np.ndarray | Arrays"]


def add_common_arguments(parser: argparse.ArgumentParser, *, seeds: int) -> None:
    """``--quick``, ``--seeds`` (default ``seeds``) and ``--out`` (default ``results``)."""
    parser.add_argument("--quick", action="store_true",
                        help="a small version (seconds) for smoke tests; the default is the full figure")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of initialisation seeds (default {seeds}, fewer with --quick)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results directory (default results/)")


def parse_settings(argv: Sequence[str] | None, description: str, full: Any, quick: Any, *,
                   sweep: bool = False, min_seeds: int = 1, why: str = "",
                   extra: Callable[[argparse.ArgumentParser], None] | None = None,
                   ) -> tuple[argparse.Namespace, Any]:
    """Parse the common flags; return them and the settings record (a frozen dataclass with a ``seeds`` field)
    that ``--quick`` and ``--seeds`` select.

    ``sweep`` adds ``--workers`` and ``--scheduler``; fewer than ``min_seeds`` seeds is a usage error (``why``
    says why); ``extra`` adds an experiment's own flags, and every one of them named like a settings field
    (``--epochs``) replaces that field when given.
    """
    parser = argparse.ArgumentParser(description=description)
    add_common_arguments(parser, seeds=full.seeds)
    if sweep:
        add_sweep_arguments(parser)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    settings = quick if args.quick else full
    fields = {field.name for field in dataclasses.fields(settings)}
    given = {name: value for name, value in vars(args).items() if value is not None and name in fields}
    settings = dataclasses.replace(settings, **given)
    if settings.seeds < min_seeds:
        reason = f" ({why})" if why else ""
        parser.error(f"--seeds must be at least {min_seeds}{reason}, got {settings.seeds}")
    return args, settings


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler``: where the runs of a training experiment execute."""
    parser.add_argument("--workers", type=int, default=2,
                        help="local worker processes, one compute thread each (0: in this process, no dask)")
    parser.add_argument("--scheduler", default=None, help="tcp://HOST:PORT or scheduler file of a dask cluster")


def run_variants(base: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]], folder: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Run ``variants`` (label -> settings over ``base``) as a sweep in ``folder``; return label -> run file.

    Completed runs already in ``folder`` are kept, unfinished ones resume; a run that fails stops the
    experiment with the sweep's message.
    """
    import optodfa.sweep

    grid = {"base": dict(base), "variants": {label: dict(v) for label, v in variants.items()}}
    summary = optodfa.sweep.run(grid, folder, workers=args.workers, scheduler=args.scheduler,
                                progress=sys.stderr.isatty())
    records = {record.settings.get("variant", "run"): record for record in summary.runs}
    bad = {label: record for label, record in records.items() if record.status != "completed"}
    if bad:
        raise SystemExit("runs did not complete: " + "; ".join(f"{label}: {r.status} ({r.error})"
                                                              for label, r in bad.items()))
    return {label: records[label].load() for label in variants}


def map_runs(function: Callable[[Any], Mapping[str, np.ndarray]], keys: Sequence[Any], folder: Path,
             args: argparse.Namespace) -> dict[Any, dict[str, np.ndarray]]:
    """``{key: function(key)}`` for an experiment whose runs are its own training loops, not ``optodfa train``.

    The runs execute on the sweep engine's cluster (``--workers N`` local processes, one compute thread each, or
    ``--scheduler``; ``--workers 0`` runs them here). Each finished run is kept in ``folder`` as
    ``<str(key)>.npz`` (written atomically), so a rerun after an interruption computes only what is missing.
    ``function`` and its keys must be picklable, and each run must depend on its key alone (its own seeds).
    """
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[Any, dict[str, np.ndarray]] = {}
    for key in keys:
        path = folder / f"{_file_name(key)}.npz"
        if path.exists():
            with np.load(path) as stored:
                results[key] = {name: stored[name] for name in stored.files}
    missing = [key for key in keys if key not in results]

    def keep(key: Any, result: Mapping[str, np.ndarray]) -> None:
        with atomic_path(folder / f"{_file_name(key)}.npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **result)
        results[key] = dict(result)

    if args.workers == 0 and args.scheduler is None:
        for key in missing:
            keep(key, function(key))
    elif missing:
        from distributed import Client, as_completed

        from optodfa.sweep.execute import local_cluster

        cluster = None if args.scheduler is not None else local_cluster(args.workers)
        try:
            with Client(args.scheduler if cluster is None else cluster) as client:
                futures = {client.submit(function, key, pure=False): key for key in missing}
                for future in as_completed(futures):
                    keep(futures[future], future.result())
        finally:
            if cluster is not None:
                cluster.close()
    return {key: results[key] for key in keys}


def _file_name(key: Any) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return "_".join(f"{part:g}" if isinstance(part, float) else str(part) for part in parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are printed with 4 significant digits."""
    def cell(x: Any) -> str:
        if isinstance(x, float | np.floating):
            return f"{x:.4g}"
        return str(x)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, *, arrays: Arrays, attrs: Mapping[str, Any], figure: Figure, table: str,
                  out: str | Path = "results", title: str | None = None) -> dict[str, Path]:
    """Write ``out/name/name.{h5,png,md}`` and return their paths by suffix.

    ``arrays`` may nest (a mapping becomes an HDF5 group). ``attrs`` go on the file's root: numbers and strings
    as they are, anything else as JSON; the command line, Python version and time are added.
    """
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be a non-empty identifier (letters, digits, _), got {name!r}")
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {suffix: folder / f"{name}.{suffix}" for suffix in ("h5", "png", "md")}
    with h5py.File(paths["h5"], "w") as handle:
        _write_group(handle, arrays)
        meta = {**attrs, "command": " ".join(sys.argv), "python": platform.python_version(),
                "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for key, value in meta.items():
            handle.attrs[key] = value if isinstance(value, int | float | str | np.number) else json.dumps(
                value, default=_jsonable)
    figure.savefig(paths["png"], dpi=130, bbox_inches="tight")
    heading = f"# {title or name}\n\n"
    paths["md"].write_text(heading + table)
    return paths


def _write_group(group: h5py.Group, arrays: Arrays) -> None:
    for key, value in arrays.items():
        if isinstance(value, Mapping):
            _write_group(group.create_group(key), value)
        else:
            group.create_dataset(key, data=np.asarray(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as a run attribute")
