"""Alignment metrics (SPEC §4): gradient and weight alignment, alignment matrices, cross-seed cosine.

The model-level functions take a :class:`~optodfa.dfa.DFAModel` and leave the parameters' ``.grad`` alone. The
DFA signal is formed with the projector's *effective* matrix ``B_eff`` (what the hardware really applies, without
its noise) when the projector exposes one, and with a real projection otherwise.

The array-level functions (:func:`weight_alignment_of`, :func:`alignment_matrices`, :func:`cross_seed_cosines`)
take plain numpy arrays (anything ``np.asarray`` accepts), so they work on weights read from run files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from optodfa.dfa import DFAModel
from optodfa.fidelity import Fidelity, feedback_fidelity, fidelity, measure_fidelity
from optodfa.validation import check_choice

__all__ = [
    "AlignmentMatrix",
    "Fidelity",
    "alignment_matrices",
    "cross_seed_cosine",
    "cross_seed_cosines",
    "feedback_fidelity",
    "feedback_signal",
    "fidelity",
    "gradient_alignment",
    "linear_weights",
    "measure_fidelity",
    "weight_alignment",
    "weight_alignment_of",
]

TOTAL = "total"
GA_TOTALS = ("all", "no-last")


def _per_sample_cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(n,)`` cosines between rows of ``u`` and ``v`` flattened per sample; 0 where either row is zero.

    Each row is divided by its largest magnitude first, in float64: the BP signal of a network near zero
    initialisation can be ~1e-20 and its float32 squared norm would underflow, leaving the cosine unbounded.
    """
    return F.cosine_similarity(_unit_max(u), _unit_max(v), dim=1, eps=1e-300).clamp(-1.0, 1.0)


def _unit_max(x: torch.Tensor) -> torch.Tensor:
    rows = x.detach().reshape(x.shape[0], -1).double()
    peak = rows.abs().amax(dim=1, keepdim=True)
    return rows / torch.where(peak > 0, peak, torch.ones_like(peak))


def feedback_signal(model: DFAModel, error: torch.Tensor) -> torch.Tensor:
    """Scaled feedback ``scale · B_eff e``, without noise when possible.

    Args:
        error: ``(n, d)`` errors, or ``(n, T…, d)`` for a token model (projected token by token).

    Returns:
        ``(n·T, D)``: one row per sample (per token, sample-major, for token models).
    """
    matrix = model.projector.effective_matrix()
    flat = error.detach().reshape(-1, model.projector.in_features)
    if matrix is None:
        projected = model.projector.project(flat)
    else:
        projected = flat @ matrix.to(device=flat.device, dtype=flat.dtype).T
    return projected * model.feedback_scale


def gradient_alignment(model: DFAModel, x: torch.Tensor, y: torch.Tensor,
                       loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                       total: str = "all", feedback: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       ) -> dict[str, float]:
    """Per-layer gradient alignment on one batch (SPEC §4).

    For each feedback point ``l``, the per-sample cosine between the DFA signal ``(B_l e) ⊙ f'(a_l)`` and the BP
    signal ``δa_l``, computed with the same weights on the same batch, averaged over the batch (for a token model
    a sample is a whole sequence: its ``(T, n_l)`` signals are flattened). ``"total"`` is the per-sample cosine
    over the signals of all hidden layers concatenated, averaged over the batch, as SPEC §4 defines it.

    The authors' reference code forms its total without the last hidden layer (as issue #9 reports); that total
    is ``total="no-last"``. The two differ most early in training and in deep nets whose last hidden layer aligns
    first (the one closest to the output), where leaving it out lowers the total.

    Args:
        model: the DFA model (its mode does not matter: the measurement runs its own BP pass).
        x: ``(n, ...)`` inputs; ``y``: targets for ``loss_fn``.
        loss_fn: ``loss_fn(output, y) -> scalar``.
        total: ``"all"`` (SPEC §4) or ``"no-last"`` (the reference code's convention; needs ≥ 2 hidden layers).
        feedback: ``error (n, d) -> (n, D)`` scaled feedback to align with the BP signal instead of
            :func:`feedback_signal` (e.g. another matrix, or the device's real, noisy projection).

    Returns:
        ``{layer name: alignment in [-1, 1], ..., "total": ...}``.
    """
    check_choice("total", total, GA_TOTALS)
    if total == "no-last" and len(model.hidden) < 2:
        raise ValueError(f"total='no-last' needs at least 2 hidden layers, the model has {len(model.hidden)}")
    with torch.enable_grad():
        output, pre, post = model.probe(x)
        loss = loss_fn(output, y)
        error, *bp = torch.autograd.grad(loss, [output, *pre], retain_graph=True)
        signal = feedback_signal(model, error) if feedback is None else feedback(error.detach())
        slices = torch.split(signal, [layer.size for layer in model.hidden], dim=1)
        dfa = [torch.autograd.grad(h, a, grad_outputs=s.reshape(h.shape), retain_graph=True)[0]
               for a, h, s in zip(pre, post, slices, strict=True)]
    result = {layer.name: float(_per_sample_cosine(d, b).mean())
              for layer, d, b in zip(model.hidden, dfa, bp, strict=True)}
    n = output.shape[0]
    keep = len(dfa) if total == "all" else len(dfa) - 1
    result[TOTAL] = float(_per_sample_cosine(torch.cat([d.reshape(n, -1) for d in dfa[:keep]], 1),
                                             torch.cat([b.reshape(n, -1) for b in bp[:keep]], 1)).mean())
    return result


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine of two arrays flattened, in float64; 0 when either is zero."""
    u, v = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    peaks = np.abs(u).max(initial=0.0), np.abs(v).max(initial=0.0)
    if peaks[0] == 0 or peaks[1] == 0:
        return 0.0
    u, v = u / peaks[0], v / peaks[1]  # scale-free, so tiny weights cannot underflow the norms
    return float(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy()


def weight_alignment_of(weights: Sequence[np.ndarray], feedback: Sequence[np.ndarray], *,
                        names: Sequence[str] | None = None) -> dict[str, float]:
    """Weight alignment (SPEC §4) of a fully connected chain from its weights and feedback blocks.

    Args:
        weights: ``W_1 … W_L``, ``W_l`` of shape ``(n_l, n_{l-1})`` (``W_L``: ``(d, n_{L-1})``).
        feedback: ``B_1 … B_{L-1}``, ``B_l`` of shape ``(n_l, d)``.
        names: the names of layers ``2 … L-1`` (default ``layer2`` …); the last layer is ``"output"``.

    Returns:
        ``{"layer2": cos(W_2, B_2 B_1ᵀ), …, "output": cos(W_L, B_{L-1}ᵀ), "total": …}``, the total being the cosine
        between all those ``W_l`` concatenated and all their targets concatenated. The first layer has none.
    """
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    feedback = [np.asarray(b, dtype=np.float64) for b in feedback]
    _check_chain(weights, feedback)
    names = list(names) if names is not None else [f"layer{i + 2}" for i in range(len(weights) - 2)]
    if len(names) != len(weights) - 2:
        raise ValueError(f"names must name layers 2 … L-1 ({len(weights) - 2} names), got {len(names)}")
    pairs = [(name, weights[i + 1], feedback[i + 1] @ feedback[i].T) for i, name in enumerate(names)]
    pairs.append(("output", weights[-1], feedback[-1].T))
    return _with_total(pairs)


def _with_total(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    result = {name: _cosine(w, target) for name, w, target in pairs}
    if pairs:
        result[TOTAL] = _cosine(np.concatenate([w.ravel() for _, w, _ in pairs]),
                                np.concatenate([t.ravel() for _, _, t in pairs]))
    return result


def weight_alignment(model: DFAModel, matrix: torch.Tensor | None = None) -> dict[str, float]:
    """Weight alignment (SPEC §4) of every fully connected layer after the first, and their total.

    Hidden layer ``l ≥ 2``: ``cos(vec W_l, vec(B_l B_{l-1}ᵀ))``; the output layer (``"output"``):
    ``cos(vec W_L, vec B_{L-1}ᵀ)``, with ``B_l`` the rows of ``B_eff`` that feed layer ``l``; ``"total"``: the
    cosine between all those ``W_l`` concatenated and all their targets concatenated. Layers that are not
    ``nn.Linear`` fed by a linear layer's point (convolutions, points without a known ``layer``) are skipped
    (their weights and feedback live in different spaces). Returns ``{}`` when the projector exposes no effective
    matrix or no layer qualifies. ``matrix``: a ``(D, d)`` matrix to measure against instead of ``B_eff``.
    """
    if matrix is None:
        matrix = model.projector.effective_matrix()
    if matrix is None:
        return {}
    blocks = [_numpy(b) for b in torch.split(matrix, [layer.size for layer in model.hidden], dim=0)]
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for prev, layer, b_prev, b in zip(model.hidden, model.hidden[1:], blocks, blocks[1:], strict=False):
        if isinstance(layer.module, nn.Linear) and isinstance(prev.module, nn.Linear):
            pairs.append((layer.name, _numpy(layer.module.weight), b @ b_prev.T))
    output = model.output_layer
    if isinstance(output, nn.Linear) and isinstance(model.hidden[-1].module, nn.Linear):
        pairs.append(("output", _numpy(output.weight), blocks[-1].T))
    return _with_total(pairs)


def linear_weights(model: DFAModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``([W_1 … W_L], [B_1 … B_{L-1}])`` of a fully connected DFA model, as float64 numpy arrays.

    For :func:`alignment_matrices` and :func:`weight_alignment_of`. ``B_l`` is the block of ``B_eff`` (unscaled)
    that feeds layer ``l``.

    Raises:
        ValueError: a hidden layer or the output layer is not an ``nn.Linear``, or ``B_eff`` is unknown.
    """
    layers = [layer.module for layer in model.hidden] + [model.output_layer]
    if not all(isinstance(m, nn.Linear) for m in layers):
        kinds = ", ".join(type(m).__name__ for m in layers)
        raise ValueError(f"linear_weights needs every hidden and the output layer to be nn.Linear, got {kinds}")
    matrix = model.projector.effective_matrix()
    if matrix is None:
        raise ValueError(f"{type(model.projector).__name__} exposes no effective matrix B_eff")
    blocks = [_numpy(b) for b in torch.split(matrix, [layer.size for layer in model.hidden], dim=0)]
    return [_numpy(m.weight) for m in layers], blocks  # type: ignore[union-attr]


@dataclasses.dataclass(frozen=True)
class AlignmentMatrix:
    """The alignment matrix ``A_l`` of one layer of a deep linear network trained by DFA from zero.

    Attributes:
        name: ``layer1`` … ``layer{L-1}``, ``output``.
        matrix: ``A_1`` ``(d, n_0)``; ``A_l`` ``(d, d)`` for ``l ≥ 2`` and the output layer.
        condition_number: ``σ_max / σ_min`` of ``matrix`` (its smallest dimension's singular values; ``inf`` when
            singular). ``A_l ∝ I`` (condition number 1) is perfect weight alignment.
        residual: ``‖W_l − B_l A_l B_{l-1}ᵀ‖_F / ‖W_l‖_F``: how far ``W_l`` is from the DFA form (0 for a network
            trained by DFA from zero initialisation; 0 when ``W_l = 0``).
    """

    name: str
    matrix: np.ndarray
    condition_number: float
    residual: float


def alignment_matrices(weights: Sequence[np.ndarray], feedback: Sequence[np.ndarray]) -> list[AlignmentMatrix]:
    """Estimate the alignment matrices of a deep linear network (SPEC §4) by pseudo-inverses.

    DFA from zero initialisation keeps ``W_1 = B_1 A_1``, ``W_l = B_l A_l B_{l-1}ᵀ`` and ``W_L = A_L B_{L-1}ᵀ``.
    The estimates ``A_1 = B_1⁺ W_1``, ``A_l = B_l⁺ W_l (B_{l-1}⁺)ᵀ`` and ``A_L = W_L (B_{L-1}⁺)ᵀ`` are exact when
    the ``B_l`` have full column rank ``d`` (``n_l ≥ d``) and ``W_l`` has that form; otherwise they are the
    least-squares fit and ``residual`` says how far off it is.

    Args:
        weights: ``W_1 … W_L`` (``W_l``: ``(n_l, n_{l-1})``).
        feedback: ``B_1 … B_{L-1}`` (``B_l``: ``(n_l, d)``).
    """
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    feedback = [np.asarray(b, dtype=np.float64) for b in feedback]
    _check_chain(weights, feedback)
    pinv = [np.linalg.pinv(b) for b in feedback]  # (d, n_l)
    result = []
    for index, w in enumerate(weights):
        if index == 0:
            a = pinv[0] @ w
            rebuilt = feedback[0] @ a
        elif index == len(weights) - 1:
            a = w @ pinv[-1].T
            rebuilt = a @ feedback[-1].T
        else:
            a = pinv[index] @ w @ pinv[index - 1].T
            rebuilt = feedback[index] @ a @ feedback[index - 1].T
        name = "output" if index == len(weights) - 1 else f"layer{index + 1}"
        norm = np.linalg.norm(w)
        residual = float(np.linalg.norm(w - rebuilt) / norm) if norm > 0 else 0.0
        result.append(AlignmentMatrix(name, a, _condition_number(a), residual))
    return result


def _condition_number(a: np.ndarray) -> float:
    singular = np.linalg.svd(a, compute_uv=False)
    return float(singular[0] / singular[-1]) if singular[-1] > 0 else float("inf")


def _check_chain(weights: Sequence[np.ndarray], feedback: Sequence[np.ndarray]) -> None:
    """Shapes of ``W_1 … W_L`` and ``B_1 … B_{L-1}`` that chain, with an error naming the first that does not."""
    if len(weights) < 2 or len(feedback) != len(weights) - 1:
        raise ValueError(f"need weights W_1 … W_L (L ≥ 2) and feedback B_1 … B_(L-1); got {len(weights)} weight "
                         f"and {len(feedback)} feedback matrices")
    for i, m in enumerate([*weights, *feedback]):
        if m.ndim != 2:
            label = f"W_{i + 1}" if i < len(weights) else f"B_{i - len(weights) + 1}"
            raise ValueError(f"{label} must be 2-D, got shape {m.shape}")
    d = feedback[0].shape[1]
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise ValueError(f"W_{i + 1} has shape {weights[i].shape} but W_{i} has {weights[i - 1].shape[0]} rows")
    for i, b in enumerate(feedback):
        if b.shape != (weights[i].shape[0], d):
            raise ValueError(f"B_{i + 1} must be ({weights[i].shape[0]}, {d}) to feed W_{i + 1} "
                             f"{weights[i].shape}, got {b.shape}")
    if weights[-1].shape[0] != d:
        raise ValueError(f"W_{len(weights)} (output) has {weights[-1].shape[0]} rows but the feedback has d={d}")


def cross_seed_cosine(weights: Sequence[torch.Tensor | np.ndarray]) -> float:
    """Mean cosine between flattened final weights of runs that share ``B`` but not their initialisation.

    DFA gives large values (degeneracy breaking), BP values near 0. Needs at least two runs.
    """
    if len(weights) < 2:
        raise ValueError(f"cross_seed_cosine needs at least 2 weight tensors, got {len(weights)}")
    arrays = [_numpy(w) if isinstance(w, torch.Tensor) else np.asarray(w, dtype=np.float64) for w in weights]
    values = [_cosine(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:]]
    return sum(values) / len(values)


def cross_seed_cosines(runs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Cross-seed cosine per layer and in total, from the weights of several runs (numpy arrays by layer name).

    Per layer: the mean over pairs of runs of the cosine between that layer's flattened weights. ``"total"``: the
    same with each run's layers flattened and concatenated (in the order of the first run's keys).

    Args:
        runs: one mapping per run, ``{layer name: array}``; every run must hold the same names and shapes.
    """
    if len(runs) < 2:
        raise ValueError(f"cross_seed_cosines needs at least 2 runs, got {len(runs)}")
    names = list(runs[0])
    if not names or TOTAL in names:
        raise ValueError(f"each run must map layer names (not {TOTAL!r}) to arrays, got names {names}")
    arrays = [{name: np.asarray(run[name], dtype=np.float64) for name in run} for run in runs]
    for k, run in enumerate(arrays[1:], start=1):
        if set(run) != set(names):
            raise ValueError(f"run {k} has layers {sorted(run)}, run 0 has {sorted(names)}")
        for name in names:
            if run[name].shape != arrays[0][name].shape:
                raise ValueError(f"layer {name!r} has shape {run[name].shape} in run {k} and "
                                 f"{arrays[0][name].shape} in run 0")
    result = {name: cross_seed_cosine([run[name] for run in arrays]) for name in names}
    result[TOTAL] = cross_seed_cosine([np.concatenate([run[name].ravel() for name in names]) for run in arrays])
    return result
