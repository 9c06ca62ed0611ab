"""Readout modes: from camera intensities of binary frames to a projection of one ternary plane.

For a ternary plane ``t = t⁺ − t⁻`` (binary frames ``t⁺``, ``t⁻``) and the device's fixed reference pattern ``r``
(on mirrors no signal frame uses), write ``I(x) = |R x|²``, ``f = R r`` and ``M = 2 Re(diag(conj f) R)`` restricted
to the signal elements, so that ``I(x + r) − I(x) − I(r) = M x`` exactly. Each mode returns its raw combination of
intensities, ``(N, output_pixels)`` in the device's intensity units:

* ``holographic`` — 4 frames per plane: ``I(t⁺+r) − I(t⁺) − I(t⁻+r) + I(t⁻) = M t``. ``I(r)`` cancels, the result
  is exactly linear in ``t`` (up to camera noise and quantisation).
* ``strong-reference`` — 2 frames per plane: ``I(t⁺+r) − I(t⁻+r) = M t + (|R t⁺|² − |R t⁻|²)``. The quadratic
  residual has about ``sqrt(signal mirrors / reference mirrors)`` of the size of ``M t``, small under a strong
  reference.
* ``intensity`` — 2 frames per plane, no reference: ``|R t⁺|² − |R t⁻|²``, a fixed non-linear map of ``t``.

How each mode's scale is made comparable to a unit-variance matrix is in :class:`optodfa.optical.OpticalProjector`:
linear modes divide by the expected RMS of the entries of ``M``; the intensity mode divides each sample by the
expected RMS of its intensity difference and multiplies by ``‖t‖`` (see :meth:`Readout.normalise`).

Frames are shown in one ``acquire`` call per batch so a real device can stream them. The frames of one plane are
consecutive (``t⁺+r, t⁺, t⁻+r, t⁻`` for plane 0, then plane 1, ...), so that a drifting medium changes as little
as possible between the frames that are combined; this order is part of each mode's definition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from optodfa.device import Acquisition, OpticalDevice
from optodfa.sim import kernels, threads
from optodfa.sim.workspace import fresh
from optodfa.validation import check_choice

__all__ = ["READOUTS", "HolographicReadout", "IntensityReadout", "Readout", "StrongReferenceReadout",
           "make_readout"]


class Readout(ABC):
    """A way to measure one signed plane per sample with an :class:`OpticalDevice`.

    Attributes:
        name: registry name.
        frames_per_plane: frames shown per ternary plane of each sample.
        linear: whether the result is exactly linear in the plane (so a matrix ``B_eff`` describes it).
    """

    name: str
    frames_per_plane: int
    linear: bool

    def measure(self, device: OpticalDevice, plus: torch.Tensor, minus: torch.Tensor, *,
                factor: torch.Tensor | None = None) -> torch.Tensor:
        """Show the frames for ``N`` planes and combine the intensities.

        Args:
            device: any optical device.
            plus, minus: ``(N, device.input_pixels)`` bool frames ``t⁺`` and ``t⁻``.
            factor: optional ``(N,)`` real factor on each plane's combination, folded into the per-frame intensity
                scales the combination applies anyway (no pass over the result of its own).

        Returns:
            ``(N, device.output_pixels)`` float32/float64 (the dtype of the intensity scale) raw combination.
        """
        n = _check_planes(device, plus, minus)
        if factor is not None and (not isinstance(factor, torch.Tensor) or factor.shape != (n,)
                                   or factor.is_complex() or not factor.dtype.is_floating_point):
            got = f"{factor.dtype} {tuple(factor.shape)}" if isinstance(factor, torch.Tensor) else type(factor).__name__
            raise TypeError(f"factor must be a real floating tensor of shape ({n},), got {got}")
        if n == 0:
            return torch.zeros(0, device.output_pixels)
        frames, reference, signs = self._frames(plus, minus)
        acquisition = device.acquire(frames, reference=reference)
        return _signed_sum(acquisition, signs, n, factor)

    @abstractmethod
    def _frames(self, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | bool,
                                                                         tuple[float, ...]]:
        """Frames (``F`` per plane, consecutive), reference flags and the sign of each of the ``F`` frames."""

    def describe(self) -> dict[str, Any]:
        return {"mode": self.name, "frames_per_plane": self.frames_per_plane, "linear": self.linear}


class HolographicReadout(Readout):
    """4 frames per plane, ``I(t⁺+r) − I(t⁺) − I(t⁻+r) + I(t⁻) = M t``: exactly linear."""

    name = "holographic"
    frames_per_plane = 4
    linear = True

    def _frames(self, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                         tuple[float, ...]]:
        n = plus.shape[0]
        frames = torch.stack([plus, plus, minus, minus], dim=1).view(4 * n, -1)
        # t⁺+r, t⁺, t⁻+r, t⁻: the reference is lit on even frames (computed where the frames live: no copy).
        reference = torch.arange(4 * n, device=plus.device) % 2 == 0
        return frames, reference, (1.0, -1.0, -1.0, 1.0)


class StrongReferenceReadout(Readout):
    """2 frames per plane, ``I(t⁺+r) − I(t⁻+r) = M t + (|R t⁺|² − |R t⁻|²)``: linear plus a quadratic residual."""

    name = "strong-reference"
    frames_per_plane = 2
    linear = True

    def _frames(self, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, bool, tuple[float, ...]]:
        return torch.stack([plus, minus], dim=1).view(2 * plus.shape[0], -1), True, (1.0, -1.0)


class IntensityReadout(Readout):
    """2 frames per plane, ``|R t⁺|² − |R t⁻|²`` without reference: a fixed non-linear map of ``t``."""

    name = "intensity"
    frames_per_plane = 2
    linear = False

    def _frames(self, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, bool, tuple[float, ...]]:
        return torch.stack([plus, minus], dim=1).view(2 * plus.shape[0], -1), False, (1.0, -1.0)

    @staticmethod
    def normalise(raw: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor,
                  element_intensity: float) -> torch.Tensor:
        """Scale ``(N, D)`` intensity differences so their mean square per pixel is about ``‖t‖²`` (in place):
        ``raw`` times :meth:`normalising_factor`."""
        return raw.mul_(IntensityReadout.normalising_factor(plus, minus, element_intensity, raw.dtype)[:, None])

    @staticmethod
    def normalising_factor(plus: torch.Tensor, minus: torch.Tensor, element_intensity: float,
                           dtype: torch.dtype) -> torch.Tensor:
        """``(N,)`` factor of :meth:`normalise` for ``(N, d)`` frames ``t⁺``, ``t⁻`` (on their device, in ``dtype``).

        With ``k±`` lit elements, ``|R t±|²`` is exponential with mean ``k± Ī₁`` (``Ī₁ = element_intensity``, the
        mean intensity of one element), so the difference has mean square ``Ī₁² (k⁺² + k⁻² + (k⁺ − k⁻)²)``; dividing
        by its root and multiplying by ``sqrt(k⁺ + k⁻) = ‖t‖`` matches the scale of a unit-variance matrix applied
        to ``t``. Planes with no lit element stay zero.
        """
        k_plus = plus.sum(dim=1, dtype=dtype)
        k_minus = minus.sum(dim=1, dtype=dtype)
        rms = element_intensity * (k_plus.square() + k_minus.square() + (k_plus - k_minus).square()).sqrt()
        return (k_plus + k_minus).sqrt() / rms.clamp_min(torch.finfo(dtype).tiny)


READOUTS: dict[str, type[Readout]] = {"holographic": HolographicReadout, "strong-reference": StrongReferenceReadout,
                                      "intensity": IntensityReadout}


def make_readout(mode: str) -> Readout:
    """A readout by name: ``holographic``, ``strong-reference`` or ``intensity``."""
    return READOUTS[check_choice("readout.mode", mode, tuple(READOUTS))]()


# Planes combined at once by _signed_sum: about 2^16 readings, so the float copy of their counts stays in cache.
_SUM_READINGS = 1 << 16
# Readings per group of planes handed to a thread by the compiled sum (enough to outweigh handing it out).
_THREAD_READINGS = 1 << 18


def _check_planes(device: OpticalDevice, plus: object, minus: object) -> int:
    """Rows ``N`` of two frame batches of one shape ``(N, device.input_pixels)`` (values are the device's to check)."""
    for name, frames in (("plus", plus), ("minus", minus)):
        if not isinstance(frames, torch.Tensor) or frames.ndim != 2 or frames.is_complex():
            got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise TypeError(f"{name} frames must be a real 2-D tensor (N, {device.input_pixels}), got {got}")
    if plus.shape != minus.shape:  # type: ignore[union-attr]
        raise ValueError(f"plus and minus frames must have one shape, got {tuple(plus.shape)} and "  # type: ignore[union-attr]
                         f"{tuple(minus.shape)}")  # type: ignore[union-attr]
    return int(plus.shape[0])  # type: ignore[union-attr]


def _signed_sum(acquisition: Acquisition, signs: tuple[float, ...], n: int,
                factor: torch.Tensor | None = None) -> torch.Tensor:
    """``factor[i] · Σ_f signs[f] · intensity(frame f of plane i)`` for ``n`` planes of ``len(signs)`` consecutive
    frames (``factor`` ``(n,)``, default 1)."""
    frames = len(signs)
    counts = acquisition.counts.view(n, frames, -1)
    weights = acquisition.intensity_per_count.view(n, frames)
    signed = weights * _sign_vector(signs, weights.dtype, weights.device)
    if factor is not None:
        signed.mul_(factor.to(device=weights.device, dtype=weights.dtype)[:, None])
    pixels = counts.shape[2]
    out = fresh((n, pixels), weights.dtype, weights.device)
    if kernels.AVAILABLE and counts.device.type == "cpu" and not counts.dtype.is_floating_point:
        # Planes are independent: groups of them on several threads give the one-thread sums exactly.
        groups = threads.parts(max(1, (n * frames * pixels) // _THREAD_READINGS))
        kernels.signed_sum(counts.numpy(), signed.numpy(), out.numpy(), groups=groups)
        return _subtract_dark(out, signed, acquisition.dark_offset)
    # Integer counts times float weights go through a slow mixed-dtype path; a float copy of a cache-sized group of
    # planes, exact for counts below 2^24, makes every product a float one with the same rounding.
    # A GPU copies all planes at once (one kernel each).
    grouped = counts.device.type == "cpu" and not counts.dtype.is_floating_point
    step = max(1, _SUM_READINGS // (frames * pixels)) if grouped else n
    buffer = None
    for a in range(0, n, step):
        b = min(n, a + step)
        group = counts[a:b]
        if buffer is not None or not counts.dtype.is_floating_point:
            if buffer is None:
                buffer = torch.empty((step, frames, pixels), dtype=weights.dtype, device=weights.device)
            group = buffer[: b - a].copy_(group)
        part = torch.mul(group[:, 0], signed[a:b, 0:1], out=out[a:b])
        for f in range(1, frames):
            part.addcmul_(group[:, f], signed[a:b, f : f + 1])
    return _subtract_dark(out, signed, acquisition.dark_offset)


_SIGNS: dict[tuple[tuple[float, ...], torch.dtype, torch.device], torch.Tensor] = {}


def _sign_vector(signs: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``signs`` as a tensor on ``device``, copied there once (a copy per call is a host round trip on a GPU)."""
    key = (signs, dtype, device)
    if key not in _SIGNS:
        _SIGNS[key] = torch.tensor(signs, dtype=dtype).to(device)
    return _SIGNS[key]


def _subtract_dark(out: torch.Tensor, signed: torch.Tensor, dark_offset: float) -> torch.Tensor:
    # The dark offset is subtracted from every count; with per-frame scales it does not cancel in the sum.
    if dark_offset:
        out.sub_(signed.sum(dim=1, keepdim=True) * dark_offset)
    return out
