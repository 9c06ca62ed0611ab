"""What a training run records at each alignment step: gradient and weight alignment in three views, and the
feedback fidelity of the device on the batch's own errors.

Three views of the DFA signal, each aligned with the BP signal per SPEC §4 (per layer and ``total``):

* ``alignment/gradient/…`` — **effective**: ``scale · B_eff e`` with ``B_eff`` the projector's effective matrix
  *now* (for a drifting medium, the drifted one: a perfectly re-measured ``B_eff``), exact ``e``, no noise. A
  projector without a linear matrix (the intensity readout) uses the device view below instead.
* ``alignment/ideal/gradient/…`` and ``alignment/ideal/weight/…`` — **ideal**: ``scale · B₀ e`` with ``B₀`` the
  matrix the device applied when it was built: for ``opu-sim`` the normalised holographic matrix of the medium
  before any drift step (row evening by its ``I(r)`` then), i.e. a calibration made once at the start and never
  again; for any other projector its effective matrix. For ``opu-sim``'s intensity readout, which has no linear
  matrix, ``B₀`` is the holographic matrix of the same medium: a control that the non-linear map does not deliver.
* ``alignment/device/gradient/…`` — **device**: the feedback the device really returns for this batch (encoding,
  camera noise, quantisation, saturation, drift), measured on a copy of the projector so that the training
  device's frames, noise stream and drift clock are untouched. The copy starts from the training projector's
  noise state, so for the batch about to be trained this is the very feedback the update will use.

Fidelity (:mod:`optodfa.fidelity`) of that same device projection: ``fidelity/cosine``, ``fidelity/snr_db`` and
``fidelity/enob`` end to end (against ``B_eff e``), ``fidelity/code_*`` against ``B_eff e_q`` (the device alone).
A batch too small for the cross-fitted reference of a non-linear readout records NaN; so does every device view
when the device's output is not finite (the training step that follows then raises, with its step number).
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable

import torch

from optodfa.alignment import gradient_alignment, weight_alignment
from optodfa.device import NonFiniteError, Projector
from optodfa.dfa import DFAModel
from optodfa.fidelity import measure_fidelity
from optodfa.losses import cross_entropy
from optodfa.runlog import RunFile

__all__ = ["FIDELITY", "ideal_matrix", "record_alignment"]

FIDELITY = ("cosine", "snr_db", "enob")


def ideal_matrix(projector: Projector) -> torch.Tensor | None:
    """``(D, d)`` matrix ``B₀`` the projector applied as built (see the module docstring), or ``None``."""
    from optodfa.optical import OpticalProjector
    from optodfa.sim.opu import SimulatedOPU

    inner = getattr(getattr(projector, "device", None), "inner", None)
    if isinstance(projector, OpticalProjector) and isinstance(inner, SimulatedOPU):
        return projector.normalise_matrix(inner.initial_holographic_matrix(), inner.initial_reference_intensity())
    return projector.effective_matrix()


def _matrix_signal(model: DFAModel, matrix: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def signal(error: torch.Tensor) -> torch.Tensor:
        flat = error.reshape(-1, model.projector.in_features)
        return flat @ matrix.to(device=flat.device, dtype=flat.dtype).T * model.feedback_scale
    return signal


def _error(model: DFAModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(n, d)`` (or ``(n, T, d)``) output error ``∂L/∂output`` of the batch (mean cross-entropy, over tokens for
    a token model), as the alignment measures it."""
    with torch.enable_grad():
        output = model.network(x)
        return torch.autograd.grad(cross_entropy(output, y), output)[0].detach()


def record_alignment(run: RunFile, model: DFAModel, x: torch.Tensor, y: torch.Tensor) -> None:
    """Append every series of the module docstring for the batch ``(x, y)`` at ``model.step``."""
    run.append("alignment/step", model.step)
    error = _error(model, x, y)
    flat = error.reshape(-1, model.projector.in_features)  # one row per sample, or per token of a token model
    try:
        twin = copy.deepcopy(model.projector)  # same state, own counters, noise stream and drift clock
    except (TypeError, AttributeError, RuntimeError, pickle.PicklingError):
        # A driver of real hardware (a queue, a socket, a device handle) cannot be copied: the measurement then
        # goes through the device itself, and its frames are counted with training's.
        twin = model.projector
    try:
        with torch.no_grad():
            device_output = twin.project(flat)
    except NonFiniteError:  # the training step raises it, with its step; here it is a measurement gap
        device_output = torch.full((flat.shape[0], model.projector.out_features), math.nan, dtype=error.dtype,
                                   device=error.device)

    def device_signal(_: torch.Tensor) -> torch.Tensor:
        return device_output * model.feedback_scale

    effective = model.projector.effective_matrix()
    views: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "alignment/gradient": _matrix_signal(model, effective) if effective is not None else device_signal,
        "alignment/device/gradient": device_signal}
    ideal = ideal_matrix(model.projector)
    # Without drift B₀ is B_eff: the ideal view then copies the effective one (the weight cosines are the cost).
    same = ideal is not None and effective is not None and torch.equal(ideal, effective)
    if ideal is not None and not same:
        views["alignment/ideal/gradient"] = _matrix_signal(model, ideal)
    results = {prefix: gradient_alignment(model, x, y, cross_entropy, feedback=signal)
               for prefix, signal in views.items()}
    weights = {"alignment/weight": weight_alignment(model)}
    if same:
        results["alignment/ideal/gradient"] = results["alignment/gradient"]
        weights["alignment/ideal/weight"] = weights["alignment/weight"]
    elif ideal is not None:
        weights["alignment/ideal/weight"] = weight_alignment(model, ideal)
    for prefix, values in {**results, **weights}.items():
        for name, value in values.items():
            run.append(f"{prefix}/{name}", value)
    for against, prefix in (("error", "fidelity/"), ("code", "fidelity/code_")):
        try:
            if not bool(torch.isfinite(device_output).all()):
                raise ValueError("non-finite device output")
            measured = measure_fidelity(twin, flat, device_output, against=against)
            values = (measured.cosine, measured.snr_db, measured.enob)
        except ValueError:  # a batch too small for the cross-fitted reference of a non-linear readout
            values = (math.nan,) * len(FIDELITY)
        for key, value in zip(FIDELITY, values, strict=True):
            run.append(prefix + key, value)
