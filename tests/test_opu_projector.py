"""The opu-sim projector and the generic OpticalProjector: the contracts DFA relies on."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

import optodfa
from optodfa.device import Counters, FeedbackError, NonFiniteError
from optodfa.encoding import SignEncoding
from optodfa.optical import Intensities, OpticalProjector
from optodfa.profiles import ProfileError
from optodfa.readout import IntensityReadout, StrongReferenceReadout
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.opu import SimulatedOPU


def errors(n: int = 32, d: int = 10, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def build(d: int = 10, D: int = 600, **spec) -> OpticalProjector:
    return optodfa.build_projector("opu-sim", d, D, **spec)


def test_build_with_defaults_gives_the_aurora_profile():
    projector = build(feedback_seed=0)
    assert (projector.in_features, projector.out_features) == (10, 600)
    description = projector.describe()
    assert description["profile"]["name"] == "lighton-aurora"
    assert description["device"]["bit_depth"] == 8 and description["readout"]["mode"] == "holographic"
    out = projector.project(errors())
    assert out.shape == (32, 600) and out.dtype == torch.float32
    json.dumps(projector.describe(), allow_nan=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("overrides", [{}, {"readout.evening": True}, {"encoding.kind": "bitplane"},
                                       {"readout.mode": "strong-reference"}])
def test_ideal_opu_is_exactly_the_effective_matrix_on_the_encoded_error(dtype, overrides):
    projector = build(profile="ideal-opu", overrides=overrides, dtype=dtype)
    e = errors(dtype=dtype)
    out = projector.project(e)
    exact = projector.encoding.encode(e).value() @ projector.effective_matrix().T
    if projector.readout.name == "strong-reference":
        # Not exact by design: the quadratic residual is about sqrt(signal/reference mirrors) of the signal.
        assert torch.nn.functional.cosine_similarity(out.flatten(), exact.flatten(), dim=0) > 0.95
        return
    # Exact up to rounding: each output sums 4 intensities per plane of size at most I_max, scaled by
    # s·w/c (c the normalisation); tolerance 64 ulp of that. I_max bounded by the brightest frame shown.
    device, layout = projector.device, projector.device.layout
    frame = torch.ones(1, layout.signal_elements, dtype=torch.bool)
    i_max = float(device.intensity(frame, reference=True).max())
    weight = float(projector.encoding.encode(e).scale.abs().max()) * 2 ** (projector.encoding.planes - 1)
    row_scale = float(projector._row_scale(torch.float64, torch.device("cpu")).max())
    tolerance = 64 * torch.finfo(dtype).eps * i_max * weight * row_scale * projector.encoding.planes
    assert float((out - exact).abs().max()) < tolerance


def test_effective_matrix_is_deterministic_normalised_and_per_row_evened():
    a, b = build(D=4000, feedback_seed=3), build(D=4000, feedback_seed=3)
    matrix = a.effective_matrix()
    assert matrix.shape == (4000, 10) and torch.equal(matrix, b.effective_matrix())
    assert not torch.equal(matrix, build(D=4000, feedback_seed=4).effective_matrix())
    # Unit variance on average. Rows share the reference speckle |f_i|, so the D row powers are the independent
    # samples: E[row power] = 1 with SD 1 (exponential) -> SE 1/sqrt(D); tolerance 5 SE.
    assert abs(float(matrix.double().square().mean()) - 1) < 5 / math.sqrt(4000)
    evened = build(D=4000, feedback_seed=3, profile="ideal-opu", overrides={"readout.evening": True})
    even = evened.effective_matrix().double()
    # With evening, entries are exactly N(0, 1) where the reference is above the floor (here almost every row).
    assert abs(float(even.square().mean()) - 1) < 5 * math.sqrt(2 / even.numel()) + 0.01
    spread = lambda m: float(m.square().mean(1).std() / m.square().mean(1).mean())  # noqa: E731
    assert spread(even) < 0.5 * spread(matrix.double())


def test_same_seeds_bit_identical_and_resume_from_a_checkpoint():
    overrides = {"drift.enabled": True, "drift.rho": 0.99, "drift.period": 50, "readout.evening": True}
    first, second = build(overrides=overrides), build(overrides=overrides)
    for seed in range(2):
        assert torch.equal(first.project(errors(seed=seed)), second.project(errors(seed=seed)))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    expected = [first.project(errors(seed=s)) for s in (5, 6)]
    fresh = build(overrides=overrides)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    for want, seed in zip(expected, (5, 6), strict=True):
        assert torch.equal(fresh.project(errors(seed=seed)), want)
    assert fresh.counters() == first.counters()
    assert not torch.equal(build(noise_seed=99).project(errors()), build().project(errors()))


def test_counters_frames_time_energy_and_saturation():
    projector = build(overrides={"encoding.kind": "bitplane", "encoding.bits": 3})
    projector.project(errors(32))
    projector.project(errors(8))
    counters = projector.counters()
    frames = (32 + 8) * 3 * 4  # planes x 4 holographic frames
    assert (counters.calls, counters.projections, counters.frames) == (2, 40, frames)
    assert counters.hardware_seconds == pytest.approx(frames * 500e-6)
    assert counters.energy_joules == pytest.approx(frames * 500e-6 * 30.0)
    assert counters.macs == 40 * 10 * 600 and counters.saturated_pixels >= 0
    projector.reset_counters()
    assert projector.counters() == Counters()
    hot = build(overrides={"camera.auto_exposure": "off", "camera.photon_rate": "1e6"})
    hot.project(errors(4))
    assert hot.counters().saturated_pixels > 0


@pytest.mark.parametrize("bits", [1, 3, 8, 10])
def test_camera_bits_bound_the_levels_of_the_device(bits):
    projector = build(overrides={"camera.bits": bits})
    frames = torch.rand(64, 10, generator=torch.Generator().manual_seed(bits)) < 0.5
    counts = projector.device.acquire(frames, reference=True).counts
    assert torch.unique(counts).numel() <= 2**bits and int(counts.max()) <= 2**bits - 1


@pytest.mark.parametrize(("bad", "error", "match"), [
    (torch.zeros(4, 11), FeedbackError, r"error batch must have shape \(n, 10\), got \(4, 11\)"),
    (torch.full((2, 10), float("nan")), NonFiniteError, "holds 20 non-finite value"),
])
def test_bad_error_batches(bad, error, match):
    with pytest.raises(error, match=match):
        build().project(bad)


@pytest.mark.parametrize(("spec", "error", "match"), [
    (dict(overrides={"camera.bitz": 4}), ProfileError, r"unknown setting\(s\) 'camera.bitz'; allowed: "),
    (dict(profile="no-such-opu"), ProfileError, r"unknown profile 'no-such-opu'; known profiles: .*lighton-aurora"),
    (dict(D=3_000_000), ValueError, r"out_features = 3000000 camera pixels exceed the camera of profile "
                                    r"'lighton-aurora': 1088 x 2040 = 2219520 pixels"),
    (dict(d=20_000), ValueError, r"the layout does not fit the DMD: 20000 signal elements x 64 mirrors"),
    (dict(overrides={"readout.mode": "intensity", "readout.evening": True}), ValueError,
     "readout.evening applies to linear readout modes only"),
])
def test_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        build(**spec)


def test_intensity_readout_has_no_matrix_and_a_comparable_scale():
    projector = build(D=3000, overrides={"readout.mode": "intensity"}, profile="ideal-opu", dtype=torch.float64)
    assert projector.effective_matrix() is None
    e = errors(16, dtype=torch.float64)
    out = projector.project(e)
    value = projector.encoding.encode(e).value()
    # Per sample the mean square per pixel is about ‖s t‖², as for a unit-variance matrix (SE a few per cent).
    ratio = out.square().mean(1) / value.square().sum(1)
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.2)


class OpaqueDevice:
    """Any driver: only the raw protocol, no knowledge of intensities or matrices (wraps a simulator)."""

    def __init__(self, inner: SimulatedOPU) -> None:
        self._inner = inner
        self.input_pixels, self.output_pixels = inner.input_pixels, inner.output_pixels
        self.bit_depth, self.frame_time_s = inner.bit_depth, inner.frame_time_s

    def acquire(self, frames, *, reference=False):
        return self._inner.acquire(frames, reference=reference)

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None: ...

    def describe(self):
        return {"driver": "opaque"}

    def counters(self) -> Counters:
        return self._inner.counters()


def test_generic_projector_measures_its_scale_through_the_raw_protocol():
    camera = Camera(bits=None, shot_noise=False, full_well_e=math.inf, gain=1.0, auto_exposure="off",
                    photon_rate=1.0, exposure_s=1.0)
    inner = SimulatedOPU(DMDLayout(64, 64, 4, 12, 500), camera, output_pixels=8000, seed=0, noise_seed=0,
                         frame_time_s=1.0, dtype=torch.float64)
    projector = OpticalProjector(OpaqueDevice(inner), in_features=10, out_features=8000, encoding=SignEncoding())
    out = projector.project(errors(8, dtype=torch.float64))
    assert out.shape == (8, 8000) and projector.effective_matrix() is None
    measured = projector.intensities
    # Mean over 8000 exponential pixels: SE 1/sqrt(8000) relative (the 10 lit elements give one intensity).
    assert measured.reference == pytest.approx(500, rel=5 / math.sqrt(8000))
    assert measured.element == pytest.approx(4, rel=5 / math.sqrt(8000))
    assert projector.describe()["intensities_measured"] is True
    assert projector.counters().frames == 2 + 8 * 4  # two scale frames, then 4 per sample
    with pytest.raises(TypeError, match="device must implement the OpticalDevice protocol"):
        OpticalProjector(object(), in_features=2, out_features=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in_features must be an integer in \[1, 12\], got 13"):
        OpticalProjector(inner, in_features=13, out_features=5)
    with pytest.raises(ValueError, match=r"readout.evening_floor must be a finite real number in \(0, 1\]"):
        OpticalProjector(inner, in_features=2, out_features=5, evening=True, evening_floor=0.0)
    with pytest.raises(ValueError, match=r"element intensity must be a finite real number in \(0, inf\)"):
        Intensities(element=0.0, reference=1.0)
    assert OpticalProjector(inner, in_features=2, out_features=5, readout=StrongReferenceReadout()).readout.linear
    assert not OpticalProjector(inner, in_features=2, out_features=5, readout=IntensityReadout()).readout.linear


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
@pytest.mark.parametrize("mode", ["holographic", "strong-reference", "intensity"])
def test_cuda_projection_makes_no_host_round_trip(mode):
    projector = build(device=torch.device("cuda"), overrides={"readout.mode": mode})
    e = errors().cuda()
    projector.project(e)  # first call: lazily measured levels, cached constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call (item, nonzero, device-to-host copy) raises
    try:
        out = projector._project(e)  # the projection itself: encode, acquire, combine, normalise, decode
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and bool(torch.isfinite(out).all())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_cuda_projection_stays_on_the_gpu_and_uses_the_same_matrix():
    cpu = build(profile="ideal-opu")
    gpu = build(profile="ideal-opu", device=torch.device("cuda"))
    e = errors()
    out = gpu.project(e.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(gpu.effective_matrix().cpu(), cpu.effective_matrix(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.cpu(), cpu.project(e), rtol=1e-4, atol=1e-3)
    noisy = build(device=torch.device("cuda"))
    assert noisy.project(e.cuda()).device.type == "cuda" and noisy.counters().frames == 32 * 4
