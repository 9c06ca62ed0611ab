"""Label noise (SPEC §6.4): train error and gradient alignment over time of the deep MLP under DFA, each
training label replaced by a random class with probability p ∈ {0, 0.1, 0.2, 0.5, 0.9} (test labels too, as the
paper does).

Run: ``python -m experiments.label_noise [--quick] [--seeds 3] [--out results] [--workers 2]``.

The network and data are those of :mod:`experiments.deep_layerwise` (4 x 100 bias-free tanh MLP, 14 x 14
Fashion-MNIST, a reduced training set), trained by DFA with one feedback seed. The train error is measured
afterwards from the weight snapshots of the log step grid, on the noisy training labels the run trained on; a
network that predicted every true label would score the share of labels the noise changed (about 0.9 p), so an
error below that share means flipped labels are memorised. The runs are one sweep in ``<out>/label_noise/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from experiments._deep import GRADIENT_LAYERS, NETWORK, curves, log_axis, mlp_outputs, peak, run_seeds
from optodfa.config import TrainConfig
from optodfa.train import load_training_data
from optodfa.weights import read_weights

NAME = "label_noise"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of the experiment: seeds, noise levels, data, optimisation, the log grid's density."""

    seeds: int
    noise: tuple[float, ...]
    limit: int
    epochs: int
    batch_size: int
    lr: float
    per_decade: int


FULL = Settings(seeds=3, noise=(0.0, 0.1, 0.2, 0.5, 0.9), limit=1000, epochs=400, batch_size=50, lr=0.05,
                per_decade=8)
QUICK = Settings(seeds=1, noise=(0.0, 0.5, 0.9), limit=100, epochs=3, batch_size=25, lr=0.05, per_decade=4)


def label(p: float) -> str:
    return f"p={p:g}"


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], FULL, QUICK, sweep=True)
    base = {**NETWORK, "activation": "tanh", "method": "dfa", "limit": settings.limit, "epochs": settings.epochs,
            "batch_size": settings.batch_size, "lr": settings.lr, "alignment_per_decade": settings.per_decade,
            "label_noise_test": True}
    seeds = list(range(settings.seeds))
    table = {label(p): {"label_noise": p} for p in settings.noise}
    runs = run_seeds(base, table, seeds, args.out / NAME, args)
    results = {name: analyse(group) for name, group in runs.items()}

    figure = Figure(figsize=(12, 4))
    error_axes, alignment_axes = figure.subplots(1, 2)
    for i, (name, result) in enumerate(results.items()):
        colour = f"C{i}"
        shown = result["error_steps"] > 0
        error_axes.plot(result["error_steps"][shown], result["train_error"].mean(axis=0)[shown], color=colour,
                        label=name)
        # Dotted: the share of labels the noise changed, the error of a network that predicts every true label.
        error_axes.axhline(result["changed"], color=colour, linestyle=":", linewidth=1)
        steps = result["steps"]
        alignment_axes.plot(steps[steps > 0], result["ga_total"].mean(axis=0)[steps > 0], color=colour,
                            label=name)
    error_axes.set(xlabel="training step", ylabel="train error (on the noisy labels)",
                   title="train error on the noisy labels (dotted: share of labels changed)", ylim=(-0.02, 1.0))
    alignment_axes.set(xlabel="training step", ylabel="gradient alignment (total)",
                       title="gradient alignment, all hidden layers")
    for axes in (error_axes, alignment_axes):
        log_axis(axes, results[label(settings.noise[0])]["steps"])
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"DFA, 4 x 100 bias-free tanh MLP, 14x14 Fashion-MNIST, {settings.limit} samples, label noise p "
                    f"(train and test), {settings.seeds} seed(s)", fontsize=10)
    figure.tight_layout()

    rows, attrs = [], {}
    for name, result in results.items():
        top_step, top = peak(result["steps"], result["ga_total"].mean(axis=0))
        # When alignment rises: the first step at half its peak (undefined, -1, for a curve that never rises).
        half = first_reaching(result["steps"], result["ga_total"].mean(axis=0), 0.5 * top) if top > 0 else -1
        final_ga = float(result["ga_total"][:, -1].mean())
        final_error = float(result["train_error"][:, -1].mean())
        accuracy = float(np.mean(result["accuracy"]))
        rows.append([name, result["changed"], top, top_step, half, final_ga, final_error, result["clean_error"],
                     accuracy])
        key = name.replace("=", "").replace(".", "_")
        attrs.update({f"{key}_ga_peak": top, f"{key}_ga_peak_step": top_step, f"{key}_ga_half_step": half,
                      f"{key}_ga_final": final_ga, f"{key}_train_error_final": final_error,
                      f"{key}_test_accuracy": accuracy, f"{key}_changed_labels": result["changed"],
                      f"{key}_clean_train_error_final": result["clean_error"]})
    text = markdown_table(["label noise", "labels changed", "GA total peak", "at step",
                           "first step with GA ≥ half its peak", "GA total (last)", "train error (final, noisy labels)",
                           "train error (final, true labels)", "test accuracy (noisy labels)"], rows)
    arrays = {name.replace("=", "").replace(".", "_"): {k: result[k] for k in ("steps", "ga_total", "ga_layers",
                                                                                "error_steps", "train_error")}
              for name, result in results.items()}
    paths = write_results(NAME, arrays=arrays, attrs={"config": base, "seeds": seeds, **attrs}, figure=figure,
                          table=text, out=args.out, title="Label noise: train error and gradient alignment (DFA)")
    print(text)
    print(f"figure: {paths['png']}")
    return paths


def analyse(runs: list) -> dict:
    """Gradient alignment curves, and the train error at each weight snapshot on the run's noisy labels."""
    steps, layers = curves(runs, "gradient", [*GRADIENT_LAYERS, "total"])
    errors, changed, clean_errors = [], [], []
    for run in runs:
        config = TrainConfig.from_dict(run.attrs["config"])
        data = load_training_data(config)  # the noisy training labels this run trained on
        x, y = data.x_train.numpy(), data.y_train.numpy()
        weights = read_weights(run.path)
        # The snapshots, then the final weights (after the last update, at the run's last step).
        states = [weights.at(int(s)) for s in weights.steps] + [weights.final]
        errors.append([float(np.mean(mlp_outputs(w, x, config.activation).argmax(1) != y)) for w in states])
        error_steps = np.append(weights.steps, int(run.series["metrics/step"][-1]))
        clean = load_training_data(dataclasses.replace(config, label_noise=0.0)).y_train.numpy()
        changed.append(float(np.mean(clean != y)))
        clean_errors.append(float(np.mean(mlp_outputs(weights.final, x, config.activation).argmax(1) != clean)))
    return {"steps": steps, "ga_total": layers[:, -1], "ga_layers": layers[:, :-1], "error_steps": error_steps,
            "train_error": np.array(errors), "accuracy": [run.series["metrics/test_accuracy"][-1] for run in runs],
            "changed": float(np.mean(changed)), "clean_error": float(np.mean(clean_errors))}


def first_reaching(steps: np.ndarray, values: np.ndarray, level: float) -> int:
    """The first step whose value is at least ``level``; -1 if none is."""
    found = np.flatnonzero(values >= level)
    return int(steps[found[0]]) if len(found) else -1


if __name__ == "__main__":
    main()
