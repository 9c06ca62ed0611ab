"""The raw simulated OPU through the OpticalDevice protocol: counts, counters, reproducibility, state."""

from __future__ import annotations

import json

import pytest
import torch

from optodfa.device import Acquisition, OpticalDevice
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.drift import Drift
from optodfa.sim.opu import SimulatedOPU

NOISY = dict(bits=8, gain=None, full_well_e=10_000.0, read_noise_e=5.0, photon_rate=2000.0, exposure_s=400e-6,
             shot_noise=True, auto_exposure="frame", poisson_exact_below=30.0)


def random_frames(n: int, elements: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, elements, generator=torch.Generator().manual_seed(seed)) < 0.4


def test_protocol_and_acquisition(device_factory):
    device = device_factory(elements=5, outputs=64, camera=NOISY, frame_time_s=500e-6, power_w=30.0)
    assert isinstance(device, OpticalDevice)
    assert (device.input_pixels, device.output_pixels, device.bit_depth) == (5, 64, 8)
    reference = torch.tensor([True, False, True])
    acquisition = device.acquire(random_frames(3, 5), reference=reference)
    assert isinstance(acquisition, Acquisition)
    assert acquisition.counts.shape == (3, 64) and acquisition.counts.dtype == torch.uint8
    assert acquisition.intensity_per_count.shape == (3,) and bool((acquisition.intensity_per_count > 0).all())
    assert acquisition.intensity().shape == (3, 64)
    counters = device.counters()
    assert (counters.calls, counters.frames) == (1, 3)
    assert counters.hardware_seconds == pytest.approx(3 * 500e-6)
    assert counters.energy_joules == pytest.approx(3 * 500e-6 * 30.0)
    json.dumps(device.describe())


def test_ideal_camera_reads_the_intensity(device_factory):
    device = device_factory(elements=6, outputs=200, macropixel=3, reference=40)
    frames = random_frames(8, 6, seed=1)
    reference = torch.arange(8) % 2 == 0
    measured = device.acquire(frames, reference=reference).intensity()
    torch.testing.assert_close(measured, device.intensity(frames, reference=reference), rtol=1e-12, atol=1e-9)


def test_eight_bit_camera_never_returns_more_than_256_levels(device_factory):
    device = device_factory(elements=8, outputs=4000, camera=NOISY, frame_time_s=500e-6)
    counts = device.acquire(random_frames(64, 8), reference=True).counts
    assert counts.dtype == torch.uint8 and torch.unique(counts).numel() <= 256


def test_same_seeds_are_bit_identical_on_the_cpu(device_factory):
    frames = random_frames(16, 6, seed=3)
    runs = [device_factory(elements=6, outputs=300, camera=NOISY, frame_time_s=500e-6, seed=2, noise_seed=5)
            for _ in range(2)]
    first = [r.acquire(frames, reference=True).counts for r in runs]
    assert torch.equal(first[0], first[1])
    assert torch.equal(runs[0].acquire(frames).counts, runs[1].acquire(frames).counts)
    other = device_factory(elements=6, outputs=300, camera=NOISY, frame_time_s=500e-6, seed=2, noise_seed=6)
    assert not torch.equal(other.acquire(frames, reference=True).counts, first[0])


@pytest.mark.parametrize("drift", [None, Drift(0.95, 7)])
def test_state_dict_resumes_bit_identically(device_factory, drift):
    make = lambda: device_factory(elements=6, outputs=300, camera=NOISY, frame_time_s=500e-6, drift=drift)  # noqa: E731
    device = make()
    device.acquire(random_frames(10, 6), reference=True)
    state = device.state_dict()
    expected = [device.acquire(random_frames(9, 6, seed=s), reference=True).counts for s in (1, 2)]
    fresh = make()
    fresh.load_state_dict(state)
    for want, seed in zip(expected, (1, 2), strict=True):
        assert torch.equal(fresh.acquire(random_frames(9, 6, seed=seed), reference=True).counts, want)
    assert fresh.counters() == device.counters()


def test_saturation_is_counted(device_factory):
    hot = {**NOISY, "auto_exposure": "off", "photon_rate": 1e6}
    device = device_factory(elements=4, outputs=500, camera=hot, frame_time_s=500e-6)
    counts = device.acquire(torch.ones(6, 4, dtype=torch.bool), reference=True).counts
    saturated = int((counts == 255).sum())
    assert saturated > 0 and device.counters().saturated_pixels == saturated


def test_bad_settings_and_reference_flags(device_factory):
    device = device_factory(elements=4, outputs=10)
    with pytest.raises(ValueError, match=r"reference must be a bool or a bool tensor of shape \(3,\), got \(2,\)"):
        device.acquire(torch.zeros(3, 4), reference=torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"got \(3,\) torch.int64"):
        device.acquire(torch.zeros(3, 4), reference=torch.tensor([1, 0, 1]))
    layout = DMDLayout(8, 8, 1, 4, 8)
    with pytest.raises(ValueError, match=r"camera.exposure \(400 us\) must not exceed device.frame_time \(300 us\)"):
        SimulatedOPU(layout, Camera(exposure_s=400e-6), output_pixels=5, seed=0, noise_seed=0, frame_time_s=300e-6)
    with pytest.raises(ValueError, match="dtype must be one of"):
        SimulatedOPU(layout, Camera(), output_pixels=5, seed=0, noise_seed=0, dtype=torch.float16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_cuda_device_computes_on_the_gpu_with_the_cpu_matrix(device_factory):
    cpu = device_factory(elements=6, outputs=300, camera=NOISY, frame_time_s=500e-6)
    gpu = device_factory(elements=6, outputs=300, camera=NOISY, frame_time_s=500e-6, device="cuda")
    assert torch.equal(gpu.field_matrix().cpu(), cpu.field_matrix())  # drawn on the CPU, then moved
    acquisition = gpu.acquire(random_frames(32, 6).cuda(), reference=True)
    assert acquisition.counts.device.type == "cuda" and acquisition.counts.dtype == torch.uint8
    assert gpu.counters().frames == 32


@pytest.mark.parametrize("elements", [10, 100])  # narrow product, and signal fields shared across the flag
@pytest.mark.parametrize("repeats", [1, 4])  # all frames distinct, and rows shared between equal frames
def test_shortcuts_over_distinct_frames_give_the_direct_intensities(device_factory, elements, repeats):
    device = device_factory(elements=elements, outputs=300, dmd=(128, 128), macropixel=2)
    base = random_frames(12, elements, seed=elements)
    frames = torch.cat([base] * repeats)
    reference = torch.arange(frames.shape[0]) % 3 == 0
    measured = device.acquire(frames, reference=reference).intensity()
    torch.testing.assert_close(measured, device.intensity(frames, reference=reference), rtol=1e-12, atol=1e-9)


def test_equal_frames_get_independent_noise(device_factory):
    device = device_factory(elements=6, outputs=2000, camera={**NOISY, "bits": None}, frame_time_s=500e-6)
    frames = torch.ones(8, 6, dtype=torch.bool)  # one distinct frame, computed once, read eight times
    readings = device.acquire(frames, reference=True).intensity()
    mean = device.intensity(frames[:1], reference=True)[0]
    deviations = readings - mean
    # Shot noise of independent readings: the correlation of two readings' deviations has SE 1/sqrt(M).
    corr = torch.corrcoef(deviations)[0, 1:]
    assert bool((corr.abs() < 5 / 2000**0.5).all())


@pytest.mark.parametrize("drift", [None, Drift(0.95, 7)])
def test_one_pass_camera_reads_a_batch_as_the_chunked_reads_do(device_factory, drift, monkeypatch):
    # The compiled one-pass camera (narrow float32 frames, Gaussian shot noise, counter stream) reads a batch in
    # the drift's segments only; its counts must be those of small bounded chunks, reading for reading.
    camera = {**NOISY, "poisson_exact_below": 0.0}
    make = lambda: device_factory(elements=6, outputs=300, camera=camera, frame_time_s=500e-6,  # noqa: E731
                                  dtype=torch.float32, drift=drift, chunk_pixels=700)
    frames = random_frames(40, 6, seed=4)
    frames[1::3] = frames[::3][: frames[1::3].shape[0]]  # repeated frames share their levels
    one_pass = make()
    assert one_pass.camera.reads_in_one_pass(True, one_pass._noise)
    want = [one_pass.acquire(frames, reference=True) for _ in range(2)]
    chunked = make()
    monkeypatch.setattr(Camera, "reads_in_one_pass", lambda self, plan_compiled, noise: False)
    assert len(chunked._chunks(40)) > 2
    got = [chunked.acquire(frames, reference=True) for _ in range(2)]
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a.counts, b.counts) and int(a.saturated) == int(b.saturated)
