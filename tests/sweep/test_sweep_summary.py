"""The summary and figures of a sweep, read from its folder alone (run here in-process, ``workers=0``)."""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics

import pytest
from sweep_helpers import tiny

import optodfa.sweep
from optodfa.cli import main
from optodfa.sweep.figures import heatmap_figure, metric_figure


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    grid = {"base": tiny(epochs=1, limit=100), "grid": {"lr": [1e-3, 1e-2], "set": {"distribution": ["gaussian",
                                                                                                   "uniform"]}},
            "seeds": [0, 1, 2]}
    optodfa.sweep.run(grid, out, workers=0, progress=False, tensorboard=False, log=lambda _: None)
    return out


def test_mean_and_sample_sd_over_seeds_per_setting(folder):
    summary = optodfa.sweep.summarise(folder)  # from the files alone
    assert summary.setting_keys == ["lr", "distribution"] and len(summary.rows) == 4
    row = summary.row(lr=0.01, distribution="uniform")
    values = [r.load().series["metrics/test_accuracy"][-1] for r in summary.runs
              if r.settings["lr"] == 0.01 and r.settings["distribution"] == "uniform"]
    assert len(values) == 3
    assert row.mean("test_accuracy") == pytest.approx(statistics.mean(values))
    assert row.sd("test_accuracy") == pytest.approx(statistics.stdev(values))
    with open(folder / "summary.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    line = next(x for x in lines if x["lr"] == "0.01" and x["distribution"] == "uniform")
    assert float(line["test_accuracy_mean"]) == pytest.approx(statistics.mean(values), rel=1e-5)
    assert (line["completed"], line["test_accuracy_n"]) == ("3", "3")
    assert f"| 0.01 | uniform | 3 completed | {statistics.mean(values):.3f} ± " in summary.markdown()


def test_figures_and_a_selected_part(folder, capsys):
    summary = optodfa.sweep.summarise(folder)
    assert {p.name for p in (folder / "figures").iterdir()} >= {"test_accuracy_vs_lr.png",
                                                                "test_accuracy_lr_x_distribution.png"}
    part = summary.select(distribution="gaussian")
    assert part.setting_keys == ["lr"] and len(part.rows) == 2 and len(part.runs) == 6
    metric_figure(part, "gradient_alignment/total")
    heatmap = heatmap_figure(summary, "test_accuracy", "lr", "distribution")
    assert not math.isnan(heatmap.axes[0].images[0].get_array()[1][1])
    with pytest.raises(ValueError, match=r"lines must be another varying setting than x"):
        metric_figure(summary, "test_accuracy", x="lr", lines="lr")
    three = dataclasses.replace(summary, setting_keys=[*summary.setting_keys, "batch_size"])
    with pytest.raises(ValueError, match=r"settings \['batch_size'\] also vary, so one point would mix"):
        metric_figure(three, "test_accuracy", x="lr", lines="distribution")
    with pytest.raises(KeyError, match="unknown setting"):
        summary.select(camera=1)
    assert main(["report", str(folder)]) == 0
    assert "sweep " in capsys.readouterr().out
