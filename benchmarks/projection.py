"""Projections per second: ``digital``, ``opu-sim`` in each readout mode, and lightonml's simulated OPU.

Run: ``python -m benchmarks.projection [--rounds 5] [--min-time 0.5] [--threads 1] [--torch-device cpu] [--profile]``.

Shapes: ``n = 128, d = 10`` for ``D = 3·10³`` and ``D = 10⁵``, and ``n = 256, d = 1024, D = 8192``. A *projection*
is one error vector; ``opu-sim`` uses the ``lighton-aurora`` profile (DMD layout, speckle, auto-exposure, shot and
read noise, 8-bit ADC), ternary encoding, and shows 4 frames per vector (holographic) or 2 (strong-reference,
intensity). ``opu-sim ideal`` is the ``ideal-opu`` profile (no noise, unlimited bits): the difference is the camera.

lightonml (when importable) computes a noiseless ``|X R|²`` on the CPU in numpy: ``transform`` of ``n`` binary frames
(one per error vector, the target this project set: ``opu-sim`` with its full camera model at least as fast), and of
the same ``4n`` frames ``opu-sim`` shows in holographic mode (frame for frame). It is never a dependency of optodfa;
install it by hand to include it.

All variants of a shape are timed in one process, interleaved round by round so machine noise hits them alike;
each figure is the median over rounds of the median call time within a round. ``ratio`` is time per call over the
digital device's (so larger is slower); ``vs lightonml`` is lightonml's time (``n`` frames) over the variant's
(at least 1 meets the target). Thread count defaults to 1 for torch and for numpy's BLAS alike, because on a shared
machine multi-threaded small kernels measure the neighbours' load more than the code.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import warnings
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.timing import interleaved_medians
from optodfa.registry import build_projector

SHAPES = ((128, 10, 3_000), (128, 10, 100_000), (256, 1024, 8192))
MODES = ("holographic", "strong-reference", "intensity")


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
            sync: Callable[[], None]) -> dict[str, float]:
    """Median over rounds of the median seconds per call; each round repeats a call for at least ``min_time``."""
    return interleaved_medians(calls, rounds=rounds, sync=sync, repeats=50, min_time=min_time)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of calls per variant per round")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (0: library defaults)")
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print where opu-sim's time goes at each shape")
    parser.add_argument("--shapes", default="all", help="'all' or indices into the shape list, e.g. '0,2'")
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
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    opu_class, status = lightonml_status()
    shapes = SHAPES if args.shapes == "all" else tuple(SHAPES[int(i)] for i in args.shapes.split(","))
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} torch thread(s), BLAS threads {blas}; "
          f"{status}")
    print(f"median of {args.rounds} rounds; opu-sim profile lighton-aurora (full camera model), ternary encoding")
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
            calls["lightonml |XR|², 4n frames"] = lightonml_call(opu_class, np.concatenate([plus, plus, minus, minus]),
                                                                 big_d)
        result = measure(calls, args.rounds, args.min_time, sync)
        base = result["digital"]
        reference = result.get("lightonml |XR|², n frames")
        print(f"\nn = {n}, d = {d}, D = {big_d}")
        print(f"  {'variant':<30}{'ms/call':>10}{'proj/s':>12}{'ratio':>10}" + (f"{'vs lightonml':>14}"
                                                                              if reference else ""))
        for name, seconds in result.items():
            line = f"  {name:<30}{seconds * 1e3:>10.3f}{n / seconds:>12.4g}{seconds / base:>10.3g}"
            if reference:
                line += f"{reference / seconds:>14.3g}"
            print(line)
        if reference:
            slowest = max(result[f"opu-sim {mode}"] for mode in MODES)
            print(f"  target (opu-sim full camera >= lightonml, n frames): "
                  f"{'met' if slowest <= reference else 'NOT met'} (worst mode {reference / slowest:.3g}x)")
        if args.profile:
            print("  where opu-sim holographic spends its time (own time per function):")
            print("\n".join(breakdown(calls["opu-sim holographic"])))


if __name__ == "__main__":
    main()
