"""Weights in run files: initial, final and snapshots, as plain HDF5 datasets named by layer.

Layout inside a run file (the tree ``weights`` of :attr:`optodfa.runlog.RunFile.trees`, :mod:`optodfa.h5tree`
codec; every leaf a float32 or int64 dataset that h5py, or any HDF5 tool, reads without torch)::

    /weights/initial/<layer>      (n_l, n_{l-1}) weights before the first update
    /weights/final/<layer>        the same after the last update (written when the run completes)
    /weights/snapshots/step       (k,) int64: the steps of the snapshots (weights after that many updates)
    /weights/snapshots/<layer>    (k, n_l, n_{l-1}): the weights at each of those steps

Layers are named as alignment names them: the hidden layers by their feedback point (``layer1`` … for an MLP),
the last weighted layer ``output``. Only the weight matrices are kept (no biases): they are what weight
alignment and the cross-seed cosine compare. Snapshots are taken on the steps of the ``"log"`` alignment schedule
(:mod:`optodfa.schedule`), at the same moments as alignment (before the update of that step).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TREE", "RunWeights", "layer_weights", "read_weights", "record_final", "record_initial",
           "record_snapshot", "truncate_snapshots"]

TREE = "weights"


def layer_weights(model: Any) -> dict[str, np.ndarray]:
    """``{layer name: weight matrix}`` (float32 copies) of a :class:`optodfa.dfa.DFAModel`: each hidden layer whose
    module has a ``weight``, under its feedback point's name, and the output layer as ``"output"``."""
    weights: dict[str, np.ndarray] = {}
    for layer in model.hidden:
        if layer.module is not None and getattr(layer.module, "weight", None) is not None:
            weights[layer.name] = _array(layer.module.weight)
    output = model.output_layer
    if output is not None and getattr(output, "weight", None) is not None:
        weights["output"] = _array(output.weight)
    return weights


def _array(weight: Any) -> np.ndarray:
    return weight.detach().to(device="cpu").float().numpy().copy()


def _tree(trees: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return trees.setdefault(TREE, {})


def record_initial(trees: dict[str, dict[str, Any]], weights: Mapping[str, np.ndarray]) -> None:
    """Keep ``weights`` as the initial weights (and start with no snapshots nor final weights)."""
    trees[TREE] = {"initial": dict(weights)}


def record_final(trees: dict[str, dict[str, Any]], weights: Mapping[str, np.ndarray]) -> None:
    _tree(trees)["final"] = dict(weights)


def record_snapshot(trees: dict[str, dict[str, Any]], step: int, weights: Mapping[str, np.ndarray]) -> None:
    """Append the weights at ``step`` to the snapshots (steps must increase)."""
    snapshots = _tree(trees).get("snapshots")
    if snapshots is None:
        _tree(trees)["snapshots"] = {"step": np.array([step], dtype=np.int64),
                                     **{name: w[None] for name, w in weights.items()}}
        return
    if step <= int(snapshots["step"][-1]):
        raise ValueError(f"snapshot steps must increase: step {step} after {int(snapshots['step'][-1])}")
    snapshots["step"] = np.append(snapshots["step"], np.int64(step))
    for name, w in weights.items():
        snapshots[name] = np.concatenate([snapshots[name], w[None]])


def truncate_snapshots(trees: dict[str, dict[str, Any]], before: int) -> None:
    """Keep the snapshots taken before step ``before`` (what a checkpoint at that step had seen) and drop the
    final weights: a resumed run takes the rest again, exactly as an uninterrupted run would."""
    tree = trees.get(TREE)
    if tree is None:
        return
    tree.pop("final", None)
    snapshots = tree.get("snapshots")
    if snapshots is None:
        return
    keep = np.asarray(snapshots["step"]) < before
    if not keep.any():
        del tree["snapshots"]
        return
    tree["snapshots"] = {name: np.asarray(values)[keep] for name, values in snapshots.items()}


@dataclasses.dataclass(frozen=True)
class RunWeights:
    """The weights one run file holds.

    Attributes:
        path: the run file.
        initial, final: ``{layer: array}``; ``final`` is empty until the run completes.
        steps: ``(k,)`` steps of the snapshots (empty without snapshots).
        snapshots: ``{layer: (k, ...) array}``.
    """

    path: Path
    initial: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    steps: np.ndarray
    snapshots: dict[str, np.ndarray]

    def at(self, step: int) -> dict[str, np.ndarray]:
        """The snapshot at ``step``.

        Raises:
            KeyError: no snapshot at ``step`` (the message lists the steps there are).
        """
        where = np.flatnonzero(self.steps == step)
        if not len(where):
            raise KeyError(f"{str(self.path)!r} has no weight snapshot at step {step}; snapshots at steps "
                           f"{self.steps.tolist()}")
        return {name: values[where[0]] for name, values in self.snapshots.items()}


def read_weights(path: str | os.PathLike[str]) -> RunWeights:
    """The weights stored in the run file at ``path`` (seal verified; no checkpoint is read).

    Raises:
        RunFileError: not a readable run file, or it holds no weights (a run file of an optodfa that did not
            store them).
    """
    from optodfa.runlog import RunFile, RunFileError

    run = RunFile.load(path, checkpoint=False)
    tree = run.trees.get(TREE)
    if not tree or "initial" not in tree:
        raise RunFileError(f"run file {str(path)!r} holds no weights (/{TREE}/initial); it was written by an "
                           f"optodfa that did not store them: train it again")
    snapshots = {name: np.asarray(values) for name, values in tree.get("snapshots", {}).items()}
    steps = snapshots.pop("step", np.zeros(0, dtype=np.int64)).astype(np.int64)
    return RunWeights(Path(path), _plain(tree["initial"]), _plain(tree.get("final", {})), steps,
                      {name: np.asarray(values) for name, values in snapshots.items()})


def _plain(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in weights.items()}
