"""Alignment metrics against cases with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optodfa.alignment import cross_seed_cosine, gradient_alignment, weight_alignment
from optodfa.dfa import convert
from optodfa.sim.digital import DigitalProjector


def test_gradient_alignment_is_one_when_feedback_is_the_backward_path(batch):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    # With B_1 = W_2ᵀ / scale, the DFA signal (B_1 e) ⊙ f'(a_1) equals BP's δa_1 exactly.
    scale = 0.5
    model, _ = convert(net, (6,), projector=DigitalProjector(net[2].weight.detach().T / scale), feedback_scale=scale)
    result = gradient_alignment(model, x, y, F.cross_entropy)
    assert result["layer1"] == pytest.approx(1.0, abs=1e-6)
    assert result["total"] == pytest.approx(1.0, abs=1e-6)


def test_gradient_alignment_is_minus_one_for_reversed_feedback(batch):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    model, _ = convert(net, (6,), projector=DigitalProjector(-net[2].weight.detach().T))
    assert gradient_alignment(model, x, y, F.cross_entropy)["layer1"] == pytest.approx(-1.0, abs=1e-6)


def test_gradient_alignment_leaves_grads_and_step_alone(batch):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    model, _ = convert(net, (6,))
    result = gradient_alignment(model, x, y, F.cross_entropy)
    assert set(result) == {"layer1", "layer2", "total"}
    assert all(-1.0 <= v <= 1.0 for v in result.values())
    assert all(p.grad is None for p in net.parameters())
    assert model.step == 0


def test_random_feedback_starts_unaligned_and_dfa_aligns():
    # Averaged over many hidden units, the cosine of independent random directions is O(1/sqrt(n)); training
    # with DFA must raise it well above that (the alignment phase).
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(128, 20, generator=generator)
    y = torch.randint(0, 5, (128,), generator=generator)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(20, 100), nn.Tanh(), nn.Linear(100, 100), nn.Tanh(), nn.Linear(100, 5))
    model, _ = convert(net, (20,), feedback_seed=11)
    before = gradient_alignment(model, x, y, F.cross_entropy)["total"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = gradient_alignment(model, x, y, F.cross_entropy)
    assert abs(before) < 0.3
    assert after["total"] > 0.5 and after["layer1"] > 0.4


def test_weight_alignment_is_one_for_the_dfa_fixed_point():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    model, _ = convert(net, (6,))
    B = model.projector.effective_matrix()
    with torch.no_grad():
        net[1].weight.copy_(B[5:] @ B[:5].T)  # W_2 = B_2 B_1ᵀ
        net[2].weight.copy_(B[5:].T)  # W_L = B_{L-1}ᵀ
    result = weight_alignment(model)
    assert result == pytest.approx({"layer2": 1.0, "output": 1.0, "total": 1.0}, abs=1e-9)


def test_weight_alignment_skips_conv_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3))
    model, _ = convert(net, (1, 4, 4))
    assert set(weight_alignment(model)) == {"output", "total"}


def test_cross_seed_cosine():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert cross_seed_cosine([a, a, a]) == pytest.approx(1.0)
    assert cross_seed_cosine([a, b]) == pytest.approx(0.0)
    assert cross_seed_cosine([a, -a]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 2 weight tensors, got 1"):
        cross_seed_cosine([a])
