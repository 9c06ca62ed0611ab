"""Reader of IDX files, the format of MNIST, Fashion-MNIST and KMNIST, gzipped or not.

Layout: two zero bytes, a type code, the number of dimensions ``k``, then ``k`` big-endian uint32 sizes, then the
values in C order, big-endian. Gzip is recognised by its magic bytes, not by the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np


class DataFormatError(ValueError):
    """A data file that does not hold what its format promises (the message names the file)."""


IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a writable native-endian numpy array.

    Returns:
        an array whose shape is the file's dimensions (e.g. ``(N, 28, 28)`` uint8 for images, ``(N,)`` uint8 for
        labels) and whose dtype is the file's type code (uint8, int8, int16, int32, float32 or float64).

    Raises:
        DataFormatError: a corrupt gzip stream, bad magic number, unknown type code, no dimensions, or a length
            that does not match the header (truncated file or trailing bytes); the message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        # One call on the whole file: about twice as fast as streaming through gzip.GzipFile.
        try:
            data = gzip.decompress(data)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise DataFormatError(f"{path}: corrupt gzip stream ({error})") from error
    if len(data) < 4:
        raise DataFormatError(f"{path}: not an IDX file: {len(data)} byte(s), shorter than the 4-byte magic number")
    if data[:2] != b"\x00\x00":
        raise DataFormatError(f"{path}: not an IDX file: magic number must start with two zero bytes, "
                              f"got {data[:4].hex()}")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataFormatError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise DataFormatError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataFormatError(f"{path}: truncated IDX header: {ndim} dimension sizes need {4 * ndim} bytes, "
                              f"got {len(data) - 4}")
    shape = struct.unpack(f">{ndim}I", data[4:start])
    dtype = IDX_TYPES[code]
    count = math.prod(shape)
    expected, got = count * dtype.itemsize, len(data) - start
    if got != expected:
        problem = "truncated IDX data" if got < expected else "IDX file longer than its header declares"
        raise DataFormatError(f"{path}: {problem}: header {shape} of {dtype.name} needs {expected} data bytes, "
                              f"file holds {got}")
    # astype copies: the result is writable (torch.from_numpy needs that) and in native byte order.
    return np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (gzipped if ``compress``); the inverse of :func:`read_idx`.

    Used to prepare data in the MNIST format (and by the tests, which write tiny files).
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"array dtype must be one of uint8, int8, int16, int32, float32, float64, got {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"array must have between 1 and 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[codes[native]]).tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)
