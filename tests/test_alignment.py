"""Alignment metrics against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optodfa.alignment import (
    alignment_matrices,
    cross_seed_cosine,
    cross_seed_cosines,
    gradient_alignment,
    linear_weights,
    weight_alignment,
    weight_alignment_of,
)
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


# -- closed forms: weight alignment total, alignment matrices, cross-seed cosines -----------------------------

def random_chain(widths: list[int], d: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Feedback blocks B_l (n_l, d) and alignment matrices A_l of a chain n_0 -> widths -> d."""
    rng = np.random.default_rng(seed)
    feedback = [rng.standard_normal((n, d)) for n in widths]
    matrices = [rng.standard_normal((d, 7))] + [rng.standard_normal((d, d)) for _ in widths]
    return feedback, matrices


def dfa_form(feedback: list[np.ndarray], matrices: list[np.ndarray]) -> list[np.ndarray]:
    """W_1 = B_1 A_1, W_l = B_l A_l B_{l-1}ᵀ, W_L = A_L B_{L-1}ᵀ."""
    weights = [feedback[0] @ matrices[0]]
    weights += [feedback[i] @ matrices[i] @ feedback[i - 1].T for i in range(1, len(feedback))]
    return [*weights, matrices[-1] @ feedback[-1].T]


def test_weight_alignment_is_one_for_identity_alignment_matrices():
    feedback, matrices = random_chain([20, 15, 12], 3, seed=0)
    same = [matrices[0]] + [2.0 * np.eye(3)] * 3  # A_l = 2 I for every layer
    result = weight_alignment_of(dfa_form(feedback, same), feedback)
    assert result == pytest.approx({"layer2": 1.0, "layer3": 1.0, "output": 1.0, "total": 1.0}, abs=1e-12)
    # A_l ∝ I with a different constant per layer: each layer is aligned, their concatenation is not.
    scaled = [matrices[0]] + [c * np.eye(3) for c in (0.5, 2.0, 3.0)]
    result = weight_alignment_of(dfa_form(feedback, scaled), feedback, names=["middle", "top"])
    assert result["middle"] == pytest.approx(1.0, abs=1e-12) and result["top"] == pytest.approx(1.0, abs=1e-12)
    assert result["total"] < 0.99


def test_weight_alignment_total_weights_layers_by_their_norms():
    # Two layers: one perfectly aligned, one anti-aligned with the same norm and target norm: total 0.
    b1, b2 = np.eye(2), np.eye(2)
    w1 = np.zeros((2, 3))
    result = weight_alignment_of([w1, b2 @ b1.T, -b2.T], [b1, b2])
    assert result["layer2"] == pytest.approx(1.0) and result["output"] == pytest.approx(-1.0)
    assert result["total"] == pytest.approx(0.0, abs=1e-12)


def test_alignment_matrices_recover_known_matrices():
    feedback, matrices = random_chain([20, 15, 12], 3, seed=1)
    found = alignment_matrices(dfa_form(feedback, matrices), feedback)
    assert [m.name for m in found] == ["layer1", "layer2", "layer3", "output"]
    for got, want in zip(found, matrices, strict=True):
        np.testing.assert_allclose(got.matrix, want, rtol=1e-9, atol=1e-9)
        assert got.residual < 1e-12
        assert got.condition_number == pytest.approx(np.linalg.cond(want), rel=1e-8)


def test_alignment_matrix_residual_flags_weights_outside_the_dfa_form():
    feedback, matrices = random_chain([20, 15], 3, seed=2)
    weights = dfa_form(feedback, matrices)
    weights[1] = np.random.default_rng(3).standard_normal(weights[1].shape)  # a generic 15 x 20 matrix
    residual = alignment_matrices(weights, feedback)[1].residual
    # A generic matrix keeps only the 3 x 3 of its 15 x 20 dimensions that the B's span: residual ≈ sqrt(1 − 9/300).
    assert residual == pytest.approx(np.sqrt(1 - 9 / 300), abs=0.05)


def test_deep_linear_dfa_from_zero_keeps_the_alignment_form():
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(64, 9, generator=generator, dtype=torch.float64), torch.randn(64, 2, generator=generator,
                                                                                      dtype=torch.float64)
    net = nn.Sequential(nn.Linear(9, 20, bias=False), nn.Linear(20, 20, bias=False),
                        nn.Linear(20, 2, bias=False)).double()
    for layer in net:
        nn.init.zeros_(layer.weight)
    model, _ = convert(net, (9,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
    found = alignment_matrices(*linear_weights(model))
    assert all(m.residual < 1e-10 for m in found), [m.residual for m in found]
    assert all(np.isfinite(m.condition_number) and m.condition_number >= 1 for m in found)


def test_alignment_matrices_check_shapes():
    feedback, matrices = random_chain([20, 15], 3, seed=5)
    weights = dfa_form(feedback, matrices)
    with pytest.raises(ValueError, match=r"B_2 must be \(15, 3\) to feed W_2 \(15, 20\), got \(14, 3\)"):
        alignment_matrices(weights, [feedback[0], feedback[1][:14]])
    with pytest.raises(ValueError, match="got 3 weight and 1 feedback matrices"):
        alignment_matrices(weights, feedback[:1])
    with pytest.raises(ValueError, match=r"W_2 has shape \(15, 19\) but W_1 has 20 rows"):
        alignment_matrices([weights[0], weights[1][:, :19], weights[2]], feedback)


def test_linear_weights_refuses_conv_models():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    model, _ = convert(net, (1, 4, 4))
    with pytest.raises(ValueError, match="needs every hidden and the output layer to be nn.Linear, got Conv2d, "
                                         "Linear"):
        linear_weights(model)


def test_cross_seed_cosines_per_layer_and_total():
    a = {"w1": np.array([1.0, 0.0]), "w2": np.array([[3.0]])}
    b = {"w1": np.array([0.0, 1.0]), "w2": np.array([[3.0]])}
    result = cross_seed_cosines([a, b])
    assert result["w1"] == pytest.approx(0.0) and result["w2"] == pytest.approx(1.0)
    assert result["total"] == pytest.approx(9 / 10)  # (0 + 9) / (sqrt(10) · sqrt(10))
    assert cross_seed_cosines([a, a, b])["w1"] == pytest.approx(1 / 3)  # pairs: 1, 0, 0


def test_cross_seed_cosines_errors():
    a = {"w1": np.zeros(2)}
    with pytest.raises(ValueError, match="at least 2 runs, got 1"):
        cross_seed_cosines([a])
    with pytest.raises(ValueError, match=r"run 1 has layers \['w2'\], run 0 has \['w1'\]"):
        cross_seed_cosines([a, {"w2": np.zeros(2)}])
    with pytest.raises(ValueError, match=r"layer 'w1' has shape \(3,\) in run 1 and \(2,\) in run 0"):
        cross_seed_cosines([a, {"w1": np.zeros(3)}])


def test_gradient_alignment_total_without_the_last_layer(batch):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    model, _ = convert(net, (6,))
    spec = gradient_alignment(model, x, y, F.cross_entropy)
    reference = gradient_alignment(model, x, y, F.cross_entropy, total="no-last")
    assert reference["total"] == pytest.approx(reference["layer1"], abs=1e-12)  # only layer 1 is left
    assert spec["total"] != pytest.approx(reference["total"])
    single, _ = convert(nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), (6,))
    with pytest.raises(ValueError, match="total='no-last' needs at least 2 hidden layers, the model has 1"):
        gradient_alignment(single, x, y, F.cross_entropy, total="no-last")


def test_gradient_alignment_stays_a_cosine_for_tiny_bp_signals(batch):
    # Near zero initialisation the BP signal δa_1 = (W_2ᵀ e) ⊙ f'(a_1) is ~1e-22: its float32 squared norm underflows.
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    with torch.no_grad():
        net[2].weight.mul_(1e-20)
    model, _ = convert(net, (6,), projector=DigitalProjector(net[2].weight.detach().T * 1e20))
    assert gradient_alignment(model, x, y, F.cross_entropy)["layer1"] == pytest.approx(1.0, abs=1e-6)
    assert weight_alignment_of([np.ones((5, 6)), np.full((3, 5), 1e-200)],
                               [np.full((5, 3), 1e-200)])["output"] == pytest.approx(1.0)
