"""Label noise and the module surface."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from optodfa import data
from optodfa import datasets as ds
from optodfa.data import DATASETS, add_label_noise, load_dataset


def test_label_noise_rate_and_uniformity() -> None:
    n, classes, p = 20000, 10, 0.3
    labels = torch.randint(classes, (n,), generator=torch.Generator().manual_seed(0))
    noisy = add_label_noise(labels, p, classes, seed=5)
    changed = float((noisy != labels).double().mean())
    expected = p * (1 - 1 / classes)
    # Binomial fraction: 5 standard deviations sqrt(q(1-q)/n) ≈ 0.016 around q = 0.27.
    assert abs(changed - expected) < 5 * math.sqrt(expected * (1 - expected) / n)
    # p = 1 makes every label uniform, whatever it was: all-zero labels become a flat histogram. Pearson's
    # chi-square with 9 degrees of freedom, rejected only beyond its 1 - 1e-6 quantile.
    counts = torch.bincount(add_label_noise(torch.zeros(n, dtype=torch.int64), 1.0, classes, seed=6), minlength=10)
    chi2 = float(((counts - n / classes) ** 2 / (n / classes)).sum())
    assert chi2 < stats.chi2.ppf(1 - 1e-6, classes - 1)


def test_label_noise_is_seeded_nested_and_keeps_type() -> None:
    labels = torch.arange(1000, dtype=torch.int32) % 7
    assert torch.equal(add_label_noise(labels, 0.0, 7, seed=1), labels)
    low, high = add_label_noise(labels, 0.2, 7, seed=1), add_label_noise(labels, 0.5, 7, seed=1)
    assert torch.equal(low, add_label_noise(labels, 0.2, 7, seed=1))
    assert not torch.equal(low, add_label_noise(labels, 0.2, 7, seed=2))
    changed = low != labels
    assert changed.any() and torch.equal(high[changed], low[changed])  # same replacements at the larger p
    assert low.dtype == torch.int32 and low.shape == labels.shape
    assert torch.equal(add_label_noise(labels[:0], 0.5, 7, seed=1), labels[:0])


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((torch.zeros(3, dtype=torch.int64), 1.5, 10), {"seed": 0}, ValueError,
     r"p must be a finite real number in \[0, 1\], got 1.5"),
    ((torch.zeros(3, dtype=torch.int64), 0.1, 0), {"seed": 0}, ValueError, "num_classes must be an integer >= 1"),
    ((torch.zeros(3, dtype=torch.int64), 0.1, 10), {"seed": -1}, ValueError, "seed must be an integer in"),
    (([0, 1], 0.1, 10), {"seed": 0}, TypeError, "labels must be a torch.Tensor, got list"),
    ((torch.zeros(3), 0.1, 10), {"seed": 0}, ValueError, r"labels must be a 1-D integer tensor, got torch.float32"),
    ((torch.zeros(2, 2, dtype=torch.int64), 0.1, 10), {"seed": 0}, ValueError, r"of shape \(2, 2\)"),
    ((torch.tensor([0, 10]), 0.1, 10), {"seed": 0}, ValueError,
     r"labels must lie in \[0, 9\] for num_classes=10, got values in \[0, 10\]"),
])
def test_label_noise_errors(args: tuple, kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        add_label_noise(*args, **kwargs)


def test_label_noise_seed_is_keyword_only() -> None:
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4 were given"):
        add_label_noise(torch.zeros(3, dtype=torch.int64), 0.1, 10, 0)  # type: ignore[misc]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_label_noise_and_dataset_on_gpu() -> None:
    labels = torch.arange(500) % 10
    on_gpu = add_label_noise(labels.cuda(), 0.4, 10, seed=3)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), add_label_noise(labels, 0.4, 10, seed=3))
    moved = load_dataset("digits").to("cuda")
    assert moved.x_train.is_cuda and moved.y_test.is_cuda


def test_known_names_and_module_surface() -> None:
    assert DATASETS == ("fashion-mnist", "mnist", "kmnist", "digits", "cifar10", "cifar100")
    assert set(ds.SOURCES) == set(DATASETS) - {"digits"}
    assert set(data.__all__) == {"DATASETS", "DIGITS_TEST_SIZE", "RESIZE_MODES", "Dataset", "DatasetNotFoundError",
                                 "DeepLinearData", "add_label_noise", "deep_linear_data", "load_dataset",
                                 "resize_images"}
