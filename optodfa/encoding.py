"""Error encodings: a real error batch to signed binary planes a DMD can show, and back.

A DMD shows binary frames only, so the error ``e`` (``(n, d)``) is replaced by an integer *code* ``t`` written as a
weighted sum of ternary planes, ``t = Σ_k w_k t_k`` with ``t_k ∈ {−1, 0, 1}^d``. Each plane is shown as two binary
frames ``t_k⁺ = [t_k > 0]`` and ``t_k⁻ = [t_k < 0]`` (``t_k = t_k⁺ − t_k⁻``); the readout (:mod:`optodfa.readout`)
turns them into an estimate of ``B t_k``.

Scale. The code forgets the magnitude of ``e``; the decoder restores it per sample by least squares,
``s = <e, t> / <t, t>`` (``s = 0`` when ``t = 0``), the ``s`` that minimises ``‖e − s t‖``. The projector returns
``s · Σ_k w_k (B t_k)``, an estimate of ``B (s t)``, and ``s t`` is the quantised error the device really projected
(:meth:`Encoded.value`). For a linear readout this equals ``(s t) @ Bᵀ`` exactly when the device is noiseless.

Encodings (frames per sample = planes x the readout's frames per plane):

* ``ternary`` (1 plane): ``t = sign(e) · [|e| > θ]`` with a per-sample threshold ``θ`` from ``rule``: ``"fixed"``
  (``θ = threshold``), ``"max"`` (``θ = threshold · max|e|``, ``threshold`` in [0, 1) so the largest entry always
  survives) or ``"std"`` (``θ = threshold · std(e)``, population standard deviation over the ``d`` entries).
* ``sign`` (1 plane, 1 bit per entry): ``t = +1`` where ``e ≥ 0``, ``−1`` elsewhere.
* ``bitplane`` (``bits`` planes): ``|e|`` divided by the per-sample ``max|e|`` and rounded to ``bits``-bit integers
  ``q``; plane ``k`` (most significant first) holds ``sign(e)`` where bit ``k`` of ``q`` is set, with weight
  ``2^{bits−1−k}``, so ``t = sign(e) · q``. The positive and negative parts of ``e`` have disjoint supports, so each
  plane is ternary. Recombining planes is exact only for a linear projection.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

import torch

from optodfa.validation import check_choice, check_int, check_keys, check_real

__all__ = [
    "ENCODINGS",
    "THRESHOLD_RULES",
    "BitPlaneEncoding",
    "Encoded",
    "Encoding",
    "SignEncoding",
    "TernaryEncoding",
    "make_encoding",
]

THRESHOLD_RULES = ("fixed", "max", "std")


@dataclasses.dataclass(frozen=True)
class Encoded:
    """An encoded error batch.

    Attributes:
        planes: ``(p, n, d)`` ternary planes (values -1, 0, 1) in the dtype and on the device of ``e``.
        weights: ``p`` plane weights; the code is ``Σ_k weights[k] · planes[k]``.
        scale: ``(n,)`` per-sample scale ``s`` restoring the magnitude of ``e``.
    """

    planes: torch.Tensor
    weights: tuple[float, ...]
    scale: torch.Tensor

    def code(self) -> torch.Tensor:
        """``(n, d)`` integer-valued code ``t``."""
        code = self.planes[0] * self.weights[0]
        for plane, weight in zip(self.planes[1:], self.weights[1:], strict=True):
            code = code + plane * weight
        return code

    def value(self) -> torch.Tensor:
        """``(n, d)`` quantised error ``s · t`` that the device projects."""
        return self.scale[:, None] * self.code()


class Encoding(ABC):
    """Error → ternary planes, and projected planes → projection of the error."""

    name: str
    planes: int

    def encode(self, e: torch.Tensor) -> Encoded:
        """Encode ``(n, d)`` errors; the scale ``s`` is the least-squares fit of ``e`` by its code.

        Half-precision errors are encoded in float32 (the codes of a 16-bit bit-plane encoding exceed float16).
        Raises ``TypeError`` for anything but a 2-D floating tensor and ``ValueError`` for NaN or inf.
        """
        e = _check_errors(e)
        planes, weights = self._planes(e)
        encoded = Encoded(planes, weights, torch.zeros(e.shape[0], dtype=e.dtype, device=e.device))
        code = encoded.code()
        norm2 = code.square().sum(dim=1)
        scale = (e * code).sum(dim=1) / norm2.clamp_min(torch.finfo(e.dtype).tiny)
        return dataclasses.replace(encoded, scale=scale)

    def decode(self, projected: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        """Combine ``(p, n, D)`` projected planes into the ``(n, D)`` projection of ``s · t``.

        Works in place: the result is a view of ``projected[0]``, which is overwritten.
        """
        out = projected[0]
        scale = encoded.scale[:, None].to(out.dtype)
        if len(encoded.weights) == 1:
            return out.mul_(scale * encoded.weights[0])
        out.mul_(encoded.weights[0])
        for plane, weight in zip(projected[1:], encoded.weights[1:], strict=True):
            out.add_(plane, alpha=weight)
        return out.mul_(scale)

    @staticmethod
    def plane_factors(encoded: Encoded) -> torch.Tensor:
        """``(p·n,)`` factor of each projected plane in :meth:`decode`'s sum: ``weights[k] · s_i`` for plane ``k`` of
        sample ``i``, in the order of ``encoded.planes.reshape(p·n, d)``.

        A readout can fold these into the scale it applies to each plane anyway (:meth:`Readout.measure`'s
        ``factor``), which saves :meth:`decode` its passes over the ``(n, D)`` result; :meth:`sum_planes` then
        finishes the decoding.
        """
        scale = encoded.scale
        if len(encoded.weights) == 1:
            return scale * encoded.weights[0]
        return torch.cat([scale * weight for weight in encoded.weights])

    @staticmethod
    def sum_planes(projected: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` sum of ``(p, n, D)`` projected planes already multiplied by :meth:`plane_factors`.

        Works in place: the result is a view of ``projected[0]``, overwritten when ``p > 1``.
        """
        out = projected[0]
        for plane in projected[1:]:
            out.add_(plane)
        return out

    @abstractmethod
    def _planes(self, e: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
        """``(p, n, d)`` ternary planes and their weights."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name, "planes": self.planes}


class TernaryEncoding(Encoding):
    """``t = sign(e) · [|e| > θ]``, one plane; ``θ`` per sample from ``rule`` (see the module docstring)."""

    name = "ternary"
    planes = 1

    def __init__(self, threshold: float = 0.25, rule: str = "max") -> None:
        self.rule = check_choice("encoding.rule", rule, THRESHOLD_RULES)
        if rule == "max":
            self.threshold = check_real("encoding.threshold", threshold, low=0.0, high=1.0, high_open=True)
        else:
            self.threshold = check_real("encoding.threshold", threshold, low=0.0)

    def _planes(self, e: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
        magnitude = e.abs()
        if self.rule == "fixed":
            theta: torch.Tensor | float = self.threshold
        elif self.rule == "max":
            theta = self.threshold * magnitude.amax(dim=1, keepdim=True)
        else:
            theta = self.threshold * e.std(dim=1, correction=0, keepdim=True)
        plane = torch.sign(e) * (magnitude > theta)
        return plane.unsqueeze(0), (1.0,)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threshold": self.threshold, "rule": self.rule}


class SignEncoding(Encoding):
    """``t = +1`` where ``e ≥ 0`` and ``−1`` elsewhere: one plane, every entry lit in one of its two frames."""

    name = "sign"
    planes = 1

    def _planes(self, e: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
        plane = torch.where(e >= 0, 1.0, -1.0).to(e.dtype)
        return plane.unsqueeze(0), (1.0,)


class BitPlaneEncoding(Encoding):
    """``|e| / max|e|`` rounded to ``bits``-bit integers, one signed plane per bit (most significant first)."""

    name = "bitplane"

    def __init__(self, bits: int = 4) -> None:
        self.bits = check_int("encoding.bits", bits, low=1, high=16)
        self.planes = self.bits

    def _planes(self, e: torch.Tensor) -> tuple[torch.Tensor, tuple[float, ...]]:
        magnitude = e.abs()
        peak = magnitude.amax(dim=1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        levels = (magnitude / peak * (2**self.bits - 1)).round_().to(torch.int32)
        sign = torch.sign(e)
        shifts = torch.arange(self.bits - 1, -1, -1, device=e.device, dtype=torch.int32)
        bits = (levels.unsqueeze(0) >> shifts[:, None, None]) & 1
        weights = tuple(float(2**k) for k in range(self.bits - 1, -1, -1))
        return bits.to(e.dtype) * sign, weights

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "bits": self.bits}


def _check_errors(e: object) -> torch.Tensor:
    if not isinstance(e, torch.Tensor) or e.ndim != 2 or not e.is_floating_point():
        got = f"{e.dtype} {tuple(e.shape)}" if isinstance(e, torch.Tensor) else type(e).__name__
        raise TypeError(f"errors must be a 2-D floating tensor (n, d), got {got}")
    if e.shape[1] == 0:
        raise ValueError(f"errors must have at least one entry per sample, got shape {tuple(e.shape)}")
    if e.dtype in (torch.float16, torch.bfloat16):
        e = e.float()
    if not bool(torch.isfinite(e).all()):
        raise ValueError(f"errors hold {int((~torch.isfinite(e)).sum())} non-finite value(s) (NaN or inf)")
    return e


ENCODINGS: dict[str, type[Encoding]] = {"ternary": TernaryEncoding, "sign": SignEncoding,
                                        "bitplane": BitPlaneEncoding}
_PARAMETERS = {"ternary": ("threshold", "rule"), "sign": (), "bitplane": ("bits",)}


def make_encoding(kind: str, **params: Any) -> Encoding:
    """An encoding by name (``ternary``, ``sign``, ``bitplane``) with its own parameters only."""
    check_choice("encoding.kind", kind, tuple(ENCODINGS))
    check_keys(f"parameters of encoding {kind!r}", params, _PARAMETERS[kind])
    return ENCODINGS[kind](**params)
