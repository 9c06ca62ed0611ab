"""Calibration: measure what an optical device applies, through the raw :class:`~optodfa.device.OpticalDevice`
protocol only, so the same code calibrates the simulator and any real driver.

What is measured (all from ``acquire`` calls; never from simulator internals):

* **Holographic matrix** ``M`` (``(D, d)``, intensity units): ``P`` random sign probes ``t ∈ {−1, 1}^d`` are shown
  through the 4-frame holographic readout (:class:`optodfa.readout.HolographicReadout`), which measures
  ``y = M t + noise`` for each; ``M̂ᵀ = argmin ‖Y − T Mᵀ‖`` by least squares (``T``: ``(P, d)`` probes, ``Y``:
  ``(P, D)`` measurements). The residuals give the noise of one plane measurement per pixel,
  ``σ̂_i² = ‖y_i − T m̂_i‖² / (P − d)``.
* **Stated accuracy.** With independent noise of variance ``σ_i²`` at pixel ``i``,
  ``E‖M̂ − M‖_F² = Σ_i σ_i² · tr((TᵀT)⁻¹)``, and ``tr((TᵀT)⁻¹) ≈ d / P`` for sign probes. The record's
  :meth:`Calibration.expected_error` is that prediction, relative to ``‖M‖_F``, over the pixels that did not
  saturate; the tests check the error against the simulator's true matrix agrees with it.
* **Reference intensity** ``I(r)`` per pixel: the mean of ``repeats`` reference-only frames, each reading taken
  at the centre of its ADC code (``code_offset``). Pixels reading full scale in any of them are *saturated*: the
  device clips ``I(x + r)`` there, so their rows of ``M̂`` are not its linear response (flagged, kept, and left
  out of :meth:`Calibration.expected_error` and, by default, :func:`calibration_error`).
* **Camera noise** as a photon-transfer curve in counts: noise variance ``a + b · mean`` (``b``: counts per
  photo-electron, ``a``: read noise), fitted to the variance of each pixel's readings over the repeated frames
  through the ADC's own contribution (:func:`code_variance`), from pixels that never read 0 or full scale.
* **Exposure**: the intensity per count the device reports for frames lighting ``k`` signal elements, with and
  without the reference, on a grid of ``k`` (auto-exposure makes it depend on the light).
* **Scale**: ``Ī_r`` (mean of ``I(r)``) and ``Ī₁`` (mean intensity of the all-lit frame divided by ``d``), as
  :class:`~optodfa.optical.OpticalProjector` measures them, unless the caller knows them.

The normalised matrix (:meth:`Calibration.matrix`) follows :class:`~optodfa.optical.OpticalProjector` exactly:
``M̂ / sqrt(2 Ī_r Ī₁)``, or with row evening ``diag(max(I(r), floor · Ī_r))^{-1/2} M̂ / sqrt(2 Ī₁)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch

from optodfa.atomic import atomic_path
from optodfa.device import OpticalDevice
from optodfa.integrity import DATASET_OPTIONS, USERBLOCK, RunFileError, chunks_for, open_sealed, seal
from optodfa.optical import Intensities
from optodfa.photon_transfer import Readings, code_variance, fit_photon_transfer
from optodfa.readout import HolographicReadout
from optodfa.seeding import check_seed, numpy_generator
from optodfa.validation import check_int, check_memory, check_real

__all__ = ["FORMAT", "FORMAT_VERSION", "Calibration", "CalibrationFileError", "MatrixError", "calibrate",
           "calibration_error", "code_variance", "matrix_error"]

FORMAT = "optodfa-calibration"
FORMAT_VERSION = 2  # 1: unsealed, datasets without checksums
_PROBE_LABEL = 11  # sub-stream of the calibration seed for the probe signs
_BATCH_FRAMES = 1 << 21  # camera readings per acquire call while probing


class CalibrationFileError(RunFileError, ValueError):
    """A calibration file that cannot be read as one (the message names the file and what is wrong).

    A :class:`~optodfa.integrity.RunFileError`, like every damaged or foreign file optodfa refuses (and a
    ``ValueError``, as it was before files were sealed)."""


class MatrixError(NamedTuple):
    """How far an estimated matrix is from the truth.

    Attributes:
        relative_error: ``‖estimate − truth‖_F / ‖truth‖_F``.
        cosine: cosine between the flattened matrices.
        pixels: rows (camera pixels) compared.
    """

    relative_error: float
    cosine: float
    pixels: int


@dataclasses.dataclass(frozen=True, eq=False)
class Calibration:
    """A calibrated record of an optical device (tensors are float64 on the CPU).

    Attributes:
        raw_matrix: ``(D, d)`` estimate of the holographic matrix ``M`` in the device's intensity units.
        reference_intensity: ``(D,)`` mean ``I(r)`` per pixel, intensity units.
        noise_std: ``(D,)`` standard deviation of one holographic plane measurement per pixel, intensity units.
        saturated: ``(D,)`` bool, pixels that read full scale in a reference-only frame.
        intensities: ``Ī₁`` and ``Ī_r`` used to normalise.
        read_variance: ``a`` of the photon-transfer fit: read noise variance before the ADC, counts².
        counts_per_electron: ``b`` of the photon-transfer fit (the camera gain), counts per photo-electron.
        exposure_lit: ``(K,)`` lit signal elements of the exposure grid.
        exposure_dark: ``(K,)`` intensity per count of frames without the reference.
        exposure_reference: ``(K,)`` intensity per count of frames with the reference.
        dark_offset: counts the camera reads in the dark.
        code_offset: intensity a code stands for, in counts above the code (0.5 for an ADC that truncates, 0 for
            one that rounds; 0 for unlimited bits).
        bit_depth: ADC bits, or ``None`` for unlimited.
        frame_time_s: seconds per frame.
        joules_per_frame: device energy per frame, J (from its counters; 0 if it reports none).
        probes: probe codes shown (``P``).
        repeats: repeats of each noise frame.
        frames: frames shown in all.
        covariance_trace: ``tr((TᵀT)⁻¹)`` of the probe design.
        seed: calibration seed (probe signs).
        timestamp: ISO 8601 UTC time the calibration finished.
        device: the device's ``describe()`` at calibration time.
    """

    raw_matrix: torch.Tensor
    reference_intensity: torch.Tensor
    noise_std: torch.Tensor
    saturated: torch.Tensor
    intensities: Intensities
    read_variance: float
    counts_per_electron: float
    exposure_lit: torch.Tensor
    exposure_dark: torch.Tensor
    exposure_reference: torch.Tensor
    dark_offset: float
    code_offset: float
    bit_depth: int | None
    frame_time_s: float
    joules_per_frame: float
    probes: int
    repeats: int
    frames: int
    covariance_trace: float
    seed: int
    timestamp: str
    device: dict[str, Any]

    @property
    def out_features(self) -> int:
        """``D``: camera pixels calibrated."""
        return self.raw_matrix.shape[0]

    @property
    def in_features(self) -> int:
        """``d``: signal elements calibrated."""
        return self.raw_matrix.shape[1]

    def matrix(self, *, evening: bool = False, evening_floor: float = 0.05) -> torch.Tensor:
        """``(D, d)`` float64 normalised matrix, as :meth:`OpticalProjector.effective_matrix` computes it."""
        check_real("evening_floor", evening_floor, low=0.0, high=1.0, low_open=True)
        levels = self.intensities
        if not evening:
            return self.raw_matrix * (2.0 * levels.reference * levels.element) ** -0.5
        reference = self.reference_intensity.clamp_min(evening_floor * levels.reference)
        return self.raw_matrix * (reference.rsqrt() * (2.0 * levels.element) ** -0.5)[:, None]

    def expected_error(self) -> float:
        """Predicted ``‖M̂ − M‖_F / ‖M‖_F`` over unsaturated pixels, from the residual noise and the probe design.

        ``‖M‖_F²`` is estimated as ``‖M̂‖_F²`` minus the expected squared error (noise inflates ``‖M̂‖``).
        """
        keep = ~self.saturated
        error2 = float(self.noise_std[keep].square().sum()) * self.covariance_trace
        signal2 = float(self.raw_matrix[keep].square().sum()) - error2
        return math.sqrt(error2 / signal2) if signal2 > 0 else math.inf

    def noise_variance_counts(self, mean_counts: torch.Tensor) -> torch.Tensor:
        """Photon-transfer variance of a reading, counts², at ``mean_counts`` above the dark offset."""
        return self.read_variance + self.counts_per_electron * mean_counts.clamp_min(0.0)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no arrays)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "in_features": self.in_features,
                "out_features": self.out_features, "probes": self.probes, "repeats": self.repeats,
                "frames": self.frames, "seed": self.seed, "timestamp": self.timestamp,
                "expected_error": self.expected_error(), "saturated_pixels": int(self.saturated.sum()),
                "mean_noise_std": float(self.noise_std.mean()),
                "intensities": dataclasses.asdict(self.intensities), "read_variance": self.read_variance,
                "counts_per_electron": self.counts_per_electron, "bit_depth": self.bit_depth,
                "frame_time_s": self.frame_time_s, "device": self.device}

    # -- files -----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record to a sealed HDF5 file (:mod:`optodfa.integrity`), atomically (a temporary file next to
        it, then a rename)."""
        target = Path(path)
        if not target.parent.is_dir():
            raise FileNotFoundError(f"cannot save calibration to {str(target)!r}: folder {str(target.parent)!r} "
                                    f"does not exist")
        with atomic_path(target) as temporary:
            with h5py.File(temporary, "w", userblock_size=USERBLOCK) as file:
                attrs = file.attrs
                attrs["format"], attrs["version"] = FORMAT, FORMAT_VERSION
                for name in _SCALARS:
                    attrs[name] = getattr(self, name)
                attrs["bit_depth"] = -1 if self.bit_depth is None else self.bit_depth
                attrs["intensities"] = json.dumps(dataclasses.asdict(self.intensities))
                attrs["device"] = json.dumps(self.device)
                for name in _ARRAYS:
                    data = getattr(self, name).numpy()
                    chunks, maxshape = chunks_for(data.shape)
                    file.create_dataset(name, data=data, chunks=chunks, maxshape=maxshape, **DATASET_OPTIONS)
            seal(temporary, FORMAT, FORMAT_VERSION)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a record written by :meth:`save`; its seal is verified before HDF5 sees the file.

        Raises:
            FileNotFoundError: no such file.
            CalibrationFileError: not a sealed calibration file, damaged (checksum, seal, HDF5 structure or a
                dataset's fletcher32 checksum), another format version, or a missing or malformed field.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"calibration file {str(source)!r} does not exist")
        try:
            with open_sealed(source, FORMAT, (FORMAT_VERSION,)) as file:
                return cls._read(source, file)
        except CalibrationFileError:
            raise
        except RunFileError as exc:
            raise CalibrationFileError(str(exc)) from None  # it names the file already
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise CalibrationFileError(f"cannot read calibration file {str(source)!r}: {exc}") from None

    @classmethod
    def _read(cls, source: Path, file: h5py.File) -> Calibration:
        attrs = file.attrs
        if attrs.get("format") != FORMAT:
            raise CalibrationFileError(f"{str(source)!r} is not an optodfa calibration file (attribute "
                                       f"format = {attrs.get('format')!r}, expected {FORMAT!r})")
        version = _plain(attrs.get("version", -1))
        if version != FORMAT_VERSION:
            raise CalibrationFileError(f"calibration file {str(source)!r} has format version {version}; this "
                                       f"optodfa reads version {FORMAT_VERSION}")
        missing = [n for n in (*_SCALARS, "bit_depth", "intensities", "device") if n not in attrs]
        missing += [n for n in _ARRAYS if not isinstance(file.get(n), h5py.Dataset)]
        if missing:
            raise CalibrationFileError(f"calibration file {str(source)!r} lacks {', '.join(missing)}")
        values: dict[str, Any] = {n: torch.from_numpy(np.asarray(file[n][()])) for n in _ARRAYS}
        for name in _SCALARS:
            values[name] = _plain(attrs[name])
        bits = int(attrs["bit_depth"])
        values["bit_depth"] = None if bits < 0 else bits
        values["intensities"] = Intensities(**json.loads(attrs["intensities"]))
        values["device"] = json.loads(attrs["device"])
        return cls(**values)


_SCALARS = ("read_variance", "counts_per_electron", "dark_offset", "code_offset", "frame_time_s", "joules_per_frame",
            "probes", "repeats", "frames", "covariance_trace", "seed", "timestamp")
_ARRAYS = ("raw_matrix", "reference_intensity", "noise_std", "saturated", "exposure_lit", "exposure_dark",
           "exposure_reference")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- measuring -----------------------------------------------------------------------------------------------------
def calibrate(device: OpticalDevice, in_features: int, out_features: int, *, probes: int | None = None,
              repeats: int = 32, exposure_points: int = 17, intensities: Intensities | None = None,
              code_offset: float = 0.5, seed: int) -> Calibration:
    """Calibrate the first ``in_features`` signal elements and ``out_features`` camera pixels of ``device``.

    Args:
        device: any :class:`~optodfa.device.OpticalDevice` (open; calibration only calls ``acquire``,
            ``counters`` and ``describe``).
        in_features: ``d``, signal elements (at most ``device.input_pixels``).
        out_features: ``D``, camera pixels (at most ``device.output_pixels``).
        probes: sign probes ``P`` (each costs 4 frames), more than ``d``; default ``max(512, 4 d)``. The error of
            ``M̂`` falls as ``sqrt(d / P)``.
        repeats: repeats of the reference-only and all-lit frames (noise and scale), at least 2.
        exposure_points: grid points of the exposure table over ``0..d`` lit elements, at least 2.
        intensities: ``Ī₁`` and ``Ī_r`` if known (then only the per-pixel ``I(r)`` is measured for them).
        code_offset: where inside its step an ADC code sits, in counts: a reading ``k`` stands for the intensity of
            ``k + code_offset`` counts. 0.5 for an ADC that truncates (optodfa's camera model; the common
            transfer function of image sensors), 0 for one that rounds. Ignored for unlimited bits. Averages of
            truncated readings are half a count low; near dark, that bias is the whole signal.
        seed: seed of the probe signs (keyword-only).

    Returns:
        The :class:`Calibration` record; frames used are in ``Calibration.frames``.
    """
    if not isinstance(device, OpticalDevice):
        raise TypeError(f"device must implement the OpticalDevice protocol (input_pixels, output_pixels, "
                        f"bit_depth, frame_time_s, acquire, ...), got {type(device).__name__}")
    d = check_int("in_features", in_features, low=1, high=device.input_pixels)
    big_d = check_int("out_features", out_features, low=1, high=device.output_pixels)
    p = max(512, 4 * d) if probes is None else check_int("probes", probes, low=d + 1)
    repeats = check_int("repeats", repeats, low=2)
    exposure_points = check_int("exposure_points", exposure_points, low=2)
    if intensities is not None and not isinstance(intensities, Intensities):
        raise TypeError(f"intensities must be an optodfa.optical.Intensities or None, got "
                        f"{type(intensities).__name__}")
    code_offset = 0.0 if device.bit_depth is None else check_real("code_offset", code_offset, low=0.0, high=1.0,
                                                                    high_open=True)
    seed = check_seed(seed)
    # Probe signs (P x d) and the measurements, their residual and a product of the same size (3 x P x D), float64.
    check_memory(f"calibration with probes = {p} (d = {d}, D = {big_d})", 8.0 * p * (d + 3 * big_d))
    start = device.counters()

    signs = numpy_generator(seed, _PROBE_LABEL).integers(0, 2, size=(p, d)).astype(np.float64) * 2.0 - 1.0
    design = torch.from_numpy(signs)
    measured = _probe(device, design, big_d)
    # Normal equations through a Cholesky factor: TᵀT is a well-conditioned d x d matrix for sign probes, and
    # its inverse is needed anyway for the predicted error.
    factor = torch.linalg.cholesky(design.T @ design)
    solution = torch.cholesky_solve(design.T @ measured, factor)  # (d, D)
    residual = measured - design @ solution
    noise_std = (residual.square().sum(dim=0) / (p - d)).sqrt()
    covariance_trace = float(torch.cholesky_inverse(factor).trace())

    reference, lit = _noise_frames(device, d, big_d, repeats, code_offset)
    # The top code always clips; a full well may clip lower, which only the device's saturated count reveals.
    top = min(reference.saturation_level, math.inf if device.bit_depth is None else float(2**device.bit_depth - 1))
    saturated = (reference.counts >= top).any(dim=0)
    reference_intensity = reference.intensity.mean(dim=0)
    if intensities is None:
        intensities = Intensities(element=float(lit.intensity.mean()) / d,
                                  reference=float(reference_intensity.mean()))
    read_variance, gain = fit_photon_transfer([reference, lit], top, quantised=device.bit_depth is not None)
    exposure_lit, exposure_dark, exposure_reference = _exposure_table(device, d, exposure_points)

    end = device.counters()
    frames = end.frames - start.frames
    joules = (end.energy_joules - start.energy_joules) / frames if frames > 0 else 0.0
    return Calibration(
        raw_matrix=solution.T.contiguous(), reference_intensity=reference_intensity, noise_std=noise_std,
        saturated=saturated, intensities=intensities, read_variance=read_variance, counts_per_electron=gain,
        exposure_lit=exposure_lit, exposure_dark=exposure_dark, exposure_reference=exposure_reference,
        dark_offset=reference.dark_offset, code_offset=code_offset, bit_depth=device.bit_depth,
        frame_time_s=float(device.frame_time_s),
        joules_per_frame=float(joules), probes=p, repeats=repeats, frames=int(frames),
        covariance_trace=covariance_trace, seed=seed,
        timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device=json.loads(json.dumps(device.describe(), default=str)))


def _pad(frames: torch.Tensor, width: int) -> torch.Tensor:
    extra = width - frames.shape[1]
    return torch.nn.functional.pad(frames, (0, extra)) if extra else frames


def _probe(device: OpticalDevice, design: torch.Tensor, pixels: int) -> torch.Tensor:
    """``(P, D)`` holographic measurements ``M t`` of the sign probes, in batches that bound memory."""
    readout = HolographicReadout()
    batch = max(1, _BATCH_FRAMES // (readout.frames_per_plane * device.output_pixels))
    parts = []
    for first in range(0, design.shape[0], batch):
        codes = design[first:first + batch]
        plus = _pad(codes > 0, device.input_pixels)
        minus = _pad(codes < 0, device.input_pixels)
        parts.append(readout.measure(device, plus, minus)[:, :pixels].to(device="cpu", dtype=torch.float64))
    return torch.cat(parts)


def _noise_frames(device: OpticalDevice, d: int, pixels: int, repeats: int,
                  code_offset: float) -> tuple[Readings, Readings]:
    """``repeats`` reference-only frames and ``repeats`` all-lit frames without the reference."""
    out = []
    for reference in (True, False):
        frames = torch.zeros(repeats, device.input_pixels, dtype=torch.bool)
        if not reference:
            frames[:, :d] = True
        acquisition = device.acquire(frames, reference=reference)
        every = acquisition.counts.to(device="cpu", dtype=torch.float64)
        dark = float(acquisition.dark_offset)
        per_count = acquisition.intensity_per_count.to(device="cpu", dtype=torch.float64)[:, None]
        intensity = (every[:, :pixels] + (code_offset - dark)) * per_count
        out.append(Readings(every[:, :pixels], intensity, dark, code_offset,
                           _saturation_level(every, int(acquisition.saturated))))
    return out[0], out[1]


def _saturation_level(counts: torch.Tensor, saturated: int) -> float:
    """The reading at and above which the device clips: the ``saturated``-th highest of ``counts``.

    Taken from the count the device reports rather than from ``2^bits − 1``, because a full well can clip below
    the ADC's top code.
    """
    if saturated <= 0:
        return math.inf
    return float(counts.flatten().topk(min(saturated, counts.numel())).values[-1])


def _exposure_table(device: OpticalDevice, d: int, points: int) -> tuple[torch.Tensor, ...]:
    """Intensity per count for frames lighting the first ``k`` elements, ``k`` on a grid over ``0..d``."""
    lit = torch.from_numpy(np.unique(np.round(np.linspace(0, d, points)).astype(np.int64)))
    frames = torch.zeros(lit.numel(), device.input_pixels, dtype=torch.bool)
    for row, k in enumerate(lit.tolist()):
        frames[row, :k] = True
    per_count = []
    for reference in (False, True):
        # One frame per call: a device with one exposure per acquisition ("batch" auto-exposure) must not make
        # the bright frames set the exposure of the dark ones.
        values = [device.acquire(frames[row:row + 1], reference=reference).intensity_per_count[0]
                  for row in range(frames.shape[0])]
        per_count.append(torch.stack(values).to(device="cpu", dtype=torch.float64))
    return lit.to(torch.float64), per_count[0], per_count[1]


# -- comparing -----------------------------------------------------------------------------------------------------
def matrix_error(estimate: torch.Tensor, truth: torch.Tensor) -> MatrixError:
    """Relative Frobenius error and cosine of ``estimate`` against ``truth`` (same shape, any float dtype)."""
    for name, value in (("estimate", estimate), ("truth", truth)):
        if not isinstance(value, torch.Tensor) or value.ndim != 2:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a 2-D tensor (D, d), got {shape}")
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate and truth must have the same shape, got {tuple(estimate.shape)} and "
                         f"{tuple(truth.shape)}")
    a = estimate.detach().to(device="cpu", dtype=torch.float64)
    b = truth.detach().to(device="cpu", dtype=torch.float64)
    norm = float(b.norm())
    if norm == 0.0:
        raise ValueError("truth is the zero matrix; a relative error is undefined")
    cosine = float((a * b).sum() / (a.norm() * norm).clamp_min(1e-300))
    return MatrixError(float((a - b).norm()) / norm, cosine, a.shape[0])


def calibration_error(calibration: Calibration, true_matrix: torch.Tensor, *,
                      include_saturated: bool = False) -> MatrixError:
    """Error of ``calibration.raw_matrix`` against the device's true ``(D, d)`` holographic matrix.

    A simulator knows ``M`` (``SimulatedOPU.holographic_matrix()[:D, :d]``); saturated pixels are left out unless
    ``include_saturated`` (their rows are clipped, not noisy).
    """
    if not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be a Calibration, got {type(calibration).__name__}")
    keep = torch.ones_like(calibration.saturated) if include_saturated else ~calibration.saturated
    if isinstance(true_matrix, torch.Tensor) and true_matrix.shape != calibration.raw_matrix.shape:
        raise ValueError(f"true_matrix must have the calibrated shape {tuple(calibration.raw_matrix.shape)} "
                         f"(D, d), got {tuple(true_matrix.shape)}")
    if not isinstance(true_matrix, torch.Tensor):
        raise ValueError(f"true_matrix must be a 2-D tensor (D, d), got {type(true_matrix).__name__}")
    return matrix_error(calibration.raw_matrix[keep], true_matrix.detach().cpu()[keep])
