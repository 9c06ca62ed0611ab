"""Reader of the CIFAR-10 and CIFAR-100 "python version" batches.

Each batch is a pickled dict (written by Python 2) with ``data``, a uint8 array ``(N, 3072)`` holding each image as
1024 red, then 1024 green, then 1024 blue values of a 32 × 32 image in row-major order, and a list of ``N`` labels
under ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). Keys may come back as ``str`` or ``bytes``.

A pickle can run arbitrary code, so batches are read with an unpickler that resolves only the few numpy and codec
functions that rebuild an array; anything else in the file is refused.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from optodfa.datasets.idx import DataFormatError

CIFAR_SHAPE = (3, 32, 32)

# Whatever numpy module path the writer's numpy used, map it to the installed numpy's own functions (taken from
# what the installed numpy itself pickles, so that no deprecated module is imported).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("core", "_core")},
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays, "
                                         f"lists and numbers") from None


def read_cifar_batch(path: str | os.PathLike[str], *, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file.

    Args:
        path: the batch file (e.g. ``cifar-10-batches-py/data_batch_1`` or ``cifar-100-python/train``).
        label_key: ``"labels"`` for CIFAR-10, ``"fine_labels"`` (100 classes) or ``"coarse_labels"`` (20
            superclasses) for CIFAR-100.

    Returns:
        ``(images, labels)``: images uint8 ``(N, 3, 32, 32)`` (channels red, green, blue), labels int64 ``(N,)``.

    Raises:
        DataFormatError: not a pickled dict, a missing key, data of the wrong dtype or shape, labels that are not
            ``N`` integers; the message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            # latin1 turns Python 2 byte strings back into the exact bytes numpy needs to rebuild the array.
            batch = _ArrayUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataFormatError(f"{path}: not a readable CIFAR python batch ({error})") from error
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: a CIFAR batch must be a pickled dict, got {type(batch).__name__}")
    entries = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    for key in ("data", label_key):
        if key not in entries:
            raise DataFormatError(f"{path}: CIFAR batch has no {key!r} entry; keys: {sorted(map(str, entries))}")
    data = entries["data"]
    size = int(np.prod(CIFAR_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: CIFAR 'data' must be a uint8 array (N, {size}), got {got}")
    labels = np.asarray(entries[label_key])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{path}: CIFAR {label_key!r} must be {data.shape[0]} integers (one per image), "
                              f"got {labels.dtype} {labels.shape}")
    if not data.flags.writeable:
        # Arrays rebuilt from an in-band pickle buffer are read-only; torch.from_numpy needs writable memory.
        data = data.copy()
    return data.reshape(-1, *CIFAR_SHAPE), labels.astype(np.int64)


def write_cifar_batch(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray, *,
                      label_key: str) -> None:
    """Write a batch in the CIFAR python format (pickle protocol 2, as the originals); the inverse of the reader.

    Args:
        images: uint8 ``(N, 3, 32, 32)``.
        labels: ``N`` integers, stored as a list under ``label_key``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != CIFAR_SHAPE:
        raise ValueError(f"images must be uint8 (N, 3, 32, 32), got {images.dtype} {images.shape}")
    batch = {"batch_label": "written by optodfa", "data": images.reshape(len(images), -1),
             label_key: [int(label) for label in labels]}
    with open(path, "wb") as stream:
        pickle.dump(batch, stream, protocol=2)
