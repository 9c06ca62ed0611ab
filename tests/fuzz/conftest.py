"""Fuzzing: print the counts by outcome at the end of the session (see fuzzlib)."""

from __future__ import annotations

import fuzzlib


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = fuzzlib.summary()
    if not lines:
        return
    mode = "make fuzz (full budget)" if fuzzlib.FULL else "smoke subset (derandomised)"
    terminalreporter.section(f"fuzz outcomes: {mode}")
    for line in lines:
        terminalreporter.write_line(line)
