"""The frozen configuration of a training run, stored whole in its run file."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from optodfa.models import ACTIVATIONS, MODELS
from optodfa.seeding import check_seed
from optodfa.validation import check_choice, check_int, check_real

METHODS = ("dfa", "bp")
OPTIMIZERS = ("sgd", "adam")
DATASET_CHOICES = ("fashion-mnist", "mnist", "kmnist", "digits", "cifar10", "cifar100")


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
        check_choice("dataset", self.dataset, DATASET_CHOICES)
        if self.limit is not None:
            check_int("limit", self.limit, low=1)
        check_choice("model", self.model, MODELS)
        object.__setattr__(self, "hidden", tuple(check_int("hidden width", h, low=1) for h in self.hidden))
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden width, got none")
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("method", self.method, METHODS)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a registered device name, got {self.device!r}")
        if self.feedback_scale != "auto":
            check_real("feedback_scale", self.feedback_scale, low=0.0, low_open=True)
        check_seed(self.seed, "seed")
        check_seed(self.feedback_seed, "feedback_seed")
        if self.noise_seed is not None:
            check_seed(self.noise_seed, "noise_seed")
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_int("alignment_every", self.alignment_every, low=0)
        check_int("checkpoint_every", self.checkpoint_every, low=0)
        check_choice("on_nonfinite", self.on_nonfinite, ("raise", "skip"))
        check_real("label_noise", self.label_noise, low=0.0, high=1.0)
        object.__setattr__(self, "overrides", dict(self.overrides))

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
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)
