"""``opu-sim`` frames per second at d = 10³ → D = 10⁶ with the full camera model, on a GPU (issue 11: ≥ 2000).

Run: ``python -m benchmarks.gpu [--torch-device cuda] [--rounds 5]``; ``--dry`` runs the same code on the CPU at a
tiny size (d = 16, D = 2000), which ``make test`` does through ``benchmarks/gpu.sh --dry`` so that the script
cannot rot. One projection of ``n`` error vectors shows ``4n`` frames (holographic readout, ``lighton-aurora``
profile: auto-exposure, shot and read noise, 8-bit ADC, saturation count); frames per second are ``4n`` over the
median time of a projection (interleaved timing as in :mod:`benchmarks.timing`). A real OPU shows about 2000 frames
per second.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.machine import cpu_name
from benchmarks.timing import interleaved_medians
from optodfa.registry import build_projector

TARGET_FRAMES_PER_S = 2000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-device", default="cuda")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vectors", type=int, default=128, help="error vectors per projection (4 frames each)")
    parser.add_argument("--dry", action="store_true", help="CPU, d = 16, D = 2000: checks the script, not the GPU")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.dry else args.torch_device)
    d, big_d = (16, 2000) if args.dry else (1000, 1_000_000)
    n = 8 if args.dry else args.vectors
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA device here (torch.cuda.is_available() is False); use --dry")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    start = time.perf_counter()
    projector = build_projector("opu-sim", d, big_d, device=device)
    e = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)
    sync()
    built = time.perf_counter() - start
    seconds = interleaved_medians({"opu-sim": lambda: projector.project(e)}, rounds=args.rounds, sync=sync,
                                  repeats=5, warmup=2)["opu-sim"]
    frames = projector.frames_per_sample() * n
    rate = frames / seconds
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if cuda else ""
    print(f"opu-sim lighton-aurora (holographic, full camera model) at d = {d}, D = {big_d}, {frames} frames per "
          f"call on {device} ({name}): {seconds * 1e3:.2f} ms per call, {rate:.0f} frames/s (built in {built:.1f} s"
          f"{peak})")
    verdict = "met" if rate >= TARGET_FRAMES_PER_S else "NOT met"
    print(f"target >= {TARGET_FRAMES_PER_S:.0f} frames/s: {verdict}" + (" (dry run: sizes too small to count)"
                                                                       if args.dry else ""))


if __name__ == "__main__":
    main()
