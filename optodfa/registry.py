"""Projectors by name: built-in devices and plug-ins from the entry-point group ``optodfa.devices``.

A device is registered as a *factory*: a callable taking a :class:`ProjectorSpec` and returning a
:class:`~optodfa.device.Projector`; the first line of its docstring is the one-line description that
``optodfa devices`` prints. A third-party driver declares in its own ``pyproject.toml``::

    [project.entry-points."optodfa.devices"]
    my-opu = "my_package.driver:build"

and is then available as ``--device my-opu`` without any change to optodfa.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import torch

from optodfa.device import Projector
from optodfa.seeding import check_seed
from optodfa.validation import check_int

ENTRY_POINT_GROUP = "optodfa.devices"


@dataclasses.dataclass(frozen=True)
class ProjectorSpec:
    """Everything a device factory needs to build a projector.

    Attributes:
        in_features: error dimension ``d``.
        out_features: total feedback width ``D`` (sum of the hidden widths).
        feedback_seed: seed of the feedback matrix (transmission matrix for an OPU); independent of the
            network's initialisation seed.
        noise_seed: seed of the device noise (camera, drift); ``None`` derives it from ``feedback_seed``.
        profile: a profile name or path to a TOML profile (optical devices), or ``None`` for the default.
        overrides: ``{"camera.bits": 4, ...}`` settings applied over the profile or the device defaults.
        device: torch device the projector computes on.
        dtype: floating dtype of its outputs and matrices.
    """

    in_features: int
    out_features: int
    feedback_seed: int = 0
    noise_seed: int | None = None
    profile: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        check_int("in_features", self.in_features, low=1)
        check_int("out_features", self.out_features, low=1)
        check_seed(self.feedback_seed, "feedback_seed")
        if self.noise_seed is not None:
            check_seed(self.noise_seed, "noise_seed")
        object.__setattr__(self, "device", torch.device(self.device))
        object.__setattr__(self, "overrides", dict(self.overrides))

    @property
    def resolved_noise_seed(self) -> int:
        from optodfa.seeding import derive_seed

        return self.noise_seed if self.noise_seed is not None else derive_seed(self.feedback_seed, 1)


Factory = Callable[[ProjectorSpec], Projector]


@dataclasses.dataclass(frozen=True)
class DeviceEntry:
    """A registered device: its name, its factory, a one-line description and where it came from."""

    name: str
    factory: Factory
    description: str
    source: str


_BUILTIN: dict[str, tuple[str, str]] = {
    # name: (module:attribute of the factory, source). Imported lazily so `optodfa devices` stays fast.
    "digital": ("optodfa.sim.digital:build", "built-in"),
    "opu-sim": ("optodfa.sim.opu:build", "built-in"),
    "opu-twin": ("optodfa.sim.twin:build", "built-in"),
    "chip-sim": ("optodfa.sim.chip:build", "built-in"),
}
_registered: dict[str, DeviceEntry] = {}


def register_device(name: str, factory: Factory, description: str | None = None) -> None:
    """Register ``factory`` under ``name`` for this process (tests, notebooks); entry points persist."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"device name must be a non-empty string, got {name!r}")
    _registered[name] = DeviceEntry(name, factory, description or _first_line(factory), "registered")


def available_devices() -> dict[str, DeviceEntry]:
    """All devices by name: built-ins, then entry points, then those registered in this process."""
    names = list(_BUILTIN) + [point.name for point in _entry_points()] + list(_registered)
    return {name: _entry(name) for name in dict.fromkeys(names)}


def get_device(name: str) -> DeviceEntry:
    """The entry for ``name`` (only that one is imported); the error lists the known names."""
    known = list(_BUILTIN) + [point.name for point in _entry_points()] + list(_registered)
    if name not in known:
        raise KeyError(f"unknown device {name!r}; known devices: {', '.join(sorted(set(known)))}")
    return _entry(name)


def _entry(name: str) -> DeviceEntry:
    if name in _registered:
        return _registered[name]
    points = {point.name: point for point in _entry_points()}
    if name in points:
        point = points[name]
        try:
            factory = point.load()
        except Exception as exc:  # a broken plug-in must not hide the others
            return DeviceEntry(name, _broken(point.value, exc), f"(failed to load {point.value}: {exc})", point.value)
        return DeviceEntry(name, factory, _first_line(factory), point.value)
    target, source = _BUILTIN[name]
    factory = _load(target)
    return DeviceEntry(name, factory, _first_line(factory), source)


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def build_projector(name: str, in_features: int, out_features: int, **spec: Any) -> Projector:
    """Build the projector ``name`` for errors of dimension ``in_features`` and feedback width ``out_features``.

    Keyword arguments are the remaining fields of :class:`ProjectorSpec` (``feedback_seed``, ``profile``,
    ``overrides``, ``device``, ``dtype``, ``noise_seed``).
    """
    entry = get_device(name)
    projector = entry.factory(ProjectorSpec(in_features, out_features, **spec))
    if not isinstance(projector, Projector):
        raise TypeError(f"device {name!r} ({entry.source}) returned {type(projector).__name__}, not a Projector")
    return projector


def _load(target: str) -> Factory:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _first_line(factory: Callable[..., Any]) -> str:
    doc = (factory.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


def _broken(target: str, exc: Exception) -> Factory:
    def factory(spec: ProjectorSpec) -> Projector:
        raise RuntimeError(f"device plug-in {target} failed to load: {exc}") from exc

    return factory
