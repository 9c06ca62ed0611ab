"""The conformance kit: every device, built-in or plug-in, run through the same protocol checks.

Each check is a small function taking a :class:`Subject` (how to build the device under test) and either returning
(pass), raising :class:`NotApplicable` with the reason (the device lacks what the check is about: no raw optical
device, no effective matrix, a hardware driver that is not bit-reproducible), or raising ``AssertionError`` or any
other exception (fail, with the message as the reason). :func:`run_checks` runs them all and
:func:`format_table` prints the result; ``optodfa devices check NAME`` does both, and :mod:`optodfa.testing` turns
the same checks into pytest tests for a driver's own suite.

Thresholds are those every shipped device meets with its default settings and are stated in each check; a device
that cannot meet one is either broken or needs different settings (``--profile``, ``--set``).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from optodfa.device import Counters, FeedbackError, NonFiniteError, OpticalDevice, Projector

__all__ = ["CHECKS", "CheckResult", "NotApplicable", "Subject", "check_device", "format_table", "run_checks"]

D_IN, D_OUT = 5, 37
"""Error dimension and feedback width the kit builds devices for (small: the kit runs in seconds)."""

MIN_COSINE = 0.8
"""Cosine a projection must keep with its reference (the exact ``B_eff e``, or a repeat of itself)."""


class NotApplicable(Exception):
    """The check does not apply to this device; the message says why."""


@dataclasses.dataclass(frozen=True)
class Subject:
    """The device under test: a registered name and the settings to build it with.

    Attributes:
        name: registered device name.
        profile: profile name or path (``None``: the device's default).
        overrides: settings over the profile.
    """

    name: str
    profile: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, d: int = D_IN, big_d: int = D_OUT, **spec: Any) -> Projector:
        from optodfa.registry import build_projector

        return build_projector(self.name, d, big_d, profile=self.profile, overrides=dict(self.overrides), **spec)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``status`` is ``"pass"``, ``"fail"`` or ``"n/a"``; ``reason`` says why (not for pass)."""

    check: str
    status: str
    reason: str = ""


def errors(n: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32, d: int = D_IN) -> torch.Tensor:
    """``(n, d)`` standard Gaussian errors from ``seed``."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def _reproducible(projector: Projector) -> bool:
    """Whether the device promises bit-identical outputs for equal seeds (``describe()["reproducible"]``)."""
    return projector.describe().get("reproducible", True) is not False


def _raw_device(projector: Projector) -> OpticalDevice:
    device = getattr(projector, "device", None)
    if not isinstance(device, OpticalDevice):
        raise NotApplicable(f"{type(projector).__name__} has no raw optical device")
    return device


# -- the checks ---------------------------------------------------------------------------------------------------
def check_shapes_and_dtypes(subject: Subject) -> None:
    """Declared sizes; (n, D) outputs in the input's dtype and torch device, finite; effective matrix (D, d)."""
    projector = subject.build()
    assert (projector.in_features, projector.out_features) == (D_IN, D_OUT), \
        f"in/out_features are {(projector.in_features, projector.out_features)}, built for {(D_IN, D_OUT)}"
    for dtype in (torch.float32, torch.float64):
        out = projector.project(errors(dtype=dtype))
        assert isinstance(out, torch.Tensor), f"project returned {type(out).__name__}, not a tensor"
        assert tuple(out.shape) == (8, D_OUT), f"project of (8, {D_IN}) gave shape {tuple(out.shape)}"
        assert out.dtype == dtype, f"project of {dtype} errors returned {out.dtype}"
        assert out.device.type == "cpu", f"project of CPU errors returned a tensor on {out.device}"
        assert bool(torch.isfinite(out).all()), "project returned non-finite values"
    matrix = projector.effective_matrix()
    assert matrix is None or tuple(matrix.shape) == (D_OUT, D_IN), \
        f"effective_matrix() has shape {tuple(matrix.shape)}, expected {(D_OUT, D_IN)}"


def check_effective_matrix(subject: Subject) -> None:
    """The projection follows the effective matrix (cosine >= 0.8) and its entries have unit mean square."""
    projector = subject.build()
    matrix = projector.effective_matrix()
    if matrix is None:
        raise NotApplicable("no effective matrix (effective_matrix() is None)")
    e = errors(64, seed=3)
    cosine = _cosine(projector.project(e), e @ matrix.T.to(e.dtype))
    assert cosine > MIN_COSINE, f"cosine with e @ B_eff^T is {cosine:.3f}, below {MIN_COSINE}"
    # D*d = 185 squared entries of a possibly heavy-tailed (speckle-weighted) matrix: 0.5 is over 4 standard errors.
    mean_square = float(matrix.double().pow(2).mean())
    assert abs(mean_square - 1.0) < 0.5, f"mean square entry of B_eff is {mean_square:.3f}, expected about 1"


def check_binary_input(subject: Subject) -> None:
    """The raw device takes binary frames, returns (n, output_pixels) counts of its declared dtype, rejects others."""
    device = _raw_device(subject.build())
    frames = torch.zeros(2, device.input_pixels)
    counts = device.acquire(frames).counts
    assert tuple(counts.shape) == (2, device.output_pixels), \
        f"acquire of 2 frames gave counts of shape {tuple(counts.shape)}"
    integer = not (counts.is_floating_point() or counts.is_complex())
    assert integer == (device.bit_depth is not None), \
        f"counts dtype {counts.dtype} does not match bit_depth {device.bit_depth}"
    frames[0, 0] = 0.5
    try:
        device.acquire(frames)
    except ValueError as exc:
        assert "binary" in str(exc), f"non-binary frame rejected, but the message does not say so: {exc}"
    else:
        raise AssertionError("a frame holding 0.5 was accepted; acquire must raise ValueError for non-binary frames")


def check_lifecycle(subject: Subject) -> None:
    """open/close and the context manager (``with`` returns the projector, projects inside, closes after)."""
    projector = subject.build()
    projector.open()
    assert tuple(projector.project(errors()).shape) == (8, D_OUT)
    projector.close()
    with subject.build() as entered:
        assert isinstance(entered, Projector), f"__enter__ returned {type(entered).__name__}, not the projector"
        assert tuple(entered.project(errors()).shape) == (8, D_OUT)


def check_repeatability(subject: Subject) -> None:
    """Two projections of one batch agree within the device's noise (cosine >= 0.8)."""
    projector = subject.build()
    e = errors(32, seed=4)
    first, second = projector.project(e), projector.project(e)
    cosine = _cosine(first, second)
    assert cosine > MIN_COSINE, f"two projections of one batch have cosine {cosine:.3f}, below {MIN_COSINE}"


def check_seeds(subject: Subject) -> None:
    """Equal seeds give bit-identical projections; another feedback seed gives another projection."""
    a, b = subject.build(feedback_seed=4), subject.build(feedback_seed=4)
    if not _reproducible(a):
        raise NotApplicable("the device declares describe()['reproducible'] = False (real hardware)")
    for seed in range(3):
        assert torch.equal(a.project(errors(seed=seed)), b.project(errors(seed=seed))), \
            f"two devices built with feedback seed 4 differ on batch {seed}"
    other = subject.build(feedback_seed=5)
    assert not torch.equal(subject.build(feedback_seed=4).project(errors()), other.project(errors())), \
        "feedback seeds 4 and 5 give the same projection"


def check_linearity(subject: Subject) -> None:
    """A linear readout is linear: the reading of two disjoint planes together is the sum of their readings, to
    within the camera noise (measured from 8 repeats) or 1% of the signal power; a projector without a readout:
    ``P(e1 + e2)`` against ``P(e1) + P(e2)``, cosine >= 0.9."""
    projector = subject.build()
    readout = getattr(projector, "readout", None)
    if readout is None:
        if projector.effective_matrix() is None:
            raise NotApplicable("neither a readout mode nor an effective matrix says the device is linear")
        e1, e2 = errors(16, seed=5), errors(16, seed=6)
        cosine = _cosine(projector.project(e1 + e2), projector.project(e1) + projector.project(e2))
        assert cosine > 0.9, f"P(e1 + e2) vs P(e1) + P(e2): cosine {cosine:.4f}, below 0.9"
        return
    if not readout.linear:
        raise NotApplicable(f"readout {readout.name!r} is not linear")
    device, repeats = projector.device, 8  # type: ignore[attr-defined]
    plus = torch.zeros(3, device.input_pixels, dtype=torch.bool)
    plus[0, :2], plus[1, 2:D_IN] = True, True
    plus[2] = plus[0] | plus[1]
    plus = plus.repeat(repeats, 1)  # rows: plane 0, 1, 2, plane 0, 1, 2, ...
    raw = readout.measure(device, plus, torch.zeros_like(plus)).double().view(repeats, 3, -1)
    mean, noise = raw.mean(dim=0), float(raw.var(dim=0).mean())  # noise: variance of one reading
    residual = float((mean[2] - mean[0] - mean[1]).square().mean())
    # A linear device leaves only noise: 3 means of `repeats` readings, variance 3 noise / repeats; a factor 2
    # covers the scatter of a mean over 37 pixels (relative standard error about 0.23).
    allowed = 2.0 * 3.0 * noise / repeats + 0.01 * float(mean[2].square().mean())
    assert residual <= allowed, (f"reading of a sum minus the sum of readings has mean square {residual:.4g}, above "
                                 f"{allowed:.4g} (twice the noise of the means plus 1% of the signal power)")


def check_counters(subject: Subject) -> None:
    """Calls, projections and MACs add up; frames, hardware seconds and joules are consistent; reset zeroes."""
    projector = subject.build()
    projector.project(errors(8))
    projector.project(errors(3))
    counters = projector.counters()
    assert isinstance(counters, Counters), f"counters() returned {type(counters).__name__}"
    got = (counters.calls, counters.projections, counters.macs)
    assert got == (2, 11, 11 * D_IN * D_OUT), f"(calls, projections, macs) = {got}, expected (2, 11, " \
                                               f"{11 * D_IN * D_OUT})"
    for field in ("frames", "hardware_seconds", "energy_joules", "saturated_pixels", "faults", "retries"):
        assert getattr(counters, field) >= 0, f"counters.{field} = {getattr(counters, field)} is negative"
    if counters.frames > 0:
        assert counters.hardware_seconds > 0, f"{counters.frames} frames took 0 hardware seconds"
    assert counters.faults == 0, f"a healthy device reported {counters.faults} fault(s)"
    projector.reset_counters()
    assert projector.counters() == Counters(), f"after reset_counters(): {projector.counters()}"


def check_describe(subject: Subject) -> None:
    """describe() is JSON-serialisable plain data naming the class, the sizes and the device."""
    projector = subject.build()
    projector.project(errors())
    description = projector.describe()
    assert isinstance(description, dict), f"describe() returned {type(description).__name__}, not a dict"
    missing = [key for key in ("class", "in_features", "out_features", "device") if key not in description]
    assert not missing, f"describe() lacks {', '.join(missing)}"
    assert (description["in_features"], description["out_features"]) == (D_IN, D_OUT)
    try:
        json.dumps(description)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"describe() is not JSON-serialisable: {exc}") from None


def check_state_round_trip(subject: Subject) -> None:
    """state_dict() into a fresh device continues bit-identically (reproducible devices) with equal counters."""
    projector = subject.build()
    projector.project(errors(seed=1))
    state = projector.state_dict()
    expected = [projector.project(errors(seed=s)) for s in (2, 3)]
    fresh = subject.build()
    fresh.load_state_dict(state)
    if _reproducible(projector):
        for want, seed in zip(expected, (2, 3), strict=True):
            assert torch.equal(fresh.project(errors(seed=seed)), want), \
                f"the restored device differs from the original on batch {seed}"
    else:
        for seed in (2, 3):
            fresh.project(errors(seed=seed))
    assert fresh.counters() == projector.counters(), f"counters after restore {fresh.counters()} differ from " \
                                                     f"{projector.counters()}"


def check_calibration_round_trip(subject: Subject) -> None:
    """calibrate() the raw device, save, load: the same record, and its matrix follows the effective one."""
    from optodfa.calibration import Calibration, calibrate

    projector = subject.build()
    device = _raw_device(projector)
    calibration = calibrate(device, D_IN, D_OUT, probes=64, repeats=4, exposure_points=3, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = calibration.save(Path(folder) / "calibration.h5")
        loaded = Calibration.load(path)
    assert torch.equal(loaded.raw_matrix, calibration.raw_matrix), "the loaded calibration matrix differs"
    assert loaded.describe() == calibration.describe(), "the loaded calibration describes itself differently"
    truth = projector.effective_matrix()
    if truth is not None:
        cosine = _cosine(loaded.matrix(), truth)
        assert cosine > 0.9, f"calibrated matrix vs effective matrix: cosine {cosine:.3f}, below 0.9"


_BAD_BATCHES: tuple[tuple[Callable[[], Any], type[Exception], str], ...] = (
    (lambda: torch.zeros(4, D_IN + 1), FeedbackError, f"shape (n, {D_IN}), got (4, {D_IN + 1})"),
    (lambda: torch.zeros(D_IN), FeedbackError, f"shape (n, {D_IN}), got ({D_IN},)"),
    (lambda: torch.zeros(4, D_IN, dtype=torch.int64), FeedbackError, "must be floating point, got torch.int64"),
    (lambda: [[0.0] * D_IN], FeedbackError, "must be a torch.Tensor"),
    (lambda: torch.full((2, D_IN), float("nan")), NonFiniteError, "holds 10 non-finite value"),
)


def check_bad_input(subject: Subject) -> None:
    """Bad error batches raise FeedbackError/NonFiniteError naming what was expected; nothing is counted."""
    projector = subject.build()
    for make, kind, text in _BAD_BATCHES:
        bad = make()
        try:
            projector.project(bad)
        except kind as exc:
            assert text in str(exc), f"{kind.__name__} for a bad batch says {str(exc)!r}, expected {text!r} in it"
        except Exception as exc:
            raise AssertionError(f"a bad batch raised {type(exc).__name__}: {exc}; expected {kind.__name__}") \
                from None
        else:
            raise AssertionError(f"a bad batch ({text}) was accepted")
    assert projector.counters().calls == 0, "rejected batches were counted as calls"


CHECKS: tuple[Callable[[Subject], None], ...] = (
    check_shapes_and_dtypes, check_effective_matrix, check_binary_input, check_lifecycle, check_repeatability,
    check_seeds, check_linearity, check_counters, check_describe, check_state_round_trip,
    check_calibration_round_trip, check_bad_input,
)
"""Every check, in the order the table prints them."""


def check_name(check: Callable[[Subject], None]) -> str:
    return check.__name__.removeprefix("check_")


def run_check(check: Callable[[Subject], None], subject: Subject) -> CheckResult:
    """Run one check; exceptions become a failure with a one-line reason."""
    try:
        check(subject)
    except NotApplicable as exc:
        return CheckResult(check_name(check), "n/a", str(exc))
    except AssertionError as exc:
        return CheckResult(check_name(check), "fail", str(exc) or _where(exc))
    except Exception as exc:
        return CheckResult(check_name(check), "fail", f"{type(exc).__name__}: {exc}")
    return CheckResult(check_name(check), "pass")


def run_checks(name: str, *, profile: str | None = None, overrides: Mapping[str, Any] | None = None,
               checks: Iterable[Callable[[Subject], None]] = CHECKS) -> list[CheckResult]:
    """Run ``checks`` on device ``name`` built with ``profile`` and ``overrides``.

    Raises:
        KeyError: ``name`` is not a registered device.
        Exception: whatever building the device raises for bad settings (before any check runs).
    """
    subject = Subject(name, profile, dict(overrides or {}))
    subject.build()  # bad names and settings fail here, once, with their own message
    return [run_check(check, subject) for check in checks]


def format_table(name: str, results: list[CheckResult]) -> str:
    """A text table: one row per check, its status and the reason for a failure or n/a; a summary line."""
    width = max(len(r.check) for r in results)
    lines = [f"conformance of device {name!r}", f"{'check':<{width}}  result  reason"]
    lines += [f"{r.check:<{width}}  {r.status:<6}  {r.reason}".rstrip() for r in results]
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "n/a")}
    lines.append(f"{counts['pass']} passed, {counts['fail']} failed, {counts['n/a']} not applicable")
    return "\n".join(lines)


def check_device(name: str, *, profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> None:
    """Run every check; raise ``AssertionError`` with the table if any fails."""
    results = run_checks(name, profile=profile, overrides=overrides)
    if any(r.status == "fail" for r in results):
        raise AssertionError(format_table(name, results))


def _where(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"assertion failed at {Path(frame.filename).name}:{frame.lineno}: {frame.line}"
