"""Deep non-linear networks layer by layer (SPEC §6.4): weight and gradient alignment per layer over time, each
layer's weight-alignment peak, and the cross-seed cosine of DFA against BP; the same DFA runs with the feedback
through the simulated OPU (8-bit and 2-bit camera).

Run: ``python -m experiments.deep_layerwise [--quick] [--seeds 3] [--out results] [--workers 2]``.

The 4 x 100 bias-free MLP (tanh and relu) on 14 x 14 Fashion-MNIST with a reduced training set, BP and DFA, the
same initialisation seeds for all and one feedback seed (0) for every DFA run. Alignment and weight snapshots
are taken on a log-spaced step grid. The runs are one sweep in ``<out>/deep_layerwise/`` (``optodfa report``
reads it, cross-seed cosines included); the experiment adds the figure and the tables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from experiments._deep import (
    COLOURS,
    GRADIENT_LAYERS,
    NETWORK,
    WEIGHT_LAYERS,
    bottom_first,
    curves,
    log_axis,
    peak,
    rise,
    run_seeds,
)
from optodfa.cross_seed import cross_seed

NAME = "deep_layerwise"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of the experiment: seeds, data, optimisation, the log grid's density, which networks and cameras."""

    seeds: int
    limit: int
    epochs: int
    batch_size: int
    lr: float
    lr_relu: float  # relu diverges at tanh's rate (lr 0.05 blew up the DFA relu runs after ~250 epochs)
    per_decade: int
    activations: tuple[str, ...]
    camera_bits: tuple[int, ...]  # the opu-sim DFA runs (first activation only)


FULL = Settings(seeds=3, limit=1000, epochs=1000, batch_size=50, lr=0.05, lr_relu=0.01, per_decade=8,
                activations=("tanh", "relu"), camera_bits=(8, 2))
QUICK = Settings(seeds=2, limit=100, epochs=3, batch_size=25, lr=0.05, lr_relu=0.01, per_decade=4,
                 activations=("tanh",),
                 camera_bits=(2,))


def variants(settings: Settings) -> dict[str, dict]:
    """Label -> settings: ``BP tanh``, ``DFA tanh``, …, ``DFA tanh opu-sim 8-bit``, …"""
    table = {}
    for activation in settings.activations:
        lr = settings.lr_relu if activation == "relu" else settings.lr
        table[f"BP {activation}"] = {"method": "bp", "activation": activation, "lr": lr}
        table[f"DFA {activation}"] = {"method": "dfa", "activation": activation, "lr": lr}
    first = settings.activations[0]
    for bits in settings.camera_bits:
        table[f"DFA {first} opu-sim {bits}-bit"] = {
            "method": "dfa", "activation": first, "device": "opu-sim", "set.camera.bits": bits,
            "lr": settings.lr_relu if first == "relu" else settings.lr}
    return table


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], FULL, QUICK, sweep=True, min_seeds=2,
                                    why="the cross-seed cosine compares seeds")
    base = {**NETWORK, "limit": settings.limit, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "alignment_per_decade": settings.per_decade}
    seeds = list(range(settings.seeds))
    table = variants(settings)
    runs = run_seeds(base, table, seeds, args.out / NAME, args)

    results = {label: analyse(label, group) for label, group in runs.items()}
    figure = draw(settings, results)
    text, attrs = tables(settings, results)
    arrays = {label.replace(" ", "_"): result["arrays"] for label, result in results.items()}
    paths = write_results(NAME, arrays=arrays, attrs={"config": base, "seeds": seeds, **attrs}, figure=figure,
                          table=text, out=args.out,
                          title="Deep MLP 4 x 100: per-layer alignment, its peaks, and the cross-seed cosine")
    print(text)
    print(f"figure: {paths['png']}")
    return paths


def analyse(label: str, runs: list) -> dict:
    """Curves (mean over seeds and per seed), each weight layer's peak, the cross-seed cosine over time."""
    steps, weight = curves(runs, "weight", WEIGHT_LAYERS)
    _, gradient = curves(runs, "gradient", GRADIENT_LAYERS)
    mean_weight = weight.mean(axis=0)
    peaks = [peak(steps, mean_weight[j]) for j in range(len(WEIGHT_LAYERS))]
    seed_peaks = [[peak(steps, weight[i, j])[0] for j in range(len(WEIGHT_LAYERS))] for i in range(len(runs))]
    rises = [rise(steps, mean_weight[j]) for j in range(len(WEIGHT_LAYERS))]
    seed_rises = [[rise(steps, weight[i, j]) for j in range(len(WEIGHT_LAYERS))] for i in range(len(runs))]
    cross = cross_seed([run.path for run in runs])
    accuracy = np.array([run.series["metrics/test_accuracy"][-1] for run in runs])
    train_loss = np.array([run.series["metrics/train_loss"][-1] for run in runs])
    arrays = {"step": steps, "weight_alignment": weight, "gradient_alignment": gradient,
              "weight_peak_step": np.array([p[0] for p in peaks]), "weight_peak": np.array([p[1] for p in peaks]),
              "seed_weight_peak_step": np.array(seed_peaks), "weight_rise_step": np.array(rises),
              "seed_weight_rise_step": np.array(seed_rises), "cross_seed_step": cross.steps,
              "cross_seed": np.array([cross.course[name] for name in [*GRADIENT_LAYERS, "output", "total"]]),
              "test_accuracy": accuracy, "train_loss": train_loss}
    return {"label": label, "steps": steps, "weight": weight, "gradient": gradient, "peaks": peaks,
            "seed_peaks": seed_peaks, "rises": rises, "seed_rises": seed_rises, "cross": cross, "accuracy": accuracy,
            "train_loss": train_loss,
            "epochs": len(runs[0].series["metrics/test_accuracy"]), "arrays": arrays}


def draw(settings: Settings, results: dict[str, dict]) -> Figure:
    """One row per DFA setting: weight alignment per layer (peaks marked), gradient alignment per layer, and the
    cross-seed cosine per layer (DFA solid, BP of the same activation dashed)."""
    dfa = [label for label in results if label.startswith("DFA")]
    figure = Figure(figsize=(15, 3.3 * len(dfa)))
    grid = figure.subplots(len(dfa), 3, squeeze=False)
    for row, label in zip(grid, dfa, strict=True):
        result = results[label]
        steps = result["steps"]
        shown = steps > 0
        for j, layer in enumerate(WEIGHT_LAYERS):
            curve = result["weight"][:, j].mean(axis=0)
            row[0].plot(steps[shown], curve[shown], color=COLOURS[layer], label=layer)
            step, value = result["peaks"][j]
            row[0].plot([max(step, 1)], [value], "v", color=COLOURS[layer], markersize=9, markeredgecolor="k")
        row[0].set(ylabel="weight alignment", title=f"{label}: WA per layer (▼ peak)")
        for j, layer in enumerate(GRADIENT_LAYERS):
            curve = result["gradient"][:, j].mean(axis=0)
            row[1].plot(steps[shown], curve[shown], color=COLOURS[layer], label=layer)
        row[1].set(ylabel="gradient alignment", title=f"{label}: GA per layer")
        cross = result["cross"]
        keep = cross.steps > 0
        for layer in [*GRADIENT_LAYERS, "output"]:
            row[2].plot(cross.steps[keep], cross.course[layer][keep], color=COLOURS[layer], label=f"DFA {layer}")
        twin = "BP " + label.split()[1]
        if twin in results and not label.endswith("bit"):
            bp = results[twin]["cross"]
            keep = bp.steps > 0
            for layer in [*GRADIENT_LAYERS, "output"]:
                row[2].plot(bp.steps[keep], bp.course[layer][keep], "--", color=COLOURS[layer], alpha=0.7)
            row[2].plot([], [], "k--", label="BP (dashed)")
        row[2].set(ylabel="cross-seed cosine", title=f"{label}: cross-seed cosine per layer", ylim=(-0.1, 1.0))
        for axes in row:
            log_axis(axes, steps)
            axes.set_xlabel("training step")
            axes.grid(alpha=0.3)
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=7)
        row[2].legend(fontsize=6, ncol=2)
    figure.suptitle(f"4 x 100 bias-free MLP, 14x14 Fashion-MNIST, {settings.limit} training samples, "
                    f"{settings.seeds} seeds (mean), feedback seed 0", fontsize=11)
    figure.tight_layout()
    return figure


def tables(settings: Settings, results: dict[str, dict]) -> tuple[str, dict]:
    """The markdown tables (peaks and order, cross-seed cosines, accuracy) and the key figures as attributes."""
    attrs: dict = {}
    rows = []
    for label, result in results.items():
        if not label.startswith("DFA"):
            continue
        steps = [p[0] for p in result["peaks"]]
        ordered = sum(bottom_first(seed) for seed in result["seed_peaks"])
        risen = sum(bottom_first(seed) for seed in result["seed_rises"])
        rows.append([label, *(f"{s} ({v:.3f})" for s, v in result["peaks"]), "yes" if bottom_first(steps) else "no",
                     f"{ordered}/{len(result['seed_peaks'])}", ", ".join(map(str, result["rises"])),
                     "yes" if bottom_first(result["rises"]) else "no", f"{risen}/{len(result['seed_rises'])}"])
        key = label.replace(" ", "_").replace("-", "_")
        attrs[f"{key}_wa_peak_steps"] = steps
        attrs[f"{key}_wa_peaks"] = [p[1] for p in result["peaks"]]
        attrs[f"{key}_bottom_first"] = bool(bottom_first(steps))
        attrs[f"{key}_wa_rise_steps"] = list(result["rises"])
        attrs[f"{key}_rise_bottom_first"] = bool(bottom_first(result["rises"]))
    text = ("Weight alignment per layer: the step of its peak (mean over seeds) and the peak value; whether the "
            "peaks come bottom first (layer2 ≤ layer3 ≤ layer4 ≤ output), for the mean curves and per seed; the "
            "step at which each layer's mean curve has first gone half the way from its initial value to its peak "
            "(-1: it never rose), and whether those come bottom first.\n\n")
    text += markdown_table(["run", *(f"{layer} peak step (WA)" for layer in WEIGHT_LAYERS), "peaks bottom first (mean)",
                            "(seeds)", "half-rise steps", "rises bottom first (mean)", "(seeds)"], rows)
    rows = []
    for label, result in results.items():
        final = result["cross"].final
        rows.append([label, *(final[layer] for layer in [*GRADIENT_LAYERS, "output", "total"])])
        attrs[f"{label.replace(' ', '_').replace('-', '_')}_cross_seed_final"] = {k: float(v) for k, v in final.items()}
    text += "\nCross-seed cosine of the final weights (mean over pairs of seeds):\n\n"
    text += markdown_table(["run", *GRADIENT_LAYERS, "output", "total"], rows)
    rows = [[label, result["epochs"], f"{result['accuracy'].mean():.4f} ± {result['accuracy'].std():.4f}",
             f"{result['train_loss'].mean():.4f}", result["gradient"][:, :, -1].mean()]
            for label, result in results.items()]
    text += "\nFinal test accuracy (mean ± sd over seeds), last-epoch training loss, last gradient alignment " \
            "(mean over layers and seeds):\n\n"
    text += markdown_table(["run", "epochs", "test accuracy", "train loss", "GA (last)"], rows)
    return text, attrs


if __name__ == "__main__":
    main()
