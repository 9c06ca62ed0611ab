"""What each file-based data set looks like on disk and where it officially comes from.

The URLs and MD5 sums are facts published by the data sets' authors and recorded by torchvision
(``torchvision/datasets/mnist.py`` and ``torchvision/datasets/cifar.py`` in the pytorch/vision repository):

- MNIST: LeCun's page, with the mirror that torchvision tries first (the original page has refused downloads at times).
- Fashion-MNIST: the S3 site named in the README of zalandoresearch/fashion-mnist.
- KMNIST: the CODH site named in the README of rois-codh/kmnist.
- CIFAR-10/100: Krizhevsky's page at the University of Toronto.

MD5 is what the authors publish; it guards against truncated or corrupted downloads, not against tampering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CIFAR100_FILES = ("train", "test")


@dataclass(frozen=True)
class Download:
    """One file to fetch: its name once saved, its MD5 (hex) and the URLs to try in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """A file-based data set.

    Attributes:
        name: the name :func:`optodfa.data.load_dataset` takes.
        kind: ``"idx"`` (MNIST family: four IDX files, each gzipped or not) or ``"cifar"`` (python batches).
        folders: folder names tried under every search root, in order. Downloads land in ``folders[0]``.
        files: files the folder must hold (IDX names without ``.gz``; either form is accepted).
        num_classes: number of label values, ``0 … num_classes − 1``.
        label_key: key of the labels in a CIFAR batch (``labels`` or ``fine_labels``); unused for IDX.
        downloads: what ``download=True`` fetches. IDX files are kept gzipped in ``folders[0]``; a CIFAR archive
            is unpacked and its folder ``folders[0]`` kept.
        install_hint: an extra way to get the data (a system package), or an empty string.
    """

    name: str
    kind: Literal["idx", "cifar"]
    folders: tuple[str, ...]
    files: tuple[str, ...]
    num_classes: int
    label_key: str = ""
    downloads: tuple[Download, ...] = ()
    install_hint: str = ""


def _idx_downloads(base_urls: tuple[str, ...], md5s: tuple[str, str, str, str]) -> tuple[Download, ...]:
    return tuple(Download(f"{name}.gz", md5, tuple(f"{base}{name}.gz" for base in base_urls))
                 for name, md5 in zip(IDX_FILES, md5s, strict=True))


SOURCES: dict[str, Source] = {
    "fashion-mnist": Source(
        name="fashion-mnist", kind="idx", files=IDX_FILES, num_classes=10,
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "fashion"),
        downloads=_idx_downloads(
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        install_hint="on Debian or Ubuntu, `apt-get install dataset-fashion-mnist` installs the four IDX files "
                     "in /usr/share/datasets/fashion-mnist/",
    ),
    "mnist": Source(
        name="mnist", kind="idx", files=IDX_FILES, num_classes=10,
        folders=("mnist", "MNIST/raw"),
        downloads=_idx_downloads(
            ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
            ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    ),
    "kmnist": Source(
        name="kmnist", kind="idx", files=IDX_FILES, num_classes=10,
        folders=("kmnist", "KMNIST/raw"),
        downloads=_idx_downloads(
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
             "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
    ),
    "cifar10": Source(
        name="cifar10", kind="cifar", files=CIFAR10_FILES, num_classes=10, label_key="labels",
        folders=("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
        downloads=(Download("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),),
    ),
    "cifar100": Source(
        name="cifar100", kind="cifar", files=CIFAR100_FILES, num_classes=100, label_key="fine_labels",
        folders=("cifar-100-python", "cifar100/cifar-100-python", "cifar100"),
        downloads=(Download("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",)),),
    ),
}
