"""The frozen configuration of a training run, stored whole in its run file."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optodfa.models import ACTIVATIONS, MODELS
from optodfa.seeding import check_seed
from optodfa.validation import check_bool, check_choice, check_int, check_real

METHODS = ("dfa", "bp")
OPTIMIZERS = ("sgd", "adam")
DATASET_CHOICES = ("fashion-mnist", "mnist", "kmnist", "digits", "cifar10", "cifar100")
# (input features, classes, training samples) of each data set, for memory estimates made before loading it.
DATASET_SIZES = {"fashion-mnist": (784, 10, 60000), "mnist": (784, 10, 60000), "kmnist": (784, 10, 60000),
                 "digits": (64, 10, 1437), "cifar10": (3072, 10, 50000), "cifar100": (3072, 100, 50000)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        dataset, data_root, download, limit: data set name, optional folder, whether a missing data set may be
            downloaded (checksummed), first ``limit`` training samples only.
        model, hidden, activation, bias: the network (``mlp`` with hidden widths).
        method: ``"dfa"`` or ``"bp"``.
        device, profile, overrides: the feedback projector (registry name, optional profile, ``{"key": value}``).
        feedback_scale: ``"auto"`` (``1/sqrt(n_max)``) or a positive number multiplying ``B e``.
        seed: initialisation and data-order seed. feedback_seed: seed of ``B`` (kept separate).
        noise_seed: device noise seed, ``None`` derives it from ``feedback_seed``.
        epochs, batch_size, lr, optimizer, momentum, weight_decay: optimisation.
        alignment_every: measure gradient and weight alignment every this many steps (0: never).
        checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
        on_nonfinite: ``"raise"`` or ``"skip"`` for batches whose error holds NaN or inf.
        torch_device: ``"cpu"``, ``"cuda"``, ...
        label_noise: probability that a training label is replaced by a random class.
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
    momentum: float = 0.9
    weight_decay: float = 0.0
    alignment_every: int = 100
    checkpoint_every: int = 0
    on_nonfinite: str = "raise"
    torch_device: str = "cpu"
    label_noise: float = 0.0

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
        put("checkpoint_every", check_int("checkpoint_every", self.checkpoint_every, low=0))
        put("on_nonfinite", _choice("on_nonfinite", self.on_nonfinite, ("raise", "skip")))
        if not isinstance(self.torch_device, str) or not self.torch_device.strip():
            raise TypeError(f"torch_device must be a string such as 'cpu' or 'cuda:0', got {self.torch_device!r}")
        put("torch_device", str(self.torch_device))
        put("label_noise", check_real("label_noise", self.label_noise, low=0.0, high=1.0))

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
    features, classes, samples = DATASET_SIZES[config.dataset]
    if config.limit is not None:
        samples = min(samples, config.limit)
    widths = [features, *config.hidden, classes]
    weights = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    feedback = sum(config.hidden) * classes
    batch = min(config.batch_size, samples)
    activations = batch * sum(widths) * 6
    data = 3 * samples * features + 2 * 10000 * features
    needed = 4.0 * (4 * weights + 2 * feedback + activations + data)
    what = (f"training hidden = {','.join(map(str, config.hidden))} at batch size {config.batch_size} on "
            f"{config.dataset}")
    return needed, what
