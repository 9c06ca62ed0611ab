"""Networks that the CLI and the experiments build by name.

``mlp`` and ``cnn`` are plain ``nn.Sequential`` (converted by :func:`optodfa.dfa.convert`); ``residual_mlp`` and
``char_transformer`` are ``nn.Module`` s with :class:`~optodfa.dfa.Feedback` points in their ``forward`` (wrapped
by :meth:`optodfa.dfa.DFAModel.from_module`). Every builder takes keyword arguments only after its shapes, so a
run configuration can hold them by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from optodfa.dfa import Feedback
from optodfa.validation import check_bool, check_choice, check_int

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
# What `TrainConfig.model` (and `optodfa train --model`) builds; see build_model for how `hidden` is read.
MODELS = ("mlp", "cnn", "residual", "transformer")
# Models whose output is (n, T, d): one prediction, one error and one feedback per token.
TOKEN_MODELS = ("transformer",)
CNN_CHANNELS = (16, 32)  # the CLI's --hidden default under --model cnn
TRANSFORMER_WIDTHS = (32, 32)  # the CLI's --hidden default under --model transformer: 2 blocks of width 32


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


def cnn(input_shape: Sequence[int], num_classes: int, *, channels: Sequence[int] = (16, 32), kernel_size: int = 3,
        activation: str = "relu", pooling: bool = False, bias: bool = False) -> nn.Sequential:
    """Convolutional layers (``same`` padding) then one linear output layer, as in SPEC §6.5.

    Each conv layer is followed by its activation and, with ``pooling``, a 2 × 2 max-pool (the feedback point sits
    before the pool, so each conv layer receives feedback of its own ``(C, H, W)`` shape).

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_classes: output width ``d``.
        channels: output channels of each conv layer (at least one layer).
        kernel_size: odd kernel side in pixels.
        activation: ``"tanh"`` or ``"relu"``.
        pooling: add ``MaxPool2d(2)`` after each conv layer.
        bias: whether the layers have biases (the paper's conv layers have none).
    """
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs input_shape (C, H, W), got {tuple(input_shape)}")
    c, height, width = (check_int(f"input_shape[{i}]", v, low=1) for i, v in enumerate(input_shape))
    check_choice("activation", activation, ACTIVATIONS)
    kernel_size = check_int("kernel_size", kernel_size, low=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
    check_bool("pooling", pooling)
    if len(channels) == 0:
        raise ValueError("channels must list at least one conv layer, got none")
    layers: list[nn.Module] = []
    for i, out in enumerate(channels):
        out = check_int(f"channels[{i}]", out, low=1)
        layers += [nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2, bias=bias), ACTIVATIONS[activation]()]
        if pooling:
            if min(height, width) < 2:
                raise ValueError(f"input_shape {tuple(input_shape)} is too small for {len(channels)} pooling layers")
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        c = out
    layers += [nn.Flatten(), nn.Linear(c * height * width, check_int("num_classes", num_classes, low=1), bias=bias)]
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """``h_0 = f(W_in x)``, then ``h_b = h_{b-1} + f(W_b h_{b-1})`` per block, then ``ŷ = W_out h_B``.

    Feedback points: ``stem`` and ``block1 … blockB`` (each block's branch, after its activation). Under DFA every
    branch receives its own ``B_b e``; the skip connections carry no gradient, since every summand is detached.
    """

    def __init__(self, input_features: int, width: int, num_classes: int, *, blocks: int = 2,
                 activation: str = "tanh", bias: bool = True) -> None:
        super().__init__()
        act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        input_features = check_int("input_features", input_features, low=1)
        width = check_int("width", width, low=1)
        blocks = check_int("blocks", blocks, low=1)
        self.stem = nn.Linear(input_features, width, bias=bias)
        self.stem_point = Feedback(act(), name="stem", layer=self.stem)
        self.branches = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(blocks))
        self.points = nn.ModuleList(Feedback(act(), name=f"block{b + 1}") for b in range(blocks))
        self.head = nn.Linear(width, check_int("num_classes", num_classes, low=1), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, input_features)`` (or any ``(n, …)``, flattened) to ``(n, num_classes)``."""
        h = self.stem_point(self.stem(x.flatten(1)))
        for branch, point in zip(self.branches, self.points, strict=True):
            h = h + point(branch(h))
        return self.head(h)


def residual_mlp(input_shape: Sequence[int], width: int, num_classes: int, *, blocks: int = 2,
                 activation: str = "tanh", bias: bool = True) -> ResidualMLP:
    """A :class:`ResidualMLP` for inputs of ``input_shape`` (flattened)."""
    return ResidualMLP(math.prod(input_shape), width, num_classes, blocks=blocks, activation=activation, bias=bias)


class _Block(nn.Module):
    """Pre-norm Transformer block: ``x += attn(ln1(x))``, ``x += fc2(point(fc1(ln2(x))))``, then a point."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, name: str, activation: str = "gelu") -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp_ratio * width)
        self.mlp_point = Feedback(ACTIVATIONS[activation](), name=f"{name}.mlp", layer=self.fc1)
        self.fc2 = nn.Linear(mlp_ratio * width, width)
        self.out_point = Feedback(None, name=f"{name}.out")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, t, width = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (n, heads, T, width / heads)
        return self.proj(y.transpose(1, 2).reshape(n, t, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        x = x + self.fc2(self.mlp_point(self.fc1(self.ln2(x))))
        return self.out_point(x)


class CharTransformer(nn.Module):
    """A small causal character-level language model.

    Token and learned position embeddings, ``blocks`` pre-norm blocks (causal self-attention and a GELU MLP), a
    final LayerNorm and a linear head to the vocabulary. Feedback points per block ``i``: ``block{i}.mlp`` (the MLP
    hidden units, ``mlp_ratio · width`` per token) and ``block{i}.out`` (the block's output, ``width`` per token).
    Wrap with ``DFAModel.from_module(model, tokens, token_dims=1)``: the error ``(n, T, vocab)`` is projected token
    by token.

    Args:
        vocab_size: number of symbols ``d``.
        context: the longest sequence ``T`` (the position table's length).
        width: model width (divisible by ``heads``).
        heads: attention heads.
        blocks: Transformer blocks.
        mlp_ratio: MLP hidden width over ``width``.
        activation: the MLP's activation (:data:`ACTIVATIONS`; GELU as usual for Transformers).
    """

    def __init__(self, vocab_size: int, *, context: int = 32, width: int = 32, heads: int = 2, blocks: int = 2,
                 mlp_ratio: int = 4, activation: str = "gelu") -> None:
        super().__init__()
        vocab_size = check_int("vocab_size", vocab_size, low=1)
        self.context = check_int("context", context, low=1)
        width = check_int("width", width, low=1)
        heads = check_int("heads", heads, low=1)
        if width % heads:
            raise ValueError(f"width must be divisible by heads, got width={width}, heads={heads}")
        blocks = check_int("blocks", blocks, low=1)
        mlp_ratio = check_int("mlp_ratio", mlp_ratio, low=1)
        check_choice("activation", activation, ACTIVATIONS)
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(self.context, width)
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, f"block{i + 1}", activation)
                                    for i in range(blocks))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n, T)`` int64 token ids, ``T ≤ context``, to ``(n, T, vocab_size)`` next-token logits."""
        if tokens.ndim != 2 or tokens.shape[1] > self.context:
            raise ValueError(f"tokens must be (n, T) with T <= {self.context}, got shape {tuple(tokens.shape)}")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def char_transformer(vocab_size: int, *, context: int = 32, width: int = 32, heads: int = 2, blocks: int = 2,
                     mlp_ratio: int = 4, activation: str = "gelu") -> CharTransformer:
    """A :class:`CharTransformer` (see there for the arguments)."""
    return CharTransformer(vocab_size, context=context, width=width, heads=heads, blocks=blocks, mlp_ratio=mlp_ratio,
                           activation=activation)


def build_model(model: str, input_shape: Sequence[int], hidden: Sequence[int], num_classes: int, *,
                activation: str = "tanh", bias: bool = True, heads: int = 2) -> nn.Module:
    """The network ``model`` names (:data:`MODELS`), as a run configuration describes it.

    ``"mlp"``: :func:`mlp` with hidden widths ``hidden``. ``"cnn"``: :func:`cnn` with one 3 × 3 conv layer of
    ``hidden[i]`` output channels each (``same`` padding, no pooling), then the linear output layer; it needs
    ``input_shape`` ``(C, H, W)`` (an image, not flattened). ``"residual"``: :func:`residual_mlp` with one
    feedback point per entry of ``hidden`` — the stem and ``len(hidden) - 1`` residual blocks — so the entries
    must be equal (the skip connections add vectors of one width) and at least two. ``"transformer"``:
    :func:`char_transformer` with one block per entry of ``hidden``, all of that one width (the residual stream),
    ``heads`` attention heads, ``activation`` in the blocks' MLPs, ``input_shape`` ``(T,)`` (the context, in
    tokens) and ``num_classes`` the vocabulary size; ``bias`` must be true (its layers always have biases).
    mlp and cnn are ``nn.Sequential`` (for :func:`optodfa.dfa.convert`); residual and transformer are modules with
    their own feedback points (for :meth:`optodfa.dfa.DFAModel.from_module`, the transformer with
    ``token_dims=1``).
    """
    check_choice("model", model, MODELS)
    if model == "transformer":
        if len(input_shape) != 1:
            raise ValueError(f"model 'transformer' takes input_shape (T,), the context in tokens; got "
                             f"{tuple(input_shape)}")
        check_transformer_settings(hidden, heads, bias)
        return char_transformer(num_classes, context=input_shape[0], width=hidden[0], heads=heads,
                                blocks=len(hidden), activation=activation)
    if model == "cnn":
        return cnn(input_shape, num_classes, channels=tuple(hidden), activation=activation, bias=bias)
    if model == "residual":
        check_residual_widths(hidden)
        return residual_mlp(input_shape, hidden[0], num_classes, blocks=len(hidden) - 1, activation=activation,
                            bias=bias)
    return mlp(input_shape, hidden, num_classes, activation=activation, bias=bias)


def check_residual_widths(hidden: Sequence[int]) -> None:
    """Raise unless ``hidden`` can describe a residual MLP: at least two equal widths (stem, then blocks)."""
    widths = list(hidden)
    if len(widths) < 2 or len(set(widths)) != 1:
        raise ValueError(f"model 'residual' takes hidden = the stem's width then one equal width per residual block "
                         f"(at least two equal widths, e.g. 256,256,256 for a stem and 2 blocks); got "
                         f"{','.join(map(str, widths))}")


def check_transformer_settings(hidden: Sequence[int], heads: int, bias: bool = True) -> None:
    """Raise unless ``hidden`` and ``heads`` can describe a transformer: one equal width per block, divisible by
    ``heads``, with biases."""
    widths = list(hidden)
    if not widths or len(set(widths)) != 1:
        raise ValueError(f"model 'transformer' takes hidden = one equal width per block (e.g. 32,32 for 2 blocks "
                         f"of width 32); got {','.join(map(str, widths)) or 'none'}")
    heads = check_int("heads", heads, low=1)
    if widths[0] % heads:
        raise ValueError(f"the transformer's width (hidden) must be divisible by heads; got width {widths[0]} and "
                         f"heads {heads}")
    if not check_bool("bias", bias):
        raise ValueError("model 'transformer' always has biases (in its Linear and LayerNorm layers); bias=False "
                         "(--no-bias) applies to mlp, cnn and residual only")


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
