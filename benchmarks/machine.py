"""What this machine can do at most: its CPU's name, its GEMM rate and its memory bandwidth (for roofline figures)."""

from __future__ import annotations

import pathlib
import platform
import statistics
import time

import torch

__all__ = ["cpu_name", "gemm_rate", "memory_bandwidth", "peak_rss_bytes", "rss_bytes"]


def cpu_name() -> str:
    """The CPU model as ``lscpu`` names it (``/proc/cpuinfo``'s ``model name``), or the platform's best guess."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median(run, repeats: int, sync) -> float:
    run()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_rate(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 7,
              sync=lambda: None) -> float:
    """Median FLOP/s of a square ``size``-cubed matrix product with torch's threads (2·size³ FLOP per product)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    return 2 * size**3 / _median(lambda: torch.matmul(a, b, out=out), repeats, sync)


def memory_bandwidth(device: torch.device, megabytes: int = 256, repeats: int = 7, sync=lambda: None) -> float:
    """Median bytes/s of a large copy (read plus write), beyond any cache."""
    n = megabytes * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty(n, device=device)
    return 2 * 4 * n / _median(lambda: dst.copy_(src), repeats, sync)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``VmRSS``; 0 elsewhere)."""
    return _status("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux ``VmHWM``; 0 elsewhere)."""
    return _status("VmHWM")


def _status(key: str) -> int:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
