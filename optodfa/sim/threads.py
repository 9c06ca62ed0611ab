"""Independent parts of a simulated acquisition run on the threads torch is given (CPU).

The camera's compiled passes (:mod:`optodfa.sim.kernels`) release the GIL, so blocks of pixel columns, which share
nothing but read-only inputs, can run on several Python threads at once. The thread count follows
``torch.get_num_threads()``: what a caller gives torch for its matrix products it gives the simulator too. With one
thread the caller runs its blocks in order itself (no pool, no overhead); with more, the calling thread and a pool
(one per thread count, built once) share them out.

Each block must write only its own outputs and its thread's scratch space (a
:meth:`optodfa.sim.workspace.Workspace.part`), and its result must not depend on which thread ran it or when; then
the results are the one-thread results exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["count", "run_blocks"]

T = TypeVar("T")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def count() -> int:
    """Threads the simulator may use now: ``torch.get_num_threads()`` (at least 1)."""
    return max(1, torch.get_num_threads())


def run_blocks(count: int, work: Callable[[int, int], T], parts: int) -> list[T]:
    """``[work(b, part) for b in range(count)]``, the blocks shared out one at a time between the calling thread
    and ``parts − 1`` pool threads; ``part`` (0 on the calling thread) names the thread's own scratch space.

    Blocks are claimed as threads come free, and the caller waits only for blocks that have started: on a loaded
    machine, where a pool thread may not run for milliseconds, the caller does the blocks itself instead of waiting
    for it (a pool thread that starts after the last block was claimed does nothing). An exception in a block stops
    further claims and is raised here once every started block has finished (none is left running on scratch space
    the caller may reuse).
    """
    if parts <= 1 or count <= 1:
        return [work(b, 0) for b in range(count)]
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []
    state = {"next": 0, "running": 0}
    idle = threading.Condition()

    def claim() -> int | None:
        with idle:
            if errors or state["next"] >= count:
                return None
            block = state["next"]
            state["next"] += 1
            state["running"] += 1
            return block

    def run(part: int) -> None:
        while (block := claim()) is not None:
            try:
                results[block] = work(block, part)
            except BaseException as exc:  # handed to the caller
                with idle:
                    errors.append(exc)
            finally:
                with idle:
                    state["running"] -= 1
                    idle.notify_all()

    pool = _pool(parts - 1)
    for part in range(1, parts):
        pool.submit(run, part)
    run(0)
    with idle:
        idle.wait_for(lambda: state["running"] == 0)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def _pool(workers: int) -> ThreadPoolExecutor:
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="optodfa-sim")
            _POOLS[workers] = pool
        return pool
