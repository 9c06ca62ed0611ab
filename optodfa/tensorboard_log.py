"""TensorBoard event files as a view of a run file: its scalars as they are flushed, and a run's hparams.

The HDF5 run file stays the record; this module only mirrors it. ``tensorboard`` is an optional dependency
(``pip install 'optodfa[tensorboard]'``); nothing here is imported unless a TensorBoard folder is asked for.

Scalars keep the run file's series names as tags (``metrics/test_accuracy``, ``alignment/gradient/layer1``,
``device/frames``, ...), stepped by the training step: ``alignment/*`` and ``fidelity/*`` by ``alignment/step``,
the per-epoch series by ``metrics/step``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optodfa.runlog import RunFile

STEP_SERIES = {"alignment/": "alignment/step", "fidelity/": "alignment/step", "metrics/": "metrics/step",
               "device/": "metrics/step"}


def _summary_writer(logdir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install 'optodfa[tensorboard]' "
                          f"({exc})") from None
    return SummaryWriter(log_dir=str(logdir))


class TensorBoardLog:
    """Writes the values a run file gained since the last :meth:`sync` as TensorBoard scalars in ``logdir``.

    Args:
        logdir: the run's TensorBoard folder (created).
        written: series lengths already in the event files, e.g. a resumed run's lengths at its checkpoint, so
            that nothing is written twice.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, written: Mapping[str, int] | None = None) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = _summary_writer(self.logdir)
        self._written: dict[str, int] = dict(written or {})

    def sync(self, run: RunFile) -> None:
        """Write every value of ``run``'s series beyond what was written before, then flush the event file."""
        steps_of = {prefix: run.series.get(name, []) for prefix, name in STEP_SERIES.items()}
        for name, values in run.series.items():
            if name in STEP_SERIES.values():
                continue
            steps = next((s for prefix, s in steps_of.items() if name.startswith(prefix)), [])
            for index in range(self._written.get(name, 0), len(values)):
                step = int(steps[index]) if index < len(steps) else index
                self._writer.add_scalar(name, values[index], global_step=step)
            self._written[name] = len(values)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def write_hparams(logdir: str | os.PathLike[str], hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Add one run's settings and final metrics to TensorBoard's hparams view, in the run's own folder.

    ``hparams`` values that are not numbers, text or booleans are written as text (``(64, 64)`` -> ``"64x64"``);
    ``metrics`` become scalars (tags such as ``final/test_accuracy``) in the same folder, so the hparams table
    and the run's curves are one run in TensorBoard.
    """
    writer = _summary_writer(Path(logdir))
    try:
        writer.add_hparams({key: _hparam(value) for key, value in hparams.items()},
                           {key: float(value) for key, value in metrics.items()}, run_name=".")
    finally:
        writer.close()


def _hparam(value: Any) -> bool | int | float | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return "none" if value is None else str(value)
