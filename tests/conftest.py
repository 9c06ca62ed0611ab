"""Shared fixtures: small networks and batches with fixed seeds."""

from __future__ import annotations

import pytest
import torch

# `make test` runs two pytest workers on two cores; more threads per worker only oversubscribe the machine.
torch.set_num_threads(1)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(16, 6, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    return x, y
