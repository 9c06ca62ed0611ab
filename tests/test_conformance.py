"""Conformance kit: every registered device must honour the Projector protocol the same way.

A third-party driver can run this file against itself: register it (entry point or ``register_device``) and it is
picked up by ``available_devices()`` below. Devices whose factory cannot build without hardware are skipped by name
with the reason their factory gives.
"""

from __future__ import annotations

import json

import pytest
import torch

from optodfa.device import Counters, FeedbackError, NonFiniteError, OpticalDevice, Projector
from optodfa.registry import available_devices, build_projector

D_IN, D_OUT = 5, 37
DEVICES = sorted(available_devices())


def build(name: str, **spec: object) -> Projector:
    return build_projector(name, D_IN, D_OUT, **spec)


def errors(n: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(params=DEVICES)
def name(request) -> str:
    return request.param


def test_shapes_dtype_and_device(name):
    projector = build(name)
    assert (projector.in_features, projector.out_features) == (D_IN, D_OUT)
    for dtype in (torch.float32, torch.float64):
        out = projector.project(errors(dtype=dtype))
        assert out.shape == (8, D_OUT) and out.dtype == dtype and out.device.type == "cpu"
        assert torch.isfinite(out).all()
    matrix = projector.effective_matrix()
    assert matrix is None or matrix.shape == (D_OUT, D_IN)


def test_projection_follows_the_effective_matrix(name):
    projector = build(name)
    matrix = projector.effective_matrix()
    if matrix is None:
        pytest.skip(f"{name} exposes no effective matrix to compare with")
    e = errors(64, seed=3)
    out, exact = projector.project(e), e @ matrix.T.to(e.dtype)
    cosine = torch.nn.functional.cosine_similarity(out.flatten(), exact.flatten(), dim=0)
    assert cosine > 0.8  # noisy and quantised devices included: the default settings must keep the direction


def test_effective_matrix_has_unit_scale(name):
    # Every device speaks the digital device's scale: entries of unit variance on average. Tolerance: the mean of
    # D*d = 185 squared entries of a heavy-tailed (speckle-weighted) matrix; 0.5 is more than 4 standard errors.
    matrix = build(name).effective_matrix()
    if matrix is None:
        pytest.skip(f"{name} exposes no effective matrix")
    assert abs(float(matrix.double().pow(2).mean()) - 1.0) < 0.5


def test_counters_accumulate(name):
    projector = build(name)
    projector.project(errors(8))
    projector.project(errors(3))
    counters = projector.counters()
    assert isinstance(counters, Counters)
    assert (counters.calls, counters.projections, counters.macs) == (2, 11, 11 * D_IN * D_OUT)
    assert counters.frames >= 0 and counters.hardware_seconds >= 0 and counters.energy_joules >= 0
    projector.reset_counters()
    assert projector.counters().calls == 0


def test_same_seeds_bit_identical_and_feedback_seed_matters(name):
    a, b = build(name, feedback_seed=4), build(name, feedback_seed=4)
    for seed in range(3):
        torch.testing.assert_close(a.project(errors(seed=seed)), b.project(errors(seed=seed)), rtol=0, atol=0)
    other = build(name, feedback_seed=5)
    assert not torch.equal(build(name, feedback_seed=4).project(errors()), other.project(errors()))


def test_state_dict_continues_bit_identically(name):
    projector = build(name)
    projector.project(errors(seed=1))
    state = projector.state_dict()
    expected = [projector.project(errors(seed=s)) for s in (2, 3)]
    fresh = build(name)
    fresh.load_state_dict(state)
    for want, seed in zip(expected, (2, 3), strict=True):
        torch.testing.assert_close(fresh.project(errors(seed=seed)), want, rtol=0, atol=0)
    assert fresh.counters() == projector.counters()


def test_describe_is_plain_data(name):
    projector = build(name)
    projector.project(errors())
    description = projector.describe()
    assert description["in_features"] == D_IN and description["out_features"] == D_OUT
    json.dumps(description)


def test_context_manager(name):
    with build(name) as projector:
        assert projector.project(errors()).shape == (8, D_OUT)


@pytest.mark.parametrize(("bad", "error", "match"), [
    (torch.zeros(4, D_IN + 1), FeedbackError, rf"shape \(n, {D_IN}\), got \(4, {D_IN + 1}\)"),
    (torch.zeros(D_IN), FeedbackError, rf"shape \(n, {D_IN}\), got \({D_IN},\)"),
    (torch.zeros(4, D_IN, dtype=torch.int64), FeedbackError, "must be floating point, got torch.int64"),
    ([[0.0] * D_IN], FeedbackError, "must be a torch.Tensor"),
    (torch.full((2, D_IN), float("nan")), NonFiniteError, "holds 10 non-finite value"),
])
def test_bad_error_batches(name, bad, error, match):
    projector = build(name)
    with pytest.raises(error, match=match):
        projector.project(bad)
    assert projector.counters().calls == 0


def test_raw_optical_devices_reject_non_binary_frames(name):
    device = getattr(build(name), "device", None)
    if not isinstance(device, OpticalDevice):
        pytest.skip(f"{name} has no raw optical device")
    frames = torch.zeros(2, device.input_pixels)
    assert device.acquire(frames).counts.shape == (2, device.output_pixels)
    frames[0, 0] = 0.5
    with pytest.raises(ValueError, match="binary"):
        device.acquire(frames)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_cuda_tensors_stay_on_cuda(name):
    projector = build(name, device=torch.device("cuda"))
    out = projector.project(errors().cuda())
    assert out.device.type == "cuda" and out.shape == (8, D_OUT)
