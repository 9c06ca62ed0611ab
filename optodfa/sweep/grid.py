"""Grid files: parse, validate against :class:`~optodfa.config.TrainConfig`, expand into named runs.

A grid is a TOML file (or the same structure as a dict)::

    description = "camera bits against accuracy"
    seeds = [0, 1, 2]                 # initialisation seeds (default: the base seed)
    feedback_seeds = [0]              # seeds of B (default: the base feedback seed)
    imports = ["my_lab.devices"]      # modules imported on every worker first (device plug-ins)

    [base]                            # any TrainConfig field; device settings under `set`
    dataset = "digits"
    hidden = [64, 64]
    device = "opu-sim"
    set."camera.bits" = 8

    [grid]                            # lists, expanded as a product
    set."camera.bits" = [2, 4, 8]
    lr = [1e-3, 1e-4]

    [zip]                             # lists of one length that vary together (one factor of the product)
    batch_size = [32, 128]
    epochs = [2, 8]

    [variants.digital]                # named sets of settings (one factor of the product)
    device = "digital"

Settings are addressed by flat keys: a TrainConfig field (``lr``) or ``set.<device key>`` (``set.camera.bits``);
a Python dict may use either the nested ``{"set": {"camera.bits": 4}}`` or the flat ``{"set.camera.bits": 4}``.
Every run gets a stable, readable name made of the settings that vary (``camera.bits=4,lr=0.001,seed=1``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from optodfa.config import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

SET = "set."
SEED_KEYS = ("feedback_seed", "seed")
TOP_LEVEL = ("description", "seeds", "feedback_seeds", "imports", "base", "grid", "zip", "variants")
_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "overrides")


class GridError(ValueError):
    """A grid that cannot be expanded into valid runs; the message names the key, the value and the rule."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One expanded run of a grid.

    Attributes:
        name: stable, readable, file-name-safe name built from the settings that vary.
        settings: the varying settings by display key (``{"camera.bits": 4, "seed": 1}``; a variant appears
            as ``{"variant": "digital"}``).
        config: the full run configuration.
    """

    name: str
    settings: dict[str, Any]
    config: TrainConfig


@dataclasses.dataclass(frozen=True)
class Grid:
    """A validated grid. Build with :meth:`load` (path, TOML text or dict); :meth:`runs` expands it.

    All tables hold flat keys (see the module docstring); ``grid`` and ``zip`` values are non-empty lists.
    """

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]
    seeds: tuple[int, ...] | None = None
    feedback_seeds: tuple[int, ...] | None = None
    imports: tuple[str, ...] = ()
    description: str = ""
    source: str | None = None

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, grid: Grid | Mapping[str, Any] | str | os.PathLike[str]) -> Grid:
        """A grid from a :class:`Grid`, a dict or the path of a TOML file; validated at once."""
        if isinstance(grid, Grid):
            return grid
        if isinstance(grid, Mapping):
            return cls.from_dict(grid)
        if isinstance(grid, str | os.PathLike):
            return cls.from_toml(grid)
        raise TypeError(f"grid must be a Grid, a dict or the path of a TOML file, got {type(grid).__name__}")

    @classmethod
    def from_text(cls, text: str) -> Grid:
        """A grid from TOML text."""
        return cls.from_dict(_parse_toml(text, "grid text"))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Grid:
        path = Path(path)
        if not path.is_file():
            raise GridError(f"grid file {str(path)!r} does not exist")
        return cls.from_dict(_parse_toml(path.read_text(encoding="utf-8"), str(path)), source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Grid:
        unknown = sorted(set(data) - set(TOP_LEVEL))
        if unknown:
            raise GridError(f"unknown grid key(s) {', '.join(map(repr, unknown))}; allowed at the top level: "
                            f"{', '.join(TOP_LEVEL)}")
        base = _flatten("base", _table(data, "base"))
        grid = {key: _values(f"grid.{key}", value) for key, value in _flatten("grid", _table(data, "grid")).items()}
        zipped = {key: _values(f"zip.{key}", value) for key, value in _flatten("zip", _table(data, "zip")).items()}
        variants: dict[str, dict[str, Any]] = {}
        for label, table in _table(data, "variants").items():
            if not isinstance(label, str) or not _safe(label):
                raise GridError(f"variant names must be non-empty text with a letter or digit, got {label!r}")
            if not isinstance(table, Mapping):
                raise GridError(f"variants.{label} must be a table of settings, got {table!r}")
            variants[label] = _flatten(f"variants.{label}", table)
        seeds = _seed_list("seeds", data.get("seeds"))
        feedback_seeds = _seed_list("feedback_seeds", data.get("feedback_seeds"))
        imports = data.get("imports", [])
        if isinstance(imports, str) or not all(isinstance(m, str) and m for m in imports):
            raise GridError(f"imports must be a list of module names, got {imports!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise GridError(f"description must be text, got {description!r}")
        result = cls(base, grid, zipped, variants, seeds, feedback_seeds, tuple(imports), description, source)
        result._check()
        return result

    # -- validation -------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.zip:
            lengths = {key: len(values) for key, values in self.zip.items()}
            if len(set(lengths.values())) > 1:
                raise GridError(f"zip lists must all have one length (they vary together), got lengths {lengths}")
        for first, second, label in ((self.grid, self.zip, "grid and zip"),):
            both = sorted(set(first) & set(second))
            if both:
                raise GridError(f"key(s) {both} appear in both {label}; give each key in one table only")
        varied = set(self.grid) | set(self.zip)
        for label, settings in self.variants.items():
            both = sorted(set(settings) & varied)
            if both:
                raise GridError(f"variants.{label} sets {both}, which [grid]/[zip] also vary; give each in one place")
        for key, listed in (("seed", self.seeds), ("feedback_seed", self.feedback_seeds)):
            if listed is not None and (key in varied or any(key in v for v in self.variants.values())):
                raise GridError(f"give {key} either as the top-level list {key}s = [...] or in [grid]/[zip]/"
                                f"[variants], not both")
        empty = [f"{table}.{key}" for table, values in (("grid", self.grid), ("zip", self.zip))
                 for key, listed in values.items() if not listed]
        empty += [name for name, listed in (("seeds", self.seeds), ("feedback_seeds", self.feedback_seeds))
                  if listed is not None and not listed]
        if empty:
            raise GridError(f"grid expands to zero runs: {', '.join(empty)} is an empty list (every list needs at "
                            f"least one value)")
        # Each value on its own first, so that the error names the key and value that broke the rule.
        _config(self.base, "[base]")
        for table, values in (("grid", self.grid), ("zip", self.zip)):
            for key, listed in values.items():
                for value in listed:
                    _config({**self.base, key: value}, f"[{table}] {_display(key)} = {show_value(value)}")
        for label, settings in self.variants.items():
            _config({**self.base, **settings}, f"[variants.{label}]")
        runs = self.runs()
        names = [run.name for run in runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GridError(f"runs {duplicates} get the same name: two values of a key print the same; make them "
                            f"differ in their text")

    # -- expansion --------------------------------------------------------------------------------------------
    def factors(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """The factors of the product, in naming order: ``(label, [settings of each level])``."""
        factors: list[tuple[str, list[dict[str, Any]]]] = []
        if self.variants:
            factors.append(("variant", [{"variant": label} for label in self.variants]))
        for key, listed in self.grid.items():
            factors.append((key, [{key: value} for value in listed]))
        if self.zip:
            keys = list(self.zip)
            levels = [dict(zip(keys, values, strict=True)) for values in zip(*self.zip.values(), strict=True)]
            factors.append((",".join(keys), levels))
        if self.feedback_seeds is not None:
            factors.append(("feedback_seed", [{"feedback_seed": s} for s in self.feedback_seeds]))
        if self.seeds is not None:
            factors.append(("seed", [{"seed": s} for s in self.seeds]))
        return factors

    def runs(self) -> list[Run]:
        """Every run of the grid, in a stable order (the last factor, the seeds, varies fastest)."""
        factors = self.factors()
        runs = []
        for combination in itertools.product(*(levels for _, levels in factors)):
            settings, shown = dict(self.base), {}
            for (_, levels), level in zip(factors, combination, strict=True):
                if "variant" in level:
                    settings.update(self.variants[level["variant"]])
                else:
                    settings.update(level)
                if len(levels) > 1:
                    shown.update({_display(k): v for k, v in level.items()})
            runs.append(Run(_name(shown), shown, _config(settings, f"run {_name(shown)}")))
        return runs

    @property
    def setting_keys(self) -> list[str]:
        """Display keys of the settings that vary, seeds excluded: the columns of the summary."""
        keys = []
        for label, levels in self.factors():
            if len(levels) > 1 and label != "seed":
                keys += ["variant"] if label == "variant" else [_display(k) for k in label.split(",")]
        return keys

    def to_dict(self) -> dict[str, Any]:
        """The grid as plain JSON-able data (flat keys); equal grids give equal dicts."""
        data: dict[str, Any] = {"base": _plain(self.base), "grid": _plain(self.grid), "zip": _plain(self.zip),
                                "variants": _plain(self.variants), "imports": list(self.imports)}
        if self.seeds is not None:
            data["seeds"] = list(self.seeds)
        if self.feedback_seeds is not None:
            data["feedback_seeds"] = list(self.feedback_seeds)
        return json.loads(json.dumps(data))


# -- helpers ------------------------------------------------------------------------------------------------------
def _parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{where} is not valid TOML: {exc}") from None


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise GridError(f"[{name}] must be a table, got {table!r}")
    return table


def _flatten(where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """Nested ``set`` tables to flat ``set.<key>`` keys; unknown keys raise, listing the allowed ones."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key == "set":
            if not isinstance(value, Mapping):
                raise GridError(f"{where}.set must be a table of device settings, got {value!r}")
            for setting, v in value.items():
                flat[SET + setting] = v
        elif key.startswith(SET) and len(key) > len(SET):
            flat[key] = value
        elif key in _FIELDS:
            flat[key] = value
        else:
            hint = " (device settings go under set, e.g. set.\"camera.bits\" = 4)" if key == "overrides" else ""
            raise GridError(f"unknown key {key!r} in [{where}]{hint}; allowed: {', '.join(_FIELDS)}, "
                            f"set.<device setting>")
    return flat


def _values(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise GridError(f"{where} must be a list of values to sweep over, got {show_value(value)} "
                        f"(put single values in [base])")
    return list(value)


def _seed_list(name: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise GridError(f"{name} must be a list of integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise GridError(f"{name} lists a seed twice: {list(value)}")
    return tuple(value)


def _config(settings: Mapping[str, Any], where: str) -> TrainConfig:
    values = {k: v for k, v in settings.items() if not k.startswith(SET)}
    overrides = {k[len(SET):]: v for k, v in settings.items() if k.startswith(SET)}
    if "hidden" in values:
        values["hidden"] = _hidden(values["hidden"], where)
    try:
        return TrainConfig(**values, overrides=overrides)
    except (ValueError, TypeError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise GridError(f"{where}: {message}") from None


def _hidden(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(w, int) and not isinstance(w, bool) for w in value):
        return tuple(value)
    raise GridError(f"{where}: hidden must be a width or a list of widths such as [800, 800], got {value!r}")


def _display(key: str) -> str:
    return key[len(SET):] if key.startswith(SET) else key


def show_value(value: Any, *, none: str = "none") -> str:
    """A setting's value as it appears in run names and tables: ``true``, ``0.001``, ``800x800``, ``none``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(show_value(v, none=none) for v in value)
    return none if value is None else str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")


def _name(shown: Mapping[str, Any]) -> str:
    parts = [_safe(str(v)) if k == "variant" else f"{_safe(k)}={_safe(show_value(v))}" for k, v in shown.items()]
    return ",".join(parts) or "run"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_grid(grid: Grid | Mapping[str, Any] | str | os.PathLike[str]) -> Grid:
    """Shorthand for :meth:`Grid.load`."""
    return Grid.load(grid)


def keys_allowed() -> Iterable[str]:
    """The keys a grid table may hold (besides ``set.<device setting>``)."""
    return _FIELDS
