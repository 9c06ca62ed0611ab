"""The training loop: one pass from top to bottom — data, model, run file, then per step: align, step, log.

Checkpoints hold the model, the optimiser, the torch random state, the projector's state (noise generator, drift,
counters) and the position in the epoch, as plain HDF5 datasets (:mod:`optodfa.h5tree`; nothing is pickled); the
data order of each epoch is a function of ``(seed, epoch)``, so a resumed run replays exactly what an
uninterrupted one would have done.

``model = "transformer"`` goes through the same loop: its samples are windows of ``context`` characters of a text
(:mod:`optodfa.text_data`: one epoch is one pass over all non-overlapping training windows), its output is
``(n, T, vocab)`` and the loss, the DFA error (projected token by token, ``token_dims=1``) and the alignment
measurements are per token. Its held-out part (the last 10 % of the text) is its test set: ``metrics/test_loss``
is the mean cross-entropy in nats per token there and ``metrics/test_accuracy`` the next-token accuracy.

Files are never lost by accident: :func:`train` refuses an existing run file unless ``force=True``, and a lock
(:class:`optodfa.runlock.RunLock`) keeps a second writer away from a run file while one trains into it. When
anything raises out of the loop, the run file keeps everything up to its last checkpoint and records
``status = "failed"`` with ``error``, ``error_type`` and ``error_step``; :func:`resume` continues it from there.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import optodfa
from optodfa.config import TrainConfig
from optodfa.data import Dataset, load_dataset
from optodfa.dfa import DFAModel, convert
from optodfa.h5tree import copy_tree
from optodfa.interrupt import StopOnSignals
from optodfa.losses import cross_entropy
from optodfa.models import TOKEN_MODELS, build_model
from optodfa.runlock import RunLock
from optodfa.runlog import RunFile, RunFileError, check_writable
from optodfa.schedule import on_log_grid
from optodfa.seeding import derive_seed, torch_generator
from optodfa.study_metrics import record_alignment
from optodfa.text_data import TextData, load_text
from optodfa.weights import layer_weights, record_final, record_initial, record_snapshot, truncate_snapshots

DEVICE_SERIES = ("frames", "hardware_seconds", "energy_joules", "saturated_pixels", "projections", "macs",
                 "faults", "retries")


@dataclasses.dataclass
class Session:
    """What a run needs in memory: data, the DFA model, its optimiser, the run file and its writer's lock."""

    config: TrainConfig
    data: Dataset | TextData
    model: DFAModel
    optimizer: torch.optim.Optimizer
    run: RunFile
    report: list[str]
    lock: RunLock | None = None
    tensorboard: Any = None  # an optodfa.tensorboard_log.TensorBoardLog mirroring the run file, or None


def utc_now() -> str:
    """The current time, ISO 8601 in UTC with a ``Z`` (e.g. ``2026-12-01T22:30:05.123Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the optodfa sources in use (``-dirty`` appended if tracked files changed), or ``None``
    when they are not a git checkout (e.g. an installed wheel) or git is missing."""
    folder = Path(optodfa.__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=False)

    try:
        # Only if this very package is tracked: a wheel installed in a venv inside some checkout is not.
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def versions() -> dict[str, str | None]:
    """Versions of what a run depends on: optodfa and its git commit, torch and the CUDA it was built with
    (``None``: a CPU build), numpy, h5py, Python and the platform."""
    return {"optodfa": optodfa.__version__, "git_commit": source_commit(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "numpy": np.__version__, "h5py": h5py.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _refuse_existing(out: str | Path) -> None:
    if Path(out).exists():
        raise RunFileError(f"run file {str(out)!r} already exists; overwrite it with force=True (optodfa train "
                           f"--force) or continue it with resume() (optodfa train --resume {out})")


def build_session(config: TrainConfig, out: str | Path, *, run: RunFile | None = None, force: bool = False,
                  lock: RunLock | None = None) -> Session:
    """Load data, build model and projector, then open the run file: every bad input fails before a file exists.

    A new run (``run`` is ``None``) refuses an existing ``out`` unless ``force``, and takes the writer's lock of
    ``out`` just before creating it (so a refused input leaves nothing behind); a resumed ``run`` comes with the
    ``lock`` its caller took before reading it.
    """
    if run is None:
        check_writable(out)  # before the data load, which can take seconds; RunFile.create writes it at the end
        if not force:
            _refuse_existing(out)
    data = load_training_data(config)
    device = torch.device(config.torch_device)
    torch.manual_seed(derive_seed(config.seed, 0))
    token = {"heads": config.heads} if config.model in TOKEN_MODELS else {}
    network = build_model(config.model, data.input_shape, config.hidden, data.num_classes,
                          activation=config.activation, bias=config.bias, **token).to(device)
    model, report = wrap_network(config, network, data)
    optimizer = make_optimizer(config, model)
    text = data.describe() if isinstance(data, TextData) else None
    recorded = None if run is None else run.attrs.get("text", {}).get("sha256")
    if text is not None and run is not None and recorded != text["sha256"]:
        raise ValueError(f"the text of {str(out)!r} has changed since the run started (SHA-256 "
                         f"{recorded} then, {text['sha256']} now, read from "
                         f"{data.source}); resuming needs the same text")
    if run is None:
        lock = RunLock(out).acquire()
        try:
            if not force:
                _refuse_existing(out)  # again, under the lock: another run may have created it meanwhile
            run = RunFile.create(out, {
                "method": config.method, "device": config.device, "dataset": config.dataset,
                "seed": config.seed, "feedback_seed": config.feedback_seed, "config": config.to_dict(),
                "versions": versions(), "device_description": model.projector.describe(),
                "model": model.describe(), "data_source": data.source, "status": "running",
                "command": list(sys.argv), "started_utc": utc_now(), **({"text": text} if text else {})})
        except BaseException:
            lock.release()
            raise
    return Session(config, data, model, optimizer, run, report, lock)


def load_training_data(config: TrainConfig) -> Dataset | TextData:
    """The data set a run of ``config`` trains on, label noise included (the labels its steps saw); for a
    transformer, the text's windows (:func:`optodfa.text_data.load_text`)."""
    if config.model in TOKEN_MODELS:
        return load_text(config.dataset, context=config.context, text_file=config.text_file, limit=config.limit)
    data = load_dataset(config.dataset, root=config.data_root, download=config.download, limit=config.limit,
                        input_size=config.input_size, flatten=config.model in ("mlp", "residual"))
    if config.label_noise > 0:
        # The training labels' seed is the one used before test noise existed: same seed, same training labels.
        data = data.with_label_noise(config.label_noise, seed=derive_seed(config.seed, 3),
                                     test=config.label_noise_test)
    return data


def wrap_network(config: TrainConfig, network: nn.Module, data: Dataset | TextData) -> tuple[DFAModel, list[str]]:
    """The DFA model of ``network``: :func:`convert` for an ``nn.Sequential``, :meth:`DFAModel.from_module` for a
    module with its own feedback points (``model = "residual"`` or ``"transformer"``, whose last layer is
    ``head``; the transformer's error is projected token by token)."""
    input_shape = (int(np.prod(data.input_shape)),) if data.x_train.ndim == 2 else tuple(data.input_shape)
    settings = dict(projector=config.device, feedback_seed=config.feedback_seed, profile=config.profile,
                    overrides=config.device_overrides(), noise_seed=config.noise_seed,
                    feedback_scale=config.feedback_scale, mode=config.method, on_nonfinite=config.on_nonfinite)
    if isinstance(network, nn.Sequential):
        return convert(network, input_shape, **settings)
    parameter = next(network.parameters())
    token_dims = int(config.model in TOKEN_MODELS)
    dtype = torch.int64 if token_dims else parameter.dtype  # a token model reads token ids
    example = torch.zeros(1, *input_shape, dtype=dtype, device=parameter.device)
    model = DFAModel.from_module(network, example, output_layer=getattr(network, "head", None),
                                 token_dims=token_dims, **settings)
    return model, list(model.report)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # "sgd-plain" stores momentum 0 (TrainConfig), so one call serves both SGD presets.
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> tuple[float, float]:
    """Accuracy in [0, 1] and mean cross-entropy (nats) of ``model`` on ``(x, y)``, under ``torch.no_grad``; for
    a token model (``(n, T, d)`` output, ``(n, T)`` targets) both are per token."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            out = model(xb)
            loss += float(cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(-1) == yb).sum())
    model.train(was_training)
    return correct / y.numel(), loss / y.numel()


def train(config: TrainConfig, out: str | Path, *, force: bool = False, progress: bool = True,
          stop_after_steps: int | None = None, log: Callable[[str], None] = print,
          tensorboard: str | Path | None = None) -> Path:
    """Train from scratch; write the run file ``out`` as training goes. Returns its path.

    Args:
        force: overwrite ``out`` if it exists (without it, an existing file is refused).
        stop_after_steps: end the process-level run early *without* a final flush, exactly as a kill would (for
            testing resume).
        tensorboard: a folder that receives every scalar of the run file as TensorBoard events.

    Raises:
        RunFileError: ``out`` exists (and not ``force``), is locked by another writer, or cannot be written.
        Exception: whatever stopped training; the run file then records it (status ``failed``).
    """
    session = build_session(config, out, force=force)
    try:
        session.tensorboard = _tensorboard(tensorboard, session.run)
        for line in session.report:
            log(line)
    except BaseException:
        if session.lock is not None:
            session.lock.release()
        raise
    _run(session, None, progress=progress, stop_after_steps=stop_after_steps, log=log)
    return session.run.path


def resume(path: str | Path, *, progress: bool = True, stop_after_steps: int | None = None,
           log: Callable[[str], None] = print, tensorboard: str | Path | None = None) -> Path:
    """Continue the run in ``path`` from its last checkpoint (or from the start if it has none); a failed run
    continues from its last checkpoint too."""
    if not Path(path).exists():
        raise RunFileError(f"run file {str(path)!r} does not exist")
    lock = RunLock(path).acquire()
    try:
        run = RunFile.load(path)
        if "config" not in run.attrs:
            raise RunFileError(f"{str(path)!r} is not an optodfa run file (no 'config' attribute)")
        config = TrainConfig.from_dict(run.attrs["config"])
        if run.attrs.get("status") == "completed":
            lock.release()
            log(f"{path} is already completed; nothing to resume")
            return run.path
        session = build_session(config, path, run=run, lock=lock)
        start = None
        if run.checkpoint is not None:
            state, attrs = run.checkpoint
            start = copy_tree(state)  # restored objects may keep these tensors: the kept checkpoint must not change
            run.truncate(attrs["series_lengths"])
            log(f"resuming {path} at epoch {start['epoch']}, batch {start['batch']} (step {start['step']})")
        else:
            run.truncate({})
        if run.attrs.get("status") == "failed":
            run.attrs.setdefault("failures", []).append(
                {name: run.attrs.pop(name, None) for name in ("error", "error_type", "error_step", "ended_utc")})
        run.attrs["status"] = "running"
        run.attrs.setdefault("resumed_utc", []).append(utc_now())
        session.tensorboard = _tensorboard(tensorboard, run)
    except BaseException:
        lock.release()
        raise
    _run(session, start, progress=progress, stop_after_steps=stop_after_steps, log=log)
    return run.path


def _run(session: Session, start: dict[str, Any] | None, *, progress: bool, stop_after_steps: int | None,
         log: Callable[[str], None]) -> None:
    """The loop, recording in the run file whatever raises out of it; the lock is released in any case."""
    try:
        with StopOnSignals() as stop:  # SIGINT/SIGTERM/SIGHUP: checkpoint at the next step, raise Interrupted
            _loop(session, start=start, progress=progress, stop_after_steps=stop_after_steps, log=log, stop=stop)
    except Exception as exc:  # Interrupted is a KeyboardInterrupt: a stop on request is not a failure
        _record_failure(session, exc)
        raise
    finally:
        _close_tensorboard(session)
        if session.lock is not None:
            session.lock.release()


def _record_failure(session: Session, exc: Exception) -> None:
    """Write ``status = "failed"``, the error and its step, keeping the file as it was at its last checkpoint."""
    run = session.run
    run.truncate(run.checkpoint[1]["series_lengths"] if run.checkpoint is not None else {})
    truncate_snapshots(run.trees, run.checkpoint[1]["step"] if run.checkpoint is not None else 0)
    run.attrs.update(status="failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                     error_step=session.model.step, ended_utc=utc_now())
    try:
        run.flush()
    except RunFileError as flush_error:
        note = f"the failure could not be recorded in {str(run.path)!r}: {flush_error}"
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(note)


def _tensorboard(folder: str | Path | None, run: RunFile) -> Any:
    if folder is None:
        return None
    from optodfa.tensorboard_log import TensorBoardLog

    return TensorBoardLog(folder, written=run.lengths())  # a resumed run's events hold its checkpoint already


def _close_tensorboard(session: Session) -> None:
    if session.tensorboard is not None:
        session.tensorboard.close()


def _checkpoint(session: Session, epoch: int, batch: int, loss_sum: float, loss_count: int) -> None:
    """Keep the whole training state as the run file's checkpoint and flush the file."""
    model, run = session.model, session.run
    state = {"epoch": epoch, "batch": batch, "step": model.step, "skipped": model.skipped_batches,
             "loss_sum": loss_sum, "loss_count": loss_count, "model": model.network.state_dict(),
             "optimizer": session.optimizer.state_dict(), "projector": model.projector.state_dict(),
             "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    run.set_checkpoint(state, {"epoch": epoch, "batch": batch, "step": model.step, "series_lengths": run.lengths()})
    run.flush()
    if session.tensorboard is not None:
        session.tensorboard.sync(run)


def _restore(session: Session, state: dict[str, Any]) -> None:
    model = session.model
    model.network.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    model.projector.load_state_dict(state["projector"])
    model.step, model.skipped_batches = state["step"], state["skipped"]
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _loop(session: Session, *, start: dict[str, Any] | None, progress: bool, stop_after_steps: int | None,
          log: Callable[[str], None], stop: StopOnSignals | None = None) -> None:
    config, data, model, optimizer, run = (session.config, session.data, session.model, session.optimizer,
                                           session.run)
    device = next(model.parameters()).device
    y_train = data.y_train  # with label noise already (build_session)
    n_train = len(data.x_train)
    batches = -(-n_train // config.batch_size)
    first_epoch, first_batch, loss_sum, loss_count = 0, 0, 0.0, 0
    if start is not None:
        _restore(session, start)
        first_epoch, first_batch = start["epoch"], start["batch"]
        loss_sum, loss_count = start["loss_sum"], start["loss_count"]
        truncate_snapshots(run.trees, start["step"])  # taken after the checkpoint: they are taken again
    else:
        record_initial(run.trees, layer_weights(model))
    steps_this_process = 0
    model.train()

    for epoch in range(first_epoch, config.epochs):
        started = time.perf_counter()
        order = torch.randperm(n_train, generator=torch_generator(config.seed, 2, epoch))
        bar = tqdm(range(first_batch, batches), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False, unit="batch")
        for batch in bar:
            if stop is not None and stop.requested:  # a step boundary: the state is that of a checkpoint here
                bar.close()
                _checkpoint(session, epoch, batch, loss_sum, loss_count)
                raise stop.interrupted(model.step, run.path)
            index = order[batch * config.batch_size:(batch + 1) * config.batch_size]
            x, y = data.x_train[index].to(device), y_train[index].to(device)

            # Alignment is measured on the batch about to be trained, before the update, with the same weights.
            if _alignment_due(config, model.step):
                _record_alignment(run, model, x, y)
                if config.alignment_schedule == "log":
                    record_snapshot(run.trees, model.step, layer_weights(model))

            optimizer.zero_grad(set_to_none=True)
            loss = cross_entropy(model(x), y, reduction=config.loss_reduction)
            loss.backward()
            # The recorded training loss is a per-sample (per-token) mean whatever the reduction, comparable across
            # runs.
            sample_loss = float(loss.detach()) / (y.numel() if config.loss_reduction == "sum" else 1)
            if model.last_batch_skipped:
                optimizer.zero_grad(set_to_none=True)
            else:
                optimizer.step()
                loss_sum += sample_loss
                loss_count += 1
            if progress:
                bar.set_postfix(loss=f"{sample_loss:.4f}")

            steps_this_process += 1
            if stop_after_steps is not None and steps_this_process >= stop_after_steps:
                bar.close()
                return  # as if killed: nothing after the last flush reaches the file
            if config.checkpoint_every and model.step % config.checkpoint_every == 0 and batch + 1 < batches:
                _checkpoint(session, epoch, batch + 1, loss_sum, loss_count)
        bar.close()
        first_batch = 0

        accuracy, test_loss = evaluate(model, data.x_test, data.y_test)
        run.append("metrics/test_accuracy", accuracy)
        run.append("metrics/test_loss", test_loss)
        run.append("metrics/train_loss", loss_sum / max(loss_count, 1))
        run.append("metrics/step", model.step)
        run.append("metrics/epoch_seconds", time.perf_counter() - started)
        run.append("metrics/skipped_batches", model.skipped_batches)
        counters = model.projector.counters()
        for name in DEVICE_SERIES:
            run.append(f"device/{name}", getattr(counters, name))
        loss_sum, loss_count = 0.0, 0
        if isinstance(data, TextData):
            log(f"epoch {epoch + 1}/{config.epochs}: held-out loss {test_loss:.4f} nats/token, token accuracy "
                f"{accuracy:.4f}, train loss {run.series['metrics/train_loss'][-1]:.4f}")
        else:
            log(f"epoch {epoch + 1}/{config.epochs}: test accuracy {accuracy:.4f}, "
                f"train loss {run.series['metrics/train_loss'][-1]:.4f}")
        if epoch + 1 == config.epochs:
            record_final(run.trees, layer_weights(model))
            run.attrs["status"] = "completed"
            run.attrs["ended_utc"] = utc_now()
        _checkpoint(session, epoch + 1, 0, 0.0, 0)
    if stop is not None and stop.requested:  # arrived after the last step: the file is complete, still say so
        raise stop.interrupted(model.step, run.path)


def _alignment_due(config: TrainConfig, step: int) -> bool:
    """Whether alignment (and, on the log schedule, a weight snapshot) is taken before the update of ``step``."""
    if config.alignment_schedule == "log":
        return on_log_grid(step, config.alignment_per_decade)
    return bool(config.alignment_every) and step % config.alignment_every == 0


def _record_alignment(run: RunFile, model: DFAModel, x: torch.Tensor, y: torch.Tensor) -> None:
    # Effective, ideal and device views of the alignment, and the device's fidelity (optodfa.study_metrics).
    record_alignment(run, model, x, y)

