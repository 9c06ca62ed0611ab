"""Why DFA fails on CNNs, and whether structured feedback fixes it (SPEC §6.5): gradient alignment per layer.

Run: ``python -m experiments.cnn_failure [--quick] [--seeds 3] [--out results] [--workers 2]``.

Four networks on Fashion-MNIST (images resized to ``input_size``), all bias-free, tanh, trained by DFA through
the digital device: an MLP with two hidden layers; a CNN (two 3 × 3 conv layers, ``same`` padding, then a linear
layer) with a dense random Gaussian ``B``; the same CNN with ``B`` from the SVD of a random conv matrix; and with
``B`` from an NMF of the conv layer's mask of allowed connections (:mod:`optodfa.structured_feedback`; the two
structured ``B`` are written as ``.npy`` files in the sweep folder and handed to ordinary runs through
``feedback_file``, whose SHA-256 each run file records). The MLP's widths are chosen so that its parameter count is
close to the CNN's. Every network runs with the same initialisation seeds; the feedback seed is fixed (one ``B``
per construction, as in the paper).

The runs form one sweep in ``<out>/cnn_failure/`` (completed runs are kept, so the figure is redrawn for free).
The figure shows the gradient alignment of each hidden layer over training steps and the test accuracy per
epoch (means over seeds, bands min–max); the table the final figures, and for the second hidden layer the weight
alignment: for the MLP ``cos(W_2, B_2 B_1ᵀ)``, for the conv layer the same in its own kernel space,
``cos(K_2, T*(B_2 B_1ᵀ))`` (:func:`optodfa.structured_feedback.conv_adjoint`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from optodfa import structured_feedback as sf
from optodfa.models import cnn, mlp
from optodfa.sim.digital import feedback_matrix

NAME = "cnn_failure"
CLASSES = 10
LABELS = {"mlp": "MLP, random B", "cnn-random": "CNN, random B", "cnn-svd": "CNN, B from SVD of a random conv",
          "cnn-mask-svd": "CNN, B from SVD of the mask", "cnn-mask-nmf": "CNN, B from NMF of the mask"}
STRUCTURED = ("cnn-svd", "cnn-mask-svd", "cnn-mask-nmf")
LAYERS = ("layer1", "layer2", "total")
LAST = 5  # "final" alignment: the mean of the last LAST measurements of each run (one batch each is noisy)


@dataclasses.dataclass(frozen=True)
class Settings:
    input_size: int = 14
    channels: tuple[int, int] = (8, 8)
    mlp_hidden: tuple[int, int] = (64, 64)
    limit: int = 10000
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    alignment_every: int = 20
    seeds: int = 3
    feedback_seed: int = 0


FULL = Settings()
QUICK = Settings(input_size=8, channels=(4, 4), mlp_hidden=(16, 16), limit=640, epochs=2, alignment_every=2,
                 seeds=1)


def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def write_feedback_files(settings: Settings, folder: Path) -> dict[str, Any]:
    """Write ``folder/feedback/<variant>.npy`` (``(D, d)`` float64, ``D = (C_1 + C_2)·H·W``) for the structured
    variants; return their paths, the SVD's kernel ``K_0`` and singular values, and every CNN's ``B`` split into
    its two blocks (the random one rebuilt as the digital device draws it)."""
    c1, c2 = settings.channels
    side = settings.input_size
    pixels = side * side
    sizes = [c1 * pixels, c2 * pixels]
    folder = folder / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    seed = settings.feedback_seed
    svd_in, svd_out, svd_info = sf.svd_feedback((c2, c1, 3, 3), (side, side), CLASSES, seed=seed)
    random = feedback_matrix(sum(sizes), CLASSES, seed=seed, dtype=torch.float64).numpy()
    blocks = {"cnn-random": (random[:sizes[0]], random[sizes[0]:]), "cnn-svd": (svd_in, svd_out)}
    for factorisation in sf.FACTORISATIONS:
        b_in, b_out, _ = sf.mask_feedback((c1, c2), 3, (side, side), CLASSES, seed=seed, factorisation=factorisation)
        blocks[f"cnn-mask-{factorisation}"] = (b_in, b_out)
    side_shape = (side, side)
    attainable = {key: sf.attainable_alignment(b_in, b_out, (c2, c1, 3, 3), side_shape)
                  for key, (b_in, b_out) in blocks.items()}
    paths = {}
    for key in STRUCTURED:
        path = (folder / f"{key}.npy").resolve()
        np.save(path, sf.feedback_file_matrix(list(blocks[key]), sizes, CLASSES))
        paths[key] = str(path)
    return {"paths": paths, "blocks": blocks, "attainable": attainable, "kernel": svd_info["kernel"],
            "singular_values": svd_info["singular_values"]}


def grid(settings: Settings, feedback_paths: dict[str, str]) -> dict[str, Any]:
    """The sweep: the five networks (variants) × ``settings.seeds`` initialisation seeds."""
    base = {"dataset": "fashion-mnist", "input_size": settings.input_size, "limit": settings.limit,
            "epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr, "optimizer": "adam",
            "activation": "tanh", "bias": False, "method": "dfa", "device": "digital",
            "alignment_every": settings.alignment_every}
    cnn_base = {"model": "cnn", "hidden": list(settings.channels)}
    variants = {"mlp": {"model": "mlp", "hidden": list(settings.mlp_hidden)},
                "cnn-random": dict(cnn_base),
                **{key: {**cnn_base, "feedback_file": feedback_paths[key]} for key in STRUCTURED}}
    return {"description": "SPEC 6.5: DFA on a CNN vs an MLP; structured feedback for the conv layers",
            "seeds": list(range(settings.seeds)), "feedback_seeds": [settings.feedback_seed], "base": base,
            "variants": variants}


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    u, v = np.ravel(u).astype(np.float64), np.ravel(v).astype(np.float64)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def second_layer_alignment(run: Any, key: str, settings: Settings, feedback: dict[str, Any]) -> tuple[float, float]:
    """Final weight alignment of the second hidden layer, two ways (see the module docstring).

    Returns:
        ``cos(W_2, B_2 B_1ᵀ)`` (conv: ``cos(K_2, T*(B_2 B_1ᵀ))``) and the cosine between ``W_2`` and the layer-2
        weights that best satisfy the alignment condition ``W_2ᵀ B_2 ∝ B_1`` (MLP: ``B_2 B_1ᵀ`` again; conv: the
        kernel ``K*`` of :func:`optodfa.structured_feedback.attainable_alignment`).
    """
    state = run.checkpoint[0]["model"]  # "<module index>.weight" of the converted Sequential, in layer order
    names = sorted((name for name in state if name.endswith(".weight")), key=lambda name: int(name.split(".")[0]))
    weights = [np.asarray(state[name]) for name in names]
    if key == "mlp":
        random = feedback_matrix(sum(settings.mlp_hidden), CLASSES, seed=settings.feedback_seed,
                                 dtype=torch.float64).numpy()
        b1, b2 = random[:settings.mlp_hidden[0]], random[settings.mlp_hidden[0]:]
        wa = _cosine(weights[1], b2 @ b1.T)
        return wa, wa
    b_in, b_out = feedback["blocks"][key]
    kernel = weights[1]
    target = sf.conv_adjoint(b_out, b_in, kernel.shape, (settings.input_size, settings.input_size))
    return _cosine(kernel, target), _cosine(kernel, feedback["attainable"][key][1])


def _load_runs(summary: Any, keys: list[str], seeds: int) -> dict[str, list[Any]]:
    records: dict[str, list[Any]] = {key: [] for key in keys}
    for record in summary.runs:
        if record.status != "completed":
            raise SystemExit(f"run {record.name} did not complete: {record.status} ({record.error})")
        records[record.settings["variant"]].append(record)
    for key, found in records.items():
        if len(found) != seeds:
            raise SystemExit(f"variant {key}: expected {seeds} completed runs, found {len(found)}")
    return {key: [r.load() for r in sorted(found, key=lambda r: r.settings.get("seed", 0))]
            for key, found in records.items()}


def main(argv: list[str] | None = None) -> dict[str, Path]:
    def epochs(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--epochs", type=int, default=None, help=f"epochs (default {FULL.epochs})")

    args, settings = parse_settings(argv, __doc__.splitlines()[0], FULL, QUICK, sweep=True, extra=epochs)
    folder = args.out / NAME
    feedback = write_feedback_files(settings, folder)

    import optodfa.sweep  # the engine pulls in dask; only a run needs it

    summary = optodfa.sweep.run(grid(settings, feedback["paths"]), folder, workers=args.workers,
                                scheduler=args.scheduler, progress=False, figures=False)
    keys = list(LABELS)
    runs = _load_runs(summary, keys, settings.seeds)

    shape = (1, settings.input_size, settings.input_size)
    params = {"mlp": parameter_count(mlp(shape, settings.mlp_hidden, CLASSES, bias=False))}
    params.update({key: parameter_count(cnn(shape, CLASSES, channels=settings.channels, activation="tanh"))
                   for key in keys[1:]})

    figure = Figure(figsize=(15, 4.2))
    axes = figure.subplots(1, 3)
    arrays: dict[str, Any] = {}
    rows = []
    for colour, key in zip(("k", "C3", "C0", "C1", "C2"), keys, strict=True):
        series = [run.series for run in runs[key]]
        steps = np.asarray(series[0]["alignment/step"])
        arrays[key] = {"steps": steps}
        finals = {}
        for axis, layer in zip(axes[:2], LAYERS[:2], strict=True):
            curves = np.array([s[f"alignment/gradient/{layer}"] for s in series])
            axis.plot(steps, curves.mean(0), color=colour, label=LABELS[key])
            axis.fill_between(steps, curves.min(0), curves.max(0), color=colour, alpha=0.2, lw=0)
            arrays[key][f"gradient_alignment_{layer}"] = curves
        for layer in LAYERS:
            curves = np.array([s[f"alignment/gradient/{layer}"] for s in series])
            finals[layer] = curves[:, -LAST:].mean(1)
        accuracy = np.array([s["metrics/test_accuracy"] for s in series])
        epochs = np.arange(1, accuracy.shape[1] + 1)
        axes[2].plot(epochs, accuracy.mean(0), "o-", color=colour, label=LABELS[key])
        axes[2].fill_between(epochs, accuracy.min(0), accuracy.max(0), color=colour, alpha=0.2, lw=0)
        arrays[key]["test_accuracy"] = accuracy
        wa = np.array([second_layer_alignment(run, key, settings, feedback) for run in runs[key]])
        arrays[key]["weight_alignment_layer2"] = wa[:, 0]
        arrays[key]["cosine_to_aligned_layer2"] = wa[:, 1]
        bound = 1.0 if key == "mlp" else feedback["attainable"][key][0]
        arrays[key]["attainable_alignment"] = bound
        rows.append([LABELS[key], params[key], _mean_sd(accuracy[:, -1]), _mean_sd(finals["layer1"]),
                     _mean_sd(finals["layer2"]), _mean_sd(finals["total"]), f"{bound:.3f}", _mean_sd(wa[:, 0]),
                     _mean_sd(wa[:, 1])])
    for axis, layer in zip(axes[:2], ("first", "second"), strict=True):
        axis.axhline(0, color="grey", lw=0.5)
        axis.set(xlabel="training step", ylabel="gradient alignment (cosine)", ylim=(-0.2, 1.0),
                 title=f"{layer} hidden layer")
    axes[0].legend(fontsize=8)
    axes[2].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    figure.suptitle(f"DFA on Fashion-MNIST {settings.input_size}×{settings.input_size}: MLP "
                    f"{math.prod(shape)}-{settings.mlp_hidden[0]}-{settings.mlp_hidden[1]}-10 vs CNN "
                    f"conv{settings.channels[0]}-conv{settings.channels[1]}-linear; {settings.seeds} seed(s), "
                    f"mean and min–max", fontsize=10)
    figure.tight_layout()

    header = ["network", "parameters", "test accuracy", f"GA layer 1 (last {LAST})", f"GA layer 2 (last {LAST})",
              f"GA total (last {LAST})", "attainable", "WA layer 2", "cos(W_2, aligned W_2)"]
    table = markdown_table(header, rows)
    table += (f"\n{settings.seeds} seed(s), mean ± sd; {settings.epochs} epochs on {settings.limit} training "
              f"samples, {settings.input_size}×{settings.input_size} pixels, Adam lr {settings.lr}, batch "
              f"{settings.batch_size}, tanh, no biases. GA: gradient alignment, the mean of the last {LAST} "
              f"measurements (every {settings.alignment_every} steps). Attainable: max over conv kernels K of "
              f"cos(T(K)ᵀ B_2, B_1), the best any conv layer 2 can satisfy DFA's alignment condition (1 for a "
              f"dense layer). WA layer 2: cos(W_2, B_2 B_1ᵀ) for the MLP, cos(K_2, T*(B_2 B_1ᵀ)) in kernel space "
              f"for the CNN. cos(W_2, aligned W_2): the final layer-2 weights against those that attain that "
              f"bound (the MLP: B_2 B_1ᵀ; the CNN: the least-squares kernel K*). SVD singular values used (top "
              f"{CLASSES}): "
              f"{feedback['singular_values'][0]:.3g} … {feedback['singular_values'][-1]:.3g}.\n")
    arrays["svd"] = {"kernel": feedback["kernel"], "singular_values": feedback["singular_values"]}
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings),
                                                      "parameters": params},
                          figure=figure, table=table, out=args.out,
                          title="DFA on a CNN vs an MLP, with and without structured feedback")
    print(table)
    print(f"figure: {paths['png']}")
    return paths


def _mean_sd(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


if __name__ == "__main__":
    main()
