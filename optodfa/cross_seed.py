"""The cross-seed cosine of runs that differ only in their initialisation seed, from their run files.

DFA breaks the degeneracy of solutions (SPEC §6.4): runs that share the feedback matrix ``B`` but start from
different weights end at similar weights, while BP runs end far apart. :func:`cross_seed` reads the weights that
run files keep (:mod:`optodfa.weights`) and returns the mean pairwise cosine per layer and in total
(:func:`optodfa.alignment.cross_seed_cosines`) for the initial and final weights, and its time course over the
snapshot steps that all the runs share (runs on the ``"log"`` alignment schedule).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optodfa.alignment import TOTAL, cross_seed_cosines
from optodfa.runlog import RunFile, RunFileError
from optodfa.weights import read_weights

__all__ = ["CrossSeed", "cross_seed", "cross_seed_groups", "cross_seed_markdown"]

# Settings that may differ between runs compared across seeds: the seed itself and where a run ran or read data.
_FREE = ("seed", "data_root", "download", "torch_device")


@dataclasses.dataclass(frozen=True)
class CrossSeed:
    """Cross-seed cosines of a set of runs.

    Attributes:
        paths: the run files, in the order given.
        seeds: their initialisation seeds.
        initial, final: ``{layer: cosine, …, "total": cosine}`` of the initial and the final weights (mean over
            pairs of runs; in [-1, 1]).
        steps: ``(k,)`` snapshot steps every run holds (empty when the runs kept no snapshots).
        course: ``{layer: (k,) array, …, "total": (k,)}``: the cosine at each of ``steps``.
    """

    paths: tuple[Path, ...]
    seeds: tuple[int, ...]
    initial: dict[str, float]
    final: dict[str, float]
    steps: np.ndarray
    course: dict[str, np.ndarray]


def cross_seed(paths: Sequence[str | os.PathLike[str]]) -> CrossSeed:
    """The cross-seed cosines of the completed runs in ``paths``.

    Raises:
        ValueError: fewer than two runs, two runs with the same seed, or runs whose configurations differ in
            anything but the seed (the message names the settings), or layers that do not match.
        RunFileError: a file that is not a readable run file, holds no weights, or has not completed.
    """
    if len(paths) < 2:
        raise ValueError(f"the cross-seed cosine compares at least 2 runs, got {len(paths)}")
    configs, seeds = [], []
    for path in paths:
        run = RunFile.load(path, checkpoint=False)
        if "config" not in run.attrs:
            raise RunFileError(f"{str(path)!r} is not an optodfa run file (no 'config' attribute)")
        configs.append(run.attrs["config"])
        seeds.append(int(run.attrs["config"]["seed"]))
    _check_same_setting(paths, configs, seeds)
    runs = [read_weights(path) for path in paths]
    for weights in runs:
        if not weights.final:
            raise RunFileError(f"run file {str(weights.path)!r} has no final weights: it has not completed "
                               f"(resume it first)")
    common = runs[0].steps
    for weights in runs[1:]:
        common = np.intersect1d(common, weights.steps)
    course: dict[str, list[float]] = {}
    for step in common:
        for name, value in cross_seed_cosines([weights.at(int(step)) for weights in runs]).items():
            course.setdefault(name, []).append(value)
    return CrossSeed(tuple(Path(p) for p in paths), tuple(seeds),
                     cross_seed_cosines([w.initial for w in runs]), cross_seed_cosines([w.final for w in runs]),
                     common.astype(np.int64), {name: np.array(values) for name, values in course.items()})


def _check_same_setting(paths: Sequence[Any], configs: list[dict[str, Any]], seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the cross-seed cosine compares runs of different seeds; seeds {seeds} repeat")
    for path, config in zip(paths[1:], configs[1:], strict=True):
        differ = sorted(k for k in set(config) | set(configs[0])
                        if k not in _FREE and config.get(k) != configs[0].get(k))
        if differ:
            shown = "; ".join(f"{k} = {configs[0].get(k)!r} vs {config.get(k)!r}" for k in differ)
            raise ValueError(f"the cross-seed cosine compares runs that differ only in their seed; {str(path)!r} "
                             f"differs from {str(paths[0])!r} in: {shown}")


def cross_seed_groups(summary: Any) -> list[tuple[dict[str, Any], CrossSeed | RunFileError]]:
    """For a sweep (:class:`optodfa.sweep.summary.SweepSummary`): ``(setting, CrossSeed)`` for every setting with
    at least two completed runs that differ in their seed (the other settings are skipped); in place of the
    ``CrossSeed``, the :class:`RunFileError` of a setting whose run files cannot give one (e.g. no weights)."""
    groups: dict[str, tuple[dict[str, Any], list[Path]]] = {}
    for record in summary.runs:
        if record.status != "completed":
            continue
        setting = {k: v for k, v in record.settings.items() if k != "seed"}
        groups.setdefault(repr(sorted(setting.items(), key=str)), (setting, []))[1].append(record.path)
    found: list[tuple[dict[str, Any], CrossSeed | RunFileError]] = []
    for setting, paths in groups.values():
        if len(paths) >= 2:
            try:
                found.append((setting, cross_seed(paths)))
            except RunFileError as exc:
                found.append((setting, exc))
    return found


def cross_seed_markdown(summary: Any) -> str:
    """A markdown table of the final cross-seed cosine per layer and in total, one row per setting of the sweep
    with two or more completed seeds, then a line for each setting whose files hold no weights; ``""`` when the
    sweep has no such setting."""
    found = cross_seed_groups(summary)
    groups = [(setting, result) for setting, result in found if isinstance(result, CrossSeed)]
    missing = [(setting, result) for setting, result in found if not isinstance(result, CrossSeed)]
    if not found:
        return ""
    notes = "".join(f"- {_setting_text(setting)}: no cross-seed cosine: {error}\n" for setting, error in missing)
    if not groups:
        return notes
    keys = [k for k in summary.setting_keys if k != "seed"]
    layers: list[str] = []
    for _, result in groups:
        layers += [name for name in result.final if name not in layers and name != TOTAL]
    header = [*keys, "seeds", *layers, TOTAL]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for setting, result in groups:
        cells = [str(setting.get(k, "—")) for k in keys] + [",".join(map(str, result.seeds))]
        cells += [f"{result.final[name]:.3f}" if name in result.final else "—" for name in [*layers, TOTAL]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + ("\n" + notes if notes else "")


def _setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "run"
