"""BP, DFA (digital) and DFA (simulated OPU) on Fashion-MNIST: accuracy and per-layer gradient alignment.

Run: ``python -m experiments.fashion_mnist [--quick] [--epochs 10] [--out results]``.

The three runs share the initialisation seed and, for the two DFA runs, the feedback seed. They run as a sweep
(:func:`optodfa.sweep.run`, ``--workers N`` local processes or ``--scheduler`` of a dask cluster) whose folder is
``<out>/fashion_mnist/`` (run files in ``runs/``, so ``optodfa report`` reads the folder or any run); the
experiment adds the figure and the table. Completed runs are kept, so the figure can be redrawn without hours of
training, and a killed experiment resumes its runs from their checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from experiments._common import add_sweep_arguments, markdown_table, run_variants, write_results

NAME = "fashion_mnist"
VARIANTS = {"BP": {"method": "bp", "device": "digital"},
            "DFA digital": {"method": "dfa", "device": "digital"},
            "DFA opu-sim": {"method": "dfa", "device": "opu-sim"}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs on 5000 samples with 128 hidden units")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("results"))
    add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    base = {"dataset": "fashion-mnist", "hidden": [800, 800], "epochs": args.epochs, "alignment_every": 100}
    if args.quick:
        base.update(hidden=[128, 128], epochs=2, limit=5000, alignment_every=10)
    runs = run_variants(base, VARIANTS, args.out / NAME, args)

    figure = Figure(figsize=(11, 3.8))
    accuracy_axes, alignment_axes = figure.subplots(1, 2)
    for label, run in runs.items():
        accuracy = run.series["metrics/test_accuracy"]
        accuracy_axes.plot(range(1, len(accuracy) + 1), accuracy, "o-", label=label)
    accuracy_axes.set(xlabel="epoch", ylabel="test accuracy", title="Fashion-MNIST, MLP 784-800-800-10")
    accuracy_axes.legend()
    styles = {"DFA digital": "-", "DFA opu-sim": "--"}
    for label, style in styles.items():
        series = runs[label].series
        for layer, colour in (("layer1", "C0"), ("layer2", "C1"), ("total", "k")):
            alignment_axes.plot(series["alignment/step"], series[f"alignment/gradient/{layer}"], style, color=colour,
                                label=f"{label}, {layer}")
    alignment_axes.set(xlabel="training step", ylabel="gradient alignment (cosine)", ylim=(-0.1, 1.0),
                       title="DFA vs BP signal, per layer")
    alignment_axes.legend(fontsize=7)
    figure.tight_layout()

    rows = []
    for label, run in runs.items():
        series = run.series
        rows.append([label, series["metrics/test_accuracy"][-1], series["metrics/train_loss"][-1],
                     series["alignment/gradient/total"][-1], int(series["device/frames"][-1]),
                     series["device/hardware_seconds"][-1]])
    table = markdown_table(["run", "test accuracy", "train loss", "gradient alignment (total)", "OPU frames",
                            "simulated OPU seconds"], rows)
    arrays = {label.replace(" ", "_"): {"test_accuracy": run.series["metrics/test_accuracy"]}
              for label, run in runs.items()}
    paths = write_results(NAME, arrays=arrays, attrs={"config": base}, figure=figure, table=table, out=args.out,
                          title="Fashion-MNIST: BP, DFA digital, DFA through the simulated OPU")
    print(table)
    print(f"figure: {paths['png']}")


if __name__ == "__main__":
    main()
