"""The frozen configuration of a training run, stored whole in its run file."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optodfa.models import ACTIVATIONS, MODELS, TOKEN_MODELS, check_residual_widths, check_transformer_settings
from optodfa.schedule import SCHEDULES
from optodfa.seeding import check_seed
from optodfa.text_data import TEXT_DATASETS
from optodfa.validation import check_bool, check_choice, check_int, check_real

METHODS = ("dfa", "bp")
# "sgd" keeps its momentum (default 0.9) as before; "sgd-plain" is SGD with momentum 0, the paper's optimiser,
# added as a new name so that no existing run or grid changes meaning.
OPTIMIZERS = ("sgd", "sgd-plain", "adam")
MOMENTUM_DEFAULT = 0.9
FEEDBACK_DISTRIBUTIONS = ("gaussian", "uniform")
LOSS_REDUCTIONS = ("mean", "sum")
# Devices whose feedback matrix optodfa draws itself: only they take `feedback` other than the default and
# `feedback_file`. An optical device's projection is its own medium's, so these are refused for it.
MATRIX_DEVICES = ("digital",)
IMAGE_DATASETS = ("fashion-mnist", "mnist", "kmnist", "digits", "cifar10", "cifar100")  # input_size resizes these
DATASET_CHOICES = (*IMAGE_DATASETS, *TEXT_DATASETS)  # the text ones train model "transformer" (optodfa.text_data)
TRANSFORMER_CONTEXT, TRANSFORMER_HEADS = 32, 2  # what context and heads None mean for model "transformer"
# (input features, classes, training samples) of each image data set, for memory estimates made before loading it.
DATASET_CHANNELS = {"cifar10": 3, "cifar100": 3}  # 1 for the others
DATASET_SIZES = {"fashion-mnist": (784, 10, 60000), "mnist": (784, 10, 60000), "kmnist": (784, 10, 60000),
                 "digits": (64, 10, 1437), "cifar10": (3072, 10, 50000), "cifar100": (3072, 100, 50000)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        dataset, data_root, download, limit: data set name, optional folder, whether a missing data set may be
            downloaded (checksummed), first ``limit`` training samples only.
        model, hidden, activation, bias: the network: ``mlp`` with hidden widths ``hidden``, ``cnn`` with 3 x 3
            conv layers of ``hidden`` output channels then a linear layer (image input), or ``residual``: a stem
            and ``len(hidden) - 1`` residual blocks, all of width ``hidden[0]`` (``bias`` applies to all), or
            ``transformer``: a causal character-level Transformer (:class:`optodfa.models.CharTransformer`) with
            one block per entry of ``hidden``, all of width ``hidden[0]``, ``activation`` in its MLPs (``bias``
            must stay true); it trains on a text data set (``lighthouse``, or ``text`` with ``text_file``).
        text_file: the UTF-8 text of data set ``text`` (:mod:`optodfa.text_data`; ``None`` for any other).
        context, heads: the transformer's window in tokens and attention heads (``None``: 32 and 2, stored as
            such); ``None`` for every other model.
        method: ``"dfa"`` or ``"bp"``.
        device, profile, overrides: the feedback projector (registry name, optional profile, ``{"key": value}``).
        feedback_scale: ``"auto"`` (``1/sqrt(n_max)``) or a positive number multiplying ``B e``.
        seed: initialisation and data-order seed. feedback_seed: seed of ``B`` (kept separate).
        noise_seed: device noise seed, ``None`` derives it from ``feedback_seed``.
        epochs, batch_size, lr, optimizer, momentum, weight_decay: optimisation.
        alignment_every: measure gradient and weight alignment every this many steps (0: never); used by the
            ``"every"`` schedule only.
        alignment_schedule: ``"every"`` (every ``alignment_every`` steps) or ``"log"`` (alignment and weight
            snapshots on a log-spaced step grid, :func:`optodfa.schedule.log_grid`, so long runs stay small).
        alignment_per_decade: points per decade of steps of the ``"log"`` schedule.
        checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
        on_nonfinite: ``"raise"`` or ``"skip"`` for batches whose error holds NaN or inf.
        torch_device: ``"cpu"``, ``"cuda"``, ...
        label_noise: probability that a training label is replaced by a random class.
        label_noise_test: apply the same label noise to the test labels too (as the paper does); the training
            labels are the same either way.
        feedback: ``"gaussian"`` (N(0, 1)) or ``"uniform"`` (U[-1, 1), the paper's convention) entries of ``B``;
            a setting of the digital device only (another device with ``"uniform"`` is an error).
        feedback_file: ``B`` read from ``PATH.npy``, ``PATH.h5`` or ``PATH.h5:DATASET`` (digital device only);
            its SHA-256 lands in the run file's device description.
        loss_reduction: ``"mean"`` or ``"sum"`` over the batch of the training loss (evaluation is a mean).
        input_size: resize images to ``input_size x input_size`` pixels (``None``: as stored).
    """

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    limit: int | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (800, 800)
    activation: str = "tanh"
    bias: bool = True
    method: str = "dfa"
    device: str = "digital"
    profile: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    feedback_scale: float | str = "auto"
    seed: int = 0
    feedback_seed: int = 0
    noise_seed: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9  # MOMENTUM_DEFAULT
    weight_decay: float = 0.0
    alignment_every: int = 100
    alignment_schedule: str = "every"
    alignment_per_decade: int = 10
    checkpoint_every: int = 0
    on_nonfinite: str = "raise"
    torch_device: str = "cpu"
    label_noise: float = 0.0
    label_noise_test: bool = False
    feedback: str = "gaussian"
    feedback_file: str | None = None
    loss_reduction: str = "mean"
    input_size: int | None = None
    text_file: str | None = None
    context: int | None = None
    heads: int | None = None

    def __post_init__(self) -> None:
        # Every field is checked and stored as a plain Python value (int, float, bool, str, tuple, dict), so that
        # a configuration built from numpy scalars (a sweep) is stored in the run file as numbers, not as text,
        # and comes back equal on resume.
        put = self._put
        put("dataset", _choice("dataset", self.dataset, DATASET_CHOICES))
        put("data_root", _optional_text("data_root", self.data_root))
        put("download", check_bool("download", self.download))
        put("limit", None if self.limit is None else check_int("limit", self.limit, low=1))
        put("model", _choice("model", self.model, MODELS))
        put("hidden", _widths(self.hidden))
        if self.model == "residual":
            check_residual_widths(self.hidden)
        put("activation", _choice("activation", self.activation, ACTIVATIONS))
        put("bias", check_bool("bias", self.bias))
        put("method", _choice("method", self.method, METHODS))
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a registered device name, got {self.device!r}")
        put("device", str(self.device))
        put("profile", _optional_text("profile", self.profile))
        put("overrides", _overrides(self.overrides))
        if isinstance(self.feedback_scale, str):
            if self.feedback_scale != "auto":
                raise ValueError(f"feedback_scale must be 'auto' or a positive number, got {self.feedback_scale!r}")
            put("feedback_scale", "auto")
        else:
            put("feedback_scale", check_real("feedback_scale", self.feedback_scale, low=0.0, low_open=True))
        put("seed", check_seed(self.seed, "seed"))
        put("feedback_seed", check_seed(self.feedback_seed, "feedback_seed"))
        put("noise_seed", None if self.noise_seed is None else check_seed(self.noise_seed, "noise_seed"))
        put("epochs", check_int("epochs", self.epochs, low=1))
        put("batch_size", check_int("batch_size", self.batch_size, low=1))
        put("lr", check_real("lr", self.lr, low=0.0, low_open=True))
        put("optimizer", _choice("optimizer", self.optimizer, OPTIMIZERS))
        put("momentum", check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True))
        put("weight_decay", check_real("weight_decay", self.weight_decay, low=0.0))
        put("alignment_every", check_int("alignment_every", self.alignment_every, low=0))
        put("alignment_schedule", _choice("alignment_schedule", self.alignment_schedule, SCHEDULES))
        put("alignment_per_decade", check_int("alignment_per_decade", self.alignment_per_decade, low=1))
        put("checkpoint_every", check_int("checkpoint_every", self.checkpoint_every, low=0))
        put("on_nonfinite", _choice("on_nonfinite", self.on_nonfinite, ("raise", "skip")))
        if not isinstance(self.torch_device, str) or not self.torch_device.strip():
            raise TypeError(f"torch_device must be a string such as 'cpu' or 'cuda:0', got {self.torch_device!r}")
        put("torch_device", str(self.torch_device))
        put("label_noise", check_real("label_noise", self.label_noise, low=0.0, high=1.0))
        put("label_noise_test", check_bool("label_noise_test", self.label_noise_test))
        if self.optimizer == "sgd-plain":
            # The default momentum (0.9, meant for "sgd") is replaced by 0 so the run file says what ran; any
            # other non-zero momentum asked for with plain SGD is a contradiction, not something to drop.
            if self.momentum not in (0.0, MOMENTUM_DEFAULT):
                raise ValueError(f"optimizer 'sgd-plain' is SGD without momentum; got momentum={self.momentum} "
                                 f"(use optimizer 'sgd' for SGD with momentum)")
            put("momentum", 0.0)
        put("feedback", _choice("feedback", self.feedback, FEEDBACK_DISTRIBUTIONS))
        put("feedback_file", _optional_text("feedback_file", self.feedback_file))
        put("loss_reduction", _choice("loss_reduction", self.loss_reduction, LOSS_REDUCTIONS))
        put("input_size", None if self.input_size is None else check_int("input_size", self.input_size, low=1))
        self._check_feedback_settings()
        put("text_file", _optional_text("text_file", self.text_file))
        self._check_model_data()
        if self.input_size is not None and self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"input_size resizes images; data set {self.dataset!r} is not an image data set "
                             f"(image data sets: {', '.join(IMAGE_DATASETS)})")

    def _check_model_data(self) -> None:
        """A transformer trains on text and only on text; its settings exist for it alone."""
        put = self._put
        if (self.dataset == "text") != (self.text_file is not None):
            raise ValueError(f"data set 'text' reads text_file (--text-file PATH) and only it does; got dataset="
                             f"{self.dataset!r} with text_file={self.text_file!r}")
        if self.model not in TOKEN_MODELS:
            if self.dataset in TEXT_DATASETS:
                raise ValueError(f"data set {self.dataset!r} is a text; it trains model 'transformer', not "
                                 f"{self.model!r} (image data sets: {', '.join(IMAGE_DATASETS)})")
            given = [f"{name}={getattr(self, name)!r}" for name in ("context", "heads") if getattr(self, name)
                     is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} set the transformer; model {self.model!r} has no such "
                                 f"setting (use model 'transformer', or drop them)")
            return
        if self.dataset not in TEXT_DATASETS:
            raise ValueError(f"model {self.model!r} trains on a text: dataset must be one of "
                             f"{', '.join(TEXT_DATASETS)} (text with text_file), got {self.dataset!r}")
        put("context", check_int("context", TRANSFORMER_CONTEXT if self.context is None else self.context, low=1))
        put("heads", check_int("heads", TRANSFORMER_HEADS if self.heads is None else self.heads, low=1))
        check_transformer_settings(self.hidden, self.heads, self.bias)
        if self.label_noise > 0:
            raise ValueError(f"label_noise={self.label_noise} replaces class labels; the transformer's targets are "
                             f"the next characters of the text (use label_noise 0)")
        if self.data_root is not None or self.download:
            raise ValueError(f"data set {self.dataset!r} is a text (shipped, or text_file); data_root and download "
                             f"apply to image data sets only")

    def _check_feedback_settings(self) -> None:
        asked = [f"{name}={value!r}" for name, value, default in (("feedback", self.feedback, "gaussian"),
                                                                  ("feedback_file", self.feedback_file, None))
                 if value != default]
        if not asked:
            return
        if self.device not in MATRIX_DEVICES:
            raise ValueError(f"{' and '.join(asked)} set the feedback matrix of the digital device; device "
                             f"{self.device!r} has its own projection and no such setting (use --device digital, "
                             f"or drop them)")
        if self.feedback_file is not None and self.feedback != "gaussian":
            raise ValueError(f"give either feedback={self.feedback!r} (a drawn B) or feedback_file="
                             f"{self.feedback_file!r} (a B read from a file), not both")
        clashes = sorted(set(self.overrides) & {"distribution", "matrix_file", "matrix_dataset"})
        if clashes:
            raise ValueError(f"{' and '.join(asked)} and the device override(s) {clashes} set the same thing; "
                             f"give one of them")

    def device_overrides(self) -> dict[str, Any]:
        """The device settings of this run: ``overrides`` plus what ``feedback`` and ``feedback_file`` ask for."""
        settings = dict(self.overrides)
        if self.feedback != "gaussian":
            settings["distribution"] = self.feedback
        if self.feedback_file is not None:
            path, dataset = split_matrix_file(self.feedback_file)
            settings["matrix_file"] = path
            if dataset is not None:
                settings["matrix_dataset"] = dataset
        return settings

    def _put(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KeyError(f"unknown configuration key(s) {unknown}; allowed: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("hidden"), list):  # JSON has no tuples
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for the fields where the two configurations differ."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}


def split_matrix_file(text: str) -> tuple[str, str | None]:
    """``"B.h5:W"`` -> ``("B.h5", "W")``; ``"B.npy"`` -> ``("B.npy", None)``.

    Only a name after an HDF5 file's suffix (``.h5``, ``.hdf5``, ``.hdf``) is a data set name (it may hold groups:
    ``B.h5:runs/W``), so a colon elsewhere in a path stays part of it.
    """
    head, sep, tail = text.rpartition(":")
    if sep and tail and head.lower().endswith((".h5", ".hdf5", ".hdf")):
        return head, tail
    return text, None


def _choice(name: str, value: Any, choices: Any) -> Any:
    value = check_choice(name, value, choices)
    return str(value) if isinstance(value, str) else value


def _optional_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string (a name or a path) or None, got {value!r} "
                        f"({type(value).__name__})")
    return str(value)  # numpy.str_ is a str too, but JSON and equality want the plain type


def _widths(hidden: Any) -> tuple[int, ...]:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (Sequence, np.ndarray)):
        raise TypeError(f"hidden must be a sequence of positive integers (e.g. (800, 800)), got {hidden!r} "
                        f"({type(hidden).__name__})")
    widths = tuple(check_int("hidden width", h, low=1) for h in hidden)
    if not widths:
        raise ValueError("hidden must list at least one hidden width, got none")
    return widths


def _overrides(overrides: Any) -> dict[str, Any]:
    """Device settings as ``{str: str | int | float | bool | None}``, numpy scalars made Python ones."""
    if not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a mapping of setting name to value, got {overrides!r} "
                        f"({type(overrides).__name__})")
    plain: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"override names must be non-empty strings (e.g. 'camera.bits'), got {key!r}")
        key = str(key)
        if isinstance(value, (np.generic, str)):
            value = value.item() if isinstance(value, np.generic) else str(value)
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise TypeError(f"override {key!r} must be a string, number, boolean or None, got {value!r} "
                            f"({type(value).__name__})")
        plain[key] = value
    return plain


def training_memory(config: TrainConfig) -> tuple[float, str]:
    """Estimated peak bytes of a training run of ``config`` and a short description of what sized it.

    Counts float32 tensors: the data set (train and test, standardised copies), the network's weights with their
    gradients and two Adam moments, the feedback matrix ``B`` (``D x d``) of a digital device, and one batch's
    activations and projection (a few copies each). Device simulators check their own, larger, state when built.
    """
    if config.model in TOKEN_MODELS:
        return _transformer_memory(config)
    features, classes, samples = DATASET_SIZES[config.dataset]
    if config.input_size is not None:
        features = DATASET_CHANNELS.get(config.dataset, 1) * config.input_size ** 2
    if config.limit is not None:
        samples = min(samples, config.limit)
    batch = min(config.batch_size, samples)
    if config.model == "cnn":  # every conv layer keeps the image's pixels (same padding, no pooling)
        channels = DATASET_CHANNELS.get(config.dataset, 1)
        pixels = features // channels
        convs = [channels, *config.hidden]
        weights = sum((9 * a + 1) * b for a, b in itertools.pairwise(convs)) + (convs[-1] * pixels + 1) * classes
        feedback = sum(config.hidden) * pixels * classes
        activations = batch * (features + sum(config.hidden) * pixels + classes) * 6
    else:
        widths = [features, *config.hidden, classes]
        weights = sum((a + 1) * b for a, b in itertools.pairwise(widths))
        feedback = sum(config.hidden) * classes
        activations = batch * sum(widths) * 6
    data = 3 * samples * features + 2 * 10000 * features
    needed = 4.0 * (4 * weights + 2 * feedback + activations + data)
    what = (f"training hidden = {','.join(map(str, config.hidden))} at batch size {config.batch_size} on "
            f"{config.dataset}")
    return needed, what


def _transformer_memory(config: TrainConfig) -> tuple[float, str]:
    """Like :func:`training_memory` for a transformer: weights (x4: gradients, Adam), the text as int64 ids and
    windows, one batch's activations per block (x6) and attention maps. The vocabulary is not known before the
    text is read: a file's byte count bounds it (and the text's length), the shipped text has 4 K characters."""
    import os

    characters = 4096
    if config.text_file is not None:
        try:
            characters = os.path.getsize(config.text_file)
        except OSError:  # the loader names a missing file; the estimate does not
            characters = 0
    vocabulary = min(characters, 65536) + 1
    width, blocks, context = config.hidden[0], len(config.hidden), config.context or TRANSFORMER_CONTEXT
    weights = blocks * 12 * width * width + 2 * vocabulary * width + context * width
    tokens = min(config.batch_size, max(characters // context, 1)) * context
    heads = config.heads or TRANSFORMER_HEADS
    activations = 6 * tokens * (blocks * 10 * width + 2 * vocabulary) + blocks * heads * tokens * context
    needed = 4.0 * (4 * weights + activations) + 8.0 * 3 * characters
    what = (f"training a transformer of {blocks} block(s) of width {width}, context {context}, at batch size "
            f"{config.batch_size} on {config.dataset}")
    return needed, what
