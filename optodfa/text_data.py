"""Character corpora as training data for ``model = "transformer"``: the shipped text or a user's text file, split
into a training and a held-out part and cut into windows of ``context`` tokens.

Data sets (:data:`TEXT_DATASETS`): ``lighthouse`` (:data:`optodfa.datasets.text.LIGHTHOUSE`, about 2.9 K characters,
always available) and ``text`` (a UTF-8 or ASCII file named by ``text_file``; line endings are made ``\\n`` as
Python's text mode does). A token is one character; the vocabulary is the text's own distinct characters, sorted.
The last 10 % of the text (:data:`VALIDATION_FRACTION`) is held out, as in ``experiments/transformer_dfa.py``.

Samples: each part is cut into non-overlapping windows at the stride ``T = context``: window ``k`` has the input
``ids[kT : kT + T]`` and the target ``ids[kT + 1 : kT + T + 1]`` (the next character at every position), so a part
of ``N`` characters gives ``(N - 1) // T`` windows. The training loop shuffles the training windows once per epoch
from ``(seed, epoch)``, as it shuffles images: one epoch is one pass over all training windows, and every training
character but the last ``< T`` is a target once per epoch. The held-out windows are the "test" samples the loop
evaluates after each epoch (cross-entropy in nats per token, next-token accuracy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

import torch

from optodfa.datasets.text import LIGHTHOUSE, char_corpus
from optodfa.validation import check_choice, check_int

__all__ = ["TEXT_DATASETS", "VALIDATION_FRACTION", "TextData", "load_text", "read_text_file", "windows"]

TEXT_DATASETS = ("lighthouse", "text")
VALIDATION_FRACTION = 0.1
LIGHTHOUSE_SOURCE = "optodfa.datasets.text.LIGHTHOUSE"
# Control characters (Unicode category Cc) other than tab and line feed: in a file they mean binary data.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TextData:
    """A character corpus cut into windows (see the module docstring), with the fields the training loop reads.

    Attributes:
        name: one of :data:`TEXT_DATASETS`.
        vocabulary: the distinct characters of the text, sorted; token ``i`` is ``vocabulary[i]``.
        context: window length ``T`` in tokens.
        x_train, y_train: int64 ``(W, T)`` input windows of the training part and their next-token targets.
        x_test, y_test: int64 ``(M, T)``, the same for the held-out part.
        source: where the text came from (the resolved path of a file, or the package's own text).
        sha256: SHA-256 of the text as read (of the file's bytes, or of the shipped text in UTF-8).
        train_characters, validation_characters: characters in the two parts.
    """

    name: str
    vocabulary: str
    context: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    sha256: str
    train_characters: int
    validation_characters: int

    @property
    def num_classes(self) -> int:
        """The vocabulary size ``d``: the width of the model's output per token."""
        return len(self.vocabulary)

    @property
    def input_shape(self) -> tuple[int]:
        """``(T,)``: one sample is ``T`` token ids."""
        return (self.context,)

    def describe(self) -> dict[str, object]:
        """What a run file keeps about the text: its hash, vocabulary and sizes."""
        return {"sha256": self.sha256, "vocabulary": self.vocabulary, "context": self.context,
                "train_characters": self.train_characters, "validation_characters": self.validation_characters,
                "train_windows": len(self.x_train), "validation_windows": len(self.x_test)}

    def __repr__(self) -> str:
        return (f"TextData(name={self.name!r}, vocab_size={self.num_classes}, context={self.context}, "
                f"train={len(self.x_train)} windows, test={len(self.x_test)} windows, source={self.source!r})")


def read_text_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The text of a UTF-8 (or ASCII) file with ``\\n`` line endings, and the SHA-256 of its bytes.

    Raises:
        FileNotFoundError, IsADirectoryError: ``path`` is not a file.
        ValueError: the file is empty, is not valid UTF-8, or holds a control character other than tab and line
            breaks (binary data); the message names the offset.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist (expected a UTF-8 text file)")
    if file.is_dir():
        raise IsADirectoryError(f"text file {str(path)!r} is a directory, expected a UTF-8 text file")
    raw = file.read_bytes()
    if not raw:
        raise ValueError(f"text file {str(path)!r} is empty, expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is no character of the text
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {str(path)!r} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start} cannot be decoded (expected a UTF-8 or ASCII text file)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    control = _CONTROL.search(text)
    if control is not None:
        raise ValueError(f"text file {str(path)!r} holds the control character {control.group()!r} at character "
                         f"{control.start()}; expected text (printable characters, tabs and line breaks), not "
                         f"binary data")
    return text, hashlib.sha256(raw).hexdigest()


def windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of ``(N,)`` ids: inputs ``(W, T)`` and next-token targets ``(W, T)``,
    ``W = (N - 1) // T`` (the last ``(N - 1) % T`` targets are left out)."""
    context = check_int("context", context, low=1)
    if ids.ndim != 1 or len(ids) <= context:
        raise ValueError(f"ids must be 1-D and longer than context={context}, got shape {tuple(ids.shape)}")
    count = (len(ids) - 1) // context
    return (ids[:count * context].reshape(count, context).clone(),
            ids[1:count * context + 1].reshape(count, context).clone())


def load_text(name: str, *, context: int, text_file: str | os.PathLike[str] | None = None,
              limit: int | None = None) -> TextData:
    """The corpus ``name`` cut into windows of ``context`` tokens (see the module docstring).

    Args:
        name: ``"lighthouse"`` (the shipped text) or ``"text"`` (``text_file``).
        context: tokens per window ``T`` (at least 1).
        text_file: the file of ``name = "text"``; must be ``None`` otherwise.
        limit: keep only the first ``limit`` training windows (``None``: all); the held-out windows stay whole.

    Raises:
        ValueError: a bad setting, a file that is not text, or a text too short to give one training and one
            held-out window (the message says how many characters it has and how many are needed).
        FileNotFoundError, IsADirectoryError: ``text_file`` is not a file.
    """
    check_choice("name", name, TEXT_DATASETS)
    context = check_int("context", context, low=1)
    if limit is not None:
        limit = check_int("limit", limit, low=1)
    if name == "text":
        if text_file is None:
            raise ValueError("data set 'text' reads a text file: give text_file (--text-file PATH)")
        text, sha256 = read_text_file(text_file)
        source, what = str(Path(text_file).resolve()), f"text file {os.fspath(text_file)!r}"
    else:
        if text_file is not None:
            raise ValueError(f"text_file={os.fspath(text_file)!r} is read by data set 'text'; data set {name!r} is "
                             f"the shipped text (give one of them)")
        text, sha256 = LIGHTHOUSE, hashlib.sha256(LIGHTHOUSE.encode("utf-8")).hexdigest()
        source, what = LIGHTHOUSE_SOURCE, "the lighthouse text"
    _check_length(what, len(text), context)
    corpus = char_corpus(text, validation_fraction=VALIDATION_FRACTION)
    x_train, y_train = windows(corpus.train, context)
    x_test, y_test = windows(corpus.validation, context)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    return TextData(name=name, vocabulary=corpus.vocabulary, context=context, x_train=x_train, y_train=y_train,
                    x_test=x_test, y_test=y_test, source=source, sha256=sha256,
                    train_characters=len(corpus.train), validation_characters=len(corpus.validation))


def _held_out(characters: int) -> int:
    return round(VALIDATION_FRACTION * characters)  # as char_corpus splits


def _check_length(what: str, characters: int, context: int) -> None:
    """Raise unless both parts of a text of ``characters`` hold one window (``context + 1`` characters)."""
    def enough(n: int) -> bool:
        return min(n - _held_out(n), _held_out(n)) >= context + 1

    if enough(characters):
        return
    needed = max(0, round((context + 1) / VALIDATION_FRACTION) - 10)
    while not enough(needed):
        needed += 1
    held = _held_out(characters)
    raise ValueError(f"{what} has {characters} characters: {characters - held} for training and {held} held out "
                     f"(the last {VALIDATION_FRACTION:.0%}); with context {context} each part needs at least "
                     f"context + 1 = {context + 1}, so the text needs at least {needed} characters (give a longer "
                     f"text or a smaller --context)")
