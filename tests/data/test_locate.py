"""The search order and the messages for missing data sets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from data_writers import write_mnist

from optodfa import datasets as ds
from optodfa.data import load_dataset


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
