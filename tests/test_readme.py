"""The README's examples run, at a small size, so that the README cannot drift from the code.

What is extracted from README.md:

* Fenced blocks opened by a bare ```` ``` ```` or by ```` ```python ````; other languages (```` ```toml ````, ...) are
  not run.
* In a bare block, every line that starts with ``optodfa `` or ``$ optodfa `` is a command (the rest of such a
  block, e.g. ``make demo`` or a command's printed output, is ignored). A ``#`` starts a comment. A command that
  holds a bare ``...`` argument is a fragment ("the flags above, and these") and is not run; write examples out
  in full to have them tested.
* A ```` ```python ```` block is run as a script, as written (keep it small).
* ``<!-- no-test -->`` on a line of its own just before a fence marks that block as not run.

How commands run: in a temporary folder (so relative run files land there), in process through
``optodfa.cli.main``, rewritten to a small size: ``--epochs N`` becomes ``--epochs 1``, ``train`` gets
``--limit 256`` and ``--no-progress``, hidden widths are capped at 64, and ``fashion-mnist`` becomes ``digits``
when its files are not installed. Each command must exit 0 within :data:`TIME_LIMIT_S` seconds; a python block
runs in a subprocess under the same cap.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optodfa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
NO_TEST = "<!-- no-test -->"
TIME_LIMIT_S = 120


def blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, first line number)`` of every fenced block not marked ``<!-- no-test -->``."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^(`{3,})\s*([\w+-]*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.groups()
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body, j = [], i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            body.append(lines[j])
            j += 1
        if previous != NO_TEST:
            found.append((language, "\n".join(body), i + 2))
        i = j + 1
    return found


def commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, argv after 'optodfa')`` of every runnable command in the README's bare blocks."""
    out = []
    for language, body, first in blocks(text):
        if language:
            continue
        for offset, line in enumerate(body.splitlines()):
            stripped = line.strip().removeprefix("$ ")
            if not stripped.startswith("optodfa "):
                continue
            words = shlex.split(stripped, comments=True)[1:]
            if "..." not in words:
                out.append((first + offset, words))
    return out


def python_blocks(text: str) -> list[tuple[int, str]]:
    return [(first, body) for language, body, first in blocks(text) if language == "python"]


def fashion_mnist_installed() -> bool:
    from optodfa.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", limit=1)
    except DatasetNotFoundError:
        return False
    return True


def small(words: list[str], *, fashion: bool) -> list[str]:
    """The same command at a small size (see the module docstring)."""
    out = list(words)
    for i, word in enumerate(out[:-1]):
        if word == "--epochs":
            out[i + 1] = "1"
        elif word == "--hidden":
            out[i + 1] = ",".join(str(min(int(w), 64)) for w in out[i + 1].split(","))
        elif word == "--dataset" and out[i + 1] == "fashion-mnist" and not fashion:
            out[i + 1] = "digits"
    if out and out[0] == "train":
        out += ["--no-progress"] + ([] if "--resume" in out else ["--limit", "256"])
    return out


TEXT = README.read_text(encoding="utf-8")


def test_extraction_rules():
    sample = "\n".join([
        "```", "optodfa train --epochs 10 --out r.h5   # comment", "$ optodfa devices", "digital  ...", "make demo",
        "optodfa train ... --set camera.bits=4", "```", NO_TEST, "```", "optodfa nope", "```", "```toml",
        "optodfa not-a-command", "```", "```python", "print(1)", "```"])
    assert commands(sample) == [(2, ["train", "--epochs", "10", "--out", "r.h5"]), (3, ["devices"])]
    assert python_blocks(sample) == [(16, "print(1)")]
    assert small(["train", "--dataset", "fashion-mnist", "--hidden", "800,800", "--epochs", "10"],
                 fashion=False) == ["train", "--dataset", "digits", "--hidden", "64,64", "--epochs", "1",
                                    "--no-progress", "--limit", "256"]


def test_readme_has_examples():
    assert len(commands(TEXT)) >= 3 and python_blocks(TEXT)


def test_readme_commands_run(tmp_path, monkeypatch, capsys):
    """Every command in order (a later `--resume r.h5` or `report r.h5` uses the file an earlier one wrote)."""
    monkeypatch.chdir(tmp_path)
    fashion = fashion_mnist_installed()

    def expire(signum, frame):
        raise TimeoutError(f"README command ran longer than {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        for line, words in commands(TEXT):
            argv = small(words, fashion=fashion)
            signal.alarm(TIME_LIMIT_S)
            try:
                code = main(argv)
            finally:
                signal.alarm(0)
            err = capsys.readouterr().err
            assert code == 0, f"README.md line {line}: optodfa {' '.join(argv)} exited {code}: {err}"
    finally:
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("line", "code"), python_blocks(TEXT), ids=lambda value: str(value)[:12])
def test_readme_python_blocks_run(tmp_path, line, code):
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIME_LIMIT_S)
    assert done.returncode == 0, f"README.md python block at line {line} failed:\n{done.stderr[-2000:]}"
