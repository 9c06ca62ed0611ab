"""DFA in any nn.Module: Feedback markers, per-token feedback, the models, and the errors before training."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optodfa.datasets.text import char_batch, char_corpus
from optodfa.device import Projector
from optodfa.dfa import DFAModel, Feedback, convert
from optodfa.models import char_transformer, cnn, residual_mlp
from optodfa.sim.digital import DigitalProjector, feedback_matrix


class MarkedMLP(nn.Module):
    """The marker-based twin of ``nn.Sequential(Linear, Tanh, Linear, ReLU, Linear)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(6, 5), Feedback(nn.Tanh())
        self.fc2, self.act2 = nn.Linear(5, 4), Feedback(nn.ReLU())
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act2(self.fc2(self.act1(self.fc1(x)))))


def twins() -> tuple[MarkedMLP, nn.Sequential]:
    torch.manual_seed(0)
    marked = MarkedMLP()
    plain = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    plain.load_state_dict({k.replace("fc1", "0").replace("fc2", "2").replace("out", "4"): v
                           for k, v in marked.state_dict().items()})
    return marked, plain


class Counting(DigitalProjector):
    """Records the shape of every projected batch."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__(matrix)
        self.shapes: list[tuple[int, ...]] = []

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(e.shape))
        return super()._project(e)


def test_marker_model_and_its_sequential_twin_give_identical_dfa_gradients(batch):
    x, y = batch
    marked, plain = twins()
    matrix = feedback_matrix(9, 3, seed=4)
    model = DFAModel.from_module(marked, x[:1], projector=DigitalProjector(matrix))
    twin, _ = convert(plain, (6,), projector=DigitalProjector(matrix))
    assert [layer.shape for layer in model.hidden] == [layer.shape for layer in twin.hidden] == [(5,), (4,)]
    assert model.feedback_scale == twin.feedback_scale
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for a, b in zip(marked.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


class MarkedCNN(nn.Module):
    """Conv -> ReLU point -> pool -> conv -> ReLU point -> pool -> linear, the twin of ``cnn(..., pooling=True)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.point1 = nn.Conv2d(1, 3, 3, padding=1, bias=False), Feedback(nn.ReLU())
        self.conv2, self.point2 = nn.Conv2d(3, 4, 3, padding=1, bias=False), Feedback(nn.ReLU())
        self.out = nn.Linear(4 * 2 * 2, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(self.point1(self.conv1(x)), 2)
        h = F.max_pool2d(self.point2(self.conv2(h)), 2)
        return self.out(h.flatten(1))


def test_conv_points_get_feedback_of_their_own_shape_in_a_custom_module():
    torch.manual_seed(0)
    marked = MarkedCNN()
    plain = cnn((1, 8, 8), 3, channels=(3, 4), pooling=True)
    plain.load_state_dict({"0.weight": marked.conv1.weight, "3.weight": marked.conv2.weight,
                           "7.weight": marked.out.weight})
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    matrix = feedback_matrix(3 * 64 + 4 * 16, 3, seed=2)
    model = DFAModel.from_module(marked, x[:1], projector=DigitalProjector(matrix))
    twin, _ = convert(plain, (1, 8, 8), projector=DigitalProjector(matrix))
    assert [layer.shape for layer in model.hidden] == [(3, 8, 8), (4, 4, 4)]
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for a, b in zip(marked.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_points_are_named_by_path_unless_named(batch):
    marked, _ = twins()
    model = DFAModel.from_module(marked, batch[0][:1])
    assert [layer.name for layer in model.hidden] == ["act1", "act2"]
    assert model.report[0].startswith("act1: Tanh: DFA feedback point, 5 units per sample")


def test_bp_mode_gives_the_true_gradients(batch):
    x, y = batch
    torch.manual_seed(1)
    net = residual_mlp((6,), 8, 3, blocks=2)
    model = DFAModel.from_module(net, x[:1], mode="bp")
    F.cross_entropy(model(x), y).backward()
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()  # outside a DFAModel the points are plain activations
    for a, b in zip(got, [p.grad for p in net.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_transformer_bp_mode_gives_the_true_gradients():
    corpus = char_corpus()
    torch.manual_seed(2)
    net = char_transformer(corpus.vocab_size, context=8, width=8, heads=2, blocks=1, mlp_ratio=2).double()
    x, y = char_batch(corpus.train, 3, 8, seed=0)
    model = DFAModel.from_module(net, x[:1], token_dims=1, mode="bp")
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    F.cross_entropy(net(x).flatten(0, 1), y.flatten()).backward()
    for a, b in zip(got, [p.grad for p in net.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def gelu_derivative(a: torch.Tensor) -> torch.Tensor:
    """d/da of a·Φ(a) (exact GELU): Φ(a) + a·φ(a)."""
    return 0.5 * (1 + torch.erf(a / math.sqrt(2))) + a * torch.exp(-a**2 / 2) / math.sqrt(2 * math.pi)


def test_transformer_hidden_updates_are_the_projected_error_per_token():
    corpus = char_corpus()
    torch.manual_seed(3)
    net = char_transformer(corpus.vocab_size, context=6, width=8, heads=2, blocks=2, mlp_ratio=2).double()
    n, t, v = 4, 6, corpus.vocab_size
    x, y = char_batch(corpus.train, n, t, seed=1)
    projector = Counting(feedback_matrix(2 * (16 + 8), v, seed=9, dtype=torch.float64))
    model = DFAModel.from_module(net, x[:1], projector=projector, token_dims=1)
    assert [layer.name for layer in model.hidden] == ["block1.mlp", "block1.out", "block2.mlp", "block2.out"]
    assert [layer.shape for layer in model.hidden] == [(16,), (8,), (16,), (8,)]
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    assert projector.shapes == [(n * t, v)]  # one call per batch, one row per token

    B, s = projector.matrix, model.feedback_scale
    with torch.no_grad():
        h = net.token(x) + net.position(torch.arange(t))
        inputs = []
        for block in net.blocks:
            mid = h + block.attention(block.ln1(h))
            u = block.ln2(mid)
            a = block.fc1(u)
            inputs.append((u, a))
            h = mid + block.fc2(F.gelu(a))
        out = net.head(net.ln(h))
        e = (torch.softmax(out, -1) - F.one_hot(y, v)) / (n * t)  # (n, T, d): dℓ/dŷ of the mean over tokens
    offsets = [0, 16, 24, 40, 48]
    for b, (block, (u, a)) in enumerate(zip(net.blocks, inputs, strict=True)):
        mlp_rows = B[offsets[2 * b]:offsets[2 * b + 1]]
        out_rows = B[offsets[2 * b + 1]:offsets[2 * b + 2]]
        delta = s * (e @ mlp_rows.T) * gelu_derivative(a)  # (B_l e) ⊙ f'(a_l), token by token: (n, T, 16)
        torch.testing.assert_close(block.fc1.bias.grad, delta.sum((0, 1)), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(block.fc1.weight.grad, torch.einsum("ntj,nti->ji", delta, u),
                                   rtol=1e-10, atol=1e-12)
        # The block output is an identity point: fc2's bias receives B_out e of every token.
        torch.testing.assert_close(block.fc2.bias.grad, (s * e @ out_rows.T).sum((0, 1)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net.head.bias.grad, e.sum((0, 1)), rtol=1e-10, atol=1e-12)  # the true gradient


def test_unwrapped_and_eval_use_plain_activations(batch):
    x, _ = batch
    marked, plain = twins()
    torch.testing.assert_close(marked(x), plain(x), rtol=0, atol=0)
    model = DFAModel.from_module(marked, x[:1])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_dry_run_keeps_training_flags_and_dropout_draws(batch):
    class WithDropout(MarkedMLP):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act2(self.fc2(self.drop(self.act1(self.fc1(x))))))

    net = WithDropout()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    DFAModel.from_module(net, batch[0][:1])
    assert net.training and net.drop.training
    assert torch.equal(torch.get_rng_state(), state)


def train_loss(model: DFAModel, step: Callable[[int], torch.Tensor], steps: int, lr: float) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for i in range(steps):
        optimizer.zero_grad()
        loss = step(i)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5


@pytest.mark.parametrize("device", ["digital", "opu-sim"])
def test_transformer_trains_under_dfa(device):
    corpus = char_corpus()
    torch.manual_seed(0)
    net = char_transformer(corpus.vocab_size, context=16, width=16, heads=2, blocks=2)
    model = DFAModel.from_module(net, torch.zeros(1, 16, dtype=torch.long), projector=device, token_dims=1)

    def step(i: int) -> torch.Tensor:
        x, y = char_batch(corpus.train, 16, 16, seed=1, step=i)
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    first, last = train_loss(model, step, 60, 5e-3)
    assert last < first - 0.5, (first, last)  # from ~log(39) = 3.7 nats


@pytest.mark.parametrize("device", ["digital", "opu-sim"])
@pytest.mark.parametrize("kind", ["cnn", "cnn-pool", "residual"])
def test_cnn_and_residual_mlp_train_under_dfa(device, kind):
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()  # a learnable two-class rule
    torch.manual_seed(0)
    if kind == "residual":
        model = DFAModel.from_module(residual_mlp((1, 8, 8), 32, 2, blocks=2), x[:1], projector=device)
    else:
        net = cnn((1, 8, 8), 2, channels=(4, 8), pooling=kind == "cnn-pool")
        model, _ = convert(net, (1, 8, 8), projector=device)
        assert model.hidden[1].shape == ((8, 4, 4) if kind == "cnn-pool" else (8, 8, 8))

    first, last = train_loss(model, lambda i: F.cross_entropy(model(x), y), 80, 3e-3)
    assert last < 0.8 * first, (first, last)


def test_gradient_alignment_works_per_token():
    from optodfa.alignment import gradient_alignment

    corpus = char_corpus()
    torch.manual_seed(0)
    net = char_transformer(corpus.vocab_size, context=8, width=8, heads=2, blocks=1, mlp_ratio=2)
    x, y = char_batch(corpus.train, 4, 8, seed=0)
    model = DFAModel.from_module(net, x[:1], token_dims=1)
    result = gradient_alignment(model, x, y, lambda out, target: F.cross_entropy(out.flatten(0, 1), target.flatten()))
    assert set(result) == {"block1.mlp", "block1.out", "total"}
    assert all(-1 <= value <= 1 for value in result.values())


# -- errors before training ------------------------------------------------------------------------------------


def test_model_without_feedback_point_is_refused():
    with pytest.raises(ValueError, match="Sequential has no feedback point: pass each hidden activation through "
                                         "optodfa.Feedback"):
        DFAModel.from_module(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), torch.zeros(1, 3))


def test_point_size_disagreeing_with_projector_is_refused(batch):
    marked, _ = twins()
    with pytest.raises(ValueError, match=r"projector maps 3 -> 8 features, but the model needs d=3 \(output width\) "
                                         r"-> D=9 \(summed hidden widths: act1=5, act2=4\)"):
        DFAModel.from_module(marked, batch[0][:1], projector=DigitalProjector(torch.ones(8, 3)))


def test_point_not_reached_is_refused(batch):
    class Unused(MarkedMLP):
        def __init__(self) -> None:
            super().__init__()
            self.spare = Feedback(nn.Tanh())

    with pytest.raises(ValueError, match="feedback point\\(s\\) 'spare' not reached by forward on example_input"):
        DFAModel.from_module(Unused(), batch[0][:1])


def test_point_reached_twice_is_refused(batch):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.point, self.out = nn.Linear(6, 6), Feedback(nn.Tanh(), name="shared"), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.point(self.fc(self.point(self.fc(x)))))

    with pytest.raises(ValueError, match="feedback point 'shared' was reached twice in one forward pass"):
        DFAModel.from_module(Twice(), batch[0][:1])


def test_duplicate_names_and_bad_points_are_refused(batch):
    class Same(MarkedMLP):
        def __init__(self) -> None:
            super().__init__()
            self.act1.name = self.act2.name = "h"

    with pytest.raises(ValueError, match="feedback point names must be unique, got 'h' twice"):
        DFAModel.from_module(Same(), batch[0][:1])
    with pytest.raises(ValueError, match="name must be a non-empty string without '/', other than total, output; "
                                         "got 'total'"):
        Feedback(nn.Tanh(), name="total")
    with pytest.raises(ValueError, match="got 'a/b'"):
        Feedback(nn.Tanh(), name="a/b")
    with pytest.raises(TypeError, match="activation must be an nn.Module or None, got function"):
        Feedback(lambda a: a)


def test_token_axes_must_match():
    corpus = char_corpus()
    net = char_transformer(corpus.vocab_size, context=4, width=4, heads=1, blocks=1, mlp_ratio=1)
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"token_dims=2 the output must be \(n, T, T, d\), got \(1, 4, 39\)"):
        DFAModel.from_module(net, tokens, token_dims=2)
    with pytest.raises(ValueError, match="token_dims must be an integer"):
        DFAModel.from_module(net, tokens, token_dims=-1)


def test_a_point_without_the_token_axes_is_refused():
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.point, self.out = nn.Linear(3, 4), Feedback(nn.Tanh(), name="pooled"), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, T, 3) -> (n, T, 2), with a point on (n, 4)
            self.point(self.fc(x.mean(1)))
            return self.out(x)

    with pytest.raises(ValueError, match=r"feedback point 'pooled' has shape \(1, 4\), but the output \(1, 5, 2\) "
                                         r"with token_dims=1 needs points of shape \(1, 5, '...'\)"):
        DFAModel.from_module(Pooled(), torch.zeros(1, 5, 3), token_dims=1)


def test_a_point_skipped_in_training_is_an_error(batch):
    class Sometimes(MarkedMLP):
        skip = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc2(self.act1(self.fc1(x)))
            return self.out(torch.relu(h) if self.skip else self.act2(h))

    net = Sometimes()
    model = DFAModel.from_module(net, batch[0][:1])
    net.skip = True
    with pytest.raises(RuntimeError, match="feedback point 'act2' was not reached in this forward pass"):
        model(batch[0])


def test_projector_type_is_checked(batch):
    with pytest.raises(TypeError, match="projector must be a Projector or a device name, got int"):
        DFAModel.from_module(twins()[0], batch[0][:1], projector=3)
    assert issubclass(Counting, Projector)


def test_weight_alignment_of_a_custom_module_needs_its_layers(batch):
    from optodfa.alignment import weight_alignment

    class Declared(MarkedMLP):
        def __init__(self) -> None:
            super().__init__()
            self.act1 = Feedback(nn.Tanh(), layer=self.fc1)
            self.act2 = Feedback(nn.ReLU(), layer=self.fc2)

    torch.manual_seed(0)
    declared = Declared()
    plain = nn.Sequential(declared.fc1, nn.Tanh(), declared.fc2, nn.ReLU(), declared.out)
    matrix = feedback_matrix(9, 3, seed=4)
    model = DFAModel.from_module(declared, batch[0][:1], projector=DigitalProjector(matrix), output_layer=declared.out)
    twin, _ = convert(plain, (6,), projector=DigitalProjector(matrix))
    ours, theirs = weight_alignment(model), weight_alignment(twin)
    assert list(ours) == ["act2", "output", "total"] and list(theirs) == ["layer2", "output", "total"]
    assert list(ours.values()) == pytest.approx(list(theirs.values()), abs=1e-12)
    assert sum(1 for _ in declared.parameters()) == 6  # layer= registers nothing twice
    undeclared = DFAModel.from_module(twins()[0], batch[0][:1])
    assert weight_alignment(undeclared) == {}
