"""Device profiles: TOML files that describe one hardware model, with units and sources, resolved to SI.

A profile has sections (``dmd``, ``camera``, ``device``, ``medium``, ``drift``, ``encoding``, ``readout``) and an
optional ``[profile]`` table (``name``, ``description``). Every number is a table with its value, its unit and
where it comes from::

    [camera]
    bits = {value = 8, unit = "bit", source = "lightonml: OPU output dtype uint8"}
    exposure = {value = 400, unit = "us", source = "lightonml get_started: exposure_us 400"}
    shot_noise = true                               # non-numbers may be bare
    auto_exposure = {value = "frame", source = "..."}

Keys a file leaves out take the schema's default, the ``lighton-aurora`` value (recorded with source
``"optodfa default"``). Profiles are found
by path, by name in the folders of ``$OPTODFA_PROFILES`` (``os.pathsep``-separated), then among the profiles that
ship inside the package (``optodfa/device_profiles/*.toml``, package data found through ``importlib.resources``, so
an installed wheel has them too). Overrides (``{"camera.bits": "4"}``) take strings from the command line (a number
may carry a unit: ``"200us"``; without one it is in the key's display unit, see :data:`SCHEMA`) or typed values
from Python.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["DEFAULT_PROFILE", "SCHEMA", "Field", "Profile", "ProfileError", "known_profiles", "load_profile",
           "profile_dirs"]

DEFAULT_PROFILE = "lighton-aurora"
DEFAULT_SOURCE = "optodfa default"

# unit -> (dimension, factor to the SI unit of that dimension)
UNITS: dict[str, tuple[str, float]] = {
    "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6), "µs": ("time", 1e-6), "ns": ("time", 1e-9),
    "W": ("power", 1.0), "mW": ("power", 1e-3), "kW": ("power", 1e3),
    "mirror": ("mirrors", 1.0), "pixel": ("pixels", 1.0), "bit": ("bits", 1.0), "frame": ("frames", 1.0),
    "e-": ("electrons", 1.0), "count": ("counts", 1.0), "DN": ("counts", 1.0), "ADU": ("counts", 1.0),
    "count/e-": ("gain", 1.0), "DN/e-": ("gain", 1.0), "ADU/e-": ("gain", 1.0),
    "e-/s": ("rate", 1.0), "e-/ms": ("rate", 1e3), "e-/us": ("rate", 1e6),
    "1": ("ratio", 1.0), "%": ("ratio", 1e-2),
    "attempt": ("attempts", 1.0), "channel": ("channels", 1.0),
    "J": ("energy", 1.0), "nJ": ("energy", 1e-9), "pJ": ("energy", 1e-12), "fJ": ("energy", 1e-15),
}
SI_UNIT = {"time": "s", "power": "W", "mirrors": "mirror", "pixels": "pixel", "bits": "bit", "frames": "frame",
           "electrons": "e-", "counts": "count", "gain": "count/e-", "rate": "e-/s", "ratio": "1",
           "attempts": "attempt", "channels": "channel", "energy": "J"}


class ProfileError(ValueError):
    """A profile file or override that does not follow the schema (the message names the field)."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One profile key.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"bool"`` or ``"choice"``.
        default: value in the display unit (or the ``special`` string).
        unit: display unit (numbers only): the unit of the default and of unit-less overrides.
        low, high: inclusive bounds in SI (numbers); ``low_open``/``high_open`` make a bound strict.
        choices: allowed strings (``choice``).
        special: a string this number may take instead, stored as ``None`` (``"unlimited"`` bits, ``"auto"``
            gain).
        allow_inf: whether ``inf`` is allowed (floats).
        doc: one line for the documentation.
    """

    kind: str
    default: Any
    unit: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    special: str | None = None
    allow_inf: bool = False
    doc: str = ""

    @property
    def dimension(self) -> str:
        return UNITS[self.unit][0]

    def rule(self) -> str:
        """The allowed values in words, for error messages."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = kind
        units = ", ".join(u for u, (dim, _) in UNITS.items() if dim == self.dimension)
        extra = f" or {self.special!r}" if self.special else (" or inf" if self.allow_inf else "")
        return f"{text}{extra} (SI units; allowed units: {units})"


def _n(kind: str, default: Any, unit: str, doc: str, **kw: Any) -> Field:
    return Field(kind, default, unit, doc=doc, **kw)


SCHEMA: dict[str, Field] = {
    "dmd.rows": _n("int", 1140, "mirror", "mirror rows of the DMD", low=1),
    "dmd.cols": _n("int", 912, "mirror", "mirror columns of the DMD", low=1),
    "dmd.macropixel": _n("int", 64, "mirror", "mirrors driven by one signal element", low=1),
    "dmd.reference_mirrors": _n("int", 8192, "mirror", "mirrors of the reference region", low=1),
    "camera.rows": _n("int", 1088, "pixel", "largest camera region of interest, rows", low=1),
    "camera.cols": _n("int", 2040, "pixel", "largest camera region of interest, columns", low=1),
    "camera.bits": _n("int", 8, "bit", "ADC bit depth", low=1, high=16, special="unlimited"),
    "camera.photon_rate": _n("float", 1500.0, "e-/s", "photo-electrons per second per pixel per lit mirror",
                             low=0.0, low_open=True),
    "camera.exposure": _n("float", 400.0, "us", "(maximum) exposure time", low=0.0, low_open=True),
    "camera.auto_exposure": Field("choice", "frame", choices=("frame", "batch", "off"),
                                  doc="auto-exposure per frame, per acquisition, or off"),
    "camera.auto_exposure_target": _n("float", 0.8, "1", "fraction of saturation the quantile lands at",
                                      low=0.0, high=1.0, low_open=True),
    "camera.auto_exposure_quantile": _n("float", 0.999, "1", "intensity quantile auto-exposure places",
                                        low=0.0, high=1.0, low_open=True, high_open=True),
    "camera.shot_noise": Field("bool", True, doc="Poisson shot noise on or off"),
    "camera.read_noise": _n("float", 5.0, "e-", "read noise (standard deviation)", low=0.0),
    "camera.dark_offset": _n("float", 0.0, "count", "counts added in the dark", low=0.0),
    "camera.full_well": _n("float", 10000.0, "e-", "electrons a pixel holds", low=0.0, low_open=True,
                           allow_inf=True),
    "camera.gain": _n("float", "auto", "count/e-", "counts per electron ('auto': the ADC spans the full well)",
                      low=0.0, low_open=True, special="auto"),
    "camera.poisson_exact_below": _n("float", 0.0, "e-", "mean under which shot noise is exact Poisson",
                                     low=0.0),
    "device.frame_time": _n("float", 500.0, "us", "time per frame", low=0.0, low_open=True),
    "device.power": _n("float", 30.0, "W", "electrical power", low=0.0),
    "medium.macropixel_shortcut": Field("bool", True, doc="one column of m-fold variance per element"),
    "noise.stream": Field("choice", "counter", choices=("counter", "sfc64"),
                          doc="CPU noise stream: counter-based SplitMix64, or SFC64 (runs saved before it)"),
    "drift.enabled": Field("bool", False, doc="medium drift on or off"),
    "drift.rho": _n("float", 1.0, "1", "correlation kept per drift step", low=0.0, high=1.0),
    "drift.period": _n("int", 1000, "frame", "frames between drift steps", low=1),
    "encoding.kind": Field("choice", "ternary", choices=("ternary", "sign", "bitplane"), doc="error encoding"),
    "encoding.rule": Field("choice", "max", choices=("fixed", "max", "std"), doc="ternary threshold rule"),
    "encoding.threshold": _n("float", 0.25, "1", "ternary threshold (absolute, or a fraction of max or std)",
                             low=0.0),
    "encoding.bits": _n("int", 4, "bit", "bit planes of the bitplane encoding", low=1, high=16),
    "readout.mode": Field("choice", "holographic", choices=("holographic", "strong-reference", "intensity"),
                          doc="readout mode"),
    "readout.evening": Field("bool", False, doc="divide row i by sqrt(I_i(r))"),
    "readout.evening_floor": _n("float", 0.05, "1", "floor of I_i(r) as a fraction of its mean", low=0.0,
                                high=1.0, low_open=True),
    "readout.recalibrate": _n("int", 0, "frame", "device frames between re-measurements of I(r) for row evening "
                              "(0: once)", low=0),
    # Fault policy of the device guard (optodfa.faults), read by every optical projector.
    "faults.attempts": _n("int", 3, "attempt", "tries of one device call in all (1: no retry)", low=1, high=100),
    "faults.backoff": _n("float", 50.0, "ms", "wait before the first retry (doubling after)", low=0.0,
                         high=3600.0),
    "faults.timeout": _n("float", "device", "s", "seconds an acquire may take ('device': the driver's own "
                         "default; inf: no timeout)", low=0.0, low_open=True, special="device", allow_inf=True),
}

# A silicon-photonic weight bank (optodfa.sim.chip); profiles say `kind = "chip"` in their [profile] table.
CHIP_SCHEMA: dict[str, Field] = {
    "chip.rows": _n("int", 32, "channel", "output channels (weight-bank rows) of the chip", low=1),
    "chip.cols": _n("int", 32, "channel", "input channels (wavelengths) of the chip", low=1),
    "chip.tile_time": _n("float", 1.0, "ns", "time of one tile operation (one input vector through the chip)",
                         low=0.0, low_open=True),
    "chip.tile_energy": _n("float", 1024.0, "pJ", "energy of one tile operation", low=0.0),
    "weights.bits": _n("int", 8, "bit", "programming precision of a weight in [-1, 1]", low=1, high=16,
                       special="unlimited"),
    "weights.noise": _n("float", 0.002, "1", "standard deviation of the programming error (weight units)",
                        low=0.0),
    "weights.clip": _n("float", 3.0, "1", "feedback entries of this many standard deviations map to weight 1",
                       low=0.0, low_open=True),
    "dac.bits": _n("int", 8, "bit", "input DAC bits (per-sample full scale)", low=1, high=16, special="unlimited"),
    "adc.bits": _n("int", 8, "bit", "output ADC bits of each tile's partial sums", low=1, high=16,
                   special="unlimited"),
    "adc.range": _n("float", 0.125, "1", "ADC full scale as a fraction of the largest partial sum (cols)",
                    low=0.0, high=1.0, low_open=True),
    "analog.noise": _n("float", 0.002, "1", "additive Gaussian noise at the detector, a fraction of the ADC range",
                       low=0.0),
    "analog.crosstalk": _n("float", 0.01, "1", "fraction of each neighbouring channel a ring picks up", low=0.0,
                           high=0.5),
}
SCHEMAS: dict[str, dict[str, Field]] = {"opu": SCHEMA, "chip": CHIP_SCHEMA}
_FIELDS = {**SCHEMA, **CHIP_SCHEMA}  # sections of the kinds are disjoint, so a key names its field
SECTIONS = sorted({key.partition(".")[0] for key in SCHEMA})
METADATA_KEYS = ("name", "description", "kind")


@dataclasses.dataclass(frozen=True)
class Profile:
    """A resolved profile.

    Attributes:
        name: profile name.
        path: file it came from (``None`` for the built-in defaults).
        values: dotted key -> value in SI units (``None`` for a special value: "unlimited" bits, "auto" gain;
            ``inf`` where allowed).
        entries: dotted key -> ``{"value", "unit", "given", "source"}`` (plain data for run files).
        description: one line from the file.
        kind: the schema it follows: ``"opu"`` (:data:`SCHEMA`) or ``"chip"`` (:data:`CHIP_SCHEMA`).
    """

    name: str
    path: str | None
    values: Mapping[str, Any]
    entries: Mapping[str, Mapping[str, Any]]
    description: str = ""
    kind: str = "opu"

    def __getitem__(self, key: str) -> Any:
        if key not in self.values:
            raise KeyError(f"unknown profile key {key!r}; allowed: {', '.join(sorted(SCHEMAS[self.kind]))}")
        return self.values[key]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Profile:
        """A copy with ``overrides`` applied (strings parsed, units converted); unknown keys raise."""
        schema = SCHEMAS[self.kind]
        unknown = sorted(set(overrides) - set(schema))
        if unknown:
            raise ProfileError(f"unknown setting(s) {', '.join(map(repr, unknown))}; allowed: "
                               f"{', '.join(sorted(schema))}")
        values, entries = dict(self.values), {k: dict(v) for k, v in self.entries.items()}
        for key, raw in overrides.items():
            value, given = _parse_override(key, raw)
            values[key] = value
            entries[key] = _entry(key, value, given, "override")
        return dataclasses.replace(self, values=values, entries=entries)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable nested form: ``{"name", "path", "description", section: {key: entry}}``."""
        out: dict[str, Any] = {"name": self.name, "path": self.path, "description": self.description,
                               "kind": self.kind}
        for key, entry in self.entries.items():
            section, _, name = key.partition(".")
            out.setdefault(section, {})[name] = dict(entry)
        return out


PACKAGE_PROFILES = "device_profiles"  # folder of optodfa holding the shipped profiles


def profile_dirs() -> list[Any]:
    """Folders searched for profiles by name: ``$OPTODFA_PROFILES`` entries, then the package's own profiles.

    The last entry is an ``importlib.resources`` traversable (a ``Path`` for an ordinary installation).
    """
    dirs: list[Any] = [Path(p) for p in os.environ.get("OPTODFA_PROFILES", "").split(os.pathsep) if p]
    dirs.append(importlib.resources.files("optodfa") / PACKAGE_PROFILES)
    return dirs


def known_profiles() -> dict[str, Any]:
    """Profile names found in :func:`profile_dirs` (earlier folders win), each with its file."""
    found: dict[str, Any] = {}
    for folder in profile_dirs():
        if folder.is_dir():
            for path in sorted(folder.iterdir(), key=lambda entry: entry.name):
                if path.name.endswith(".toml") and path.is_file():
                    found.setdefault(path.name.removesuffix(".toml"), path)
    return found


def load_profile(profile: str | os.PathLike[str] | None = None,
                 overrides: Mapping[str, Any] | None = None) -> Profile:
    """Load a profile by name or path (``None``: ``lighton-aurora``) and apply ``overrides``.

    Raises:
        ProfileError: unknown name (the message lists the known ones), missing file, bad TOML, unknown section or
            key, a number without unit or source, a wrong type or a value out of range.
    """
    path = _locate(DEFAULT_PROFILE if profile is None else profile)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {str(path)!r} is not valid TOML: {exc}") from None
    resolved = parse_profile(data, name=path.name.removesuffix(".toml"), path=str(path))
    return resolved.with_overrides(overrides or {})


def parse_profile(data: Mapping[str, Any], *, name: str, path: str | None = None) -> Profile:
    """Validate parsed TOML ``data`` against :data:`SCHEMA` and resolve it to SI units."""
    where = f"profile {path or name!r}"
    meta = data.get("profile", {})
    kind = meta.get("kind", "opu") if isinstance(meta, Mapping) else "opu"
    if kind not in SCHEMAS:
        raise ProfileError(f"{where}: [profile] kind must be one of {', '.join(map(repr, SCHEMAS))}, got {kind!r}")
    schema = SCHEMAS[kind]
    sections = sorted({key.partition(".")[0] for key in schema})
    allowed_sections = [*sections, "profile"]
    unknown = sorted(set(data) - set(allowed_sections))
    if unknown:
        raise ProfileError(f"{where}: unknown section(s) {', '.join(map(repr, unknown))}; allowed: "
                           f"{', '.join(allowed_sections)}")
    if not isinstance(meta, Mapping) or set(meta) - set(METADATA_KEYS):
        raise ProfileError(f"{where}: [profile] may hold only {', '.join(METADATA_KEYS)} (strings), got "
                           f"{meta!r}")
    values: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    for section in sections:
        table = data.get(section, {})
        if not isinstance(table, Mapping):
            raise ProfileError(f"{where}: [{section}] must be a table, got {type(table).__name__}")
        allowed = sorted(k.partition(".")[2] for k in schema if k.startswith(section + "."))
        bad = sorted(set(table) - set(allowed))
        if bad:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(f'{section}.{b}' for b in bad)}; allowed in "
                               f"[{section}]: {', '.join(allowed)}")
        for key in allowed:
            dotted = f"{section}.{key}"
            if key in table:
                value, given, source = _parse_file_entry(where, dotted, table[key])
            else:
                field = schema[dotted]
                value, given, source = _to_si(dotted, field.default, field.unit), _show(field.default,
                                                                                         field.unit), DEFAULT_SOURCE
            values[dotted] = value
            entries[dotted] = _entry(dotted, value, given, source)
    return Profile(name=str(meta.get("name", name)), path=path, values=values, entries=entries,
                   description=str(meta.get("description", "")), kind=kind)


# -- internals -----------------------------------------------------------------------------------------------
def _locate(profile: str | os.PathLike[str]) -> Any:
    text = os.fspath(profile)
    if not isinstance(text, str) or not text:
        raise ProfileError(f"profile must be a name or a path to a .toml file, got {profile!r}")
    looks_like_path = text.endswith(".toml") or os.sep in text or "/" in text
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"profile file {text!r} does not exist")
        return path
    known = known_profiles()
    if text not in known:
        raise ProfileError(f"unknown profile {text!r}; known profiles: {', '.join(sorted(known)) or '(none)'} "
                           f"(searched {', '.join(str(d) for d in profile_dirs())})")
    return known[text]


def _parse_file_entry(where: str, key: str, raw: Any) -> tuple[Any, str, str]:
    field = _FIELDS[key]
    if isinstance(raw, Mapping):
        extra = sorted(set(raw) - {"value", "unit", "source"})
        if extra or "value" not in raw:
            raise ProfileError(f"{where}: {key} must be a table with value, unit and source, got keys "
                               f"{sorted(raw)}")
        value, unit, source = raw["value"], raw.get("unit"), raw.get("source")
    else:
        value, unit, source = raw, None, None
    is_number = field.kind in ("int", "float")
    if is_number:
        if unit is None:
            units = ", ".join(u for u, (dim, _) in UNITS.items() if dim == field.dimension)
            raise ProfileError(f"{where}: {key} needs a unit: write {key.partition('.')[2]} = {{value = ..., "
                               f"unit = \"{field.unit}\", source = \"...\"}} (allowed units: {units})")
        if source is None or not isinstance(source, str) or not source.strip():
            raise ProfileError(f"{where}: {key} needs a source (where the number comes from)")
    elif unit is not None:
        raise ProfileError(f"{where}: {key} is {field.rule()} and takes no unit, got unit {unit!r}")
    value = _check_value(key, value, unit)
    return value, _show(raw["value"] if isinstance(raw, Mapping) else raw, unit or ""), str(source or "")


def _check_value(key: str, value: Any, unit: str | None) -> Any:
    """Type- and range-check one value given in ``unit``; return it in SI."""
    field = _FIELDS[key]
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{key} must be {field.rule()}, got {value!r} ({type(value).__name__})")
        return value
    if field.kind == "choice":
        if value not in field.choices:
            raise ProfileError(f"{key} must be {field.rule()}, got {value!r}")
        return value
    if unit not in UNITS or UNITS[unit][0] != field.dimension:
        units = ", ".join(u for u, (dim, _) in UNITS.items() if dim == field.dimension)
        raise ProfileError(f"{key}: unit {unit!r} is not a unit of {field.dimension}; allowed units: {units}")
    if field.special is not None and value == field.special:
        return None
    if field.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ProfileError(f"{key} must be {field.rule()}, got {value!r} ({type(value).__name__})")
    si = _to_si(key, value, unit)
    bad = si != si or (math.isinf(si) and not (field.allow_inf and si > 0))
    if not bad and field.low is not None:
        bad = si <= field.low if field.low_open else si < field.low
    if not bad and field.high is not None:
        bad = si >= field.high if field.high_open else si > field.high
    if bad:
        raise ProfileError(f"{key} must be {field.rule()}, got {value!r} {unit}")
    return si


def _to_si(key: str, value: Any, unit: str) -> Any:
    field = _FIELDS[key]
    if field.kind not in ("int", "float") or value is None or value == field.special:
        return None if value == field.special and field.special is not None else value
    si = value * UNITS[unit][1]
    return int(si) if field.kind == "int" else float(si)


_NUMBER_WITH_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf)\s*(\S*)\s*$")


def _parse_override(key: str, raw: Any) -> tuple[Any, str]:
    field = _FIELDS[key]
    if not isinstance(raw, str):
        if field.kind in ("int", "float") and raw is not None and raw != field.special:
            return _check_value(key, raw, field.unit), _show(raw, field.unit)
        return _check_value(key, raw, field.unit if field.kind in ("int", "float") else None), _show(raw, "")
    text = raw.strip()
    if field.kind == "bool":
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
                 "0": False}
        if text.lower() not in words:
            raise ProfileError(f"{key} must be {field.rule()}, got {raw!r}")
        return words[text.lower()], text
    if field.kind == "choice":
        return _check_value(key, text, None), text
    if field.special is not None and text == field.special:
        return None, text
    match = _NUMBER_WITH_UNIT.match(text)
    if not match:
        raise ProfileError(f"{key} must be {field.rule()}, got {raw!r}")
    number_text, unit = match.group(1), match.group(2) or field.unit
    number: int | float
    if field.kind == "int":
        try:
            number = int(number_text)
        except ValueError:
            raise ProfileError(f"{key} must be {field.rule()}, got {raw!r}") from None
    else:
        number = float(number_text)
    return _check_value(key, number, unit), f"{number_text} {unit}"


def _entry(key: str, value: Any, given: str, source: str) -> dict[str, Any]:
    field = _FIELDS[key]
    unit = SI_UNIT[field.dimension] if field.kind in ("int", "float") else ""
    shown = None if isinstance(value, float) and math.isinf(value) else value
    return {"value": shown, "unit": unit, "given": given, "source": source}


def _show(value: Any, unit: str) -> str:
    return f"{value} {unit}".strip()
