"""Devices that fail safely: bounded retries, a timeout on a hung ``acquire``, and a check of every acquisition.

:class:`GuardedDevice` wraps any raw :class:`~optodfa.device.OpticalDevice`; :class:`~optodfa.optical.OpticalProjector`
puts every device it is given behind one, so a driver gets this without writing any of it.

* **Transient errors** — the exception classes a driver lists in its ``transient_errors`` attribute, plus
  ``OSError`` and ``TimeoutError`` — are retried up to ``attempts`` times in all, waiting ``backoff_s``,
  ``backoff_s · factor``, ... between tries. Each error counts as a *fault*, each repeat as a *retry*
  (:class:`~optodfa.device.Counters`). Any other exception (``ValueError`` for non-binary frames, ...) passes
  through unchanged, untried again: it is the caller's mistake or a driver bug, and repeating it changes nothing.
* **Timeout** — with ``timeout_s`` set, ``acquire`` runs in a worker thread and the caller stops waiting after
  ``timeout_s`` seconds. A hung call cannot be interrupted from Python, so it is abandoned (a daemon thread; the
  device may need a power cycle) and the next call starts a fresh worker. A timeout is final, not retried: the
  abandoned call may still hold the instrument. Simulators declare ``acquire_timeout_s = None`` (nothing in a
  pure computation can hang) and run inline, with no thread hand-off.
* **Validation** — every acquisition is checked before anyone uses it: an :class:`~optodfa.device.Acquisition`,
  counts a tensor of shape ``(n, output_pixels)``, an integer dtype for a finite ``bit_depth`` (a floating one for
  unlimited bits), finite, within ``[0, 2^bits − 1]``, and ``(n,)`` finite positive intensities per count. One
  ``torch.aminmax`` pass over the counts finds range and non-finite values together (NaN propagates to the minimum
  and maximum, inf shows in them), so the check costs one read of the counts and one host synchronisation.

Every failure is a :class:`DeviceError` naming the driver, the call and what was wrong, so a bad reading is never
mistaken for a bad error batch and nothing non-finite reaches the weights.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from optodfa.device import Acquisition, Counters, OpticalDevice
from optodfa.validation import check_int, check_real

__all__ = ["DEFAULT_TIMEOUT_S", "DeviceError", "FaultPolicy", "GuardedDevice", "check_acquisition"]

DEFAULT_TIMEOUT_S = 60.0
"""Timeout of ``acquire`` for a driver that declares none (a real instrument answers a frame batch in seconds)."""

T = TypeVar("T")


class DeviceError(OSError):
    """A device fault: a final error, a timeout, or an invalid acquisition.

    An ``OSError`` because it is one in kind (the instrument, not the caller's data, went wrong), so the command
    line reports it in one line like a missing file. Attributes name the ``driver``, the ``call`` and the
    ``problem``.
    """

    def __init__(self, driver: str, call: str, problem: str) -> None:
        super().__init__(f"device {driver!r}: {call} failed: {problem}")
        self.driver, self.call, self.problem = driver, call, problem

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.driver, self.call, self.problem)


@dataclasses.dataclass(frozen=True)
class FaultPolicy:
    """How a guarded device answers faults.

    Attributes:
        attempts: tries of one call in all (1: never retry).
        backoff_s: seconds before the first retry.
        backoff_factor: factor on the wait before each further retry.
        timeout_s: seconds an ``acquire`` may take; ``None`` waits forever and runs inline; ``"device"`` (default)
            takes the driver's ``acquire_timeout_s`` attribute, or :data:`DEFAULT_TIMEOUT_S` if it has none.
    """

    attempts: int = 3
    backoff_s: float = 0.05
    backoff_factor: float = 2.0
    timeout_s: float | str | None = "device"

    def __post_init__(self) -> None:
        check_int("faults.attempts", self.attempts, low=1, high=100)
        check_real("faults.backoff", self.backoff_s, low=0.0, high=3600.0)
        check_real("faults.backoff_factor", self.backoff_factor, low=1.0, high=100.0)
        if self.timeout_s is not None and self.timeout_s != "device":
            check_real("faults.timeout", self.timeout_s, low=0.0, low_open=True)

    def resolve_timeout(self, device: object) -> float | None:
        """The timeout in seconds for ``device`` (``None``: none)."""
        if self.timeout_s != "device":
            return self.timeout_s  # type: ignore[return-value]
        declared = getattr(device, "acquire_timeout_s", DEFAULT_TIMEOUT_S)
        return None if declared is None else check_real("acquire_timeout_s", declared, low=0.0, low_open=True)

    def describe(self, device: object) -> dict[str, Any]:
        return {"attempts": self.attempts, "backoff_s": self.backoff_s, "backoff_factor": self.backoff_factor,
                "timeout_s": self.resolve_timeout(device)}


def driver_name(device: object) -> str:
    """The name a device goes by in messages: its ``name`` attribute, ``describe()["device"]``, or its class."""
    name = getattr(device, "name", None)
    if isinstance(name, str) and name:
        return name
    try:
        described = device.describe()  # type: ignore[attr-defined]
    except Exception:  # a broken describe() must not hide the fault being reported
        described = None
    if isinstance(described, dict) and isinstance(described.get("device"), str):
        return described["device"]
    return type(device).__name__


def check_acquisition(result: object, *, frames: int, output_pixels: int, bit_depth: int | None,
                      driver: str) -> Acquisition:
    """Return ``result`` if it is a valid acquisition of ``frames`` frames, else raise :class:`DeviceError`."""
    def fail(problem: str) -> DeviceError:
        return DeviceError(driver, "acquire", problem)

    if not isinstance(result, Acquisition):
        raise fail(f"returned {type(result).__name__}, expected an optodfa.device.Acquisition")
    counts, per_count = result.counts, result.intensity_per_count
    if not isinstance(counts, torch.Tensor):
        raise fail(f"counts must be a torch.Tensor, got {type(counts).__name__}")
    if tuple(counts.shape) != (frames, output_pixels):
        raise fail(f"counts have shape {tuple(counts.shape)}, expected ({frames}, {output_pixels}) "
                   f"(frames, output_pixels)")
    if bit_depth is not None and (counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool):
        raise fail(f"counts have dtype {counts.dtype}; a {bit_depth}-bit camera returns an integer dtype")
    if bit_depth is None and not counts.is_floating_point():
        raise fail(f"counts have dtype {counts.dtype}; a device with unlimited bits (bit_depth None) returns a "
                   f"floating dtype")
    if not isinstance(per_count, torch.Tensor) or tuple(per_count.shape) != (frames,) \
            or not per_count.is_floating_point():
        shown = (f"{tuple(per_count.shape)} {per_count.dtype}" if isinstance(per_count, torch.Tensor)
                 else type(per_count).__name__)
        raise fail(f"intensity_per_count must be a floating tensor of shape ({frames},), got {shown}")
    if not isinstance(result.dark_offset, (int, float)) or not math.isfinite(result.dark_offset):
        raise fail(f"dark_offset must be a finite number, got {result.dark_offset!r}")
    if frames == 0:
        return result
    low, high = (float(v) for v in torch.aminmax(counts))
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(counts)).sum())
        raise fail(f"counts hold {bad} non-finite value(s) (NaN or inf) out of {counts.numel()}")
    if bit_depth is not None and (low < 0 or high > 2**bit_depth - 1):
        raise fail(f"counts span [{low:g}, {high:g}], outside [0, {2**bit_depth - 1}] of a {bit_depth}-bit camera")
    scale_low, scale_high = (float(v) for v in torch.aminmax(per_count))
    if not (scale_low > 0 and math.isfinite(scale_high)):
        raise fail(f"intensity_per_count must be finite and positive, got values in [{scale_low:g}, {scale_high:g}]")
    return result


class _Worker:
    """One daemon thread running calls in turn, so that a hung call can be abandoned (never joined at exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job, box, done = self._jobs.get()
            try:
                box.append((True, job()))
            except BaseException as exc:  # handed to the caller, re-raised there
                box.append((False, exc))
            done.set()

    def call(self, job: Callable[[], T], timeout_s: float) -> tuple[bool, T | BaseException | None]:
        """``(finished, outcome)``; ``outcome`` is ``(ok, value or exception)`` when finished."""
        box: list[Any] = []
        done = threading.Event()
        self._jobs.put((job, box, done))
        if not done.wait(timeout_s):
            return False, None
        return True, box[0]


class GuardedDevice:
    """A raw optical device behind retries, a timeout and validation (see the module docstring).

    Attribute reads it does not define (``camera``, ``holographic_matrix``, ...) go to the wrapped device, so code
    written for the device keeps working; ``inner`` is the device itself.

    Args:
        device: any :class:`~optodfa.device.OpticalDevice`.
        policy: retry and timeout settings (default :class:`FaultPolicy`).
    """

    def __init__(self, device: OpticalDevice, policy: FaultPolicy | None = None) -> None:
        if isinstance(device, GuardedDevice):
            device = device.inner
        self.inner = device
        self.policy = policy if policy is not None else FaultPolicy()
        self.timeout_s = self.policy.resolve_timeout(device)
        declared = tuple(getattr(device, "transient_errors", ()))
        if not all(isinstance(kind, type) and issubclass(kind, BaseException) for kind in declared):
            raise TypeError(f"transient_errors of {type(device).__name__} must be exception classes, got "
                            f"{declared!r}")
        self.transient = (OSError, TimeoutError, *declared)
        self.driver = driver_name(device)
        self._faults = 0
        self._retries = 0
        self._worker: _Worker | None = None

    # -- the protocol ----------------------------------------------------------------------------------------------
    @property
    def input_pixels(self) -> int:
        return self.inner.input_pixels

    @property
    def output_pixels(self) -> int:
        return self.inner.output_pixels

    @property
    def bit_depth(self) -> int | None:
        return self.inner.bit_depth

    @property
    def frame_time_s(self) -> float:
        return self.inner.frame_time_s

    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """The device's ``acquire``, retried on transient errors, under the timeout, and validated."""
        result = self._call("acquire", lambda: self.inner.acquire(frames, reference=reference), self.timeout_s)
        try:
            return check_acquisition(result, frames=int(frames.shape[0]), output_pixels=self.output_pixels,
                                     bit_depth=self.bit_depth, driver=self.driver)
        except DeviceError:
            self._faults += 1
            raise

    def open(self) -> None:
        self._call("open", self.inner.open, None)

    def close(self) -> None:
        self._call("close", self.inner.close, None)

    def __enter__(self) -> GuardedDevice:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """The device's description with the fault policy added."""
        return {**self.inner.describe(), "fault_policy": self.policy.describe(self.inner)}

    def counters(self) -> Counters:
        """The device's counters, plus the faults and retries this guard saw."""
        counters = dataclasses.replace(self.inner.counters())
        counters.faults += self._faults
        counters.retries += self._retries
        return counters

    def reset_counters(self) -> None:
        self._faults = self._retries = 0
        reset = getattr(self.inner, "reset_counters", None)
        if callable(reset):
            reset()

    def state_dict(self) -> dict[str, Any]:
        """The device's own state (``None`` without a ``state_dict`` hook) and the fault counts."""
        own = getattr(self.inner, "state_dict", None)
        return {"device": own() if callable(own) else None, "faults": self._faults, "retries": self._retries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"device", "faults", "retries"}:
            state = {"device": state, "faults": 0, "retries": 0}  # saved before the guard existed: device state
        self._faults, self._retries = int(state["faults"]), int(state["retries"])
        if state["device"] is not None:
            self.inner.load_state_dict(state["device"])  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not yet set (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- internals -------------------------------------------------------------------------------------------------
    def _call(self, call: str, job: Callable[[], T], timeout_s: float | None) -> T:
        wait = self.policy.backoff_s
        for attempt in range(1, self.policy.attempts + 1):
            try:
                return self._run(call, job, timeout_s)
            except DeviceError:
                raise
            except self.transient as exc:
                self._faults += 1
                if attempt == self.policy.attempts:
                    raise DeviceError(self.driver, call, f"{type(exc).__name__}: {exc} (after {attempt} "
                                      f"attempt(s); faults.attempts = {self.policy.attempts})") from exc
                self._retries += 1
                time.sleep(wait)
                wait *= self.policy.backoff_factor
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _run(self, call: str, job: Callable[[], T], timeout_s: float | None) -> T:
        if timeout_s is None:
            return job()
        if self._worker is None:
            self._worker = _Worker(f"optodfa-{self.driver}-acquire")
        finished, outcome = self._worker.call(job, timeout_s)
        if not finished:
            self._faults += 1
            self._worker = None  # the hung thread is abandoned; the next call gets a fresh one
            raise DeviceError(self.driver, call, f"no answer within {timeout_s:g} s (faults.timeout); the call "
                              f"was abandoned and the instrument may need a reset")
        ok, value = outcome  # type: ignore[misc]
        if not ok:
            raise value
        return value
