"""Projections per second: ``digital``, ``opu-sim`` in each readout mode, and lightonml's simulated OPU.

Run: ``python -m benchmarks.projection [--rounds 5] [--min-time 0.3] [--threads 1] [--torch-device cpu] [--profile]``.

Shapes: ``n = 128, d = 10`` for ``D = 3·10³`` and ``D = 10⁵``, and ``n = 256, d = 1024, D = 8192``. A *projection*
is one error vector; ``opu-sim`` uses the ``lighton-aurora`` profile (DMD layout, speckle, auto-exposure, shot and
read noise, 8-bit ADC), ternary encoding, and shows 4 frames per vector (holographic) or 2 (strong-reference,
intensity). ``opu-sim ideal`` is the ``ideal-opu`` profile (no noise, unlimited bits): the difference is the camera.

lightonml (when importable) computes a noiseless ``|X R|²`` on the CPU in numpy: ``transform`` of ``n`` binary
frames (one per error vector, the target this project set: ``opu-sim`` with its full camera model at least as fast),
and of the same ``4n`` frames ``opu-sim`` shows in holographic mode (frame for frame). It is never a dependency of
optodfa; install it by hand to include it.

All variants of a shape are timed in one process, interleaved round by round so machine noise hits them alike; each
time is the median over rounds of the median call time within a round, each ratio the median over rounds of the
ratio within a round. ``ratio`` is time per call over the digital device's (so larger is slower); ``vs lightonml``
is lightonml's time (``n`` frames) over the variant's (at least 1 meets the target). Thread count defaults to 1 for
torch and for numpy's BLAS alike, because on a shared machine multi-threaded small kernels measure the neighbours'
load more than the code.

Targets (issue 11), printed met / NOT met per shape: frame for frame (lightonml transforming the frames a readout
shows: ``4n`` for holographic, ``2n`` for the 2-frame readouts) ``opu-sim`` with its full camera model at least 2x
as fast; per error vector (lightonml's ``n`` frames) at least 1x for the 2-frame readouts and 0.5x for holographic.

Roofline: the benchmark measures this machine's float32 GEMM rate and copy bandwidth, and prints for ``opu-sim
holographic`` the time its speckle product would take at that GEMM rate (``4·(d + 1)`` FLOP per reading: real and
imaginary part of one field; half the readings for wide frames, whose signal fields are shared) and the time its
unavoidable memory traffic would take at that bandwidth (``BYTES_PER_READING``: the 1-byte count written and read,
and for wide frames the 2-byte noise index written and read), each as a fraction of the measured time. Both roofs
are far below the time at narrow frames, so it also prints the camera floor (:mod:`benchmarks.camera_floor`): the
time of the simulator's per-reading pass alone. Memory: a child process per shape builds the projector and projects
once; its peak resident memory above what it held before is set against twice the matrices the simulator holds plus
one batch of camera counts.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.camera_floor import floor_seconds
from benchmarks.machine import cpu_name, gemm_rate, memory_bandwidth, peak_rss_bytes, rss_bytes
from benchmarks.timing import interleaved_rounds, medians, paired_ratio
from optodfa.registry import build_projector
from optodfa.sim.speckle import SHARED_SIGNAL_MIN_WIDTH

SHAPES = ((128, 10, 3_000), (128, 10, 100_000), (256, 1024, 8192))
MODES = ("holographic", "strong-reference", "intensity")
FRAMES = {"holographic": 4, "strong-reference": 2, "intensity": 2}
# Per error vector against lightonml's n frames: 1x for the 2-frame readouts, 0.5x for the 4-frame one.
PER_VECTOR_TARGET = {"holographic": 0.5, "strong-reference": 1.0, "intensity": 1.0}
FRAME_TARGET = 2.0
# Traffic no camera model avoids: the 8-bit count written and read; frames wider than the compiled pass's limit
# also write and read their 16-bit noise index (drawn into a buffer before the camera pass).
BYTES_PER_READING = {"narrow": 1 + 1, "wide": 2 + 2 + 1 + 1}


def lightonml_status() -> tuple[object | None, str]:
    """lightonml's ``OPU`` class, or ``None`` and why it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lightonml
            from lightonml import OPU
    except Exception as exc:  # any import failure means "not available", with its reason printed
        return None, (f"lightonml not available ({type(exc).__name__}: {exc}); lightonml 1.4.3 pins numexpr==2.7.*, "
                      f"which does not build on Python >= 3.11, and imports pkg_resources (setuptools < 81)")
    return OPU, f"lightonml {lightonml.__version__}"


def lightonml_call(opu_class: object, frames: np.ndarray, components: int) -> Callable[[], None]:
    """A call of lightonml's simulated ``transform`` on ``frames`` (``(m, d)`` uint8)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opu = opu_class(n_components=components, max_n_features=frames.shape[1], simulated=True,  # type: ignore[operator]
                        disable_pbar=True)
        opu.fit1d(n_features=frames.shape[1])

    def call() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opu.transform(frames)

    return call


def projector_call(name: str, d: int, big_d: int, e: torch.Tensor, device: torch.device,
                   **spec: object) -> Callable[[], None]:
    projector = build_projector(name, d, big_d, device=device, **spec)

    def call() -> None:
        projector.project(e)

    return call


def measure(calls: dict[str, Callable[[], None]], rounds: int, min_time: float,
            sync: Callable[[], None]) -> dict[str, list[float]]:
    """Each round's median seconds per call; each round repeats a call for at least ``min_time``."""
    return interleaved_rounds(calls, rounds=rounds, sync=sync, repeats=50, min_time=min_time)


def breakdown(call: Callable[[], None], calls: int = 3, top: int = 8) -> list[str]:
    """The functions that take the most own time over ``calls`` calls (cProfile), as text lines."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        call()
    profile.disable()
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    return [f"    {100 * own / total:5.1f}%  {function} ({file.rsplit('/', 1)[-1]}:{line})"
            for (file, line, function), (_, _, own, _, _) in rows]


def memory_child(n: int, d: int, big_d: int, device: torch.device) -> dict[str, float]:
    """Peak memory of one ``opu-sim`` holographic projection (run in a fresh process: peaks only grow)."""
    e = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)
    build_projector("opu-sim", d, 64, device=device).project(e[:4])  # compiled kernels loaded before the baseline
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes()
    projector = build_projector("opu-sim", d, big_d, device=device)
    projector.project(e)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = peak_rss_bytes() - before
    sim = getattr(projector.device, "inner", projector.device)  # the simulator behind the device guard
    held = sum(t.numel() * t.element_size() for t in vars(sim).values() if isinstance(t, torch.Tensor))
    count_bytes = torch.empty((), dtype=torch.uint8 if sim.camera.bits and sim.camera.bits <= 8 else
                              torch.int16).element_size()
    readings = projector.frames_per_sample() * n * big_d * count_bytes
    return {"peak": float(peak), "held": float(held), "readings": float(readings)}


def memory(n: int, d: int, big_d: int, device: torch.device) -> dict[str, float] | None:
    """:func:`memory_child` in a fresh interpreter (``None`` where it fails, with the reason printed)."""
    command = [sys.executable, "-m", "benchmarks.projection", "--memory-child", f"{n},{d},{big_d}",
               "--torch-device", str(device), "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  memory: child failed ({done.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of calls per variant per round")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (0: library defaults)")
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print where opu-sim's time goes at each shape")
    parser.add_argument("--shapes", default="all", help="'all' or indices into the shape list, e.g. '0,2'")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    blas = "library default"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits  # installed with scikit-learn
        except ImportError:
            blas = "not limited (threadpoolctl missing)"
        else:
            threadpool_limits(args.threads)  # numpy's BLAS (lightonml) gets the same limit as torch
            blas = f"{args.threads}"
    device = torch.device(args.torch_device)
    if args.memory_child:
        n, d, big_d = (int(v) for v in args.memory_child.split(","))
        print(json.dumps(memory_child(n, d, big_d, device)))
        return
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    opu_class, status = lightonml_status()
    shapes = SHAPES if args.shapes == "all" else tuple(SHAPES[int(i)] for i in args.shapes.split(","))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"torch {torch.__version__}, {device} ({where}), {torch.get_num_threads()} torch thread(s), "
          f"BLAS threads {blas}; {status}")
    flops, bandwidth = gemm_rate(device, sync=sync), memory_bandwidth(device, sync=sync)
    print(f"this machine: float32 GEMM {flops / 1e9:.1f} GFLOP/s (1024^3), copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"median of {args.rounds} rounds; opu-sim profile lighton-aurora (full camera model), ternary encoding")
    verdicts: list[bool] = []
    for n, d, big_d in shapes:
        e = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)
        calls = {"digital": projector_call("digital", d, big_d, e, device)}
        for mode in MODES:
            calls[f"opu-sim {mode}"] = projector_call("opu-sim", d, big_d, e, device,
                                                      overrides={"readout.mode": mode})
        calls["opu-sim ideal holographic"] = projector_call("opu-sim", d, big_d, e, device, profile="ideal-opu")
        if opu_class is not None:
            codes = np.sign(np.random.default_rng(0).standard_normal((n, d))).astype(np.int8)
            plus, minus = (codes > 0).astype(np.uint8), (codes < 0).astype(np.uint8)
            calls["lightonml |XR|², n frames"] = lightonml_call(opu_class, plus, big_d)
            calls["lightonml |XR|², 2n frames"] = lightonml_call(opu_class, np.concatenate([plus, minus]), big_d)
            calls["lightonml |XR|², 4n frames"] = lightonml_call(opu_class, np.concatenate([plus, plus, minus, minus]),
                                                                 big_d)
        per_round = measure(calls, args.rounds, args.min_time, sync)
        result = medians(per_round)
        reference = result.get("lightonml |XR|², n frames")
        print(f"\nn = {n}, d = {d}, D = {big_d}")
        print(f"  {'variant':<30}{'ms/call':>10}{'proj/s':>12}{'ratio':>10}" + (f"{'vs lightonml':>14}"
                                                                              if reference else ""))
        for name, seconds in result.items():
            line = (f"  {name:<30}{seconds * 1e3:>10.3f}{n / seconds:>12.4g}"
                    f"{paired_ratio(per_round, name, 'digital'):>10.3g}")
            if reference:
                line += f"{paired_ratio(per_round, 'lightonml |XR|², n frames', name):>14.3g}"
            print(line)
        if reference:
            frame_ratios = {mode: paired_ratio(per_round, f"lightonml |XR|², {FRAMES[mode]}n frames",
                                               f"opu-sim {mode}") for mode in MODES}
            vector_ratios = {mode: paired_ratio(per_round, "lightonml |XR|², n frames", f"opu-sim {mode}")
                             for mode in MODES}
            frame_ok = all(r >= FRAME_TARGET for r in frame_ratios.values())
            vector_ok = all(vector_ratios[m] >= PER_VECTOR_TARGET[m] for m in MODES)
            verdicts += [frame_ok, vector_ok]
            print(f"  target frame for frame >= {FRAME_TARGET:g}x lightonml: {'met' if frame_ok else 'NOT met'} ("
                  + ", ".join(f"{m} {r:.3g}x" for m, r in frame_ratios.items()) + ")")
            print("  target per error vector (>= 1x 2-frame, >= 0.5x holographic): "
                  f"{'met' if vector_ok else 'NOT met'} (" + ", ".join(f"{m} {r:.3g}x"
                                                                     for m, r in vector_ratios.items()) + ")")
        seconds = result["opu-sim holographic"]
        readings = 4 * n * big_d
        # Wide frames share one signal field between t± and t± + r (optodfa.sim.speckle): half the products.
        products = readings // 2 if d + 1 > SHARED_SIGNAL_MIN_WIDTH else readings
        gemm_s = products * 4 * (d + 1) / flops
        width = "narrow" if d + 1 <= SHARED_SIGNAL_MIN_WIDTH else "wide"
        memory_s = readings * BYTES_PER_READING[width] / bandwidth
        floor_s = floor_seconds(readings)
        print(f"  roofline, opu-sim holographic: {readings / seconds / 1e6:.0f} M readings/s; speckle product at the "
              f"GEMM rate {gemm_s * 1e3:.2f} ms ({gemm_s / seconds:.0%} of the time), {BYTES_PER_READING[width]} "
              f"B/reading at the copy bandwidth {memory_s * 1e3:.2f} ms ({memory_s / seconds:.0%}); fraction of the "
              f"limit max(GEMM, memory) / time = {max(gemm_s, memory_s) / seconds:.0%}")
        print(f"  camera floor (the per-reading pass alone, benchmarks.camera_floor): {floor_s / readings * 1e9:.2f} "
              f"ns a reading, {floor_s * 1e3:.2f} ms ({floor_s / seconds:.0%} of the time); with the GEMM: "
              f"{(floor_s + gemm_s) / seconds:.0%}")
        if not args.no_memory:
            figures = memory(n, d, big_d, device)
            if figures is not None:
                budget = 2 * (figures["held"] + figures["readings"])
                ok = figures["peak"] <= budget
                print(f"  memory, opu-sim holographic: peak {figures['peak'] / 2**20:.1f} MiB above the start; holds "
                      f"{figures['held'] / 2**20:.1f} MiB of matrices, one batch of counts is "
                      f"{figures['readings'] / 2**20:.1f} MiB; target <= 2x their sum = {budget / 2**20:.1f} MiB: "
                      f"{'met' if ok else 'NOT met'}")
        if args.profile:
            print("  where opu-sim holographic spends its time (own time per function):")
            print("\n".join(breakdown(calls["opu-sim holographic"])))
    if verdicts:
        print(f"\nspeed targets (all shapes): {'met' if all(verdicts) else 'NOT met'}")


if __name__ == "__main__":
    main()
