"""Figures of a sweep summary: a metric against one setting (a line per value of another), a heat map over two.

Built as :class:`matplotlib.figure.Figure` objects without pyplot, so nothing depends on a display. Numeric
settings get a numeric axis (logarithmic when positive and spanning two decades or more); others are categories in
the grid's order.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from optodfa.sweep.summary import SweepSummary, _cell, _label, settings_of


def metric_figure(summary: SweepSummary, metric: str = "test_accuracy", x: str | None = None,
                  lines: str | None = None) -> Figure:
    """``metric`` (mean ± sd over seeds) against setting ``x``, one line per value of setting ``lines``.

    ``x`` defaults to the first varying setting, ``lines`` to the second (if any). Other varying settings must
    have one value per line; otherwise the points of different settings would be mixed, and a ValueError says so.
    """
    keys = summary.setting_keys
    x = x or (keys[0] if keys else None)
    if x is None or x not in keys:
        raise ValueError(f"x must be one of the varying settings {keys}, got {x!r}")
    if lines is None and len(keys) > 1:
        lines = next(k for k in keys if k != x)
    if lines is not None and (lines not in keys or lines == x):
        raise ValueError(f"lines must be another varying setting than x={x!r}, one of {keys}; got {lines!r}")
    _check_covered(summary, {x, lines} - {None})
    xs = settings_of(summary, x)
    positions, numeric = _axis(xs)
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    for level in settings_of(summary, lines) if lines else [None]:
        rows = [r for r in summary.rows if lines is None or r.settings.get(lines) == level]
        points = [(positions[xs.index(r.settings.get(x))], r.mean(metric), r.sd(metric)) for r in rows
                  if not math.isnan(r.mean(metric))]
        if not points:
            continue
        px, py, pe = (np.array(v, dtype=float) for v in zip(*sorted(points), strict=True))
        axes.errorbar(px, py, yerr=np.nan_to_num(pe), marker="o", capsize=3,
                      label=None if lines is None else f"{lines} = {_cell(level)}")
    if numeric and _logarithmic(xs):
        axes.set_xscale("log")
    if not numeric:
        axes.set_xticks(list(positions), [_cell(v) for v in xs], rotation=30 if len(xs) > 4 else 0, ha="right"
                        if len(xs) > 4 else "center")
    axes.set(xlabel=x, ylabel=_label(metric), title=f"{_label(metric)} against {x} (mean ± sd over seeds)")
    if lines is not None:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def heatmap_figure(summary: SweepSummary, metric: str = "test_accuracy", x: str | None = None,
                   y: str | None = None) -> Figure:
    """Mean of ``metric`` over two settings as a heat map with the value written in each cell."""
    keys = summary.setting_keys
    if len(keys) < 2:
        raise ValueError(f"a heat map needs two varying settings, the grid varies {keys}")
    x = x or keys[0]
    y = y or next(k for k in keys if k != x)
    for name, value in (("x", x), ("y", y)):
        if value not in keys:
            raise ValueError(f"{name} must be one of the varying settings {keys}, got {value!r}")
    _check_covered(summary, {x, y})
    xs, ys = settings_of(summary, x), settings_of(summary, y)
    grid = np.full((len(ys), len(xs)), np.nan)
    for row in summary.rows:
        grid[ys.index(row.settings.get(y)), xs.index(row.settings.get(x))] = row.mean(metric)
    figure = Figure(figsize=(1.2 * len(xs) + 2.5, 0.8 * len(ys) + 1.8))
    axes = figure.subplots()
    image = axes.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            axes.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    axes.set_xticks(range(len(xs)), [_cell(v) for v in xs])
    axes.set_yticks(range(len(ys)), [_cell(v) for v in ys])
    axes.set(xlabel=x, ylabel=y, title=f"{_label(metric)} (mean over seeds)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    return figure


def write_figures(summary: SweepSummary, metrics: tuple[str, ...] = ("test_accuracy", "gradient_alignment/total")
                  ) -> list[Path]:
    """The default figures into ``<sweep>/figures/``: each metric against the first setting (lines per the
    second), and a heat map over the first two settings when the grid varies two or more."""
    keys = summary.setting_keys
    if not keys or not summary.metrics:
        return []
    folder = summary.folder / "figures"
    folder.mkdir(exist_ok=True)
    paths = []
    for metric in (m for m in metrics if m in summary.metrics):
        name = metric.replace("/", "_")
        figures = []
        try:
            figures.append((f"{name}_vs_{_file(keys[0])}.png", metric_figure(summary, metric, keys[0])))
            if len(keys) >= 2:
                figures.append((f"{name}_{_file(keys[0])}_x_{_file(keys[1])}.png",
                                heatmap_figure(summary, metric, keys[0], keys[1])))
        except ValueError:
            continue  # more than two varying settings: ask for the figures by hand with the keys to hold fixed
        for file, figure in figures:
            figure.savefig(folder / file, dpi=120)
            paths.append(folder / file)
    return paths


def _check_covered(summary: SweepSummary, used: set[str]) -> None:
    others = [k for k in summary.setting_keys if k not in used]
    if others:
        raise ValueError(f"settings {others} also vary, so one point would mix several settings; plot a sub-sweep "
                         f"or pass them as x/lines")


def _axis(values: list[Any]) -> tuple[list[float], bool]:
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    if numeric:
        return [float(v) for v in values], True
    return [float(i) for i in range(len(values))], False


def _logarithmic(values: list[Any]) -> bool:
    floats = [float(v) for v in values]
    return min(floats) > 0 and max(floats) / min(floats) >= 100


def _file(key: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in key)
