"""Feedback fidelity of a device (SPEC §4): how close its projection is to the exact ``B_eff e``.

For a projection ``y`` (``(n, D)``) of an error batch and the exact target ``z`` (same shape):

* **cosine**: the mean over samples of ``cos(y_k, z_k)`` (DFA uses each sample's feedback on its own);
* **SNR**: ``10 log10(Σ z² / Σ (y − z)²)`` in dB over the whole batch; the difference counts every departure from
  ``z`` as noise, including a wrong overall scale (the scale of the feedback sets the learning rate);
* **ENOB**: the effective number of bits ``(SNR_dB − 1.76) / 6.02``, the resolution of an ideal ADC whose
  quantisation noise alone would give this SNR for a full-scale sine. It is negative below 1.76 dB.

Two targets, because the error encoding and the camera degrade the projection in different ways:

* ``against="error"`` (end to end): ``z = e @ B_effᵀ``, everything the device does to ``e``;
* ``against="code"`` (device only): ``z = e_q @ B_effᵀ``, with ``e_q`` the quantised error the encoder produced
  (:meth:`optodfa.encoding.Encoded.value`); what is left is camera noise, quantisation, saturation and readout.

``B_eff`` is ``reference_matrix`` if given, else the projector's :meth:`~optodfa.device.Projector.effective_matrix`.
**Readouts with no linear ``B_eff``** (the intensity-only readout) are measured against the best linear map of the
target input, ``B_lin = argmin Σ ‖y − B u‖²`` (``u = e`` or ``e_q``), fitted by least squares with two-fold
cross-fitting: fitted on one half of the batch and evaluated on the other, both ways, so the fit cannot absorb the
noise of the samples it scores. Its "noise" is then camera noise plus the part of the map no fixed matrix explains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from optodfa.device import Projector
from optodfa.registry import build_projector
from optodfa.seeding import check_seed, torch_generator
from optodfa.validation import check_choice, check_int

__all__ = ["TARGETS", "Fidelity", "enob", "feedback_fidelity", "fidelity", "fidelity_report", "measure_fidelity"]

TARGETS = ("error", "code")
_ERROR_LABEL = 5  # sub-stream of the report seed for its error batch


class Fidelity(NamedTuple):
    """Fidelity of a projection against its exact target.

    Attributes:
        cosine: mean per-sample cosine, in [-1, 1].
        snr_db: signal-to-noise ratio in dB (``inf`` for an exact projection).
        enob: effective number of bits, ``(snr_db − 1.76) / 6.02``.
        reference: what the target was computed with: ``"given matrix"``, ``"effective matrix"`` or
            ``"best linear fit"``.
        samples: error vectors measured.
    """

    cosine: float
    snr_db: float
    enob: float
    reference: str = "given matrix"
    samples: int = 0


def enob(snr_db: float) -> float:
    """Effective number of bits of an SNR in dB: ``(snr_db − 1.76) / 6.02``."""
    return (snr_db - 1.76) / 6.02


def fidelity(output: torch.Tensor, target: torch.Tensor, *, reference: str = "given matrix") -> Fidelity:
    """Cosine, SNR and ENOB of ``output`` against ``target`` (both ``(n, D)``, any float dtype and device)."""
    for name, value in (("output", output), ("target", target)):
        if not isinstance(value, torch.Tensor) or value.ndim != 2 or not value.is_floating_point():
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a floating 2-D tensor (n, D), got {shape}")
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape, got {tuple(output.shape)} and "
                         f"{tuple(target.shape)}")
    y = output.detach().to(torch.float64)
    z = target.detach().to(device=y.device, dtype=torch.float64)
    signal = float(z.square().sum())
    if signal == 0.0:
        raise ValueError("target is identically zero; fidelity is undefined")
    noise = float((y - z).square().sum())
    snr_db = math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)
    cosine = float(torch.nn.functional.cosine_similarity(y, z, dim=1, eps=1e-300).mean())
    return Fidelity(cosine, snr_db, enob(snr_db), reference, y.shape[0])


def feedback_fidelity(projector: Projector, e: torch.Tensor, *, reference_matrix: torch.Tensor | None = None,
                      against: str = "error") -> Fidelity:
    """Project ``e`` once and measure the result against ``B_eff e`` (see the module docstring).

    Args:
        projector: any projector.
        e: ``(n, d)`` error batch.
        reference_matrix: ``(D, d)`` matrix to compare with; default the projector's effective matrix, or a
            cross-fitted best linear map when it has none (then ``n >= 2 (d + 1)``).
        against: ``"error"`` (target from ``e``) or ``"code"`` (from the quantised error the encoder produced; the
            same as ``"error"`` for a projector without an encoding).
    """
    if not isinstance(projector, Projector):
        raise TypeError(f"projector must be an optodfa Projector, got {type(projector).__name__}")
    check_choice("against", against, TARGETS)
    output = projector.project(e)
    return measure_fidelity(projector, e, output, reference_matrix=reference_matrix, against=against)


def measure_fidelity(projector: Projector, e: torch.Tensor, output: torch.Tensor, *,
                     reference_matrix: torch.Tensor | None = None, against: str = "error") -> Fidelity:
    """Fidelity of ``output`` (``(n, D)``), already projected by ``projector`` from ``e`` (``(n, d)``).

    Lets one projection be scored against both targets; arguments as in :func:`feedback_fidelity`.
    """
    check_choice("against", against, TARGETS)
    source = e.detach()
    encoding = getattr(projector, "encoding", None)
    if against == "code" and encoding is not None:
        source = encoding.encode(source).value()
    if reference_matrix is not None:
        shape = (projector.out_features, projector.in_features)
        if not isinstance(reference_matrix, torch.Tensor) or tuple(reference_matrix.shape) != shape:
            got = tuple(reference_matrix.shape) if isinstance(reference_matrix, torch.Tensor) else \
                type(reference_matrix).__name__
            raise ValueError(f"reference_matrix must be a tensor of shape (D, d) = {shape}, got {got}")
        return fidelity(output, _apply(reference_matrix, source), reference="given matrix")
    matrix = projector.effective_matrix()
    if matrix is not None:
        return fidelity(output, _apply(matrix, source), reference="effective matrix")
    return fidelity(output, _cross_fit(source, output), reference="best linear fit")


def _apply(matrix: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    return source.to(torch.float64) @ matrix.detach().to(device=source.device, dtype=torch.float64).T


def _cross_fit(source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``(n, D)`` predictions of ``output`` by a linear map of ``source``, each half fitted on the other half."""
    n, d = source.shape
    if n < 2 * (d + 1):
        raise ValueError(f"a projector without an effective matrix is measured against a cross-fitted linear map, "
                         f"which needs at least 2 (d + 1) = {2 * (d + 1)} error vectors; got n = {n}")
    u = source.to(torch.float64)
    y = output.detach().to(device=u.device, dtype=torch.float64)
    half = n // 2
    first, second = slice(0, half), slice(half, n)
    predicted = torch.empty_like(y)
    for fit, score in ((first, second), (second, first)):
        solution = torch.linalg.lstsq(u[fit], y[fit]).solution
        predicted[score] = u[score] @ solution
    return predicted


# -- the CLI report ------------------------------------------------------------------------------------------------
def fidelity_report(name: str, *, profile: str | None = None, overrides: Mapping[str, Any] | None = None,
                    n: int = 256, d: int = 10, D: int = 1024, seed: int = 0) -> str:
    """A text table of the fidelity of device ``name`` (``optodfa devices fidelity NAME``).

    Builds the device for errors of dimension ``d`` and feedback width ``D`` with feedback seed ``seed``, projects
    ``n`` standard Gaussian error vectors (drawn from ``seed``) once, and reports cosine, SNR and ENOB end to end
    and device only, with the frames and hardware time the projection cost.
    """
    check_int("n", n, low=1)
    check_int("d", d, low=1)
    check_int("D", D, low=1)
    seed = check_seed(seed)
    projector = build_projector(name, d, D, feedback_seed=seed, profile=profile, overrides=dict(overrides or {}))
    e = torch.randn(n, d, generator=torch_generator(seed, _ERROR_LABEL))
    with projector:
        output = projector.project(e)
    rows = [("end to end (B_eff e)", measure_fidelity(projector, e, output, against="error")),
            ("device only (B_eff e_q)", measure_fidelity(projector, e, output, against="code"))]
    counters = projector.counters()
    description = projector.describe()
    profile_name = (description.get("profile") or {}).get("name") if isinstance(description.get("profile"),
                                                                                 dict) else profile
    settings = ", ".join(f"{k}={v}" for k, v in (overrides or {}).items()) or "none"
    lines = [f"device {name}" + (f", profile {profile_name}" if profile_name else "") + f"; overrides: {settings}",
             f"d = {d}, D = {D}, n = {n} standard Gaussian error vectors, seed {seed}"]
    readout, encoding = description.get("readout"), description.get("encoding")
    if isinstance(readout, dict) and isinstance(encoding, dict):
        lines.append(f"readout {readout.get('mode')} ({readout.get('frames_per_plane')} frames per plane), "
                     f"encoding {encoding.get('kind')} ({encoding.get('planes')} plane(s)), "
                     f"{description.get('frames_per_sample')} frames per error vector")
    lines.append(f"measured against: {rows[0][1].reference}")
    lines.append(f"{'':<26}{'cosine':>8}{'SNR (dB)':>11}{'ENOB (bits)':>13}")
    for label, value in rows:
        lines.append(f"{label:<26}{value.cosine:>8.4f}{value.snr_db:>11.2f}{value.enob:>13.2f}")
    readings = max(1, counters.frames * D)
    lines.append(f"frames {counters.frames}, hardware time {counters.hardware_seconds * 1e3:.3g} ms, "
                 f"energy {counters.energy_joules:.3g} J, saturated readings {counters.saturated_pixels} "
                 f"({100.0 * counters.saturated_pixels / readings:.3g}% of frames x D)")
    lines.append("ENOB = (SNR_dB - 1.76) / 6.02; SNR counts every departure from the target, scale included")
    return "\n".join(lines)
