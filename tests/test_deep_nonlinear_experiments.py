"""The deep non-linear experiments (deep_layerwise, label_noise) run end to end in their --quick form."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from experiments import deep_layerwise, label_noise
from experiments._deep import GRADIENT_LAYERS, WEIGHT_LAYERS, bottom_first, mlp_outputs, rise
from optodfa.models import build_model


def test_deep_layerwise_quick(tmp_path):
    paths = deep_layerwise.main(["--quick", "--workers", "0", "--out", str(tmp_path)])
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    quick = deep_layerwise.QUICK
    labels = ["BP_tanh", "DFA_tanh", *(f"DFA_tanh_opu-sim_{bits}-bit" for bits in quick.camera_bits)]
    with h5py.File(paths["h5"], "r") as file:
        assert sorted(file) == sorted(labels)
        for name in labels:
            group = file[name]
            steps = group["step"][()]
            assert steps[0] == 0 and np.all(np.diff(steps) > 0)
            weight, gradient = group["weight_alignment"][()], group["gradient_alignment"][()]
            assert weight.shape == (quick.seeds, len(WEIGHT_LAYERS), len(steps))
            assert gradient.shape == (quick.seeds, len(GRADIENT_LAYERS), len(steps))
            assert np.all(np.abs(weight) <= 1) and np.all(np.abs(gradient) <= 1)
            # Each peak is the maximum of the mean curve, at a measured step.
            mean = weight.mean(axis=0)
            assert group["weight_peak_step"][()].tolist() == steps[mean.argmax(axis=1)].tolist()
            np.testing.assert_allclose(group["weight_peak"][()], mean.max(axis=1))
            cross = group["cross_seed"][()]
            assert cross.shape == (len(GRADIENT_LAYERS) + 2, len(group["cross_seed_step"][()]))
            assert np.all(np.abs(cross) <= 1) and np.all(cross[:, 0] < 0.5)  # independent initialisations
            assert np.all((group["test_accuracy"][()] >= 0) & (group["test_accuracy"][()] <= 1))
        assert isinstance(file.attrs["DFA_tanh_bottom_first"], np.bool_ | bool)
    table = paths["md"].read_text()
    assert "| DFA tanh |" in table and "| BP tanh |" in table and "opu-sim 2-bit" in table
    assert "Cross-seed cosine of the final weights" in table
    assert (tmp_path / "deep_layerwise" / "summary.md").is_file()  # the runs are a sweep `optodfa report` reads


def test_label_noise_quick(tmp_path):
    paths = label_noise.main(["--quick", "--workers", "0", "--out", str(tmp_path)])
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    with h5py.File(paths["h5"], "r") as file:
        assert sorted(file) == sorted(f"p{p:g}".replace(".", "_") for p in label_noise.QUICK.noise)
        for name in file:
            group = file[name]
            error = group["train_error"][()]
            assert error.shape == (1, len(group["error_steps"][()]))
            assert np.all((error >= 0) & (error <= 1))
            assert 0.5 < error[0, 0] <= 1.0  # random initial weights on 10 classes: near chance
            assert np.all(np.abs(group["ga_total"][()]) <= 1)
        for p in label_noise.QUICK.noise:
            key = f"p{p:g}".replace(".", "_")
            assert 0 <= file.attrs[f"{key}_train_error_final"] <= 1
            assert -1 <= file.attrs[f"{key}_ga_final"] <= 1
    assert "| p=0.9 |" in paths["md"].read_text()


def test_numpy_forward_matches_the_torch_network():
    torch.manual_seed(0)
    for activation in ("tanh", "relu"):
        network = build_model("mlp", (1, 14, 14), (100, 100, 100, 100), 10, activation=activation, bias=False)
        linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
        weights = dict(zip([*GRADIENT_LAYERS, "output"], [m.weight.detach().numpy() for m in linears], strict=True))
        x = torch.randn(7, 196)
        with torch.no_grad():
            expected = network(x).numpy()
        np.testing.assert_allclose(mlp_outputs(weights, x.numpy(), activation), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'tanh'\], got 'gelu'"):
        mlp_outputs(weights, x.numpy(), "gelu")


def test_bottom_first():
    assert bottom_first([1, 2, 2, 5]) and not bottom_first([3, 2, 4, 5]) and bottom_first([7])
    assert not bottom_first([-1, 2, 3]) and not bottom_first([1, 2, -1])
    steps = np.array([0, 1, 2, 4, 8])
    assert rise(steps, np.array([0.0, 0.1, 0.3, 0.6, 0.5])) == 2
    assert rise(steps, np.array([0.2, 0.3, 0.5, 0.7, 1.0])) == 4  # half way from 0.2 to 1.0: 0.6
    assert rise(steps, np.array([0.5, 0.1, 0.3, 0.4, 0.2])) == -1
