"""The state codec: nested dicts of tensors, arrays and scalars round-trip through HDF5 exactly, without pickle."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from optodfa.h5tree import TreeFormatError, copy_tree, read_tree, write_tree


def roundtrip(tmp_path, tree):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        write_tree(f.create_group("tree"), tree)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        return read_tree(f["tree"])


def assert_same(a, b, where="tree"):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.contiguous().reshape(-1).view(torch.uint8),  # bits, so NaNs and -0.0 count too
                           b.contiguous().reshape(-1).view(torch.uint8)), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_every_kind_of_leaf_roundtrips_bit_for_bit(tmp_path):
    tree = {
        "weights": {"layers.0.weight": torch.randn(3, 4), "layers.0.bias": torch.randn(3, dtype=torch.float64)},
        "half": torch.randn(5).half(), "brain": torch.randn(2, 2).bfloat16(), "flags": torch.tensor([True, False]),
        "complex": torch.randn(3, dtype=torch.complex64), "empty": torch.zeros(0, 7), "scalar": torch.tensor(2.5),
        "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3), "bytes": torch.randint(0, 255, (9,)).byte(),
        0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}, 17: "int keys stay ints",
        "groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1, 2], "foreach": None, "amsgrad": False}],
        "rng": np.random.SFC64(5).state, "u64": np.array([2**64 - 1, 3], dtype=np.uint64),
        "np_scalar": np.float32(1.5), "big": 2**100, "nan": float("nan"), "inf": -math.inf, "text": "é/ü",
        "a/b": 1, ".hidden": 2, "%": 3, "nested": [[1, 2], (torch.ones(1),)], "tuple": (1, "x"), "list": [],
    }
    tree["non_contiguous"] = torch.randn(4, 6).t()
    assert_same(copy_tree(tree), roundtrip(tmp_path, tree))


def test_real_state_dicts_roundtrip(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    tree = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
    back = roundtrip(tmp_path, tree)
    assert_same(copy_tree(tree), back)
    other = torch.optim.Adam(model.parameters(), lr=1e-3)
    other.load_state_dict(back["optimizer"])  # torch accepts what comes back
    torch.set_rng_state(back["rng"])


def test_datasets_are_plain_chunked_and_checksummed(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        write_tree(f.create_group("tree"), {"model": {"layers.0.weight": torch.ones(2, 3)}, "step": 4})
    with h5py.File(tmp_path / "t.h5", "r") as f:  # any HDF5 reader sees the tensor by name
        dataset = f["tree/model/layers.0.weight"]
        assert dataset.shape == (2, 3) and dataset.dtype == np.float32 and dataset.fletcher32
        assert dataset.chunks is not None


@pytest.mark.parametrize(("tree", "error", "match"), [
    ({"x": object()}, TypeError, "cannot store a object at /x"),
    ({(1, 2): 3}, TypeError, "tree keys must be str or int, got tuple"),
    ({0: 1, "0": 2}, ValueError, "share the HDF5 name '0'"),
    ({"x": np.array(["a"])}, TypeError, "numpy ndarray of dtype <U1 at /x"),
    ({"x": torch.zeros(2).to_sparse()}, TypeError, "only dense tensors"),
])
def test_unstorable_values_are_named(tmp_path, tree, error, match):
    with h5py.File(tmp_path / "t.h5", "w") as f, pytest.raises(error, match=match):
        write_tree(f.create_group("tree"), tree)


def test_inconsistent_groups_are_refused(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        write_tree(f.create_group("a"), {"w": torch.ones(3), "k": 1})
        write_tree(f.create_group("b"), {"w": torch.ones(3)})
        write_tree(f.create_group("c"), {"w": torch.ones(3)})
        write_tree(f.create_group("d"), {"w": torch.ones(3)})
        f["a"].attrs["keys"] = '["w", "k", "gone"]'
        f["b/w"].attrs["shape"] = "[4]"
        f["c/w"].attrs["dtype"] = "object"
        f["d"].attrs["h5tree"] = "pickle"
    with h5py.File(tmp_path / "t.h5", "r") as f:
        for name, match in [("a", "do not match its keys"), ("b", "attributes say float32 .4,."),
                            ("c", "unknown leaf kind 'tensor' with dtype 'object'"), ("d", "must be 'dict'")]:
            with pytest.raises(TreeFormatError, match=match):
                read_tree(f[name])


def test_copy_tree_is_a_snapshot():
    weight = torch.zeros(3)
    snapshot = copy_tree({"w": weight, "a": np.zeros(2)})
    weight += 1
    assert torch.equal(snapshot["w"], torch.zeros(3))


@pytest.mark.parametrize("name", ["digital", "opu-sim"])
def test_projector_states_continue_bit_identically_through_hdf5(tmp_path, name):
    """What checkpoints hold of a projector (noise generator, drift fields, counters) survives the file."""
    from optodfa.registry import build_projector

    overrides = {"drift.enabled": True, "drift.rho": 0.99, "drift.period": 50} if name == "opu-sim" else {}

    def build():
        return build_projector(name, 10, 60, feedback_seed=0, overrides=overrides)

    def errors(seed):
        return torch.randn(16, 10, generator=torch.Generator().manual_seed(seed))

    first = build()
    first.project(errors(0))
    state = roundtrip(tmp_path, first.state_dict())
    expected = [first.project(errors(s)) for s in (1, 2)]
    fresh = build()
    fresh.load_state_dict(state)
    for want, seed in zip(expected, (1, 2), strict=True):
        assert torch.equal(fresh.project(errors(seed)), want)
    assert fresh.counters() == first.counters()
