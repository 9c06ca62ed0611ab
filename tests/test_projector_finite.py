"""``Projector.project`` refuses a non-finite projection, and only that (its one-pass check, issue 11).

The check sums the projection first (a NaN or inf anywhere makes the sum non-finite) and looks entry by entry only
when the sum is not finite, so a projection of finite entries whose sum overflows must still pass.
"""

from __future__ import annotations

import math

import pytest
import torch

from optodfa.device import NonFiniteError, Projector


class _Fixed(Projector):
    """Returns a given ``(n, D)`` tensor whatever the errors (to reach every branch of the check)."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__(2, out.shape[1])
        self.out = out

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        return self.out.clone()


def test_finite_entries_whose_sum_overflows_pass() -> None:
    out = torch.full((4, 8), 3e38)
    assert not math.isfinite(float(out.sum()))  # the fast check cannot decide: the exact one must
    assert torch.equal(_Fixed(out).project(torch.zeros(4, 2)), out)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_non_finite_entry_raises(bad: float, dtype: torch.dtype) -> None:
    out = torch.randn(4, 8, dtype=dtype)
    out[2, 5] = bad
    with pytest.raises(NonFiniteError, match="1 non-finite value"):
        _Fixed(out).project(torch.zeros(4, 2, dtype=dtype))


def test_opposite_infinities_raise() -> None:
    out = torch.zeros(2, 4)
    out[0, 0], out[1, 1] = math.inf, -math.inf  # their sum is NaN: still non-finite
    with pytest.raises(NonFiniteError, match="2 non-finite value"):
        _Fixed(out).project(torch.zeros(2, 2))
