"""The training loss of every model: cross-entropy over logits, one prediction per sample or per token."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cross_entropy(output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats of ``(n, d)`` logits and ``(n,)`` classes, or of ``(n, T, d)`` next-token logits and
    ``(n, T)`` targets, every token counting as one prediction (``"mean"``: over all ``n·T`` of them, ``"sum"``:
    their sum). For ``(n, d)`` logits it is ``F.cross_entropy`` itself."""
    if output.ndim > 2:
        output, target = output.flatten(0, -2), target.flatten()
    return F.cross_entropy(output, target, reduction=reduction)
