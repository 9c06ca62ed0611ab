"""The simulator gives, for the same seeds, the outputs it gave before the speed work (issue 11).

``data/reference_outputs.npz`` was recorded by ``tests/sim/reference_cases.py`` from the code before any speed-up:
camera counts, intensity per count and saturated readings of ``SimulatedOPU.acquire`` for seven cameras that reach
every branch of the camera model, and projections of ``opu-sim`` for three profiles and three readouts. Each case
runs with the compiled camera pass (where it applies) and with the tensor code, in the default blocks of pixels and
in narrow ones (several blocks per chunk, the last one shorter): all must give the recorded counts exactly.

Floating-point outputs (unlimited-bits readings, intensities, projections) may differ in the last few units of
their precision between CPUs: torch's vectorised kernels (AVX2 or AVX-512) round sums and fused multiply-adds in
a different order. The file was recorded on an AMD EPYC; on an Intel Xeon (AVX-512) such outputs differ by at most
7·10⁻⁷ relative (6 float32 units in the last place). They are compared within 16 units in the last place of the
largest value, except that one reading in a thousand may differ more: where a camera draws exact Poisson counts
(``low-light-opu``), a mean that rounds differently can move one draw across a boundary by one count (seen once in
4800 projections on the Xeon). Integer counts and saturation counts must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from optodfa.sim import kernels, opu
from tests.sim import reference_cases
from tests.sim.reference_cases import PATH, cases, run_one_thread

REFERENCE = np.load(PATH)
CASES = dict(cases())


@pytest.mark.parametrize("variant", ["compiled", "compiled, narrow blocks", "tensor code, narrow blocks"])
@pytest.mark.parametrize("name", list(CASES))
def test_outputs_equal_the_recorded_ones(name: str, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.startswith("tensor code"):
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    if variant.endswith("narrow blocks"):
        # Blocks of 64 pixel columns: several blocks per chunk, the last one shorter.
        monkeypatch.setattr(opu, "MIN_BLOCK_WIDTH", 64)
        monkeypatch.setattr(reference_cases, "DEVICE_ATTRIBUTES", {"block_pixels": 1})
    outputs = run_one_thread(CASES[name])
    recorded = [REFERENCE[f"{name}/{i}"] for i in range(len(outputs))]
    for i, (new, old) in enumerate(zip(outputs, recorded, strict=True)):
        new = new.detach().cpu().numpy()
        assert new.dtype == old.dtype and new.shape == old.shape, (name, i)
        if np.issubdtype(old.dtype, np.floating):
            ulp = np.finfo(old.dtype).eps * float(np.abs(old).max(initial=0.0))
            outside = np.abs(new.astype(np.float64) - old) > 16 * ulp
            assert outside.sum() <= old.size // 1000, (
                f"{name} output {i}: {outside.sum()} of {old.size} values differ by more than 16 ulp, "
                f"largest {np.abs(new.astype(np.float64) - old).max():.3g}")
        else:
            np.testing.assert_array_equal(new, old, err_msg=f"{name} output {i}")
