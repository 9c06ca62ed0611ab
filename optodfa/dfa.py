"""Direct Feedback Alignment for PyTorch: feedback points, the output Function, and wrapping any model.

How a DFA step runs (see ``docs/architecture.md``):

* Each hidden layer ends in a :class:`FeedbackPoint` (alias :data:`Feedback`) that the user places in the model's
  ``forward`` after the layer's activation, or that :func:`convert` inserts in an ``nn.Sequential``. In DFA mode
  the point hands the rest of the network a *detached* copy of its activation ``h_l``, so no gradient flows back
  past it and autograd never computes a gradient with respect to what came before (the work that makes BP dearer).
* The network output goes through :class:`_FeedbackOutput`, an ``autograd.Function`` that also takes every
  ``h_l`` as an input. Its backward receives the output error ``e = ∂ℓ/∂ŷ``, calls the projector once for the
  whole batch and all points, and returns the slice ``scale · (B_l e)``, reshaped to ``h_l``'s shape, as the
  gradient of ``h_l``. Autograd then carries it through the activation (``⊙ f'(a_l)``) and on to every parameter
  between the point and the previous points, in the same single backward pass. The layers after the last point
  (the output layer) receive their true gradient.
* Token models: with ``token_dims = k`` the output is ``(n, T_1..T_k, d)`` and every point ``(n, T_1..T_k, …)``;
  the error is projected token by token (``(n·T, d)`` rows, still one projector call) and each token gets its own
  feedback.
* In BP mode, and whenever the model is not inside :class:`DFAModel`, the points are plain activations, so one
  model trains or is measured both ways.

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
RESERVED_NAMES = ("total", "output")


class _Context:
    """State shared by the feedback points of one model during one forward pass."""

    def __init__(self) -> None:
        self.mode = "dfa"
        self.active = False  # inside a DFA training forward or a probe: points record; otherwise plain activations
        self.detach = False  # DFA training detaches, probes do not
        self.record_pre = False  # probes keep (a_l, h_l) pairs for alignment measurements
        self.discovering = False  # the dry run that finds the points, their order and shapes
        self.discovered: list[tuple[FeedbackPoint, torch.Tensor]] = []
        self.points: list[torch.Tensor | None] = []
        self.pre_activations: list[torch.Tensor | None] = []


class FeedbackPoint(nn.Module):
    """Marks a hidden activation as a DFA feedback point: computes ``h = f(a)`` and, in DFA, receives ``B_l e``.

    Place one in your model's ``forward`` after each hidden layer's weights::

        self.fc1, self.act1 = nn.Linear(784, 256), optodfa.Feedback(nn.Tanh())
        ...
        h = self.act1(self.fc1(x))

    Outside a :class:`DFAModel` (or in BP mode) it is just ``activation``. Inside one, in a DFA training step, it
    hands on ``h.detach()`` and receives ``scale · B_l e`` (reshaped to ``h``'s shape) as the gradient of ``h``.
    A point may be reached once per forward pass.

    Args:
        activation: the activation module ``f``; ``None`` for the identity (a linear layer, a residual stream).
        name: the name used in run files and reports; ``None`` takes the point's attribute path in the wrapped
            model (``convert`` names them ``layer1``, ``layer2``, …).
        layer: the weighted module (``nn.Linear``) whose output ``a_l = W_l h_{l-1}`` this point takes, when that
            is so; weight alignment (SPEC §4) needs it and skips points without it. Not registered as a submodule.
    """

    def __init__(self, activation: nn.Module | None = None, *, name: str | None = None,
                 layer: nn.Module | None = None) -> None:
        super().__init__()
        if activation is not None and not isinstance(activation, nn.Module):
            raise TypeError(f"activation must be an nn.Module or None, got {type(activation).__name__}")
        if name is not None and (not isinstance(name, str) or not name or name in RESERVED_NAMES or "/" in name):
            raise ValueError(f"name must be a non-empty string without '/', other than {', '.join(RESERVED_NAMES)}; "
                             f"got {name!r}")
        if layer is not None and not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module or None, got {type(layer).__name__}")
        self.activation = activation if activation is not None else nn.Identity()
        self.name = name
        self._layer = (layer,)  # a tuple, so that nn.Module does not register the layer a second time
        self._context: _Context | None = None
        self._slot = -1

    @property
    def layer(self) -> nn.Module | None:
        return self._layer[0]

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        context = self._context
        if context is None or not context.active:
            return self.activation(a)
        if context.discovering:
            return self._discover(context, a)
        slot = self._slot
        if context.points[slot] is not None:
            raise RuntimeError(f"feedback point {self.name!r} was reached twice in one forward pass; each point "
                               f"may be used once (make one point per use)")
        if context.record_pre:
            context.pre_activations[slot] = a
        h = self.activation(a)
        context.points[slot] = h
        return h.detach() if context.detach else h

    def _discover(self, context: _Context, a: torch.Tensor) -> torch.Tensor:
        if any(point is self for point, _ in context.discovered):
            raise ValueError(f"feedback point {self.name or type(self).__name__!r} was reached twice in one "
                             f"forward pass; each point may be used once (make one point per use)")
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"a feedback point takes a tensor, got {type(a).__name__}")
        h = self.activation(a)
        context.discovered.append((self, h))
        return h

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


Feedback = FeedbackPoint


@dataclasses.dataclass(frozen=True)
class HiddenLayer:
    """A feedback point as DFA sees it.

    Attributes:
        name: name in run files and reports.
        module: the weighted layer feeding the point (``convert``, or ``FeedbackPoint(layer=…)``), else ``None``.
        shape: feedback shape of one sample (one token for token models): ``(n_l,)``, ``(C, H, W)``, …
    """

    name: str
    module: nn.Module | None
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
        # Rows of `feedback` are samples (or tokens, in sample-major order), so each slice reshapes to its point.
        slices = torch.split(feedback, [layer.size for layer in model.hidden], dim=1)
        grads = [s.reshape(shape) for s, shape in zip(slices, ctx.shapes, strict=True)]
        return (None, error, *grads)


class DFAModel(nn.Module):
    """A model with feedback points, trained by DFA through a projector (or by BP, ``mode="bp"``).

    Build it with :meth:`from_module` (any ``nn.Module`` whose ``forward`` uses :class:`FeedbackPoint`) or with
    :func:`convert` (an ``nn.Sequential``). Parameters are shared with the original model, so any optimiser built
    on either trains both.

    Attributes:
        network: the wrapped module.
        hidden: the feedback points in forward order, with their feedback shapes.
        projector: computes ``B e``; ``in_features`` = output width ``d``, ``out_features`` = ``D`` (summed sizes).
        feedback_scale: factor applied to ``B e`` (sets the effective learning rate of the hidden layers).
        token_dims: axes between the batch axis and the features that index tokens (0: one error per sample).
        mode: ``"dfa"`` or ``"bp"``.
        on_nonfinite: ``"raise"`` (default) or ``"skip"``: what a non-finite error does.
        step: training forward passes so far, DFA or BP (names the step in errors).
        skipped_batches: batches skipped for non-finite errors.
        report: one line per point saying what was found, then the output and the feedback.
    """

    def __init__(self, network: nn.Module, hidden: Sequence[HiddenLayer], projector: Projector,
                 context: _Context, *, feedback_scale: float, mode: str = "dfa", on_nonfinite: str = "raise",
                 token_dims: int = 0, output_layer: nn.Module | None = None, report: Sequence[str] = ()) -> None:
        super().__init__()
        self.network = network
        self.hidden = tuple(hidden)
        self.projector = projector
        self._context = context
        self.feedback_scale = check_real("feedback_scale", feedback_scale, low=0.0, low_open=True)
        self.mode = mode
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, NONFINITE_POLICIES)
        self.token_dims = token_dims
        self._output_layer = (output_layer,)  # a tuple: not registered twice
        self.report = list(report)
        self.step = 0
        self.skipped_batches = 0
        self.last_batch_skipped = False

    @classmethod
    def from_module(cls, module: nn.Module, example_input: torch.Tensor, *, projector: Projector | str = "digital",
                    token_dims: int = 0, output_layer: nn.Module | None = None, feedback_seed: int = 0,
                    noise_seed: int | None = None, profile: str | None = None,
                    overrides: dict[str, Any] | None = None, feedback_scale: float | str = "auto",
                    mode: str = "dfa", on_nonfinite: str = "raise") -> DFAModel:
        """Wrap any module whose ``forward`` passes its hidden activations through :class:`FeedbackPoint` s.

        A dry run on ``example_input`` (in eval mode, without gradients) finds the points, their order and their
        shapes; every point the module holds must be reached. The module is reused, not copied; its points are
        bound to the new model (a module is trained by one DFAModel at a time).

        Args:
            module: the network; its ``forward(x)`` returns the output ``ŷ`` as one tensor.
            example_input: one input batch (any batch size), e.g. ``(1, 784)`` floats or ``(1, T)`` token ids.
            projector: a built :class:`Projector` (``in_features`` = ``d``, ``out_features`` = summed point
                sizes) or a registered device name.
            token_dims: 0 (the output is ``(n, …)``, flattened to ``d``), or ``k ≥ 1``: the output is
                ``(n, T_1..T_k, d)``, each point ``(n, T_1..T_k, …)``, and every token gets its own feedback.
            output_layer: the last weighted layer, for the output term of weight alignment (optional).
            feedback_seed, noise_seed, profile, overrides: passed to the registry when ``projector`` is a name.
            feedback_scale: ``"auto"`` (``1/sqrt(n_max)``, ``n_max`` the largest point size) or a positive number.
            mode: ``"dfa"`` or ``"bp"``; switchable later through ``model.mode``.
            on_nonfinite: ``"raise"`` or ``"skip"``.

        Raises:
            ValueError: no feedback point, a point not reached or reached twice, shapes that disagree with the
                token axes, or a projector whose sizes disagree with the points (names each point and size).
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"from_module expects an nn.Module, got {type(module).__name__}")
        if not isinstance(example_input, torch.Tensor):
            raise TypeError(f"example_input must be a torch.Tensor batch, got {type(example_input).__name__}")
        points = [(path, m) for path, m in module.named_modules() if isinstance(m, FeedbackPoint)]
        if not points:
            raise ValueError(f"{type(module).__name__} has no feedback point: pass each hidden activation through "
                             f"optodfa.Feedback(activation) in its forward (or use convert() for an nn.Sequential)")
        names = {id(m): m.name or path for path, m in points}
        return _build(module, [m for _, m in points], names, example_input, what=f"example_input of shape "
                      f"{tuple(example_input.shape)}", projector=projector, token_dims=token_dims,
                      output_layer=output_layer, feedback_seed=feedback_seed, noise_seed=noise_seed, profile=profile,
                      overrides=overrides, feedback_scale=feedback_scale, mode=mode, on_nonfinite=on_nonfinite)

    @property
    def mode(self) -> str:
        return self._context.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._context.mode = check_choice("mode", value, MODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self._context
        training_step = self.training and torch.is_grad_enabled()
        dfa_step = training_step and self.mode == "dfa"
        context.points = [None] * len(self.hidden)
        context.active = context.detach = dfa_step
        try:
            output = self.network(x)
        finally:
            context.active = context.detach = False
        self.step += training_step
        self.last_batch_skipped = False
        if not dfa_step:
            return output
        points = self._reached(context.points, output)
        return _FeedbackOutput.apply(self, output, *points)

    def _reached(self, points: list[torch.Tensor | None], output: torch.Tensor) -> list[torch.Tensor]:
        """The points of one pass, checked: all reached, with the output's leading axes and their own shape."""
        lead = output.shape[:1 + self.token_dims]
        for layer, h in zip(self.hidden, points, strict=True):
            if h is None:
                raise RuntimeError(f"feedback point {layer.name!r} was not reached in this forward pass; DFA "
                                   f"needs every point in every pass")
            if h.shape[:1 + self.token_dims] != lead or h.shape[1 + self.token_dims:] != layer.shape:
                raise RuntimeError(f"feedback point {layer.name!r} has shape {tuple(h.shape)}, expected "
                                   f"{(*lead, *layer.shape)} (output {tuple(output.shape)}, "
                                   f"token_dims={self.token_dims})")
        return points  # type: ignore[return-value]

    def _feedback(self, error: torch.Tensor) -> torch.Tensor | None:
        """``(n·T, D)`` scaled projection of ``error``, or ``None`` when a non-finite batch is skipped."""
        flat = error.detach().reshape(-1, self.projector.in_features)
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
            output ``(n, …)``, pre-activations ``a_l`` and activations ``h_l`` of every feedback point (in the
            order of :attr:`hidden`), all attached to the graph (BP flows through them).
        """
        context = self._context
        context.points = [None] * len(self.hidden)
        context.pre_activations = [None] * len(self.hidden)
        context.active = context.record_pre = True
        try:
            output = self.network(x)
        finally:
            context.active = context.record_pre = False
        points = self._reached(context.points, output)
        pre = list(context.pre_activations)
        context.points, context.pre_activations = [], []
        return output, pre, points  # type: ignore[return-value]

    @property
    def output_layer(self) -> nn.Module | None:
        """The last weighted layer (trained with its true gradient), when known."""
        return self._output_layer[0]

    def describe(self) -> dict[str, Any]:
        return {"hidden": {layer.name: list(layer.shape) for layer in self.hidden},
                "feedback_scale": self.feedback_scale, "mode": self.mode, "on_nonfinite": self.on_nonfinite,
                "token_dims": self.token_dims}


def default_feedback_scale(hidden: Sequence[HiddenLayer]) -> float:
    """``1/sqrt(n_max)`` with ``n_max`` the widest feedback point (flattened), as in the paper's reference code."""
    return 1.0 / math.sqrt(max(layer.size for layer in hidden))


def convert(model: nn.Sequential, input_shape: Sequence[int], *, projector: Projector | str = "digital",
            feedback_seed: int = 0, noise_seed: int | None = None, profile: str | None = None,
            overrides: dict[str, Any] | None = None,
            feedback_scale: float | str = "auto", mode: str = "dfa", on_nonfinite: str = "raise",
            ) -> tuple[DFAModel, list[str]]:
    """Convert an ``nn.Sequential`` of Linear/Conv2d/activation/flatten (pooling, dropout) layers to DFA.

    A shortcut for :meth:`DFAModel.from_module`: every weighted layer but the last becomes a hidden layer whose
    activation (the next activation module, or the identity if another weighted layer comes first) is wrapped in
    a :class:`FeedbackPoint` named ``layer1``, ``layer2``, … The last weighted layer is the output layer and is
    trained with its true gradient.

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
        The DFA model and a report: one line per layer saying what was converted (also ``model.report``).
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"convert expects an nn.Sequential, got {type(model).__name__}; for any other module "
                        f"place optodfa.Feedback points in its forward and use DFAModel.from_module")
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

    new_modules: list[nn.Module] = []
    points: list[FeedbackPoint] = []
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
            point = FeedbackPoint(activation, name=f"layer{len(points) + 1}", layer=module)
            new_modules.append(point)
            points.append(point)
        i += 1

    network = nn.Sequential(*new_modules)
    parameter = next(model.parameters())
    sample = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    dfa_model = _build(network, points, {id(p): p.name for p in points}, sample,
                       what=f"input_shape={tuple(input_shape)}", projector=projector, token_dims=0,
                       output_layer=modules[weighted[-1]], feedback_seed=feedback_seed, noise_seed=noise_seed,
                       profile=profile, overrides=overrides, feedback_scale=feedback_scale, mode=mode,
                       on_nonfinite=on_nonfinite)
    return dfa_model, dfa_model.report


def _build(network: nn.Module, points: Sequence[FeedbackPoint], names: dict[int, str], example: torch.Tensor, *,
           what: str, projector: Projector | str, token_dims: int, output_layer: nn.Module | None,
           feedback_seed: int, noise_seed: int | None, profile: str | None, overrides: dict[str, Any] | None,
           feedback_scale: float | str, mode: str, on_nonfinite: str) -> DFAModel:
    """Bind ``points`` to a new context, find their order and shapes by a dry run, then attach the projector."""
    token_dims = check_int("token_dims", token_dims, low=0)
    context = _Context()
    for point in points:
        point._context, point._slot = context, -1
    output = _dry_run(network, context, example, what)
    discovered = context.discovered
    context.discovered = []
    reached = {id(point) for point, _ in discovered}
    missing = [names[id(p)] for p in points if id(p) not in reached]
    if missing:
        raise ValueError(f"feedback point(s) {', '.join(map(repr, missing))} not reached by forward on {what}; "
                         f"every point the model holds must be used in every pass")
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model must return one tensor (the output ŷ), got {type(output).__name__}")
    if output.ndim < 2 + token_dims or (token_dims and output.ndim != 2 + token_dims):
        want = "(n, d) or (n, ...)" if token_dims == 0 else f"(n, {', '.join(['T'] * token_dims)}, d)"
        raise ValueError(f"with token_dims={token_dims} the output must be {want}, got {tuple(output.shape)}")
    lead = tuple(output.shape[:1 + token_dims])
    hidden: list[HiddenLayer] = []
    for slot, (point, h) in enumerate(discovered):
        name = names[id(point)]
        if tuple(h.shape[:1 + token_dims]) != lead or h.ndim == 1 + token_dims:
            raise ValueError(f"feedback point {name!r} has shape {tuple(h.shape)}, but the output "
                             f"{tuple(output.shape)} with token_dims={token_dims} needs points of shape "
                             f"{(*lead, '...')} with at least one feature axis")
        point._slot = slot
        hidden.append(HiddenLayer(name, point.layer, tuple(h.shape[1 + token_dims:])))
    duplicates = sorted({layer.name for layer in hidden if [h.name for h in hidden].count(layer.name) > 1})
    if duplicates:
        raise ValueError(f"feedback point names must be unique, got {', '.join(map(repr, duplicates))} twice")

    d = math.prod(output.shape[1 + token_dims:])
    total = sum(layer.size for layer in hidden)
    per = "per token" if token_dims else "per sample"
    report = [f"{layer.name}: {_describe_point(layer, point)}: DFA feedback point, {layer.size} units {per}, "
              f"shape {layer.shape}" for layer, (point, _) in zip(hidden, discovered, strict=True)]
    report.append(f"output: {output_layer if output_layer is not None else 'the layers after the last point'}: "
                  f"trained with its true gradient")
    if isinstance(projector, str):
        parameter = next(network.parameters(), None)
        device = parameter.device if parameter is not None else output.device
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else output.dtype
        projector = build_projector(projector, d, total, feedback_seed=feedback_seed, noise_seed=noise_seed,
                                    profile=profile, overrides=overrides or {}, device=device, dtype=dtype)
    elif not isinstance(projector, Projector):
        raise TypeError(f"projector must be a Projector or a device name, got {type(projector).__name__}")
    if (projector.in_features, projector.out_features) != (d, total):
        sizes = ", ".join(f"{layer.name}={layer.size}" for layer in hidden)
        raise ValueError(f"projector maps {projector.in_features} -> {projector.out_features} features, but the "
                         f"model needs d={d} (output width) -> D={total} (summed hidden widths: {sizes})")
    scale = default_feedback_scale(hidden) if feedback_scale == "auto" else feedback_scale
    report.append(f"feedback: {type(projector).__name__} d={d} -> D={total}, scale {scale:.4g}"
                  + (f", per token (token_dims={token_dims})" if token_dims else ""))
    return DFAModel(network, hidden, projector, context, feedback_scale=scale, mode=mode, on_nonfinite=on_nonfinite,
                    token_dims=token_dims, output_layer=output_layer, report=report)


def _dry_run(network: nn.Module, context: _Context, example: torch.Tensor, what: str) -> Any:
    """Run ``network`` once in eval mode without gradients, recording the points it reaches in order."""
    modes = {m: m.training for m in network.modules()}
    network.eval()  # no dropout draw, no batch-norm statistics update
    context.active = context.discovering = True
    try:
        with torch.no_grad():
            return network(example)
    except RuntimeError as exc:
        raise ValueError(f"dry run with {what} failed: {exc}") from exc
    finally:
        context.active = context.discovering = False
        for m, training in modes.items():
            m.training = training


def _describe_point(layer: HiddenLayer, point: FeedbackPoint) -> str:
    activation = type(point.activation).__name__
    return f"{layer.module} -> {activation}" if layer.module is not None else activation
