"""Grid files: expansion, names, and every bad grid failing before anything runs, naming key, value and rule."""

from __future__ import annotations

import pytest

from optodfa.sweep import Grid, GridError

BASE = {"dataset": "digits", "hidden": [16], "epochs": 1}


def test_product_zip_variants_and_seeds_expand_in_a_stable_order_with_readable_names():
    grid = Grid.load({"base": BASE, "grid": {"set": {"distribution": ["gaussian", "uniform"]}},
                      "zip": {"lr": [1e-3, 1e-2], "batch_size": [16, 64]},
                      "variants": {"bp": {"method": "bp"}, "dfa": {"method": "dfa"}}, "seeds": [0, 1, 2]})
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 2 * 3
    assert runs[0].name == "bp,distribution=gaussian,lr=0.001,batch_size=16,seed=0"
    assert runs[-1].name == "dfa,distribution=uniform,lr=0.01,batch_size=64,seed=2"
    assert [r.name for r in Grid.load(grid.to_dict()).runs()] == [r.name for r in runs]  # stable
    last = runs[-1].config
    assert (last.method, last.overrides, last.lr, last.batch_size, last.seed) == ("dfa", {"distribution": "uniform"},
                                                                                  0.01, 64, 2)
    assert grid.setting_keys == ["variant", "distribution", "lr", "batch_size"]
    assert runs[0].settings == {"variant": "bp", "distribution": "gaussian", "lr": 0.001, "batch_size": 16, "seed": 0}


def test_a_toml_grid_file_with_device_settings(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('seeds = [3]\n[base]\ndataset = "digits"\ndevice = "opu-sim"\nset."camera.bits" = 8\n'
                    'hidden = [16, 8]\n[grid]\nset."camera.bits" = [2, 4]\n')
    runs = Grid.load(path).runs()
    assert [r.name for r in runs] == ["camera.bits=2", "camera.bits=4"]
    assert runs[1].config.overrides == {"camera.bits": 4} and runs[1].config.hidden == (16, 8)
    assert runs[1].config.seed == 3
    assert Grid.load({"base": BASE}).runs()[0].name == "run"


@pytest.mark.parametrize(("grid", "match"), [
    ({"base": {"learning_rate": 1e-3}}, r"unknown key 'learning_rate' in \[base\]; allowed: dataset, .*lr, .*set\."),
    ({"grid": {"bits": [1, 2]}}, r"unknown key 'bits' in \[grid\]; allowed: .*set.<device setting>"),
    ({"sweep": {}}, r"unknown grid key\(s\) 'sweep'; allowed at the top level: description, seeds"),
    ({"base": {"overrides": {}}}, r"device settings go under set"),
])
def test_an_unknown_key_lists_the_allowed_ones(grid, match):
    with pytest.raises(GridError, match=match):
        Grid.load(grid)


@pytest.mark.parametrize(("grid", "match"), [
    ({"base": BASE, "seeds": []}, r"grid expands to zero runs: seeds is an empty list"),
    ({"base": BASE, "grid": {"lr": []}}, r"grid expands to zero runs: grid.lr is an empty list"),
    ({"base": BASE, "zip": {"lr": [], "epochs": []}}, r"zero runs: zip.lr, zip.epochs"),
])
def test_a_grid_that_expands_to_zero_runs_is_refused(grid, match):
    with pytest.raises(GridError, match=match):
        Grid.load(grid)


@pytest.mark.parametrize(("grid", "match"), [
    ({"base": BASE, "grid": {"lr": [1e-3, -1.0]}}, r"\[grid\] lr = -1: lr must be a finite real number in \(0, "),
    ({"base": BASE, "grid": {"epochs": [1, "2"]}}, r"\[grid\] epochs = 2: epochs must be an integer"),
    ({"base": {**BASE, "method": "hebbian"}}, r"\[base\]: method must be one of 'dfa', 'bp'; got 'hebbian'"),
    ({"base": {**BASE, "hidden": "wide"}}, r"hidden must be a width or a list of widths"),
    ({"base": BASE, "grid": {"lr": 0.1}}, r"grid.lr must be a list of values to sweep over, got 0.1"),
    ({"base": BASE, "zip": {"lr": [1e-3], "epochs": [1, 2]}}, r"zip lists must all have one length"),
    ({"base": BASE, "grid": {"lr": [1e-3]}, "zip": {"lr": [1e-2]}}, r"appear in both grid and zip"),
    ({"base": BASE, "seeds": [0, 0]}, r"seeds lists a seed twice"),
    ({"base": BASE, "seeds": [0], "grid": {"seed": [1, 2]}}, r"give seed either as the top-level list"),
    ({"base": BASE, "variants": {"a": {"lr": 1e-3}}, "grid": {"lr": [1e-2]}}, r"variants.a sets \['lr'\]"),
])
def test_a_bad_value_or_rule_names_the_key_the_value_and_the_rule(grid, match):
    with pytest.raises(GridError, match=match):
        Grid.load(grid)


def test_bad_toml_and_missing_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[base\n")
    with pytest.raises(GridError, match="is not valid TOML"):
        Grid.load(tmp_path / "bad.toml")
    with pytest.raises(GridError, match="does not exist"):
        Grid.load(tmp_path / "none.toml")
