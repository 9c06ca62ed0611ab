"""Data sets: IDX and CIFAR readers on tiny files written here, the search order, downloads through file:// URLs,
the loader's preprocessing, label noise, and the real Fashion-MNIST from Debian's package."""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from optodfa import data
from optodfa import datasets as ds
from optodfa.data import DATASETS, DIGITS_TEST_SIZE, Dataset, add_label_noise, load_dataset
from optodfa.datasets.sources import IDX_FILES

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees an empty environment: no $OPTODFA_DATA, a private cache, no system data sets."""
    monkeypatch.delenv("OPTODFA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ds.locate, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


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


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", ">i4", "<f4", "float64"])
def test_idx_round_trip(tmp_path: Path, dtype: str, compress: bool) -> None:
    array = (np.arange(24) - 7).reshape(2, 3, 4).astype(dtype)  # either byte order in, native out
    ds.write_idx(tmp_path / "a", array, compress=compress)
    back = ds.read_idx(tmp_path / "a")
    assert back.dtype == array.dtype.newbyteorder("=") and back.dtype.isnative and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_idx_reads_bytes_laid_out_by_hand(tmp_path: Path) -> None:
    # Written byte by byte from the format's definition, not by our writer: type 0x0B (int16), 2 dimensions.
    raw = bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 2) + struct.pack(">4h", 1, -2, 300, -32768)
    (tmp_path / "h").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "h"), [[1, -2], [300, -32768]])
    labels = bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes([7, 0, 255])
    (tmp_path / "l").write_bytes(labels)
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "l"), [7, 0, 255])


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "shorter than the 4-byte magic number"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic number must start with two zero bytes, got 01000801"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x07; expected one of 0x08"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header: 3 dimension sizes need 12 bytes, got 4"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc", r"truncated IDX data: header \(5,\) of uint8 needs 5"),
    (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"abcde", "longer than its header declares"),
])
def test_idx_rejects_bad_files_naming_them(tmp_path: Path, raw: bytes, match: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ds.DataFormatError, match=re.escape(str(path)) + ".*" + match):
        ds.read_idx(path)


def test_idx_rejects_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 1000) + bytes(1000))[:-20])
    with pytest.raises(ds.DataFormatError, match=r"cut\.gz: corrupt gzip stream"):
        ds.read_idx(path)


def test_write_idx_rejects_what_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"array dtype must be one of uint8, .* got int64"):
        ds.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="array must have between 1 and 255 dimensions, got 0"):
        ds.write_idx(tmp_path / "x", np.uint8(3))


def test_cifar_batch_channel_layout(tmp_path: Path) -> None:
    # One image whose rows in the file are 1024 red, 1024 green, 1024 blue values, as the format defines.
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    with open(tmp_path / "b", "wb") as stream:
        pickle.dump({b"data": row[None], b"labels": [7]}, stream, protocol=2)  # bytes keys, as encoding="bytes"
    images, labels = ds.read_cifar_batch(tmp_path / "b", label_key="labels")
    assert images.shape == (1, 3, 32, 32) and images.dtype == np.uint8
    assert (images[0, 0] == 10).all() and (images[0, 1] == 20).all()
    np.testing.assert_array_equal(images[0, 2, 1], np.arange(32, 64))  # row-major: second row of blue
    np.testing.assert_array_equal(labels, [7])
    assert labels.dtype == np.int64


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_round_trip_any_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    with open(tmp_path / "b", "wb") as stream:
        pickle.dump({"data": images.reshape(3, -1), "fine_labels": [1, 99, 0]}, stream, protocol=protocol)
    back, labels = ds.read_cifar_batch(tmp_path / "b", label_key="fine_labels")
    np.testing.assert_array_equal(back, images)
    np.testing.assert_array_equal(labels, [1, 99, 0])
    assert back.flags.writeable


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.getcwd, ())  # type: ignore[return-value]


@pytest.mark.parametrize("content, match", [
    ({"data": _Payload(), "labels": []}, "refusing to load posix.getcwd"),
    ([1, 2], "a CIFAR batch must be a pickled dict, got list"),
    ({"data": np.zeros((1, 3072), np.uint8)}, "CIFAR batch has no 'labels' entry"),
    ({"data": np.zeros((1, 3071), np.uint8), "labels": [0]}, r"'data' must be a uint8 array \(N, 3072\), got uint8"),
    ({"data": np.zeros((1, 3072), np.float32), "labels": [0]}, "must be a uint8 array .* got float32"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, r"'labels' must be 2 integers \(one per image\)"),
])
def test_cifar_batch_rejects_bad_content(tmp_path: Path, content: object, match: str) -> None:
    with open(tmp_path / "b", "wb") as stream:
        pickle.dump(content, stream, protocol=2)
    with pytest.raises(ds.DataFormatError, match=match):
        ds.read_cifar_batch(tmp_path / "b", label_key="labels")


def test_cifar_batch_rejects_non_pickle(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"not a pickle at all")
    with pytest.raises(ds.DataFormatError, match="b: not a readable CIFAR python batch"):
        ds.read_cifar_batch(tmp_path / "b", label_key="labels")
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, 3, 32, 32\), got uint8 \(1, 3, 8, 8\)"):
        ds.write_cifar_batch(tmp_path / "c", np.zeros((1, 3, 8, 8), np.uint8), [0], label_key="labels")


def test_search_order_root_then_env_then_cache_then_system(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    places = {"root": isolated / "r", "env": isolated / "env" / "mnist", "cache": isolated / "cache/optodfa/mnist",
              "system": isolated / "system" / "mnist"}
    for seed, folder in enumerate(places.values()):
        write_mnist(folder, seed=seed)
    monkeypatch.setenv("OPTODFA_DATA", f"{isolated / 'nothing'}{os.pathsep}{isolated / 'env'}")
    for name, folder in places.items():
        root = places["root"] if name == "root" else None
        assert load_dataset("mnist", root=root).source == str(folder)
        if name != "root":
            for path in folder.iterdir():
                path.unlink()  # a folder that lost its files no longer counts; the next place is used
    write_mnist(isolated / "cache/optodfa/MNIST/raw")  # a root without the data does not stop the search
    assert load_dataset("mnist", root=isolated / "empty").source == str(isolated / "cache/optodfa/MNIST/raw")


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "kmnist"])
def test_usual_folder_names(isolated: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("OPTODFA_DATA", str(isolated / "data"))
    for folder in ds.SOURCES[name].folders:
        write_mnist(isolated / "data" / folder, compress=folder.endswith("raw"))
        assert ds.find_dataset(ds.SOURCES[name]) == isolated / "data" / folder
        for path in (isolated / "data" / folder).iterdir():
            path.unlink()


def test_shared_folder_never_holds_files_directly(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files directly in $OPTODFA_DATA could belong to any MNIST-family set: only an explicit root may hold them.
    write_mnist(isolated / "data")
    monkeypatch.setenv("OPTODFA_DATA", str(isolated / "data"))
    with pytest.raises(ds.DatasetNotFoundError):
        load_dataset("mnist")
    assert load_dataset("mnist", root=isolated / "data").source == str(isolated / "data")


def test_user_cache_dir_follows_xdg(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ds.user_cache_dir() == isolated / "cache" / "optodfa"
    monkeypatch.setenv("HOME", str(isolated / "home"))
    for value in ("", "relative/dir"):  # XDG: an empty or relative value is ignored
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert ds.user_cache_dir() == isolated / "home" / ".cache" / "optodfa"
    assert [p.label for p in ds.search_roots("x")] == ["root argument", "user cache", "system data sets"]


def test_missing_fashion_mnist_says_what_to_install_and_where(isolated: Path) -> None:
    with pytest.raises(ds.DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=isolated / "mine")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in ("apt-get install dataset-fashion-mnist", str(isolated / "mine"), str(isolated / "system"),
                     str(isolated / "cache" / "optodfa"), "$OPTODFA_DATA: not set", "train-images-idx3-ubyte[.gz]",
                     "download=True", "FashionMNIST/raw", str(isolated / "mine" / "fashion-mnist")):
        assert expected in message, expected


@pytest.mark.parametrize("name, needed", [("mnist", "t10k-labels-idx1-ubyte[.gz]"), ("kmnist", "kmnist"),
                                          ("cifar10", "data_batch_5"), ("cifar100", "cifar-100-python")])
def test_missing_data_set_says_where_to_put_files(name: str, needed: str) -> None:
    with pytest.raises(ds.DatasetNotFoundError, match=f"(?s)data set '{name}' not found.*{re.escape(needed)}"
                                                   ".*download=True") as info:
        load_dataset(name)
    assert "apt-get" not in str(info.value)


def test_incomplete_folder_is_named(isolated: Path) -> None:
    write_mnist(isolated / "r")
    (isolated / "r" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ds.DatasetNotFoundError, match=re.escape(f"{isolated / 'r'} (lacks t10k-labels-idx1-ubyte)")):
        load_dataset("mnist", root=isolated / "r")


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


def _download_for(path: Path, *urls: str) -> ds.Download:
    return ds.Download(path.name, ds.md5_of(path), urls or (path.as_uri(),))


def test_fetch_verifies_and_renames(isolated: Path) -> None:
    source = isolated / "served" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(os.urandom(3000))
    missing = (isolated / "served" / "absent.bin").as_uri()
    saved = ds.fetch(_download_for(source, missing, source.as_uri()), isolated / "dest")  # first URL fails
    assert saved == isolated / "dest" / "file.bin" and saved.read_bytes() == source.read_bytes()
    assert os.listdir(isolated / "dest") == ["file.bin"]
    # Already there with the right checksum: kept, no URL is touched.
    assert ds.fetch(ds.Download("file.bin", ds.md5_of(source), (missing,)), isolated / "dest") == saved


def test_fetch_checksum_mismatch_leaves_nothing(isolated: Path) -> None:
    source = isolated / "file.bin"
    source.write_bytes(b"tampered content")
    with pytest.raises(ds.ChecksumError, match=f"checksum mismatch: MD5 {ds.md5_of(source)}, expected 0123"):
        ds.fetch(ds.Download("file.bin", "0123" + "0" * 28, (source.as_uri(),)), isolated / "dest")
    assert os.listdir(isolated / "dest") == []


def test_fetch_unreachable_lists_each_url(isolated: Path) -> None:
    urls = ((isolated / "a").as_uri(), (isolated / "b").as_uri())
    with pytest.raises(ds.DownloadError, match=f"(?s)could not download x into .*{urls[0]}.*{urls[1]}") as info:
        ds.fetch(ds.Download("x", "0" * 32, urls), isolated / "dest")
    assert not isinstance(info.value, ds.ChecksumError)
    assert os.listdir(isolated / "dest") == []


def _served_mnist(isolated: Path, monkeypatch: pytest.MonkeyPatch, md5: str | None = None) -> dict[str, np.ndarray]:
    """Serve a tiny MNIST through file:// URLs in place of the official ones."""
    raw = write_mnist(isolated / "served")
    served = [isolated / "served" / f"{name}.gz" for name in IDX_FILES]
    downloads = tuple(ds.Download(path.name, md5 or ds.md5_of(path), (path.as_uri(),)) for path in served)
    monkeypatch.setitem(ds.SOURCES, "mnist", dataclasses.replace(ds.SOURCES["mnist"], downloads=downloads))
    return raw


def test_download_on_request_only(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _served_mnist(isolated, monkeypatch)
    with pytest.raises(ds.DatasetNotFoundError):
        load_dataset("mnist")
    assert not (isolated / "cache").exists()
    loaded = load_dataset("mnist", download=True)
    assert loaded.source == str(isolated / "cache" / "optodfa" / "mnist")
    np.testing.assert_array_equal(loaded.y_train.numpy(), raw["train-labels-idx1-ubyte"])
    assert load_dataset("mnist").source == loaded.source  # found in the cache from now on
    with_root = load_dataset("mnist", root=isolated / "mine", download=False)
    assert with_root.source == loaded.source


def test_download_into_root_when_given(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _served_mnist(isolated, monkeypatch)
    loaded = load_dataset("mnist", root=isolated / "mine", download=True)
    assert loaded.source == str(isolated / "mine" / "mnist")
    assert sorted(os.listdir(isolated / "mine" / "mnist")) == sorted(f"{n}.gz" for n in IDX_FILES)


def test_download_with_bad_checksum_keeps_nothing(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _served_mnist(isolated, monkeypatch, md5="f" * 32)
    with pytest.raises(ds.ChecksumError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        load_dataset("mnist", download=True)
    assert os.listdir(isolated / "cache" / "optodfa" / "mnist") == []


def _cifar_archive(isolated: Path, extra: dict[str, bytes], drop: str = "") -> Path:
    write_cifar(isolated / "build" / "cifar-10-batches-py")
    archive = isolated / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((isolated / "build").rglob("*")):
            if path.name != drop:
                tar.add(path, arcname=str(path.relative_to(isolated / "build")), recursive=False)
        for name, content in extra.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return archive


def test_cifar_download_extracts_only_expected_files(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _cifar_archive(isolated, {"../escaped": b"x", "/tmp/absolute-optodfa-test": b"x"})
    monkeypatch.setitem(ds.SOURCES, "cifar10", dataclasses.replace(
        ds.SOURCES["cifar10"], downloads=(_download_for(archive),)))
    loaded = load_dataset("cifar10", root=isolated / "mine", download=True)
    folder = isolated / "mine" / "cifar-10-batches-py"
    assert loaded.source == str(folder) and len(loaded.x_train) == 2 + 3 + 4 + 5 + 6
    assert sorted(os.listdir(isolated / "mine")) == ["cifar-10-batches-py"]  # archive deleted once unpacked
    assert sorted(os.listdir(folder)) == sorted(ds.SOURCES["cifar10"].files)
    assert not (isolated / "escaped").exists() and not Path("/tmp/absolute-optodfa-test").exists()


def test_cifar_archive_lacking_a_batch(isolated: Path) -> None:
    archive = _cifar_archive(isolated, {}, drop="data_batch_3")
    source = dataclasses.replace(ds.SOURCES["cifar10"], downloads=(_download_for(archive),))
    with pytest.raises(ds.DataFormatError, match="archive lacks cifar-10-batches-py/data_batch_3"):
        ds.download_dataset(source, isolated / "mine")
    with pytest.raises(ValueError, match="data set 'cifar10' has no download location"):
        ds.download_dataset(dataclasses.replace(source, downloads=()), isolated / "mine")


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
    assert set(data.__all__) == {"DATASETS", "DIGITS_TEST_SIZE", "Dataset", "DatasetNotFoundError",
                                 "add_label_noise", "load_dataset"}
