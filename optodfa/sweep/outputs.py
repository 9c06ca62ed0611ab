"""What a finished sweep leaves in its folder: ``summary.csv``, ``summary.md`` and the figures."""

from __future__ import annotations

from pathlib import Path

from optodfa.sweep.figures import write_figures
from optodfa.sweep.summary import SUMMARY_CSV, SUMMARY_MD, SweepSummary


def write_summary(summary: SweepSummary, *, figures: bool = True) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and (optionally) the figures into the sweep folder."""
    paths = {"csv": summary.write_csv(summary.folder / SUMMARY_CSV)}
    paths["md"] = summary.folder / SUMMARY_MD
    paths["md"].write_text(summary.markdown(), encoding="utf-8")
    if figures:
        for index, path in enumerate(write_figures(summary)):
            paths[f"figure{index}"] = path
    return paths
