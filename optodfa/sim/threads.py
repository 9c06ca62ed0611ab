"""Independent parts of a simulated acquisition run on the threads torch is given (CPU).

The camera's compiled passes (:mod:`optodfa.sim.kernels`) release the GIL, so blocks of pixel columns, which share
nothing but read-only inputs, can run on several Python threads at once. The thread count follows
``torch.get_num_threads()``: what a caller gives torch for its matrix products it gives the simulator too. With one
thread the caller runs its parts in order itself (no pool, no overhead); with more, the calling thread runs the
first part and a pool, one per thread count and built once, the others.

Each part must write only its own outputs and scratch space (a :meth:`optodfa.sim.workspace.Workspace.part`), and
its result must not depend on which thread ran it or when; then the results are the one-thread results exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["count", "run_parts", "split"]

T = TypeVar("T")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def count() -> int:
    """Threads the simulator may use now: ``torch.get_num_threads()`` (at least 1)."""
    return max(1, torch.get_num_threads())


def split(items: int, parts: int) -> list[range]:
    """``items`` indices cut into at most ``parts`` contiguous non-empty ranges of nearly equal length, in order."""
    parts = max(1, min(parts, items))
    return [range(items * p // parts, items * (p + 1) // parts) for p in range(parts)]


def run_parts(parts: Sequence[Callable[[], T]]) -> list[T]:
    """The results of ``parts``, in their order: the first on the calling thread, the others on a pool.

    An exception in any part is raised here once every part has finished (no part is left running on scratch
    space the caller may reuse).
    """
    if len(parts) <= 1:
        return [part() for part in parts]
    pool = _pool(len(parts) - 1)
    futures: list[Future[T]] = [pool.submit(part) for part in parts[1:]]
    try:
        first = parts[0]()
    finally:
        # Wait for every part before anything propagates.
        for future in futures:
            future.exception()
    return [first, *(future.result() for future in futures)]


def _pool(workers: int) -> ThreadPoolExecutor:
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="optodfa-sim")
            _POOLS[workers] = pool
        return pool
