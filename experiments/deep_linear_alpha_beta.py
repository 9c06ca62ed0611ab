"""Deep networks on Gaussian outputs (SPEC §6.3): final gradient and weight alignment of DFA over the output
correlation and anisotropy (α, β), and, for linear networks, alignment against the conditioning of the alignment
matrices ``A_l``.

Task (:func:`optodfa.data.deep_linear_data`): ``x ~ N(0, I_9)``, 1000 samples, two outputs ``y ~ N(0, Σ)``,
``Σ = [[1, α(1−β)], [α(1−β), α²]]``. Network: 3 hidden layers of width 100, no biases, linear / tanh / relu,
trained by DFA with plain SGD on the squared error (mean over samples and outputs). Feedback as in the paper's
reference code: ``B`` from U[−1, 1), projection divided by ``sqrt(n_max)``; the same ``B`` for every seed.
Linear networks start from zero, so DFA keeps ``W_l = B_l A_l B_{l−1}ᵀ`` exactly and ``A_l`` is estimated by
pseudo-inverses (:func:`optodfa.alignment.alignment_matrices`); tanh and relu networks start from a small Gaussian
initialisation. Alignment is recorded on a log-spaced epoch grid, to show where it settles.

    python -m experiments.deep_linear_alpha_beta            # full (25 grid points × 3 activations × seeds)
    python -m experiments.deep_linear_alpha_beta --quick    # seconds

The runs execute on the sweep engine's local cluster (``--workers``, default 2) or a dask cluster
(``--scheduler``); each finished run is kept under ``<out>/deep_linear_alpha_beta/runs/``, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from experiments._common import map_runs, markdown_table, parse_settings, write_results
from optodfa.alignment import alignment_matrices, gradient_alignment, linear_weights, weight_alignment
from optodfa.data import deep_linear_data
from optodfa.dfa import convert
from optodfa.models import mlp
from optodfa.seeding import derive_seed, torch_generator

NAME = "deep_linear_alpha_beta"
GRID = (0.2, 0.4, 0.6, 0.8, 1.0)


@dataclasses.dataclass(frozen=True)
class Settings:
    hidden: tuple[int, ...] = (100, 100, 100)
    activations: tuple[str, ...] = ("linear", "tanh", "relu")
    alphas: tuple[float, ...] = GRID
    betas: tuple[float, ...] = GRID
    seeds: int = 3
    samples: int = 1000
    epochs: int = 1000
    # Batch 100 at lr 0.03 reaches the alignment of batch 32 at lr 0.01 in the same epochs with a third of the
    # steps (linear α = β = 1: GA 0.91, WA 0.94 at epoch 1000 either way; tanh α = β = 0.6: 0.62 / 0.61). With
    # batch 32, lr 0.05 diverges for the linear network (NaN error after ~190 epochs at α = β = 0.2).
    batch_size: int = 100
    lr: float = 0.03
    init_std: float = 0.01  # tanh and relu: N(0, init_std²) weights; linear networks start from zero
    checkpoints: int = 12  # log-spaced epochs at which alignment is recorded (plus epoch 0)
    data_seed: int = 0
    feedback_seed: int = 0


QUICK = Settings(hidden=(12, 12, 12), activations=("linear", "tanh"), alphas=(0.5, 1.0), betas=(0.5, 1.0), seeds=1,
                 samples=128, epochs=4, checkpoints=3)


def epoch_grid(settings: Settings) -> np.ndarray:
    """0 and about ``checkpoints`` log-spaced whole epochs up to ``epochs``."""
    return np.unique(np.concatenate([[0], np.geomspace(1, settings.epochs, settings.checkpoints).round()])).astype(int)


def network(settings: Settings, activation: str, seed: int) -> nn.Sequential:
    if activation == "linear":
        layers: list[nn.Module] = []
        widths = [9, *settings.hidden, 2]
        for a, b in itertools.pairwise(widths):
            layers.append(nn.Linear(a, b, bias=False))
        net = nn.Sequential(*layers)
        for layer in net:
            nn.init.zeros_(layer.weight)
        return net
    net = mlp((9,), settings.hidden, 2, activation=activation, bias=False)
    generator = torch_generator(derive_seed(seed, 0))
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * settings.init_std)
    return net


def run_one(settings: Settings, activation: str, alpha: float, beta: float, seed: int) -> dict[str, np.ndarray]:
    """Train one network; alignment on the epoch grid, final alignment, and (linear) alignment matrices."""
    task = deep_linear_data(alpha, beta, samples=settings.samples, seed=settings.data_seed)
    model, _ = convert(network(settings, activation, seed), (9,), projector="digital",
                       overrides={"distribution": "uniform"}, feedback_seed=settings.feedback_seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr)
    grid = set(epoch_grid(settings).tolist())
    record: dict[str, list[float]] = {"epoch": [], "ga_total": [], "wa_total": [], "loss": []}
    n = len(task.x)
    for epoch in range(settings.epochs + 1):
        if epoch in grid:
            ga = gradient_alignment(model, task.x, task.y, F.mse_loss)["total"]
            wa = weight_alignment(model)["total"]
            with torch.no_grad():
                model.eval()
                loss = float(F.mse_loss(model(task.x), task.y))
                model.train()
            for key, value in zip(record, (epoch, ga, wa, loss), strict=True):
                record[key].append(value)
        if epoch == settings.epochs:
            break
        order = torch.randperm(n, generator=torch_generator(seed, 2, epoch))
        for start in range(0, n, settings.batch_size):
            index = order[start:start + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(task.x[index]), task.y[index]).backward()
            optimizer.step()
    out = {key: np.array(values) for key, values in record.items()}
    ga = gradient_alignment(model, task.x, task.y, F.mse_loss)
    wa = weight_alignment(model)
    out["ga_layers"] = np.array([ga[layer.name] for layer in model.hidden])
    out["wa_layers"] = np.array([wa[name] for name in [layer.name for layer in model.hidden[1:]] + ["output"]])
    if activation == "linear":
        found = alignment_matrices(*linear_weights(model))
        out["condition_numbers"] = np.array([m.condition_number for m in found])
        out["residuals"] = np.array([m.residual for m in found])
    return out


def run(settings: Settings, args: argparse.Namespace, folder: Path,
        ) -> dict[tuple[str, float, float, int], dict[str, np.ndarray]]:
    """Every (activation, α, β, seed) run, on the sweep engine's workers; finished runs are kept in
    ``folder/runs/<settings hash>/`` so that an interrupted experiment resumes."""
    # Seed-major order: the first seed of every grid point finishes first, so a stopped experiment has a whole
    # grid at fewer seeds. Kept runs do not depend on the number of seeds, hence the digest leaves it out.
    keys = [(activation, alpha, beta, seed) for seed in range(settings.seeds) for activation in settings.activations
            for alpha, beta in itertools.product(settings.alphas, settings.betas)]
    shared = {k: v for k, v in dataclasses.asdict(settings).items() if k != "seeds"}
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:12]
    started = time.perf_counter()
    results = map_runs(functools.partial(_run_key, settings), keys, folder / "runs" / digest, args)
    print(f"{len(keys)} runs in {time.perf_counter() - started:.1f} s")
    return results


def _run_key(settings: Settings, key: tuple[str, float, float, int]) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)  # one run per worker core; tiny matrices gain nothing from more threads
    return run_one(settings, *key)


def grids(results: dict, settings: Settings, key: str) -> np.ndarray:
    """``(activations, alphas, betas)`` mean over seeds of the last value of ``key``."""
    return np.array([[[np.mean([results[a, al, be, s][key][-1] for s in range(settings.seeds)])
                       for be in settings.betas] for al in settings.alphas] for a in settings.activations])


def extremes(grid: np.ndarray, settings: Settings) -> tuple[float, str, float, str]:
    low, high = np.unravel_index(np.argmin(grid), grid.shape), np.unravel_index(np.argmax(grid), grid.shape)
    where = [f"α={settings.alphas[i]:g}, β={settings.betas[j]:g}" for i, j in (low, high)]
    return float(grid[low]), where[0], float(grid[high]), where[1]


def figure(results: dict, settings: Settings) -> Figure:
    columns = len(settings.activations)
    fig = Figure(figsize=(3.6 * columns + 3.6, 6.4), layout="constrained")
    axes = fig.subplots(2, columns + 1, squeeze=False)
    for row, (key, label) in enumerate((("ga_total", "gradient alignment"), ("wa_total", "weight alignment"))):
        values = grids(results, settings, key)
        low = max(-1.0, np.floor(values.min() * 10) / 10)  # one colour scale per row, from the data up to 1
        for col, activation in enumerate(settings.activations):
            ax = axes[row, col]
            image = ax.imshow(values[col], origin="lower", vmin=low, vmax=1, cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(values[col]):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < (low + 1) / 2 else "black")
            ax.set_xticks(range(len(settings.betas)), [f"{b:g}" for b in settings.betas])
            ax.set_yticks(range(len(settings.alphas)), [f"{a:g}" for a in settings.alphas])
            ax.set(title=f"{activation}: final {label}", xlabel="β (output correlation 1 − β)", ylabel="α")
        fig.colorbar(image, ax=axes[row, columns - 1])
    ax = axes[0, columns]
    if "linear" in settings.activations:
        for layer in range(len(settings.hidden)):
            cond = [r["condition_numbers"][layer + 1] for k, r in results.items() if k[0] == "linear"]
            wa = [r["wa_layers"][layer] for k, r in results.items() if k[0] == "linear"]
            name = "output" if layer == len(settings.hidden) - 1 else f"layer {layer + 2}"
            ax.scatter(cond, wa, s=12, label=name)
        ax.set(xscale="log", xlabel="condition number of A_l", ylabel="weight alignment of layer l",
               title="linear: alignment vs conditioning")
        ax.legend(fontsize=7)
    ax = axes[1, columns]
    for activation in settings.activations:
        courses = np.array([r["wa_total"] for k, r in results.items() if k[0] == activation])
        epochs = next(r["epoch"] for k, r in results.items() if k[0] == activation)
        ax.plot(np.maximum(epochs, 0.5), courses.mean(0), label=activation)
    ax.set(xscale="log", xlabel="epoch", ylabel="weight alignment (total)", title="mean over the grid")
    ax.legend(fontsize=7)
    fig.suptitle(f"DFA on y ~ N(0, Σ(α, β)): {len(settings.hidden)} × {settings.hidden[0]} hidden, SGD lr "
                 f"{settings.lr}, batch {settings.batch_size}, {settings.epochs} epochs, {settings.seeds} seed(s)",
                 fontsize=10)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], Settings(), QUICK, sweep=True)
    started = time.perf_counter()
    results = run(settings, args, Path(args.out) / NAME)
    wall = time.perf_counter() - started
    rows, key = [], {}
    ga, wa = grids(results, settings, "ga_total"), grids(results, settings, "wa_total")
    for i, activation in enumerate(settings.activations):
        ga_ext, wa_ext = extremes(ga[i], settings), extremes(wa[i], settings)
        rows.append([activation, *ga_ext, *wa_ext])
        key.update({f"{activation}_ga_min": ga_ext[0], f"{activation}_ga_max": ga_ext[2],
                    f"{activation}_wa_min": wa_ext[0], f"{activation}_wa_max": wa_ext[2]})
    arrays = {f"{a}/alpha{al:g}_beta{be:g}/seed{s}": r for (a, al, be, s), r in results.items()}
    arrays = {"runs": _nest(arrays), "ga_total": ga, "wa_total": wa, "alphas": np.array(settings.alphas),
              "betas": np.array(settings.betas)}
    note = (f"\nFinal alignment after {settings.epochs} epochs (mean over {settings.seeds} seed(s)), {wall:.0f} s "
            f"in all. Alignment is recorded at epochs {epoch_grid(settings).tolist()}.\n")
    if "linear" in settings.activations:
        residual = max(float(r["residuals"].max()) for k, r in results.items() if k[0] == "linear")
        note += (f"Linear networks: the largest relative residual of W_l = B_l A_l B_(l-1)ᵀ is {residual:.2g} "
                 f"(DFA from zero keeps that form).\n")
        key["linear_max_residual"] = residual
    table = markdown_table(["activation", "GA min", "where", "GA max", "where", "WA min", "where", "WA max",
                            "where"], rows) + note
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings), **key},
                          figure=figure(results, settings), table=table, out=args.out,
                          title="Deep networks on Gaussian outputs: alignment over (α, β)")
    print(table)
    return paths


def _nest(flat: dict[str, dict[str, np.ndarray]]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path.split("/"):
            node = node.setdefault(part, {})
        node.update(value)
    return tree


if __name__ == "__main__":
    main()
