"""Alignment metrics (SPEC §4): gradient alignment, weight alignment, cross-seed cosine.

All functions take a :class:`~optodfa.dfa.DFAModel` (or plain tensors) and leave the parameters' ``.grad`` alone.
The DFA signal is formed with the projector's *effective* matrix ``B_eff`` (what the hardware really applies,
without its noise) when the projector exposes one, and with a real projection otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from optodfa.dfa import DFAModel
from optodfa.fidelity import Fidelity, feedback_fidelity, fidelity, measure_fidelity

__all__ = [
    "Fidelity",
    "cross_seed_cosine",
    "feedback_fidelity",
    "feedback_signal",
    "fidelity",
    "gradient_alignment",
    "measure_fidelity",
    "weight_alignment",
]

TOTAL = "total"


def _per_sample_cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(n,)`` cosines between rows of ``u`` and ``v`` flattened per sample; 0 where either row is zero."""
    return F.cosine_similarity(u.reshape(u.shape[0], -1), v.reshape(v.shape[0], -1), dim=1, eps=1e-30)


def feedback_signal(model: DFAModel, error: torch.Tensor) -> torch.Tensor:
    """``(n, D)`` scaled feedback ``scale · B_eff e`` for an ``(n, d)`` error batch, without noise when possible."""
    matrix = model.projector.effective_matrix()
    flat = error.detach().reshape(error.shape[0], -1)
    if matrix is None:
        projected = model.projector.project(flat)
    else:
        projected = flat @ matrix.to(device=flat.device, dtype=flat.dtype).T
    return projected * model.feedback_scale


def gradient_alignment(model: DFAModel, x: torch.Tensor, y: torch.Tensor,
                       loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """Per-layer gradient alignment on one batch (SPEC §4).

    For each hidden layer ``l``, the per-sample cosine between the DFA signal ``(B_l e) ⊙ f'(a_l)`` and the BP
    signal ``δa_l``, computed with the same weights on the same batch, averaged over the batch. ``"total"`` is the
    per-sample cosine over all hidden layers concatenated, averaged over the batch.

    Args:
        model: the DFA model (its mode does not matter: the measurement runs its own BP pass).
        x: ``(n, ...)`` inputs; ``y``: targets for ``loss_fn``.
        loss_fn: ``loss_fn(output, y) -> scalar``.

    Returns:
        ``{layer name: alignment in [-1, 1], ..., "total": ...}``.
    """
    with torch.enable_grad():
        output, pre, post = model.probe(x)
        loss = loss_fn(output, y)
        error, *bp = torch.autograd.grad(loss, [output, *pre], retain_graph=True)
        feedback = feedback_signal(model, error)
        slices = torch.split(feedback, [layer.size for layer in model.hidden], dim=1)
        dfa = [torch.autograd.grad(h, a, grad_outputs=s.reshape(h.shape), retain_graph=True)[0]
               for a, h, s in zip(pre, post, slices, strict=True)]
    result = {layer.name: float(_per_sample_cosine(d, b).mean())
              for layer, d, b in zip(model.hidden, dfa, bp, strict=True)}
    n = x.shape[0]
    result[TOTAL] = float(_per_sample_cosine(torch.cat([d.reshape(n, -1) for d in dfa], 1),
                                             torch.cat([b.reshape(n, -1) for b in bp], 1)).mean())
    return result


def _cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(F.cosine_similarity(u.reshape(1, -1).double(), v.reshape(1, -1).double(), eps=1e-30)[0])


def weight_alignment(model: DFAModel) -> dict[str, float]:
    """Weight alignment (SPEC §4) of every fully connected layer after the first.

    Hidden layer ``l ≥ 2``: ``cos(vec W_l, vec(B_l B_{l-1}ᵀ))``; the output layer (``"output"``):
    ``cos(vec W_L, vec B_{L-1}ᵀ)``, with ``B_l`` the rows of ``B_eff`` that feed layer ``l``. Convolutional layers
    are skipped (their weights and feedback live in different spaces). Returns ``{}`` when the projector exposes no
    effective matrix.
    """
    matrix = model.projector.effective_matrix()
    if matrix is None:
        return {}
    blocks = torch.split(matrix.detach().double(), [layer.size for layer in model.hidden], dim=0)
    result: dict[str, float] = {}
    for prev, layer, b_prev, b in zip(model.hidden, model.hidden[1:], blocks, blocks[1:], strict=False):
        if isinstance(layer.module, nn.Linear) and isinstance(prev.module, nn.Linear):
            result[layer.name] = _cosine(layer.module.weight.detach(), b @ b_prev.T)
    output = model.output_layer
    if isinstance(output, nn.Linear) and isinstance(model.hidden[-1].module, nn.Linear):
        result["output"] = _cosine(output.weight.detach(), blocks[-1].T)
    return result


def cross_seed_cosine(weights: Sequence[torch.Tensor]) -> float:
    """Mean cosine between flattened final weights of runs that share ``B`` but not their initialisation.

    DFA gives large values (degeneracy breaking), BP values near 0. Needs at least two runs.
    """
    if len(weights) < 2:
        raise ValueError(f"cross_seed_cosine needs at least 2 weight tensors, got {len(weights)}")
    values = [_cosine(a, b) for i, a in enumerate(weights) for b in weights[i + 1:]]
    return sum(values) / len(values)
