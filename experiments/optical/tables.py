"""The optical feedback study's markdown tables: every variant against its digital baseline, and the final
per-layer gradient alignment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from experiments._common import markdown_table
from experiments.optical.analysis import per_epoch, stat, status_of
from experiments.optical.records import RUN_METRICS


def headline_table(records: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Every variant against the digital baseline of its family: accuracy, loss in points, alignment (effective,
    ideal, device), weight alignment, fidelity, frames, OPU seconds and joules per epoch; statuses and errors.

    Returns the markdown and the rows as dicts (for the HDF5 file and the tests)."""
    digital = {r["setting"]["family"]: stat(r, "test_accuracy")[0] for r in records
               if r["setting"]["device"] == "digital" and r["statuses"].get("completed")}
    rows, table = [], []
    for record in records:
        s = record["setting"]
        acc, acc_sd, n = stat(record, "test_accuracy")
        reference = digital.get(s["family"], math.nan)
        loss = 100.0 * (reference - acc) if not math.isnan(acc) else math.nan
        frames, _ = per_epoch(record, "frames")
        seconds, _ = per_epoch(record, "hardware_seconds")
        joules, _ = per_epoch(record, "energy_joules")
        row = {"variant": record["label"], "family": s["family"], "status": status_of(record),
               "test_accuracy": acc, "test_accuracy_sd": acc_sd, "seeds": n, "loss_points": loss,
               "within_one_point": bool(loss < 1.0) if not math.isnan(loss) else False,
               "frames_per_epoch": frames, "seconds_per_epoch": seconds, "joules_per_epoch": joules}
        for metric in RUN_METRICS[1:9]:
            row[metric] = stat(record, metric)[0]
        rows.append(row)

        status = row["status"] if not record["errors"] else f"{row['status']}: {'; '.join(record['errors'])}"
        def pm(metric: str, scale: float = 1.0, fmt: str = "{:.3f}", record: Mapping[str, Any] = record) -> str:
            return _mean_sd(stat(record, metric), scale, fmt)

        table.append([record["label"], status, pm("test_accuracy", 100, "{:.2f}"),
                      "—" if math.isnan(loss) else f"{loss:+.2f}", "yes" if row["within_one_point"] else "no",
                      pm("gradient_alignment/total"), pm("ideal_gradient_alignment/total"),
                      pm("device_gradient_alignment/total"), pm("weight_alignment/total"),
                      pm("fidelity/cosine"), pm("fidelity/snr_db", fmt="{:.1f}"), pm("fidelity/enob", fmt="{:.2f}"),
                      "—" if math.isnan(frames) else f"{frames:,.0f}",
                      "—" if math.isnan(seconds) else f"{seconds:.3g}",
                      "—" if math.isnan(joules) else f"{joules:.3g}"])
    header = ["variant", "runs", "test accuracy (%)", "loss vs digital (points)", "< 1 point", "GA effective",
              "GA ideal", "GA device", "weight alignment", "fidelity cosine", "SNR (dB)", "ENOB", "frames/epoch",
              "OPU s/epoch", "OPU J/epoch"]
    return markdown_table(header, table), rows


def _mean_sd(value: tuple[float, float, int], scale: float, fmt: str) -> str:
    mean, sd, count = value
    if count == 0:
        return "—"
    text = fmt.format(scale * mean)
    return text if math.isnan(sd) else f"{text} ± {fmt.format(scale * sd)}"


def layers_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Final per-layer gradient alignment (effective and ideal views), mean over seeds."""
    layer_names: list[str] = []
    for record in records:
        for key in record["values"]:
            if key.startswith("gradient_alignment/") and key.rsplit("/", 1)[1] not in layer_names:
                layer_names.append(key.rsplit("/", 1)[1])
    header = ["variant"] + [f"{view} {layer}" for view in ("effective", "ideal") for layer in layer_names]
    rows = []
    for record in records:
        cells = [record["label"]]
        for prefix in ("gradient_alignment/", "ideal_gradient_alignment/"):
            for layer in layer_names:
                mean = stat(record, prefix + layer)[0]
                cells.append("—" if math.isnan(mean) else f"{mean:.3f}")
        rows.append(cells)
    return markdown_table(header, rows)
