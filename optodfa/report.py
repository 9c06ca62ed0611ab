"""The end-of-run table, computed from a run file alone (``optodfa report RUN.h5`` prints the same table)."""

from __future__ import annotations

from pathlib import Path

from optodfa.runlog import RunFile


def summary_rows(run: RunFile) -> list[tuple[str, str]]:
    """``(label, value)`` rows: accuracy, loss, final alignment per layer, device counters."""
    series, attrs = run.series, run.attrs
    config = attrs.get("config", {})
    rows = [("run", str(run.path)),
            ("method / device", f"{attrs.get('method')} / {attrs.get('device')}"
                                + (f" (profile {config.get('profile')})" if config.get("profile") else "")),
            ("dataset", str(attrs.get("dataset"))),
            ("seeds", f"init {attrs.get('seed')}, feedback {attrs.get('feedback_seed')}"),
            ("status", str(attrs.get("status")))]
    accuracy = series.get("metrics/test_accuracy", [])
    epochs = config.get("epochs", "?")
    rows.append(("epochs done", f"{len(accuracy)} / {epochs}"))
    if accuracy:
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


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def summary_table(path: str | Path) -> str:
    """The table for the run file at ``path``."""
    return format_table(summary_rows(RunFile.load(path)))
