"""Time per training step of an MLP 784-1024-1024-1024-10 at batch 128: BP, DFA (digital), DFA (opu-sim).

Run: ``python -m benchmarks.step [--repeats 20] [--rounds 9] [--threads 1,2] [--torch-device cpu]``.

All variants are timed in the same process, interleaved round by round so that machine noise hits them alike;
each time is the median over rounds of the median step time within a round, and each ratio the median over rounds
of the ratio within a round (the two variants of a ratio share a round's machine load). A fourth variant shows
where the usual DFA implementations lose their advantage: it re-attaches every hidden activation as a leaf that
requires grad, so autograd also computes the gradient with respect to each hidden layer's input, as BP does.

Targets (issue 11), printed met / NOT met for each thread count: DFA ``opu-sim`` (camera noise on) at most 1.2x DFA
digital, and DFA digital at most 0.75x BP. A DFA step's multiply-adds are about 0.74 of a BP step's (forward and
weight gradients alike, no gradients with respect to hidden inputs, plus a small ``(128 x 10) @ (10 x 3072)``
projection); the elementwise work (activations, their derivatives, the loss, the optimiser's update) is the same
in both and keeps the measured ratio above that.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.machine import cpu_name
from benchmarks.timing import interleaved_rounds, medians, paired_ratio
from optodfa import models
from optodfa.dfa import convert

WIDTHS = (784, 1024, 1024, 1024, 10)
SIM_TARGET = 1.2  # DFA opu-sim / DFA digital
DFA_TARGET = 0.75  # DFA digital / BP


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


def run(threads: int | None, args: argparse.Namespace) -> bool:
    """Time the variants with ``threads`` torch threads and print them; whether both targets are met."""
    if threads is not None:
        torch.set_num_threads(threads)
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
    per_round = interleaved_rounds(steps, rounds=args.rounds, sync=sync, repeats=args.repeats, warmup=3)
    result = medians(per_round)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"\nMLP {'-'.join(map(str, WIDTHS))}, batch 128, {device} ({where}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); median of {args.rounds} rounds x {args.repeats} steps")
    print(f"opu-sim: {optical.projector.describe().get('profile', {}).get('name', 'default profile')}")
    print(f"{'variant':<32}{'ms/step':>10}{'/ BP':>8}{'/ digital':>11}   (ratios: median of the rounds' ratios)")
    for name, seconds in result.items():
        print(f"{name:<32}{seconds * 1e3:>10.2f}{paired_ratio(per_round, name, 'BP'):>8.3f}"
              f"{paired_ratio(per_round, name, 'DFA digital'):>11.3f}")
    sim = paired_ratio(per_round, "DFA opu-sim", "DFA digital")
    dfa = paired_ratio(per_round, "DFA digital", "BP")
    print(f"target DFA opu-sim <= {SIM_TARGET:g} x DFA digital: {'met' if sim <= SIM_TARGET else 'NOT met'} "
          f"(got {sim:.3f})")
    print(f"target DFA digital <= {DFA_TARGET:g} x BP: {'met' if dfa <= DFA_TARGET else 'NOT met'} (got {dfa:.3f}; "
          f"multiply-adds alone give 0.74)")
    return sim <= SIM_TARGET and dfa <= DFA_TARGET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--threads", default=None,
                        help="torch CPU threads, or a comma-separated list run in turn (default: torch's choice)")
    parser.add_argument("--profile", default=None, help="opu-sim profile (default: lighton-aurora, noise on)")
    args = parser.parse_args(argv)
    counts = [None] if args.threads is None else [int(t) for t in str(args.threads).split(",")]
    verdicts = [run(threads, args) for threads in counts]
    print(f"\nstep targets ({', '.join('default' if t is None else str(t) for t in counts)} thread(s)): "
          f"{'met' if all(verdicts) else 'NOT met'}")


if __name__ == "__main__":
    main()
