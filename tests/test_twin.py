"""The digital twin: it applies the calibrated matrix, reproduces the device's noise, and builds from files."""

from __future__ import annotations

import pytest
import torch

from optodfa.calibration import Calibration, calibrate, calibration_error
from optodfa.fidelity import fidelity
from optodfa.optical import OpticalProjector
from optodfa.readout import HolographicReadout
from optodfa.registry import ProjectorSpec, build_projector
from optodfa.sim.twin import REFERENCE_FLOOR, TwinOPU, build


def simulated(d: int, big_d: int, profile: str | None = None, seed: int = 0) -> OpticalProjector:
    projector = build_projector("opu-sim", d, big_d, feedback_seed=seed, profile=profile)
    assert isinstance(projector, OpticalProjector)
    return projector


@pytest.fixture(scope="module")
def aurora() -> tuple[OpticalProjector, Calibration]:
    projector = simulated(10, 256)
    return projector, calibrate(projector.device, 10, 256, probes=512, seed=1)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> tuple[Calibration, str]:
    calibration = calibrate(simulated(6, 40).device, 6, 40, probes=32, seed=0)
    return calibration, str(calibration.save(tmp_path_factory.mktemp("twin") / "cal.h5"))


def test_twin_applies_the_calibrated_matrix_exactly():
    calibration = calibrate(simulated(6, 48, "ideal-opu").device, 6, 48, probes=24, seed=0)
    twin = TwinOPU(calibration, seed=0, noise_seed=0, dtype=torch.float64)
    codes = torch.randint(-1, 2, (20, 6), generator=torch.Generator().manual_seed(0)).double()
    measured = HolographicReadout().measure(twin, codes > 0, codes < 0)
    torch.testing.assert_close(measured, codes @ calibration.raw_matrix.T, rtol=1e-9, atol=1e-6)
    reference = twin.acquire(torch.zeros(1, 6), reference=True).intensity()[0]
    floor = REFERENCE_FLOOR * calibration.intensities.reference
    torch.testing.assert_close(reference, calibration.reference_intensity.clamp_min(floor))
    torch.testing.assert_close(twin.holographic_matrix(), calibration.raw_matrix)


def test_twin_reproduces_noise_exposure_and_matrix(aurora):
    _, calibration = aurora
    twin = TwinOPU(calibration, seed=3, noise_seed=4)
    again = calibrate(twin, 10, 256, probes=512, seed=5)
    keep = ~calibration.saturated
    # Mean plane noise over ~255 pixels, each estimated from 502 residual degrees of freedom: each mean is within
    # about 0.3% of its expectation. Feedback seeds 0-4 gave ratios 0.99-1.003; 5% leaves room for what the twin
    # only models. The gain is fitted from ~500 pixel variances of 31 degrees of freedom (1-2% sd): 10%.
    assert float(again.noise_std[keep].mean()) == pytest.approx(float(calibration.noise_std[keep].mean()), rel=0.05)
    assert again.counts_per_electron == pytest.approx(calibration.counts_per_electron, rel=0.1)
    # At the grid points the twin reports exactly the calibrated exposure.
    torch.testing.assert_close(again.exposure_reference, calibration.exposure_reference)
    torch.testing.assert_close(again.exposure_dark, calibration.exposure_dark)
    # Calibrating the twin recovers the matrix it applies, to the accuracy the second calibration states
    # (tolerance as in test_calibration: about 6 sd of the error norm).
    error = calibration_error(again, calibration.raw_matrix)
    assert error.relative_error == pytest.approx(again.expected_error(), rel=0.15)


def test_twin_feedback_is_as_faithful_as_the_device(aurora, tmp_path):
    device, calibration = aurora
    path = calibration.save(tmp_path / "cal.h5")
    twin = build(ProjectorSpec(10, 256, feedback_seed=7, overrides={"calibration": str(path)}))
    e = torch.randn(256, 10, generator=torch.Generator().manual_seed(2))
    keep = ~calibration.saturated
    snr = {}
    for name, projector in (("device", device), ("twin", twin)):
        output = projector.project(e)
        target = projector.encoding.encode(e).value() @ projector.effective_matrix().T  # type: ignore[attr-defined]
        snr[name] = fidelity(output[:, keep], target[:, keep]).snr_db
    # Each SNR comes from 256 x 255 readings (sd well under 0.1 dB); 0.5 dB allows for what the twin only models
    # (a drawn quadrature, interpolated exposure, a Gaussian photon-transfer camera). Over feedback seeds 0-2 the
    # twin stayed within 0.11 dB of the device on this profile.
    assert snr["twin"] == pytest.approx(snr["device"], abs=0.5)


def test_exposure_is_interpolated_linearly_between_grid_points(small_file):
    calibration, _ = small_file
    twin = TwinOPU(calibration, seed=0, noise_seed=0, dtype=torch.float64)
    grid = calibration.exposure_lit.tolist()
    assert grid == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    lit = torch.tensor([0.0, 2.0, 6.0])
    for flag, table in ((False, calibration.exposure_dark), (True, calibration.exposure_reference)):
        frames = (torch.arange(6)[None, :] < lit[:, None]).double()
        per_count = twin.acquire(frames, reference=flag).intensity_per_count
        torch.testing.assert_close(per_count, table[lit.long()])
    half = twin._interpolate(torch.tensor([2.5], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    expected = (calibration.exposure_reference[2] + calibration.exposure_reference[3]) / 2
    torch.testing.assert_close(half, expected[None])


def test_factory_builds_from_a_file_or_a_profile_path(small_file):
    calibration, path = small_file
    for spec in (ProjectorSpec(6, 40, overrides={"calibration": path}), ProjectorSpec(6, 40, profile=path)):
        projector = build(spec)
        torch.testing.assert_close(projector.effective_matrix(), calibration.matrix().float())
        assert projector.describe()["calibration_file"] == path
    smaller = build(ProjectorSpec(4, 16, overrides={"calibration": path}))
    assert smaller.project(torch.randn(3, 4)).shape == (3, 16)
    intensity = build(ProjectorSpec(6, 40, overrides={"calibration": path, "readout.mode": "intensity"}))
    assert intensity.effective_matrix() is None and intensity.describe()["readout"]["mode"] == "intensity"


def test_factory_without_a_file_calibrates_the_simulator_reproducibly():
    spec = ProjectorSpec(5, 37, feedback_seed=2, overrides={"probes": "64"})
    first, second = build(spec), build(spec)
    e = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first.project(e), second.project(e), rtol=0, atol=0)
    assert first.describe()["calibrated_profile"] == "lighton-aurora"
    assert first.describe()["calibration"]["probes"] == 64
    other = build(ProjectorSpec(5, 37, feedback_seed=3, overrides={"probes": 64}))
    assert not torch.equal(other.effective_matrix(), first.effective_matrix())


def test_state_dict_continues_bit_identically(small_file):
    _, path = small_file
    spec = ProjectorSpec(6, 40, overrides={"calibration": path})
    projector = build(spec)
    e = [torch.randn(4, 6, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    projector.project(e[0])
    state = projector.state_dict()
    expected = [projector.project(x) for x in e[1:]]
    fresh = build(spec)
    fresh.load_state_dict(state)
    for x, want in zip(e[1:], expected, strict=True):
        torch.testing.assert_close(fresh.project(x), want, rtol=0, atol=0)
    assert fresh.counters() == projector.counters() and projector.counters().frames == 3 * 4 * 4


def test_factory_errors(small_file):
    _, path = small_file
    with pytest.raises(ValueError, match="takes a calibration file or a profile to calibrate, not both"):
        build(ProjectorSpec(6, 40, profile="lighton-aurora", overrides={"calibration": path}))
    with pytest.raises(KeyError, match="unknown setting.*'camera.bits' for a twin from a calibration file"):
        build(ProjectorSpec(6, 40, overrides={"calibration": path, "camera.bits": 4}))
    with pytest.raises(ValueError, match=r"covers d = 6 inputs and D = 40 pixels; asked for d = 7, D = 40"):
        build(ProjectorSpec(7, 40, overrides={"calibration": path}))
    with pytest.raises(ValueError, match="probes must be an integer >= 6, got 3"):
        build(ProjectorSpec(5, 8, overrides={"probes": 3}))
    with pytest.raises(FileNotFoundError, match="calibration file 'nope.h5' does not exist"):
        build(ProjectorSpec(5, 8, overrides={"calibration": "nope.h5"}))


def test_acquire_errors(small_file):
    calibration, _ = small_file
    twin = TwinOPU(calibration, seed=0, noise_seed=0)
    with pytest.raises(ValueError, match="frames must be binary"):
        twin.acquire(torch.full((2, 6), 0.5))
    with pytest.raises(ValueError, match=r"frames must have shape \(n, 6\), got \(2, 5\)"):
        twin.acquire(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="frames must be a real torch.Tensor of shape"):
        twin.acquire([[0] * 6])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"reference must be a bool or a bool tensor of shape \(2,\), got \(3,\)"):
        twin.acquire(torch.zeros(2, 6), reference=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="calibration must be a Calibration, got str"):
        TwinOPU("cal.h5", seed=0, noise_seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
        TwinOPU(calibration, seed=-1, noise_seed=0)


def test_counts_follow_the_bit_depth(small_file):
    calibration, _ = small_file
    twin = TwinOPU(calibration, seed=0, noise_seed=0)
    acquisition = twin.acquire(torch.ones(4, 6), reference=True)
    assert acquisition.counts.dtype == torch.uint8 and twin.bit_depth == 8
    counters = twin.counters()
    assert counters.frames == 4 and counters.hardware_seconds == pytest.approx(4 * calibration.frame_time_s)
    assert counters.energy_joules == pytest.approx(4 * calibration.joules_per_frame)
    assert calibration.joules_per_frame == pytest.approx(30.0 * 500e-6)  # lighton-aurora: 30 W, 500 us frames


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_twin_runs_on_cuda(small_file):
    _, path = small_file
    projector = build(ProjectorSpec(6, 40, overrides={"calibration": path}, device=torch.device("cuda")))
    out = projector.project(torch.randn(8, 6, device="cuda"))
    assert out.device.type == "cuda" and out.shape == (8, 40) and bool(torch.isfinite(out).all())
