"""What the deep non-linear experiments share: the 4 x 100 bias-free MLP, runs over seeds, curves, peaks.

The network is the paper's deep non-linear one: Fashion-MNIST resized to 14 x 14 (196 inputs), four hidden
layers of 100 units without biases, plain SGD, a reduced training set so that runs reach thousands of epochs.
Alignment and weight snapshots are taken on the log-spaced step grid (``alignment_schedule = "log"``), which
is what a log time axis needs and keeps the run files small.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optodfa.runlog import RunFile

HIDDEN = [100, 100, 100, 100]
NETWORK = {"dataset": "fashion-mnist", "input_size": 14, "hidden": HIDDEN, "bias": False,
           "optimizer": "sgd-plain", "alignment_schedule": "log", "feedback_seed": 0}
WEIGHT_LAYERS = ("layer2", "layer3", "layer4", "output")  # weight alignment has no first layer
GRADIENT_LAYERS = ("layer1", "layer2", "layer3", "layer4")
COLOURS = {"layer1": "C0", "layer2": "C1", "layer3": "C2", "layer4": "C3", "output": "C4", "total": "k"}


def run_seeds(base: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
              folder: Path, args: argparse.Namespace) -> dict[str, list[RunFile]]:
    """Run every variant (label -> settings over ``base``) for every seed as one sweep in ``folder``; return
    label -> its run files in the order of ``seeds``. Completed runs in ``folder`` are kept."""
    import optodfa.sweep

    grid = {"base": dict(base), "variants": {label: dict(v) for label, v in variants.items()},
            "seeds": list(seeds)}
    summary = optodfa.sweep.run(grid, folder, workers=args.workers, scheduler=args.scheduler,
                                progress=sys.stderr.isatty(), figures=False)
    bad = [f"{r.name}: {r.status} ({r.error})" for r in summary.runs if r.status != "completed"]
    if bad:
        raise SystemExit("runs did not complete: " + "; ".join(bad))
    found: dict[tuple[str, int], RunFile] = {}
    for record in summary.runs:
        found[(record.settings["variant"], int(record.settings.get("seed", base.get("seed", 0))))] = record.load()
    return {label: [found[(label, seed)] for seed in seeds] for label in variants}


def curves(runs: Sequence[RunFile], kind: str, layers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``alignment/<kind>/<layer>`` over runs of one setting: ``values`` has shape
    ``(len(runs), len(layers), len(steps))``; the runs must share their alignment steps."""
    steps = np.asarray(runs[0].series["alignment/step"], dtype=np.int64)
    values = np.empty((len(runs), len(layers), len(steps)))
    for i, run in enumerate(runs):
        if run.series["alignment/step"] != runs[0].series["alignment/step"]:
            raise ValueError(f"{run.path} measured alignment at other steps than {runs[0].path}")
        for j, layer in enumerate(layers):
            values[i, j] = run.series[f"alignment/{kind}/{layer}"]
    return steps, values


def peak(steps: np.ndarray, values: np.ndarray) -> tuple[int, float]:
    """``(step, value)`` of the maximum of one curve (the first, if it repeats)."""
    index = int(np.argmax(values))
    return int(steps[index]), float(values[index])


def rise(steps: np.ndarray, values: np.ndarray) -> int:
    """The first step at which a curve has gone half the way from its first value to its peak; -1 when it never
    rose above its first value."""
    start, top = float(values[0]), float(np.max(values))
    if top <= start:
        return -1
    return int(steps[np.flatnonzero(values >= start + 0.5 * (top - start))[0]])


def bottom_first(steps: Sequence[int]) -> bool:
    """Whether the layers, listed bottom to top, reach a mark (their peak, their half-rise) in that order (ties
    allowed); a layer that never rose (-1) breaks the order."""
    return all(a >= 0 for a in steps) and all(a <= b for a, b in itertools.pairwise(steps))


def mlp_outputs(weights: Mapping[str, np.ndarray], x: np.ndarray, activation: str) -> np.ndarray:
    """Logits of the bias-free MLP with ``weights`` (``layer1`` … ``layer4``, ``output``) on ``x`` ``(N, 196)``."""
    functions = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0)}
    if activation not in functions:
        raise ValueError(f"activation must be one of {sorted(functions)}, got {activation!r}")
    h = np.asarray(x, dtype=np.float64)
    for layer in GRADIENT_LAYERS:
        h = functions[activation](h @ np.asarray(weights[layer], dtype=np.float64).T)
    return h @ np.asarray(weights["output"], dtype=np.float64).T


def log_axis(axes: Any, steps: np.ndarray) -> None:
    """A log step axis from step 1 to past the last step (step 0, measured too, cannot sit on a log axis)."""
    axes.set_xscale("log")
    axes.set_xlim(1, max(2, int(steps[-1]) * 1.2))
