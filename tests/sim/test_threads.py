"""The camera's blocks of pixels (and the readout's frame sum) on several threads give the one-thread results bit for
bit (issue 11).

With narrow frames the speckle fields and the camera pass of each block of pixel columns are compiled code that
releases the GIL, and ``Camera._read_compiled`` spreads the blocks over ``torch.get_num_threads()`` threads. The
noise is drawn before the blocks, so counts and saturation counts must not depend on the thread count.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from optodfa.registry import build_projector
from optodfa.sim import kernels, opu, threads
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


@needs_kernels
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("offset", [0.0, 12.0])
@pytest.mark.parametrize("count", [2, 3])
def test_counts_on_several_threads_equal_one_thread(shared: bool, offset: float, count: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # 2000 pixels: 8 tiles of 256 columns, the last one shorter, in groups shared out over the threads.
    parts: list[tuple[int, int]] = []
    run_blocks = threads.run_blocks

    def spy(count: int, work, parts_: int):  # type: ignore[no-untyped-def]
        parts.append((count, parts_))
        return run_blocks(count, work, parts_)

    monkeypatch.setattr(threads, "run_blocks", spy)
    one = _with_threads(1, lambda: _acquire(shared, offset))
    assert parts == []  # one thread: the blocks run in order on the calling thread, no pool
    several = _with_threads(count, lambda: _acquire(shared, offset))
    assert [p for _, p in parts] == [count, count]  # shared out over `count` threads in both calls
    assert all(groups > 1 for groups, _ in parts)
    assert one[1] > 0
    for a, b in zip(one, several, strict=True):
        assert torch.equal(a, b)


@needs_kernels
def test_projection_on_two_threads_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    run_blocks = threads.run_blocks

    def spy(count: int, work, parts: int):  # type: ignore[no-untyped-def]
        calls.append(count)
        return run_blocks(count, work, parts)

    monkeypatch.setattr(threads, "run_blocks", spy)

    def project() -> list[torch.Tensor]:
        projector = build_projector("opu-sim", 10, 3072, profile="lighton-aurora", feedback_seed=11, noise_seed=13)
        g = torch.Generator().manual_seed(17)
        out = [projector.project(torch.randn(128, 10, generator=g)) for _ in range(2)]
        return [*out, torch.tensor([projector.counters().saturated_pixels])]

    one = _with_threads(1, project)
    assert calls == []
    two = _with_threads(2, project)
    # Per call: the camera's 12 tiles of 256 pixels of 512 frames in 4 groups, and the readout's sum in 7 groups of
    # planes.
    assert calls == [4, 7, 4, 7]
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_run_blocks_keeps_order_and_waits_for_started_blocks_before_raising() -> None:
    for parts in (1, 2, 3):
        assert threads.run_blocks(5, lambda b, part: b * b, parts) == [0, 1, 4, 9, 16]
    finished: list[int] = []
    started = threading.Event()

    def work(block: int, part: int) -> None:
        if block == 0:
            started.wait(5)  # block 1 has started on the other thread
            raise RuntimeError("block 0 failed")
        started.set()
        time.sleep(0.2)
        finished.append(block)

    with pytest.raises(RuntimeError, match="block 0 failed"):
        threads.run_blocks(6, work, 2)
    assert finished == [1]  # the started block had finished when the error came through; no block started after


def test_each_thread_gets_its_own_part() -> None:
    seen: dict[int, set[int]] = {}
    lock = threading.Lock()

    def work(block: int, part: int) -> int:
        with lock:
            seen.setdefault(part, set()).add(threading.get_ident())
        time.sleep(0.002)
        return part

    threads.run_blocks(40, work, 3)
    assert set(seen) <= {0, 1, 2} and 0 in seen
    assert all(len(idents) == 1 for idents in seen.values())  # a part is never run by two threads
    assert len({ident for idents in seen.values() for ident in idents}) == len(seen)
