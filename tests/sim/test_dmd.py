"""DMD layout: regions, size limits and the frames a device accepts."""

from __future__ import annotations

import pytest
import torch

from optodfa.sim.dmd import DMDLayout


def test_regions_are_disjoint_and_counted_in_mirrors():
    layout = DMDLayout(rows=10, cols=10, macropixel=4, signal_elements=20, reference_mirrors=15)
    assert layout.mirrors == 100 and layout.signal_mirrors == 80
    assert layout.reference_region == range(85, 100)
    assert layout.element_mirrors(19) == range(76, 80)
    assert max(layout.element_mirrors(19)) < layout.reference_region.start
    frames = torch.tensor([[1, 0] * 10, [0] * 20], dtype=torch.bool)
    lit = layout.lit_mirrors(frames, torch.tensor([True, True]))
    assert lit.tolist() == [10 * 4 + 15, 15]


def test_layout_that_does_not_fit_names_the_numbers():
    with pytest.raises(ValueError, match=r"the layout does not fit the DMD: 30 signal elements x 4 mirrors "
                                         r"\(dmd.macropixel\) \+ 5 reference mirrors \(dmd.reference_mirrors\) = 125 "
                                         r"mirrors > 10 x 10 = 100 mirrors of the DMD"):
        DMDLayout(rows=10, cols=10, macropixel=4, signal_elements=30, reference_mirrors=5)
    with pytest.raises(ValueError, match="dmd.macropixel must be an integer >= 1, got 0"):
        DMDLayout(rows=10, cols=10, macropixel=0, signal_elements=3, reference_mirrors=5)


@pytest.fixture
def layout() -> DMDLayout:
    return DMDLayout(rows=10, cols=10, macropixel=4, signal_elements=20, reference_mirrors=15)


@pytest.mark.parametrize(("frames", "error", "match"), [
    (torch.tensor([[0.0, 0.5] + [0.0] * 18]), ValueError, r"frames must be binary \(every value 0 or 1\) for an "
                                                          r"optical device; got 1 other value\(s\), e.g. 0.5"),
    (torch.full((2, 20), 2, dtype=torch.int64), ValueError, "got 40 other value"),
    (torch.zeros(2, 26), ValueError, r"frames of 26 elements need 26 x 4 = 104 mirrors but the DMD has 10 x 10 = 100"),
    (torch.zeros(2, 22), ValueError, r"frames of 22 elements cover mirrors 0..87 and touch the reference region "
                                     r"\(mirrors 85..99\)"),
    (torch.zeros(2, 19), ValueError, r"frames must have 20 elements \(the device's signal region\), got 19"),
    (torch.zeros(20), ValueError, r"frames must have shape \(n, 20\), got \(20,\)"),
    (torch.zeros(2, 20, dtype=torch.complex64), TypeError, "frames must be real"),
    ([[0] * 20], TypeError, r"frames must be a torch.Tensor of shape \(n, 20\), got list"),
])
def test_bad_frames(layout, frames, error, match):
    with pytest.raises(error, match=match):
        layout.check_frames(frames)


def test_good_frames_pass_unchanged(layout):
    for frames in (torch.ones(3, 20), torch.zeros(3, 20, dtype=torch.uint8), torch.ones(3, 20, dtype=torch.bool)):
        assert layout.check_frames(frames) is frames
