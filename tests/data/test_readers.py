"""IDX and CIFAR readers on tiny files written here."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from optodfa import datasets as ds


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
