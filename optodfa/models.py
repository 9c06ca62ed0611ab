"""Networks that the CLI and the experiments build by name (plain ``nn.Sequential``, converted by ``dfa.convert``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from optodfa.validation import check_choice, check_int

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
MODELS = ("mlp",)


def mlp(input_shape: Sequence[int], hidden: Sequence[int], num_classes: int, *, activation: str = "tanh",
        bias: bool = True) -> nn.Sequential:
    """A fully connected network ``input -> hidden[0] -> ... -> num_classes``.

    Args:
        input_shape: shape of one sample; flattened first if it has more than one axis.
        hidden: widths of the hidden layers (at least one).
        num_classes: output width ``d``.
        activation: ``"tanh"`` or ``"relu"``.
        bias: whether every Linear layer has a bias.
    """
    check_choice("activation", activation, ACTIVATIONS)
    if len(hidden) == 0:
        raise ValueError("hidden must list at least one hidden width, got none")
    widths = [check_int(f"hidden[{i}]", w, low=1) for i, w in enumerate(hidden)]
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    previous = math.prod(input_shape)
    for width in widths:
        layers += [nn.Linear(previous, width, bias=bias), ACTIVATIONS[activation]()]
        previous = width
    layers.append(nn.Linear(previous, check_int("num_classes", num_classes, low=1), bias=bias))
    return nn.Sequential(*layers)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"800,800"`` -> ``(800, 800)``, with an error naming the bad part."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError(f"hidden widths must be comma-separated positive integers like 800,800; got {text!r}")
    widths = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"hidden widths must be comma-separated positive integers like 800,800; got {text!r}")
        widths.append(int(part))
    return tuple(widths)
