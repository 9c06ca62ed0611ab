"""load_dataset: shapes, standardisation, limits, digits, and the real Fashion-MNIST from Debian."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_cifar, write_mnist

from optodfa import data
from optodfa import datasets as ds
from optodfa.data import DIGITS_TEST_SIZE, Dataset, load_dataset

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_idx_loader_shapes_and_standardisation(isolated: Path) -> None:
    raw = write_mnist(isolated / "r", n_train=30, n_test=7, size=5, compress=False)
    flat = load_dataset("kmnist", root=isolated / "r")
    assert flat.x_train.shape == (30, 25) and flat.x_test.shape == (7, 25)
    assert flat.x_train.dtype == torch.float32 and flat.y_train.dtype == torch.int64
    assert flat.input_shape == (1, 5, 5) and flat.num_features == 25 and flat.num_classes == 10
    train = raw["train-images-idx3-ubyte"].astype(np.float64) / 255
    assert flat.mean == pytest.approx((train.mean(),), rel=1e-12)
    assert flat.std == pytest.approx((train.std(),), rel=1e-12)
    expected_test = (raw["t10k-images-idx3-ubyte"] / 255 - train.mean()) / train.std()
    np.testing.assert_allclose(flat.x_test.numpy(), expected_test.reshape(7, 25), rtol=0, atol=1e-5)
    assert abs(float(flat.x_train.double().mean())) < 1e-6
    assert float(flat.x_train.double().std(correction=0)) == pytest.approx(1, abs=1e-6)
    np.testing.assert_array_equal(flat.y_test.numpy(), raw["t10k-labels-idx1-ubyte"])
    images = load_dataset("kmnist", root=isolated / "r", flatten=False)
    assert images.x_train.shape == (30, 1, 5, 5)
    assert torch.equal(images.x_train.reshape(30, -1), flat.x_train)


def test_limit_keeps_first_training_samples_and_whole_test_set(isolated: Path) -> None:
    raw = write_mnist(isolated / "r", n_train=20, n_test=6)
    part = load_dataset("mnist", root=isolated / "r", limit=8)
    assert len(part.x_train) == 8 and len(part.x_test) == 6
    np.testing.assert_array_equal(part.y_train.numpy(), raw["train-labels-idx1-ubyte"][:8])
    first = raw["train-images-idx3-ubyte"][:8].astype(np.float64) / 255
    assert part.mean == pytest.approx((first.mean(),), rel=1e-12)  # statistics of the kept samples only
    restored = part.x_train.double() * part.std[0] + part.mean[0]
    np.testing.assert_allclose(restored.numpy(), first.reshape(8, -1), atol=1e-6)
    assert len(load_dataset("mnist", root=isolated / "r", limit=1000).x_train) == 20


def test_constant_channel_is_only_centred(isolated: Path) -> None:
    folder = isolated / "r"
    write_mnist(folder, compress=False)
    ds.write_idx(folder / "train-images-idx3-ubyte", np.full((12, 4, 4), 51, np.uint8))
    loaded = load_dataset("mnist", root=folder)
    assert loaded.std == (0.0,) and torch.count_nonzero(loaded.x_train) == 0
    assert torch.isfinite(loaded.x_test).all()
    # The float path (digits) too: a constant channel next to a varying one.
    images = np.stack([np.full((6, 2, 2), 3.0), np.arange(24.0).reshape(6, 2, 2)], axis=1)
    mean, std = data._channel_stats(images)
    assert std[0] == 0.0 and std[1] == pytest.approx(np.std(np.arange(24.0)))
    assert mean == pytest.approx([3, 11.5])


@pytest.mark.parametrize("change, match", [
    (("train-labels-idx1-ubyte", np.array([3] * 11 + [10], np.uint8)), r"labels must lie in \[0, 9\], got .* 10\]"),
    (("train-labels-idx1-ubyte", np.zeros(11, np.uint8)), r"labels must be uint8 \(12,\) to match the 12 images"),
    (("t10k-images-idx3-ubyte", np.zeros((5, 3, 4), np.uint8)), r"training images are \(4, 4\) but test .*\(3, 4\)"),
    (("train-images-idx3-ubyte", np.zeros((12, 4, 4), np.float32)), r"images must be uint8 \(N, H, W\), got float32"),
])
def test_loader_rejects_inconsistent_files(isolated: Path, change: tuple[str, np.ndarray], match: str) -> None:
    write_mnist(isolated / "r", compress=False)
    ds.write_idx(isolated / "r" / change[0], change[1])
    with pytest.raises(ds.DataFormatError, match=match):
        load_dataset("mnist", root=isolated / "r")


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loader(isolated: Path, monkeypatch: pytest.MonkeyPatch, name: str, num_classes: int) -> None:
    folder = ds.SOURCES[name].folders[0]
    raw = write_cifar(isolated / "data" / folder, num_classes=num_classes)
    monkeypatch.setenv("OPTODFA_DATA", str(isolated / "data"))
    loaded = load_dataset(name, flatten=False)
    assert loaded.input_shape == (3, 32, 32) and loaded.num_classes == num_classes
    assert loaded.x_train.shape == (len(raw["train_x"]), 3, 32, 32) and len(loaded.x_test) == len(raw["test_x"])
    train = raw["train_x"] / 255
    assert loaded.mean == pytest.approx(tuple(train.mean(axis=(0, 2, 3))), rel=1e-12)
    restored = loaded.x_train.double() * torch.tensor(loaded.std).view(1, 3, 1, 1) \
        + torch.tensor(loaded.mean).view(1, 3, 1, 1)
    np.testing.assert_allclose(restored.numpy(), train, atol=1e-6)
    np.testing.assert_array_equal(loaded.y_train.numpy(), raw["train_y"])
    assert load_dataset(name).x_test.shape == (len(raw["test_x"]), 3072)


def test_cifar_labels_out_of_range(isolated: Path) -> None:
    write_cifar(isolated / "r")
    ds.write_cifar_batch(isolated / "r" / "test_batch", np.zeros((1, 3, 32, 32), np.uint8), [10], label_key="labels")
    with pytest.raises(ds.DataFormatError, match=r"test_batch: labels must lie in \[0, 9\]"):
        load_dataset("cifar10", root=isolated / "r")


def test_digits_always_there_with_fixed_split() -> None:
    from sklearn.datasets import load_digits

    digits = load_dataset("digits", download=True)  # download is irrelevant for a bundled set
    assert (len(digits.x_train), len(digits.x_test)) == (1797 - DIGITS_TEST_SIZE, DIGITS_TEST_SIZE)
    assert digits.x_train.shape == (1500, 64) and digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    np.testing.assert_array_equal(digits.y_test.numpy(), load_digits().target[1500:])
    assert set(digits.y_train.tolist()) == set(range(10)) == set(digits.y_test.tolist())
    assert "scikit-learn" in digits.source
    assert float(digits.x_train.double().mean()) == pytest.approx(0, abs=1e-6)
    assert repr(digits).startswith("Dataset(name='digits', train=1500, test=297, input_shape=(1, 8, 8)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.name = "x"  # type: ignore[misc]
    moved = digits.to("cpu")
    assert isinstance(moved, Dataset) and torch.equal(moved.x_test, digits.x_test)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"name": "emnist"}, ValueError, "name must be one of 'fashion-mnist', 'mnist', 'kmnist', 'digits', 'cifar10', "
                                     "'cifar100'; got 'emnist'"),
    ({"limit": 0}, ValueError, "limit must be an integer >= 1, got 0"),
    ({"limit": 2.5}, TypeError, r"limit must be an integer >= 1, got 2.5 \(float\)"),
    ({"flatten": "yes"}, TypeError, r"flatten must be True or False, got 'yes' \(str\)"),
    ({"download": 1}, TypeError, r"download must be True or False, got 1 \(int\)"),
    ({"root": 3}, TypeError, r"root must be a path \(str or os.PathLike\) or None, got 3 \(int\)"),
])
def test_load_dataset_argument_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    arguments: dict[str, object] = {"name": "digits", **kwargs}
    with pytest.raises(error, match=match):
        load_dataset(**arguments)  # type: ignore[arg-type]


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                                                        "(/usr/share/datasets/fashion-mnist/ is absent)")
def test_real_fashion_mnist_from_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds.locate, "SYSTEM_DATA_DIR", DEBIAN_FASHION.parent)
    fashion = load_dataset("fashion-mnist")
    assert fashion.source == str(DEBIAN_FASHION)
    assert fashion.x_train.shape == (60000, 784) and fashion.x_test.shape == (10000, 784)
    # The published set is balanced: 6000 training and 1000 test images per class.
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10
    assert torch.bincount(fashion.y_test).tolist() == [1000] * 10
    # The widely used normalisation constants of Fashion-MNIST: mean 0.2860, std 0.3530.
    assert fashion.mean[0] == pytest.approx(0.2860, abs=5e-5) and fashion.std[0] == pytest.approx(0.3530, abs=5e-5)
