"""The end-of-run table, computed from a run file alone (``optodfa report RUN.h5`` prints the same table), and
one table comparing several runs, one column each (``optodfa report A.h5 B.h5 ...``)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from optodfa.runlog import RunFile

MISSING = "-"


def summary_rows(run: RunFile) -> list[tuple[str, str]]:
    """``(label, value)`` rows: accuracy, loss, final alignment per layer, device counters. A transformer's run
    (it has the ``text`` attribute) names its held-out metrics as such, per token, with the perplexity."""
    series, attrs = run.series, run.attrs
    config = attrs.get("config", {})
    rows = [("run", str(run.path)),
            ("method / device", f"{attrs.get('method')} / {attrs.get('device')}"
                                + (f" (profile {config.get('profile')})" if config.get("profile") else "")),
            ("dataset", str(attrs.get("dataset"))),
            ("seeds", f"init {attrs.get('seed')}, feedback {attrs.get('feedback_seed')}"),
            ("status", _status(attrs))]
    if attrs.get("started_utc"):
        rows.append(("started / ended (UTC)", f"{attrs['started_utc']} / {attrs.get('ended_utc') or MISSING}"))
    versions = attrs.get("versions", {})
    if isinstance(versions, dict) and versions:
        commit = versions.get("git_commit")
        rows.append(("optodfa", f"{versions.get('optodfa')}" + (f" ({commit})" if commit else "")))
        rows.append(("torch (CUDA build)", f"{versions.get('torch')} ({versions.get('torch_cuda') or 'none'})"))
    accuracy = series.get("metrics/test_accuracy", [])
    epochs = config.get("epochs", "?")
    rows.append(("epochs done", f"{len(accuracy)} / {epochs}"))
    if accuracy and "text" in attrs:
        loss = series.get("metrics/test_loss", [])
        rows.append(("held-out loss, nats/token (final)", f"{loss[-1]:.4f}" if loss else MISSING))
        rows.append(("held-out perplexity (final)", f"{math.exp(loss[-1]):.3f}" if loss else MISSING))
        rows.append(("held-out token accuracy (final)", f"{accuracy[-1]:.4f}"))
        rows.append(("train loss, nats/token (last epoch)", f"{series['metrics/train_loss'][-1]:.4f}"))
    elif accuracy:
        rows.append(("test accuracy (final)", f"{accuracy[-1]:.4f}"))
        rows.append(("test accuracy (best)", f"{max(accuracy):.4f}"))
        rows.append(("train loss (last epoch)", f"{series['metrics/train_loss'][-1]:.4f}"))
    for name in sorted(k for k in series if k.startswith("alignment/gradient/")):
        rows.append((f"gradient alignment {name.rsplit('/', 1)[1]}", f"{series[name][-1]:+.3f}"))
    for name in sorted(k for k in series if k.startswith("alignment/weight/")):
        rows.append((f"weight alignment {name.rsplit('/', 1)[1]}", f"{series[name][-1]:+.3f}"))
    if series.get("device/frames") and series["device/frames"][-1] > 0:
        rows.append(("device frames", f"{series['device/frames'][-1]:,.0f}"))
        rows.append(("simulated device seconds", f"{series['device/hardware_seconds'][-1]:.2f}"))
        rows.append(("device energy (J)", f"{series['device/energy_joules'][-1]:.1f}"))
        if series.get("device/saturated_pixels"):
            rows.append(("saturated pixel readings", f"{series['device/saturated_pixels'][-1]:,.0f}"))
    if series.get("device/macs"):
        rows.append(("digital MACs of the same B e", f"{series['device/macs'][-1]:.3g}"))
    if series.get("metrics/skipped_batches") and series["metrics/skipped_batches"][-1]:
        rows.append(("skipped batches (non-finite error)", f"{series['metrics/skipped_batches'][-1]:.0f}"))
    if series.get("metrics/epoch_seconds"):
        rows.append(("wall seconds (training + evaluation)", f"{sum(series['metrics/epoch_seconds']):.1f}"))
    return rows


def _status(attrs: dict) -> str:
    status = str(attrs.get("status"))
    if status == "failed":
        return f"failed at step {attrs.get('error_step', '?')}: {attrs.get('error', 'no error recorded')}"
    return status


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def summary_table(path: str | os.PathLike[str]) -> str:
    """The table for the run file at ``path``.

    Raises:
        RunFileError: ``path`` is not a readable run file (the message names it and what failed).
    """
    return format_table(summary_rows(RunFile.load(path, checkpoint=False)))


def comparison_table(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One table for several run files: a row per quantity, a column per run (``-`` where a run lacks it).

    Every file is read before anything is printed, so one bad file fails the whole table with its name.
    """
    tables = [dict(summary_rows(RunFile.load(path, checkpoint=False))) for path in paths]
    labels: list[str] = []
    for table in tables:
        labels += [label for label in table if label not in labels and label != "run"]
    names = [Path(path).name for path in paths]
    header = ["run", *(names if len(set(names)) == len(names) else [str(path) for path in paths])]
    rows = [header] + [[label, *(table.get(label, MISSING) for table in tables)] for label in labels]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
