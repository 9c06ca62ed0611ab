"""Transformer under DFA: a character-level language model trained by BP, by DFA with digital feedback and by DFA
through the simulated OPU; loss curves, gradient alignment and optical frame counts.

The model (:func:`optodfa.models.char_transformer`) has feedback points on each block's MLP hidden units and on
each block's output; the error of every token is projected on its own (``token_dims=1``), all tokens of a batch
in one projector call. The text is the package's own :data:`optodfa.datasets.text.LIGHTHOUSE` (about 2.9 KB): the
last 10 % is held out for validation. All three methods see the same batches for a seed.

    python -m experiments.transformer_dfa            # full (minutes)
    python -m experiments.transformer_dfa --quick    # seconds
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from optodfa.alignment import gradient_alignment
from optodfa.datasets.text import CharCorpus, char_batch, char_corpus
from optodfa.dfa import DFAModel
from optodfa.losses import cross_entropy
from optodfa.models import char_transformer
from optodfa.seeding import derive_seed

NAME = "transformer_dfa"
METHODS = (("BP", "bp", "digital"), ("DFA digital", "dfa", "digital"), ("DFA opu-sim", "dfa", "opu-sim"))


@dataclasses.dataclass(frozen=True)
class Settings:
    width: int = 32
    heads: int = 2
    blocks: int = 2
    context: int = 32
    batch_size: int = 32
    steps: int = 400
    lr: float = 3e-3
    eval_every: int = 20
    eval_batches: int = 4
    seeds: int = 2
    feedback_seed: int = 0


QUICK = Settings(width=16, blocks=1, context=16, batch_size=8, steps=20, eval_every=10, eval_batches=1, seeds=1)


def validation_loss(model: DFAModel, corpus: CharCorpus, settings: Settings) -> float:
    model.eval()
    with torch.no_grad():
        losses = [float(cross_entropy(model(x), y)) for x, y in
                  (char_batch(corpus.validation, settings.batch_size, settings.context, seed=10**6, step=k)
                   for k in range(settings.eval_batches))]
    model.train()
    return sum(losses) / len(losses)


def train_one(corpus: CharCorpus, settings: Settings, mode: str, device: str, seed: int) -> dict[str, np.ndarray]:
    """Train one model; returns its curves (per evaluation) and counters."""
    torch.manual_seed(derive_seed(seed, 0))
    net = char_transformer(corpus.vocab_size, context=settings.context, width=settings.width, heads=settings.heads,
                           blocks=settings.blocks)
    model = DFAModel.from_module(net, torch.zeros(1, settings.context, dtype=torch.long), projector=device,
                                 token_dims=1, mode=mode, feedback_seed=settings.feedback_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps, train, val, alignment = [], [], [], []
    recent: list[float] = []
    started = time.perf_counter()
    for step in range(settings.steps + 1):
        x, y = char_batch(corpus.train, settings.batch_size, settings.context, seed=seed, step=step)
        if step % settings.eval_every == 0:
            steps.append(step)
            val.append(validation_loss(model, corpus, settings))
            train.append(sum(recent) / len(recent) if recent else float("nan"))
            recent = []
            alignment.append(gradient_alignment(model, x, y, cross_entropy)["total"])
        if step == settings.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
    counters = model.projector.counters()
    return {"step": np.array(steps), "train_loss": np.array(train), "val_loss": np.array(val),
            "gradient_alignment": np.array(alignment), "wall_s": np.array(time.perf_counter() - started),
            "frames": np.array(counters.frames if mode == "dfa" else 0),
            "hardware_seconds": np.array(counters.hardware_seconds if mode == "dfa" else 0.0)}


def unigram_entropy(corpus: CharCorpus) -> float:
    """Cross-entropy (nats) of the validation text under the training text's symbol frequencies (add-one)."""
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    return float(-log_p[corpus.validation].mean())


def run(settings: Settings) -> dict[str, list[dict[str, np.ndarray]]]:
    corpus = char_corpus()
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    for label, mode, device in METHODS:
        results[label] = []
        for seed in range(settings.seeds):
            curves = train_one(corpus, settings, mode, device, seed)
            print(f"{label}, seed {seed}: final validation loss {curves['val_loss'][-1]:.3f} nats, "
                  f"{float(curves['wall_s']):.1f} s")
            results[label].append(curves)
    return results


def summarise(results: dict[str, list[dict[str, np.ndarray]]], settings: Settings) -> list[list]:
    rows = []
    for label, runs in results.items():
        final = np.array([r["val_loss"][-1] for r in runs])
        ga = np.array([r["gradient_alignment"][-1] for r in runs])
        frames = float(np.mean([r["frames"] for r in runs])) / settings.steps
        rows.append([label, float(final.mean()), float(final.std()), float(ga.mean()),
                     f"{frames:.0f}" if frames else "—", float(np.mean([r["wall_s"] for r in runs]))])
    return rows


HEADER = ["method", "final validation loss (nats)", "sd over seeds", "final gradient alignment (total)",
          "OPU frames per step", "wall time per run (s)"]


def figure(results: dict[str, list[dict[str, np.ndarray]]], settings: Settings, baseline: float) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, ga_ax = fig.subplots(1, 2)
    for (label, runs), colour in zip(results.items(), ("black", "tab:blue", "tab:orange"), strict=True):
        step = runs[0]["step"]
        val = np.stack([r["val_loss"] for r in runs])
        loss_ax.plot(step, val.mean(0), color=colour, label=f"{label} (validation)")
        loss_ax.fill_between(step, val.min(0), val.max(0), color=colour, alpha=0.15)
        train = np.stack([r["train_loss"] for r in runs]).mean(0)
        loss_ax.plot(step, train, color=colour, ls=":", lw=1, label=f"{label} (training)")
        ga_ax.plot(step, np.stack([r["gradient_alignment"] for r in runs]).mean(0), color=colour, label=label)
    loss_ax.axhline(baseline, color="grey", lw=0.8, ls="--", label="unigram (no context)")
    loss_ax.set(xlabel="step", ylabel="cross-entropy per character (nats)", title="character-level LM")
    loss_ax.legend(fontsize=7)
    ga_ax.set(xlabel="step", ylabel="gradient alignment (total)", title="DFA signal vs BP gradient", ylim=(-0.2, 1))
    ga_ax.legend(fontsize=8)
    fig.suptitle(f"Transformer: {settings.blocks} blocks, width {settings.width}, context {settings.context}, "
                 f"batch {settings.batch_size}, Adam lr {settings.lr}; {settings.seeds} seed(s)", fontsize=10)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], Settings(), QUICK)
    results = run(settings)
    baseline = unigram_entropy(char_corpus())
    rows = summarise(results, settings)
    key = {f"{label.replace(' ', '_').replace('-', '_').lower()}_final_val_loss": row[1]
           for label, row in zip(results, rows, strict=True)}
    arrays = {label.replace(" ", "_"): {f"seed{i}": r for i, r in enumerate(runs)} for label, runs in results.items()}
    table = (markdown_table(HEADER, rows)
             + f"\nValidation cross-entropy after {settings.steps} steps (mean over {settings.seeds} seed(s)); "
               f"a uniform guess is {math.log(char_corpus().vocab_size):.3f} nats, the training text's unigram "
               f"frequencies give {baseline:.3f}. Gradient alignment: per-sequence cosine between the DFA signal "
               f"and the BP gradient over all feedback points, on the last training batch (BP runs measure the "
               f"same quantity with the digital B they would have used).\n")
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings),
                                                      "unigram_nats": baseline, **key},
                          figure=figure(results, settings, baseline), table=table, out=args.out,
                          title="Transformer under DFA: BP, digital feedback, simulated OPU")
    print(table)
    return paths


if __name__ == "__main__":
    main()
