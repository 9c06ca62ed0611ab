"""Feedback fidelity of the simulated OPU against camera bits, photon budget, read noise and readout mode.

Run: ``python -m experiments.fidelity_table [--quick] [--out results/fidelity_table] [--docs docs/fidelity.md]``.

Each row builds ``opu-sim`` for ``d = 10`` errors and ``D = 1024`` feedback pixels, projects ``n = 256`` standard
Gaussian error vectors once per seed, and measures (:mod:`optodfa.fidelity`) cosine, SNR and ENOB end to end
(against ``B_eff e``) and device only (against ``B_eff e_q``, the quantised error). Figures are means over seeds
(feedback seed = noise seed = error seed), with the standard deviation across seeds in the HDF5 file.

Sweeps (everything not named keeps the profile's value):

* camera bits 1–12 on ``lighton-aurora``, with the gain set to ``(2^bits − 1) / full well`` so the full well
  always spans the ADC (otherwise a wider ADC only adds unused codes);
* photon budget on ``low-light-opu`` (12 bits, 1 count per electron): ``camera.photon_rate`` set so that a
  reference-only frame collects the stated mean photo-electrons per pixel at full exposure;
* read noise on ``low-light-opu`` with the photon rate raised to 300 e⁻ mean per pixel in a reference frame
  (shot noise about 17 e⁻ there, so read noise from 0 to 50 e⁻ goes from negligible to dominant);
* readout mode on ``lighton-aurora``: holographic, strong-reference and intensity, with and without row evening.

Writes ``fidelity.h5`` (every number, with the settings of each row), ``fidelity.md`` (the tables), ``fidelity.png``
(cosine and SNR against each swept quantity), and rewrites the table section of ``docs/fidelity.md``, between the
``<!-- fidelity-table:begin -->`` and ``<!-- fidelity-table:end -->`` markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from optodfa.fidelity import measure_fidelity
from optodfa.profiles import load_profile
from optodfa.registry import build_projector
from optodfa.seeding import torch_generator

BEGIN, END = "<!-- fidelity-table:begin -->", "<!-- fidelity-table:end -->"
METRICS = ("cosine", "snr_db", "enob")
READ_NOISE_ELECTRONS = 300.0  # mean e⁻ per pixel of a reference frame in the read-noise sweep (shot sd 17 e⁻)


@dataclasses.dataclass(frozen=True)
class Row:
    """One setting of the device: the sweep it belongs to, its label, profile and overrides."""

    sweep: str
    label: str
    profile: str
    overrides: dict[str, Any]


def rows(quick: bool) -> list[Row]:
    """Every setting of every sweep (fewer points with ``quick``)."""
    aurora = load_profile("lighton-aurora").values
    low = load_profile("low-light-opu").values
    out = []
    for bits in ((1, 2, 4, 8, 12) if quick else range(1, 13)):
        gain = (2**bits - 1) / aurora["camera.full_well"]
        out.append(Row("camera bits", str(bits), "lighton-aurora", {"camera.bits": bits, "camera.gain": gain}))
    exposure, reference = low["camera.exposure"], low["dmd.reference_mirrors"]
    for electrons in ((1, 10, 100, 1000) if quick else (1, 3, 10, 30, 100, 300, 1000, 3000)):
        rate = electrons / (exposure * reference)
        out.append(Row("photon budget", f"{electrons:g}", "low-light-opu", {"camera.photon_rate": rate}))
    rate = READ_NOISE_ELECTRONS / (exposure * reference)
    for noise in ((0, 2, 10, 50) if quick else (0, 1, 2, 5, 10, 20, 50)):
        out.append(Row("read noise", f"{noise:g}", "low-light-opu",
                       {"camera.read_noise": float(noise), "camera.photon_rate": rate}))
    for mode in ("holographic", "strong-reference", "intensity"):
        for evening in ((False, True) if mode != "intensity" else (False,)):
            label = mode + (", evened" if evening else "")
            out.append(Row("readout mode", label, "lighton-aurora",
                           {"readout.mode": mode, "readout.evening": evening}))
    return out


def measure(row: Row, seeds: list[int], n: int, d: int, big_d: int) -> dict[str, Any]:
    """Fidelity (end to end and device only) of one row over ``seeds``, with the photon budget it gives."""
    values: dict[str, list[float]] = {f"{t}_{m}": [] for t in ("error", "code") for m in METRICS}
    saturated, electrons = [], math.nan
    for seed in seeds:
        projector = build_projector("opu-sim", d, big_d, feedback_seed=seed, profile=row.profile,
                                    overrides=row.overrides)
        e = torch.randn(n, d, generator=torch_generator(seed, 5))
        output = projector.project(e)
        for target in ("error", "code"):
            result = measure_fidelity(projector, e, output, against=target)
            for metric in METRICS:
                values[f"{target}_{metric}"].append(getattr(result, metric))
        counters = projector.counters()
        saturated.append(counters.saturated_pixels / (counters.frames * big_d))
        device = projector.device  # type: ignore[attr-defined]
        level = torch.tensor([device.expected_intensities()[1]], dtype=torch.float64)
        electrons = float(device.camera.exposure(level)[0] * device.camera.photon_rate * level[0])
    summary: dict[str, Any] = {"electrons": electrons, "saturated": statistics.fmean(saturated)}
    for key, series in values.items():
        finite = [v for v in series if math.isfinite(v)]
        summary[key] = statistics.fmean(finite) if finite else math.inf
        summary[key + "_std"] = statistics.pstdev(finite) if len(finite) > 1 else 0.0
    return summary


def markdown(results: list[tuple[Row, dict[str, Any]]], header: str) -> str:
    """The tables, one per sweep."""
    column = {"camera bits": "camera bits", "photon budget": "asked e⁻/pixel",
              "read noise": "read noise (e⁻)", "readout mode": "readout"}
    blocks = [header]
    for sweep in dict.fromkeys(row.sweep for row, _ in results):
        lines = [f"### {sweep}", "",
                 f"| {column[sweep]} | e⁻/pixel | saturated | cos (e2e) | SNR dB (e2e) | ENOB (e2e) | cos (device) "
                 f"| SNR dB (device) | ENOB (device) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row, s in ((r, s) for r, s in results if r.sweep == sweep):
            lines.append(f"| {row.label} | {s['electrons']:.3g} | {100 * s['saturated']:.2g}% | "
                         f"{s['error_cosine']:.3f} | {s['error_snr_db']:.1f} | {s['error_enob']:.2f} | "
                         f"{s['code_cosine']:.3f} | {s['code_snr_db']:.1f} | {s['code_enob']:.2f} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_h5(path: Path, results: list[tuple[Row, dict[str, Any]]], attrs: dict[str, Any]) -> None:
    """All rows as 1-D datasets (one entry per row), settings as JSON; written atomically."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as file:
            for key, value in attrs.items():
                file.attrs[key] = value
            file["sweep"] = np.array([r.sweep for r, _ in results], dtype=h5py.string_dtype())
            file["label"] = np.array([r.label for r, _ in results], dtype=h5py.string_dtype())
            file["settings"] = np.array([json.dumps({"profile": r.profile, **r.overrides}) for r, _ in results],
                                        dtype=h5py.string_dtype())
            for key in results[0][1]:
                file[key] = np.array([s[key] for _, s in results], dtype=np.float64)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def plot(path: Path, results: list[tuple[Row, dict[str, Any]]]) -> None:
    """Cosine and SNR (device only and end to end) against each sweep's quantity."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    sweeps = list(dict.fromkeys(row.sweep for row, _ in results))
    figure, axes = plt.subplots(2, len(sweeps), figsize=(4 * len(sweeps), 6), squeeze=False)
    for j, sweep in enumerate(sweeps):
        chosen = [(r, s) for r, s in results if r.sweep == sweep]
        ticks = range(len(chosen))
        for i, metric in enumerate(("cosine", "snr_db")):
            axis = axes[i][j]
            for target, style in (("code", "o-"), ("error", "s--")):
                axis.plot(ticks, [s[f"{target}_{metric}"] for _, s in chosen], style,
                          label="device only" if target == "code" else "end to end")
            axis.set_xticks(list(ticks), [r.label for r, _ in chosen], rotation=45, ha="right", fontsize=7)
            axis.set_ylabel("cosine" if metric == "cosine" else "SNR (dB)")
            axis.set_title(sweep, fontsize=9)
            axis.grid(alpha=0.3)
        axes[0][j].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def update_docs(path: Path, table: str) -> None:
    """Replace the text between the markers of ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} lacks the markers {BEGIN} and {END} around its table section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points, one seed, n = 64, D = 256")
    parser.add_argument("--out", default="results/fidelity_table")
    parser.add_argument("--docs", default="docs/fidelity.md", help="file whose table section is rewritten "
                        "('' to leave the docs alone)")
    args = parser.parse_args(argv)
    seeds, n, d, big_d = ([0], 64, 10, 256) if args.quick else ([0, 1, 2], 256, 10, 1024)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    for row in rows(args.quick):
        results.append((row, measure(row, seeds, n, d, big_d)))
        summary = results[-1][1]
        print(f"{row.sweep:>14} {row.label:<24} cos {summary['code_cosine']:.3f}/{summary['error_cosine']:.3f} "
              f"SNR {summary['code_snr_db']:6.1f}/{summary['error_snr_db']:5.1f} dB (device/end to end)", flush=True)
    header = (f"Generated by `python -m experiments.fidelity_table{' --quick' if args.quick else ''}`: `opu-sim`, "
              f"d = {d}, D = {big_d}, n = {n} standard Gaussian error vectors, mean over seeds {seeds}; ternary "
              f"encoding (threshold 0.25 of the per-sample maximum) unless the profile says otherwise.")
    table = markdown(results, header)
    write_h5(out / "fidelity.h5", results, {"n": n, "d": d, "D": big_d, "seeds": json.dumps(seeds),
                                            "torch": str(torch.__version__)})
    (out / "fidelity.md").write_text(table, encoding="utf-8")
    plot(out / "fidelity.png", results)
    if args.docs:
        update_docs(Path(args.docs), table)
    print(f"wrote {out}/fidelity.h5, fidelity.md, fidelity.png" + (f" and {args.docs}" if args.docs else "")
          + f" in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
