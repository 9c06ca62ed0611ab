"""The theory experiments run end to end in their --quick form and write what they promise."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import align_then_memorise, degeneracy_breaking, noisy_feedback, optical_teacher_student
from experiments._common import markdown_table, write_results


def _read(paths: dict[str, Path]) -> tuple[h5py.File, str]:
    assert {p.suffix for p in paths.values()} == {".h5", ".png", ".md"}
    assert paths["png"].stat().st_size > 10_000
    return h5py.File(paths["h5"], "r"), paths["md"].read_text()


def test_align_then_memorise_quick(tmp_path: Path) -> None:
    paths = align_then_memorise.main(["--quick", "--out", str(tmp_path)])
    assert paths["h5"] == tmp_path / "align_then_memorise" / "align_then_memorise.h5"
    handle, table = _read(paths)
    with handle:
        dfa = handle["K4_M2_dfa"]
        cos_ode, cos_sim = dfa["ode/cos_vb"][()], dfa["simulation/cos_vb"][()]
        eg = dfa["ode/eg"][()].mean(1)
        settings = json.loads(handle.attrs["settings"])
    assert cos_ode.shape == cos_sim.shape == (11, 2)
    assert settings["N"] == 200
    # The alignment phase: DFA's cos(v, b) climbs past 0.9 while ε_g is still within 5% of its start.
    at = np.argmax(cos_ode.mean(1) >= 0.9)
    assert at > 0 and eg[at] > 0.95 * eg[0]
    assert table.count("\n| ") == 5  # header + 4 rows (2 sizes x 2 algorithms)


def test_degeneracy_breaking_quick(tmp_path: Path) -> None:
    paths = degeneracy_breaking.main(["--quick", "--out", str(tmp_path), "--seeds", "3"])
    handle, table = _read(paths)
    with handle:
        assert handle.attrs["dfa_sign_agreement_sim"] == 1.0
        assert handle.attrs["dfa_cross_seed_cos_sim"] > 0.9
        assert handle.attrs["bp_cross_seed_cos_sim"] < 0.5
        assert handle["dfa/simulation/v"].shape[1:] == (3, 6)
    assert "| DFA |" in table and "| BP |" in table


def test_degeneracy_breaking_needs_two_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        degeneracy_breaking.main(["--quick", "--out", str(tmp_path), "--seeds", "1"])
    assert "--seeds must be at least 2 (cross-seed cosines need pairs), got 1" in capsys.readouterr().err


def test_noisy_feedback_quick(tmp_path: Path) -> None:
    paths = noisy_feedback.main(["--quick", "--out", str(tmp_path)])
    handle, table = _read(paths)
    with handle:
        quiet, noisy = handle["additive_s0/ode/eg"][()], handle["additive_s2/ode/eg"][()]
        assert set(handle) == {"additive_s0", "additive_s2", "redrawn_s0", "redrawn_s2"}
    assert noisy.mean(1)[-1] > quiet.mean(1)[-1]      # additive noise leaves an error floor
    assert "| redrawn | 2 | -0.8677 |" in table          # 20 log10(rms(b)/s) with rms(b) = 1.81


def test_optical_teacher_student_quick(tmp_path: Path) -> None:
    paths = optical_teacher_student.main(["--quick", "--out", str(tmp_path)])
    handle, table = _read(paths)
    with handle:
        assert set(handle) == {"digital", "aurora_4-bit"}
        settings = json.loads(handle.attrs["settings"])
        agreement = json.loads(handle.attrs["agreement"])
        digital, optical = handle["digital"], handle["aurora_4-bit"]
        S, K, n_t = settings["seeds"], settings["K"], settings["points"] + 1
        for group in (digital, optical):
            for run in ("simulation", "ode", "ode_noiseless"):
                assert group[f"{run}/eg"].shape == (n_t, S)
                assert np.all((group[f"{run}/eg"][()] > 0) & (group[f"{run}/eg"][()] < 1))
            assert group["gain"].shape == group["levels"].shape == group["b"].shape == (K,)
            assert group["gain_by_size"].shape == (4, K)
        np.testing.assert_array_equal(digital["gain"][()], np.ones(K))          # exact device: no gain, no noise
        np.testing.assert_array_equal(digital["levels"][()], np.zeros(K))
        np.testing.assert_array_equal(digital["ode/eg"][()], digital["ode_noiseless/eg"][()])
        assert np.all(optical["levels"][()] >= 0) and optical["levels"][()].max() > 0.1   # a noisy camera
    for label in ("digital", "aurora 4-bit"):
        a = agreement[label]
        assert set(a) >= {"median_rel_dev", "floor_ratio", "floor_band", "floor_tolerance", "floor_ratio_noiseless",
                          "curve_within", "curve_within_noiseless", "holds", "snr_db",
                          "gain_spread", "mode"}
        assert 0 <= a["median_rel_dev"] < 0.1 and 0.8 < a["floor_ratio"] < 1.25 and a["floor_band"] >= 1
        assert a["floor_tolerance"] >= 1 and 0 <= a["curve_within"] <= 1
    assert agreement["aurora 4-bit"]["mode"] == "redrawn" and agreement["aurora 4-bit"]["snr_db"] < 10
    assert table.count("\n| ") == 3                    # header + 2 settings
    assert "| digital | 0 | inf | 1–1 |" in table


def test_writer_stores_nested_arrays_and_attributes(tmp_path: Path) -> None:
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    paths = write_results("demo_1", arrays={"a": np.arange(3), "group": {"b": np.eye(2)}},
                          attrs={"n": 3, "settings": {"x": np.float64(0.5), "path": Path("p")}}, figure=fig,
                          table=markdown_table(["x", "y"], [[1.23456, "z"]]), out=tmp_path, title="Demo")
    with h5py.File(paths["h5"], "r") as handle:
        np.testing.assert_array_equal(handle["group/b"][()], np.eye(2))
        assert handle.attrs["n"] == 3
        assert json.loads(handle.attrs["settings"]) == {"x": 0.5, "path": "p"}
        assert "command" in handle.attrs
    assert paths["md"].read_text() == "# Demo\n\n| x | y |\n|---|---|\n| 1.235 | z |\n"


def test_writer_refuses_bad_names_and_attributes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"name must be a non-empty identifier \(letters, digits, _\), got '../x'"):
        write_results("../x", arrays={}, attrs={}, figure=Figure(), table="", out=tmp_path)
    with pytest.raises(TypeError, match="cannot store object as a run attribute"):
        write_results("bad", arrays={}, attrs={"thing": [object()]}, figure=Figure(), table="", out=tmp_path)
