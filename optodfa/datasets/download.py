"""Downloads with checksum verification, only when the caller asks for them.

Every file is streamed into a hidden temporary file next to its destination and renamed into place only after
its MD5 matches the published one, so an interrupted or corrupted download never leaves a file that looks
complete. Files extracted from an archive appear the same way, one by one.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from optodfa.atomic import atomic_path
from optodfa.datasets.idx import DataFormatError
from optodfa.datasets.locate import missing_files
from optodfa.datasets.sources import Download, Source

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(OSError):
    """No URL of a file could be fetched; the message lists each URL and why it failed."""


class ChecksumError(DownloadError):
    """Every copy fetched had the wrong checksum (nothing was kept)."""


def md5_of(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(download: Download, folder: str | os.PathLike[str], *, timeout_s: float = 60.0) -> Path:
    """Fetch ``download`` into ``folder/download.filename``, trying its URLs in order.

    A file already there with the right MD5 is kept as is. ``timeout_s`` bounds each network wait (seconds).

    Raises:
        ChecksumError: every URL answered, but with content of the wrong MD5.
        DownloadError: some URL could not be fetched at all (and none gave the right content).
    """
    folder = Path(folder)
    destination = folder / download.filename
    if destination.is_file() and md5_of(destination) == download.md5:
        return destination
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    only_checksums = True
    for url in download.urls:
        try:
            _fetch_url(url, destination, download.md5, timeout_s)
            return destination
        except ChecksumError as error:
            failures.append(str(error))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            only_checksums = False
            failures.append(f"{url}: {error}")
    kind = ChecksumError if only_checksums else DownloadError
    raise kind(f"could not download {download.filename} into {folder}:\n  " + "\n  ".join(failures))


def _fetch_url(url: str, destination: Path, md5: str, timeout_s: float) -> None:
    logger.info("downloading %s", url)
    with atomic_path(destination, suffix=".part") as temporary:
        digest = hashlib.md5(usedforsecurity=False)
        with open(temporary, "wb") as stream, urllib.request.urlopen(url, timeout=timeout_s) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                stream.write(chunk)
        if digest.hexdigest() != md5:
            raise ChecksumError(f"{url}: checksum mismatch: MD5 {digest.hexdigest()}, expected {md5}; "
                                f"the download was deleted")


def download_dataset(source: Source, target: str | os.PathLike[str], *, timeout_s: float = 60.0) -> Path:
    """Download ``source`` into ``target/source.folders[0]`` and return that folder.

    IDX data sets keep their four gzipped files. A CIFAR archive is downloaded into ``target``, verified, its
    batches extracted one by one into the folder, then deleted.
    """
    if not source.downloads:
        raise ValueError(f"data set {source.name!r} has no download location")
    target = Path(target)
    folder = target / source.folders[0]
    if source.kind == "idx":
        for download in source.downloads:
            fetch(download, folder, timeout_s=timeout_s)
        return folder
    (archive_download,) = source.downloads
    archive = fetch(archive_download, target, timeout_s=timeout_s)
    _extract(archive, source, folder)
    archive.unlink()
    return folder


def _extract(archive: Path, source: Source, folder: Path) -> None:
    """Copy ``source``'s files out of the tar archive (members ``<folders[0]>/<file>``) into ``folder``.

    Only the expected regular files are read, by name, so that no member path from the archive is ever used
    as a path on disk.
    """
    wanted = {f"{source.folders[0]}/{name}": name for name in source.files}
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                stream = tar.extractfile(member) if name is not None and member.isfile() else None
                if stream is not None:
                    _write_atomically(stream, folder / name)
    except (tarfile.TarError, EOFError) as error:
        raise DataFormatError(f"{archive}: not a readable tar.gz archive ({error})") from error
    missing = missing_files(source, folder)
    if missing:
        raise DataFormatError(f"{archive}: archive lacks {', '.join(f'{source.folders[0]}/{m}' for m in missing)}")


def _write_atomically(stream: BinaryIO, destination: Path) -> None:
    with atomic_path(destination, suffix=".part") as temporary, open(temporary, "wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK)
