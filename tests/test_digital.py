"""The digital feedback matrix: its distributions, and matrices loaded from files (.npy, HDF5) with their hash."""

from __future__ import annotations

import hashlib
import math

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from optodfa.dfa import convert
from optodfa.registry import build_projector
from optodfa.sim.digital import ENTRY_VARIANCE, FeedbackMatrixError, feedback_matrix, load_feedback_matrix

D, d = 200, 50  # 10 000 entries


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
def test_entry_variance_of_each_distribution(distribution):
    matrix = feedback_matrix(D, d, seed=3, distribution=distribution, dtype=torch.float64)
    # Standard error of the mean of N squared entries: sqrt(Var(X²)/N), Var(X²) = 2 (Gaussian), 1/5 − 1/9 (uniform).
    fourth = 2.0 if distribution == "gaussian" else 1 / 5 - 1 / 9
    tolerance = 5 * math.sqrt(fourth / matrix.numel())
    assert abs(float(matrix.pow(2).mean()) - ENTRY_VARIANCE[distribution]) < tolerance
    assert abs(float(matrix.mean())) < 5 * math.sqrt(ENTRY_VARIANCE[distribution] / matrix.numel())
    if distribution == "uniform":
        assert float(matrix.min()) >= -1.0 and float(matrix.max()) < 1.0


def test_uniform_is_reachable_through_the_registry():
    projector = build_projector("digital", d, D, overrides={"distribution": "uniform"}, feedback_seed=3)
    torch.testing.assert_close(projector.effective_matrix(), feedback_matrix(D, d, seed=3, distribution="uniform"))
    assert projector.describe()["distribution"] == "uniform"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matrix_from_npy_is_applied_exactly_and_hashed(tmp_path, dtype):
    matrix = np.random.default_rng(0).standard_normal((9, 3)).astype(dtype)
    path = tmp_path / "B.npy"
    np.save(path, matrix)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    model, _ = convert(net, (6,), projector="digital", overrides={"matrix_file": str(path)})
    torch.testing.assert_close(model.projector.effective_matrix(), torch.from_numpy(matrix.astype(np.float32)))
    description = model.projector.describe()
    assert description["matrix_sha256"] == sha256(path)
    assert description["distribution"] == "file" and description["matrix_dtype"] == np.dtype(dtype).name
    assert description["matrix_file"] == str(path.resolve())


def test_matrix_from_hdf5_dataset(tmp_path):
    matrix = np.arange(27.0).reshape(9, 3)
    path = tmp_path / "feedback.h5"
    with h5py.File(path, "w") as file:
        file["group/B"] = matrix
        file["other"] = np.zeros(2)
    loaded, record = load_feedback_matrix(path, (9, 3), dataset="group/B")
    np.testing.assert_array_equal(loaded.numpy(), matrix)
    assert record["matrix_dataset"] == "group/B" and record["matrix_sha256"] == sha256(path)
    with pytest.raises(FeedbackMatrixError, match="holds 2 datasets \\(group/B, other\\); name one with "
                                                  "matrix_dataset"):
        load_feedback_matrix(path, (9, 3))
    with pytest.raises(FeedbackMatrixError, match="has no dataset 'B'; it holds group/B, other"):
        load_feedback_matrix(path, (9, 3), dataset="B")


def test_single_hdf5_dataset_needs_no_name(tmp_path):
    path = tmp_path / "one.hdf5"
    with h5py.File(path, "w") as file:
        file["B"] = np.ones((9, 3), np.float32)
    assert load_feedback_matrix(path, (9, 3))[1]["matrix_dataset"] == "B"


@pytest.mark.parametrize(("array", "match"), [
    (np.zeros((3, 9)), r"must have shape \(D, d\) = \(9, 3\) \(rows: hidden units in layer order, columns: error "
                       r"components\), got \(3, 9\)"),
    (np.zeros((9, 3), np.int64), "must be float32 or float64, got int64"),
    (np.zeros((9, 3), np.float16), "must be float32 or float64, got float16"),
    (np.full((9, 3), np.nan), "holds 27 non-finite value"),
])
def test_bad_matrix_files_are_clear_errors(tmp_path, array, match):
    path = tmp_path / "B.npy"
    np.save(path, array)
    with pytest.raises(FeedbackMatrixError, match=match):
        build_projector("digital", 3, 9, overrides={"matrix_file": str(path)})


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(FeedbackMatrixError, match="does not exist or is not a file"):
        load_feedback_matrix(tmp_path / "missing.npy", (9, 3))
    text = tmp_path / "B.txt"
    text.write_text("1 2 3")
    with pytest.raises(FeedbackMatrixError, match="must end in .npy, .h5, .hdf5, .hdf, got '.txt'"):
        load_feedback_matrix(text, (9, 3))
    pickled = tmp_path / "object.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FeedbackMatrixError, match="cannot read .* as a .npy array"):
        load_feedback_matrix(pickled, (9, 3))  # never unpickled
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5")
    with pytest.raises(FeedbackMatrixError, match="cannot read .* as an HDF5 file"):
        load_feedback_matrix(fake, (9, 3))


def test_conflicting_settings(tmp_path):
    path = tmp_path / "B.npy"
    np.save(path, np.zeros((9, 3)))
    with pytest.raises(ValueError, match="give either distribution or matrix_file, not both"):
        build_projector("digital", 3, 9, overrides={"matrix_file": str(path), "distribution": "uniform"})
    with pytest.raises(ValueError, match="matrix_dataset='B' needs matrix_file"):
        build_projector("digital", 3, 9, overrides={"matrix_dataset": "B"})
    with pytest.raises(FeedbackMatrixError, match="matrix_dataset is for HDF5 files"):
        build_projector("digital", 3, 9, overrides={"matrix_file": str(path), "matrix_dataset": "B"})
