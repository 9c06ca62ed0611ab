"""How many threads the simulator's compiled kernels run on, and on which threads (CPU).

The camera's compiled pass (:func:`optodfa.sim.kernels.binary_counts`) and the readout's frame sum split their work
into groups of pixel columns or of planes that share nothing but read-only inputs; numba's parallel loops run the
groups at once. The thread count follows ``torch.get_num_threads()``: what a caller gives torch for its matrix
products it gives the simulator too.

Why numba's threads and not a pool of Python threads: torch's OpenMP worker threads keep spinning for a few
milliseconds after each of torch's parallel operations, so on a machine with as many cores as torch threads a
second pool finds its cores taken and waits for them (a simulated projection on two threads of a 2-core machine
took longer than on one). numba's OpenMP threading layer, where torch uses the GNU OpenMP runtime (Linux), runs
its loops on the same runtime's threads, the ones already spinning, so the work starts at once. Elsewhere numba
uses its own pool, which gives the same results.

Two facts of the GNU OpenMP runtime are handled here: numba's first parallel loop in a process resets the
calling thread's OpenMP thread count, which is torch's, so :func:`parts` puts torch's back; and a process forked
after a parallel loop ran must not start another (numba stops it), so a forked child runs the groups on one thread.

Each group must write only its own outputs and scratch space, and its result must not depend on which thread ran
it; then the results are the one-thread results exactly.
"""

from __future__ import annotations

import os

import torch

__all__ = ["count", "parts"]

# The process in which numba's threading layer was started (None: not yet; -1: it cannot start here, or only a
# layer that is not thread-safe could).
_STARTED_IN: int | None = None
THREADSAFE_LAYERS = ("omp", "tbb")


def count() -> int:
    """Threads the simulator may use now: ``torch.get_num_threads()`` (at least 1)."""
    return max(1, torch.get_num_threads())


def parts(wanted: int) -> int:
    """Threads a compiled parallel loop may use for ``wanted`` groups now: at most :func:`count`, numba's thread
    limit and ``wanted``; 1 where numba's parallel loops cannot run (no thread-safe threading layer, or a forked
    child)."""
    wanted = min(wanted, count())
    if wanted <= 1 or not _started():
        return 1
    import numba

    return min(wanted, numba.config.NUMBA_NUM_THREADS)


def _started() -> bool:
    global _STARTED_IN
    if _STARTED_IN is None:
        from optodfa.sim import kernels

        given = torch.get_num_threads()
        try:
            layer = kernels.start_parallel()
            # numba's fallback layer (workqueue) must not be entered from two threads at once, which two projectors
            # in two threads would do; the OpenMP and TBB layers may be.
            _STARTED_IN = os.getpid() if layer in THREADSAFE_LAYERS else -1
        except (ImportError, OSError, ValueError):  # numba finds no threading layer to load
            _STARTED_IN = -1
        finally:
            torch.set_num_threads(given)  # numba's first parallel loop set the OpenMP thread count to its own
    return _STARTED_IN == os.getpid()
