"""Downloads through file:// URLs: checksums verified, nothing half-written left behind."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_writers import write_cifar, write_mnist

from optodfa import datasets as ds
from optodfa.data import load_dataset
from optodfa.datasets.sources import IDX_FILES


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
