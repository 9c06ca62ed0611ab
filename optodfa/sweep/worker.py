"""What runs on a worker: one run of a sweep, started, resumed or skipped according to its run file.

A run with no file is trained from scratch; a file whose ``status`` is not ``"completed"`` is resumed from its
last checkpoint (a worker killed mid-run leaves such a file); a completed one is skipped. Outcomes that are
results rather than faults come back as values, so the scheduler does not retry them:

* ``invalid``: a bad setting (``ValueError``/``KeyError``/``TypeError`` before the run file exists, e.g. a device
  setting the device rejects), with the device's message;
* ``diverged``: the error became non-finite (:class:`optodfa.device.NonFiniteError`), with its step.

Anything else raises, and the scheduler retries the run (``retries`` of :func:`optodfa.sweep.run`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from optodfa.device import NonFiniteError


@dataclasses.dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run (plain data, so it travels to any worker).

    Attributes:
        name: the run's name in the sweep. config: ``TrainConfig.to_dict()``. path: its run file.
        attempts: the file that gets one JSON line per start. tensorboard: the run's event folder, or ``None``.
        imports: modules imported first (device plug-ins registered by import).
    """

    name: str
    config: dict[str, Any]
    path: str
    attempts: str
    tensorboard: str | None = None
    imports: tuple[str, ...] = ()


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run ``task`` on one compute thread; return ``{"status", "error", "step", "seconds", "skipped"}``."""
    import torch
    from threadpoolctl import threadpool_limits

    for module in task.imports:
        importlib.import_module(module)
    _record_start(task)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            outcome = _train_or_resume(task)
    finally:
        torch.set_num_threads(threads)  # run in the caller's process (workers=0): leave it as it was
    return {**outcome, "seconds": time.perf_counter() - started}


def _train_or_resume(task: RunTask) -> dict[str, Any]:
    from optodfa.config import TrainConfig
    from optodfa.runlog import RunFile
    from optodfa.train import resume, train

    path = Path(task.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = {"progress": False, "log": lambda _: None, "tensorboard": task.tensorboard}
    existed = path.exists()
    try:
        if existed:
            if RunFile.load(path).attrs.get("status") == "completed":
                return {"status": "completed", "skipped": True}
            resume(path, **quiet)
        else:
            train(TrainConfig.from_dict(task.config), path, **quiet)
    except NonFiniteError as exc:
        match = re.search(r"training step (\d+)", str(exc))
        return {"status": "diverged", "error": str(exc), "step": int(match.group(1)) if match else None}
    except (ValueError, KeyError, TypeError) as exc:
        if existed or path.exists():
            raise  # the run had started: a fault, not a setting
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return {"status": "invalid", "error": f"{type(exc).__name__}: {message}"}
    return {"status": "completed", "skipped": False}


def _record_start(task: RunTask) -> None:
    worker = None
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        pass  # in-process execution: no dask worker
    line = json.dumps({"pid": os.getpid(), "worker": worker, "host": socket.gethostname(), "time": time.time()})
    path = Path(task.attempts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
