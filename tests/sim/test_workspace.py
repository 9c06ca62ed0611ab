"""Scratch buffers (reused within the simulator) and fresh results (handed to the caller)."""

from __future__ import annotations

import pytest
import torch

from optodfa.sim.workspace import Workspace, fresh


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.float32, torch.float64, torch.bool])
def test_a_fresh_result_has_the_shape_and_dtype_asked_for_and_its_own_memory(dtype: torch.dtype) -> None:
    first, second = fresh((3, 5), dtype, "cpu"), fresh((3, 5), dtype, torch.device("cpu"))
    assert first.shape == (3, 5) and first.dtype == dtype and first.device.type == "cpu"
    assert first.is_contiguous()
    assert first.data_ptr() != second.data_ptr()
    first.fill_(1)
    second.fill_(0)
    assert bool((first == 1).all())


def test_a_fresh_result_outlives_everything_that_made_it() -> None:
    # The numpy array behind the tensor must live as long as the tensor: a large result (huge pages) written,
    # the names that made it gone, then read back after other allocations.
    result = fresh((128, 100_000), torch.float32, "cpu")
    result.fill_(3.0)
    for _ in range(3):
        torch.empty(128, 100_000).fill_(-1.0)
    assert float(result.sum()) == pytest.approx(3.0 * result.numel())


def test_a_workspace_view_is_reused_and_grows_when_asked_for_more() -> None:
    workspace = Workspace()
    a = workspace.get("x", (4, 4), torch.float32, torch.device("cpu"))
    b = workspace.get("x", (2, 4), torch.float32, torch.device("cpu"))
    assert a.data_ptr() == b.data_ptr()
    c = workspace.get("x", (8, 8), torch.float32, torch.device("cpu"))
    assert c.shape == (8, 8) and workspace.nbytes() == 64 * 4
    workspace.clear()
    assert workspace.nbytes() == 0
