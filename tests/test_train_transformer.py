"""``optodfa train --model transformer``: a character-level Transformer through the training loop, its text data,
its run file, resume, and its bad input (each refused before a run file exists)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.datasets.text import LIGHTHOUSE
from optodfa.report import summary_table
from optodfa.runlog import RunFile
from optodfa.text_data import load_text, windows
from optodfa.train import resume, train

# The shipped text (2.9 K characters) gives 162 training windows of 16 characters: 6 steps of 32 per epoch.
SMALL = {"model": "transformer", "dataset": "lighthouse", "hidden": (16,), "context": 16, "heads": 2,
         "epochs": 1, "batch_size": 32, "lr": 3e-3, "alignment_every": 3}
CLI = ["--model", "transformer", "--hidden", "16", "--context", "16", "--batch-size", "32", "--lr", "3e-3",
       "--epochs", "1", "--alignment-every", "3", "--no-progress"]
VOCAB = len(set(LIGHTHOUSE))


def quiet(*_: object) -> None:
    pass


def run(tmp_path, name: str, **changes: object) -> RunFile:
    return RunFile.load(train(TrainConfig(**{**SMALL, **changes}), tmp_path / name, progress=False, log=quiet))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_windows_are_non_overlapping_next_character_pairs():
    x, y = windows(torch.arange(10), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    data = load_text("lighthouse", context=16)
    assert data.num_classes == VOCAB and data.input_shape == (16,)
    assert len(data.x_train) == (data.train_characters - 1) // 16
    assert len(data.x_test) == (data.validation_characters - 1) // 16
    assert data.validation_characters == round(0.1 * len(LIGHTHOUSE))  # the last 10 % held out


@pytest.mark.parametrize("device", ["digital", "opu-sim"])
def test_a_dfa_run_records_per_token_metrics_and_alignment(tmp_path, device):
    result = run(tmp_path, "r.h5", device=device)
    attrs, series = result.attrs, result.series
    assert attrs["status"] == "completed" and attrs["dataset"] == "lighthouse"
    assert attrs["model"]["token_dims"] == 1
    assert set(attrs["model"]["hidden"]) == {"block1.mlp", "block1.out"}
    assert attrs["text"]["vocabulary"] == "".join(sorted(set(LIGHTHOUSE))) and attrs["text"]["context"] == 16
    loss, accuracy = series["metrics/test_loss"], series["metrics/test_accuracy"]
    assert len(loss) == len(accuracy) == 1
    assert np.isfinite(loss[0]) and 0 < loss[0] < 2 * math.log(VOCAB) and 0 <= accuracy[0] <= 1
    assert np.isfinite(series["metrics/train_loss"][0])
    assert series["alignment/step"] == [0.0, 3.0]
    for name in ("block1.mlp", "block1.out", "total"):
        values = series[f"alignment/gradient/{name}"]
        assert len(values) == 2 and all(-1 <= v <= 1 for v in values), name
        assert len(series[f"alignment/device/gradient/{name}"]) == 2
    assert len(series["fidelity/cosine"]) == 2
    if device == "opu-sim":
        assert series["device/frames"][-1] > 0
    table = summary_table(result.path)
    assert "held-out loss, nats/token (final)" in table and "held-out perplexity (final)" in table


def test_bp_learns_below_a_uniform_guess(tmp_path):
    result = run(tmp_path, "bp.h5", method="bp", epochs=3, batch_size=16, lr=1e-2)  # 36 steps
    loss = result.series["metrics/test_loss"]
    assert loss[-1] < math.log(VOCAB) - 0.3  # a uniform guess costs log(V) nats per character
    assert result.series["metrics/train_loss"][-1] < result.series["metrics/train_loss"][0]


def test_same_seeds_give_identical_runs_and_another_seed_differs(tmp_path):
    a, b = run(tmp_path, "a.h5"), run(tmp_path, "b.h5")
    for name in a.series:
        if name != "metrics/epoch_seconds":
            assert a.series[name] == b.series[name], name
    other = run(tmp_path, "c.h5", seed=1)
    assert other.series["metrics/test_loss"] != a.series["metrics/test_loss"]


def test_resume_continues_identically(tmp_path):
    config = TrainConfig(**{**SMALL, "epochs": 2, "checkpoint_every": 3})
    full = RunFile.load(train(config, tmp_path / "full.h5", progress=False, log=quiet))
    # 6 steps per epoch: stopping after 10 is a kill in the middle of epoch 2.
    train(config, tmp_path / "killed.h5", progress=False, stop_after_steps=10, log=quiet)
    assert RunFile.load(tmp_path / "killed.h5").attrs["status"] == "running"
    resumed = RunFile.load(resume(tmp_path / "killed.h5", progress=False, log=quiet))
    assert resumed.attrs["status"] == "completed"
    for name in full.series:
        if name != "metrics/epoch_seconds":
            assert full.series[name] == resumed.series[name], name


def test_cli_trains_on_the_shipped_text_and_a_text_file(tmp_path, capsys):
    out = tmp_path / "lm.h5"
    assert main(["train", *CLI, "--device", "opu-sim", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out loss" in printed and "held-out token accuracy (final)" in printed
    config = RunFile.load(out, checkpoint=False).attrs["config"]
    assert (config["dataset"], config["activation"], config["context"], config["heads"]) == ("lighthouse", "gelu",
                                                                                             16, 2)
    assert main(["report", str(out)]) == 0 and "held-out perplexity" in capsys.readouterr().out
    text = tmp_path / "mine.txt"
    text.write_text("a small text of my own, repeated to be long enough.\n" * 40, encoding="utf-8")
    mine = tmp_path / "mine.h5"
    assert main(["train", *CLI, "--text-file", str(text), "--out", str(mine)]) == 0
    attrs = RunFile.load(mine, checkpoint=False).attrs
    assert attrs["dataset"] == "text" and attrs["config"]["text_file"] == str(text)
    assert attrs["text"]["vocabulary"] == "".join(sorted(set(text.read_text(encoding="utf-8"))))


def test_resume_refuses_a_changed_text(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the keeper climbed the stairs.\n" * 60, encoding="utf-8")
    config = TrainConfig(**{**SMALL, "dataset": "text", "text_file": str(text), "epochs": 2})
    train(config, tmp_path / "r.h5", progress=False, stop_after_steps=2, log=quiet)
    text.write_text("the keeper climbed the ladder.\n" * 60, encoding="utf-8")
    with pytest.raises(ValueError, match="has changed since the run started"):
        resume(tmp_path / "r.h5", progress=False, log=quiet)


def _file(tmp_path, content: bytes | None) -> str:
    path = tmp_path / "in.txt"
    if content is not None:
        path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(("content", "extra", "match"), [
    (None, [], r"text file '.*in\.txt' does not exist"),
    (b"", [], r"text file '.*in\.txt' is empty"),
    (b"too short for a context of sixteen", [], r"has 34 characters: 31 for training and 3 held out .* needs at "
                                                r"least 1[67][0-9] characters"),
    (b"\xff\xfe\x00binary" * 100, [], r"is not UTF-8 text: byte 0xff at offset 0"),
    (b"text with a NUL\x00 byte " * 100, [], r"holds the control character '\\x00' at character 15"),
    (b"x" * 2000, ["--context", "0"], r"context must be an integer >= 1, got 0"),
    (b"x" * 2000, ["--heads", "3"], r"width \(hidden\) must be divisible by heads; got width 16 and heads 3"),
    (b"x" * 2000, ["--no-bias"], r"always has biases"),
    (b"x" * 2000, ["--label-noise", "0.1"], r"targets are the next characters"),
])
def test_bad_text_input_is_one_line_before_a_run_file_exists(tmp_path, capsys, content, extra, match):
    out = tmp_path / "r.h5"
    assert main(["train", *CLI, "--text-file", _file(tmp_path, content), *extra, "--out", str(out)]) == 2
    assert re.search(match, one_error_line(capsys))
    assert not out.exists()


@pytest.mark.parametrize(("args", "match"), [
    (["--model", "mlp", "--dataset", "lighthouse"], r"data set 'lighthouse' is a text; it trains model 'transformer'"),
    (["--model", "mlp", "--dataset", "digits", "--context", "8"], r"context=8 .* model 'mlp' has no such setting"),
    (["--model", "transformer", "--dataset", "digits"], r"trains on a text: dataset must be one of lighthouse, text"),
    (["--model", "transformer", "--hidden", "16,32"], r"one equal width per block"),
    (["--model", "transformer", "--dataset", "lighthouse", "--text-file", "x.txt"], r"data set 'text' reads"),
])
def test_model_and_data_that_do_not_fit_are_refused(tmp_path, capsys, args, match):
    out = tmp_path / "r.h5"
    assert main(["train", *args, "--epochs", "1", "--no-progress", "--out", str(out)]) == 2
    assert re.search(match, one_error_line(capsys))
    assert not out.exists()
