"""The summary of a sweep: per setting, mean ± sd over seeds of the final metrics, as CSV and markdown.

Read from the manifest and the run files alone (no workers). A *setting* is every varying setting but the
initialisation seed, so its runs differ only in ``seed``. Metrics per run (:func:`final_metrics`):
``test_accuracy``, ``gradient_alignment/<layer>`` and ``/total``, ``weight_alignment/total``, the ideal and device
views of the alignment and the device's feedback fidelity where the run recorded them (:mod:`optodfa.study_metrics`),
``frames``, ``hardware_seconds`` and ``energy_joules`` (device counters at the end of training).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from optodfa.runlog import RunFile, RunFileError
from optodfa.sweep.grid import show_value
from optodfa.sweep.manifest import STATUSES, Manifest

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def final_metrics(run: RunFile) -> dict[str, float]:
    """The final value of each summary metric that ``run`` recorded."""
    series = run.series
    metrics: dict[str, float] = {}
    if series.get("metrics/test_accuracy"):
        metrics["test_accuracy"] = series["metrics/test_accuracy"][-1]
    for name in sorted(series, key=_layer_order):
        if name.startswith("alignment/gradient/") and series[name]:
            metrics[f"gradient_alignment/{name.rsplit('/', 1)[1]}"] = series[name][-1]
    if series.get("alignment/weight/total"):
        metrics["weight_alignment/total"] = series["alignment/weight/total"][-1]
    for view in ("ideal", "device"):
        for name in sorted(series, key=_layer_order):
            if name.startswith(f"alignment/{view}/gradient/") and series[name]:
                metrics[f"{view}_gradient_alignment/{name.rsplit('/', 1)[1]}"] = series[name][-1]
    if series.get("alignment/ideal/weight/total"):
        metrics["ideal_weight_alignment/total"] = series["alignment/ideal/weight/total"][-1]
    for key in ("cosine", "snr_db", "enob"):
        if series.get(f"fidelity/{key}"):
            metrics[f"fidelity/{key}"] = series[f"fidelity/{key}"][-1]
    for name, key in (("device/frames", "frames"), ("device/hardware_seconds", "hardware_seconds"),
                      ("device/energy_joules", "energy_joules")):
        if series.get(name):
            metrics[key] = series[name][-1]
    return metrics


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run as the summary sees it: name, varying settings, status, run file, error and final metrics."""

    name: str
    settings: dict[str, Any]
    status: str
    path: Path
    error: str | None
    step: int | None
    attempts: int
    metrics: dict[str, float]

    def load(self) -> RunFile:
        """The whole run file (curves, attributes)."""
        return RunFile.load(self.path)


@dataclasses.dataclass(frozen=True)
class SettingRow:
    """The runs of one setting: their count per status and ``metric -> (mean, sd, n)`` over completed runs.

    ``sd`` is the sample standard deviation (``ddof=1``), NaN with fewer than two runs.
    """

    settings: dict[str, Any]
    statuses: dict[str, int]
    metrics: dict[str, tuple[float, float, int]]
    errors: tuple[str, ...]

    def mean(self, metric: str) -> float:
        return self.metrics[metric][0] if metric in self.metrics else math.nan

    def sd(self, metric: str) -> float:
        return self.metrics[metric][1] if metric in self.metrics else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Settings, then ``<metric>_mean``/``_sd``/``_n``: a flat dict (e.g. a pandas DataFrame row)."""
        flat: dict[str, Any] = dict(self.settings)
        for metric, (mean, sd, n) in self.metrics.items():
            flat.update({f"{metric}_mean": mean, f"{metric}_sd": sd, f"{metric}_n": n})
        return flat

    @property
    def status(self) -> str:
        parts = [f"{n} {status}" for status, n in self.statuses.items() if n]
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """Everything a sweep produced: per-run records, per-setting rows and the varying setting keys."""

    folder: Path
    setting_keys: list[str]
    runs: list[RunRecord]
    rows: list[SettingRow]
    metrics: list[str]

    @property
    def failed(self) -> list[str]:
        return [record.name for record in self.runs if record.status == "failed"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for record in self.runs:
            counts[record.status] += 1
        return counts

    def row(self, **settings: Any) -> SettingRow:
        """The row whose settings include ``settings`` (e.g. ``summary.row(**{"camera.bits": 4})``); one only."""
        found = [row for row in self.rows if all(row.settings.get(k) == v for k, v in settings.items())]
        if len(found) != 1:
            raise KeyError(f"{len(found)} rows match {settings}; settings: {[r.settings for r in self.rows]}")
        return found[0]

    def select(self, **settings: Any) -> SweepSummary:
        """The part of the sweep with ``settings`` fixed (e.g. ``select(encoding="ternary")``); the fixed keys
        leave ``setting_keys``, so a figure over the remaining ones no longer mixes settings."""
        unknown = sorted(set(settings) - set(self.setting_keys))
        if unknown:
            raise KeyError(f"unknown setting(s) {unknown}; the sweep varies {self.setting_keys}")
        rows = [row for row in self.rows if all(row.settings.get(k) == v for k, v in settings.items())]
        if not rows:
            raise KeyError(f"no setting has {settings}; values: "
                           f"{ {k: settings_of(self, k) for k in settings} }")
        runs = [r for r in self.runs if all(r.settings.get(k) == v for k, v in settings.items())]
        keys = [k for k in self.setting_keys if k not in settings]
        rows = [dataclasses.replace(row, settings={k: row.settings.get(k) for k in keys}) for row in rows]
        return dataclasses.replace(self, setting_keys=keys, rows=rows, runs=runs)

    def markdown(self) -> str:
        """The table: one row per setting, ``mean ± sd`` per metric, the runs' statuses."""
        header = [*self.setting_keys, "runs", *(_label(m) for m in self.metrics)]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for row in self.rows:
            cells = [_cell(row.settings.get(k)) for k in self.setting_keys] + [row.status]
            cells += [_mean_sd(m, *row.metrics[m][:2]) if m in row.metrics else "—" for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {', '.join(f'{k}={_cell(row.settings.get(k))}' for k in self.setting_keys) or 'run'}: {error}"
                 for row in self.rows for error in row.errors]
        text = "\n".join(lines) + "\n"
        if notes:
            text += "\nRuns that did not complete:\n\n" + "\n".join(notes) + "\n"
        return text

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """One line per setting: the settings, run counts per status, ``<metric>_mean``/``_sd``/``_n``."""
        path = Path(path)
        header = [*self.setting_keys, *STATUSES]
        for metric in self.metrics:
            header += [f"{metric}_mean", f"{metric}_sd", f"{metric}_n"]
        header.append("errors")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in self.rows:
                line = [_cell(row.settings.get(k)) for k in self.setting_keys] + [row.statuses[s] for s in STATUSES]
                for metric in self.metrics:
                    mean, sd, n = row.metrics.get(metric, (math.nan, math.nan, 0))
                    line += [f"{mean:.6g}", f"{sd:.6g}", n]
                line.append(" | ".join(row.errors))
                writer.writerow(line)
        return path


def summarise(folder: str | os.PathLike[str]) -> SweepSummary:
    """The summary of the sweep in ``folder`` from its manifest and run files."""
    manifest = Manifest.load(folder)
    records = []
    for name, entry in manifest.runs.items():
        metrics: dict[str, float] = {}
        path = manifest.run_path(name)
        if entry.status == "completed":
            try:
                metrics = final_metrics(RunFile.load(path))
            except RunFileError as exc:
                records.append(RunRecord(name, entry.settings, "failed", path, str(exc), None, entry.attempts, {}))
                continue
        records.append(RunRecord(name, entry.settings, entry.status, path, entry.error, entry.step, entry.attempts,
                                 metrics))
    keys = list(manifest.setting_keys)
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(tuple(repr(record.settings.get(k)) for k in keys), []).append(record)
    metrics_seen: dict[str, None] = {}
    for record in records:
        metrics_seen.update(dict.fromkeys(record.metrics))
    order = sorted(metrics_seen, key=_metric_order)
    rows = [_row(keys, group, order) for group in groups.values()]
    return SweepSummary(Path(folder), keys, records, rows, order)


def _row(keys: list[str], group: list[RunRecord], metrics: list[str]) -> SettingRow:
    statuses = dict.fromkeys(STATUSES, 0)
    for record in group:
        statuses[record.status] += 1
    values: dict[str, tuple[float, float, int]] = {}
    for metric in metrics:
        data = np.array([r.metrics[metric] for r in group if metric in r.metrics], dtype=float)
        if len(data):
            values[metric] = (float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else math.nan, len(data))
    errors = []
    for record in group:
        if record.status in ("failed", "invalid", "diverged"):
            where = f" at step {record.step}" if record.step is not None else ""
            seed = f" (seed {record.settings['seed']})" if "seed" in record.settings else ""
            errors.append(f"{record.status}{where}{seed}: {record.error}")
    return SettingRow({k: group[0].settings.get(k) for k in keys}, statuses, values, tuple(errors))


def _layer_order(name: str) -> tuple[int, str]:
    return (1, name) if name.endswith("/total") else (0, name)


def _metric_order(metric: str) -> tuple[int, str]:
    first = ("test_accuracy",)
    last = ("frames", "hardware_seconds", "energy_joules")
    if metric in first:
        return (0, "")
    if metric in last:
        return (3, str(last.index(metric)))
    if metric.startswith("gradient_alignment/"):
        return (1, "1" + ("~" if metric.endswith("/total") else "") + metric)  # "~" sorts the total last
    for rank, view in ((2, "ideal_gradient_alignment/"), (3, "device_gradient_alignment/")):
        if metric.startswith(view):
            return (1, f"{rank}" + ("~" if metric.endswith("/total") else "") + metric)
    return (2, metric)


def _label(metric: str) -> str:
    names = {"test_accuracy": "test accuracy", "frames": "device frames", "energy_joules": "device energy (J)",
             "hardware_seconds": "device time (s)", "weight_alignment/total": "weight alignment total",
             "ideal_weight_alignment/total": "ideal weight alignment total", "fidelity/cosine": "fidelity cosine",
             "fidelity/snr_db": "fidelity SNR (dB)", "fidelity/enob": "fidelity ENOB"}
    if metric in names:
        return names[metric]
    for view in ("ideal", "device"):
        if metric.startswith(f"{view}_gradient_alignment/"):
            return metric.replace(f"{view}_gradient_alignment/", f"{view} gradient alignment ")
    return metric.replace("gradient_alignment/", "gradient alignment ")


def _cell(value: Any) -> str:
    return show_value(value, none="—")


def _mean_sd(metric: str, mean: float, sd: float) -> str:
    big = metric in ("frames", "hardware_seconds", "energy_joules")
    fmt = (lambda v: f"{v:,.0f}") if metric == "frames" else (lambda v: f"{v:.4g}") if big else (lambda v: f"{v:.3f}")
    return fmt(mean) if math.isnan(sd) else f"{fmt(mean)} ± {fmt(sd)}"


def settings_of(summary: SweepSummary, key: str) -> list[Any]:
    """The distinct values of setting ``key`` in the order the grid lists them."""
    seen: dict[str, Any] = {}
    for row in summary.rows:
        seen.setdefault(repr(row.settings.get(key)), row.settings.get(key))
    return list(seen.values())
