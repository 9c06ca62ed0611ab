"""The optical feedback study (experiments/optical_feedback): its quick run, what it records, its bad input, and the
pieces it added to the package (ideal and device views of alignment, re-calibration of row evening)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from experiments import optical_feedback as study
from optodfa.config import TrainConfig
from optodfa.dfa import convert
from optodfa.models import build_model
from optodfa.registry import build_projector
from optodfa.runlog import RunFile
from optodfa.study_metrics import ideal_matrix, record_alignment

FRAME_JOULES = 500e-6 * 30.0  # lighton-aurora: 0.5 ms per frame at 30 W


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("optical")
    study.main(["--quick", "--out", str(out), "--workers", "0"])
    return out / study.NAME


def _rows(folder):
    with h5py.File(folder / "study" / "study.h5", "r") as handle:
        names = [v.decode() if isinstance(v, bytes) else v for v in handle["variant"][()]]
        return {key.replace(".", "/"): dict(zip(names, [v.decode() if isinstance(v, bytes) else v
                                                        for v in handle[key][()]], strict=True)) for key in handle}


def test_quick_study_writes_every_table_and_figure(quick):
    for name in ("bits", "light", "front", "scatter", "curves"):
        path = quick / "study" / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 10_000, name
    text = (quick / "study" / "study.md").read_text()
    for heading in ("## Every setting", "## Settings within one point of digital", "## Accuracy-energy front",
                    "## Per-layer gradient alignment"):
        assert heading in text
    assert (quick / "quick" / "sweep.json").is_file()


def test_quick_study_values_are_in_range(quick):
    rows = _rows(quick)
    completed = [v for v, status in rows["status"].items() if "completed" in status]
    assert set(study.QUICK) - {"readout-intensity-evening", "bad-dark-offset-4bit", "bad-diverging-lr"} <= \
        set(completed)
    for variant in completed:
        assert 0.0 <= rows["test_accuracy"][variant] <= 1.0
        for key in ("gradient_alignment/total", "ideal_gradient_alignment/total", "device_gradient_alignment/total",
                    "fidelity/cosine"):
            assert -1.0 <= rows[key][variant] <= 1.0, (variant, key)
        frames = rows["frames_per_epoch"][variant]
        if variant == "digital":
            assert frames == 0 and rows["fidelity/snr_db"][variant] > 100  # exact up to float rounding
        else:
            assert frames > 0 and rows["joules_per_epoch"][variant] == pytest.approx(frames * FRAME_JOULES)
    # a perfect camera sees the ternary code better than a 1-bit one
    assert rows["fidelity/cosine"]["bitsinf-ternary-0.25"] > rows["fidelity/cosine"]["bits1-ternary-0.25"] + 0.3
    # bit-plane 2 shows two planes: twice the frames of ternary
    assert rows["frames_per_epoch"]["bitsinf-bitplane-2"] == 2 * rows["frames_per_epoch"]["bitsinf-ternary-0.25"]
    # re-calibration shows one reference frame per 1000 frames
    assert rows["frames_per_epoch"]["drift0.9-evening-recal"] > rows["frames_per_epoch"]["bitsinf-ternary-0.25"]
    # the digital baseline loses nothing against itself
    assert rows["loss_points"]["digital"] == 0.0 and rows["within_one_point"]["digital"] == 1.0


def test_bad_input_shows_as_invalid_and_diverged_in_the_study_table(quick):
    rows = _rows(quick)
    assert rows["status"]["readout-intensity-evening"] == "2 invalid"
    assert rows["status"]["bad-dark-offset-4bit"] == "2 invalid"
    assert rows["status"]["bad-diverging-lr"] == "2 diverged"
    text = (quick / "study" / "study.md").read_text()
    assert "camera.dark_offset must be below the top code 15 of a 4-bit ADC, got 20" in text
    assert "readout.evening applies to linear readout modes only" in text
    assert "diverged at step 2 (seed 0)" in text
    summary = (quick / "quick" / "summary.md").read_text()  # the sweep engine's own table says the same
    assert "invalid" in summary and "diverged at step 2" in summary


def test_the_study_regenerates_from_the_sweep_folder_alone(quick, capsys):
    before = (quick / "study" / "study.md").read_text()
    (quick / "study" / "front.png").unlink()
    study.main(["--from", str(quick)])
    assert (quick / "study" / "front.png").is_file()
    assert (quick / "study" / "study.md").read_text() == before
    assert "## Every setting" in capsys.readouterr().out


def test_from_refuses_a_folder_without_a_sweep(tmp_path):
    with pytest.raises(SystemExit, match="no sweep.json"):
        study.main(["--from", str(tmp_path)])


def test_full_grids_hold_every_axis_with_three_seeds():
    from optodfa.sweep.grid import Grid

    grids = {part: Grid.load(grid) for part, grid in study.full_grids().items()}
    assert set(grids) == {"core", "extra"} and all(g.seeds == (0, 1, 2) and g.feedback_seeds == (0,)
                                                   for g in grids.values())
    labels = [label for g in grids.values() for label in g.variants]
    assert len(labels) == len(set(labels))
    bits = {study.setting_of(run.config.to_dict())["bits"] for run in grids["core"].runs()
            if run.settings["variant"].endswith("ternary-0.25")}
    assert bits == {1, 2, 3, 4, 6, 8, 12, "unlimited"}
    readouts = {study.setting_of(r.config.to_dict())["readout"] for r in grids["extra"].runs()}
    assert readouts == {"holographic", "strong-reference", "intensity"}
    assert {r.config.optimizer for r in grids["extra"].runs()} == {"adam", "sgd-plain"}


def test_pareto_keeps_the_points_nothing_beats_on_both():
    points = [(10, 0.80), (20, 0.85), (20, 0.84), (5, 0.70), (30, 0.85)]
    assert study.pareto(points) == [True, True, False, True, False]


# -- the package pieces -------------------------------------------------------------------------------------------
def _projector(**overrides):
    return build_projector("opu-sim", 4, 64, feedback_seed=1, overrides=overrides)


def test_ideal_matrix_is_the_effective_one_until_the_medium_drifts():
    projector = _projector(**{"drift.enabled": True, "drift.rho": 0.5, "drift.period": 4})
    assert torch.equal(ideal_matrix(projector), projector.effective_matrix())
    projector.project(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)))
    ideal, now = ideal_matrix(projector), projector.effective_matrix()
    cosine = float(F.cosine_similarity(ideal.flatten(), now.flatten(), dim=0))
    assert cosine < 0.9  # 0.5 per 4 frames, 32 frames shown
    assert ideal.shape == now.shape == (64, 4)


def test_recalibration_measures_the_reference_again_every_period():
    drift = {"drift.enabled": True, "drift.rho": 0.5, "drift.period": 4, "readout.evening": True}
    e = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    stale, fresh = _projector(**drift), _projector(**drift, **{"readout.recalibrate": 16})
    for projector in (stale, fresh):
        for _ in range(3):
            projector.project(e)
    # 1 reference frame to start; fresh re-measures before the 2nd and 3rd projections (32 frames each)
    assert stale.counters().frames == 1 + 3 * 32 and fresh.counters().frames == 3 + 3 * 32
    assert not torch.equal(stale.effective_matrix(), fresh.effective_matrix())


def test_recalibration_without_evening_is_refused():
    with pytest.raises(ValueError, match="readout.recalibrate = 10 .* needs readout.evening = true"):
        _projector(**{"readout.recalibrate": 10})


def test_device_view_of_an_exact_projector_is_the_effective_view(tmp_path):
    torch.manual_seed(0)
    network = build_model("mlp", (6,), (5, 5), 3, activation="tanh", bias=True)
    model, _ = convert(network, (6,), projector="digital", feedback_seed=0)
    run = RunFile.create(tmp_path / "r.h5", {"config": TrainConfig().to_dict()})
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    record_alignment(run, model, x, y)
    series = run.series
    for name in ("layer1", "layer2", "total"):
        effective = series[f"alignment/gradient/{name}"][-1]
        assert series[f"alignment/device/gradient/{name}"][-1] == pytest.approx(effective, abs=1e-6)
        assert series[f"alignment/ideal/gradient/{name}"][-1] == effective
    assert series["fidelity/cosine"][-1] == pytest.approx(1.0)
    assert math.isinf(series["fidelity/snr_db"][-1]) or series["fidelity/snr_db"][-1] > 100  # exact up to rounding
    assert np.isfinite(series["alignment/ideal/weight/total"][-1])
