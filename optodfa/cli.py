"""Command line: ``optodfa train | report | devices | demo | sweep``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from optodfa.config import DATASET_CHOICES, METHODS, OPTIMIZERS, TrainConfig
from optodfa.models import ACTIVATIONS, MODELS, parse_hidden

DEMO_OUT = "results/demo.h5"


def parse_settings(items: Sequence[str]) -> dict[str, str]:
    """``["camera.bits=4", ...]`` -> ``{"camera.bits": "4"}``; values stay text for the device to convert."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. camera.bits=4), got {item!r}")
        settings[key.strip()] = value.strip()
    return settings


def _feedback_scale(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number, got {text!r}") from None


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network with DFA or BP and write a run file",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    p.add_argument("--dataset", choices=DATASET_CHOICES, default="fashion-mnist")
    p.add_argument("--data-root", default=None, help="folder holding the data set (searched first)")
    p.add_argument("--download", action="store_true", help="download a missing data set (checksums verified)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument("--hidden", default="800,800", help="hidden widths, comma-separated")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=d.activation)
    p.add_argument("--no-bias", action="store_true", help="Linear layers without bias")
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--device", default=d.device, help="feedback device (see `optodfa devices`)")
    p.add_argument("--profile", default=None, help="device profile name or TOML file (optical devices)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="device setting over the profile, e.g. camera.bits=4 (repeatable)")
    p.add_argument("--feedback-scale", type=_feedback_scale, default="auto",
                   help="factor on B e: 'auto' = 1/sqrt(widest hidden layer), or a number")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and data-order seed")
    p.add_argument("--feedback-seed", type=int, default=d.feedback_seed, help="seed of the feedback matrix B")
    p.add_argument("--noise-seed", type=int, default=None, help="device noise seed (default: from feedback seed)")
    p.add_argument("--alignment-every", type=int, default=d.alignment_every, help="steps between alignment "
                   "measurements (0: never)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints inside an epoch (0: epoch ends only)")
    p.add_argument("--on-nonfinite", choices=("raise", "skip"), default=d.on_nonfinite,
                   help="what a NaN/inf error does: stop naming the step, or skip the batch and count it")
    p.add_argument("--label-noise", type=float, default=d.label_noise)
    p.add_argument("--torch-device", default=d.torch_device, help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", default=None, help="run file to write (.h5)")
    p.add_argument("--resume", default=None, metavar="RUN.h5", help="continue this run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="also write TensorBoard event files here")


def _config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset, data_root=args.data_root, download=args.download, limit=args.limit, model=args.model,
        hidden=parse_hidden(args.hidden), activation=args.activation, bias=not args.no_bias, method=args.method,
        device=args.device, profile=args.profile, overrides=parse_settings(args.settings),
        feedback_scale=args.feedback_scale, seed=args.seed, feedback_seed=args.feedback_seed,
        noise_seed=args.noise_seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay,
        alignment_every=args.alignment_every, checkpoint_every=args.checkpoint_every,
        on_nonfinite=args.on_nonfinite, torch_device=args.torch_device, label_noise=args.label_noise)


def _finish(path: Path) -> None:
    from optodfa.plots import plot_run
    from optodfa.report import summary_table

    png = plot_run(path)
    print(summary_table(path))
    print(f"curves: {png}")


def cmd_train(args: argparse.Namespace) -> int:
    from optodfa.train import resume, train

    progress = not args.no_progress and sys.stderr.isatty()
    if args.resume:
        path = resume(args.resume, progress=progress, tensorboard=args.tensorboard)
    else:
        if not args.out:
            raise ValueError("train needs --out RUN.h5 (or --resume RUN.h5)")
        path = train(_config_from(args), args.out, progress=progress, tensorboard=args.tensorboard)
    _finish(Path(path))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from optodfa.report import summary_table
    from optodfa.sweep import is_sweep_folder

    if is_sweep_folder(args.run):
        from optodfa.sweep.cli import report

        print(report(args.run))
        return 0
    print(summary_table(args.run))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from optodfa.registry import available_devices

    if args.action == "fidelity":
        from optodfa.fidelity import fidelity_report

        print(fidelity_report(args.name, profile=args.profile, overrides=parse_settings(args.settings)))
        return 0
    entries = available_devices()
    width = max(len(name) for name in entries)
    for name, entry in sorted(entries.items()):
        print(f"{name:<{width}}  {entry.description}  [{entry.source}]")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from optodfa.data import DatasetNotFoundError, load_dataset
    from optodfa.train import train

    try:
        load_dataset("fashion-mnist", limit=1)
        dataset, epochs = "fashion-mnist", args.epochs or 3
    except DatasetNotFoundError:
        print("Fashion-MNIST not found (Debian: apt-get install dataset-fashion-mnist); using scikit-learn's digits")
        dataset, epochs = "digits", args.epochs or 20
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(dataset=dataset, hidden=(800, 800), method="dfa", device="opu-sim", epochs=epochs,
                         lr=1e-4, optimizer="adam", alignment_every=50)
    path = train(config, args.out, progress=sys.stderr.isatty())
    _finish(Path(path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optodfa", description="Direct Feedback Alignment through optical "
                                     "hardware, simulated or real.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    report = sub.add_parser("report", help="print the summary table of a run file or a sweep folder")
    report.add_argument("run", help="run file (.h5) or sweep folder")
    devices = sub.add_parser("devices", help="list feedback devices; `devices fidelity NAME` measures one")
    devices.add_argument("action", nargs="?", choices=("list", "fidelity"), default="list")
    devices.add_argument("name", nargs="?", default="opu-sim", help="device name (for fidelity)")
    devices.add_argument("--profile", default=None)
    devices.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    demo = sub.add_parser("demo", help="train DFA through the simulated OPU and print the table")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--out", default=DEMO_OUT)
    from optodfa.sweep.cli import add_parser as add_sweep

    add_sweep(sub)
    return parser


COMMANDS = {"train": cmd_train, "report": cmd_report, "devices": cmd_devices, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS.get(args.command, getattr(args, "handler", None))(args)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"optodfa {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
