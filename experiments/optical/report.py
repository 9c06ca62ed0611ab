"""The optical feedback study's report: every table and figure, from its sweep folder alone, into
``<folder>/study/`` (``study.md``, ``study.h5`` with one dataset per table column, and the PNG figures)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments._common import markdown_table
from experiments.optical.figures import (
    bits_figure,
    curves_figure,
    family_bits_figure,
    front_figure,
    light_figure,
    scatter_figure,
)
from experiments.optical.records import load_study
from experiments.optical.tables import headline_table, layers_table


def write_study(folder: str | Path) -> dict[str, Path]:
    """Every table and figure of the study from the sweep folder ``folder`` alone, into ``folder/study/``."""
    import h5py

    folder = Path(folder)
    started = time.perf_counter()
    records = load_study(folder)
    out = folder / "study"
    out.mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    timings: dict[str, float] = {}

    def save(name: str, figure: Any) -> None:
        begun = time.perf_counter()
        paths[name] = out / f"{name}.png"
        figure.savefig(paths[name], dpi=130, bbox_inches="tight")
        timings[name] = time.perf_counter() - begun

    table, rows = headline_table(records)
    save("bits", bits_figure(records))
    sgd_deep = [f for f in ("sgd", "deep") if any(r["setting"]["family"] == f and r["setting"]["device"] == "opu-sim"
                                                   and r["statuses"].get("completed") for r in records)]
    for family in sgd_deep:
        save(f"bits_{family}", family_bits_figure(records, family))
    save("light", light_figure(records))
    front_fig, front = front_figure(records)
    save("front", front_fig)
    scatter_fig, correlations = scatter_figure(records)
    save("scatter", scatter_fig)
    save("curves", curves_figure(records))

    within = [r for r in rows if r["within_one_point"] and r["family"] == "adam" and r["variant"] != "digital"]
    within.sort(key=lambda r: r["frames_per_epoch"])
    cheapest = markdown_table(["variant", "test accuracy (%)", "loss vs digital (points)", "frames/epoch",
                               "OPU J/epoch"],
                              [[r["variant"], f"{100 * r['test_accuracy']:.2f}", f"{r['loss_points']:+.2f}",
                                f"{r['frames_per_epoch']:,.0f}", f"{r['joules_per_epoch']:.3g}"] for r in within])
    front_table = markdown_table(["variant", "test accuracy (%)", "frames/epoch", "OPU J/epoch"],
                                 [[p["variant"], f"{100 * p['test_accuracy']:.2f}", f"{p['frames_per_epoch']:,.0f}",
                                   f"{p['joules_per_epoch']:.3g}"] for p in front])
    text = (f"# Optical feedback study\n\nSweep folder: `{folder}`; {len(records)} settings. Accuracy in %, mean ± "
            f"sd over seeds; 'loss' is against the digital run of the same optimiser and network.\n\n"
            f"## Every setting\n\n{table}\n## Settings within one point of digital (Adam 800-800), cheapest "
            f"first\n\n{cheapest}\n## Accuracy-energy front (Adam 800-800)\n\n{front_table}\n"
            f"## Per-layer gradient alignment\n\n{layers_table(records)}\n"
            f"Pearson r of final accuracy and final total alignment over Adam 800-800 runs: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in correlations.items()) + "\n")
    paths["md"] = out / "study.md"
    paths["md"].write_text(text, encoding="utf-8")
    paths["h5"] = out / "study.h5"
    with h5py.File(paths["h5"], "w") as handle:
        for key in rows[0] if rows else ():  # one dataset per column, "/" of a metric name written as "."
            values = [r[key] for r in rows]
            name = key.replace("/", ".")
            if isinstance(values[0], str):
                handle.create_dataset(name, data=np.array(values, dtype=h5py.string_dtype()))
            else:
                handle.create_dataset(name, data=np.asarray(values, dtype=float))
        handle.attrs["front"] = json.dumps(front)
        handle.attrs["correlations"] = json.dumps(correlations)
        handle.attrs["settings"] = json.dumps({r["label"]: r["setting"] for r in records})
        handle.attrs["figure_seconds"] = json.dumps(timings)
        handle.attrs["seconds"] = time.perf_counter() - started
    return paths
