"""Calibration through the raw protocol: accuracy against the simulator's true matrix, noise, files, errors."""

from __future__ import annotations

import math
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from optodfa.calibration import (
    FORMAT,
    FORMAT_VERSION,
    Calibration,
    CalibrationFileError,
    calibrate,
    calibration_error,
    code_variance,
    matrix_error,
)
from optodfa.device import Acquisition, Counters
from optodfa.integrity import seal
from optodfa.optical import Intensities, OpticalProjector
from optodfa.registry import build_projector

D_IN, D_OUT = 8, 512


def simulated(profile: str | None = None, d: int = D_IN, big_d: int = D_OUT, seed: int = 0,
              **overrides: Any) -> OpticalProjector:
    projector = build_projector("opu-sim", d, big_d, feedback_seed=seed, profile=profile, overrides=overrides)
    assert isinstance(projector, OpticalProjector)
    return projector


def true_matrix(projector: OpticalProjector) -> torch.Tensor:
    return projector.device.holographic_matrix()[: projector.out_features, : projector.in_features]


class ProtocolOnly:
    """Exposes exactly the OpticalDevice protocol of a wrapped device and nothing else."""

    __slots__ = ("_device", "bit_depth", "frame_time_s", "input_pixels", "output_pixels")

    def __init__(self, device: Any) -> None:
        self._device = device
        self.input_pixels, self.output_pixels = device.input_pixels, device.output_pixels
        self.bit_depth, self.frame_time_s = device.bit_depth, device.frame_time_s

    def acquire(self, frames: torch.Tensor, *, reference: bool | torch.Tensor = False) -> Acquisition:
        return self._device.acquire(frames, reference=reference)

    def open(self) -> None:
        self._device.open()

    def close(self) -> None:
        self._device.close()

    def __enter__(self) -> ProtocolOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"wrapped": True}

    def counters(self) -> Counters:
        return self._device.counters()


def test_noiseless_device_is_recovered_to_rounding():
    projector = simulated("ideal-opu", big_d=64)
    calibration = calibrate(projector.device, D_IN, 64, probes=32, seed=0)
    error = calibration_error(calibration, true_matrix(projector))
    # float32 intensities of about 10⁴ carry rounding of about 10⁻³, against matrix entries of about 10³.
    assert error.relative_error < 1e-5 and error.cosine > 1 - 1e-9 and error.pixels == 64
    assert calibration.frames == 4 * 32 + 2 * calibration.repeats + 2 * calibration.exposure_lit.numel()


def test_error_matches_its_prediction_and_falls_with_probes():
    # Statistical check on lighton-aurora (shot and read noise, 8-bit ADC, auto-exposure). The squared error is a sum
    # of D·d = 4096 nearly independent terms, so ‖M̂ − M‖ fluctuates around its prediction by about
    # sqrt(1 / (2·D·d)) = 1.1% (relative sd), x1.5 for the heavy tails of speckle-weighted noise: 1.7%. The
    # tolerance of 10% is about 6 sd; it also covers the few percent of error that quantisation of dark-reference
    # pixels adds without being seen in the residuals. Over seeds 0-5 the ratio stayed within 1.00-1.04.
    projector = simulated(seed=0)
    truth = true_matrix(projector)
    few = calibrate(projector.device, D_IN, D_OUT, probes=64, seed=1)
    many = calibrate(projector.device, D_IN, D_OUT, probes=256, seed=2)
    for calibration in (few, many):
        error = calibration_error(calibration, truth)
        assert error.relative_error == pytest.approx(calibration.expected_error(), rel=0.10)
        # cos ≈ 1 − err²/2 for a small error orthogonal to the truth; allow twice that.
        assert error.cosine > 1 - calibration.expected_error() ** 2
    # 4x the probes: the error falls by sqrt(tr((TᵀT)⁻¹) ratio), about 2.1 for random signs (not exactly 2: the
    # trace of an inverse Wishart is d / (P − d − 1)).
    predicted = math.sqrt(few.covariance_trace / many.covariance_trace)
    ratio = calibration_error(few, truth).relative_error / calibration_error(many, truth).relative_error
    assert ratio == pytest.approx(predicted, rel=0.10) and 1.9 < predicted < 2.3


def test_calibration_uses_only_the_protocol():
    direct = calibrate(simulated(big_d=64).device, D_IN, 64, probes=32, repeats=4, seed=3)
    wrapped = calibrate(ProtocolOnly(simulated(big_d=64).device), D_IN, 64, probes=32, repeats=4, seed=3)
    for name in ("raw_matrix", "reference_intensity", "noise_std", "exposure_reference"):
        torch.testing.assert_close(getattr(wrapped, name), getattr(direct, name), rtol=0, atol=0)
    assert wrapped.device == {"wrapped": True}


@pytest.mark.parametrize(("overrides", "gain_tolerance", "read_tolerance"), [
    ({}, 0.10, None),  # lighton-aurora: 8 bits, 39 e⁻ per count; its 5 e⁻ read noise is 0.13 count, unresolvable
    ({"camera.bits": 12, "camera.gain": 0.4095}, 0.05, 0.15),  # the same camera with 12 bits: 2.4 e⁻ per count
])
def test_photon_transfer_recovers_the_camera(overrides, gain_tolerance, read_tolerance):
    # The fit uses ~2·512 pixels, each variance from 31 degrees of freedom (25% sd), so the slope has a relative sd
    # of 1-2%; over seeds 0-2 the gain came within 3.1% (8 bits) and 0.6% (12 bits), the 12-bit read noise variance
    # within 4%. The tolerances are about 3x those.
    projector = simulated(seed=1, **overrides)
    calibration = calibrate(projector.device, D_IN, D_OUT, probes=32, seed=0)
    camera = projector.device.camera
    assert calibration.counts_per_electron == pytest.approx(camera.gain, rel=gain_tolerance)
    if read_tolerance is not None:
        read = (camera.gain * camera.read_noise_e) ** 2
        assert calibration.read_variance == pytest.approx(read, rel=read_tolerance)
    assert calibration.noise_variance_counts(torch.tensor([0.0, 100.0])).tolist() == pytest.approx(
        [calibration.read_variance, calibration.read_variance + 100 * calibration.counts_per_electron])


def test_code_variance_of_a_quantiser():
    # Sheppard's σ² + 1/12 above half a count, σ / sqrt(π) far below; the table against a Monte Carlo estimate of
    # E_u Var(floor(u + σ z)) from 10⁵ pairs (relative sd about 0.5%; tolerance 3%).
    generator = np.random.default_rng(0)
    for sigma in (0.05, 0.2, 0.4, 1.0):
        phase = generator.random(100_000)[:, None]
        codes = np.floor(phase + sigma * generator.standard_normal((100_000, 2)))
        estimate = float(np.mean((codes[:, 0] - codes[:, 1]) ** 2) / 2)
        assert float(code_variance(sigma)) == pytest.approx(estimate, rel=0.03)
    assert float(code_variance(3.0)) == pytest.approx(9 + 1 / 12, rel=1e-3)
    assert float(code_variance(1e-3)) == pytest.approx(1e-3 / math.sqrt(math.pi), rel=1e-6)
    assert float(code_variance(0.3, quantised=False)) == pytest.approx(0.09)


def test_exposure_table_records_what_the_device_reports():
    projector = simulated(big_d=32)
    calibration = calibrate(projector.device, D_IN, 32, probes=16, exposure_points=3, seed=0)
    assert calibration.exposure_lit.tolist() == [0.0, 4.0, 8.0]
    device = projector.device
    for lit, dark, bright in zip(calibration.exposure_lit.tolist(), calibration.exposure_dark.tolist(),
                                 calibration.exposure_reference.tolist(), strict=True):
        frame = torch.zeros(1, D_IN, dtype=torch.bool)
        frame[0, : int(lit)] = True
        assert device.acquire(frame).intensity_per_count.item() == pytest.approx(dark)
        assert device.acquire(frame, reference=True).intensity_per_count.item() == pytest.approx(bright)


def test_saturated_pixels_are_flagged_and_left_out():
    # Without auto-exposure the reference frame averages 125 of 255 counts: speckle above twice its mean (13.5% of
    # pixels, e^-2) clips at full scale.
    projector = simulated(big_d=128, **{"camera.auto_exposure": "off"})
    calibration = calibrate(projector.device, D_IN, 128, probes=64, seed=0)
    camera = projector.device.camera
    counts = projector.device.reference_intensity()[:128].double() * camera.photon_rate * camera.exposure_s \
        * camera.gain
    clearly_over, clearly_under = counts > 1.2 * camera.top_count, counts < 0.8 * camera.top_count
    assert calibration.saturated[clearly_over].all() and not calibration.saturated[clearly_under].any()
    assert int(clearly_over.sum()) > 5
    truth = true_matrix(projector)
    kept = calibration_error(calibration, truth)
    every = calibration_error(calibration, truth, include_saturated=True)
    assert kept.pixels == 128 - int(calibration.saturated.sum()) and every.pixels == 128
    assert every.relative_error > 2 * kept.relative_error  # 3.5x for seeds 0-2


def test_normalised_matrix_follows_the_optical_projector():
    projector = simulated("ideal-opu", big_d=64)
    element, reference = projector.device.expected_intensities()
    calibration = calibrate(projector.device, D_IN, 64, probes=32, seed=0,
                            intensities=Intensities(element, reference))
    # float32 intensities of about 10⁴ round to about 10⁻³; entries of the normalised matrix are about 1.
    torch.testing.assert_close(calibration.matrix(), projector.effective_matrix().double(), rtol=1e-4, atol=1e-5)
    evened = simulated("ideal-opu", big_d=64, **{"readout.evening": True})
    torch.testing.assert_close(calibration.matrix(evening=True), evened.effective_matrix().double(), rtol=1e-4,
                               atol=1e-5)


def test_measured_scale_is_close_to_the_expected_one():
    # Ī_r is the mean of D = 512 exponential pixels (4.4% relative sd) and Ī₁ the mean of the all-lit frame
    # (also 4.4%); 20% is over 4 sd.
    projector = simulated(seed=2)
    calibration = calibrate(projector.device, D_IN, D_OUT, probes=16, seed=0)
    element, reference = projector.device.expected_intensities()
    assert calibration.intensities.reference == pytest.approx(reference, rel=0.2)
    assert calibration.intensities.element == pytest.approx(element, rel=0.2)


def test_save_load_round_trip(tmp_path):
    calibration = calibrate(simulated(big_d=32).device, D_IN, 32, probes=16, seed=4)
    path = calibration.save(tmp_path / "cal.h5")
    loaded = Calibration.load(path)
    for name in ("raw_matrix", "reference_intensity", "noise_std", "saturated", "exposure_lit", "exposure_dark",
                 "exposure_reference"):
        torch.testing.assert_close(getattr(loaded, name), getattr(calibration, name), rtol=0, atol=0)
    for name in ("intensities", "read_variance", "counts_per_electron", "dark_offset", "bit_depth", "frame_time_s",
                 "joules_per_frame", "probes", "repeats", "frames", "covariance_trace", "seed", "timestamp",
                 "device"):
        assert getattr(loaded, name) == getattr(calibration, name), name
    assert loaded.describe() == calibration.describe()
    assert [p.name for p in tmp_path.iterdir()] == ["cal.h5"]


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    calibration = calibrate(simulated(big_d=16).device, D_IN, 16, probes=16, seed=0)
    path = calibration.save(tmp_path / "cal.h5")
    before = path.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        calibration.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["cal.h5"]


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="calibration file .*missing.h5' does not exist"):
        Calibration.load(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(CalibrationFileError, match="text.h5' is not an optodfa file: no OPTODFA-SEALED-HDF5 seal"):
        Calibration.load(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.attrs["format"] = "something-else"
    with pytest.raises(CalibrationFileError, match="other.h5' is a plain HDF5 file without an optodfa seal"):
        Calibration.load(other)
    calibration = calibrate(simulated(big_d=16).device, D_IN, 16, probes=16, seed=0)
    newer = calibration.save(tmp_path / "newer.h5")
    with h5py.File(newer, "a") as file:
        file.attrs["version"] = 99
    with pytest.raises(CalibrationFileError, match="newer.h5' is damaged: its SHA-256 checksum does not match"):
        Calibration.load(newer)
    seal(newer, FORMAT, FORMAT_VERSION)  # a consistent file whose attribute disagrees with the reader
    with pytest.raises(CalibrationFileError, match="format version 99; this optodfa reads version 2"):
        Calibration.load(newer)
    seal(newer, FORMAT, 1)
    with pytest.raises(CalibrationFileError, match="is optodfa-calibration version 1; this optodfa reads version 2"):
        Calibration.load(newer)
    partial = calibration.save(tmp_path / "partial.h5")
    with h5py.File(partial, "a") as file:
        del file["noise_std"]
    seal(partial, FORMAT, FORMAT_VERSION)
    with pytest.raises(CalibrationFileError, match="lacks noise_std"):
        Calibration.load(partial)
    with pytest.raises(FileNotFoundError, match="folder .*nowhere' does not exist"):
        calibration.save(tmp_path / "nowhere" / "cal.h5")


def test_input_errors():
    device = simulated(big_d=16).device
    with pytest.raises(TypeError, match="device must implement the OpticalDevice protocol.*got int"):
        calibrate(3, 2, 2, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"in_features must be an integer in \[1, {D_IN}\], got 9"):
        calibrate(device, 9, 16, seed=0)
    with pytest.raises(ValueError, match=r"out_features must be an integer in \[1, 16\], got 17"):
        calibrate(device, D_IN, 17, seed=0)
    with pytest.raises(ValueError, match=rf"probes must be an integer >= {D_IN + 1}, got {D_IN}"):
        calibrate(device, D_IN, 16, probes=D_IN, seed=0)
    with pytest.raises(ValueError, match="repeats must be an integer >= 2, got 1"):
        calibrate(device, D_IN, 16, repeats=1, seed=0)
    with pytest.raises(ValueError, match="exposure_points must be an integer >= 2, got 1"):
        calibrate(device, D_IN, 16, exposure_points=1, seed=0)
    with pytest.raises(TypeError, match="intensities must be an optodfa.optical.Intensities or None, got tuple"):
        calibrate(device, D_IN, 16, intensities=(1.0, 2.0), seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
        calibrate(device, D_IN, 16, seed=-1)
    with pytest.raises(ValueError, match=r"evening_floor must be a finite real number in \(0, 1\]"):
        calibrate(device, D_IN, 16, probes=16, seed=0).matrix(evening=True, evening_floor=0.0)


def test_comparison_errors():
    calibration = calibrate(simulated(big_d=16).device, D_IN, 16, probes=16, seed=0)
    with pytest.raises(ValueError, match=r"must have the calibrated shape \(16, 8\) \(D, d\), got \(8, 8\)"):
        calibration_error(calibration, torch.zeros(8, 8))
    with pytest.raises(ValueError, match="true_matrix must be a 2-D tensor"):
        calibration_error(calibration, [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="calibration must be a Calibration, got dict"):
        calibration_error({}, torch.zeros(16, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"estimate must be a 2-D tensor \(D, d\), got \(3,\)"):
        matrix_error(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"same shape, got \(3, 1\) and \(1, 3\)"):
        matrix_error(torch.zeros(3, 1), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="truth is the zero matrix"):
        matrix_error(torch.ones(3, 1), torch.zeros(3, 1))
    exact = matrix_error(torch.eye(3) * 2, torch.eye(3))
    assert exact.relative_error == pytest.approx(1.0) and exact.cosine == pytest.approx(1.0) and exact.pixels == 3
