"""Fuzzing the configuration side: the run configuration, device profiles and overrides, ``convert``."""

from __future__ import annotations

import dataclasses
import itertools
import json

import hypothesis.strategies as st
import numpy as np
import torch
from fuzzlib import attempt, budget, check_tensor
from hypothesis import given
from torch import nn

from optodfa import convert
from optodfa.config import TrainConfig
from optodfa.profiles import SCHEMA, Profile, load_profile, parse_profile

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["auto", "digits", "cpu", "adam", "dfa", "tanh", "mlp", "raise"]),
    st.just(np.int64(4)), st.just(np.float32(0.5)), st.just(np.bool_(True)), st.just(np.str_("sgd")),
    st.lists(st.integers(-1, 40), max_size=3), st.tuples(st.just(np.int32(8)), st.just(np.int64(4))),
    st.dictionaries(st.sampled_from(["camera.bits", "distribution", 3]), st.sampled_from([4, "4", np.int8(2),
                                                                                            [1], None]), max_size=2),
)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def plain(value: object) -> bool:
    """JSON types only, all the way down (what a run file stores)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


@budget(full=3000, smoke=25)
@given(st.dictionaries(st.sampled_from(FIELDS), ANY, max_size=5))
def test_train_config(values):
    accepted, config = attempt("TrainConfig", lambda: TrainConfig(**values))
    if accepted:
        stored = config.to_dict()
        assert plain(stored), f"configuration holds non-plain values: {stored}"
        again = TrainConfig.from_dict(json.loads(json.dumps(stored)))
        assert again == config, "configuration does not survive the run file's JSON"


VALUES = {
    "int": st.one_of(st.integers(-5, 5000), st.sampled_from(["4", "12 bit", "unlimited", "x", "1e3"])),
    "float": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["200us", "0.4 ms", "1e-3 s", "5 parsec", "inf", "-1", "auto", "nan", "50%"])),
    "bool": st.one_of(st.booleans(), st.sampled_from(["true", "no", "maybe", "1", 1])),
    "choice": st.one_of(st.text(max_size=4), st.sampled_from(["frame", "ternary", "max", "holographic", "off"])),
}


@st.composite
def override_sets(draw) -> dict:
    keys = draw(st.lists(st.sampled_from([*SCHEMA, "camera.colour", "nope"]), max_size=4, unique=True))
    return {k: draw(VALUES[SCHEMA[k].kind] if k in SCHEMA else st.just("1")) for k in keys}


@budget(full=2000, smoke=20)
@given(profile=st.sampled_from((None, "ideal-opu", "low-light-opu", "lighton-aurora", "nope", "", "a/b.toml", 7)),
       overrides=override_sets())
def test_profile_overrides(profile, overrides):
    accepted, resolved = attempt("load_profile", lambda: load_profile(profile, overrides))
    if accepted:
        assert isinstance(resolved, Profile)
        json.dumps(resolved.as_dict(), allow_nan=False)  # stored in run files as strict JSON
        assert set(resolved.values) == set(SCHEMA)


ENTRY = st.one_of(
    st.fixed_dictionaries({"value": st.one_of(st.integers(-2, 3000), st.floats(allow_nan=True), st.text(max_size=3),
                                              st.booleans()),
                           "unit": st.sampled_from(["bit", "us", "e-", "W", "parsec", 3]),
                           "source": st.sampled_from(["datasheet", "", 4])}),
    st.integers(-2, 10), st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=2))


@budget(full=1500, smoke=15)
@given(st.dictionaries(st.sampled_from(["camera", "dmd", "encoding", "readout", "profile", "bogus"]),
                       st.one_of(st.dictionaries(st.sampled_from(["bits", "rows", "kind", "mode", "name", "exposure",
                                                                  "read_noise", "extra"]), ENTRY, max_size=3),
                                 st.integers(), st.text(max_size=3)), max_size=3))
def test_parse_profile(data):
    accepted, resolved = attempt("parse_profile", lambda: parse_profile(data, name="fuzz"))
    if accepted:
        json.dumps(resolved.as_dict(), allow_nan=False)


LAYERS = st.sampled_from(["linear", "linear", "linear", "tanh", "relu", "tanh", "flatten", "dropout", "conv",
                          "identity", "softmax"])


def build_net(spec: list[str], widths: list[int], channels: bool, chained: bool) -> nn.Sequential:
    """Layers from ``spec``; ``chained`` gives consecutive Linear layers matching widths (mostly valid MLPs)."""
    modules: list[nn.Module] = []
    width_iter = itertools.cycle(widths)
    previous = widths[0]
    for kind in spec:
        if kind == "linear" and chained:
            width = next(width_iter)
            modules.append(nn.Linear(previous, width))
            previous = width
        elif kind == "linear":
            modules.append(nn.Linear(next(width_iter), next(width_iter)))
        elif kind == "conv":
            modules.append(nn.Conv2d(1 if channels else next(width_iter), 2, 3))
        else:
            modules.append({"tanh": nn.Tanh, "relu": nn.ReLU, "flatten": nn.Flatten, "dropout": nn.Dropout,
                            "identity": nn.Identity, "softmax": nn.Softmax}[kind]())
    return nn.Sequential(*modules)


@budget(full=1000, smoke=10)
@given(spec=st.lists(LAYERS, min_size=0, max_size=7), widths=st.lists(st.integers(1, 9), min_size=2, max_size=4),
       channels=st.booleans(),
       input_shape=st.one_of(st.lists(st.integers(-1, 9), max_size=3).map(tuple), st.just((1, 6, 6)),
                             st.just("784"), st.none()),
       projector=st.sampled_from(["digital", "digital", "opu-sim", "opu-sim", "nope"]),
       scale=st.sampled_from(["auto", "auto", "auto", 0.5, 2.0, -1.0, 0.0, "big", float("nan")]),
       mode=st.sampled_from(["dfa", "dfa", "bp", "both"]), chained=st.booleans())
def test_convert(spec, widths, channels, input_shape, projector, scale, mode, chained):
    torch.manual_seed(0)
    if chained:  # mostly valid: ends in an output layer, has a hidden one
        spec = ["linear", *[k for k in spec if k not in ("conv", "flatten")], "linear"]
    net = build_net(spec, widths, channels, chained)
    if chained:
        input_shape = (widths[0],)
    accepted, converted = attempt("convert", lambda: convert(net, input_shape, projector=projector,
                                                             feedback_scale=scale, mode=mode))
    if not accepted:
        return
    model, report = converted
    assert isinstance(report, list) and all(isinstance(line, str) for line in report)
    x = torch.randn(3, *input_shape)
    out = model(x)
    assert out.ndim >= 2 and out.shape[0] == 3
    check_tensor("convert", out, tuple(out.shape))
    out.square().sum().backward()
    for parameter in model.parameters():
        if parameter.grad is not None:
            check_tensor("convert", parameter.grad, tuple(parameter.shape))
