"""Running a sweep: each run a dask.distributed task, on a LocalCluster or an existing cluster.

The scheduler owns retries (``retries=1``: a run that raises runs once more) and reschedules the task of a worker
that died (dask's ``distributed.scheduler.allowed-failures``); the rerun resumes from the run file's last
checkpoint. ``workers=0`` runs everything in this process, one run after another, without dask.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from optodfa.sweep.grid import Grid
from optodfa.sweep.manifest import FINAL, Manifest, SweepError, folder_lock
from optodfa.sweep.outputs import write_summary
from optodfa.sweep.summary import SweepSummary, summarise
from optodfa.sweep.worker import RunTask, execute_run
from optodfa.validation import check_int

# One compute thread per worker: torch pins itself in the task; BLAS and OpenMP pools read these at start-up.
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


def run(grid: Grid | Mapping[str, Any] | str | os.PathLike[str], out: str | os.PathLike[str], *,
        client: Any = None, scheduler: str | None = None, workers: int = 2, retries: int = 1,
        progress: bool = True, tensorboard: bool | None = None, figures: bool = True, connect_timeout: float = 10.0,
        log: Callable[[str], None] = print) -> SweepSummary:
    """Run every run of ``grid`` not yet done in the sweep folder ``out``; return the summary.

    Args:
        grid: a :class:`Grid`, a dict of the grid-file structure, or a TOML grid file.
        out: the sweep folder (created). A folder holding a different grid is refused.
        client: a ``distributed.Client`` to submit to (yours stays open), or ``None``.
        scheduler: ``tcp://HOST:PORT`` or a scheduler file of a running cluster (when ``client`` is ``None``).
        workers: LocalCluster worker processes when neither ``client`` nor ``scheduler`` is given (one compute
            thread each); ``0`` runs in this process without dask.
        retries: extra attempts of a run that raises (the scheduler retries it).
        progress: a progress bar over runs. tensorboard: event files and hparams under ``out/tensorboard``
            (``None``: when the tensorboard package is installed).
        figures: write the figures into ``out/figures``. connect_timeout: seconds to reach ``scheduler``.
        log: where progress messages go.

    Returns:
        The :class:`SweepSummary`; ``summary.failed`` names the runs that failed (they are retried when the same
        call is made again; completed, invalid and diverged runs are kept).

    Raises:
        GridError: a bad grid (before anything runs). SweepError: the folder is busy or holds another grid, or
        the scheduler cannot be reached.
    """
    grid = Grid.load(grid)
    installed = importlib.util.find_spec("tensorboard") is not None
    if tensorboard and not installed:
        raise ImportError("tensorboard=True needs the tensorboard package: pip install 'optodfa[tensorboard]'")
    tensorboard = installed if tensorboard is None else tensorboard
    check_int("workers", workers, low=0)
    check_int("retries", retries, low=0)
    out = Path(out)
    with folder_lock(out):
        manifest = Manifest.for_grid(out, grid)
        todo = [name for name, entry in manifest.runs.items() if not _done(manifest, name, entry.status)]
        for name in todo:
            manifest.runs[name].status, manifest.runs[name].hparams = "pending", False
        manifest.save()
        skipped = len(manifest.runs) - len(todo)
        log(f"sweep {out}: {len(manifest.runs)} runs, {skipped} already done, {len(todo)} to run")
        tasks = [RunTask(name, manifest.runs[name].config, str(manifest.run_path(name)),
                         str(manifest.attempts_path(name)),
                         str(manifest.tensorboard_dir(name)) if tensorboard else None, grid.imports)
                 for name in todo]
        if tasks:
            with _progress(len(tasks), progress) as bar:
                if client is None and scheduler is None and workers == 0:
                    _run_here(manifest, tasks, retries, bar)
                else:
                    with _client(client, scheduler, workers, connect_timeout) as active:
                        _run_on(active, manifest, tasks, retries, bar)
        if tensorboard:
            _write_hparams(manifest)
        summary = summarise(out)
        write_summary(summary, figures=figures)
    if summary.failed:
        log(failure_message(summary, grid))
    return summary


def failure_message(summary: SweepSummary, grid: Grid) -> str:
    """Which runs failed, why, and the command that reruns them."""
    lines = [f"{len(summary.failed)} of {len(summary.runs)} runs failed:"]
    for record in summary.runs:
        if record.status == "failed":
            lines.append(f"  {record.name}: {record.error}  (attempts: {record.attempts})")
    again = (f"the same command, `optodfa sweep {grid.source} --out {summary.folder}`" if grid.source else
             f"the same call, optodfa.sweep.run(grid, {str(summary.folder)!r})")
    lines.append(f"rerun them with {again}: completed runs are skipped and failed ones run again (errors in "
                 f"{summary.folder / 'sweep.json'})")
    return "\n".join(lines)


def _done(manifest: Manifest, name: str, status: str) -> bool:
    if status not in FINAL:
        return False
    if status != "completed":
        return True
    from optodfa.runlog import RunFile, RunFileError

    try:  # a completed run whose file went missing or is unreadable runs again
        return RunFile.load(manifest.run_path(name)).attrs.get("status") == "completed"
    except RunFileError:
        return False


# -- where the runs execute ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _client(client: Any, scheduler: str | None, workers: int, connect_timeout: float) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise SweepError(f"sweeps on workers need dask.distributed: pip install 'optodfa[dist]' ({exc}); or run "
                         f"in this process with workers=0 (--workers 0)") from None
    if scheduler is not None:
        file = Path(scheduler)
        is_file = "://" not in scheduler and (file.suffix == ".json" or file.exists())
        if is_file and not file.is_file():
            raise SweepError(f"scheduler file {scheduler!r} does not exist")
        try:
            if is_file:
                active = Client(scheduler_file=str(file), timeout=connect_timeout)
            else:
                active = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepError(f"cannot reach the dask scheduler {scheduler!r} within {connect_timeout:g} s ({exc}); "
                             f"is `dask scheduler` running there? Leave out --scheduler to use a local cluster"
                             ) from None
        try:
            yield active
        finally:
            active.close()
        return
    cluster = local_cluster(workers)
    active = Client(cluster)
    try:
        yield active
    finally:
        active.close()
        cluster.close()


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` processes, one compute thread each, set up for training runs.

    dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``).
    Setting that variable at all turns off glibc's sliding mmap threshold, so every buffer over 128 KiB (a
    256x256 weight's gradient, Adam's temporaries, a checkpoint's copies) is mmap'd, page-faulted in zeroed and
    unmapped again on each use: a digits run took 0.86 s of CPU on a worker against 0.55 s in this process, with
    115 000 minor page faults against 3 000 (benchmarks/sweep.py). The workers are started without it, so they
    allocate exactly as this process does; a value the user exported still reaches them (inherited).
    """
    import dask
    from distributed import LocalCluster

    check_int("workers", workers, low=1)
    # None removes the key from dask's defaults (dask's documented way to unset a nanny variable).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        # Dashboard on a free loopback port: dask's default 8787 may be taken (another cluster, another sweep).
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=THREAD_ENV)


def _run_on(client: Any, manifest: Manifest, tasks: list[RunTask], retries: int, bar: tqdm) -> None:
    from distributed import wait

    futures = {}
    for task in tasks:
        # A readable, unique key: the dashboard shows the run's name; a resubmission never reuses a result.
        key = f"optodfa-run-{task.name}-{uuid.uuid4().hex[:8]}"
        futures[client.submit(execute_run, task, key=key, pure=False, retries=retries)] = task.name
        manifest.runs[task.name].status = "running"
    manifest.save()
    pending = set(futures)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                name = futures[future]
                if future.status == "finished":
                    _record(manifest, name, future.result())
                else:
                    _record(manifest, name, _failure(future))
                bar.update(1)
            if done:
                manifest.save()
            _show(bar, manifest, running=_running(client, pending, futures))
    except BaseException:
        client.cancel(list(pending))
        for future in pending:
            manifest.runs[futures[future]].status = "pending"
        manifest.save()
        raise


def _run_here(manifest: Manifest, tasks: list[RunTask], retries: int, bar: tqdm) -> None:
    for task in tasks:
        manifest.runs[task.name].status = "running"
        manifest.save()
        _show(bar, manifest, running=1)
        outcome: dict[str, Any] = {}
        for _ in range(retries + 1):
            try:
                outcome = execute_run(task)
                break
            except Exception as exc:
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        _record(manifest, task.name, outcome)
        manifest.save()
        bar.update(1)
        _show(bar, manifest, running=0)


def _failure(future: Any) -> dict[str, Any]:
    if future.status == "cancelled":
        return {"status": "failed", "error": "cancelled (the scheduler or the client went away)"}
    exc = future.exception()
    if type(exc).__name__ == "KilledWorker":
        return {"status": "failed", "error": f"its worker died each time it ran ({exc})"}
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _record(manifest: Manifest, name: str, outcome: Mapping[str, Any]) -> None:
    entry = manifest.runs[name]
    entry.status = outcome["status"]
    entry.error = outcome.get("error")
    entry.step = outcome.get("step")
    entry.seconds = outcome.get("seconds", entry.seconds)
    entry.attempts = len(manifest.read_attempts(name))


def _running(client: Any, pending: set[Any], futures: Mapping[Any, str]) -> int:
    try:
        processing = {key for keys in client.processing().values() for key in keys}
    except (OSError, TimeoutError):
        return 0
    return sum(1 for future in pending if future.key in processing)


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[tqdm]:
    bar = tqdm(total=total, desc="runs", unit="run", disable=not enabled, smoothing=0.1)
    try:
        yield bar
    finally:
        bar.close()


def _show(bar: tqdm, manifest: Manifest, *, running: int) -> None:
    counts = manifest.counts()
    bar.set_postfix(done=counts["completed"], running=running, failed=counts["failed"],
                    invalid=counts["invalid"], diverged=counts["diverged"], refresh=False)
    bar.refresh()


# -- TensorBoard's hparams view -----------------------------------------------------------------------------------
def _write_hparams(manifest: Manifest) -> None:
    from optodfa.runlog import RunFile
    from optodfa.sweep.summary import final_metrics
    from optodfa.tensorboard_log import write_hparams

    changed = False
    for name, entry in manifest.runs.items():
        if entry.status != "completed" or entry.hparams:
            continue
        metrics = {f"final/{key}": value for key, value in final_metrics(RunFile.load(manifest.run_path(name))).items()}
        hparams = {**{key: entry.config.get(key) for key in ("method", "device", "profile", "dataset", "seed",
                                                               "feedback_seed")},
                   **entry.settings}
        write_hparams(manifest.tensorboard_dir(name), hparams, metrics)
        entry.hparams = changed = True
    if changed:
        manifest.save()
