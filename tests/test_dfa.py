"""DFA plumbing: gradients against hand computations, BP mode, conversion and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optodfa.device import NonFiniteError
from optodfa.dfa import convert
from optodfa.sim.digital import DigitalProjector


def tiny(bias: bool = True, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5, bias=bias), activation(), nn.Linear(5, 4, bias=bias), activation(),
                         nn.Linear(4, 3, bias=bias))


def derivative(activation: type[nn.Module], a: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(a) ** 2 if activation is nn.Tanh else (a > 0).to(a.dtype)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_dfa_gradient_equals_hand_computation(batch, bias, activation):
    x, y = batch
    net = tiny(bias, activation)
    model, _ = convert(net, (6,), projector="digital", feedback_seed=7)
    F.cross_entropy(model(x), y).backward()

    B, s = model.projector.effective_matrix(), model.feedback_scale
    W1, W2, W3 = net[0].weight, net[2].weight, net[4].weight
    b = [net[i].bias if bias else 0 for i in (0, 2, 4)]
    with torch.no_grad():
        a1 = x @ W1.T + b[0]
        h1 = activation()(a1)
        a2 = h1 @ W2.T + b[1]
        h2 = activation()(a2)
        out = h2 @ W3.T + b[2]
        e = (torch.softmax(out, 1) - F.one_hot(y, 3)) / len(x)  # dℓ/dŷ of the mean cross-entropy
        d1 = s * (e @ B[:5].T) * derivative(activation, a1)  # (B_1 e) ⊙ f'(a_1)
        d2 = s * (e @ B[5:].T) * derivative(activation, a2)
    torch.testing.assert_close(W1.grad, d1.T @ x, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(W2.grad, d2.T @ h1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(W3.grad, e.T @ h2, rtol=1e-5, atol=1e-7)
    if bias:
        torch.testing.assert_close(net[0].bias.grad, d1.sum(0), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(net[4].bias.grad, e.sum(0), rtol=1e-5, atol=1e-7)


def test_last_layer_gradient_equals_bp(batch):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,))
    F.cross_entropy(model(x), y).backward()
    dfa_grad = net[4].weight.grad.clone()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    torch.testing.assert_close(dfa_grad, net[4].weight.grad, rtol=0, atol=0)


def test_bp_mode_equals_plain_autograd(batch):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,), mode="bp")
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    for got, want in zip(grads, [p.grad for p in net.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_dfa_and_bp_differ_on_hidden_layers(batch):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,))
    F.cross_entropy(model(x), y).backward()
    dfa = net[0].weight.grad.clone()
    net.zero_grad()
    model.mode = "bp"
    F.cross_entropy(model(x), y).backward()
    assert not torch.allclose(dfa, net[0].weight.grad)


def test_no_gradient_is_computed_for_hidden_inputs(batch):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,))
    seen = []
    for layer in (net[2], net[4]):
        layer.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].requires_grad))
    F.cross_entropy(model(x), y).backward()
    assert seen == [False, False]  # DFA detaches every hidden output: no input gradient is ever formed


def test_eval_under_no_grad_matches_original(batch):
    x, _ = batch
    net = tiny()
    model, _ = convert(net, (6,))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    assert model.step == 0


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop])
def test_any_optimiser_trains(batch, optimizer):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,))
    opt = optimizer(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_conv_layer_receives_reshaped_feedback():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    model, report = convert(net, (1, 6, 6))
    assert model.hidden[0].shape == (2, 4, 4)
    assert "shape (2, 4, 4)" in report[0]
    x = torch.randn(5, 1, 6, 6)
    y = torch.tensor([0, 1, 2, 0, 1])
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        a1 = F.conv2d(x, net[0].weight, net[0].bias)
        e = (torch.softmax(net(x), 1) - F.one_hot(y, 3)) / 5
        feedback = (model.feedback_scale * e @ model.projector.effective_matrix().T).reshape(5, 2, 4, 4)
    weight = net[0].weight.detach().requires_grad_()
    a = F.conv2d(x, weight, net[0].bias.detach())
    (grad,) = torch.autograd.grad(a, weight, grad_outputs=feedback * (a1 > 0))
    torch.testing.assert_close(net[0].weight.grad, grad, rtol=1e-5, atol=1e-7)


def test_convert_reports_every_layer():
    model, report = convert(tiny(), (6,))
    assert [line.split(":")[0] for line in report] == ["layer1", "layer2", "output", "feedback"]
    assert "true gradient" in report[2]
    assert [layer.name for layer in model.hidden] == ["layer1", "layer2"]


def test_layer_without_activation_gets_identity_point(batch):
    x, y = batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    model, report = convert(net, (6,))
    assert "Identity" in report[0]
    F.cross_entropy(model(x), y).backward()
    e = (torch.softmax(net(x), 1) - F.one_hot(y, 3)) / len(x)
    expected = (model.feedback_scale * e @ model.projector.effective_matrix().T).T @ x
    torch.testing.assert_close(net[0].weight.grad, expected.detach(), rtol=1e-5, atol=1e-7)


def test_feedback_scale_is_explicit(batch):
    model, _ = convert(tiny(), (6,))
    assert model.feedback_scale == pytest.approx(1 / 5**0.5)  # 1/sqrt(widest hidden layer)
    model, _ = convert(tiny(), (6,), feedback_scale=0.25)
    assert model.feedback_scale == 0.25


def test_convert_accepts_a_built_projector(batch):
    projector = DigitalProjector(torch.ones(9, 3))
    model, _ = convert(tiny(), (6,), projector=projector)
    assert model.projector is projector


@pytest.mark.parametrize(("net", "shape", "error", "match"), [
    (nn.Linear(3, 3), (3,), TypeError, "expects an nn.Sequential, got Linear"),
    (nn.Sequential(nn.Linear(3, 3)), (3,), ValueError, "at least two weighted layers"),
    (nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)), (3,), TypeError,
     "cannot convert module 1 \\(BatchNorm1d\\); supported: Linear, Conv2d"),
    (nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2), nn.Tanh()), (3,), ValueError,
     "last module must be the output layer"),
    (nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), (4,), ValueError, "dry run with input_shape=\\(4,\\) failed"),
])
def test_convert_rejects_bad_models(net, shape, error, match):
    with pytest.raises(error, match=match):
        convert(net, shape)


def test_convert_rejects_mismatched_projector():
    with pytest.raises(ValueError, match="projector maps 3 -> 8 features, but the model needs d=3 .* D=9"):
        convert(tiny(), (6,), projector=DigitalProjector(torch.ones(8, 3)))


def test_unknown_device_lists_known_ones():
    with pytest.raises(KeyError, match="unknown device 'nope'; known devices: .*digital"):
        convert(tiny(), (6,), projector="nope")


def test_nonfinite_error_names_the_step(batch):
    x, y = batch
    model, _ = convert(tiny(), (6,))
    F.cross_entropy(model(x), y).backward()
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="training step 2: error batch holds 3 non-finite"):
        F.cross_entropy(model(bad), y).backward()


def test_nonfinite_skip_counts_and_leaves_weights(batch):
    x, y = batch
    net = tiny()
    model, _ = convert(net, (6,), on_nonfinite="skip")
    bad = x.clone()
    bad[0, 0] = float("nan")
    F.cross_entropy(model(bad), y).backward()
    assert model.skipped_batches == 1 and model.last_batch_skipped
    assert all(p.grad is None for p in net.parameters())
    F.cross_entropy(model(x), y).backward()
    assert not model.last_batch_skipped and model.skipped_batches == 1


def test_bad_mode_and_policy():
    model, _ = convert(tiny(), (6,))
    with pytest.raises(ValueError, match="mode must be one of 'dfa', 'bp'; got 'fa'"):
        model.mode = "fa"
    with pytest.raises(ValueError, match="on_nonfinite must be one of 'raise', 'skip'; got 'ignore'"):
        convert(tiny(), (6,), on_nonfinite="ignore")
