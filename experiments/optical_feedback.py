"""What the optics does to DFA learning: Fashion-MNIST with feedback through ``opu-sim`` against ``digital``.

Run: ``python -m experiments.optical_feedback [--quick] [--out results] [--workers 2]`` trains the study as one
sweep (:func:`optodfa.sweep.run`) in ``<out>/optical_feedback/`` and writes its figures and tables into that
folder's ``study/``; ``python -m experiments.optical_feedback --from FOLDER`` redraws them from a sweep folder alone
(its manifest and run files), and ``optodfa report FOLDER`` prints the sweep's own summary.

The study (:func:`full_grid`; SPEC §6.6, issue 8). Every setting trains from 3 initialisation seeds with the
feedback seed fixed (0); the base is DFA, MLP 784-800-800-10 (tanh, bias), Adam at 1e-3, batch 128, the first
10 000 training images for 3 epochs, the full 10 000-image test set, ``opu-sim`` with the ``lighton-aurora``
profile (8-bit camera, shot noise, 5 e- read noise, ternary threshold 0.25, holographic readout). Groups of
settings, each changing one or two things from the base:

* ``bits``: camera bits 1, 2, 3, 4, 6, 8, 12 and unlimited, for the ternary (0.25), sign and 3-bit bit-plane
  encodings;
* ``encoding``: ternary at thresholds 0.05, 0.1, 0.25 and 0.5, sign, bit-plane with 1 to 4 bits (8-bit camera);
* ``light``: photon rate × read noise on a 12-bit camera (so the ADC does not hide the photon budget), from a
  third of a photo-electron per pixel in the reference frame to thousands;
* ``readout``: holographic, strong-reference, intensity-only, each with and without row evening (the intensity
  readout has no rows to even: that setting is ``invalid`` by design);
* ``drift``: medium drift with ρ = 0.999, 0.99, 0.9 per 1000 frames (row evening on), with and without
  re-calibration of the evening factors every 1000 frames (``readout.recalibrate``), and ρ = 0.99 without evening;
* ``sgd``: plain SGD (lr 0.05, momentum 0) on the bits axis (1, 2, 4, 8, unlimited) and digital;
* ``deep``: the 4 × 100 bias-free MLP of the deep study (Adam) on the same bits axis and digital;
* ``bad``: a dark offset above a 4-bit camera's top code (``invalid``, with the device's message) and plain SGD at
  a learning rate that diverges (``diverged``, with its step): the summary's and the study table's statuses.

What each run records (every 10 steps: gradient alignment per layer in the effective, ideal and device views,
weight alignment, feedback fidelity; per epoch: accuracy, frames, OPU seconds and joules) is described in
:mod:`optodfa.study_metrics` and :mod:`optodfa.train`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments._common import add_sweep_arguments, markdown_table

NAME = "optical_feedback"
SEEDS = (0, 1, 2)
ENCODINGS: dict[str, dict[str, Any]] = {
    "ternary-0.05": {"encoding.kind": "ternary", "encoding.threshold": 0.05},
    "ternary-0.1": {"encoding.kind": "ternary", "encoding.threshold": 0.1},
    "ternary-0.25": {"encoding.kind": "ternary", "encoding.threshold": 0.25},
    "ternary-0.5": {"encoding.kind": "ternary", "encoding.threshold": 0.5},
    "sign": {"encoding.kind": "sign"},
    **{f"bitplane-{b}": {"encoding.kind": "bitplane", "encoding.bits": b} for b in (1, 2, 3, 4)},
}
BITS: tuple[int | str, ...] = (1, 2, 3, 4, 6, 8, 12, "unlimited")
BITS_ENCODINGS = ("ternary-0.25", "sign", "bitplane-3")
SHORT_BITS: tuple[int | str, ...] = (1, 2, 8, "unlimited")  # the bits of the other encodings and families
# photo-electrons/s per lit mirror per pixel; x 400 us x 8192 reference mirrors = mean e- per pixel of the reference
PHOTON_RATES = (0.1, 3.0, 1500.0)
READ_NOISE = (0.0, 10.0, 30.0)  # e- rms
RHOS = (0.99, 0.9)
ENCODING_AXIS = ("ternary-0.05", "ternary-0.25", "ternary-0.5", "sign", "bitplane-1", "bitplane-2", "bitplane-3",
                 "bitplane-4")
DRIFT_PERIOD = 1000  # frames
REFERENCE_MIRRORS, EXPOSURE_S = 8192, 400e-6  # lighton-aurora: reference region, longest exposure
SGD_LR = 0.05
DIVERGING_LR = 1e38  # plain SGD: the weights overflow float32 at step 2, the error is NaN


def _bits_label(bits: int | str) -> str:
    return "inf" if bits == "unlimited" else str(bits)


def study_variants(*, bits: Sequence[int | str] = BITS, short_bits: Sequence[int | str] = SHORT_BITS,
                   encodings: Sequence[str] = ENCODING_AXIS, bits_encodings: Sequence[str] = BITS_ENCODINGS,
                   rates: Sequence[float] = PHOTON_RATES, read_noise: Sequence[float] = READ_NOISE,
                   rhos: Sequence[float] = RHOS) -> dict[str, dict[str, Any]]:
    """Variant label -> settings over the base (flat keys: TrainConfig fields and ``set.<device key>``)."""
    variants: dict[str, dict[str, Any]] = {"digital": {"device": "digital"}}

    def add(label: str, settings: Mapping[str, Any]) -> None:
        flat = {k if k in ("device", "optimizer", "lr", "hidden", "bias") else f"set.{k}": v
                for k, v in settings.items()}
        if label in variants:
            raise ValueError(f"variant {label!r} defined twice")
        variants[label] = flat

    for index, encoding in enumerate(bits_encodings):
        for b in bits if index == 0 else short_bits:  # the first encoding gets every bit depth
            add(f"bits{_bits_label(b)}-{encoding}", {"camera.bits": b, **ENCODINGS[encoding]})
    for encoding in encodings:
        if f"bits8-{encoding}" not in variants:
            add(f"bits8-{encoding}", {"camera.bits": 8, **ENCODINGS[encoding]})
    for rate in rates:
        for noise in read_noise:
            add(f"light-rate{rate:g}-read{noise:g}", {"camera.bits": 12, "camera.photon_rate": rate,
                                                      "camera.read_noise": noise})
    for mode in ("holographic", "strong-reference", "intensity"):
        for evening in (False, True):
            if mode == "holographic" and not evening:
                continue  # the base
            add(f"readout-{mode}{'-evening' if evening else ''}", {"readout.mode": mode, "readout.evening": evening})
    for rho in rhos:
        for recalibrate in (0, DRIFT_PERIOD):
            add(f"drift{rho:g}-evening{'-recal' if recalibrate else ''}",
                {"drift.enabled": True, "drift.rho": rho, "drift.period": DRIFT_PERIOD, "readout.evening": True,
                 "readout.recalibrate": recalibrate})
    if rhos:
        rho = rhos[len(rhos) // 2]
        add(f"drift{rho:g}", {"drift.enabled": True, "drift.rho": rho, "drift.period": DRIFT_PERIOD})
    for family, extra in (("sgd", {"optimizer": "sgd-plain", "lr": SGD_LR}),
                          ("deep", {"hidden": [100, 100, 100, 100], "bias": False})):
        variants[f"{family}-digital"] = {"device": "digital", **extra}
        for b in short_bits:
            add(f"{family}-bits{_bits_label(b)}", {**extra, "camera.bits": b})
    add("bad-dark-offset-4bit", {"camera.bits": 4, "camera.dark_offset": 20.0})
    add("bad-diverging-lr", {"device": "digital", "optimizer": "sgd-plain", "lr": DIVERGING_LR})
    return variants


CORE_GROUPS = ("digital", "bits", "light")  # the headline: bits, encoding, photon budget x read noise


def _in_core(label: str) -> bool:
    return label == "digital" or label.startswith(("bits", "light-"))


def full_grids() -> dict[str, dict[str, Any]]:
    """The full study as two grid dicts, ``core`` (digital, camera bits, encodings, light) and ``extra`` (readout,
    drift, plain SGD, the deep MLP, bad input), run in that order so that the headline comes first."""
    base = {"dataset": "fashion-mnist", "hidden": [800, 800], "method": "dfa", "device": "opu-sim", "epochs": 2,
            "limit": 10000, "batch_size": 128, "lr": 1e-3, "optimizer": "adam", "alignment_every": 16}
    variants = study_variants()
    parts = {"core": {k: v for k, v in variants.items() if _in_core(k)},
             "extra": {k: v for k, v in variants.items() if not _in_core(k)}}
    return {part: {"description": f"optical feedback study ({part}): issue 8", "seeds": list(SEEDS),
                   "feedback_seeds": [0], "base": base, "variants": chosen} for part, chosen in parts.items()}


QUICK = ("digital", "bits1-ternary-0.25", "bitsinf-ternary-0.25", "bitsinf-bitplane-2", "light-rate0.1-read30",
         "light-rate1500-read30", "readout-intensity", "readout-intensity-evening", "drift0.9-evening-recal",
         "bad-dark-offset-4bit", "bad-diverging-lr")


def quick_grid() -> dict[str, Any]:
    """A few seconds' version for tests: a level or two of every group (:data:`QUICK`), a small net, 2 seeds."""
    base = {"dataset": "fashion-mnist", "hidden": [32, 32], "method": "dfa", "device": "opu-sim", "epochs": 1,
            "limit": 300, "batch_size": 100, "lr": 1e-3, "optimizer": "adam", "alignment_every": 1}
    every = study_variants(bits=(1, "unlimited"), short_bits=(1, "unlimited"), encodings=("ternary-0.25",),
                           bits_encodings=("ternary-0.25", "bitplane-2"), rates=(0.1, 1500.0), read_noise=(30.0,),
                           rhos=(0.9,))
    variants = {k: every[k] for k in QUICK}
    return {"quick": {"description": "optical feedback study, quick version", "seeds": [0, 1],
                      "feedback_seeds": [0], "base": base, "variants": variants}}


# -- reading a sweep folder ---------------------------------------------------------------------------------------
FIELDS = ("family", "device", "bits", "encoding", "photon_rate", "read_noise", "readout", "evening", "rho",
          "recalibrate")


def setting_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The study's view of one run's configuration (``TrainConfig.to_dict()``): what it varies, by name.

    ``bits`` is an int or ``"unlimited"``, ``encoding`` a key of :data:`ENCODINGS`, ``rho`` 1.0 without drift;
    values the run did not set are the ``lighton-aurora`` profile's.
    """
    over = config.get("overrides") or {}
    hidden = list(config["hidden"])
    if config["optimizer"] == "sgd-plain":
        family = "sgd"
    elif len(hidden) == 4:
        family = "deep"
    else:
        family = "adam"
    kind = over.get("encoding.kind", "ternary")
    if kind == "ternary":
        encoding = f"ternary-{float(over.get('encoding.threshold', 0.25)):g}"
    elif kind == "sign":
        encoding = "sign"
    else:
        encoding = f"bitplane-{int(over.get('encoding.bits', 4))}"
    bits = over.get("camera.bits", 8)
    return {"family": family, "device": config["device"], "bits": bits if bits == "unlimited" else int(bits),
            "encoding": encoding, "photon_rate": float(over.get("camera.photon_rate", 1500.0)),
            "read_noise": float(over.get("camera.read_noise", 5.0)),
            "readout": over.get("readout.mode", "holographic"), "evening": bool(over.get("readout.evening", False)),
            "rho": float(over.get("drift.rho", 1.0)) if over.get("drift.enabled", False) else 1.0,
            "recalibrate": int(over.get("readout.recalibrate", 0)), "lr": float(config["lr"]),
            "epochs": int(config["epochs"])}


RUN_METRICS = ("test_accuracy", "gradient_alignment/total", "ideal_gradient_alignment/total",
               "device_gradient_alignment/total", "weight_alignment/total", "ideal_weight_alignment/total",
               "fidelity/cosine", "fidelity/snr_db", "fidelity/enob", "frames", "hardware_seconds", "energy_joules")


def sweep_folders(folder: str | Path) -> list[Path]:
    """``folder`` if it is a sweep folder, else the sweep folders directly inside it (``core``, ``extra``)."""
    folder = Path(folder)
    if (folder / "sweep.json").is_file():
        return [folder]
    found = sorted(p.parent for p in folder.glob("*/sweep.json"))
    if not found:
        raise SystemExit(f"{folder} is not a sweep folder and holds none (no sweep.json in it or its sub-folders)")
    return found


def load_study(folder: str | Path) -> list[dict[str, Any]]:
    """:func:`load_sweep` of every sweep folder of the study in ``folder`` (see :func:`sweep_folders`)."""
    return [record for part in sweep_folders(folder) for record in load_sweep(part)]


def load_sweep(folder: str | Path) -> list[dict[str, Any]]:
    """One record per variant of the sweep in ``folder``: label, settings, statuses, errors, and per metric the
    values of its completed seeds (``values[metric]``: list), plus ``layers`` (per-layer final alignments) and
    ``curves`` (``(steps, mean total alignment per view)`` over completed seeds)."""
    from optodfa.runlog import RunFile
    from optodfa.sweep.manifest import Manifest
    from optodfa.sweep.summary import final_metrics

    manifest = Manifest.load(folder)
    records: dict[str, dict[str, Any]] = {}
    for name, entry in manifest.runs.items():
        label = entry.settings.get("variant", "run")
        setting = setting_of(entry.config)
        if label.startswith("bad-"):
            setting["family"] = "bad"  # deliberately bad input: no baseline, no figure
        record = records.setdefault(label, {"label": label, "setting": setting, "statuses": {},
                                            "errors": [], "values": {}, "layers": {}, "curves": {}, "runs": []})
        record["statuses"][entry.status] = record["statuses"].get(entry.status, 0) + 1
        seed = entry.settings.get("seed", entry.config.get("seed"))
        if entry.status in ("invalid", "diverged", "failed"):
            where = f" at step {entry.step}" if entry.step is not None else ""
            record["errors"].append(f"{entry.status}{where} (seed {seed}): {entry.error}")
        if entry.status != "completed":
            continue
        run = RunFile.load(manifest.run_path(name))
        metrics = final_metrics(run)
        record["runs"].append(name)
        for key, value in metrics.items():
            record["values"].setdefault(key, []).append(value)
        series = run.series
        for view, prefix in (("effective", "alignment/gradient/total"), ("ideal", "alignment/ideal/gradient/total"),
                             ("device", "alignment/device/gradient/total")):
            if series.get(prefix):
                record["curves"].setdefault(view, []).append((np.asarray(series["alignment/step"], float),
                                                              np.asarray(series[prefix], float)))
    return list(records.values())


def stat(record: Mapping[str, Any], metric: str) -> tuple[float, float, int]:
    """``(mean, sd, n)`` of ``metric`` over the completed seeds of a record (sd NaN below 2 seeds)."""
    values = np.asarray(record["values"].get(metric, []), dtype=float)
    if not len(values):
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan, len(values)


def status_of(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {s}" for s, n in record["statuses"].items())


def per_epoch(record: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """Mean and sd over seeds of a device counter divided by the run's epochs (frames, seconds, joules)."""
    mean, sd, _ = stat(record, metric)
    epochs = record["setting"]["epochs"]
    return mean / epochs, sd / epochs


def _is(setting: Mapping[str, Any], **wanted: Any) -> bool:
    return all(setting.get(k) == v for k, v in wanted.items())


BASE = {"device": "opu-sim", "photon_rate": 1500.0, "read_noise": 5.0, "readout": "holographic", "evening": False,
        "rho": 1.0, "recalibrate": 0}


# -- tables -------------------------------------------------------------------------------------------------------
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


# -- figures ------------------------------------------------------------------------------------------------------
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


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For ``(cost, accuracy)`` points: whether no other point has lower-or-equal cost and higher-or-equal accuracy
    with one of them strictly better."""
    flags = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


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


# -- the report ---------------------------------------------------------------------------------------------------
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
        save(f"bits_{family}", _family_bits_figure(records, family))
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


def _family_bits_figure(records: Sequence[Mapping[str, Any]], family: str) -> Any:
    figure = bits_figure(records, family)
    title = {"sgd": "plain SGD, MLP 800-800", "deep": "Adam, 4 x 100 bias-free MLP"}[family]
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: 32-32 MLP, 600 images, 1 epoch")
    parser.add_argument("--out", type=Path, default=Path("results"), help="the sweep goes to OUT/optical_feedback")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="FOLDER",
                        help="only redraw the figures and tables from this sweep folder (no training)")
    add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    if args.source is None:
        import optodfa.sweep

        folder = args.out / NAME
        for part, grid in (quick_grid() if args.quick else full_grids()).items():
            optodfa.sweep.run(grid, folder / part, workers=args.workers, scheduler=args.scheduler,
                              progress=sys.stderr.isatty(), tensorboard=False, figures=False)
    else:
        folder = args.source
        sweep_folders(folder)  # refuses a folder without sweeps, naming it
    paths = write_study(folder)
    print(paths["md"].read_text(encoding="utf-8"))
    for key, path in paths.items():
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
