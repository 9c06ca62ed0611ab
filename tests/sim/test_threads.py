"""The camera's groups of pixel columns (and the readout's frame sum) on several threads give the one-thread results
bit for bit (issue 11).

With narrow frames the speckle fields and the camera pass are one compiled call whose groups of pixel columns run on
numba's threads (``optodfa.sim.threads``), as many as ``torch.get_num_threads()``. The noise is drawn before, so
counts and saturation counts must not depend on the thread count.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from optodfa.registry import build_projector
from optodfa.sim import kernels
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.opu import SimulatedOPU

needs_kernels = pytest.mark.skipif(not kernels.AVAILABLE,
                                   reason="numba is not installed (or OPTODFA_NO_KERNELS=1)")


def _with_threads(count: int, run):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return run()
    finally:
        torch.set_num_threads(before)


def _acquire(shared: bool, offset: float) -> list[torch.Tensor]:
    # Exposure fixed so that the reference frames saturate some pixels: the saturation count is compared too.
    camera = Camera(bits=8, photon_rate=20000.0, exposure_s=400e-6, auto_exposure="off", read_noise_e=5.0,
                    dark_offset=offset, full_well_e=10000.0, gain=None, poisson_exact_below=0.0)
    device = SimulatedOPU(DMDLayout(64, 64, 4, 12, 512), camera, output_pixels=2000, seed=2, noise_seed=4,
                          block_pixels=1)
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(2):  # the second call continues the noise stream
        if shared:
            distinct = torch.rand(5, 12, generator=g) < 0.4
            frames = distinct[torch.randint(0, 5, (40,), generator=g)]  # 5 distinct frames among 40
        else:
            frames = torch.rand(40, 12, generator=g) < 0.4
        acquisition = device.acquire(frames, reference=torch.arange(40) % 3 == 0)
        out += [acquisition.counts, acquisition.saturated]
    return out


def _numba_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _spy_groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    binary_counts = kernels.binary_counts

    def spy(*args, scratch, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(scratch.shape[0])  # one scratch space per thread
        return binary_counts(*args, scratch=scratch, **kwargs)

    monkeypatch.setattr(kernels, "binary_counts", spy)
    return calls


@needs_kernels
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("offset", [0.0, 12.0])
@pytest.mark.parametrize("count", [2, 3])
def test_counts_on_several_threads_equal_one_thread(shared: bool, offset: float, count: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # 2000 pixels: 8 tiles of 256 columns, the last one shorter, in groups of whole tiles.
    groups = _spy_groups(monkeypatch)
    one = _with_threads(1, lambda: _acquire(shared, offset))
    assert groups == [1, 1]  # one thread: one call on the calling thread
    several = _with_threads(count, lambda: _acquire(shared, offset))
    assert groups[2:] == [min(count, _numba_threads())] * 2
    assert one[1] > 0
    for a, b in zip(one, several, strict=True):
        assert torch.equal(a, b)


@needs_kernels
def test_projection_on_two_threads_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    if _numba_threads() < 2:
        pytest.skip("numba may use one thread on this machine (NUMBA_NUM_THREADS = 1): nothing runs in parallel")
    groups = _spy_groups(monkeypatch)
    sums: list[int] = []
    signed_sum = kernels.signed_sum

    def spy(*args, groups: int = 1):  # type: ignore[no-untyped-def]
        sums.append(groups)
        return signed_sum(*args, groups=groups)

    monkeypatch.setattr(kernels, "signed_sum", spy)

    def project() -> list[torch.Tensor]:
        projector = build_projector("opu-sim", 10, 3072, profile="lighton-aurora", feedback_seed=11, noise_seed=13)
        g = torch.Generator().manual_seed(17)
        out = [projector.project(torch.randn(128, 10, generator=g)) for _ in range(2)]
        return [*out, torch.tensor([projector.counters().saturated_pixels])]

    one = _with_threads(1, project)
    two = _with_threads(2, project)
    # Per call: the camera's 512 frames x 3072 pixels, then the readout's sum of 128 planes of 4 frames.
    assert groups == [1, 1, 2, 2] and sums == [1, 1, 2, 2]
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.getcwd(), env={**os.environ, "NUMBA_NUM_THREADS": "2", **env})


@needs_kernels
def test_starting_the_parallel_loops_keeps_torchs_thread_count() -> None:
    # numba's first parallel loop sets the OpenMP thread count (torch's) to numba's own: 3 -> 2 unless put back.
    result = _run("import torch\n"
                  "from optodfa.sim import threads\n"
                  "torch.set_num_threads(3)\n"
                  "assert threads.parts(8) == 2, threads.parts(8)\n"
                  "print(torch.get_num_threads())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3"]


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists on POSIX systems only")
def test_a_forked_child_projects_on_one_thread() -> None:
    # A child forked after a parallel loop ran must not start one (numba would stop it). torch's own OpenMP threads do
    # not survive a fork either (an operation on two threads hangs), so such a child sets torch to one thread, as
    # torch's DataLoader workers do; it then gets the parent's projection of the same errors, bit for bit.
    result = _run("import os, torch\n"
                  "from optodfa.registry import build_projector\n"
                  "from optodfa.sim import threads\n"
                  "torch.set_num_threads(2)\n"
                  "make = lambda: build_projector('opu-sim', 10, 3072, profile='lighton-aurora', feedback_seed=1,\n"
                  "                               noise_seed=2)\n"
                  "e = torch.randn(64, 10, generator=torch.Generator().manual_seed(3))\n"
                  "parent = make().project(e)\n"
                  "assert threads.parts(2) == 2\n"
                  "pid = os.fork()\n"
                  "if pid == 0:\n"
                  "    ok = threads.parts(2) == 1\n"  # torch still says two threads here
                  "    torch.set_num_threads(1)\n"
                  "    ok = ok and torch.equal(make().project(e), parent)\n"
                  "    os._exit(0 if ok else 3)\n"
                  "_, status = os.waitpid(pid, 0)\n"
                  "print(os.waitstatus_to_exitcode(status))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"], result.stderr


@needs_kernels
def test_a_threading_layer_that_is_not_thread_safe_means_one_thread() -> None:
    # numba's workqueue layer must not be entered from two threads at once; with it the simulator stays on one.
    result = _run("import torch\n"
                  "from optodfa.sim import threads\n"
                  "torch.set_num_threads(2)\n"
                  "print(threads.parts(8))\n"
                  "import numba\n"
                  "print(numba.threading_layer())\n", NUMBA_THREADING_LAYER="workqueue")
    assert result.returncode == 0, result.stderr
    parts, layer = result.stdout.split()
    assert layer == "workqueue" and parts == "1"


@needs_kernels
def test_a_projection_leaves_numbas_own_thread_setting_as_it_was() -> None:
    import numba

    if _numba_threads() < 2:
        pytest.skip("numba may use one thread on this machine (NUMBA_NUM_THREADS = 1): nothing to change")
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # the caller's own numba code runs on one thread; the simulator may use two
    try:
        projector = build_projector("opu-sim", 10, 3072, profile="lighton-aurora", feedback_seed=1, noise_seed=2)
        _with_threads(2, lambda: projector.project(torch.randn(32, 10, generator=torch.Generator().manual_seed(4))))
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
