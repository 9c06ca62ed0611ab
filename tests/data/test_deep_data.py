"""Input resizing, the deep-linear task of SPEC §6.3, and label noise on the test set."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_mnist

from optodfa.data import deep_linear_data, load_dataset, resize_images
from optodfa.seeding import derive_seed


def test_area_resize_is_the_mean_of_each_block():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    small = resize_images(x, (2, 3))
    expected = x.reshape(2, 3, 2, 2, 3, 2).mean((3, 5))
    torch.testing.assert_close(small, expected, rtol=0, atol=1e-6)
    assert resize_images(x.to(torch.uint8), 2).shape == (2, 3, 2, 2)
    assert resize_images(x, 8, mode="bilinear").shape == (2, 3, 8, 8)


def test_resize_errors():
    with pytest.raises(ValueError, match=r"images must be a 4-D tensor \(N, C, H, W\), got \(4, 6\)"):
        resize_images(torch.zeros(4, 6), 2)
    with pytest.raises(ValueError, match="mode must be one of 'area', 'bilinear'; got 'nearest'"):
        resize_images(torch.zeros(1, 1, 4, 4), 2, mode="nearest")
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        resize_images(torch.zeros(1, 1, 4, 4), 0)


def test_load_dataset_resizes_before_standardising(isolated: Path):
    raw = write_mnist(isolated / "r", n_train=10, n_test=3, size=6, compress=False)
    data = load_dataset("mnist", root=isolated / "r", input_size=3)
    assert data.input_shape == (1, 3, 3) and data.x_train.shape == (10, 9) and data.x_test.shape == (3, 9)
    blocks = raw["train-images-idx3-ubyte"].astype(np.float64).reshape(10, 3, 2, 3, 2).mean((2, 4)) / 255
    assert data.mean == pytest.approx((blocks.mean(),), rel=1e-6)
    expected = (blocks - blocks.mean()) / blocks.std()
    np.testing.assert_allclose(data.x_train.numpy(), expected.reshape(10, 9), rtol=0, atol=1e-5)
    same = load_dataset("mnist", root=isolated / "r", input_size=6)
    assert torch.equal(same.x_train, load_dataset("mnist", root=isolated / "r").x_train)
    with pytest.raises(ValueError, match="input_size must be an integer >= 1, got 0"):
        load_dataset("mnist", root=isolated / "r", input_size=0)


def test_deep_linear_data_has_the_requested_covariance():
    alpha, beta, n = 0.6, 0.3, 20000
    task = deep_linear_data(alpha, beta, samples=n, seed=1, dtype=torch.float64)
    assert task.x.shape == (n, 9) and task.y.shape == (n, 2)
    c = alpha * (1 - beta)
    torch.testing.assert_close(task.sigma, torch.tensor([[1.0, c], [c, alpha**2]], dtype=torch.float64))
    # Sample covariance entries have standard deviation sqrt((Σ_ii Σ_jj + Σ_ij²)/n) ≤ sqrt(2/n) ≈ 0.01: 5 of them.
    tolerance = 5 * math.sqrt(2 / n)
    covariance = task.y.T @ task.y / n
    assert (covariance - task.sigma).abs().max() < tolerance
    assert (task.x.T @ task.x / n - torch.eye(9, dtype=torch.float64)).abs().max() < tolerance
    assert (task.x.T @ task.y / n).abs().max() < tolerance  # independent inputs and outputs


def test_deep_linear_data_is_seeded_and_defaults_to_the_paper():
    a, b = deep_linear_data(1.0, 1.0, seed=3), deep_linear_data(1.0, 1.0, seed=3)
    assert a.x.shape == (1000, 9) and a.x.dtype == torch.float32
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.y, deep_linear_data(1.0, 1.0, seed=4).y)


@pytest.mark.parametrize(("alpha", "beta", "match"), [
    (0.0, 0.5, r"alpha must be a finite real number in \(0, 1\], got 0.0"),
    (0.5, 1.2, r"beta must be a finite real number in \(0, 1\], got 1.2"),
    (-1, 0.5, "alpha must be"),
])
def test_deep_linear_data_refuses_alpha_beta_outside_the_unit_interval(alpha, beta, match):
    with pytest.raises(ValueError, match=match):
        deep_linear_data(alpha, beta)


def test_label_noise_on_the_test_set_is_optional(isolated: Path):
    write_mnist(isolated / "r", n_train=400, n_test=400, size=2, compress=False)
    data = load_dataset("mnist", root=isolated / "r")
    train_only = data.with_label_noise(0.5, seed=7)
    both = data.with_label_noise(0.5, seed=7, test=True)
    assert torch.equal(train_only.y_test, data.y_test)
    assert torch.equal(both.y_train, train_only.y_train)  # test noise leaves the training labels alone
    changed = float((both.y_test != data.y_test).double().mean())
    # Expected 0.5 · 0.9 = 0.45 of the 400 labels change: 5 binomial standard deviations ≈ 0.12.
    assert abs(changed - 0.45) < 5 * math.sqrt(0.45 * 0.55 / 400)
    from optodfa.data import add_label_noise

    assert torch.equal(both.y_test, add_label_noise(data.y_test, 0.5, 10, seed=derive_seed(7, 1)))
    with pytest.raises(ValueError, match=r"p must be a finite real number in \[0, 1\], got 1.5"):
        data.with_label_noise(1.5, seed=7)
