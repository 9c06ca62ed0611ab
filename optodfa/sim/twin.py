"""The digital twin of a calibrated OPU: a raw :class:`~optodfa.device.OpticalDevice` built from a
:class:`~optodfa.calibration.Calibration`, and the ``opu-twin`` projector factory.

Why a raw device and not a :class:`~optodfa.device.Projector`: wrapped by :class:`~optodfa.optical.OpticalProjector`,
the twin goes through the same encoder, readout, normalisation and counters as the hardware it copies, so every
encoding and readout mode works on it, and comparing a device with its twin compares only the physics.

Model. Per camera pixel ``i`` the field of a frame ``x`` (signal elements) with reference flag ``ρ`` is
``F_i = ρ a_i + (u_i + i v_i)·x``, with

* ``a_i = sqrt(I_i(r))`` the measured reference amplitude (floored at ``sqrt(0.01 Ī_r)``, see below), taken real:
  only phases relative to the reference are observable;
* ``u_i = M̂_i / (2 a_i)`` the in-phase part, so that ``I(x + r) − I(x) − I(r) = M̂ x`` exactly: the twin's
  holographic matrix is the calibrated one;
* ``v_i`` the quadrature, which holographic probes cannot see: drawn i.i.d. ``N(0, Ī₁ / 2)`` from the twin's
  feedback seed, the law of fully developed speckle. The intensity-only readout of the twin is therefore a
  statistically faithful map, not the device's own.

Camera. Mean counts ``c̄ = |F|² / q(k, ρ)``, with ``q`` the intensity per count the device reported for a frame
lighting ``k`` elements (interpolated linearly in ``k`` on the calibration's grid: auto-exposure makes it linear in
the light between its caps). Counts ``c = c̄ + dark + sqrt(a + b c̄)·z`` with the photon-transfer fit ``(a, b)``
(noise before the ADC), then quantised as the device's ADC does (truncated when the calibration's ``code_offset``
is 0.5, rounded when it is 0) and clipped to ``[0, 2^bits − 1]`` for a finite bit depth. The twin does not drift.

The floor on ``I(r)``: where the reference speckle is nearly dark, ``M̂_i / (2 a_i)`` would divide calibration noise
by almost nothing. Flooring ``I(r)`` at 1% of its mean (1% of pixels for exponential speckle) bounds ``u_i`` while
keeping ``2 a_i u_i = M̂_i``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from optodfa.calibration import Calibration, calibrate
from optodfa.device import Acquisition, Counters, Projector
from optodfa.registry import ProjectorSpec
from optodfa.seeding import check_seed, torch_generator
from optodfa.sim.camera import count_dtype
from optodfa.sim.lifecycle import NoHardware
from optodfa.sim.noise import NoiseSource
from optodfa.validation import check_choice, check_int

__all__ = ["REFERENCE_FLOOR", "TwinOPU", "build"]

REFERENCE_FLOOR = 0.01
_QUADRATURE_LABEL = 13
_NOISE_LABEL = 17
_CHUNK_PIXELS = 1 << 21
_TWIN_KEYS = ("calibration", "probes", "encoding.kind", "encoding.rule", "encoding.threshold", "encoding.bits",
              "readout.mode", "readout.evening", "readout.evening_floor")


class TwinOPU(NoHardware):
    """A simulator that reproduces a calibrated device's matrix, reference, exposure and camera noise.

    Args:
        calibration: the record to reproduce.
        seed: seed of the unobserved quadrature ``v`` (keyword-only).
        noise_seed: seed of the camera noise (keyword-only).
        device: torch device to compute on.
        dtype: ``torch.float32`` or ``torch.float64``.
    """

    def __init__(self, calibration: Calibration, *, seed: int, noise_seed: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(calibration, Calibration):
            raise TypeError(f"calibration must be a Calibration, got {type(calibration).__name__}")
        self.calibration = calibration
        self.seed = check_seed(seed, "seed")
        self.noise_seed = check_seed(noise_seed, "noise_seed")
        self.torch_device = torch.device(device)
        self.dtype = check_choice("dtype", dtype, (torch.float32, torch.float64))
        self.input_pixels = calibration.in_features
        self.output_pixels = calibration.out_features
        self.bit_depth = calibration.bit_depth
        self.frame_time_s = calibration.frame_time_s
        levels = calibration.intensities
        reference = calibration.reference_intensity.clamp_min(REFERENCE_FLOOR * levels.reference)
        amplitude = reference.sqrt()
        in_phase = calibration.raw_matrix / (2.0 * amplitude[:, None])
        generator = torch_generator(self.seed, _QUADRATURE_LABEL)
        quadrature = torch.randn(in_phase.shape, generator=generator, dtype=torch.float64) * (levels.element / 2) ** 0.5
        # (d + 1, 2D): [x, ρ] @ weights = [in-phase | quadrature] fields in one product.
        weights = torch.zeros(self.input_pixels + 1, 2 * self.output_pixels, dtype=torch.float64)
        weights[:-1, : self.output_pixels] = in_phase.T
        weights[-1, : self.output_pixels] = amplitude
        weights[:-1, self.output_pixels :] = quadrature.T
        self._weights = weights.to(device=self.torch_device, dtype=self.dtype)
        self._amplitude = amplitude
        self._grid = calibration.exposure_lit.to(device=self.torch_device, dtype=self.dtype)
        self._per_count = torch.stack([calibration.exposure_dark, calibration.exposure_reference]).to(
            device=self.torch_device, dtype=self.dtype)
        self._read_variance = calibration.read_variance
        self._top = None if self.bit_depth is None else float(2**self.bit_depth - 1)
        self._noise = NoiseSource(seed=self.noise_seed, device=self.torch_device, labels=(_NOISE_LABEL,))
        self.reset_counters()

    # -- the raw protocol ------------------------------------------------------------------------------------
    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """Show ``frames`` (``(n, input_pixels)``, values in {0, 1}) and read the twin camera.

        Returns counts of the device's dtype for its bit depth (float for unlimited bits), the intensity per count
        of each frame, the dark offset and the number of saturated readings (a 0-d tensor).
        """
        x = self._augmented(frames, reference)
        n = x.shape[0]
        lit = x[:, :-1].sum(dim=1)
        per_count = self._interpolate(lit, x[:, -1])
        counts = torch.empty(n, self.output_pixels, dtype=count_dtype(self.bit_depth) if self._top is not None
                             else self.dtype, device=self.torch_device)
        saturated = torch.zeros((), dtype=torch.int64, device=self.torch_device)
        rows = max(1, _CHUNK_PIXELS // self.output_pixels)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            fields = x[start:stop] @ self._weights
            real, imag = fields[:, : self.output_pixels], fields[:, self.output_pixels :]
            mean = real.square_().addcmul_(imag, imag).div_(per_count[start:stop, None])
            std = (mean * self.calibration.counts_per_electron).add_(self._read_variance).sqrt_()
            value = mean.add_(self.calibration.dark_offset).addcmul_(std, self._noise.normal(tuple(std.shape),
                                                                                            self.dtype))
            if self._top is not None:
                # The device's ADC: a reading k covers [k − offset + 1/2 ... ) counts; offset 1/2 truncates.
                value = value.add_(0.5 - self.calibration.code_offset).floor_().clamp_(0.0, self._top)
                saturated += torch.count_nonzero(value == self._top)
            counts[start:stop] = value.to(counts.dtype)
        self._frames += n
        self._calls += 1
        self._saturated += saturated
        return Acquisition(counts, per_count, float(self.calibration.dark_offset), saturated)  # type: ignore[arg-type]

    def holographic_matrix(self) -> torch.Tensor:
        """``(D, d)`` matrix ``M`` the twin applies (the calibrated ``M̂``), intensity units."""
        return self.calibration.raw_matrix.to(device=self.torch_device, dtype=self.dtype)

    def reference_intensity(self) -> torch.Tensor:
        """``(D,)`` noiseless ``I(r)`` of the twin (the measured one, floored), intensity units."""
        return self._amplitude.square().to(device=self.torch_device, dtype=self.dtype)

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def counters(self) -> Counters:
        """Acquire calls, frames, hardware seconds and joules at the calibrated rates, saturated readings."""
        seconds = self._frames * self.frame_time_s
        return Counters(calls=self._calls, frames=self._frames, hardware_seconds=seconds,
                        energy_joules=self._frames * self.calibration.joules_per_frame,
                        saturated_pixels=int(self._saturated))

    def reset_counters(self) -> None:
        self._calls = 0
        self._frames = 0
        self._saturated = torch.zeros((), dtype=torch.int64, device=self.torch_device)

    def describe(self) -> dict[str, Any]:
        return {"device": "opu-twin", "input_pixels": self.input_pixels, "output_pixels": self.output_pixels,
                "bit_depth": self.bit_depth, "frame_time_s": self.frame_time_s,
                "calibration": self.calibration.describe(), "reference_floor": REFERENCE_FLOOR,
                "feedback_seed": self.seed, "noise_seed": self.noise_seed, "compute": str(self.torch_device)}

    def state_dict(self) -> dict[str, Any]:
        """Noise generator and counters (the twin has no other state)."""
        return {"noise": self._noise.state_dict(), "calls": self._calls, "frames": self._frames,
                "saturated": int(self._saturated)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._noise.load_state_dict(state["noise"])
        self._calls, self._frames = int(state["calls"]), int(state["frames"])
        self._saturated = torch.tensor(int(state["saturated"]), dtype=torch.int64, device=self.torch_device)

    # -- internals -------------------------------------------------------------------------------------------
    def _augmented(self, frames: Any, reference: bool | torch.Tensor) -> torch.Tensor:
        """``(n, d + 1)`` frames with the reference flag appended, validated."""
        if not isinstance(frames, torch.Tensor) or frames.is_complex():
            raise TypeError(f"frames must be a real torch.Tensor of shape (n, {self.input_pixels}), got "
                            f"{type(frames).__name__ if not isinstance(frames, torch.Tensor) else frames.dtype}")
        if frames.ndim != 2 or frames.shape[1] != self.input_pixels:
            raise ValueError(f"frames must have shape (n, {self.input_pixels}), got {tuple(frames.shape)}")
        if frames.dtype != torch.bool and bool(((frames != 0) & (frames != 1)).any()):
            raise ValueError("frames must be binary (every value 0 or 1) for an optical device")
        n = frames.shape[0]
        if isinstance(reference, bool):
            flags = torch.full((n,), float(reference), dtype=self.dtype, device=self.torch_device)
        elif isinstance(reference, torch.Tensor) and reference.shape == (n,) and reference.dtype == torch.bool:
            flags = reference.to(device=self.torch_device, dtype=self.dtype)
        else:
            shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"reference must be a bool or a bool tensor of shape ({n},), got {shape}")
        x = torch.empty(n, self.input_pixels + 1, dtype=self.dtype, device=self.torch_device)
        x[:, :-1] = frames
        x[:, -1] = flags
        return x

    def _interpolate(self, lit: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``(n,)`` intensity per count for frames lighting ``lit`` elements with reference ``flags`` in {0, 1}."""
        grid = self._grid
        if grid.numel() == 1:
            return self._per_count[flags.long(), 0]
        upper = torch.searchsorted(grid, lit).clamp_(1, grid.numel() - 1)
        lower = upper - 1
        weight = ((lit - grid[lower]) / (grid[upper] - grid[lower])).clamp_(0.0, 1.0)
        rows = flags.long()
        return torch.lerp(self._per_count[rows, lower], self._per_count[rows, upper], weight)


def build(spec: ProjectorSpec) -> Projector:
    """Digital twin of a calibrated OPU (calibration file, or a simulated OPU calibrated on the spot)."""
    from optodfa.encoding import make_encoding
    from optodfa.optical import OpticalProjector
    from optodfa.profiles import load_profile
    from optodfa.readout import make_readout
    from optodfa.sim.opu import build as build_simulated

    overrides = dict(spec.overrides)
    path = overrides.pop("calibration", None)
    probes = overrides.pop("probes", None)
    profile = spec.profile
    if path is None and profile is not None and Path(str(profile)).suffix in (".h5", ".hdf5"):
        path, profile = profile, None
    if path is not None:
        unknown = sorted(set(overrides) - set(_TWIN_KEYS))
        if unknown:
            raise KeyError(f"unknown setting(s) {', '.join(map(repr, unknown))} for a twin from a calibration "
                           f"file; allowed: {', '.join(_TWIN_KEYS)}")
        if profile is not None:
            raise ValueError(f"device 'opu-twin' takes a calibration file or a profile to calibrate, not both; "
                             f"got calibration={str(path)!r} and profile={profile!r}")
        calibration = Calibration.load(path)
        settings = load_profile(None, overrides).values
        source: dict[str, Any] = {"calibration_file": str(path)}
    else:
        # No file: calibrate the simulated OPU of this profile, seeds and settings, then copy it.
        simulated = build_simulated(ProjectorSpec(spec.in_features, spec.out_features, spec.feedback_seed,
                                                  spec.noise_seed, profile, overrides, torch.device("cpu"),
                                                  spec.dtype))
        resolved = load_profile(profile, overrides)
        settings = resolved.values
        if isinstance(probes, str):
            probes = int(probes) if probes.strip().isdigit() else probes
        probes = None if probes is None else check_int("probes", probes, low=spec.in_features + 1)
        calibration = calibrate(simulated.device, spec.in_features, spec.out_features, probes=probes,  # type: ignore[attr-defined]
                                seed=spec.resolved_noise_seed)
        source = {"calibrated_profile": resolved.name, "calibration": calibration.describe()}
    if spec.in_features > calibration.in_features or spec.out_features > calibration.out_features:
        raise ValueError(f"the calibration covers d = {calibration.in_features} inputs and D = "
                         f"{calibration.out_features} pixels; asked for d = {spec.in_features}, "
                         f"D = {spec.out_features}")
    twin = TwinOPU(calibration, seed=spec.feedback_seed, noise_seed=spec.resolved_noise_seed, device=spec.device,
                   dtype=torch.float64 if spec.dtype == torch.float64 else torch.float32)
    kind = settings["encoding.kind"]
    params = {"ternary": {"threshold": settings["encoding.threshold"], "rule": settings["encoding.rule"]},
              "sign": {}, "bitplane": {"bits": settings["encoding.bits"]}}[kind]
    return OpticalProjector(twin, in_features=spec.in_features, out_features=spec.out_features,
                            encoding=make_encoding(kind, **params), readout=make_readout(settings["readout.mode"]),
                            evening=settings["readout.evening"], evening_floor=settings["readout.evening_floor"],
                            intensities=calibration.intensities, raw_matrix=twin.holographic_matrix,
                            description={**source, "feedback_seed": spec.feedback_seed,
                                         "noise_seed": spec.resolved_noise_seed})
