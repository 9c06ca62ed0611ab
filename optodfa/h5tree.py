"""Nested state (dicts, lists, tuples of tensors, arrays and JSON scalars) <-> an HDF5 group, without pickle.

What checkpoints hold — ``state_dict()`` of a model, an optimiser and a projector, random generator states — is a
tree whose leaves are torch tensors, numpy arrays and scalars, and whose inner nodes are dicts (string or integer
keys), lists and tuples. :func:`write_tree` stores such a tree as plain HDF5 that any HDF5 tool can read, and
:func:`read_tree` rebuilds it exactly: same container types, key types and order, tensor dtypes and shapes, values
to the bit. Reading only parses JSON and numeric arrays, so a file can never make the reader run code.

Layout:

* a container is a group with attributes ``h5tree`` (``"dict"``, ``"list"`` or ``"tuple"``); ``keys`` (dict:
  JSON list of the keys, in order, each a string or an integer) or ``length`` (list, tuple); ``values`` (JSON
  object: child name -> a scalar ``None | bool | int | float | str``, or a flat list of them); ``tuples`` (JSON
  list of the names in ``values`` whose list is a tuple).
* the other children are datasets (tensors, arrays) and groups (containers), named by the key: ``str(key)`` with
  ``%`` -> ``%25``, ``/`` -> ``%2F`` and a leading ``.`` -> ``%2E``; list items by their index.
* a tensor or array is a dataset with attributes ``h5tree`` (``"tensor"``, ``"ndarray"`` or ``"numpy_scalar"``),
  ``dtype`` (torch dtype name such as ``"float32"``, or numpy dtype name) and ``shape`` (JSON list). Data are
  stored in their own dtype; torch dtypes numpy lacks (``bfloat16``, float8 types) as same-sized signed integers
  holding the bits. 0-d values are stored as one-element 1-d datasets (HDF5 cannot chunk a scalar). Datasets are
  chunked with fletcher32 checksums (:data:`optodfa.integrity.DATASET_OPTIONS`). Tensors are read back on the CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from optodfa.integrity import DATASET_OPTIONS, chunks_for

__all__ = ["TreeFormatError", "copy_tree", "read_tree", "write_tree"]

_NUMPY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "float32", "float64", "complex64", "complex128")
_TORCH_NATIVE = {getattr(torch, name): name for name in _NUMPY_DTYPES}
_TORCH_BITS = {torch.bfloat16: "bfloat16", torch.complex32: "complex32"}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        _TORCH_BITS[getattr(torch, _name)] = _name
_BITS_STORAGE = {1: (torch.int8, "int8"), 2: (torch.int16, "int16"), 4: (torch.int32, "int32"),
                 8: (torch.int64, "int64")}  # element size -> the integer type that holds a tensor's bits
_TORCH_BY_NAME = {name: dtype for dtype, name in {**_TORCH_NATIVE, **_TORCH_BITS}.items()}
_SCALARS = (type(None), bool, int, float, str)


class TreeFormatError(ValueError):
    """A group that :func:`read_tree` cannot read back as a tree (the message names the HDF5 path)."""


def child_name(key: str | int) -> str:
    """The HDF5 name of a dict key or list index."""
    name = str(key).replace("%", "%25").replace("/", "%2F")
    return "%2E" + name[1:] if name.startswith(".") else name


def _is_plain(value: Any) -> bool:
    """A scalar, or a flat list or tuple of scalars (stored in the parent's ``values`` JSON)."""
    if isinstance(value, (list, tuple)):
        return all(type(item) in _SCALARS for item in value)
    return type(value) in _SCALARS


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def write_tree(group: h5py.Group, tree: Mapping[Any, Any] | list[Any] | tuple[Any, ...], *, path: str = "") -> None:
    """Store ``tree`` (a dict, list or tuple) in the empty ``group``.

    Raises:
        TypeError: a leaf or key of a type the layout cannot hold (the message names its place in the tree).
        ValueError: two keys with the same HDF5 name (e.g. ``0`` and ``"0"``).
    """
    here = path or "/"
    if isinstance(tree, Mapping):
        items: list[tuple[Any, Any]] = list(tree.items())
        for key, _ in items:
            if type(key) not in (str, int):
                raise TypeError(f"tree keys must be str or int, got {type(key).__name__} {key!r} at {here}")
        group.attrs["h5tree"] = "dict"
        group.attrs["keys"] = _json([key for key, _ in items])
    elif isinstance(tree, (list, tuple)):
        items = list(enumerate(tree))
        group.attrs["h5tree"] = "tuple" if isinstance(tree, tuple) else "list"
        group.attrs["length"] = len(items)
    else:
        raise TypeError(f"a tree must be a dict, list or tuple, got {type(tree).__name__} at {here}")
    values: dict[str, Any] = {}
    tuples: list[str] = []
    seen: set[str] = set()
    for key, value in items:
        name = child_name(key)
        if name in seen:
            raise ValueError(f"keys {key!r} and another key share the HDF5 name {name!r} at {here}")
        seen.add(name)
        where = f"{path}/{name}"
        if _is_plain(value):
            values[name] = list(value) if isinstance(value, (list, tuple)) else value
            if isinstance(value, tuple):
                tuples.append(name)
        elif isinstance(value, (Mapping, list, tuple)):
            write_tree(group.create_group(name), value, path=where)
        elif isinstance(value, torch.Tensor):
            _write_tensor(group, name, value, where)
        elif isinstance(value, (np.ndarray, np.generic)):
            _write_array(group, name, value, where)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} at {where}; a tree holds dicts, lists, tuples, "
                            f"torch tensors, numpy arrays, None, bool, int, float and str")
    group.attrs["values"] = _json(values)
    if tuples:
        group.attrs["tuples"] = _json(tuples)


def _dataset(group: h5py.Group, name: str, data: np.ndarray, kind: str, dtype: str, shape: tuple[int, ...]) -> None:
    data = data.reshape(1) if data.ndim == 0 else data
    chunks, maxshape = chunks_for(data.shape)
    dataset = group.create_dataset(name, data=data, chunks=chunks, maxshape=maxshape, **DATASET_OPTIONS)
    dataset.attrs["h5tree"], dataset.attrs["dtype"], dataset.attrs["shape"] = kind, dtype, _json(list(shape))


def _write_tensor(group: h5py.Group, name: str, tensor: torch.Tensor, where: str) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise TypeError(f"cannot store a {tensor.layout} tensor at {where}; only dense tensors")
    value = tensor.detach().cpu().contiguous()
    if value.dtype in _TORCH_NATIVE:
        data = value.numpy()
        dtype = _TORCH_NATIVE[value.dtype]
    elif value.dtype in _TORCH_BITS:
        data = value.view(_BITS_STORAGE[value.element_size()][0]).numpy()
        dtype = _TORCH_BITS[value.dtype]
    else:
        raise TypeError(f"cannot store a tensor of dtype {value.dtype} at {where}")
    _dataset(group, name, data, "tensor", dtype, tuple(value.shape))


def _write_array(group: h5py.Group, name: str, array: np.ndarray | np.generic, where: str) -> None:
    kind = "numpy_scalar" if isinstance(array, np.generic) else "ndarray"
    data = np.array(array, order="C")  # a copy; np.ascontiguousarray would turn a 0-d value into 1-d
    dtype = data.dtype.name
    if dtype not in _NUMPY_DTYPES:
        raise TypeError(f"cannot store a numpy {kind} of dtype {data.dtype} at {where}; allowed: "
                        f"{', '.join(_NUMPY_DTYPES)}")
    _dataset(group, name, data.astype(data.dtype.newbyteorder("<"), copy=False), kind, dtype, data.shape)


def read_tree(group: h5py.Group, *, path: str = "") -> Any:
    """Rebuild the tree stored by :func:`write_tree` in ``group``.

    Raises:
        TreeFormatError: anything missing or inconsistent (the message names the HDF5 path).
        OSError: HDF5 could not read a dataset (e.g. a fletcher32 checksum failed).
    """
    here = path or "/"
    attrs = group.attrs
    kind = _text(attrs.get("h5tree"), here)
    try:
        values = json.loads(_text(attrs.get("values"), here))
        tuples = set(json.loads(_text(attrs["tuples"], here))) if "tuples" in attrs else set()
        if kind == "dict":
            keys = json.loads(_text(attrs.get("keys"), here))
            if not isinstance(keys, list) or not all(type(k) in (str, int) for k in keys):
                raise TreeFormatError(f"{here}: attribute 'keys' must be a list of strings and integers")
        elif kind in ("list", "tuple"):
            length = attrs.get("length")
            if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 0:
                raise TreeFormatError(f"{here}: attribute 'length' must be a non-negative integer")
            keys = list(range(int(length)))
        else:
            raise TreeFormatError(f"{here}: attribute h5tree must be 'dict', 'list' or 'tuple', got {kind!r}")
    except json.JSONDecodeError as exc:
        raise TreeFormatError(f"{here}: an attribute is not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise TreeFormatError(f"{here}: attribute 'values' must be a JSON object")
    names = [child_name(key) for key in keys]
    if len(set(names)) != len(names) or set(values) | set(group) != set(names) or set(values) & set(group):
        raise TreeFormatError(f"{here}: its children and values do not match its keys")
    out: list[Any] = []
    for name in names:
        where = f"{path}/{name}"
        if name in values:
            value = values[name]
            if isinstance(value, list):
                if not all(type(item) in _SCALARS for item in value):
                    raise TreeFormatError(f"{where}: a stored list may only hold scalars")
                value = tuple(value) if name in tuples else value
            elif type(value) not in _SCALARS:
                raise TreeFormatError(f"{where}: a stored value must be a scalar or a list of scalars")
            out.append(value)
        else:
            child = group[name]
            out.append(read_tree(child, path=where) if isinstance(child, h5py.Group) else _read_leaf(child, where))
    if kind == "dict":
        return dict(zip(keys, out, strict=True))
    return tuple(out) if kind == "tuple" else out


def _text(value: Any, where: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise TreeFormatError(f"{where}: an attribute is not UTF-8 text") from None
    if not isinstance(value, str):
        raise TreeFormatError(f"{where}: missing or non-text tree attribute")
    return value


def _read_leaf(dataset: h5py.Dataset, where: str) -> Any:
    kind = _text(dataset.attrs.get("h5tree"), where)
    dtype = _text(dataset.attrs.get("dtype"), where)
    try:
        shape = json.loads(_text(dataset.attrs.get("shape"), where))
    except json.JSONDecodeError:
        raise TreeFormatError(f"{where}: attribute 'shape' is not valid JSON") from None
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        raise TreeFormatError(f"{where}: attribute 'shape' must be a list of non-negative integers")
    size = math.prod(shape)
    if kind == "tensor" and dtype in _TORCH_BY_NAME:
        torch_dtype = _TORCH_BY_NAME[dtype]
        stored = np.dtype(dtype if torch_dtype in _TORCH_NATIVE else _BITS_STORAGE[torch_dtype.itemsize][1])
    elif kind in ("ndarray", "numpy_scalar") and dtype in _NUMPY_DTYPES:
        stored = np.dtype(dtype)
    else:
        raise TreeFormatError(f"{where}: unknown leaf kind {kind!r} with dtype {dtype!r}")
    if kind == "numpy_scalar" and shape:
        raise TreeFormatError(f"{where}: a numpy scalar must have shape [], got {shape}")
    if dataset.dtype.newbyteorder("=") != stored.newbyteorder("=") or dataset.size != size or (
            dataset.ndim != len(shape) and not (shape == [] and dataset.shape == (1,))):
        raise TreeFormatError(f"{where}: stored as {dataset.dtype} {dataset.shape}, its attributes say {dtype} "
                              f"{tuple(shape)}")
    data = np.ascontiguousarray(dataset[()], dtype=stored.newbyteorder("=")).reshape(shape)
    if kind == "numpy_scalar":
        return data[()]
    if kind == "ndarray":
        return data
    tensor = torch.from_numpy(data)
    return tensor if torch_dtype in _TORCH_NATIVE else tensor.view(torch_dtype)


def copy_tree(tree: Any) -> Any:
    """A deep copy of ``tree`` with every tensor detached, on the CPU and cloned (a snapshot that later training
    cannot change)."""
    if isinstance(tree, Mapping):
        return {key: copy_tree(value) for key, value in tree.items()}
    if isinstance(tree, tuple):
        return tuple(copy_tree(value) for value in tree)
    if isinstance(tree, list):
        return [copy_tree(value) for value in tree]
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, np.ndarray):
        return tree.copy()
    return tree
