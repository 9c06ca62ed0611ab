"""Any :class:`~optodfa.device.OpticalDevice` as a :class:`~optodfa.device.Projector`: encode, acquire, decode.

This is the path a real OPU driver takes: the driver implements ``acquire`` only and this class does the rest. The
projection of an error batch ``e`` (``(n, d)``) is

1. encoding: ``e ≈ s · Σ_k w_k t_k`` with ternary planes ``t_k`` (:mod:`optodfa.encoding`);
2. readout: the frames of every plane of every sample in one ``acquire`` call, combined into a raw measurement of
   each plane (:mod:`optodfa.readout`), in the device's intensity units;
3. normalisation to the unit-variance scale of the digital device (below);
4. decoding: ``s · Σ_k w_k (normalised plane)``, an estimate of ``e_q @ B_effᵀ`` with ``e_q = s t`` the quantised
   error.

Normalisation. The linear modes measure ``M t`` with ``M = 2 Re(diag(conj f) R)``, ``f = R r`` the reference field.
For a Gaussian medium ``E[M_ij²] = 2 Ī_r Ī₁``, with ``Ī_r`` the mean reference intensity and ``Ī₁`` the mean
intensity of one signal element, so ``B_eff = M / sqrt(2 Ī_r Ī₁)`` has entries of unit variance on average. With
``evening`` on, row ``i`` is first divided by ``sqrt(I_i(r))`` (the measured reference intensity at pixel ``i``,
floored at ``evening_floor · Ī_r`` so that dark reference speckle cannot blow up the noise), which makes the rows
equally strong; then ``B_eff = diag(I(r)^{-1/2}) M / sqrt(2 Ī₁)``, and for a noiseless camera its entries are exactly
i.i.d. N(0, 1) where the floor is not reached. The intensity mode has no matrix (``effective_matrix()`` is ``None``)
and is scaled per sample by :meth:`optodfa.readout.IntensityReadout.normalise`.

``Ī_r`` and ``Ī₁`` come from ``intensities`` when the caller knows them (the simulator does, exactly); otherwise the
projector measures them once, before its first projection: one reference-only frame (``I(r)`` per pixel, its mean
is ``Ī_r``) and one frame with every signal element lit (its mean over pixels divided by ``d`` estimates ``Ī₁``).
Those frames count in the device's counters like any other.

Re-calibration (``recalibrate = N`` frames, row evening only): a drifting medium changes ``I(r)`` too, so the
evening factors measured once go stale; every ``N`` device frames the projector measures ``I(r)`` again (one
reference-only frame, counted), just before the projection that comes due. ``Ī₁``/``Ī_r`` that were measured rather
than given are measured again with it. ``B e`` itself drifts whatever is re-measured: DFA never uses ``B``
digitally, so the medium the errors go through is the one the network keeps aligning with.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from optodfa.device import Counters, OpticalDevice, Projector
from optodfa.encoding import Encoding, TernaryEncoding
from optodfa.faults import FaultPolicy, GuardedDevice
from optodfa.readout import HolographicReadout, IntensityReadout, Readout
from optodfa.validation import check_int, check_real

if TYPE_CHECKING:
    from optodfa.profiles import Profile

__all__ = ["PROJECTOR_KEYS", "Intensities", "OpticalProjector"]

PROJECTOR_KEYS = ("encoding.kind", "encoding.rule", "encoding.threshold", "encoding.bits", "readout.mode",
                  "readout.evening", "readout.evening_floor", "readout.recalibrate", "faults.attempts",
                  "faults.backoff", "faults.timeout")
"""Profile keys the projector itself reads, whatever the device (:meth:`OpticalProjector.from_profile`)."""


@dataclasses.dataclass(frozen=True)
class Intensities:
    """Mean intensities that set the scale, in the device's intensity units.

    Attributes:
        element: ``Ī₁``, mean intensity at a pixel of one lit signal element.
        reference: ``Ī_r``, mean intensity at a pixel of the reference pattern alone.
    """

    element: float
    reference: float

    def __post_init__(self) -> None:
        check_real("element intensity", self.element, low=0.0, low_open=True)
        check_real("reference intensity", self.reference, low=0.0, low_open=True)


class OpticalProjector(Projector):
    """Projects errors through an optical device with an encoding and a readout mode.

    Args:
        device: the raw device; its first ``in_features`` input elements and first ``out_features`` camera pixels
            are used.
        in_features: error dimension ``d`` (at most ``device.input_pixels``).
        out_features: feedback width ``D`` (at most ``device.output_pixels``).
        encoding: error encoding (default: ternary, threshold 0.25 of the per-sample max).
        readout: readout mode (default: holographic 4-frame).
        evening: divide row ``i`` by ``sqrt(I_i(r))`` (linear modes only).
        evening_floor: floor of ``I_i(r)`` as a fraction of its mean, in (0, 1].
        recalibrate: device frames between re-measurements of ``I(r)`` for row evening (0: measured once).
        intensities: ``Ī₁`` and ``Ī_r`` if known; measured once otherwise.
        raw_matrix: callable returning the ``(D, d)`` matrix ``M`` (intensity units) the device applies, for
            :meth:`effective_matrix`; a simulator knows it, a real device gets it from calibration.
        description: extra plain data for :meth:`describe` (e.g. the resolved profile).
        faults: retry and timeout policy of the device guard (:mod:`optodfa.faults`); every device is wrapped in
            a :class:`~optodfa.faults.GuardedDevice`, so ``self.device`` is the guard (``self.device.inner`` the
            device given).

    Drivers usually build one with :meth:`from_profile`, which takes encoding, readout, evening and fault settings
    from a profile and its overrides exactly as ``opu-sim`` does.
    """

    def __init__(self, device: OpticalDevice, *, in_features: int, out_features: int,
                 encoding: Encoding | None = None, readout: Readout | None = None, evening: bool = False,
                 evening_floor: float = 0.05, intensities: Intensities | None = None,
                 raw_matrix: Callable[[], torch.Tensor] | None = None,
                 description: Mapping[str, Any] | None = None, faults: FaultPolicy | None = None,
                 recalibrate: int = 0) -> None:
        if not isinstance(device, OpticalDevice):
            raise TypeError(f"device must implement the OpticalDevice protocol (input_pixels, output_pixels, "
                            f"bit_depth, frame_time_s, acquire, ...), got {type(device).__name__}")
        check_int("in_features", in_features, low=1, high=device.input_pixels)
        check_int("out_features", out_features, low=1, high=device.output_pixels)
        super().__init__(in_features, out_features)
        self.device = GuardedDevice(device, faults)
        self.encoding = encoding if encoding is not None else TernaryEncoding()
        self.readout = readout if readout is not None else HolographicReadout()
        if not isinstance(evening, bool):
            raise TypeError(f"readout.evening must be true or false, got {evening!r}")
        if evening and not self.readout.linear:
            raise ValueError(f"readout.evening applies to linear readout modes only; readout.mode is "
                             f"{self.readout.name!r}")
        self.evening = evening
        self.evening_floor = check_real("readout.evening_floor", evening_floor, low=0.0, high=1.0, low_open=True)
        self.recalibrate = check_int("readout.recalibrate", recalibrate, low=0)
        if self.recalibrate and not evening:
            raise ValueError(f"readout.recalibrate = {recalibrate} re-measures the reference intensity that row "
                             f"evening divides by; it needs readout.evening = true")
        self._calibrated_at = 0  # device frames when I(r) was last measured
        self._intensities = intensities
        self._intensities_measured = False
        self._reference_intensity: torch.Tensor | None = None
        self._raw_matrix = raw_matrix
        self._description = dict(description or {})
        self._device_base = self.device.counters()

    @classmethod
    def from_profile(cls, device: OpticalDevice, profile: Profile | str | os.PathLike[str] | None = None,
                     overrides: Mapping[str, Any] | None = None, *, in_features: int, out_features: int,
                     uses: Iterable[str] | None = None, intensities: Intensities | None = None,
                     raw_matrix: Callable[[], torch.Tensor] | None = None,
                     description: Mapping[str, Any] | None = None) -> OpticalProjector:
        """The projector ``opu-sim`` would build around ``device``: encoding, readout, evening and fault policy from
        ``profile`` and ``overrides``.

        Args:
            device: the raw device.
            profile: a resolved :class:`~optodfa.profiles.Profile`, a profile name or path, or ``None`` (the
                default profile).
            overrides: ``{"encoding.threshold": "0.05", ...}`` applied over the profile (strings parsed as on the
                command line).
            in_features, out_features: ``d`` and ``D``.
            uses: profile keys the *device* reads (beyond :data:`PROJECTOR_KEYS`, which the projector reads);
                default the device's ``profile_keys`` attribute, or none.
            intensities, raw_matrix, description: as in the constructor; the resolved profile is added to the
                description under ``"profile"``.

        Raises:
            ProfileError: an unknown key, a bad value, or an override of a key neither the projector nor the device
                reads: it would be recorded in the run file and change nothing.
        """
        from optodfa.encoding import make_encoding
        from optodfa.profiles import SCHEMA, Profile, ProfileError, load_profile
        from optodfa.readout import make_readout

        base = profile if isinstance(profile, Profile) else load_profile(profile)
        if base.kind != "opu":
            raise ProfileError(f"profile {base.name!r} describes a {base.kind!r} device, not an optical "
                               f"(DMD and camera) device")
        overrides = dict(overrides or {})
        if set(overrides) - set(SCHEMA):
            base.with_overrides(overrides)  # raises, naming the unknown keys and listing the allowed ones
        used = set(PROJECTOR_KEYS) | set(getattr(device, "profile_keys", ()) if uses is None else uses)
        unused = sorted(set(overrides) - used)
        if unused:
            from optodfa.faults import driver_name

            raise ProfileError(f"setting(s) {', '.join(map(repr, unused))} not used by device "
                               f"{driver_name(device)!r}: accepted, they would be recorded and change nothing; "
                               f"settings it uses: {', '.join(sorted(used))}")
        resolved = base.with_overrides(overrides)
        v = resolved.values
        kind = v["encoding.kind"]
        params = {"ternary": {"threshold": v["encoding.threshold"], "rule": v["encoding.rule"]},
                  "sign": {}, "bitplane": {"bits": v["encoding.bits"]}}[kind]
        timeout = v["faults.timeout"]
        policy = FaultPolicy(attempts=v["faults.attempts"], backoff_s=v["faults.backoff"],
                             timeout_s="device" if timeout is None else (None if math.isinf(timeout) else timeout))
        return cls(device, in_features=in_features, out_features=out_features,
                   encoding=make_encoding(kind, **params), readout=make_readout(v["readout.mode"]),
                   evening=v["readout.evening"], evening_floor=v["readout.evening_floor"], intensities=intensities,
                   raw_matrix=raw_matrix, description={"profile": resolved.as_dict(), **(description or {})},
                   faults=policy, recalibrate=v["readout.recalibrate"])

    # -- projection ------------------------------------------------------------------------------------------
    def _project(self, e: torch.Tensor) -> torch.Tensor:
        # Re-calibration is due by device frames; only a projection triggers it (effective_matrix() never acquires).
        if self.recalibrate and self._reference_intensity is not None and \
                self.device.counters().frames - self._calibrated_at >= self.recalibrate:
            self._measure(again=True)
        self._prepare(e.device)
        encoded = self.encoding.encode(e)
        p, n, d = encoded.planes.shape
        planes = encoded.planes.reshape(p * n, d)
        plus, minus = self._pad(planes > 0), self._pad(planes < 0)
        # Every per-plane factor (the decoder's, the scale's where it is one value, the intensity mode's) rides on
        # the readout's own per-frame scales; only row evening, one factor per output row, needs a pass of its own.
        factor = self.encoding.plane_factors(encoded)
        if not self.readout.linear:
            factor = factor * IntensityReadout.normalising_factor(plus, minus, self.intensities.element, factor.dtype)
        elif not self.evening:
            factor = factor * self._uniform_scale()  # _row_scale's one value for every row
        raw = self.readout.measure(self.device, plus, minus, factor=factor).to(device=e.device)
        if raw.shape[1] != self.out_features:
            raw = raw[:, : self.out_features].contiguous()
        if self.readout.linear and self.evening:
            raw.mul_(self._row_scale(raw.dtype, e.device))  # raw is this call's own tensor
        out = self.encoding.sum_planes(raw.view(p, n, self.out_features))
        return out.to(e.dtype)

    def effective_matrix(self) -> torch.Tensor | None:
        """``(D, d)`` normalised matrix the device applies (linear modes with a known raw matrix), else ``None``."""
        if self._raw_matrix is None or not self.readout.linear:
            return None
        return self.normalise_matrix(self._raw_matrix())

    def normalise_matrix(self, raw: torch.Tensor, reference_intensity: torch.Tensor | None = None) -> torch.Tensor:
        """``(D, d)`` normalised matrix of a raw ``M`` (``(≥ D, ≥ d)``, intensity units), with row evening by
        ``reference_intensity`` (``(≥ D,)``; default the projector's measured ``I(r)``) when evening is on.

        :meth:`effective_matrix` is this of the device's matrix now; the matrix of the medium as it was
        built (before drift) is this of that medium's ``M`` and ``I(r)``.
        """
        raw = raw[: self.out_features, : self.in_features]
        self._prepare(raw.device)
        if reference_intensity is not None:
            reference_intensity = reference_intensity[: self.out_features]
        return raw * self._row_scale(raw.dtype, raw.device, reference_intensity)[:, None]

    @property
    def intensities(self) -> Intensities:
        """``Ī₁`` and ``Ī_r`` (measured on first use when not given)."""
        if self._intensities is None:
            self._measure()
        assert self._intensities is not None
        return self._intensities

    def frames_per_sample(self) -> int:
        """Frames one error vector costs: planes x frames per plane."""
        return self.encoding.planes * self.readout.frames_per_plane

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def counters(self) -> Counters:
        """Calls, projections and MACs of this projector, plus the device's frames, time, energy and saturation."""
        counters = super().counters()
        now = self.device.counters()
        counters.frames = now.frames - self._device_base.frames
        counters.hardware_seconds = now.hardware_seconds - self._device_base.hardware_seconds
        counters.energy_joules = now.energy_joules - self._device_base.energy_joules
        counters.saturated_pixels = now.saturated_pixels - self._device_base.saturated_pixels
        counters.faults = now.faults - self._device_base.faults
        counters.retries = now.retries - self._device_base.retries
        return counters

    def reset_counters(self) -> None:
        super().reset_counters()
        self._device_base = self.device.counters()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "encoding": self.encoding.describe(), "readout": self.readout.describe(),
                "evening": self.evening, "evening_floor": self.evening_floor, "recalibrate": self.recalibrate,
                "frames_per_sample": self.frames_per_sample(),
                "intensities": None if self._intensities is None else dataclasses.asdict(self._intensities),
                "intensities_measured": self._intensities_measured,
                "device": self.device.describe(), **self._description}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["device_base"] = self._device_base.as_dict()
        state["intensities"] = None if self._intensities is None else dataclasses.asdict(self._intensities)
        state["intensities_measured"] = self._intensities_measured
        state["calibrated_at"] = self._calibrated_at
        state["reference_intensity"] = (None if self._reference_intensity is None
                                        else self._reference_intensity.detach().cpu())
        device_state = getattr(self.device, "state_dict", None)
        state["device"] = device_state() if callable(device_state) else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._device_base = Counters.from_dict(state["device_base"])
        self._intensities = None if state["intensities"] is None else Intensities(**state["intensities"])
        self._intensities_measured = bool(state["intensities_measured"])
        self._calibrated_at = int(state.get("calibrated_at", 0))  # absent in checkpoints of earlier versions
        self._reference_intensity = state["reference_intensity"]
        if state["device"] is not None:
            self.device.load_state_dict(state["device"])  # type: ignore[attr-defined]

    def open(self) -> None:
        self.device.open()

    def close(self) -> None:
        self.device.close()

    # -- internals -------------------------------------------------------------------------------------------
    def _pad(self, frames: torch.Tensor) -> torch.Tensor:
        extra = self.device.input_pixels - frames.shape[1]
        return torch.nn.functional.pad(frames, (0, extra)) if extra else frames

    def _prepare(self, device: torch.device) -> None:
        """Measure what the scale needs and has not been given (once)."""
        if self._intensities is None or (self.evening and self._reference_intensity is None):
            self._measure()
        if self._reference_intensity is not None and self._reference_intensity.device != device:
            self._reference_intensity = self._reference_intensity.to(device)

    def _measure(self, *, again: bool = False) -> None:
        zeros = torch.zeros(1, self.device.input_pixels, dtype=torch.bool)
        reference = self.device.acquire(zeros, reference=True).intensity()[0, : self.out_features]
        self._reference_intensity = reference
        if again and self._intensities_measured:
            self._intensities = None
        if self._intensities is None:
            lit = zeros.clone()
            lit[0, : self.in_features] = True
            signal = self.device.acquire(lit, reference=False).intensity()[0, : self.out_features]
            self._intensities = Intensities(element=float(signal.mean()) / self.in_features,
                                            reference=float(reference.mean()))
            self._intensities_measured = True
        self._calibrated_at = self.device.counters().frames

    def _uniform_scale(self) -> float:
        """The factor of every row without row evening: ``(2 Ī_r Ī₁)^(−1/2)``."""
        levels = self.intensities
        return (2.0 * levels.reference * levels.element) ** -0.5

    def _row_scale(self, dtype: torch.dtype, device: torch.device,
                   reference: torch.Tensor | None = None) -> torch.Tensor:
        """``(D,)`` factors taking raw rows to the unit-variance scale (see the module docstring); ``reference``:
        the ``I(r)`` evening divides by (default the measured one)."""
        levels = self.intensities
        if not self.evening:
            return torch.full((self.out_features,), self._uniform_scale(), dtype=dtype, device=device)
        if reference is None:
            assert self._reference_intensity is not None
            reference = self._reference_intensity
        floor = self.evening_floor * levels.reference
        reference = reference.to(dtype=dtype, device=device).clamp_min(floor)
        return reference.rsqrt() * (2.0 * levels.element) ** -0.5
