"""A LightOn OPU as an :class:`optodfa.device.OpticalDevice`, through lightonml's ``OPU``.

The driver shows binary frames and reads the camera; optodfa's encoders, readout modes and device guard do the rest
(:meth:`optodfa.optical.OpticalProjector.from_profile`). lightonml's convention is ``Y = |X @ R|²`` for a batch
``X`` of shape ``(n, n_features)`` and a transmission matrix ``R`` of shape ``(n_features, n_components)``; the
driver lays its frames out on the ``n_features`` input features as

    [ element 0 (m features) | element 1 | ... | element d-1 | reference region (r features) ]

with ``m = dmd.macropixel`` features per signal element and ``r = dmd.reference_mirrors`` reference features, all
taken from the profile (default ``lighton-aurora``). The OPU is *fitted* once for ``n_features = d m + r``
(``fit1d``), then each ``acquire`` is one ``transform`` of a uint8 batch.

What comes back: on hardware, uint8 camera counts (``bit_depth = 8``), with the exposure and frame time the OPU
used read from the output's context (``y.context.exposure_us``, ``frametime_us``): counts are scaled back to the
base exposure so that auto-exposure changes do not change the intensity scale. lightonml's simulated OPU returns
the noiseless float intensities ``|X @ R|²`` (``bit_depth = None``) of a complex Gaussian ``R`` with parts of
variance ``1 / n_features``, drawn from the feedback seed; then the driver also knows ``R`` exactly and reports the
holographic matrix, so alignment is measured against what the simulated device applies.

Settings: the profile keys ``dmd.macropixel``, ``dmd.reference_mirrors`` and ``device.power`` (the driver reads
these), every encoding, readout and fault key (the projector reads those), and ``simulated`` = ``auto`` (default:
simulated exactly when lightonml finds no OPU configuration on this host), ``true`` or ``false``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from optodfa.device import Acquisition, Counters, Projector
from optodfa.faults import DeviceError
from optodfa.optical import Intensities, OpticalProjector
from optodfa.profiles import load_profile
from optodfa.registry import ProjectorSpec
from optodfa.seeding import derive_seed

__all__ = ["PROFILE_KEYS", "LightOnDevice", "build"]

PROFILE_KEYS = ("dmd.macropixel", "dmd.reference_mirrors", "device.power")
"""Profile keys the driver reads (the projector reads the encoding, readout and fault keys)."""

_SEED_LABEL = 31  # sub-stream of the feedback seed for lightonml's RandomState (which takes 32-bit seeds)


def _import_opu() -> Any:
    # lightonml imports pkg_resources, which warns on current setuptools; that warning is lightonml's, not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightonml
        from lightonml import OPU
        from lightonml.internal import config
    return lightonml, OPU, config


class LightOnDevice:
    """A LightOn OPU (or lightonml's simulated one) behind the raw optical-device protocol.

    Args:
        signal_elements: ``d``, signal elements a frame may light.
        output_pixels: ``D``, camera pixels read (``n_components``).
        macropixel: input features per signal element.
        reference_features: input features of the reference region.
        seed: feedback seed (the simulated OPU's matrix; ignored by hardware, whose medium is what it is).
        simulated: use lightonml's simulated OPU instead of hardware.
        power_w: electrical power in watts while running.
    """

    name = "lighton"
    profile_keys = PROFILE_KEYS
    acquire_timeout_s = 30.0
    """A batch of frames at 2 kHz answers in well under a second; 30 s means the instrument hangs."""

    def __init__(self, signal_elements: int, output_pixels: int, *, macropixel: int, reference_features: int,
                 seed: int, simulated: bool, power_w: float = 30.0) -> None:
        lightonml, OPU, _ = _import_opu()
        self.input_pixels = int(signal_elements)
        self.output_pixels = int(output_pixels)
        self.macropixel = int(macropixel)
        self.reference_features = int(reference_features)
        self.n_features = self.input_pixels * self.macropixel + self.reference_features
        self.simulated = bool(simulated)
        self.power_w = float(power_w)
        self.seed = int(seed)
        self.lightonml_version = lightonml.__version__
        try:
            self.opu = OPU(n_components=self.output_pixels, max_n_features=self.n_features,
                           simulated=self.simulated, disable_pbar=True, open_at_init=False)
        except (ImportError, RuntimeError) as exc:  # no lightonopu, or no OPU configured on this host
            raise DeviceError("lighton", "open", f"no LightOn OPU available ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}); use --set simulated=true for lightonml's simulated "
                              f"OPU") from exc
        if self.simulated:
            self.opu.device.build_random_matrix(self.n_features, self.output_pixels,
                                                seed=derive_seed(self.seed, _SEED_LABEL) % 2**32)
        self.bit_depth: int | None = None if self.simulated else 8
        self.frame_time_s = self.opu.device.frametime_us * 1e-6
        self._base_exposure_us = float(self.opu.device.exposure_us)
        self._last_exposure_us = self._base_exposure_us
        self._fitted = False
        self._calls = self._frames = 0
        self._seconds = 0.0

    # -- the raw protocol ------------------------------------------------------------------------------------------
    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """One ``transform`` of ``frames`` (``(n, d)`` binary) with the reference region lit as asked."""
        if not isinstance(frames, torch.Tensor) or frames.ndim != 2 or frames.shape[1] != self.input_pixels:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"frames must be a (n, {self.input_pixels}) tensor of binary values, got {shape}")
        if frames.dtype != torch.bool and not bool(((frames == 0) | (frames == 1)).all()):
            raise ValueError("frames must be binary (values 0 and 1 only): a DMD mirror is on or off")
        n = frames.shape[0]
        flags = torch.full((n,), bool(reference)) if isinstance(reference, bool) else reference
        if not isinstance(flags, torch.Tensor) or tuple(flags.shape) != (n,) or flags.dtype != torch.bool:
            raise ValueError(f"reference must be a bool or a bool tensor of shape ({n},)")
        x = np.zeros((n, self.n_features), dtype=np.uint8)
        x[:, : self.input_pixels * self.macropixel] = np.repeat(frames.cpu().numpy().astype(np.uint8),
                                                                self.macropixel, axis=1)
        x[:, self.input_pixels * self.macropixel:] = flags.cpu().numpy()[:, None]
        if not self.opu.device.active:
            self.opu.open()  # training code need not call open(): the first frames acquire the OPU
        if not self._fitted:
            self.opu.fit1d(n_features=self.n_features)
            self._fitted = True
        y = self.opu.transform(x)
        context = getattr(y, "context", None)
        exposure_us = float(getattr(context, "exposure_us", None) or self._base_exposure_us)
        frame_us = float(getattr(context, "frametime_us", None) or self.frame_time_s * 1e6)
        self._last_exposure_us = exposure_us
        array = np.asarray(y)
        counts = torch.from_numpy(array.astype(np.uint8) if array.dtype == np.uint8 else
                                  array.astype(np.float32, copy=True))
        per_count = torch.full((n,), self._base_exposure_us / exposure_us, dtype=torch.float32)
        self._calls += 1
        self._frames += n
        self._seconds += n * frame_us * 1e-6
        saturated = int((counts == 255).sum()) if counts.dtype == torch.uint8 else 0
        return Acquisition(counts, per_count, 0.0, saturated)

    def open(self) -> None:
        self.opu.open()

    def close(self) -> None:
        self.opu.close()

    def __enter__(self) -> LightOnDevice:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"device": "lighton", "simulated": self.simulated, "lightonml": self.lightonml_version,
                "input_pixels": self.input_pixels, "output_pixels": self.output_pixels,
                "bit_depth": self.bit_depth, "n_features": self.n_features, "macropixel": self.macropixel,
                "reference_features": self.reference_features, "frame_time_s": self.frame_time_s,
                "base_exposure_us": self._base_exposure_us, "last_exposure_us": self._last_exposure_us,
                "power_w": self.power_w, "feedback_seed": self.seed}

    def counters(self) -> Counters:
        return Counters(calls=self._calls, frames=self._frames, hardware_seconds=self._seconds,
                        energy_joules=self._seconds * self.power_w)

    def reset_counters(self) -> None:
        self._calls = self._frames = 0
        self._seconds = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Counters only: the simulated OPU is noiseless and its matrix follows from the seed."""
        return {"calls": self._calls, "frames": self._frames, "seconds": self._seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._calls, self._frames = int(state["calls"]), int(state["frames"])
        self._seconds = float(state["seconds"])

    # -- what the simulated OPU knows ----------------------------------------------------------------------------
    def field_columns(self) -> torch.Tensor:
        """``(D, d + 1)`` complex fields of each element and of the reference region (simulated OPU only)."""
        matrix = self.opu.device.random_matrix  # (n_features, n_components), the X @ R convention
        if matrix is None:
            raise RuntimeError("the OPU has no random matrix: fields are known for the simulated OPU only")
        signal = matrix[: self.input_pixels * self.macropixel].reshape(self.input_pixels, self.macropixel, -1)
        columns = np.concatenate([signal.sum(axis=1), matrix[self.input_pixels * self.macropixel:].sum(
            axis=0, keepdims=True)], axis=0)
        return torch.from_numpy(columns.T.astype(np.complex128))

    def holographic_matrix(self) -> torch.Tensor:
        """``(D, d)`` ``M = 2 Re(diag(conj f) C)``: ``I(x + r) − I(x) − I(r) = M x`` (simulated OPU only)."""
        fields = self.field_columns()
        return (2.0 * (fields[:, -1:].conj() * fields[:, :-1]).real).float()


def _simulated(value: Any, config: Any) -> bool:
    text = str(value).strip().lower()
    if text == "auto":
        return not config.host_has_opu_config()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"simulated must be auto, true or false, got {value!r}")


def build(spec: ProjectorSpec) -> Projector:
    """LightOn OPU through lightonml (its simulated OPU when no OPU is configured on this host)."""
    overrides = dict(spec.overrides)
    _, _, config = _import_opu()
    simulated = _simulated(overrides.pop("simulated", "auto"), config)
    own = {key: overrides.pop(key) for key in PROFILE_KEYS if key in overrides}
    profile = load_profile(spec.profile, own)
    p = profile.values
    device = LightOnDevice(spec.in_features, spec.out_features, macropixel=p["dmd.macropixel"],
                           reference_features=p["dmd.reference_mirrors"], seed=spec.feedback_seed,
                           simulated=simulated, power_w=p["device.power"])
    intensities, raw_matrix = None, None
    if simulated:
        # E|R_ij|^2 = 2 / n_features for lightonml's matrix; an element sums m features, the reference r.
        unit = 2.0 / device.n_features
        intensities = Intensities(element=device.macropixel * unit, reference=device.reference_features * unit)
        raw_matrix = device.holographic_matrix
    return OpticalProjector.from_profile(device, profile, overrides, in_features=spec.in_features,
                                         out_features=spec.out_features, intensities=intensities,
                                         raw_matrix=raw_matrix,
                                         description={"feedback_seed": spec.feedback_seed, "simulated": simulated,
                                                      "reproducible": simulated})
