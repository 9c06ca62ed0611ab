"""Sweep speed-up: the same 8 short runs one after another in this process, then on a LocalCluster of 2 workers.

Run: ``python -m benchmarks.sweep [--rounds 1] [--workers 2] [--epochs 8]``; the last line is the speed-up.

Each run is DFA (digital feedback) on scikit-learn's digits, MLP 64-256-256-10, batch 32, one compute thread
(seeds 0-7). Both sides go through :func:`optodfa.sweep.run` (run files, manifest, TensorBoard events, summary,
figures): ``workers=0`` executes the runs in this process, the cluster side submits them as dask tasks. The
cluster is started before the clock starts (its start-up time is printed apart), and this process and every
worker are warmed by one tiny run first. Overhead per run is the worker time not spent in runs:
``(workers x wall - sum of in-task seconds) / runs``, which holds scheduling, transfer, the parent's bookkeeping
and workers idle at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optodfa.sweep
from optodfa.sweep.execute import local_cluster
from optodfa.sweep.manifest import Manifest

RUNS = 8


def grid(epochs: int) -> dict:
    return {"base": {"dataset": "digits", "hidden": [256, 256], "epochs": epochs, "batch_size": 32, "lr": 1e-3,
                     "alignment_every": 20, "device": "digital"}, "seeds": list(range(RUNS))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed_sweep(folder: Path, epochs: int, **where: object) -> tuple[float, float]:
    """Wall seconds of one sweep, and the sum of its runs' in-task seconds."""
    started = time.perf_counter()
    optodfa.sweep.run(grid(epochs), folder, progress=False, log=lambda _: None, **where)
    wall = time.perf_counter() - started
    return wall, sum(entry.seconds or 0.0 for entry in Manifest.load(folder).runs.values())


def warm() -> None:
    """One tiny run with TensorBoard events, so that first-call costs (imports, lazy initialisation) fall here."""
    import torch
    from threadpoolctl import threadpool_limits

    import optodfa.sweep.figures  # noqa: F401 - matplotlib, imported by the summary of either side
    from optodfa.config import TrainConfig
    from optodfa.train import train

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch, threadpool_limits(limits=1):
        config = TrainConfig(**{**grid(1)["base"], "hidden": (256, 256), "limit": 64})
        train(config, Path(scratch) / "warm.h5", progress=False, log=lambda _: None, tensorboard=Path(scratch))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="sequential + cluster pairs; medians are printed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (sets the run length)")
    args = parser.parse_args(argv)
    from distributed import Client

    print(f"{RUNS} runs (digits, MLP 64-256-256-10, {args.epochs} epochs, batch 32, 1 thread each); {cpu_model()}, "
          f"python {platform.python_version()}")
    started = time.perf_counter()
    cluster = local_cluster(args.workers)  # the sweep engine's own cluster set-up
    client = Client(cluster)
    client.run(warm)
    print(f"cluster start-up ({args.workers} workers, imports included, not in the timings): "
          f"{time.perf_counter() - started:.1f} s")
    sequential, parallel, overheads = [], [], []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            warm()
            for index in range(args.rounds):
                wall_seq, busy_seq = timed_sweep(root / f"seq{index}", args.epochs, workers=0)
                wall_par, busy_par = timed_sweep(root / f"par{index}", args.epochs, client=client)
                sequential.append(wall_seq)
                parallel.append(wall_par)
                overheads.append((args.workers * wall_par - busy_par) / RUNS)
                print(f"round {index + 1}: sequential {wall_seq:.1f} s (runs {busy_seq:.1f} s), "
                      f"{args.workers} workers {wall_par:.1f} s (runs {busy_par:.1f} s in all, "
                      f"{busy_par / RUNS:.2f} s per run against {busy_seq / RUNS:.2f} s alone)")
    finally:
        client.close()
        cluster.close()
    seq, par = statistics.median(sequential), statistics.median(parallel)
    if hasattr(os, "getloadavg"):  # a shared machine leaves the workers less than a core each: say how busy it was
        print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (this benchmark adds about "
              f"{args.workers} while it runs)")
    print(f"median sequential {seq:.1f} s, median on {args.workers} workers {par:.1f} s")
    print(f"scheduling overhead per run: {statistics.median(overheads):.2f} s (worker time not spent in runs)")
    print(f"speed-up (sequential / {args.workers} workers): {seq / par:.2f}")


if __name__ == "__main__":
    main()
