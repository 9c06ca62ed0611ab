"""Where data sets are looked for, in order, and the message when one is nowhere.

Search order (first complete folder wins):

1. the ``root`` argument: the folder itself, then the usual folder names under it;
2. every folder in ``$OPTODFA_DATA`` (``os.pathsep``-separated), under the usual folder names;
3. the user cache, ``$XDG_CACHE_HOME/optodfa`` or ``~/.cache/optodfa`` (where downloads go);
4. ``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist`` installs ``fashion-mnist/`` there).

Only an explicit ``root`` may hold the files directly: a shared folder such as ``$OPTODFA_DATA`` holds one
sub-folder per data set, so that MNIST files are never taken for Fashion-MNIST.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optodfa.datasets.sources import Source

ENV_VAR = "OPTODFA_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


class DatasetNotFoundError(FileNotFoundError):
    """A data set is in none of the searched folders; the message lists them and says how to get it."""


@dataclass(frozen=True)
class SearchRoot:
    """A place searched for data sets: ``label`` says where it came from (for messages)."""

    label: str
    path: Path
    direct: bool = False  # whether the files may sit in ``path`` itself


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/optodfa``, or ``~/.cache/optodfa`` when that is unset or relative (as XDG asks)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "optodfa"


def download_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``download=True`` saves data sets: under ``root`` when given, else in the user cache."""
    return user_cache_dir() if root is None else Path(root).expanduser()


def search_roots(root: str | os.PathLike[str] | None = None) -> list[SearchRoot]:
    """The places searched, in order, for ``root`` and the current environment."""
    roots = []
    if root is not None:
        roots.append(SearchRoot("root argument", Path(root).expanduser(), direct=True))
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if entry:
            roots.append(SearchRoot(f"${ENV_VAR}", Path(entry).expanduser()))
    roots.append(SearchRoot("user cache", user_cache_dir()))
    roots.append(SearchRoot("system data sets", SYSTEM_DATA_DIR))
    return roots


def candidate_folders(source: Source, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every folder that may hold ``source``'s files, in search order."""
    folders = []
    for place in search_roots(root):
        if place.direct:
            folders.append(place.path)
        folders.extend(place.path / name for name in source.folders)
    return folders


def data_file(folder: Path, filename: str, source: Source) -> Path | None:
    """The file ``filename`` of ``source`` in ``folder`` (IDX: plain preferred to ``.gz``), or ``None``."""
    names = (filename, f"{filename}.gz") if source.kind == "idx" else (filename,)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def missing_files(source: Source, folder: Path) -> list[str]:
    """The files of ``source`` that ``folder`` lacks."""
    return [name for name in source.files if data_file(folder, name, source) is None]


def find_dataset(source: Source, root: str | os.PathLike[str] | None = None) -> Path:
    """The first folder, in search order, that holds all of ``source``'s files.

    Raises:
        DatasetNotFoundError: no folder holds them all; the message lists the places searched, the folders found
            incomplete, and what to install, where to put the files, or how to download them.
    """
    incomplete = []
    for folder in candidate_folders(source, root):
        if not folder.is_dir():
            continue
        missing = missing_files(source, folder)
        if not missing:
            return folder
        if len(missing) < len(source.files):
            incomplete.append(f"{folder} (lacks {', '.join(missing)})")
    raise DatasetNotFoundError(not_found_message(source, root, incomplete))


def not_found_message(source: Source, root: str | os.PathLike[str] | None, incomplete: list[str]) -> str:
    """The text of :class:`DatasetNotFoundError` for ``source``."""
    places = [f"  - {place.label}: {place.path}" + (" (and the folder itself)" if place.direct else "")
              for place in search_roots(root)]
    if not os.environ.get(ENV_VAR, ""):
        places.insert(1 if root is not None else 0, f"  - ${ENV_VAR}: not set")
    suffix = "[.gz]" if source.kind == "idx" else ""
    files = ", ".join(f"{name}{suffix}" for name in source.files)
    ways = [source.install_hint] if source.install_hint else []
    ways.append(f"put {files} in a folder {source.folders[0]}/ under one of the places above "
                f"(e.g. {user_cache_dir() / source.folders[0]}), or pass that folder as root=")
    if source.downloads:
        origin = source.downloads[0].urls[0].rsplit("/", 1)[0] + "/"
        ways.append(f"call load_dataset({source.name!r}, download=True) (CLI: --download) to fetch it from "
                    f"{origin} with checksum verification into {download_dir(root) / source.folders[0]}")
    lines = [f"data set {source.name!r} not found. Searched, in order, these folders for a sub-folder named "
             f"{' or '.join(source.folders)}:", *places]
    if incomplete:
        lines.append("Found incomplete: " + "; ".join(incomplete) + ".")
    lines.append("To get it:")
    lines += [f"  - {'or ' if index else ''}{way}{';' if index < len(ways) - 1 else '.'}"
              for index, way in enumerate(ways)]
    return "\n".join(lines)
