"""The run configuration: numpy scalars normalised to Python values, wrong types refused, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from optodfa.config import TrainConfig, split_matrix_file, training_memory
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


# -- the reference-faithful settings (issue 9) ---------------------------------------------------------------------
NEW_FIELDS = {"feedback": "uniform", "loss_reduction": "sum", "input_size": 6, "label_noise_test": True,
              "label_noise": 0.2, "optimizer": "sgd-plain", "model": "cnn"}


def test_new_fields_round_trip_and_old_run_files_default_them():
    config = TrainConfig(**NEW_FIELDS)
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = TrainConfig().to_dict()
    for name in ("feedback", "feedback_file", "loss_reduction", "input_size", "label_noise_test"):
        del old[name]
    assert TrainConfig.from_dict(old) == TrainConfig()
    numpy = TrainConfig(input_size=np.int64(14), loss_reduction=np.str_("sum"), label_noise_test=np.bool_(True))
    assert type(numpy.input_size) is int and type(numpy.loss_reduction) is str
    assert type(numpy.label_noise_test) is bool


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"loss_reduction": "max"}, ValueError, r"loss_reduction must be one of 'mean', 'sum'; got 'max'"),
    ({"feedback": "binary"}, ValueError, r"feedback must be one of 'gaussian', 'uniform'; got 'binary'"),
    ({"input_size": 0}, ValueError, r"input_size must be .*>= 1.*got 0"),
    ({"input_size": 2.5}, TypeError, r"input_size must be an integer"),
    ({"label_noise_test": "yes"}, TypeError, r"label_noise_test must be True or False, got 'yes'"),
    ({"feedback_file": ""}, TypeError, r"feedback_file must be a non-empty string"),
    ({"optimizer": "sgd-plain", "momentum": 0.5}, ValueError,
     r"optimizer 'sgd-plain' is SGD without momentum; got momentum=0.5"),
    ({"device": "opu-sim", "feedback": "uniform"}, ValueError,
     r"feedback='uniform' set the feedback matrix of the digital device; device 'opu-sim' has its own"),
    ({"device": "opu-sim", "feedback_file": "B.npy"}, ValueError, r"device 'opu-sim' has its own projection"),
    ({"feedback": "uniform", "feedback_file": "B.npy"}, ValueError, r"give either feedback='uniform'"),
    ({"feedback": "uniform", "overrides": {"distribution": "uniform"}}, ValueError,
     r"device override\(s\) \['distribution'\] set the same thing"),
])
def test_new_fields_refuse_bad_values(changes, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_sgd_plain_stores_momentum_zero_and_sgd_keeps_its_momentum():
    assert TrainConfig(optimizer="sgd-plain").momentum == 0.0
    assert TrainConfig(optimizer="sgd-plain", momentum=0).momentum == 0.0
    assert TrainConfig(optimizer="sgd").momentum == 0.9  # an existing run's meaning is unchanged


def test_device_overrides_from_feedback_settings():
    assert TrainConfig().device_overrides() == {}
    assert TrainConfig(feedback="uniform").device_overrides() == {"distribution": "uniform"}
    assert TrainConfig(feedback_file="B.npy").device_overrides() == {"matrix_file": "B.npy"}
    assert TrainConfig(feedback_file="d/B.h5:W").device_overrides() == {"matrix_file": "d/B.h5",
                                                                       "matrix_dataset": "W"}
    assert TrainConfig(overrides={"distribution": "uniform"}).device_overrides() == {"distribution": "uniform"}
    assert split_matrix_file("B.HDF5:g/W") == ("B.HDF5", "g/W")
    assert split_matrix_file("B.npy:W") == ("B.npy:W", None)  # only HDF5 files hold named data sets
    assert split_matrix_file("c:/x.npy") == ("c:/x.npy", None)
    assert split_matrix_file("x.hdf5:W") == ("x.hdf5", "W")


def test_memory_estimate_follows_input_size_and_cnn():
    full, _ = training_memory(TrainConfig(dataset="fashion-mnist", hidden=(100,)))
    small, _ = training_memory(TrainConfig(dataset="fashion-mnist", hidden=(100,), input_size=14))
    assert small < full
    conv, _ = training_memory(TrainConfig(dataset="cifar10", model="cnn", hidden=(16, 32)))
    assert conv > 0


def test_a_sweep_grid_expands_the_new_fields():
    from optodfa.sweep import Grid

    grid = Grid.load({"base": {"dataset": "digits", "hidden": [16], "epochs": 1, "optimizer": "sgd-plain"},
                      "grid": {"feedback": ["gaussian", "uniform"], "loss_reduction": ["mean", "sum"]},
                      "zip": {"input_size": [4, 6], "label_noise_test": [False, True]}})
    runs = grid.runs()
    assert [r.name for r in runs][:2] == ["feedback=gaussian,loss_reduction=mean,input_size=4,label_noise_test=false",
                                          "feedback=gaussian,loss_reduction=mean,input_size=6,label_noise_test=true"]
    last = runs[-1].config
    assert (last.feedback, last.loss_reduction, last.input_size, last.label_noise_test, last.momentum) == (
        "uniform", "sum", 6, True, 0.0)
    assert last.device_overrides() == {"distribution": "uniform"}
