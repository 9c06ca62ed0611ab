"""Feedback fidelity of every kind of device side by side: the OPU (simulated, and lightonml's), the photonic chip.

Run: ``python -m experiments.device_fidelity`` (prints a markdown table; ``docs/fidelity.md`` quotes it).

Each row builds the device for ``d = 10`` errors and ``D = 1024`` feedback outputs, projects ``n = 256`` standard
Gaussian error vectors once per seed (feedback seed = error seed, seeds 0, 1, 2), and measures cosine, SNR and ENOB
end to end (against ``B_eff e``) and device only (against ``B_eff e_q``; the chip has no error encoding, its input
DAC is part of the device, so both agree), with the device time and energy per error vector from the counters.
"""

from __future__ import annotations

import argparse
from importlib import metadata

import numpy as np
import torch

from optodfa.fidelity import measure_fidelity
from optodfa.registry import build_projector
from optodfa.seeding import torch_generator

ROWS = [("opu-sim", "lighton-aurora"), ("opu-sim", "ideal-opu"), ("opu-sim", "low-light-opu"),
        ("lighton", None), ("chip-sim", "chip-8bit"), ("chip-sim", "chip-4bit")]
D_IN, D_OUT, N, SEEDS = 10, 1024, 256, (0, 1, 2)


def row(name: str, profile: str | None) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for seed in SEEDS:
        projector = build_projector(name, D_IN, D_OUT, feedback_seed=seed, profile=profile)
        e = torch.randn(N, D_IN, generator=torch_generator(seed, 5))
        out = projector.project(e)
        counters = projector.counters()
        for key, value in (("e2e", measure_fidelity(projector, e, out, against="error")),
                           ("dev", measure_fidelity(projector, e, out, against="code"))):
            values.setdefault(f"cos_{key}", []).append(value.cosine)
            values.setdefault(f"snr_{key}", []).append(value.snr_db)
            values.setdefault(f"enob_{key}", []).append(value.enob)
        values.setdefault("seconds", []).append(counters.hardware_seconds / N)
        values.setdefault("joules", []).append(counters.energy_joules / N)
    return {key: float(np.mean(v)) for key, v in values.items()}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    installed = {point.name for point in metadata.entry_points(group="optodfa.devices")}
    print("| device | profile | cos (e2e) | SNR dB (e2e) | ENOB (e2e) | cos (device) | SNR dB (device) | "
          "ENOB (device) | device time per vector | energy per vector |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, profile in ROWS:
        if name == "lighton" and name not in installed:
            continue
        r = row(name, profile)
        shown = profile or "lighton-aurora (simulated OPU)"
        print(f"| `{name}` | {shown} | {r['cos_e2e']:.3f} | {r['snr_e2e']:.1f} | {r['enob_e2e']:.2f} | "
              f"{r['cos_dev']:.3f} | {r['snr_dev']:.1f} | {r['enob_dev']:.2f} | {r['seconds']:.3g} s | "
              f"{r['joules']:.3g} J |")


if __name__ == "__main__":
    main()
