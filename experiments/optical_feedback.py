"""What the optics does to DFA learning: Fashion-MNIST with feedback through ``opu-sim`` against ``digital``.

Run: ``python -m experiments.optical_feedback [--quick] [--out results] [--workers 2]`` trains the study as one
sweep (:func:`optodfa.sweep.run`) in ``<out>/optical_feedback/`` and writes its figures and tables into that
folder's ``study/``; ``python -m experiments.optical_feedback --from FOLDER`` redraws them from a sweep folder alone
(its manifest and run files), and ``optodfa report FOLDER`` prints the sweep's own summary.

The study (:func:`experiments.optical.grid.full_grids`; SPEC §6.6, issue 8). Every setting trains from 3
initialisation seeds with the feedback seed fixed (0); the base is DFA, MLP 784-800-800-10 (tanh, bias), Adam at
1e-3, batch 128, the first 10 000 training images for 2 epochs, the full 10 000-image test set, ``opu-sim``
with the ``lighton-aurora`` profile (8-bit camera, shot noise, 5 e- read noise, ternary threshold 0.25,
holographic readout). Groups of settings, each changing one or two things from the base:

* ``bits``: camera bits 1, 2, 3, 4, 6, 8, 12 and unlimited, for the ternary (0.25), sign and 3-bit bit-plane
  encodings;
* ``encoding``: ternary at thresholds 0.05, 0.1, 0.25 and 0.5, sign, bit-plane with 1 to 4 bits (8-bit camera);
* ``light``: photon rate × read noise on a 12-bit camera (so the ADC does not hide the photon budget), from a
  third of a photo-electron per pixel in the reference frame to thousands;
* ``readout``: holographic, strong-reference, intensity-only, each with and without row evening (the intensity
  readout has no rows to even: that setting is ``invalid`` by design);
* ``drift``: medium drift with ρ = 0.999, 0.99, 0.9 per 1000 frames (row evening on), with and without
  re-calibration of the evening factors every 1000 frames (``readout.recalibrate``), and ρ = 0.99 without evening;
* ``sgd``: plain SGD (lr 0.05, momentum 0) on the bits axis (1, 2, 4, 8, unlimited) and digital;
* ``deep``: the 4 × 100 bias-free MLP of the deep study (Adam) on the same bits axis and digital;
* ``bad``: a dark offset above a 4-bit camera's top code (``invalid``, with the device's message) and plain SGD at
  a learning rate that diverges (``diverged``, with its step): the summary's and the study table's statuses.

What each run records (every 10 steps: gradient alignment per layer in the effective, ideal and device views,
weight alignment, feedback fidelity; per epoch: accuracy, frames, OPU seconds and joules) is described in
:mod:`optodfa.study_metrics` and :mod:`optodfa.train`.

The pieces live in :mod:`experiments.optical`, one job a module (``grid``, ``records``, ``analysis``, ``tables``,
``figures``, ``report``); this module is the command line and re-exports the names the tests use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments._common import add_sweep_arguments
from experiments.optical.analysis import pareto
from experiments.optical.grid import QUICK, full_grids, quick_grid, study_variants
from experiments.optical.records import load_study, setting_of, sweep_folders
from experiments.optical.report import write_study

__all__ = ["NAME", "QUICK", "full_grids", "load_study", "main", "pareto", "quick_grid", "setting_of",
           "study_variants", "sweep_folders", "write_study"]

NAME = "optical_feedback"


def main(argv: list[str] | None = None) -> None:
    """The command line: train the study's sweeps (or take ``--from FOLDER``), then write and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: 32-32 MLP, 300 images, 1 epoch")
    parser.add_argument("--out", type=Path, default=Path("results"), help="the sweep goes to OUT/optical_feedback")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="FOLDER",
                        help="only redraw the figures and tables from this sweep folder (no training)")
    add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    if args.source is None:
        import optodfa.sweep

        folder = args.out / NAME
        for part, grid in (quick_grid() if args.quick else full_grids()).items():
            optodfa.sweep.run(grid, folder / part, workers=args.workers, scheduler=args.scheduler,
                              progress=sys.stderr.isatty(), tensorboard=False, figures=False)
    else:
        folder = args.source
        sweep_folders(folder)  # refuses a folder without sweeps, naming it
    paths = write_study(folder)
    print(paths["md"].read_text(encoding="utf-8"))
    for key, path in paths.items():
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
