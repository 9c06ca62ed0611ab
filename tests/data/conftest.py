"""Every data test runs in an empty environment (see ``isolated``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optodfa import datasets as ds


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees an empty environment: no $OPTODFA_DATA, a private cache, no system data sets."""
    monkeypatch.delenv("OPTODFA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ds.locate, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path
