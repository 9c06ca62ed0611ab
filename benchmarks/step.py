"""Time per training step of an MLP 784-1024-1024-1024-10 at batch 128: BP, DFA (digital), DFA (opu-sim).

Run: ``python -m benchmarks.step [--repeats 30] [--rounds 5] [--torch-device cpu]``.

All variants are timed in the same process, interleaved round by round so that machine noise hits them alike;
each figure is the median over rounds of the median step time within a round. A fourth variant shows where the
usual DFA implementations lose their advantage: it re-attaches every hidden activation as a leaf that requires
grad, so autograd also computes the gradient with respect to each hidden layer's input, as BP does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.timing import interleaved_medians
from optodfa import models
from optodfa.dfa import convert

WIDTHS = (784, 1024, 1024, 1024, 10)


def mlp() -> nn.Sequential:
    return models.mlp(WIDTHS[:1], WIDTHS[1:-1], WIDTHS[-1], activation="tanh")


class _InputGradDFA(nn.Module):
    """DFA where each hidden activation re-enters the graph as a leaf requiring grad (the common design)."""

    def __init__(self, net: nn.Sequential, feedback: torch.Tensor) -> None:
        super().__init__()
        self.net, self.feedback = net, feedback
        self.points: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.points = []
        for module in self.net:
            x = module(x)
            if isinstance(module, nn.Tanh):
                self.points.append(x)
                x = x.detach().requires_grad_()
        return x

    def inject(self, error: torch.Tensor) -> None:
        projection = error @ self.feedback.T / 32.0
        for point, part in zip(self.points, torch.split(projection, 1024, dim=1), strict=True):
            point.backward(part)


def step_timer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, inject: bool = False) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        if inject:
            out.retain_grad()
        loss = F.cross_entropy(out, y)
        loss.backward()
        if inject:
            model.inject(out.grad)
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--profile", default=None, help="opu-sim profile (default: lighton-aurora, noise on)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.torch_device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 784, generator=generator).to(device)
    y = torch.randint(0, 10, (128,), generator=generator).to(device)

    torch.manual_seed(0)
    bp = mlp().to(device)
    digital, _ = convert(mlp().to(device), (784,), projector="digital")
    optical, _ = convert(mlp().to(device), (784,), projector="opu-sim", profile=args.profile)
    input_grad = _InputGradDFA(mlp().to(device), digital.projector.effective_matrix().to(device))
    steps = {"BP": step_timer(bp, x, y), "DFA digital": step_timer(digital, x, y),
             "DFA opu-sim": step_timer(optical, x, y),
             "DFA digital, input grads kept": step_timer(input_grad, x, y, inject=True)}
    result = interleaved_medians(steps, rounds=args.rounds, sync=sync, repeats=args.repeats, warmup=3)

    print(f"MLP {'-'.join(map(str, WIDTHS))}, batch 128, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} rounds x {args.repeats} steps")
    print(f"opu-sim: {optical.projector.describe().get('profile', {}).get('name', 'default profile')}")
    print(f"{'variant':<32}{'ms/step':>10}{'/ BP':>8}{'/ digital':>11}")
    for name, seconds in result.items():
        print(f"{name:<32}{seconds * 1e3:>10.2f}{seconds / result['BP']:>8.3f}"
              f"{seconds / result['DFA digital']:>11.3f}")
    print(f"targets: DFA digital <= 0.9 x BP (got {result['DFA digital'] / result['BP']:.3f}); "
          f"opu-sim <= 1.5 x digital (got {result['DFA opu-sim'] / result['DFA digital']:.3f})")


if __name__ == "__main__":
    main()
