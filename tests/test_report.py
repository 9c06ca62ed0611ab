"""`optodfa report`: one run's table, several runs side by side, and a clear refusal of anything else."""

from __future__ import annotations

import dataclasses

import h5py

from optodfa.cli import main
from optodfa.config import TrainConfig
from optodfa.report import comparison_table, summary_table
from optodfa.train import train

TINY = TrainConfig(dataset="digits", hidden=(8,), epochs=1, batch_size=32, limit=64, alignment_every=1)


def test_several_runs_give_one_column_each(tmp_path, capsys):
    a = train(TINY, tmp_path / "a.h5", progress=False, log=lambda _: None)
    b = train(dataclasses.replace(TINY, seed=1, epochs=2), tmp_path / "b.h5", progress=False, log=lambda _: None)
    table = comparison_table([a, b])
    lines = table.splitlines()
    assert lines[0].split() == ["run", "a.h5", "b.h5"]
    seeds = next(line for line in lines if line.startswith("seeds"))
    assert "init 0, feedback 0" in seeds and "init 1, feedback 0" in seeds
    epochs = next(line for line in lines if line.startswith("epochs done"))
    assert epochs.split()[2:] == ["1", "/", "1", "2", "/", "2"]
    assert main(["report", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == table
    assert main(["report", str(a)]) == 0
    assert capsys.readouterr().out.strip() == summary_table(a)


def test_report_refuses_files_that_are_not_run_files(tmp_path, capsys):
    run = train(TINY, tmp_path / "a.h5", progress=False, log=lambda _: None)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for path, reason in [(foreign, "plain HDF5 file without an optodfa seal"), (text, "is not an optodfa file"),
                         (tmp_path / "none.h5", "does not exist")]:
        assert main(["report", str(run), str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and reason in captured.err and str(path) in captured.err
        assert len(captured.err.strip().splitlines()) == 1
