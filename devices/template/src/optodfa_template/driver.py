"""Template driver: a raw optical device and its factory. Replace the toy instrument with yours.

The toy instrument is a fixed complex random medium seen by a camera of ``camera.bits`` bits with auto-exposure,
noiseless and deterministic, so the template runs, trains and passes the conformance kit out of the box. Every
place that would talk to real hardware is marked ``HARDWARE:``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optodfa.device import Acquisition, Counters, Projector
from optodfa.optical import OpticalProjector
from optodfa.profiles import load_profile
from optodfa.registry import ProjectorSpec
from optodfa.seeding import numpy_generator

__all__ = ["PROFILE_KEYS", "TemplateDevice", "build"]

PROFILE_KEYS = ("camera.bits", "device.frame_time", "device.power", "dmd.reference_mirrors")
"""Profile keys this driver reads; overriding any other device key is an error (the projector's keys are fine)."""


class InstrumentBusy(Exception):
    """HARDWARE: an error your vendor library raises that is worth retrying (declared in ``transient_errors``)."""


class TemplateDevice:
    """A raw optical device: binary frames in, camera counts out (the :class:`optodfa.device.OpticalDevice` protocol).

    Args:
        signal_elements: ``d``, signal elements a frame may light.
        output_pixels: ``D``, camera pixels read per frame.
        reference_elements: elements of the fixed reference pattern (lit when ``reference`` is true).
        bits: camera bit depth.
        frame_time_s: seconds per frame; power_w: watts while running.
        seed: seed of the toy medium.
    """

    name = "template-opu"  # how errors name the driver
    profile_keys = PROFILE_KEYS
    transient_errors = (InstrumentBusy,)  # retried by optodfa's guard, like OSError and TimeoutError
    acquire_timeout_s = 10.0  # a hung acquire is abandoned after this many seconds

    def __init__(self, signal_elements: int, output_pixels: int, *, reference_elements: int, bits: int,
                 frame_time_s: float, power_w: float, seed: int) -> None:
        self.input_pixels = int(signal_elements)
        self.output_pixels = int(output_pixels)
        self.bit_depth = int(bits)
        self.frame_time_s = float(frame_time_s)
        self.power_w = float(power_w)
        self.reference_elements = int(reference_elements)
        rng = numpy_generator(seed, 0)
        shape = (self.input_pixels + 1, self.output_pixels)
        # HARDWARE: a real device has no matrix to draw; this is the toy medium (last row: the reference field).
        self._medium = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
        self._medium[-1] *= np.sqrt(self.reference_elements)
        self._open = False
        self._calls = self._frames = 0

    # -- required: the raw protocol --------------------------------------------------------------------------------
    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """Show ``frames`` (``(n, input_pixels)``, 0/1) with the reference pattern as asked; read the camera."""
        if frames.ndim != 2 or frames.shape[1] != self.input_pixels:
            raise ValueError(f"frames must have shape (n, {self.input_pixels}), got {tuple(frames.shape)}")
        if frames.dtype != torch.bool and not bool(((frames == 0) | (frames == 1)).all()):
            raise ValueError("frames must be binary (0 and 1 only)")
        if not self._open:
            self.open()
        n = frames.shape[0]
        flags = torch.full((n,), bool(reference)) if isinstance(reference, bool) else reference
        x = np.concatenate([frames.cpu().numpy().astype(np.float64), flags.cpu().numpy()[:, None]], axis=1)
        # HARDWARE: upload x to the DMD, trigger, read the camera. The toy: |x R|^2, auto-exposed per frame so the
        # brightest pixel lands at 80% of full scale, then the ADC.
        intensity = np.abs(x @ self._medium) ** 2
        top = 2**self.bit_depth - 1
        per_count = np.maximum(intensity.max(axis=1), 1e-12) / (0.8 * top)
        counts = np.clip(np.floor(intensity / per_count[:, None]), 0, top)
        self._calls += 1
        self._frames += n
        return Acquisition(torch.from_numpy(counts.astype(np.int32)), torch.from_numpy(per_count), 0.0, 0)

    def open(self) -> None:
        """HARDWARE: connect to the instrument (idempotent)."""
        self._open = True

    def close(self) -> None:
        """HARDWARE: release the instrument (idempotent)."""
        self._open = False

    def __enter__(self) -> TemplateDevice:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable) stored in every run file: say what the instrument is and how it is set."""
        return {"device": "template-opu", "input_pixels": self.input_pixels, "output_pixels": self.output_pixels,
                "bit_depth": self.bit_depth, "frame_time_s": self.frame_time_s, "power_w": self.power_w,
                "reference_elements": self.reference_elements}

    def counters(self) -> Counters:
        seconds = self._frames * self.frame_time_s
        return Counters(calls=self._calls, frames=self._frames, hardware_seconds=seconds,
                        energy_joules=seconds * self.power_w)

    # -- optional hooks ------------------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        self._calls = self._frames = 0

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as if never stopped (noise generators, drift, counters)."""
        return {"calls": self._calls, "frames": self._frames}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._calls, self._frames = int(state["calls"]), int(state["frames"])


def build(spec: ProjectorSpec) -> Projector:
    """Template driver: a toy deterministic OPU (replace with your instrument)."""
    overrides = dict(spec.overrides)
    own = {key: overrides.pop(key) for key in PROFILE_KEYS if key in overrides}
    profile = load_profile(spec.profile, own)  # default lighton-aurora; a lab writes its own TOML
    p = profile.values
    if p["camera.bits"] is None:
        raise ValueError("template-opu needs a finite camera.bits (its toy camera has an ADC)")
    device = TemplateDevice(spec.in_features, spec.out_features, reference_elements=64, bits=p["camera.bits"],
                            frame_time_s=p["device.frame_time"], power_w=p["device.power"],
                            seed=spec.feedback_seed)
    # Encoding, readout, evening and fault policy come from the profile and the rest of the overrides, exactly as
    # for opu-sim; an override of a key neither the projector nor the device reads is an error.
    return OpticalProjector.from_profile(device, profile, overrides, in_features=spec.in_features,
                                         out_features=spec.out_features,
                                         description={"feedback_seed": spec.feedback_seed})
