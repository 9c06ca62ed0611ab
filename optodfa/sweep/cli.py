"""``optodfa sweep GRID.toml``: the command-line face of :func:`optodfa.sweep.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path("results") / "sweeps"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to ``subparsers``; its handler is ``args.handler``."""
    p = subparsers.add_parser(
        "sweep", help="run a grid of runs (settings x seeds) on a local or dask.distributed cluster",
        description="Expand GRID.toml into runs and run those not yet done in the sweep folder; print the summary. "
        "Rerunning the same command skips completed runs and resumes unfinished ones.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("grid", help="grid file (TOML: [base], [grid], [zip], [variants], seeds = [...])")
    p.add_argument("--out", default=None, help="sweep folder (default results/sweeps/<grid file name>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local worker processes, one compute thread each "
                       "(0: run in this process, no dask)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS|FILE",
                       help="use a running dask cluster: tcp://HOST:PORT or a scheduler file")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to reach --scheduler")
    p.add_argument("--retries", type=int, default=1, help="extra attempts of a run that raises")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="no TensorBoard event files (they are written when tensorboard is installed)")
    p.add_argument("--no-figures", action="store_true", help="no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep; 0 if no run failed, 1 if some did (the message names them and how to rerun)."""
    from optodfa.sweep.execute import run

    out = Path(args.out) if args.out else DEFAULT_OUT / Path(args.grid).stem
    progress = not args.no_progress and sys.stderr.isatty()
    summary = run(args.grid, out, scheduler=args.scheduler, workers=args.workers, retries=args.retries,
                  progress=progress, tensorboard=False if args.no_tensorboard else None, figures=not args.no_figures,
                  connect_timeout=args.connect_timeout, log=lambda line: print(line, file=sys.stderr))
    print(summary.markdown())
    print(f"summary: {out / 'summary.csv'}, {out / 'summary.md'}; TensorBoard: tensorboard --logdir {out}")
    return 1 if summary.failed else 0


def report(folder: str | Path) -> str:
    """The summary table of the sweep in ``folder`` (``optodfa report SWEEP_DIR``), from its files alone."""
    from optodfa.cross_seed import cross_seed_markdown
    from optodfa.sweep.summary import summarise

    summary = summarise(folder)
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts().items() if n)
    text = f"sweep {folder}: {len(summary.runs)} runs ({counts})\n\n{summary.markdown()}"
    cross = cross_seed_markdown(summary)
    if cross:
        text += ("\nCross-seed cosine of the final weights, per layer (mean over pairs of seeds of one "
                 "setting):\n\n" + cross)
    return text
