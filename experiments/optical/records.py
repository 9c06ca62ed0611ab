"""Reading the optical feedback study back from its sweep folders: one record per variant.

A record (:func:`load_sweep`) is a dict: ``label``; ``setting`` (:func:`setting_of`: what the study varies, by
name); ``statuses`` (status -> count of seeds); ``errors`` (one line per invalid, diverged or failed run);
``values`` (metric -> final value of each completed seed); ``curves`` (view -> ``(steps, total gradient
alignment)`` per completed seed); ``runs`` (the names of its completed runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FIELDS = ("family", "device", "bits", "encoding", "photon_rate", "read_noise", "readout", "evening", "rho",
          "recalibrate")


def setting_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The study's view of one run's configuration (``TrainConfig.to_dict()``): what it varies, by name.

    ``bits`` is an int or ``"unlimited"``, ``encoding`` a key of :data:`experiments.optical.grid.ENCODINGS`,
    ``rho`` 1.0 without drift; values the run did not set are the ``lighton-aurora`` profile's.
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
