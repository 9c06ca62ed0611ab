"""A real `optodfa train` subprocess, stopped by a signal once its run file holds a checkpoint of a given step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from optodfa.runlog import RunFile, RunFileError


def start_and_signal(args: Sequence[str], out: Path, signum: int, *, after_step: int = 14,
                     timeout_s: float = 120) -> tuple[int, str]:
    """Start ``optodfa train ARGS --out OUT``, send ``signum`` once a checkpoint of ``after_step`` is on disk.

    Returns the exit code and the process's stderr.
    """
    # Bit-identical needs the same number of threads on both sides (float sums are ordered by thread).
    environment = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "optodfa", "train", *args, "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:  # the file is replaced atomically, so a reader never sees half of it
            checkpoint = RunFile.load(out).checkpoint
        except RunFileError:
            checkpoint = None
        if checkpoint is not None and checkpoint[1]["step"] >= after_step:
            break
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=timeout_s)
    return process.returncode, err
