"""Cost of one run-file flush with a checkpoint: plain HDF5 datasets, sealed (now) against a pickle (before).

Case: the README's network (784-800-800-10 MLP, Adam, digital projector), a checkpoint as ``train`` takes it at an
epoch end, and 10 epochs of series. Timed in one process: the old layout (``torch.save`` bytes in one uint8
dataset, unsealed, no checksums: the baseline) and the new one (:mod:`optodfa.h5tree` tensors with fletcher32,
SHA-256 seal), writing (``RunFile.flush``) and reading (``RunFile.load``). Medians over repeats; ratios against
the baseline.

Run: ``python -m benchmarks.checkpoint [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from optodfa.atomic import atomic_path
from optodfa.runlog import RunFile


def _state() -> dict:
    network = torch.nn.Sequential(torch.nn.Linear(784, 800), torch.nn.Tanh(), torch.nn.Linear(800, 800),
                                  torch.nn.Tanh(), torch.nn.Linear(800, 10))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    network(torch.randn(8, 784)).sum().backward()
    optimizer.step()
    return {"epoch": 1, "batch": 0, "step": 469, "skipped": 0, "loss_sum": 0.0, "loss_count": 0,
            "model": network.state_dict(), "optimizer": optimizer.state_dict(),
            "projector": {"counters": {"frames": 0.0, "macs": 1e9}}, "torch_rng": torch.get_rng_state()}


def _old_flush(path: Path, series: dict[str, list[float]], state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            for name, values in series.items():
                f.create_dataset(name, data=np.asarray(values), maxshape=(None,), chunks=(len(values),))
            f.create_dataset("checkpoint/state", data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())


def _old_load(path: Path) -> None:
    with h5py.File(path, "r") as f:
        torch.load(io.BytesIO(f["checkpoint/state"][()].tobytes()), weights_only=False)


def _median(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repeats of each variant (default 7)")
    args = parser.parse_args(argv)
    state = _state()
    series = {f"metrics/{name}": [0.5] * 10 for name in ("test_accuracy", "train_loss", "test_loss", "step")}
    with tempfile.TemporaryDirectory() as folder:
        old, new = Path(folder) / "old.h5", Path(folder) / "new.h5"
        run = RunFile(new, {"status": "running"}, series)
        run.set_checkpoint(state, {"epoch": 1, "batch": 0, "step": 469, "series_lengths": run.lengths()})
        rows = [("write, pickle (before)", _median(lambda: _old_flush(old, series, state), args.repeats)),
                ("write, sealed datasets", _median(run.flush, args.repeats)),
                ("read, pickle (before)", _median(lambda: _old_load(old), args.repeats)),
                ("read, sealed datasets", _median(lambda: RunFile.load(new), args.repeats))]
        sizes = old.stat().st_size, new.stat().st_size
    print(f"checkpoint of a 784-800-800-10 MLP with Adam; file {sizes[0] / 1e6:.1f} MB before, "
          f"{sizes[1] / 1e6:.1f} MB now; medians of {args.repeats}")
    for i, (label, seconds) in enumerate(rows):
        baseline = rows[i - i % 2][1]
        print(f"{label:<26} {seconds * 1e3:8.1f} ms   x{seconds / baseline:.2f}")


if __name__ == "__main__":
    main()
