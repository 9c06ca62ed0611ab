"""Figures from run files (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from optodfa.runlog import RunFile


def plot_run(path: str | Path, out: str | Path | None = None) -> Path:
    """Draw test accuracy, training loss and gradient alignment of one run; write a PNG beside it.

    Returns the PNG's path (``RUN.png`` next to ``RUN.h5`` unless ``out`` is given).
    """
    run = RunFile.load(path, checkpoint=False)
    out = Path(out) if out is not None else Path(path).with_suffix(".png")
    series = run.series
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = range(1, len(series.get("metrics/test_accuracy", [])) + 1)
    # A transformer's test set is its text's held-out part, its accuracy that of the next token.
    label = "held-out token accuracy" if "text" in run.attrs else "test accuracy"
    axes[0].plot(epochs, series.get("metrics/test_accuracy", []), "o-")
    axes[0].set(xlabel="epoch", ylabel=label, title=label)
    axes[1].plot(epochs, series.get("metrics/train_loss", []), "o-")
    axes[1].set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    steps = series.get("alignment/step", [])
    for name in sorted(k for k in series if k.startswith("alignment/gradient/")):
        axes[2].plot(steps, series[name], label=name.rsplit("/", 1)[1])
    axes[2].set(xlabel="step", ylabel="cosine", title="gradient alignment", ylim=(-0.2, 1.0))
    if steps:
        axes[2].legend(fontsize=8)
    attrs = run.attrs
    fig.suptitle(f"{attrs.get('method')} / {attrs.get('device')} on {attrs.get('dataset')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
