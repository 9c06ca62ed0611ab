"""The simulated OPU: a raw :class:`~optodfa.device.OpticalDevice`, and the ``opu-sim`` projector factory.

:class:`SimulatedOPU` models laser → DMD (:mod:`optodfa.sim.dmd`) → scattering medium
(:mod:`optodfa.sim.transmission`, drifting per :mod:`optodfa.sim.drift`) → camera (:mod:`optodfa.sim.camera`).
For a frame ``x`` (signal elements) with the reference flag ``ρ ∈ {0, 1}`` the field at the camera is
``F = C x + ρ f`` with ``C`` the ``(M, d)`` element columns and ``f`` the reference field, and the intensity
``I = |F|²`` in units of ``σ²`` (the mean intensity one lit mirror gives at one pixel).

Everything runs on the torch device the simulator was built for (CPU or CUDA), in float32 (complex64 fields) or
float64: the exposure factor ``sqrt(q τ)`` is folded into the frame so one real matrix product gives the real and
imaginary parts of the fields, then the camera works in place. The saturation count stays a device tensor until
:meth:`SimulatedOPU.counters` reads it. Frames are processed in chunks of about ``chunk_pixels`` camera readings to
bound memory and keep the passes in cache, except where the camera reads them in one compiled pass that keeps no
per-reading scratch (narrow binary frames, the counter noise stream).
"""

from __future__ import annotations

from typing import Any

import torch

from optodfa.device import Acquisition, Counters, Projector
from optodfa.registry import ProjectorSpec
from optodfa.seeding import check_seed
from optodfa.sim.camera import Camera, count_dtype
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.drift import Drift
from optodfa.sim.lifecycle import NoHardware
from optodfa.sim.noise import NoiseSource
from optodfa.sim.speckle import FramePlan
from optodfa.sim.transmission import (
    GENERATOR_VERSION,
    STREAM_MIRRORS,
    TILE_ROWS,
    TransmissionMatrix,
    element_columns,
    reference_field,
    summed_columns,
)
from optodfa.sim.workspace import Workspace, fresh
from optodfa.validation import check_choice, check_int, check_memory, check_real

__all__ = ["SimulatedOPU", "build"]

CHUNK_PIXELS = 1 << 21
# A GPU needs many frames per product to use its arithmetic (a (2 × d) @ (d × 2M) product at D = 10⁶ only streams
# the matrix): 2^27 readings, 128 frames at 10⁶ pixels, about 5 GB of float32 scratch at most.
CHUNK_PIXELS_GPU = 1 << 27
# Readings that go through the camera at once: with its scratch buffers (fields, intensities, noise indices,
# noise, readings) a block of 2^16 float32 readings stays in a 2 MB L2 cache; each pass then costs about a fifth of
# a pass over memory. Narrower blocks than MIN_BLOCK_WIDTH pixels pay more in per-block overhead than they save.
BLOCK_PIXELS = 1 << 16
MIN_BLOCK_WIDTH = 256
_NOISE_LABEL = 7  # sub-stream of the noise seed for camera and drift noise
_CPU_NOISE = {"counter": "SplitMix64 counter stream + 16-bit normal table",
              "sfc64": "numpy SFC64 + 16-bit normal table"}


class SimulatedOPU(NoHardware):
    """A simulated optical processing unit behind the :class:`~optodfa.device.OpticalDevice` protocol.

    Args:
        layout: DMD layout (signal elements, macropixel, reference region).
        camera: camera model.
        output_pixels: camera pixels read per frame (``M``).
        seed: feedback seed: the transmission matrix (keyword-only).
        noise_seed: seed of camera and drift noise (keyword-only).
        frame_time_s: seconds per frame (>= the camera's maximum exposure).
        power_w: electrical power in watts while running.
        drift: medium drift, or ``None``.
        macropixel_shortcut: draw one column of ``m``-fold variance per element and one reference vector
            (statistically exact, see :mod:`optodfa.sim.transmission`) instead of summing mirror columns.
        variance: ``σ²``, intensity units per lit mirror.
        device: torch device to compute on.
        dtype: ``torch.float32`` or ``torch.float64`` (complex64 or complex128 fields).
        chunk_pixels: camera readings processed per chunk (a chunk shares one medium state and one noise draw);
            ``None``: ``CHUNK_PIXELS`` on the CPU, ``CHUNK_PIXELS_GPU`` elsewhere.
        block_pixels: camera readings the camera takes at once within a chunk (a cache-sized block of columns).
        noise_stream: the CPU noise stream, ``"counter"`` or ``"sfc64"`` (:mod:`optodfa.sim.noise`).
    """

    def __init__(self, layout: DMDLayout, camera: Camera, *, output_pixels: int, seed: int, noise_seed: int,
                 frame_time_s: float = 500e-6, power_w: float = 30.0, drift: Drift | None = None,
                 macropixel_shortcut: bool = True, variance: float = 1.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 chunk_pixels: int | None = None, block_pixels: int = BLOCK_PIXELS,
                 noise_stream: str = "counter") -> None:
        self.layout = layout
        self.camera = camera
        self.output_pixels = check_int("output_pixels", output_pixels, low=1)
        self.input_pixels = layout.signal_elements
        self.bit_depth = camera.bits
        self.frame_time_s = check_real("device.frame_time", frame_time_s, low=0.0, low_open=True)
        if camera.exposure_s > self.frame_time_s:
            raise ValueError(f"camera.exposure ({camera.exposure_s * 1e6:g} us) must not exceed device.frame_time "
                             f"({self.frame_time_s * 1e6:g} us)")
        self.power_w = check_real("device.power", power_w, low=0.0)
        self.drift = drift
        self.macropixel_shortcut = macropixel_shortcut
        self.variance = check_real("variance", variance, low=0.0, low_open=True)
        self.torch_device = torch.device(device)
        self.dtype = check_choice("dtype", dtype, (torch.float32, torch.float64))
        if chunk_pixels is None:
            chunk_pixels = CHUNK_PIXELS if torch.device(device).type == "cpu" else CHUNK_PIXELS_GPU
        self.chunk_pixels = check_int("chunk_pixels", chunk_pixels, low=1)
        self.block_pixels = check_int("block_pixels", block_pixels, low=1)
        self.seed = check_seed(seed, "seed")
        self.noise_seed = check_seed(noise_seed, "noise_seed")
        self._complex = torch.complex64 if dtype == torch.float32 else torch.complex128
        self._initial_fields = self._draw_fields().to(self.torch_device)
        self._variances = torch.tensor([layout.macropixel * variance] * layout.signal_elements
                                       + [layout.reference_mirrors * variance], dtype=self.dtype,
                                       device=self.torch_device)
        self._noise = NoiseSource(seed=self.noise_seed, device=self.torch_device, labels=(_NOISE_LABEL,),
                                  stream=noise_stream)
        self._workspace = Workspace()
        self._reset_state()

    # -- the raw protocol ------------------------------------------------------------------------------------
    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        """Show ``frames`` (``(n, input_pixels)``, values in {0, 1}) and read the camera.

        Args:
            frames: binary frames over the signal elements (bool frames skip the value check).
            reference: light the reference region for every frame (``bool``) or per frame (``(n,)`` bool).

        Returns:
            :class:`~optodfa.device.Acquisition`: ``(n, output_pixels)`` counts (uint8 up to 8 bits, int16 up to
            15, int32 for 16, float32/64 for unlimited bits), ``(n,)`` intensity per count, the dark offset, and
            the saturated readings as a 0-d tensor (no host round trip).
        """
        frames = self.layout.check_frames(frames).to(self.torch_device)
        n = frames.shape[0]
        flags = self._reference_flags(reference, n)
        x = torch.empty(n, self.input_pixels + 1, dtype=self.dtype, device=self.torch_device)
        x[:, :-1] = frames
        x[:, -1] = flags
        mean_intensity = self.layout.lit_mirrors(x[:, :-1], x[:, -1]) * self.variance
        tau = self.camera.exposure(mean_intensity.to(self.dtype))
        electrons_per_intensity = tau * self.camera.photon_rate
        counts_dtype = count_dtype(self.camera.bits) if self.camera.bits is not None else self.dtype
        counts = fresh((n, self.output_pixels), counts_dtype, self.torch_device)
        saturated = torch.zeros((), dtype=torch.int64, device=self.torch_device)
        # The one-pass camera keeps no per-reading scratch: its chunks are the drift's segments only, so a
        # repeated frame's levels are computed once per batch (at D = 10⁵ a bound of 2^21 readings is 20 frames).
        one_pass = self.camera.reads_in_one_pass(FramePlan.compiles(x.shape[1], self.dtype, self.torch_device),
                                                 self._noise)
        for start, stop in self._chunks(n, bounded=not one_pass):
            plan = self._expected_electrons(x[start:stop], electrons_per_intensity[start:stop])
            saturated += self.camera.read_blocks(plan, self._noise, out=counts[start:stop],
                                                 workspace=self._workspace, width=self._block_width(stop - start))
        self._frames_shown += n
        self._saturated += saturated
        self._calls += 1
        per_count = (electrons_per_intensity * self.camera.gain).reciprocal()
        return Acquisition(counts, per_count, float(self.camera.dark_offset), saturated)  # type: ignore[arg-type]

    def intensity(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> torch.Tensor:
        """Noiseless ``(n, output_pixels)`` intensity ``|R x|²`` (units of σ²) with the current medium.

        Does not advance drift, count frames or draw noise: a ground truth for tests and calibration.
        """
        frames = self.layout.check_frames(frames)
        n = frames.shape[0]
        x = torch.cat([frames.to(device=self.torch_device, dtype=self.dtype),
                       self._reference_flags(reference, n)[:, None]], dim=1)
        fields = x.to(self._complex) @ self._fields.T
        return fields.abs().square()

    def field_matrix(self) -> torch.Tensor:
        """``(M, d + 1)`` complex fields now: element columns, then the reference field (a copy)."""
        return self._fields.clone()

    def holographic_matrix(self) -> torch.Tensor:
        """``(M, d)`` real ``M = 2 Re(diag(conj f) C)`` in intensity units: ``I(x+r) − I(x) − I(r) = M x``."""
        reference = self._fields[:, -1:]
        return 2.0 * (reference.conj() * self._fields[:, :-1]).real

    def initial_holographic_matrix(self) -> torch.Tensor:
        """:meth:`holographic_matrix` of the medium as built, before any drift step (a copy)."""
        reference = self._initial_fields[:, -1:]
        return 2.0 * (reference.conj() * self._initial_fields[:, :-1]).real

    def initial_reference_intensity(self) -> torch.Tensor:
        """:meth:`reference_intensity` of the medium as built, before any drift step."""
        return self._initial_fields[:, -1].abs().square()

    def reference_intensity(self) -> torch.Tensor:
        """``(M,)`` noiseless ``I(r) = |f|²`` in intensity units."""
        return self._fields[:, -1].abs().square()

    def expected_intensities(self) -> tuple[float, float]:
        """``(Ī₁, Ī_r)``: mean intensity per pixel of one lit element and of the reference region (units of σ²)."""
        return self.layout.macropixel * self.variance, self.layout.reference_mirrors * self.variance

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def counters(self) -> Counters:
        """Acquire calls, frames, hardware seconds (frames x frame time), joules (seconds x power), saturation."""
        seconds = self._frames_shown * self.frame_time_s
        return Counters(calls=self._calls, frames=self._frames_shown, hardware_seconds=seconds,
                        energy_joules=seconds * self.power_w, saturated_pixels=int(self._saturated))

    def reset_counters(self) -> None:
        """Zero the counters (drift keeps its own frame clock)."""
        self._calls = 0
        self._frames_shown = 0
        self._saturated = torch.zeros((), dtype=torch.int64, device=self.torch_device)

    def describe(self) -> dict[str, Any]:
        return {
            "device": "opu-sim", "input_pixels": self.input_pixels, "output_pixels": self.output_pixels,
            "bit_depth": self.bit_depth, "frame_time_s": self.frame_time_s, "power_w": self.power_w,
            "layout": self.layout.describe(), "camera": self.camera.describe(),
            "drift": None if self.drift is None else self.drift.describe(),
            "transmission": {"generator_version": GENERATOR_VERSION, "tile_rows": TILE_ROWS,
                             "dtype": str(self._complex), "variance": self.variance,
                             "macropixel_shortcut": self.macropixel_shortcut},
            "feedback_seed": self.seed, "noise_seed": self.noise_seed,
            "noise": {"exact_gaussian": self._noise.exact_gaussian,
                      "backend": "torch" if self._noise.exact_gaussian else _CPU_NOISE[self._noise.stream]},
            "compute": str(self.torch_device),
        }

    def state_dict(self) -> dict[str, Any]:
        """Noise generator, drift state (frame clock, steps taken, current fields) and counters."""
        return {"noise": self._noise.state_dict(), "frames_total": self._frames_total,
                "drift_steps": self._drift_steps,
                "fields": None if self.drift is None else self._fields.detach().cpu(),
                "calls": self._calls, "frames": self._frames_shown, "saturated": int(self._saturated)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._noise.load_state_dict(state["noise"])
        self._frames_total = int(state["frames_total"])
        self._drift_steps = int(state["drift_steps"])
        if state["fields"] is not None:
            self._fields = state["fields"].to(self.torch_device)
            self._update_weights()
        self._calls = int(state["calls"])
        self._frames_shown = int(state["frames"])
        self._saturated = torch.tensor(int(state["saturated"]), dtype=torch.int64, device=self.torch_device)

    # -- internals -------------------------------------------------------------------------------------------
    def _draw_fields(self) -> torch.Tensor:
        """``(M, d + 1)`` complex element columns and reference field on the CPU (from the feedback seed)."""
        layout, rows = self.layout, self.output_pixels
        if self.macropixel_shortcut:
            columns = element_columns(self.seed, rows, layout.signal_elements, macropixel=layout.macropixel,
                                      variance=self.variance, dtype=self._complex)
            ref = reference_field(self.seed, rows, mirrors=layout.reference_mirrors, variance=self.variance,
                                  dtype=self._complex)
            return torch.cat([columns, ref[:, None]], dim=1)
        mirrors = TransmissionMatrix(self.seed, (rows, layout.mirrors), self._complex, self.variance, STREAM_MIRRORS)
        groups = [layout.element_mirrors(j) for j in range(layout.signal_elements)] + [layout.reference_region]
        return summed_columns(mirrors, groups)

    def _reset_state(self) -> None:
        self._fields = self._initial_fields.clone()
        self._update_weights()
        self._frames_total = 0
        self._drift_steps = 0
        self.reset_counters()

    def _update_weights(self) -> None:
        # (d + 1, 2M) real: x @ weights gives [Re F | Im F] in one product.
        self._weights = torch.cat([self._fields.real.T, self._fields.imag.T], dim=1).contiguous()

    def _reference_flags(self, reference: bool | torch.Tensor, n: int) -> torch.Tensor:
        if isinstance(reference, bool):
            return torch.full((n,), float(reference), dtype=self.dtype, device=self.torch_device)
        if not isinstance(reference, torch.Tensor) or reference.shape != (n,) or reference.dtype != torch.bool:
            shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"reference must be a bool or a bool tensor of shape ({n},), got {shape}"
                             + (f" {reference.dtype}" if isinstance(reference, torch.Tensor) else ""))
        return reference.to(device=self.torch_device, dtype=self.dtype)

    def _chunks(self, n: int, *, bounded: bool = True) -> list[tuple[int, int]]:
        """Frame ranges sharing one medium state and, when ``bounded``, of about ``chunk_pixels`` readings at most."""
        rows = max(1, self.chunk_pixels // self.output_pixels) if bounded else max(1, n)
        spans = [(0, n)] if self.drift is None else list(self.drift.segments(self._frames_total, n))
        chunks = []
        for start, stop in spans:
            chunks.extend((a, min(a + rows, stop)) for a in range(start, stop, rows))
        return chunks

    def _expected_electrons(self, x: torch.Tensor, scale: torch.Tensor) -> FramePlan:
        """Expected photo-electrons of augmented frames ``x`` (``(k, d + 1)``) with ``scale`` (``(k,)``)
        photo-electrons per unit intensity, block of pixels by block (see :class:`optodfa.sim.speckle.FramePlan`)."""
        if self.drift is not None:
            self._advance_drift(x.shape[0])
        return FramePlan(x, self._weights, scale, self._workspace)

    def _block_width(self, frames: int) -> int:
        """Pixel columns the camera takes at once for ``frames`` frames: about ``BLOCK_PIXELS`` readings."""
        return max(MIN_BLOCK_WIDTH, self.block_pixels // frames)

    def _advance_drift(self, count: int) -> None:
        assert self.drift is not None
        needed = self.drift.steps_at(self._frames_total)
        while self._drift_steps < needed:
            self._fields = self.drift.step(self._fields, self._variances, self._noise)
            self._drift_steps += 1
            self._update_weights()
        self._frames_total += count


def build(spec: ProjectorSpec) -> Projector:
    """Simulated OPU (DMD, complex Gaussian medium, camera with noise and ADC) from a device profile."""
    from optodfa.optical import Intensities, OpticalProjector
    from optodfa.profiles import SCHEMA, ProfileError, load_profile

    profile = load_profile(spec.profile, spec.overrides)
    if profile.kind != "opu":
        raise ProfileError(f"device 'opu-sim' needs an OPU profile; {profile.name!r} is a {profile.kind!r} profile")
    p = profile.values
    pixels = p["camera.rows"] * p["camera.cols"]
    if spec.out_features > pixels:
        raise ValueError(f"out_features = {spec.out_features} camera pixels exceed the camera of profile "
                         f"{profile.name!r}: {p['camera.rows']} x {p['camera.cols']} = {pixels} pixels")
    # Element columns and reference field (complex), their initial copy and the real weights: 4 x M x (d + 1).
    itemsize = 8 if spec.dtype == torch.float64 else 4
    check_memory(f"a simulated OPU of d = {spec.in_features} elements x D = {spec.out_features} camera pixels",
                 4.0 * 2 * itemsize * spec.out_features * (spec.in_features + 1))
    layout = DMDLayout(p["dmd.rows"], p["dmd.cols"], p["dmd.macropixel"], spec.in_features,
                       p["dmd.reference_mirrors"])
    camera = Camera(bits=p["camera.bits"], photon_rate=p["camera.photon_rate"], exposure_s=p["camera.exposure"],
                    auto_exposure=p["camera.auto_exposure"], auto_exposure_target=p["camera.auto_exposure_target"],
                    auto_exposure_quantile=p["camera.auto_exposure_quantile"], shot_noise=p["camera.shot_noise"],
                    read_noise_e=p["camera.read_noise"], dark_offset=p["camera.dark_offset"],
                    full_well_e=p["camera.full_well"], gain=p["camera.gain"],
                    poisson_exact_below=p["camera.poisson_exact_below"])
    drift = Drift(p["drift.rho"], p["drift.period"]) if p["drift.enabled"] else None
    device = SimulatedOPU(layout, camera, output_pixels=spec.out_features, seed=spec.feedback_seed,
                          noise_seed=spec.resolved_noise_seed, frame_time_s=p["device.frame_time"],
                          power_w=p["device.power"], drift=drift,
                          macropixel_shortcut=p["medium.macropixel_shortcut"], device=spec.device,
                          dtype=torch.float64 if spec.dtype == torch.float64 else torch.float32,
                          noise_stream=p["noise.stream"])
    element, reference = device.expected_intensities()
    # The overrides are already in `profile` (the simulator reads every key of the schema).
    return OpticalProjector.from_profile(device, profile, in_features=spec.in_features,
                                         out_features=spec.out_features, uses=SCHEMA,
                                         intensities=Intensities(element, reference),
                                         raw_matrix=device.holographic_matrix,
                                         description={"feedback_seed": spec.feedback_seed,
                                                      "noise_seed": spec.resolved_noise_seed})
