"""Command line: ``optodfa train | report | devices | demo | sweep`` (also ``python -m optodfa``).

Every failure ends in one line on stderr, ``optodfa COMMAND: error: MESSAGE``, and an exit code: 2 for bad input,
1 for a failure at run time, 128 + the signal number when a signal stopped training (see :mod:`optodfa.errors`
for the list of error types). ``--debug`` prints the traceback as well. Nothing runs before the inputs that can
be checked without data (flags, configuration, torch device, memory estimates) have been checked.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import optodfa
from optodfa.config import (
    DATASET_CHOICES,
    FEEDBACK_DISTRIBUTIONS,
    LOSS_REDUCTIONS,
    METHODS,
    OPTIMIZERS,
    TRANSFORMER_CONTEXT,
    TRANSFORMER_HEADS,
    TrainConfig,
    training_memory,
)
from optodfa.models import ACTIVATIONS, CNN_CHANNELS, MODELS, TRANSFORMER_WIDTHS, parse_hidden
from optodfa.schedule import SCHEDULES

DEMO_OUT = "results/demo.h5"
DEBUG_ENV = "OPTODFA_DEBUG"
# Flags of `train` that only steer this process; every other flag given with --resume must match the run file.
PROCESS_FLAGS = ("resume", "no_progress", "debug", "out", "force")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (the full usage is one ``--help`` away) and defaults in every help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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
                       description="Train a network with DFA or BP and write a run file. SIGINT (Ctrl-C), SIGTERM "
                       "and SIGHUP stop at the next step with a checkpoint; --resume continues from it.")
    d = TrainConfig()
    p.add_argument("--dataset", choices=DATASET_CHOICES, default=None, help="data set (default: fashion-mnist; "
                   "lighthouse, the shipped text, with --model transformer; text with --text-file)")
    p.add_argument("--text-file", default=None, metavar="PATH", help="a UTF-8 text to train --model transformer "
                   "on, one token per character, the last 10%% held out (implies --dataset text)")
    p.add_argument("--data-root", default=None, help="folder holding the data set (searched first)")
    p.add_argument("--download", action="store_true", help="download a missing data set (checksums verified)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training samples (text windows "
                   "with --model transformer)")
    p.add_argument("--input-size", type=int, default=None, metavar="PIXELS",
                   help="resize images to PIXELS x PIXELS (default: as stored)")
    p.add_argument("--model", choices=MODELS, default=d.model, help="network family")
    p.add_argument("--hidden", default=None, help="hidden widths, comma-separated (default: 800,800 for mlp); with "
                   f"--model cnn the conv layers' output channels (default: {','.join(map(str, CNN_CHANNELS))}); with "
                   "--model residual the stem's width then one equal width per residual block; with --model "
                   f"transformer one equal width per block (default: {','.join(map(str, TRANSFORMER_WIDTHS))})")
    p.add_argument("--context", type=int, default=None, metavar="T", help="--model transformer: tokens per "
                   "window; an epoch is one pass over the text's non-overlapping windows "
                   f"(default: {TRANSFORMER_CONTEXT})")
    p.add_argument("--heads", type=int, default=None, help="--model transformer: attention heads, dividing the "
                   f"width (default: {TRANSFORMER_HEADS})")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None, help=f"hidden activation (default: "
                   f"{d.activation}; gelu with --model transformer)")
    p.add_argument("--no-bias", action="store_true", help="Linear layers without bias")
    p.add_argument("--method", choices=METHODS, default=d.method, help="training method")
    p.add_argument("--device", default=d.device, help="feedback device (see `optodfa devices`)")
    p.add_argument("--profile", default=None, help="device profile name or TOML file (optical devices)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="device setting over the profile, e.g. camera.bits=4 (repeatable)")
    p.add_argument("--feedback", choices=FEEDBACK_DISTRIBUTIONS, default=d.feedback,
                   help="entries of the digital device's B: N(0, 1), or U[-1, 1) as in the paper (digital only)")
    p.add_argument("--feedback-file", default=None, metavar="B.npy|B.h5[:DATASET]",
                   help="read B (D x d) from a file; its SHA-256 is recorded in the run file (digital only)")
    p.add_argument("--feedback-scale", type=_feedback_scale, default="auto",
                   help="factor on B e: 'auto' = 1/sqrt(widest hidden layer), or a number")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per step")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="optimiser; sgd-plain is SGD with momentum 0 (sgd keeps --momentum)")
    p.add_argument("--momentum", type=float, default=None,
                   help=f"SGD momentum (default: {d.momentum} with sgd, 0 with sgd-plain)")
    p.add_argument("--loss-reduction", choices=LOSS_REDUCTIONS, default=d.loss_reduction,
                   help="training loss over a batch: mean or sum (evaluation is always a mean)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and data-order seed")
    p.add_argument("--feedback-seed", type=int, default=d.feedback_seed, help="seed of the feedback matrix B")
    p.add_argument("--noise-seed", type=int, default=None, help="device noise seed (default: from feedback seed)")
    p.add_argument("--alignment-every", type=int, default=d.alignment_every, help="steps between alignment "
                   "measurements (0: never)")
    p.add_argument("--alignment-schedule", choices=SCHEDULES, default=d.alignment_schedule,
                   help="when to measure alignment: every --alignment-every steps, or on a log-spaced step grid "
                   "(log: also weight snapshots, kept in the run file)")
    p.add_argument("--alignment-per-decade", type=int, default=d.alignment_per_decade, metavar="N",
                   help="points per decade of steps of --alignment-schedule log")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints inside an epoch (0: epoch ends only)")
    p.add_argument("--on-nonfinite", choices=("raise", "skip"), default=d.on_nonfinite,
                   help="what a NaN/inf error does: stop naming the step, or skip the batch and count it")
    p.add_argument("--label-noise", type=float, default=d.label_noise,
                   help="probability that a training label is replaced by a random class")
    p.add_argument("--label-noise-test", action="store_true",
                   help="apply the label noise to the test labels too (training labels unchanged)")
    p.add_argument("--torch-device", default=d.torch_device, help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", default=None, help="run file to write (.h5)")
    p.add_argument("--resume", default=None, metavar="RUN.h5", help="continue this run from its last checkpoint "
                   "(other flags, if given, must match its stored configuration)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_debug(p)
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="also write TensorBoard event files here")


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command's default must not overwrite `optodfa --debug COMMAND`.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error (also: $OPTODFA_DEBUG=1)")


def _config_from(args: argparse.Namespace, *, base: TrainConfig | None = None,
                 only: Sequence[str] | None = None) -> TrainConfig:
    """The configuration the flags ask for; with ``base``, only the flags in ``only`` change it."""
    values = dict(
        dataset=_dataset(args), data_root=args.data_root, download=args.download, limit=args.limit, model=args.model,
        hidden=_hidden(args), activation=_activation(args), text_file=args.text_file, context=args.context,
        heads=args.heads, bias=not args.no_bias, method=args.method,
        device=args.device, profile=args.profile, overrides=parse_settings(args.settings),
        feedback_scale=args.feedback_scale, seed=args.seed, feedback_seed=args.feedback_seed,
        noise_seed=args.noise_seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, momentum=_momentum(args), weight_decay=args.weight_decay,
        alignment_every=args.alignment_every, alignment_schedule=args.alignment_schedule,
        alignment_per_decade=args.alignment_per_decade, checkpoint_every=args.checkpoint_every,
        on_nonfinite=args.on_nonfinite, torch_device=args.torch_device, label_noise=args.label_noise,
        label_noise_test=args.label_noise_test, feedback=args.feedback, feedback_file=args.feedback_file,
        loss_reduction=args.loss_reduction, input_size=args.input_size)
    if base is None:
        return TrainConfig(**values)
    field_of = {"no_bias": "bias", "settings": "overrides"}
    chosen = {field_of.get(dest, dest) for dest in (only or ())}
    return TrainConfig(**{**base.to_dict(), "hidden": base.hidden,
                          **{k: v for k, v in values.items() if k in chosen}})


def _hidden(args: argparse.Namespace) -> tuple[int, ...]:
    if args.hidden is None:
        return {"cnn": CNN_CHANNELS, "transformer": TRANSFORMER_WIDTHS}.get(args.model, (800, 800))
    return parse_hidden(args.hidden)


def _dataset(args: argparse.Namespace) -> str:
    if args.dataset is not None:
        return args.dataset
    if args.text_file is not None:
        return "text"
    return "lighthouse" if args.model == "transformer" else "fashion-mnist"


def _activation(args: argparse.Namespace) -> str:
    if args.activation is not None:
        return args.activation
    return "gelu" if args.model == "transformer" else TrainConfig().activation


def _momentum(args: argparse.Namespace) -> float:
    if args.momentum is None:
        return 0.0 if args.optimizer == "sgd-plain" else TrainConfig().momentum
    if args.optimizer == "sgd-plain" and args.momentum != 0:
        raise ValueError(f"--optimizer sgd-plain is SGD without momentum; got --momentum {args.momentum} "
                         f"(use --optimizer sgd for SGD with momentum)")
    return args.momentum


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
        if args.force:
            raise ValueError("--force overwrites a new run's --out; --resume continues a run and never overwrites "
                             "it: give one of them")
        config = _check_resume(args)
        check_before_running(config)
        path = resume(args.resume, progress=progress, tensorboard=args.tensorboard)
    else:
        if not args.out:
            raise ValueError("train needs --out RUN.h5 (or --resume RUN.h5)")
        config = _config_from(args)
        check_before_running(config)
        path = train(config, args.out, force=args.force, progress=progress, tensorboard=args.tensorboard)
    _finish(Path(path))
    return 0


def check_before_running(config: TrainConfig) -> None:
    """What can be checked before data are loaded: the torch device and the memory the network needs."""
    from optodfa.validation import check_memory, check_torch_device

    check_torch_device(config.torch_device)
    needed, what = training_memory(config)
    check_memory(what, needed)


def _check_resume(args: argparse.Namespace) -> TrainConfig:
    """The stored configuration of ``--resume FILE``; flags given beside it must agree with it."""
    from optodfa.runlog import RunFile, RunFileError

    run = RunFile.load(args.resume, checkpoint=False)
    if "config" not in run.attrs:
        raise RunFileError(f"{args.resume!r} is not an optodfa run file (no 'config' attribute)")
    stored = TrainConfig.from_dict(run.attrs["config"])
    given = sorted(set(vars(args)) & set(_explicit(args.argv)) - set(PROCESS_FLAGS))
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ValueError(f"--resume {args.resume} continues that file; --out {args.out} names another one "
                         f"(drop --out, or start a new run without --resume)")
    if not given:
        return stored
    asked = _config_from(args, base=stored, only=given)
    conflicts = stored.differences(asked)
    if conflicts:
        listed = "; ".join(f"{name} = {new!r} (stored: {old!r})" for name, (old, new) in sorted(conflicts.items()))
        raise ValueError(f"--resume continues the stored configuration of {args.resume}; these flags conflict "
                         f"with it: {listed}. Drop them, or start a new run with --out")
    return stored


def _explicit(argv: Sequence[str]) -> list[str]:
    """Destinations of the ``train`` flags written out in ``argv`` (defaults do not count)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["train"]._actions:  # type: ignore[union-attr]
        action.default = argparse.SUPPRESS
    return list(vars(parser.parse_args(argv)))


def cmd_report(args: argparse.Namespace) -> int:
    from optodfa.report import comparison_table, summary_table
    from optodfa.sweep import is_sweep_folder

    if len(args.runs) == 1 and is_sweep_folder(args.runs[0]):
        from optodfa.sweep.cli import report

        print(report(args.runs[0]))
        return 0
    print(summary_table(args.runs[0]) if len(args.runs) == 1 else comparison_table(args.runs))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from optodfa.registry import available_devices

    if args.action == "check":
        from optodfa.conformance import format_table, run_checks

        results = run_checks(args.name, profile=args.profile, overrides=parse_settings(args.settings))
        print(format_table(args.name, results))
        return 1 if any(r.status == "fail" for r in results) else 0
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
    check_before_running(config)
    path = train(config, args.out, force=True, progress=sys.stderr.isatty())  # the demo owns its output file
    _finish(Path(path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optodfa", description="Direct Feedback Alignment through optical hardware, simulated "
                     "or real. Exit codes: 0 success, 1 failure at run time, 2 bad input, 128 + N stopped by "
                     "signal N.")
    parser.add_argument("--version", action="version", version=f"optodfa {optodfa.__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the traceback of an error (also: $OPTODFA_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands (optodfa COMMAND --help for each)")
    _add_train(sub)
    report = sub.add_parser("report", help="print the summary table of a run file or a sweep folder, or one table "
                            "comparing several run files")
    report.add_argument("runs", nargs="+", metavar="RUN.h5", help="run file(s), or one sweep folder")
    _add_debug(report)
    devices = sub.add_parser("devices", help="list feedback devices; `devices fidelity NAME` measures one, "
                             "`devices check NAME` runs the conformance kit on it")
    devices.add_argument("action", nargs="?", choices=("list", "fidelity", "check"), default="list",
                         help="list the installed devices, measure one's feedback fidelity, or run the "
                         "conformance kit on it")
    devices.add_argument("name", nargs="?", default="opu-sim", help="device name (for fidelity and check)")
    devices.add_argument("--profile", default=None, help="device profile name or TOML file")
    devices.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                         help="device setting over the profile (repeatable)")
    _add_debug(devices)
    demo = sub.add_parser("demo", help="train DFA through the simulated OPU and print the table")
    demo.add_argument("--epochs", type=int, default=None, help="epochs (default: 3 on Fashion-MNIST, 20 on digits)")
    demo.add_argument("--out", default=DEMO_OUT, help="run file to write")
    _add_debug(demo)
    from optodfa.sweep.cli import add_parser as add_sweep

    add_sweep(sub)
    _add_debug(sub.choices["sweep"])
    return parser


COMMANDS = {"train": cmd_train, "report": cmd_report, "devices": cmd_devices, "demo": cmd_demo}


@contextmanager
def _signals_stop_at_once() -> Iterator[None]:
    """Outside the training loop (which stops at a step boundary), SIGTERM and SIGHUP stop like Ctrl-C does."""
    from optodfa.interrupt import SIGNALS, Interrupted

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum, immediate=True)

    previous = {}
    try:
        for number in SIGNALS:
            previous[number] = signal.signal(number, stop)
    except ValueError:  # not the main thread (main() called from a worker): leave signals alone
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code, never raises."""
    from optodfa.errors import exit_code, one_line

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed as one line)
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = argv
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with _signals_stop_at_once():
            return COMMANDS.get(args.command, getattr(args, "handler", None))(args)
    except (Exception, KeyboardInterrupt) as exc:
        if debug:
            traceback.print_exc()
        message = one_line(exc)
        path = getattr(args, "resume", None) or getattr(args, "out", None)
        from optodfa.interrupt import Interrupted

        if isinstance(exc, Interrupted) and exc.immediate and exc.path is None:
            if path and Path(path).is_file():
                message = exc.message(path)
            else:
                message = f"stopped at once by {exc.signal_name}, before the run file was written"
        print(f"optodfa {args.command}: {'' if isinstance(exc, KeyboardInterrupt) else 'error: '}{message}",
              file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
