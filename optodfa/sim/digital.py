"""The ideal digital projector: exact ``B e`` in floating point, the baseline of every comparison.

Where ``B`` comes from (settings of the ``digital`` device, ``--set KEY=VALUE``):

- ``distribution=gaussian`` (default): i.i.d. N(0, 1) entries (variance 1), drawn from the feedback seed;
- ``distribution=uniform``: i.i.d. U[-1, 1) entries (variance 1/3), the convention of the paper's reference code,
  which also divides the projection by ``sqrt(n_max)`` (the DFA model's ``feedback_scale="auto"``);
- ``matrix_file=PATH`` (and ``matrix_dataset=NAME`` for HDF5): a ``(D, d)`` float32/float64 matrix read from a
  ``.npy`` file or an HDF5 dataset, rows the hidden units in layer order, columns the error components. Its
  SHA-256 (of the file's bytes) is in :meth:`DigitalProjector.describe`, so a run file says which matrix it used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optodfa.device import Projector
from optodfa.registry import ProjectorSpec
from optodfa.seeding import torch_generator
from optodfa.validation import check_choice, check_int, check_keys, check_memory

DISTRIBUTIONS = ("gaussian", "uniform")
ENTRY_VARIANCE = {"gaussian": 1.0, "uniform": 1.0 / 3.0}
MATRIX_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NPY_SUFFIXES = (".npy",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class FeedbackMatrixError(ValueError):
    """A feedback matrix file is missing, unreadable, or holds the wrong shape, dtype or values."""


def feedback_matrix(out_features: int, in_features: int, *, seed: int, distribution: str = "gaussian",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``(D, d)`` random feedback matrix drawn on the CPU from ``seed``.

    ``gaussian``: i.i.d. N(0, 1). ``uniform``: i.i.d. U[-1, 1) (variance 1/3), the convention of the paper's
    reference code. Drawn on the CPU so that every torch device gets the same numbers.
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"feedback matrix dtype must be a floating dtype (torch.float32, torch.float64), got {dtype}")
    check_int("out_features", out_features, low=1)
    check_int("in_features", in_features, low=1)
    check_memory(f"a digital feedback matrix of D = {out_features} x d = {in_features}",
                 8.0 * out_features * in_features * (1 + dtype.itemsize / 8))
    generator = torch_generator(seed, 0)
    if distribution == "gaussian":
        matrix = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
    else:
        matrix = torch.rand(out_features, in_features, generator=generator, dtype=torch.float64) * 2 - 1
    return matrix.to(dtype)


def load_feedback_matrix(path: str | os.PathLike[str], shape: tuple[int, int], *,
                         dataset: str | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a ``(D, d)`` feedback matrix from a ``.npy`` file or an HDF5 dataset.

    Args:
        path: a ``.npy`` file (read without pickle) or an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``).
        shape: the ``(D, d)`` the model needs.
        dataset: the HDF5 dataset's name; may be left out when the file holds exactly one dataset.

    Returns:
        The matrix (float64, CPU) and a record of where it came from: ``matrix_file`` (absolute path),
        ``matrix_dataset``, ``matrix_sha256`` (of the file's bytes), ``matrix_dtype``.

    Raises:
        FeedbackMatrixError: the file is missing or unreadable, or the matrix is not float32/float64 of ``shape``
            with finite entries (the message names the file, what was expected and what came).
    """
    path = Path(path)
    if not path.is_file():
        raise FeedbackMatrixError(f"feedback matrix file {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix in NPY_SUFFIXES:
        if dataset is not None:
            raise FeedbackMatrixError(f"matrix_dataset is for HDF5 files; {str(path)!r} is a .npy file")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FeedbackMatrixError(f"cannot read {str(path)!r} as a .npy array: {exc}") from exc
    elif suffix in HDF5_SUFFIXES:
        array, dataset = _read_hdf5(path, dataset)
    else:
        raise FeedbackMatrixError(f"feedback matrix file {str(path)!r} must end in "
                                  f"{', '.join(NPY_SUFFIXES + HDF5_SUFFIXES)}, got {path.suffix or 'no suffix'!r}")
    where = f"{str(path)!r}" + (f" (dataset {dataset!r})" if dataset else "")
    if not isinstance(array, np.ndarray) or array.dtype not in MATRIX_DTYPES:
        kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise FeedbackMatrixError(f"feedback matrix in {where} must be float32 or float64, got {kind}")
    if array.shape != tuple(shape):
        raise FeedbackMatrixError(f"feedback matrix in {where} must have shape (D, d) = {tuple(shape)} (rows: "
                                  f"hidden units in layer order, columns: error components), got {array.shape}")
    if not np.isfinite(array).all():
        raise FeedbackMatrixError(f"feedback matrix in {where} holds {int((~np.isfinite(array)).sum())} "
                                  f"non-finite value(s)")
    record = {"matrix_file": str(path.resolve()), "matrix_dataset": dataset, "matrix_sha256": _sha256(path),
              "matrix_dtype": str(array.dtype)}
    return torch.from_numpy(np.array(array, dtype=np.float64)), record


def _read_hdf5(path: Path, dataset: str | None) -> tuple[np.ndarray, str]:
    import h5py  # only this path needs it

    try:
        with h5py.File(path, "r") as file:
            names: list[str] = []
            file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            if dataset is None:
                if len(names) != 1:
                    raise FeedbackMatrixError(f"{str(path)!r} holds {len(names)} datasets "
                                              f"({', '.join(names) or 'none'}); name one with matrix_dataset")
                dataset = names[0]
            if dataset not in names:
                raise FeedbackMatrixError(f"{str(path)!r} has no dataset {dataset!r}; it holds "
                                          f"{', '.join(names) or 'none'}")
            return file[dataset][()], dataset
    except OSError as exc:
        raise FeedbackMatrixError(f"cannot read {str(path)!r} as an HDF5 file: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DigitalProjector(Projector):
    """Exact ``e @ Bᵀ`` with a fixed random ``B`` of shape ``(D, d)``.

    Args:
        matrix: ``B``, ``(D, d)``.
        seed, distribution: how ``B`` was drawn, for :meth:`describe` (``None`` when unknown).
        source: where ``B`` was read from, for :meth:`describe` (see :func:`load_feedback_matrix`).
    """

    def __init__(self, matrix: torch.Tensor, *, seed: int | None = None, distribution: str | None = None,
                 source: Mapping[str, Any] | None = None) -> None:
        if not isinstance(matrix, torch.Tensor) or not matrix.is_floating_point():
            got = matrix.dtype if isinstance(matrix, torch.Tensor) else type(matrix).__name__
            raise TypeError(f"feedback matrix must be a floating torch.Tensor (D, d), got {got}")
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(f"feedback matrix must be 2-D (D, d) with D, d >= 1, got shape {tuple(matrix.shape)}")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("feedback matrix holds NaN or inf")
        super().__init__(in_features=matrix.shape[1], out_features=matrix.shape[0])
        self.matrix = matrix
        self._seed = seed
        self._distribution = distribution
        self._source = dict(source or {})

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        matrix = self.matrix
        if matrix.device != e.device or matrix.dtype != e.dtype:
            matrix = matrix.to(device=e.device, dtype=e.dtype)
        return e @ matrix.T

    def effective_matrix(self) -> torch.Tensor:
        return self.matrix

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": "digital", "distribution": self._distribution,
                "feedback_seed": self._seed, "compute": str(self.matrix.device), **self._source}


def build(spec: ProjectorSpec) -> DigitalProjector:
    """Exact digital projection B e (Gaussian or uniform B from the feedback seed, or B from a file); the baseline."""
    check_keys("digital device settings", spec.overrides, ["distribution", "matrix_file", "matrix_dataset"])
    if spec.profile is not None:
        raise ValueError(f"device 'digital' takes no profile, got profile={spec.profile!r}")
    if "matrix_file" in spec.overrides:
        if "distribution" in spec.overrides:
            raise ValueError("digital device settings: give either distribution or matrix_file, not both "
                             f"(got distribution={spec.overrides['distribution']!r}, "
                             f"matrix_file={spec.overrides['matrix_file']!r})")
        matrix, source = load_feedback_matrix(str(spec.overrides["matrix_file"]),
                                              (spec.out_features, spec.in_features),
                                              dataset=spec.overrides.get("matrix_dataset"))
        return DigitalProjector(matrix.to(dtype=spec.dtype, device=spec.device), distribution="file",
                                source=source)
    if "matrix_dataset" in spec.overrides:
        raise ValueError(f"digital device settings: matrix_dataset={spec.overrides['matrix_dataset']!r} needs "
                         f"matrix_file")
    distribution = spec.overrides.get("distribution", "gaussian")
    matrix = feedback_matrix(spec.out_features, spec.in_features, seed=spec.feedback_seed,
                             distribution=distribution, dtype=spec.dtype).to(spec.device)
    return DigitalProjector(matrix, seed=spec.feedback_seed, distribution=distribution)
