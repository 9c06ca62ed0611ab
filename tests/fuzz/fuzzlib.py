"""The fuzzing harness: budgets, the per-example time limit, and the rule every entry point is held to.

Rule: a public entry point given any input either *accepts* it, and then its result has the documented shape and
holds finite numbers, or *rejects* it with one of the documented error types (:mod:`optodfa.errors`) raised by
optodfa's own code, with a message. Anything else fails the test: another exception, a documented type leaking
from inside torch/numpy/h5py (nobody checked the input first), a result of the wrong shape or with NaN/inf, or an
example running past its time limit (a hang).

Two budgets: ``make test`` runs a small derandomised subset (fixed examples, a few per target); ``make fuzz``
(``OPTODFA_FUZZ=full``) runs the full budget, at least 10^4 examples in all, with random seeds and a per-example
deadline, and prints its counts by outcome.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import faulthandler
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import torch
from hypothesis import HealthCheck

import optodfa

FULL = os.environ.get("OPTODFA_FUZZ", "") == "full"
OUTCOMES: collections.Counter[tuple[str, str]] = collections.Counter()
PACKAGE = str(Path(optodfa.__file__).resolve().parent)
# Seconds an example may take before it counts as a hang (a generous bound: the machine is shared).
TIME_LIMIT_S = 30.0
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError)


class Hang(Exception):
    """An example ran past :data:`TIME_LIMIT_S`."""


def budget(full: int, smoke: int) -> hypothesis.settings:
    """Hypothesis settings: ``full`` examples under ``make fuzz``, ``smoke`` derandomised ones otherwise."""
    return hypothesis.settings(
        max_examples=full if FULL else smoke, derandomize=not FULL, database=None, print_blob=FULL,
        deadline=datetime.timedelta(seconds=10) if FULL else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT_S) -> Iterator[None]:
    """Raise :class:`Hang` in Python code after ``seconds``; kill the process with tracebacks (a hang inside C code
    that never returns to Python) after three times as long."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"example ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(3 * seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def raised_inside_optodfa(exc: BaseException) -> bool:
    """Whether the innermost frame that raised ``exc`` is optodfa's own code (a deliberate check)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(PACKAGE)


def attempt(target: str, call: Callable[[], Any], errors: tuple[type[BaseException], ...] = INPUT_ERRORS,
            *, anywhere: tuple[type[BaseException], ...] = ()) -> tuple[bool, Any]:
    """Run ``call``; return ``(True, result)`` if it accepted, ``(False, exception)`` if it rejected properly.

    ``errors`` are the documented types for this entry point; they must come from optodfa's code, with a message.
    ``anywhere`` are types accepted wherever they are raised (e.g. a file reader's own error type that wraps a
    library's). Any other outcome raises ``AssertionError`` (or lets the unexpected exception through).
    """
    try:
        with time_limit():
            result = call()
    except errors as exc:
        if not isinstance(exc, anywhere) and not raised_inside_optodfa(exc):
            raise AssertionError(f"{target}: {type(exc).__name__} leaked from outside optodfa (no check at the "
                                 f"boundary): {exc}") from exc
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        assert message.strip(), f"{target}: {type(exc).__name__} without a message"
        OUTCOMES[target, f"rejected {type(exc).__name__}"] += 1
        return False, exc
    OUTCOMES[target, "accepted"] += 1
    return True, result


def check_tensor(target: str, value: Any, shape: tuple[int, ...], *, finite: bool = True) -> None:
    """An accepted result: a tensor of ``shape`` holding finite numbers."""
    assert isinstance(value, torch.Tensor), f"{target}: result is {type(value).__name__}, not a tensor"
    assert tuple(value.shape) == shape, f"{target}: result shape {tuple(value.shape)}, expected {shape}"
    if finite and (value.is_floating_point() or value.is_complex()):
        assert bool(torch.isfinite(value).all()), f"{target}: accepted input gave a non-finite result"


def summary() -> list[str]:
    """Counts by target and outcome, and the totals."""
    if not OUTCOMES:
        return []
    lines = [f"{'target':<22} {'outcome':<34} {'examples':>8}"]
    by_outcome: collections.Counter[str] = collections.Counter()
    for (target, outcome), count in sorted(OUTCOMES.items()):
        lines.append(f"{target:<22} {outcome:<34} {count:>8}")
        by_outcome["accepted" if outcome == "accepted" else outcome] += count
    total = sum(OUTCOMES.values())
    lines.append(f"{'all targets':<22} {'(total)':<34} {total:>8}")
    for outcome, count in sorted(by_outcome.items()):
        lines.append(f"{'all targets':<22} {outcome:<34} {count:>8}")
    return lines
