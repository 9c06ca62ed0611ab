"""Sweeps: grids of runs over settings and seeds, on a local cluster or any dask.distributed cluster.

``optodfa.sweep.run(grid, out)`` expands the grid (:mod:`.grid`), records it in the sweep folder's manifest
(:mod:`.manifest`), runs what is not done yet as dask tasks (:mod:`.execute`, :mod:`.worker`) and returns the
summary (:mod:`.summary`, figures in :mod:`.figures`). ``optodfa sweep GRID.toml`` is the same from the shell.
"""

from optodfa.sweep.execute import run as run
from optodfa.sweep.grid import Grid as Grid
from optodfa.sweep.grid import GridError as GridError
from optodfa.sweep.grid import Run as Run
from optodfa.sweep.manifest import Manifest as Manifest
from optodfa.sweep.manifest import SweepError as SweepError
from optodfa.sweep.manifest import is_sweep_folder as is_sweep_folder
from optodfa.sweep.summary import SweepSummary as SweepSummary
from optodfa.sweep.summary import summarise as summarise

__all__ = ["Grid", "GridError", "Manifest", "Run", "SweepError", "SweepSummary", "is_sweep_folder", "run",
           "summarise"]
