"""Direct Feedback Alignment for PyTorch: feedback points, the output hook and model conversion.

How a DFA step runs (see ``docs/architecture.md``):

* Each hidden layer ends in a :class:`FeedbackPoint` placed after its activation. In DFA mode the point hands the
  next layer a *detached* copy of its activation ``h_l``, so no gradient flows back between layers and autograd
  never computes a gradient with respect to any hidden layer's input (the work that makes BP dearer).
* The network output goes through :class:`_FeedbackOutput`, an ``autograd.Function`` that also takes every
  ``h_l`` as an input. Its backward receives the output error ``e = ∂ℓ/∂ŷ``, calls the projector once for the
  whole batch and all layers, and returns the slice ``scale · (B_l e)`` as the gradient of ``h_l``. Autograd then
  multiplies by ``f'(a_l)`` through the activation and forms ``(B_l e ⊙ f'(a_l)) h_{l-1}ᵀ`` for ``W_l``, in the
  same single backward pass. The last layer receives its true gradient ``e``.
* In BP mode the same modules pass activations through unchanged, so one model trains or is measured both ways.

Nothing here knows what kind of projector it holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from optodfa.device import NonFiniteError, Projector
from optodfa.registry import build_projector
from optodfa.validation import check_choice, check_int, check_real

WEIGHTED = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity)
PASSTHROUGH = (nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout)
MODES = ("dfa", "bp")
NONFINITE_POLICIES = ("raise", "skip")


class _Context:
    """State shared by the feedback points of one model during one forward pass."""

    def __init__(self) -> None:
        self.mode = "dfa"
        self.detach = False  # set per forward: DFA training detaches, BP and probes do not
        self.record_pre = False  # probes keep (a_l, h_l) pairs for alignment measurements
        self.points: list[torch.Tensor] = []
        self.pre_activations: list[torch.Tensor] = []


class FeedbackPoint(nn.Module):
    """Wraps a hidden layer's activation: computes ``h = f(a)`` and marks ``h`` as a DFA feedback point.

    Args:
        activation: the activation module ``f`` (``nn.Identity`` when the layer has none).
        name: layer name used in run files (``layer1``, ``layer2``, ...).
    """

    def __init__(self, activation: nn.Module, name: str, context: _Context) -> None:
        super().__init__()
        self.activation = activation
        self.name = name
        self._context = context

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        context = self._context
        if context.record_pre:
            context.pre_activations.append(a)
        h = self.activation(a)
        context.points.append(h)
        return h.detach() if context.detach else h

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


@dataclasses.dataclass(frozen=True)
class HiddenLayer:
    """A hidden layer as DFA sees it: its name, weighted module and feedback shape ``(n_l,)`` or ``(C, H, W)``."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class _FeedbackOutput(torch.autograd.Function):
    """Identity on the output ``ŷ``; its backward sends ``scale · B_l e`` to every feedback point."""

    @staticmethod
    def forward(ctx: Any, model: DFAModel, output: torch.Tensor, *points: torch.Tensor) -> torch.Tensor:
        ctx.model = model
        ctx.shapes = [p.shape for p in points]
        return output.clone()

    @staticmethod
    def backward(ctx: Any, error: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        model: DFAModel = ctx.model
        feedback = model._feedback(error)
        if feedback is None:  # a skipped batch: no gradient flows, so nothing reaches any parameter
            return (None, None, *(None for _ in ctx.shapes))
        slices = torch.split(feedback, [layer.size for layer in model.hidden], dim=1)
        grads = [s.reshape(shape) for s, shape in zip(slices, ctx.shapes, strict=True)]
        return (None, error, *grads)


class DFAModel(nn.Module):
    """A converted ``nn.Sequential`` trained by DFA through a projector (or by BP, ``mode="bp"``).

    Build it with :func:`convert`. Parameters are shared with the original model, so any optimiser built on either
    trains both.

    Attributes:
        hidden: the hidden layers in order, with their feedback shapes.
        projector: computes ``B e``; ``in_features`` = output width ``d``, ``out_features`` = ``D``.
        feedback_scale: factor applied to ``B e`` (sets the effective learning rate of the hidden layers).
        mode: ``"dfa"`` or ``"bp"``.
        on_nonfinite: ``"raise"`` (default) or ``"skip"``: what a non-finite error does.
        step: training forward passes so far, DFA or BP (names the step in errors).
        skipped_batches: batches skipped for non-finite errors.
    """

    def __init__(self, network: nn.Sequential, hidden: Sequence[HiddenLayer], projector: Projector,
                 context: _Context, *, feedback_scale: float, mode: str = "dfa",
                 on_nonfinite: str = "raise") -> None:
        super().__init__()
        self.network = network
        self.hidden = tuple(hidden)
        self.projector = projector
        self._context = context
        self.feedback_scale = check_real("feedback_scale", feedback_scale, low=0.0, low_open=True)
        self.mode = mode
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, NONFINITE_POLICIES)
        self.step = 0
        self.skipped_batches = 0
        self.last_batch_skipped = False

    @property
    def mode(self) -> str:
        return self._context.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._context.mode = check_choice("mode", value, MODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self._context
        context.points, context.pre_activations = [], []
        training_step = self.training and torch.is_grad_enabled()
        dfa_step = training_step and self.mode == "dfa"
        context.detach = dfa_step
        try:
            output = self.network(x)
        finally:
            context.detach = False
        self.step += training_step
        self.last_batch_skipped = False
        if not dfa_step:
            return output
        return _FeedbackOutput.apply(self, output, *context.points)

    def _feedback(self, error: torch.Tensor) -> torch.Tensor | None:
        """``(n, D)`` scaled projection of ``error``, or ``None`` when a non-finite batch is skipped."""
        flat = error.detach().reshape(error.shape[0], -1)
        try:
            feedback = self.projector.project(flat)
        except NonFiniteError as exc:
            if self.on_nonfinite == "raise":
                raise NonFiniteError(f"training step {self.step}: {exc} (use on_nonfinite='skip' / "
                                     f"--on-nonfinite skip to skip such batches)") from exc
            self.skipped_batches += 1
            self.last_batch_skipped = True
            return None
        return feedback * self.feedback_scale

    def probe(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Forward without detaching, keeping ``(a_l, h_l)`` for alignment measurements.

        Returns:
            output ``(n, d)``, pre-activations ``a_l`` and activations ``h_l`` of every hidden layer, all attached
            to the graph (BP flows through them).
        """
        context = self._context
        context.points, context.pre_activations = [], []
        context.record_pre = True
        try:
            output = self.network(x)
        finally:
            context.record_pre = False
        return output, list(context.pre_activations), list(context.points)

    @property
    def output_layer(self) -> nn.Module:
        return [m for m in self.network if isinstance(m, WEIGHTED)][-1]

    def describe(self) -> dict[str, Any]:
        return {"hidden": {layer.name: list(layer.shape) for layer in self.hidden},
                "feedback_scale": self.feedback_scale, "mode": self.mode, "on_nonfinite": self.on_nonfinite}


def default_feedback_scale(hidden: Sequence[HiddenLayer]) -> float:
    """``1/sqrt(n_max)`` with ``n_max`` the widest hidden layer (flattened), as in the paper's reference code."""
    return 1.0 / math.sqrt(max(layer.size for layer in hidden))


def convert(model: nn.Sequential, input_shape: Sequence[int], *, projector: Projector | str = "digital",
            feedback_seed: int = 0, noise_seed: int | None = None, profile: str | None = None,
            overrides: dict[str, Any] | None = None,
            feedback_scale: float | str = "auto", mode: str = "dfa", on_nonfinite: str = "raise",
            ) -> tuple[DFAModel, list[str]]:
    """Convert an ``nn.Sequential`` of Linear/Conv2d/activation/flatten (pooling, dropout) layers to DFA.

    Every weighted layer but the last becomes a hidden layer whose activation (the next activation module, or
    the identity if another weighted layer comes first) is wrapped in a :class:`FeedbackPoint`. The last weighted
    layer is the output layer and is trained with its true gradient.

    Args:
        model: the network; its modules are reused, not copied.
        input_shape: shape of one input sample, e.g. ``(784,)`` or ``(3, 32, 32)`` (used for a dry run that
            finds the feedback shapes).
        projector: a built :class:`Projector` (its ``in_features`` must equal the output width and its
            ``out_features`` the summed hidden widths) or a registered device name.
        feedback_seed, noise_seed, profile, overrides: passed to the registry when ``projector`` is a name.
        feedback_scale: ``"auto"`` (``1/sqrt(n_max)``) or a positive number.
        mode: ``"dfa"`` or ``"bp"``; switchable later through ``model.mode``.
        on_nonfinite: ``"raise"`` or ``"skip"``.

    Returns:
        The DFA model and a report: one line per layer saying what was converted.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"convert expects an nn.Sequential, got {type(model).__name__}")
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or not input_shape:
        raise TypeError(f"input_shape must be the shape of one sample, e.g. (784,) or (1, 28, 28), got "
                        f"{input_shape!r}")
    input_shape = tuple(check_int("input_shape entry", size, low=1) for size in input_shape)
    modules = list(model)
    weighted = [i for i, m in enumerate(modules) if isinstance(m, WEIGHTED)]
    if len(weighted) < 2:
        raise ValueError(f"convert needs at least two weighted layers (Linear/Conv2d), found {len(weighted)}")
    for i, module in enumerate(modules):
        if not isinstance(module, WEIGHTED + ACTIVATIONS + PASSTHROUGH):
            allowed = ", ".join(t.__name__ for t in WEIGHTED + ACTIVATIONS + PASSTHROUGH)
            raise TypeError(f"cannot convert module {i} ({type(module).__name__}); supported: {allowed}")
    if not isinstance(modules[-1], WEIGHTED):
        raise ValueError(f"the last module must be the output layer (Linear/Conv2d), got {type(modules[-1]).__name__}")

    context = _Context()
    new_modules: list[nn.Module] = []
    points: list[tuple[str, nn.Module, nn.Module]] = []  # (name, weighted layer, activation)
    i = 0
    while i < len(modules):
        module = modules[i]
        new_modules.append(module)
        if isinstance(module, WEIGHTED) and i != weighted[-1]:
            follower = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(follower, ACTIVATIONS):
                activation, i = follower, i + 1
            else:
                activation = nn.Identity()
            name = f"layer{len(points) + 1}"
            new_modules.append(FeedbackPoint(activation, name, context))
            points.append((name, module, activation))
        i += 1

    network = nn.Sequential(*new_modules)
    parameter = next(model.parameters())
    with torch.no_grad():
        sample = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
        try:
            output = network(sample)
        except RuntimeError as exc:
            raise ValueError(f"dry run with input_shape={tuple(input_shape)} failed: {exc}") from exc
    hidden = [HiddenLayer(name, module, tuple(h.shape[1:]))
              for (name, module, _), h in zip(points, context.points, strict=True)]
    context.points = []
    d = math.prod(output.shape[1:])
    total = sum(layer.size for layer in hidden)
    report = [f"{layer.name}: {layer.module} -> {type(activation).__name__}: DFA feedback point, "
              f"{layer.size} units, shape {layer.shape}"
              for layer, (_, _, activation) in zip(hidden, points, strict=True)]
    report.append(f"output: {modules[weighted[-1]]}: trained with its true gradient")

    if isinstance(projector, str):
        projector = build_projector(projector, d, total, feedback_seed=feedback_seed, noise_seed=noise_seed,
                                    profile=profile,
                                    overrides=overrides or {}, device=parameter.device, dtype=parameter.dtype)
    elif not isinstance(projector, Projector):
        raise TypeError(f"projector must be a Projector or a device name, got {type(projector).__name__}")
    if (projector.in_features, projector.out_features) != (d, total):
        raise ValueError(f"projector maps {projector.in_features} -> {projector.out_features} features, but the "
                         f"model needs d={d} (output width) -> D={total} (summed hidden widths)")
    scale = default_feedback_scale(hidden) if feedback_scale == "auto" else feedback_scale
    report.append(f"feedback: {type(projector).__name__} d={d} -> D={total}, scale {scale:.4g}")
    dfa_model = DFAModel(network, hidden, projector, context, feedback_scale=scale, mode=mode,
                         on_nonfinite=on_nonfinite)
    return dfa_model, report
