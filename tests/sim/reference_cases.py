"""Fixed-seed cases whose outputs were recorded from the simulator before the speed work of issue 11.

``python -m tests.sim.reference_cases`` wrote ``data/reference_outputs.npz`` once, from the code before that work
(commit dfe6ab0, one torch thread); ``test_reference_outputs.py`` checks the current code against it. Never
re-record it to make a test pass: the file is the camera model as it was.

The cases draw their noise from the ``"sfc64"`` stream, the only one there was then (:mod:`optodfa.sim.noise`):
the camera's arithmetic must still give those counts from those draws. The counter stream, the default since, is
checked against the tensor code (``test_kernels.py``) and by the statistical tests.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from optodfa.registry import build_projector
from optodfa.sim.camera import Camera
from optodfa.sim.dmd import DMDLayout
from optodfa.sim.opu import SimulatedOPU

PATH = pathlib.Path(__file__).with_name("data") / "reference_outputs.npz"

# Camera settings that reach every branch of the camera: Gaussian only, exact Poisson below a threshold (with and
# without read noise), no shot noise, unlimited bits, more than 8 bits, dark offset, full-well saturation, each
# auto-exposure mode.
CAMERAS: dict[str, dict[str, Any]] = {
    "aurora": dict(bits=8, photon_rate=1500.0, exposure_s=400e-6, read_noise_e=5.0, full_well_e=10000.0, gain=None,
                   poisson_exact_below=0.0),
    "lowlight": dict(bits=12, photon_rate=7.5, exposure_s=400e-6, read_noise_e=1.5, dark_offset=100.0,
                     full_well_e=4000.0, gain=1.0, poisson_exact_below=30.0),
    "poisson-no-read": dict(bits=10, photon_rate=20.0, exposure_s=1.0, read_noise_e=0.0, full_well_e=500.0,
                            gain=1.0, poisson_exact_below=30.0, auto_exposure="off"),
    "read-only": dict(bits=8, photon_rate=30.0, exposure_s=1.0, shot_noise=False, read_noise_e=3.0,
                      dark_offset=7.0, gain=0.5, full_well_e=math.inf, auto_exposure="off"),
    "unlimited-bits": dict(bits=None, photon_rate=40.0, exposure_s=1.0, read_noise_e=2.0, full_well_e=3000.0,
                           gain=1.0, poisson_exact_below=10.0, auto_exposure="batch"),
    "saturating": dict(bits=8, photon_rate=3000.0, exposure_s=1.0, read_noise_e=4.0, full_well_e=20000.0,
                       gain=None, dark_offset=3.0, auto_exposure="off"),
    "sixteen-bit": dict(bits=16, photon_rate=200.0, exposure_s=1.0, read_noise_e=2.0, full_well_e=60000.0,
                        gain=1.0, poisson_exact_below=0.0, auto_exposure="batch"),
}

# Attributes set on every simulated device a case builds (the test sets block_pixels to force narrow blocks).
DEVICE_ATTRIBUTES: dict[str, Any] = {}

# float64 runs for the cameras whose arithmetic differs most between dtypes.
FLOAT64_TOO = ("aurora", "lowlight", "unlimited-bits")


def _device(camera: dict[str, Any], elements: int, outputs: int, dtype: torch.dtype) -> SimulatedOPU:
    layout = DMDLayout(64, 64, 4, elements, 256)
    device = SimulatedOPU(layout, Camera(**camera), output_pixels=outputs, seed=3, noise_seed=5,
                          frame_time_s=max(1.0, camera["exposure_s"]), dtype=dtype, chunk_pixels=1 << 11,
                          noise_stream="sfc64")
    for name, value in DEVICE_ATTRIBUTES.items():
        setattr(device, name, value)
    return device


def _frames(n: int, elements: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(n, elements, generator=g) < 0.3
    frames[::5] = frames[1::5][: frames[::5].shape[0]]  # repeated frames: the shared-row path
    reference = torch.rand(n, generator=g) < 0.5
    return frames, reference


def cases() -> Iterator[tuple[str, Callable[[], list[torch.Tensor]]]]:
    """``(name, run)``: ``run()`` returns the tensors to compare (counts, intensity per count, saturated, ...)."""
    for name, camera in CAMERAS.items():
        for elements in (6, 80):  # narrow frames, and wide ones (shared signal fields)
            for dtype in (torch.float32, torch.float64) if name in FLOAT64_TOO else (torch.float32,):
                def run(camera=camera, elements=elements, dtype=dtype) -> list[torch.Tensor]:
                    device = _device(camera, elements, 300, dtype)
                    out = []
                    for call in range(2):  # the second call continues the noise stream
                        frames, reference = _frames(24, elements, call)
                        acq = device.acquire(frames, reference=reference)
                        out += [acq.counts, acq.intensity_per_count, acq.saturated.reshape(1)]
                    return out
                yield f"acquire/{name}/d{elements}/{str(dtype).rsplit('.', 1)[-1]}", run
    for profile in ("lighton-aurora", "low-light-opu", "ideal-opu"):
        for mode in ("holographic", "strong-reference", "intensity"):
            for d, big_d in ((10, 400), (100, 200)):
                def project(profile=profile, mode=mode, d=d, big_d=big_d) -> list[torch.Tensor]:
                    overrides = {"readout.mode": mode, "noise.stream": "sfc64"}
                    if mode == "intensity":
                        overrides["readout.evening"] = False
                    projector = build_projector("opu-sim", d, big_d, profile=profile, overrides=overrides,
                                                feedback_seed=11, noise_seed=13)
                    for name, value in DEVICE_ATTRIBUTES.items():
                        setattr(projector.device, name, value)
                    g = torch.Generator().manual_seed(17)
                    out = [projector.project(torch.randn(12, d, generator=g)) for _ in range(2)]
                    return [*out, torch.tensor([projector.counters().saturated_pixels])]
                yield f"project/{profile}/{mode}/d{d}", project


def run_one_thread(run: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
    """``run()`` with one torch thread: how a matrix product splits over threads changes its rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run()
    finally:
        torch.set_num_threads(threads)


def record() -> None:
    arrays = {}
    for name, run in cases():
        for i, tensor in enumerate(run_one_thread(run)):
            arrays[f"{name}/{i}"] = tensor.detach().cpu().numpy()
    PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(PATH, **arrays)
    print(f"{len(arrays)} arrays, {PATH.stat().st_size} bytes -> {PATH}")


if __name__ == "__main__":
    record()
