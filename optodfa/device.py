"""The protocols between DFA and hardware.

Two levels, one verb each:

* :class:`OpticalDevice` is the raw instrument: binary frames in, camera counts out (``acquire``). A real OPU
  driver implements only this level and reuses optodfa's encoders and decoders.
* :class:`Projector` is what DFA calls: an error batch ``e`` of shape ``(n, d)`` in, an estimate of ``B_eff e`` of
  shape ``(n, D)`` out (``project``). Digital and analog devices implement it directly; optical ones through
  :class:`optodfa.optical.OpticalProjector`, which wraps any :class:`OpticalDevice`.

Nothing in ``dfa.py`` asks which kind of projector it holds. Tensors in and out are torch tensors on the caller's
device; implementations may compute elsewhere inside and say so in ``describe()``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

__all__ = [
    "Acquisition",
    "Counters",
    "FeedbackError",
    "NonFiniteError",
    "OpticalDevice",
    "Projector",
]


_HALF = (torch.float16, torch.bfloat16)


class FeedbackError(ValueError):
    """An error batch that a projector cannot take (wrong shape, dtype or device)."""


class NonFiniteError(FeedbackError):
    """An error batch holding NaN or inf; DFA names the training step where it happened."""


@dataclasses.dataclass
class Counters:
    """What projections have cost so far.

    Attributes:
        calls: ``project`` (or ``acquire``) calls.
        projections: error vectors projected (rows of ``e`` summed over calls).
        frames: binary frames shown on the DMD (0 for digital devices).
        hardware_seconds: simulated or measured device time in seconds (frames x frame time for an OPU).
        energy_joules: device energy in joules (hardware seconds x power for an OPU).
        macs: multiply-accumulates a digital ``B e`` of the same shapes costs (``n * D * d`` per call).
        saturated_pixels: camera pixel readings clipped at full scale.
        faults: device errors seen (transient errors, timeouts, invalid acquisitions; see :mod:`optodfa.faults`).
        retries: acquisitions repeated after a transient error.
    """

    calls: int = 0
    projections: int = 0
    frames: int = 0
    hardware_seconds: float = 0.0
    energy_joules: float = 0.0
    macs: int = 0
    saturated_pixels: int = 0
    faults: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def add(self, other: Counters) -> None:
        """Accumulate ``other`` into ``self`` in place."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counters:
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        return cls(**{k: (float(v) if "float" in str(names[k]) else int(v)) for k, v in data.items() if k in names})


class Acquisition(NamedTuple):
    """Camera readout of a batch of frames.

    Attributes:
        counts: ``(n, M)`` camera counts, integer-valued (an integer dtype when the ADC has a finite bit depth,
            the device's floating dtype when it models unlimited bits).
        intensity_per_count: ``(n,)`` intensity units per count for each frame (undoes gain and exposure).
        dark_offset: counts added by the camera in the dark (subtracted before scaling).
        saturated: readings clipped at full scale in this acquisition (a 0-d tensor on the compute device, so
            that reading the camera needs no host round trip; ``int(...)`` when needed).
    """

    counts: torch.Tensor
    intensity_per_count: torch.Tensor
    dark_offset: float = 0.0
    saturated: int | torch.Tensor = 0

    def intensity(self) -> torch.Tensor:
        """``(n, M)`` float estimate of the optical intensity ``|R x|²`` in the device's intensity units."""
        counts = self.counts.to(self.intensity_per_count.dtype)
        return (counts - self.dark_offset) * self.intensity_per_count[:, None]


@runtime_checkable
class OpticalDevice(Protocol):
    """A binary-input, intensity-output optical device (a DMD, a scattering medium, a camera).

    Attributes:
        input_pixels: logical input elements available to signal frames (each may drive a macropixel of several
            DMD mirrors; the device knows its layout).
        output_pixels: camera pixels read per frame.
        bit_depth: ADC bits of the camera, or ``None`` for an idealised device with unlimited bits.
        frame_time_s: seconds per frame.
    """

    input_pixels: int
    output_pixels: int
    bit_depth: int | None
    frame_time_s: float

    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """Show ``frames`` (``(n, input_pixels)``, values in {0, 1}) and read the camera.

        ``reference`` switches on the device's fixed reference pattern (on pixels no signal frame uses) for all
        frames (``bool``) or per frame (``(n,)`` bool tensor). Raises ``ValueError`` for non-binary frames.
        """
        ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> OpticalDevice: ...

    def __exit__(self, *exc: object) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Capabilities and settings as plain data (JSON-serialisable)."""
        ...

    def counters(self) -> Counters: ...


class Projector(ABC):
    """Computes the DFA feedback projection ``B_eff e`` for a batch of errors.

    Subclasses set ``in_features`` (the error dimension ``d``) and ``out_features`` (the total feedback width
    ``D``) and implement :meth:`_project`. The public :meth:`project` validates the input once and updates the
    counters that every projector shares.
    """

    in_features: int
    out_features: int

    def __init__(self, in_features: int, out_features: int) -> None:
        self.in_features = in_features
        self.out_features = out_features
        self._counters = Counters()

    # -- the one verb -------------------------------------------------------------------------------------
    def project(self, e: torch.Tensor) -> torch.Tensor:
        """Project an error batch.

        Args:
            e: ``(n, d)`` floating-point errors, on any torch device.

        Returns:
            ``(n, D)`` estimate of ``e @ B_effᵀ``, same device and dtype as ``e`` (``(0, D)`` for ``n = 0``, with
            nothing counted; half-precision errors are projected in float32 and returned in their own dtype).

        Raises:
            FeedbackError: ``e`` is not a floating tensor of shape ``(n, d)``.
            NonFiniteError: ``e`` holds NaN or inf, or is so large that the projection overflows its dtype.
        """
        self._check(e)
        n = e.shape[0]
        if n == 0:  # nothing to show the device: the projection of no errors is no rows
            return e.new_zeros((0, self.out_features))
        # Half precision cannot hold the codes (integers up to 2^16 - 1) or the intensities: compute in float32
        # and hand back the caller's dtype.
        out = self._project(e.float()).to(e.dtype) if e.dtype in _HALF else self._project(e)
        if not _all_finite(out):  # finite errors so large that B e overflows the dtype
            raise NonFiniteError(f"the projection of this finite {e.dtype} error batch overflows: "
                                 f"{int((~torch.isfinite(out)).sum())} non-finite value(s) out of {out.numel()} "
                                 f"(largest |e| = {float(e.abs().max()):g}, largest finite "
                                 f"{torch.finfo(e.dtype).max:g}); scale the errors down or use float64")
        self._counters.calls += 1
        self._counters.projections += n
        self._counters.macs += n * self.in_features * self.out_features
        return out

    @abstractmethod
    def _project(self, e: torch.Tensor) -> torch.Tensor:
        """Implementations: ``(n, d)`` validated errors to ``(n, D)`` projection; add frames/time/energy."""

    def effective_matrix(self) -> torch.Tensor | None:
        """``(D, d)`` matrix the device applies (exact, simulated or calibrated), or ``None`` if unknown."""
        return None

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def counters(self) -> Counters:
        """A copy of the counters accumulated since construction or :meth:`reset_counters`."""
        return dataclasses.replace(self._counters)

    def reset_counters(self) -> None:
        self._counters = Counters()

    def describe(self) -> dict[str, Any]:
        """Settings and capabilities as plain data (stored in run files)."""
        return {"class": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically after a restart (counters, random states, drift)."""
        return {"counters": self._counters.as_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._counters = Counters.from_dict(state["counters"])

    def open(self) -> None:  # noqa: B027 - simulators have nothing to acquire; drivers override
        """Acquire the hardware (no-op for simulators)."""

    def close(self) -> None:  # noqa: B027 - see open()
        """Release the hardware (no-op for simulators)."""

    def __enter__(self) -> Projector:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- validation ------------------------------------------------------------------------------------------
    def _check(self, e: torch.Tensor) -> None:
        if not isinstance(e, torch.Tensor):
            raise FeedbackError(f"error batch must be a torch.Tensor of shape (n, {self.in_features}), "
                                f"got {type(e).__name__}")
        if e.ndim != 2 or e.shape[1] != self.in_features:
            raise FeedbackError(f"error batch must have shape (n, {self.in_features}), got {tuple(e.shape)}")
        if not e.is_floating_point():
            raise FeedbackError(f"error batch must be floating point, got {e.dtype}")
        if not bool(torch.isfinite(e).all()):
            bad = int((~torch.isfinite(e)).sum())
            raise NonFiniteError(f"error batch holds {bad} non-finite value(s) (NaN or inf) out of {e.numel()}")


def _all_finite(values: torch.Tensor) -> bool:
    """Whether every entry of ``values`` is finite, in one pass and without a temporary for the common case.

    A NaN or an infinity anywhere makes the sum non-finite, so a finite sum proves every entry finite; a sum that
    is not finite (which finite entries can also give, by overflow) is settled entry by entry.
    """
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())
