"""The optical feedback study's figures, drawn from its records (:mod:`.records`) on matplotlib ``Figure``
objects (no pyplot state): accuracy and alignment against camera bits, the photon-rate × read-noise map, the
accuracy-cost front, accuracy against alignment over every run, and alignment over training."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.optical.analysis import pareto, per_epoch, stat
from experiments.optical.grid import EXPOSURE_S, REFERENCE_MIRRORS


def _is(setting: Mapping[str, Any], **wanted: Any) -> bool:
    return all(setting.get(k) == v for k, v in wanted.items())


# the base's device settings, by setting_of's names: the bits figure keeps runs that vary bits and encoding only
BASE = {"device": "opu-sim", "photon_rate": 1500.0, "read_noise": 5.0, "readout": "holographic", "evening": False,
        "rho": 1.0, "recalibrate": 0}


def _bits_position(bits: int | str) -> float:
    return 16.0 if bits == "unlimited" else float(bits)


def bits_figure(records: Sequence[Mapping[str, Any]], family: str = "adam") -> Any:
    """Accuracy and gradient alignment against camera bits, one line per encoding, digital as a band."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    acc_axes, ga_axes = figure.subplots(1, 2)
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        s = record["setting"]
        if s["family"] == family and _is(s, **BASE) and record["statuses"].get("completed"):
            lines.setdefault(s["encoding"], []).append(record)
    for encoding, group in lines.items():
        if len({r["setting"]["bits"] for r in group}) < 3:
            continue  # a single point (the encoding axis at 8 bits) is not a line
        group = sorted(group, key=lambda r: _bits_position(r["setting"]["bits"]))
        x = [_bits_position(r["setting"]["bits"]) for r in group]
        for axes, metric, scale in ((acc_axes, "test_accuracy", 100.0), (ga_axes, "gradient_alignment/total", 1.0)):
            mean = np.array([stat(r, metric)[0] for r in group]) * scale
            sd = np.nan_to_num(np.array([stat(r, metric)[1] for r in group])) * scale
            axes.errorbar(x, mean, yerr=sd, marker="o", capsize=3, label=encoding)
        device = np.array([stat(r, "device_gradient_alignment/total")[0] for r in group])
        ga_axes.plot(x, device, ":", color=ga_axes.lines[-1].get_color(), alpha=0.8)
    for record in records:
        s = record["setting"]
        if s["family"] == family and s["device"] == "digital" and record["statuses"].get("completed"):
            for axes, metric, scale in ((acc_axes, "test_accuracy", 100.0),
                                        (ga_axes, "gradient_alignment/total", 1.0)):
                mean, sd, _ = stat(record, metric)
                axes.axhspan(scale * (mean - np.nan_to_num(sd)), scale * (mean + np.nan_to_num(sd)), color="0.85")
                axes.axhline(scale * mean, color="0.4", lw=1, label="digital B e")
            acc_axes.axhline(100 * stat(record, "test_accuracy")[0] - 1, color="0.4", lw=1, ls="--",
                             label="digital − 1 point")
    ticks = sorted({_bits_position(r["setting"]["bits"]) for group in lines.values() for r in group})
    for axes in (acc_axes, ga_axes):
        axes.set_xscale("log", base=2)
        axes.set_xticks(ticks, [("∞" if t == 16 else f"{t:g}") for t in ticks])
        axes.set_xlabel("camera bits")
    acc_axes.set(ylabel="test accuracy (%)", title="accuracy vs camera bits (mean ± sd, 3 seeds)")
    ga_axes.set(ylabel="gradient alignment, total",
                title="alignment vs camera bits (solid: B_eff e; dotted: device output)")
    acc_axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def family_bits_figure(records: Sequence[Mapping[str, Any]], family: str) -> Any:
    """:func:`bits_figure` for the ``sgd`` or ``deep`` family, titled with its optimiser and network."""
    figure = bits_figure(records, family)
    title = {"sgd": "plain SGD, MLP 800-800", "deep": "Adam, 4 x 100 bias-free MLP"}[family]
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def light_figure(records: Sequence[Mapping[str, Any]]) -> Any:
    """Heat map of accuracy over photon rate × read noise (12-bit camera), sd over seeds in each cell."""
    from matplotlib.figure import Figure

    cells = {(r["setting"]["photon_rate"], r["setting"]["read_noise"]): r for r in records
             if r["label"].startswith("light-")}
    rates = sorted({k[0] for k in cells})
    noises = sorted({k[1] for k in cells})
    grid = np.full((len(noises), len(rates)), np.nan)
    sds = np.full_like(grid, np.nan)
    for (rate, noise), record in cells.items():
        grid[noises.index(noise), rates.index(rate)], sds[noises.index(noise), rates.index(rate)], _ = (
            v * 100 if i < 2 else v for i, v in enumerate(stat(record, "test_accuracy")))
    figure = Figure(figsize=(1.5 * len(rates) + 3, 0.9 * len(noises) + 2.2))
    axes = figure.subplots()
    image = axes.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    for i in range(len(noises)):
        for j in range(len(rates)):
            if not math.isnan(grid[i, j]):
                axes.text(j, i, f"{grid[i, j]:.1f}\n±{np.nan_to_num(sds[i, j]):.1f}", ha="center", va="center",
                          fontsize=8, color="w" if grid[i, j] < np.nanmean(grid) else "k")
    axes.set_xticks(range(len(rates)), [f"{rate * EXPOSURE_S * REFERENCE_MIRRORS:.3g}" for rate in rates])
    axes.set_yticks(range(len(noises)), [f"{n:g}" for n in noises])
    axes.set(xlabel="photo-electrons per pixel, reference frame at 400 us (photon rate × 3.28)",
             ylabel="read noise (e- rms)", title="test accuracy (%), 12-bit camera, mean ± sd over seeds")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    return figure


def front_figure(records: Sequence[Mapping[str, Any]], family: str = "adam") -> tuple[Any, list[dict[str, Any]]]:
    """Accuracy against OPU frames and joules per epoch for every opu-sim setting of ``family``; Pareto front
    marked and named. Returns the figure and the front (cost ascending)."""
    from matplotlib.figure import Figure

    chosen = [r for r in records if r["setting"]["family"] == family and r["setting"]["device"] == "opu-sim"
              and r["statuses"].get("completed") and stat(r, "frames")[2]]
    digital = [r for r in records if r["setting"]["family"] == family and r["setting"]["device"] == "digital"
               and r["statuses"].get("completed")]
    points = [(per_epoch(r, "frames")[0], 100 * stat(r, "test_accuracy")[0]) for r in chosen]
    flags = pareto(points)
    figure = Figure(figsize=(11, 4.4))
    axes_pair = figure.subplots(1, 2)
    for axes, metric, label in ((axes_pair[0], "frames", "OPU frames per epoch"),
                                (axes_pair[1], "energy_joules", "OPU energy per epoch (J)")):
        for record, flag in zip(chosen, flags, strict=True):
            x = per_epoch(record, metric)[0]
            mean, sd, _ = stat(record, "test_accuracy")
            axes.errorbar([x], [100 * mean], yerr=[100 * np.nan_to_num(sd)], fmt="o" if flag else ".",
                          color="C3" if flag else "0.55", ms=6 if flag else 4, capsize=2, zorder=3 if flag else 2)
            if flag:
                axes.annotate(record["label"], (x, 100 * mean), fontsize=6, xytext=(3, -8),
                              textcoords="offset points")
        for record in digital:
            mean = stat(record, "test_accuracy")[0]
            axes.axhline(100 * mean, color="0.3", lw=1, label="digital B e")
            axes.axhline(100 * mean - 1, color="0.3", lw=1, ls="--", label="digital − 1 point")
        axes.set_xscale("log")
        axes.set(xlabel=label, ylabel="test accuracy (%)")
    axes_pair[0].set_title("accuracy vs frames (red: no setting beats it on both)")
    axes_pair[1].set_title("accuracy vs energy (30 W x 0.5 ms per frame)")
    axes_pair[0].legend(fontsize=8, loc="lower right")
    tops = [100 * stat(r, "test_accuracy")[0] for r in chosen]
    if tops:
        low = np.nanpercentile(tops, 10)
        for axes in axes_pair:
            axes.set_ylim(bottom=low - 2)
    figure.tight_layout()
    front = sorted(({"variant": r["label"], "frames_per_epoch": p[0], "test_accuracy": p[1] / 100,
                     "joules_per_epoch": per_epoch(r, "energy_joules")[0]}
                    for r, p, f in zip(chosen, points, flags, strict=True) if f), key=lambda d: d["frames_per_epoch"])
    return figure, front


GROUP_COLOURS = {"bits": "C0", "bits8": "C1", "light": "C2", "readout": "C3", "drift": "C4", "sgd": "C5",
                 "deep": "C6", "digital": "k", "bad": "C7"}


def _group(record: Mapping[str, Any]) -> str:
    label, s = record["label"], record["setting"]
    if s["family"] in ("sgd", "deep", "bad"):
        return s["family"]
    if s["device"] == "digital":
        return "digital"
    for prefix in ("light", "readout", "drift"):
        if label.startswith(prefix):
            return prefix
    return "bits8" if s["bits"] == 8 else "bits"


def scatter_figure(records: Sequence[Mapping[str, Any]]) -> tuple[Any, dict[str, float]]:
    """Final accuracy against final gradient alignment (effective and device views) over every completed run of
    the study; returns the figure and the Pearson correlations over Adam 800-800 runs."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.4))
    axes_pair = figure.subplots(1, 2)
    correlations = {}
    for axes, metric, title in ((axes_pair[0], "gradient_alignment/total", "B_eff e (noiseless)"),
                                (axes_pair[1], "device_gradient_alignment/total", "device output (as trained)")):
        seen = set()
        xs, ys = [], []
        for record in records:
            group = _group(record)
            ga = record["values"].get(metric, [])
            acc = record["values"].get("test_accuracy", [])
            if not ga:
                continue
            axes.scatter(ga, 100 * np.asarray(acc), s=12, color=GROUP_COLOURS[group], alpha=0.75,
                         label=None if group in seen else group)
            seen.add(group)
            if record["setting"]["family"] == "adam":
                xs += list(ga)
                ys += list(acc)
        if len(xs) > 2:
            correlations[metric] = float(np.corrcoef(xs, ys)[0, 1])
        axes.set(xlabel=f"final gradient alignment, total: {title}", ylabel="final test accuracy (%)",
                 title=f"every run; Pearson r (Adam 800-800) = {correlations.get(metric, math.nan):.2f}")
    axes_pair[0].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure, correlations


CURVES = (("bits1-ternary-0.25", "1-bit camera, ternary"), ("bits2-ternary-0.25", "2-bit camera, ternary"),
          ("bits8-ternary-0.25", "8-bit camera, ternary"), ("bits8-bitplane-3", "8-bit camera, bit-plane 3"),
          ("readout-intensity", "intensity readout, ternary"), ("digital", "digital B e"))


def curves_figure(records: Sequence[Mapping[str, Any]],
                  chosen: Sequence[tuple[str, str]] = CURVES) -> Any:
    """Total gradient alignment over training steps (mean over seeds) for contrasting settings, two views."""
    from matplotlib.figure import Figure

    by_label = {r["label"]: r for r in records}
    figure = Figure(figsize=(11, 4.2))
    axes_pair = figure.subplots(1, 2)
    for axes, view, title in ((axes_pair[0], "effective", "DFA signal B_eff e"),
                              (axes_pair[1], "device", "device output (as trained)")):
        for label, name in chosen:
            record = by_label.get(label)
            if record is None or not record["curves"].get(view):
                continue
            runs = record["curves"][view]
            length = min(len(v) for _, v in runs)
            steps = runs[0][0][:length]
            values = np.array([v[:length] for _, v in runs])
            mean, sd = values.mean(0), values.std(0)
            axes.plot(steps, mean, label=name)
            axes.fill_between(steps, mean - sd, mean + sd, alpha=0.2)
        axes.set(xlabel="training step", ylabel="gradient alignment, total", title=f"alignment over training: {title}")
    axes_pair[0].legend(fontsize=8)
    figure.tight_layout()
    return figure
