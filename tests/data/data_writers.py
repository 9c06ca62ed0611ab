"""Writers of tiny MNIST-format and CIFAR-format files for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optodfa import datasets as ds


def write_mnist(folder: Path, *, n_train: int = 12, n_test: int = 5, size: int = 4, seed: int = 0,
                compress: bool = True, num_classes: int = 10) -> dict[str, np.ndarray]:
    """Four IDX files of random images and labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, num_classes, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, num_classes, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        ds.write_idx(folder / (f"{name}.gz" if compress else name), array, compress=compress)
    return arrays


def write_cifar(folder: Path, *, num_classes: int = 10, per_batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 (5 + 1 batches) or CIFAR-100 (train + test) folder; returns images and labels written."""
    rng = np.random.default_rng(seed)
    names = ds.SOURCES["cifar10" if num_classes == 10 else "cifar100"].files
    key = "labels" if num_classes == 10 else "fine_labels"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for index, name in enumerate(names):
        images = rng.integers(0, 256, (per_batch + index, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, num_classes, len(images))
        ds.write_cifar_batch(folder / name, images, labels, label_key=key)
        split = "test" if name in ("test_batch", "test") else "train"
        written[f"{split}_x"].append(images)
        written[f"{split}_y"].append(labels)
    return {k: np.concatenate(v) for k, v in written.items()}
