"""File formats, search paths and downloads behind :func:`optodfa.data.load_dataset`.

Most code needs only :mod:`optodfa.data`; this package holds the parts that read and find files.
"""

from optodfa.datasets.cifar import read_cifar_batch as read_cifar_batch
from optodfa.datasets.cifar import write_cifar_batch as write_cifar_batch
from optodfa.datasets.download import ChecksumError as ChecksumError
from optodfa.datasets.download import DownloadError as DownloadError
from optodfa.datasets.download import download_dataset as download_dataset
from optodfa.datasets.download import fetch as fetch
from optodfa.datasets.download import md5_of as md5_of
from optodfa.datasets.idx import DataFormatError as DataFormatError
from optodfa.datasets.idx import read_idx as read_idx
from optodfa.datasets.idx import write_idx as write_idx
from optodfa.datasets.locate import DatasetNotFoundError as DatasetNotFoundError
from optodfa.datasets.locate import download_dir as download_dir
from optodfa.datasets.locate import find_dataset as find_dataset
from optodfa.datasets.locate import search_roots as search_roots
from optodfa.datasets.locate import user_cache_dir as user_cache_dir
from optodfa.datasets.sources import SOURCES as SOURCES
from optodfa.datasets.sources import Download as Download
from optodfa.datasets.sources import Source as Source

__all__ = [
    "SOURCES",
    "ChecksumError",
    "DataFormatError",
    "DatasetNotFoundError",
    "Download",
    "DownloadError",
    "Source",
    "download_dataset",
    "download_dir",
    "fetch",
    "find_dataset",
    "md5_of",
    "read_cifar_batch",
    "read_idx",
    "search_roots",
    "user_cache_dir",
    "write_cifar_batch",
    "write_idx",
]
