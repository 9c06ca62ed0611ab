"""The run configuration: numpy scalars normalised to Python values, wrong types refused, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from optodfa.config import TrainConfig, training_memory
from optodfa.runlog import RunFile
from optodfa.train import resume, train


def quiet(*_: object) -> None:
    pass


NUMPY = {"dataset": "digits", "hidden": np.array([12, 8]), "epochs": np.int64(2), "batch_size": np.int32(64),
         "lr": np.float32(3e-3), "alignment_every": np.uint8(4), "limit": np.int16(300), "seed": np.int64(3),
         "feedback_seed": np.uint32(1), "momentum": np.float64(0.5), "label_noise": np.float16(0.0),
         "bias": np.bool_(True), "feedback_scale": np.float64(0.25), "checkpoint_every": np.int64(3),
         "overrides": {"distribution": np.str_("uniform")}}


def test_numpy_values_become_python_values():
    config = TrainConfig(**NUMPY)
    for name, value in config.to_dict().items():
        assert not isinstance(value, np.generic), name
        if isinstance(value, (list, dict)):
            assert not any(isinstance(v, np.generic) for v in (value.values() if isinstance(value, dict) else value))
    assert config.hidden == (12, 8) and type(config.epochs) is int and type(config.lr) is float
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_numpy_config_round_trips_through_the_run_file_and_resumes(tmp_path):
    config = TrainConfig(**NUMPY)
    full = RunFile.load(train(config, tmp_path / "full.h5", progress=False, log=quiet))
    assert TrainConfig.from_dict(full.attrs["config"]) == config
    assert full.attrs["config"]["epochs"] == 2 and full.attrs["config"]["hidden"] == [12, 8]
    train(config, tmp_path / "cut.h5", progress=False, stop_after_steps=7, log=quiet)  # 5 steps an epoch
    resume(tmp_path / "cut.h5", progress=False, log=quiet)
    resumed = RunFile.load(tmp_path / "cut.h5")
    assert resumed.attrs["status"] == "completed"
    for name in full.series:
        if name != "metrics/epoch_seconds":
            assert full.series[name] == resumed.series[name], name


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"bias": 3}, TypeError, r"bias must be True or False, got 3 \(int\)"),
    ({"hidden": 8}, TypeError, r"hidden must be a sequence of positive integers .*got 8 \(int\)"),
    ({"hidden": "8,8"}, TypeError, r"hidden must be a sequence of positive integers .*got '8,8' \(str\)"),
    ({"hidden": ()}, ValueError, "hidden must list at least one hidden width"),
    ({"hidden": (8, 0)}, ValueError, r"hidden width must be an integer >= 1, got 0"),
    ({"hidden": (8.0,)}, TypeError, r"hidden width must be an integer >= 1, got 8.0 \(float\)"),
    ({"epochs": "3"}, TypeError, r"epochs must be an integer >= 1, got '3' \(str\)"),
    ({"lr": "1e-3"}, TypeError, r"lr must be a real number in \(0, inf\), got '1e-3' \(str\)"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite real number"),
    ({"download": "yes"}, TypeError, r"download must be True or False, got 'yes'"),
    ({"feedback_scale": "big"}, ValueError, r"feedback_scale must be 'auto' or a positive number, got 'big'"),
    ({"overrides": {"camera.bits": [4]}}, TypeError, r"override 'camera.bits' must be a string, number"),
    ({"overrides": "camera.bits=4"}, TypeError, "overrides must be a mapping"),
    ({"profile": 3}, TypeError, r"profile must be a non-empty string .*got 3 \(int\)"),
    ({"torch_device": 0}, TypeError, "torch_device must be a string"),
    ({"seed": -1}, ValueError, r"seed must be an integer in \[0, "),
    ({"limit": True}, TypeError, r"limit must be an integer >= 1, got True \(bool\)"),
])
def test_wrong_types_and_values_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(KeyError, match=r"unknown configuration key\(s\) \['colour'\]"):
        TrainConfig.from_dict({"colour": "blue"})


def test_training_memory_grows_with_the_request():
    small, what = training_memory(TrainConfig(hidden=(16,)))
    large, _ = training_memory(TrainConfig(hidden=(100_000, 100_000)))
    assert 0 < small < 2**30 < 4 * 100_000**2 < large
    assert what == "training hidden = 16 at batch size 128 on digits"
