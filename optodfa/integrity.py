"""Sealed HDF5 files: a format name, a schema version and a SHA-256 of the whole file, checked before HDF5 reads it.

Flipped bytes in an HDF5 file's own structures can crash or hang the HDF5 library, so a damaged file must never
reach it. Run files and calibration records are therefore written with a 512-byte *user block* (space HDF5 leaves
untouched at the start of a file; every HDF5 tool skips it and still reads the file) and, once HDF5 has closed the
file, the user block receives the seal, ASCII lines padded with NUL bytes::

    OPTODFA-SEALED-HDF5
    format optodfa-run
    version 2
    length 123456                  bytes after the user block
    sha256 <64 hex digits>         of the whole file with these 64 digits read as "0"

:func:`open_sealed` reads the seal, checks the format, the version and the length, hashes the file and only then
hands the *same open file* to h5py, so what HDF5 parses is exactly what was verified. Any failure is a
:class:`RunFileError` that names the file and what failed. The seal is a checksum against damage, not a signature:
it does not make a file from an untrusted source safe by itself; that is why nothing optodfa reads from a file
is ever unpickled (see :mod:`optodfa.h5tree`).

Datasets are also written chunked with HDF5's fletcher32 filter (:data:`DATASET_OPTIONS`), so HDF5 itself checks
each chunk it reads, also for tools that ignore the seal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import h5py

USERBLOCK = 512  # bytes; HDF5 accepts powers of two from 512
MAGIC = "OPTODFA-SEALED-HDF5"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DIGEST_HEX = 64
_CHUNK = 1 << 20  # bytes hashed per read
_FORMAT_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")

DATASET_OPTIONS = {"fletcher32": True}
"""Keyword arguments for every ``create_dataset`` of a sealed file (chunks must be given too: fletcher32 needs
them; see :func:`chunks_for`)."""


class RunFileError(OSError):
    """A run file (or calibration record) that cannot be written or read as expected; the message names the file
    and what failed."""


class Seal(NamedTuple):
    """What a file's user block says: format name, schema version, bytes after the user block."""

    format: str
    version: int
    length: int


def _header(format_name: str, version: int, length: int, digest: str) -> bytes:
    text = f"{MAGIC}\nformat {format_name}\nversion {version}\nlength {length}\nsha256 {digest}\n".encode("ascii")
    if len(text) > USERBLOCK:
        raise ValueError(f"seal of {len(text)} bytes does not fit the {USERBLOCK}-byte user block")
    return text + b"\0" * (USERBLOCK - len(text))


def _digest(block: bytes, handle: IO[bytes]) -> str:
    """SHA-256 of ``block`` (with its digest digits zeroed) followed by everything in ``handle`` after the block."""
    digest = hashlib.sha256(block)
    handle.seek(USERBLOCK)
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def seal(path: str | os.PathLike[str], format_name: str, version: int) -> None:
    """Write the seal into the user block of the closed HDF5 file at ``path`` (created with
    ``userblock_size=USERBLOCK``) and fsync it.

    Raises:
        ValueError: a format name that is not lower-case words joined by ``-``, or a negative version.
        RunFileError: the file does not start with an empty user block followed by an HDF5 header.
    """
    if not isinstance(format_name, str) or not _FORMAT_NAME.fullmatch(format_name):
        raise ValueError(f"format name must be lower-case letters, digits and '-', got {format_name!r}")
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    with open(path, "r+b") as handle:
        handle.seek(USERBLOCK)
        if handle.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
            raise RunFileError(f"cannot seal {str(path)!r}: no HDF5 header after a {USERBLOCK}-byte user block "
                               f"(create it with h5py.File(..., userblock_size={USERBLOCK}))")
        length = handle.seek(0, os.SEEK_END) - USERBLOCK
        digest = _digest(_header(format_name, version, length, "0" * _DIGEST_HEX), handle)
        handle.seek(0)
        handle.write(_header(format_name, version, length, digest))
        handle.flush()
        os.fsync(handle.fileno())


def read_seal(path: str | os.PathLike[str], handle: IO[bytes]) -> Seal:
    """Check the seal of the open file ``handle`` (the file at ``path``, named in errors) against its content.

    Raises:
        RunFileError: no seal (a foreign or pre-seal file), a malformed seal, a wrong length or a wrong checksum.
    """
    name = str(path)
    block = handle.read(USERBLOCK)
    if block[: len(_HDF5_SIGNATURE)] == _HDF5_SIGNATURE:
        raise RunFileError(f"{name!r} is a plain HDF5 file without an optodfa seal: written by another program or "
                           f"by optodfa 0.1 (whose checkpoints are pickles, which optodfa no longer loads because "
                           f"a pickle can run code); unverified HDF5 is not opened")
    if not block.startswith(MAGIC.encode("ascii") + b"\n"):
        raise RunFileError(f"{name!r} is not an optodfa file: no {MAGIC} seal at its start")
    if len(block) < USERBLOCK:
        raise RunFileError(f"{name!r} is truncated: {len(block)} bytes, shorter than its {USERBLOCK}-byte seal")
    text, _, padding = block.partition(b"\0")
    fields: dict[str, str] = {}
    try:
        lines = text.decode("ascii").split("\n")
        for line in lines[1:-1]:
            key, _, value = line.partition(" ")
            fields[key] = value
        seal_ = Seal(fields["format"], int(fields["version"]), int(fields["length"]))
        stated = fields["sha256"]
    except (UnicodeDecodeError, KeyError, ValueError):
        raise RunFileError(f"{name!r} has a damaged seal (its first {USERBLOCK} bytes)") from None
    if (lines[-1] != "" or sorted(fields) != ["format", "length", "sha256", "version"] or padding.strip(b"\0")
            or not re.fullmatch(f"[0-9a-f]{{{_DIGEST_HEX}}}", stated)):
        raise RunFileError(f"{name!r} has a damaged seal (its first {USERBLOCK} bytes)")
    size = handle.seek(0, os.SEEK_END)
    if size - USERBLOCK != seal_.length:
        raise RunFileError(f"{name!r} is damaged: {size - USERBLOCK} bytes after its seal, the seal says "
                           f"{seal_.length} (truncated or appended to)")
    computed = _digest(_header(seal_.format, seal_.version, seal_.length, "0" * _DIGEST_HEX), handle)
    if computed != stated or block != _header(seal_.format, seal_.version, seal_.length, stated):
        raise RunFileError(f"{name!r} is damaged: its SHA-256 checksum does not match its content")
    return seal_


def check_seal(path: str | os.PathLike[str], seal_: Seal, format_name: str, versions: tuple[int, ...]) -> None:
    """Raise :class:`RunFileError` unless ``seal_`` names ``format_name`` at one of ``versions``."""
    if seal_.format != format_name:
        raise RunFileError(f"{str(path)!r} is an {seal_.format} file, not an {format_name} file")
    if seal_.version not in versions:
        readable = ", ".join(str(v) for v in versions)
        raise RunFileError(f"{str(path)!r} is {format_name} version {seal_.version}; this optodfa reads version "
                           f"{readable}")


@contextlib.contextmanager
def open_sealed(path: str | os.PathLike[str], format_name: str, versions: tuple[int, ...]) -> Iterator[h5py.File]:
    """Verify the file at ``path`` (seal, format, version, checksum), then open it read-only with h5py.

    Raises:
        FileNotFoundError: no file at ``path``.
        RunFileError: anything :func:`read_seal` or :func:`check_seal` refuses, or HDF5 cannot open the file.
    """
    source = Path(path)
    if source.is_dir():
        raise RunFileError(f"{str(source)!r} is a directory, not an {format_name} file")
    if source.exists() and not source.is_file():  # a FIFO or a device would block or never end
        raise RunFileError(f"{str(source)!r} is not a regular file, so not an {format_name} file")
    with open(source, "rb") as handle:
        check_seal(source, read_seal(source, handle), format_name, versions)
        handle.seek(0)
        try:
            file = h5py.File(handle, "r")
        except OSError as exc:
            raise RunFileError(f"HDF5 cannot open {str(source)!r}: {exc}") from None
        with file:
            yield file


def chunks_for(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int | None, ...] | None]:
    """``(chunks, maxshape)`` for a dataset of ``shape`` (not 0-d): one chunk up to about 1 MiB of float64, and
    resizable dimensions where a dimension is 0 (HDF5 chunks must be at least 1 wide)."""
    chunks = tuple(max(1, s) for s in shape)
    total = 1
    for s in chunks:
        total *= s
    if total > 1 << 17 and shape:  # split the first axis: bounded chunks keep reads of one chunk cheap
        rows = max(1, (1 << 17) * chunks[0] // total)
        chunks = (rows, *chunks[1:])
    maxshape = tuple(None for _ in shape) if 0 in shape else None
    return chunks, maxshape
