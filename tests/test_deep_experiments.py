"""The deep-network experiments run end to end in their --quick form and write what they promise."""

from __future__ import annotations

import math

import h5py
import numpy as np

from experiments import deep_linear_alpha_beta, transformer_dfa
from optodfa.datasets.text import char_corpus


def test_transformer_dfa_quick(tmp_path):
    paths = transformer_dfa.main(["--quick", "--out", str(tmp_path)])
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    ceiling = 2 * math.log(char_corpus().vocab_size)
    with h5py.File(paths["h5"], "r") as file:
        assert set(file) == {"BP", "DFA_digital", "DFA_opu-sim"}
        for label in file:
            run = file[label]["seed0"]
            steps = run["step"][()]
            assert steps[0] == 0 and steps[-1] == transformer_dfa.QUICK.steps
            assert np.all(np.isfinite(run["val_loss"][()])) and np.all(run["val_loss"][()] > 0)
            assert np.all(run["val_loss"][()] < ceiling)
            assert np.all(np.abs(run["gradient_alignment"][()]) <= 1)
        assert file["BP"]["seed0"]["frames"][()] == 0 and file["DFA_opu-sim"]["seed0"]["frames"][()] > 0
        for key in ("bp_final_val_loss", "dfa_digital_final_val_loss", "dfa_opu_sim_final_val_loss", "unigram_nats"):
            assert 0 < file.attrs[key] < ceiling
    table = paths["md"].read_text()
    assert "| DFA opu-sim |" in table and "| BP |" in table


def test_deep_linear_alpha_beta_quick(tmp_path, monkeypatch):
    paths = deep_linear_alpha_beta.main(["--quick", "--out", str(tmp_path), "--workers", "0"])
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    quick = deep_linear_alpha_beta.QUICK
    with h5py.File(paths["h5"], "r") as file:
        shape = (len(quick.activations), len(quick.alphas), len(quick.betas))
        for key in ("ga_total", "wa_total"):
            values = file[key][()]
            assert values.shape == shape and np.all(np.abs(values) <= 1)
        for activation in quick.activations:
            assert -1 <= file.attrs[f"{activation}_wa_min"] <= file.attrs[f"{activation}_wa_max"] <= 1
        assert file.attrs["linear_max_residual"] < 1e-4  # DFA from zero keeps W_l = B_l A_l B_(l-1)ᵀ (float32)
        run = file["runs"]["linear"]["alpha1_beta1"]["seed0"]
        assert np.all(run["condition_numbers"][()] >= 1)
        assert run["epoch"][()].tolist() == deep_linear_alpha_beta.epoch_grid(quick).tolist()
        assert run["wa_total"][0] == 0  # zero weights at epoch 0: no alignment yet
    assert "| linear |" in paths["md"].read_text()

    # Every run is kept: a second call (here on the local cluster) trains nothing and writes the same grids.
    with h5py.File(paths["h5"], "r") as file:
        first = file["ga_total"][()]

    def refuse(*args, **kwargs):
        raise AssertionError("a kept run was trained again")

    monkeypatch.setattr(deep_linear_alpha_beta, "run_one", refuse)
    again = deep_linear_alpha_beta.main(["--quick", "--out", str(tmp_path), "--workers", "0"])
    with h5py.File(again["h5"], "r") as file:
        np.testing.assert_array_equal(file["ga_total"][()], first)


def test_deep_linear_alpha_beta_runs_on_workers(tmp_path):
    """The same quick grid on 2 local workers gives the same numbers as in-process."""
    here = deep_linear_alpha_beta.main(["--quick", "--out", str(tmp_path / "here"), "--workers", "0"])
    there = deep_linear_alpha_beta.main(["--quick", "--out", str(tmp_path / "there"), "--workers", "2"])
    with h5py.File(here["h5"], "r") as a, h5py.File(there["h5"], "r") as b:
        for key in ("ga_total", "wa_total"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
