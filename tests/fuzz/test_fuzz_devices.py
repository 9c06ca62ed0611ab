"""Fuzzing the device side: projectors (built and used), encoders, readouts and ``acquire``."""

from __future__ import annotations

import functools

import hypothesis.strategies as st
import numpy as np
import torch
from fuzzlib import attempt, budget, check_tensor
from hypothesis import given

from optodfa import build_projector
from optodfa.device import Projector
from optodfa.encoding import THRESHOLD_RULES, make_encoding
from optodfa.readout import READOUTS, make_readout

DEVICES = ("digital", "opu-sim", "opu-twin")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64)
OVERRIDES = {
    "camera.bits": ["1", "4", "8", "12", "16", "unlimited", "0", "17", "x", 8, 4.5, -1],
    "camera.read_noise": ["0", "5", "1e3", "-1", "inf", "nan"],
    "camera.exposure": ["400us", "1ms", "0", "2s", "5 parsec"],
    "camera.full_well": ["10000", "inf", "0", "1"],
    "camera.gain": ["auto", "0.5", "0", "-2"],
    "camera.dark_offset": ["0", "3", "100", "-1"],
    "camera.auto_exposure": ["frame", "batch", "off", "sometimes"],
    "camera.shot_noise": ["true", "false", "maybe", True],
    "encoding.kind": ["ternary", "sign", "bitplane", "quaternary"],
    "encoding.bits": ["1", "3", "16", "0", "40"],
    "encoding.threshold": ["0", "0.25", "0.99", "1", "-0.5"],
    "encoding.rule": ["fixed", "max", "std", "median"],
    "readout.mode": ["holographic", "strong-reference", "intensity", "phase"],
    "readout.evening": ["true", "false"],
    "drift.enabled": ["true", "false"],
    "drift.rho": ["0.9", "1", "2"],
    "drift.period": ["1", "10", "0"],
    "dmd.macropixel": ["1", "64", "0", "100000"],
    "distribution": ["gaussian", "uniform", "cauchy"],
    "probes": ["64", "1", "x", "1000000000000"],
    "colour": ["blue"],
}

overrides = st.dictionaries(st.sampled_from(sorted(OVERRIDES)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(OVERRIDES[k]) for k in keys}))


@functools.lru_cache(maxsize=64)
def cached_projector(name: str, d: int, big_d: int, profile: str | None, items: tuple) -> Projector | Exception:
    try:
        return build_projector(name, d, big_d, feedback_seed=1, profile=profile, overrides=dict(items))
    except (ValueError, TypeError, KeyError) as exc:
        return exc


@budget(full=600, smoke=6)
@given(name=st.sampled_from((*DEVICES, "nope")), d=st.integers(-1, 12), big_d=st.integers(-1, 48),
       profile=st.sampled_from((None, None, "ideal-opu", "low-light-opu", "lighton-aurora", "missing",
                                "./no/such.toml")),
       settings=overrides, seed=st.one_of(st.integers(-2, 2**64), st.just(np.int64(3)), st.just("7")))
def test_build_projector(name, d, big_d, profile, settings, seed):
    def build():
        return build_projector(name, d, big_d, feedback_seed=seed, profile=profile, overrides=settings)

    if name == "opu-twin" and "probes" not in settings:
        settings = {**settings, "probes": "64"}  # keeps each calibration small
    accepted, projector = attempt("build_projector", build)
    if accepted:
        assert isinstance(projector, Projector)
        assert (projector.in_features, projector.out_features) == (d, big_d)
        matrix = projector.effective_matrix()
        if matrix is not None:
            check_tensor("build_projector", matrix, (big_d, d))


def error_batches(d: int) -> st.SearchStrategy:
    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                       st.floats(-1e3, 1e3), st.sampled_from([0.0, 1e-30, -1e-30, 1e30, 65504.0, 7e4]))
    return st.tuples(st.integers(0, 9), st.sampled_from((d, d, d, d + 1, 0)), st.sampled_from(DTYPES),
                     st.lists(values, min_size=1, max_size=8), st.sampled_from(("2d", "2d", "2d", "1d", "3d",
                                                                                  "list")))


def make_batch(n: int, width: int, dtype: torch.dtype, values: list[float], layout: str):
    flat = np.resize(np.asarray(values, dtype=np.float64), max(n * width, 1))[: n * width]
    if layout == "list":
        return flat.reshape(n, width).tolist()
    array = torch.from_numpy(flat.reshape(n, width).copy())
    with np.errstate(all="ignore"):
        tensor = array.to(dtype) if dtype not in (torch.int64, torch.bool) else torch.from_numpy(
            np.nan_to_num(flat.reshape(n, width)).clip(-1e6, 1e6).astype(np.int64)).to(dtype)
    if layout == "1d":
        return tensor.reshape(-1)
    if layout == "3d":
        return tensor.reshape(1, n, width)
    return tensor


@budget(full=2500, smoke=12)
@given(name=st.sampled_from(DEVICES), profile=st.sampled_from((None, "ideal-opu", "low-light-opu")),
       mode=st.sampled_from(("holographic", "strong-reference", "intensity")),
       kind=st.sampled_from(("ternary", "sign", "bitplane")), bits=st.sampled_from(("2", "16")),
       data=st.data())
def test_project(name, profile, mode, kind, bits, data):
    d, big_d = 5, 12
    items = () if name == "digital" else (("encoding.bits", bits), ("encoding.kind", kind), ("readout.mode", mode))
    if name == "opu-twin":
        items = (*items, ("probes", "64"))
    projector = cached_projector(name, d, big_d, None if name == "digital" else profile, items)
    if isinstance(projector, Exception):  # a combination the profile checks refuse (covered by the target above)
        return
    n, width, dtype, values, layout = data.draw(error_batches(d))
    e = make_batch(n, width, dtype, values, layout)
    accepted, out = attempt("Projector.project", lambda: projector.project(e))
    if accepted:
        check_tensor("Projector.project", out, (e.shape[0], big_d))
        assert out.dtype == e.dtype


@budget(full=1500, smoke=12)
@given(kind=st.sampled_from(("ternary", "sign", "bitplane", "other")),
       params=st.dictionaries(st.sampled_from(("threshold", "rule", "bits", "colour")),
                              st.one_of(st.integers(-2, 40), st.floats(-1, 2), st.just(float("nan")),
                                        st.sampled_from(THRESHOLD_RULES), st.just(np.float32(0.3))), max_size=2),
       data=st.data())
def test_encoding(kind, params, data):
    accepted, encoding = attempt("make_encoding", lambda: make_encoding(kind, **params))
    if not accepted:
        return
    d = data.draw(st.integers(1, 7))
    n, width, dtype, values, layout = data.draw(error_batches(d))
    e = make_batch(n, width, dtype, values, layout)
    accepted, encoded = attempt("Encoding.encode", lambda: encoding.encode(e))
    if not accepted:
        return
    planes = encoded.planes
    check_tensor("Encoding.encode", planes, (encoding.planes, n, width))
    assert bool(((planes == -1) | (planes == 0) | (planes == 1)).all()), "planes must be ternary"
    check_tensor("Encoding.encode", encoded.scale, (n,))
    check_tensor("Encoding.encode", encoded.value(), (n, width))
    projected = torch.randn(encoding.planes, n, 3, dtype=encoded.scale.dtype)
    check_tensor("Encoding.decode", encoding.decode(projected, encoded), (n, 3))


@functools.lru_cache(maxsize=4)
def small_device(bits: str):
    return build_projector("opu-sim", 6, 10, feedback_seed=2, overrides={"camera.bits": bits}).device


def frame_batches(width: int) -> st.SearchStrategy:
    return st.tuples(st.integers(0, 6), st.sampled_from((width, width, width, width - 1, width + 3)),
                     st.sampled_from((torch.bool, torch.float32, torch.int64, torch.uint8, torch.float64,
                                      torch.complex64)),
                     st.lists(st.sampled_from([0, 1, 1, 0, 2, -1, 0.5, float("nan")]), min_size=1, max_size=6),
                     st.sampled_from(("2d", "2d", "1d", "list")))


def make_frames(n, width, dtype, values, layout):
    flat = np.resize(np.asarray(values, dtype=np.float64), max(n * width, 1))[: n * width].reshape(n, width)
    if layout == "list":
        return flat.tolist()
    if dtype in (torch.bool, torch.int64, torch.uint8):
        flat = np.nan_to_num(flat).clip(0, 2 if dtype != torch.bool else 1).astype(np.int64)
    tensor = torch.from_numpy(np.ascontiguousarray(flat)).to(dtype)
    return tensor.reshape(-1) if layout == "1d" else tensor


@budget(full=1500, smoke=10)
@given(bits=st.sampled_from(("4", "8", "unlimited")), data=st.data(),
       reference=st.sampled_from(("true", "false", "per-frame", "wrong-shape", "ints", "none")))
def test_acquire(bits, data, reference):
    device = small_device(bits)
    n, width, dtype, values, layout = data.draw(frame_batches(device.input_pixels))
    frames = make_frames(n, width, dtype, values, layout)
    flags = {"true": True, "false": False, "per-frame": torch.arange(max(n, 1))[:n] % 2 == 0,
             "wrong-shape": torch.ones(n + 1, dtype=torch.bool), "ints": torch.ones(n, dtype=torch.int64),
             "none": None}[reference]
    accepted, acquisition = attempt("OpticalDevice.acquire", lambda: device.acquire(frames, reference=flags))
    if not accepted:
        return
    counts = acquisition.counts
    check_tensor("OpticalDevice.acquire", counts, (n, device.output_pixels))
    check_tensor("OpticalDevice.acquire", acquisition.intensity_per_count, (n,))
    if device.bit_depth is not None and n:
        assert int(counts.min()) >= 0, "negative counts"
        assert int(counts.max()) <= 2**device.bit_depth - 1, "counts above the top code"
    assert bool((acquisition.intensity_per_count > 0).all())


@budget(full=800, smoke=8)
@given(mode=st.sampled_from((*READOUTS, "phase")), data=st.data())
def test_readout(mode, data):
    accepted, readout = attempt("make_readout", lambda: make_readout(mode))
    if not accepted:
        return
    device = small_device("8")
    n, width, dtype, values, layout = data.draw(frame_batches(device.input_pixels))
    plus = make_frames(n, width, dtype, values, layout)
    minus = make_frames(n, width, dtype, values[::-1], layout)
    accepted, out = attempt("Readout.measure", lambda: readout.measure(device, plus, minus))
    if accepted:
        check_tensor("Readout.measure", out, (n, device.output_pixels))
