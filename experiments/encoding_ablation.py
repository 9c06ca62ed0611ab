"""What the error encoding and the camera do to DFA through the simulated OPU (Fashion-MNIST, 3 epochs).

Run: ``python -m experiments.encoding_ablation [--quick] [--out results]``.

Every variant trains the same MLP 784-800-800-10 (tanh, Adam 1e-4, batch 128) from the same seeds on the first
20 000 training images for 3 epochs; only the feedback path changes: digital ``B e``, the ``lighton-aurora`` OPU
(8-bit camera with shot and read noise), and the noiseless, unlimited-bits ``ideal-opu`` with ternary codes of
several thresholds or bit-plane codes, with and without row evening. The variants run as a sweep
(:func:`optodfa.sweep.run`; ``--workers N`` or ``--scheduler``) in ``<out>/encoding_ablation/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from experiments._common import add_sweep_arguments, markdown_table, run_variants, write_results

NAME = "encoding_ablation"
IDEAL = {"device": "opu-sim", "profile": "ideal-opu"}
VARIANTS: dict[str, dict] = {
    "digital": {"device": "digital"},
    "opu-sim, ternary 0.25": {"device": "opu-sim"},
    "opu-sim, ternary 0.25, evening": {"device": "opu-sim", "set": {"readout.evening": True}},
    "ideal-opu, ternary 0.25": IDEAL,
    "ideal-opu, ternary 0.1": {**IDEAL, "set": {"encoding.threshold": 0.1}},
    "ideal-opu, ternary 0.03": {**IDEAL, "set": {"encoding.threshold": 0.03}},
    "ideal-opu, bit-plane 2": {**IDEAL, "set": {"encoding.kind": "bitplane", "encoding.bits": 2}},
    "ideal-opu, bit-plane 3": {**IDEAL, "set": {"encoding.kind": "bitplane", "encoding.bits": 3}},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2000 samples with 64 hidden units")
    parser.add_argument("--out", type=Path, default=Path("results"))
    add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    base = {"dataset": "fashion-mnist", "hidden": [800, 800], "epochs": 3, "limit": 20000, "alignment_every": 50}
    if args.quick:
        base.update(hidden=[64, 64], epochs=1, limit=2000, alignment_every=5)
    runs = run_variants(base, VARIANTS, args.out / NAME, args)

    rows = [[label, run.series["metrics/test_accuracy"][-1], run.series["metrics/train_loss"][-1],
             run.series["alignment/gradient/total"][-1],
             int(run.series["device/frames"][-1] / max(run.series["device/projections"][-1], 1))]
            for label, run in runs.items()]
    table = markdown_table(["feedback", "test accuracy", "train loss", "gradient alignment (total)",
                            "frames per error vector"], rows)
    figure = Figure(figsize=(7, 3.8))
    axes = figure.subplots()
    for label, run in runs.items():
        series = run.series
        axes.plot(series["alignment/step"], series["alignment/gradient/total"], label=label)
    axes.set(xlabel="training step", ylabel="gradient alignment (total)", title="feedback path vs alignment")
    axes.legend(fontsize=7)
    figure.tight_layout()
    arrays = {f"variant_{i}": {"test_accuracy": run.series["metrics/test_accuracy"]} for i, run in
              enumerate(runs.values())}
    paths = write_results(NAME, arrays=arrays, attrs={"config": base, "variants": list(VARIANTS)}, figure=figure,
                          table=table, out=args.out, title="Error encoding and camera vs DFA learning")
    print(table)
    print(f"figure: {paths['png']}")


if __name__ == "__main__":
    main()
