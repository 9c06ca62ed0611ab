"""Data sets for the experiments (SPEC §7): one entry point, :func:`load_dataset`, and label noise.

Known data sets (:data:`DATASETS`):

- ``fashion-mnist``, ``mnist``, ``kmnist``: 28 × 28 grey images, 10 classes, from four IDX files (gzipped or not);
  60 000 training and 10 000 test images in the originals.
- ``cifar10``, ``cifar100``: 32 × 32 colour images from the python batches; 50 000 / 10 000 images, 10 or 100
  (fine) classes.
- ``digits``: scikit-learn's bundled 8 × 8 digits (1797 images, 10 classes), always available. Split: the first
  1500 images train, the last 297 test (the order scikit-learn ships, so the split never changes).

Files are searched for, and downloaded on request, as :mod:`optodfa.datasets.locate` describes: the ``root``
argument, ``$OPTODFA_DATA``, the user cache, then ``/usr/share/datasets``.

Preprocessing: pixel values are scaled to [0, 1] (divided by 255, or by 16 for ``digits``), optionally resized
(``input_size``, :func:`resize_images`), then standardised per channel with the mean and the population standard
deviation of the training images that are kept (after ``limit``); the test images use the same training
statistics. A channel with zero spread is only centred.

Also here: the deep-linear regression task of SPEC §6.3 (:func:`deep_linear_data`) and label noise
(:func:`add_label_noise`, :meth:`Dataset.with_label_noise` for the training and, optionally, the test labels).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch

from optodfa.datasets.cifar import read_cifar_batch
from optodfa.datasets.download import download_dataset
from optodfa.datasets.idx import DataFormatError, read_idx
from optodfa.datasets.locate import DatasetNotFoundError, data_file, download_dir, find_dataset
from optodfa.datasets.sources import SOURCES, Source
from optodfa.seeding import check_seed, derive_seed, torch_generator
from optodfa.validation import check_bool, check_choice, check_int, check_real

__all__ = ["DATASETS", "DIGITS_TEST_SIZE", "RESIZE_MODES", "Dataset", "DatasetNotFoundError", "DeepLinearData",
           "add_label_noise", "deep_linear_data", "load_dataset", "resize_images"]

DATASETS = ("fashion-mnist", "mnist", "kmnist", "digits", "cifar10", "cifar100")
DIGITS_TEST_SIZE = 297
RESIZE_MODES = ("area", "bilinear")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded, standardised data set.

    Attributes:
        name: one of :data:`DATASETS`.
        x_train: float32 ``(N, C·H·W)`` if flattened, else ``(N, C, H, W)``; standardised (see the module doc).
        y_train: int64 ``(N,)``, values in ``[0, num_classes)``.
        x_test: float32 ``(M, …)``, standardised with the training statistics.
        y_test: int64 ``(M,)``.
        num_classes: number of classes.
        input_shape: ``(C, H, W)`` of one image, whether or not ``x`` is flattened.
        source: where it was read from (a folder, or scikit-learn's bundled copy).
        mean: per-channel mean of the [0, 1]-scaled training pixels, length ``C``.
        std: per-channel population standard deviation of the same, length ``C``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_features(self) -> int:
        """``C·H·W``, the width of a flattened input."""
        return int(np.prod(self.input_shape))

    def to(self, device: torch.device | str) -> Dataset:
        """The same data set with its four tensors on ``device``."""
        return dataclasses.replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                                   x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def with_label_noise(self, p: float, *, seed: int, test: bool = False) -> Dataset:
        """The same data set with each training label (and, with ``test``, each test label) replaced by a random
        class with probability ``p`` (:func:`add_label_noise`).

        The training labels use ``seed`` itself, the test labels the sub-stream ``derive_seed(seed, 1)``, so
        adding test noise leaves the training labels as they were.
        """
        y_train = add_label_noise(self.y_train, p, self.num_classes, seed=seed)
        check_bool("test", test)
        y_test = add_label_noise(self.y_test, p, self.num_classes, seed=derive_seed(seed, 1)) if test else self.y_test
        return dataclasses.replace(self, y_train=y_train, y_test=y_test)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})")


def load_dataset(name: str, *, root: str | os.PathLike[str] | None = None, download: bool = False,
                 limit: int | None = None, flatten: bool = True, input_size: int | None = None,
                 resize_mode: str = "area") -> Dataset:
    """Load a data set by name, standardised and as torch tensors on the CPU.

    Args:
        name: one of :data:`DATASETS`.
        root: a folder searched first, holding the files itself or in a sub-folder of a usual name
            (``mnist``, ``MNIST/raw``, ``fashion-mnist``, ``cifar-10-batches-py``…).
        download: if the data set is found nowhere, fetch it from its official location, verify its checksum
            and save it under ``root`` (when given) or in the user cache. Never downloads otherwise.
        limit: keep only the first ``limit`` training samples (all of them if there are fewer); the test set
            stays whole. ``None`` keeps everything.
        flatten: return ``x`` as ``(N, C·H·W)`` rather than ``(N, C, H, W)``.
        input_size: resize every image to ``input_size × input_size`` pixels before standardising (e.g. 14 for
            the paper's 14 × 14 Fashion-MNIST); ``None`` keeps the native size.
        resize_mode: how (:data:`RESIZE_MODES`, see :func:`resize_images`).

    Raises:
        DatasetNotFoundError: the files are nowhere and ``download`` is false; the message lists the places
            searched and what to install, where to put the files, or how to download them.
        DataFormatError: a file is corrupt or does not match its format (the message names it).
        DownloadError: ``download=True`` and no official URL could be fetched or verified.
    """
    check_choice("name", name, DATASETS)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {root!r} ({type(root).__name__})")
    check_bool("download", download)
    check_bool("flatten", flatten)
    if limit is not None:
        limit = check_int("limit", limit, low=1)
    if input_size is not None:
        input_size = check_int("input_size", input_size, low=1)
    check_choice("resize_mode", resize_mode, RESIZE_MODES)

    if name == "digits":
        x_train, y_train, x_test, y_test, scale, where = _read_digits()
        num_classes = 10
    else:
        source = SOURCES[name]
        try:
            folder = find_dataset(source, root)
        except DatasetNotFoundError:
            if not download:
                raise
            folder = download_dataset(source, download_dir(root))
        reader = _read_idx_folder if source.kind == "idx" else _read_cifar_folder
        x_train, y_train, x_test, y_test = reader(source, folder)
        scale, where, num_classes = 255.0, str(folder), source.num_classes

    x_train, y_train = x_train[:limit], y_train[:limit]
    if input_size is not None and x_train.shape[2:] != (input_size, input_size):
        x_train, x_test = (resize_images(torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32), input_size,
                                         mode=resize_mode).numpy() for x in (x_train, x_test))
    mean, std = _channel_stats(x_train)
    train, test = (_standardise(x, mean, std) for x in (x_train, x_test))
    input_shape = (int(train.shape[1]), int(train.shape[2]), int(train.shape[3]))
    if flatten:
        train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    return Dataset(name=name, x_train=train, y_train=torch.from_numpy(y_train), x_test=test,
                   y_test=torch.from_numpy(y_test), num_classes=num_classes, input_shape=input_shape,
                   source=where, mean=tuple((mean / scale).tolist()),
                   std=tuple((std / scale).tolist()))


def add_label_noise(labels: torch.Tensor, p: float, num_classes: int, *, seed: int) -> torch.Tensor:
    """Replace each label, with probability ``p``, by a class drawn uniformly from all ``num_classes``.

    The drawn class may equal the old one, so a fraction ``p·(1 − 1/num_classes)`` of labels changes on average
    (SPEC §6 item 4). Both random streams are drawn in full whatever ``p`` is, so for one seed the labels replaced
    at a smaller ``p`` are also replaced, by the same classes, at a larger one.

    Args:
        labels: integer ``(N,)`` tensor with values in ``[0, num_classes)``, on any device.
        p: replacement probability in [0, 1].
        num_classes: number of classes (≥ 1).
        seed: seed of the noise (drawn on the CPU, so every device gets the same labels).

    Returns:
        a new tensor of ``labels``' shape, dtype and device.
    """
    p = check_real("p", p, low=0.0, high=1.0)
    num_classes = check_int("num_classes", num_classes, low=1)
    seed = check_seed(seed)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
    cpu = labels.cpu()
    if len(cpu) and (int(cpu.min()) < 0 or int(cpu.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] for num_classes={num_classes}, "
                         f"got values in [{int(cpu.min())}, {int(cpu.max())}]")
    generator = torch_generator(seed, 0)
    replace = torch.rand(len(cpu), generator=generator, dtype=torch.float64) < p
    drawn = torch.randint(num_classes, (len(cpu),), generator=generator, dtype=cpu.dtype)
    return torch.where(replace, drawn, cpu).to(labels.device)


def resize_images(x: torch.Tensor, size: int | tuple[int, int], *, mode: str = "area") -> torch.Tensor:
    """Resize a batch of images ``(N, C, H, W)`` to ``(N, C, h, w)`` (``size`` = ``h = w`` or ``(h, w)``).

    ``area`` averages the input pixels each output pixel covers (for 28 → 14, the mean of each 2 × 2 block: total
    intensity is kept); ``bilinear`` interpolates, with anti-aliasing when shrinking. Integer images are converted
    to float32 first; values stay in the input's units.
    """
    check_choice("mode", mode, RESIZE_MODES)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a 4-D tensor (N, C, H, W), got {shape}")
    target = (size, size) if not isinstance(size, tuple) else size
    if len(target) != 2:
        raise ValueError(f"size must be an integer or a pair (h, w), got {size!r}")
    target = tuple(check_int("size", s, low=1) for s in target)
    x = x if x.is_floating_point() else x.to(torch.float32)
    if mode == "area":
        return torch.nn.functional.interpolate(x, size=target, mode="area")
    return torch.nn.functional.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DeepLinearData:
    """The deep-linear regression task of SPEC §6.3: inputs ``x ~ N(0, I)``, outputs ``y ~ N(0, Σ)``, independent.

    Attributes:
        x: ``(N, input_dim)`` inputs.
        y: ``(N, 2)`` targets.
        sigma: ``(2, 2)`` float64 ``Σ = [[1, α(1−β)], [α(1−β), α²]]``.
        alpha: output anisotropy α (the second output's standard deviation).
        beta: β; the outputs' correlation is ``1 − β``.
    """

    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor
    alpha: float
    beta: float

    def __repr__(self) -> str:
        return (f"DeepLinearData(samples={len(self.x)}, input_dim={self.x.shape[1]}, alpha={self.alpha}, "
                f"beta={self.beta})")


def deep_linear_data(alpha: float, beta: float, *, samples: int = 1000, input_dim: int = 9, seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> DeepLinearData:
    """Draw the deep-linear task (SPEC §6.3): ``x ~ N(0, I_input_dim)`` and, independently, ``y ~ N(0, Σ)``.

    ``Σ = [[1, α(1−β)], [α(1−β), α²]]``: α sets the anisotropy of the outputs, ``1 − β`` their correlation;
    Σ is positive definite for α, β in (0, 1]. ``y = z Lᵀ`` with ``L`` the Cholesky factor of Σ and ``z`` standard
    normal. ``x`` comes from the stream ``(seed, 0)``, ``z`` from ``(seed, 1)``, drawn in float64 on the CPU.

    Args:
        alpha, beta: in (0, 1].
        samples: number of samples ``N`` (1000 in the paper).
        input_dim: input dimension (9 in the paper).
        seed: seed of the draw.
        dtype: floating dtype of ``x`` and ``y``.
    """
    alpha = check_real("alpha", alpha, low=0.0, high=1.0, low_open=True)
    beta = check_real("beta", beta, low=0.0, high=1.0, low_open=True)
    samples = check_int("samples", samples, low=1)
    input_dim = check_int("input_dim", input_dim, low=1)
    seed = check_seed(seed)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    c = alpha * (1 - beta)
    sigma = torch.tensor([[1.0, c], [c, alpha**2]], dtype=torch.float64)
    cholesky = torch.tensor([[1.0, 0.0], [c, alpha * math.sqrt(1 - (1 - beta) ** 2)]], dtype=torch.float64)
    x = torch.randn(samples, input_dim, generator=torch_generator(seed, 0), dtype=torch.float64)
    z = torch.randn(samples, 2, generator=torch_generator(seed, 1), dtype=torch.float64)
    return DeepLinearData(x=x.to(dtype), y=(z @ cholesky.T).to(dtype), sigma=sigma, alpha=alpha, beta=beta)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (float64, length C) of ``x`` of shape (N, C, H, W), in its own units.

    A constant channel gets a std of exactly 0 (float rounding would otherwise leave ~1e-17 and blow it up).
    """
    if x.dtype != np.uint8:
        wide = x.astype(np.float64)
        constant = wide.min(axis=(0, 2, 3)) == wide.max(axis=(0, 2, 3))
        return wide.mean(axis=(0, 2, 3)), np.where(constant, 0.0, wide.std(axis=(0, 2, 3)))
    # Exact statistics from each channel's 256-level histogram, in Python integers (the sums overflow int64 for
    # large sets): faster than a float pass over the images and free of rounding.
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(torch.from_numpy(x[:, channel]).reshape(-1), minlength=256).tolist()
        total = sum(counts)
        first = sum(k * c for k, c in enumerate(counts))
        second = sum(k * k * c for k, c in enumerate(counts))
        means.append(first / total)
        stds.append(math.sqrt(total * second - first * first) / total)
    return np.array(means), np.array(stds)


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """float32 ``(x − mean) / std`` per channel (statistics in ``x``'s units); ``std == 0`` only centres."""
    divisor = np.where(std > 0, std, 1.0)
    centre = torch.from_numpy(mean).to(torch.float32).view(1, -1, 1, 1)
    gain = torch.from_numpy(1.0 / divisor).to(torch.float32).view(1, -1, 1, 1)
    # torch rather than numpy for the big float array: numpy's first touch of a fresh 200 MB array was several
    # times slower here (page faults), which dominated the load time of Fashion-MNIST.
    return torch.from_numpy(x).to(torch.float32).sub_(centre).mul_(gain)


def _read_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, str]:
    # Imported here: scikit-learn takes a noticeable time to import and most runs never need it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images[:, None]  # (1797, 1, 8, 8), integer values 0…16 stored as float64
    labels = bunch.target.astype(np.int64)
    split = len(images) - DIGITS_TEST_SIZE
    return (images[:split], labels[:split], images[split:], labels[split:], 16.0,
            "scikit-learn bundled digits (sklearn.datasets.load_digits)")


def _read_idx_folder(source: Source, folder: os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """Images uint8 ``(N, 1, H, W)`` and labels int64 ``(N,)`` of the training then the test split."""
    arrays = []
    for split in ("train", "t10k"):
        images_path = data_file(folder, f"{split}-images-idx3-ubyte", source)
        labels_path = data_file(folder, f"{split}-labels-idx1-ubyte", source)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataFormatError(f"{images_path}: images must be uint8 (N, H, W), "
                                  f"got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
            raise DataFormatError(f"{labels_path}: labels must be uint8 ({len(images)},) to match the "
                                  f"{len(images)} images of {images_path.name}, got {labels.dtype} {labels.shape}")
        arrays += [images[:, None], _checked_labels(labels, source.num_classes, labels_path)]
    _check_same_shape(arrays[0], arrays[2], folder)
    return tuple(arrays)


def _read_cifar_folder(source: Source, folder: os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` of the training then the test split."""
    *train_files, test_file = source.files
    arrays = []
    for names in (train_files, [test_file]):
        batches = []
        for name in names:
            path = data_file(folder, name, source)
            images, labels = read_cifar_batch(path, label_key=source.label_key)
            batches.append((images, _checked_labels(labels, source.num_classes, path)))
        arrays += [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
    return tuple(arrays)


def _checked_labels(labels: np.ndarray, num_classes: int, path: os.PathLike[str]) -> np.ndarray:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFormatError(f"{path}: labels must lie in [0, {num_classes - 1}], "
                              f"got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def _check_same_shape(train: np.ndarray, test: np.ndarray, folder: os.PathLike[str]) -> None:
    if train.shape[1:] != test.shape[1:]:
        raise DataFormatError(f"{folder}: training images are {train.shape[2:]} but test images are "
                              f"{test.shape[2:]}")
