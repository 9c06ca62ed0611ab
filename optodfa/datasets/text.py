"""A tiny character-level corpus for language-model tests and demos, and the batches a model trains on.

:data:`LIGHTHOUSE` is a short text written for this package (about 4 KB, dedicated to the public domain by its
authors): plain ASCII prose with a small vocabulary, so a character model of a few thousand parameters learns
something visible in a few hundred steps.
"""

from __future__ import annotations

import dataclasses

import torch

from optodfa.seeding import check_seed, torch_generator
from optodfa.validation import check_int, check_real

LIGHTHOUSE = """\
The lighthouse stood at the end of the long grey pier, and every evening the keeper climbed the stairs to light
the lamp. There were one hundred and twelve steps, and he knew each of them by the sound it made under his boots.
The seventh step creaked, the fortieth rang like a small bell, and the last one was always wet with sea spray.
At the top he trimmed the wick, wiped the glass, and turned the great lens until the beam swept over the water.

The ships that passed at night did not know his name. They saw only the light, a white flash every ten seconds,
and they steered by it as sailors had steered for a hundred years. The keeper liked it that way. He said that a
light should be like a good rule: nobody thanks it, but everybody keeps away from the rocks because of it.

In the morning he wrote in the log. Wind from the west, sea moderate, two fishing boats and one cargo ship. Lamp
lit at six, put out at seven. Oil used, three litres. He wrote the same lines most days, and he was content with
the sameness, because the sea was never the same and the log was the only thing that held still.

One winter a storm came that lasted four days. The waves climbed the pier and broke against the door of the
tower. The keeper did not sleep. He carried oil up the stairs and kept the lamp burning, and on the third night a
small boat came out of the dark with its sail torn and its engine silent. The boat found the harbour by the light
and by nothing else. In the log the keeper wrote: storm, four days, lamp kept, one boat in. He did not write
more, although the fisherman who sailed the boat came every year after that with a basket of fish and a bottle.

When the keeper grew old, the town sent a young woman to learn the work. She counted the steps on her first day
and said there were one hundred and twelve. He told her that was right, and that the seventh one creaked. She
laughed, but the next evening she stepped over it without thinking. By spring she could trim the wick faster than
he could, and she had found a better way to clean the lens, with warm water and a soft cloth instead of spirit.

The keeper moved to a cottage at the foot of the hill, where he could see the tower from his window. Every
evening at six he watched the lamp come on. A white flash every ten seconds, as it had always been. He did not
need to climb the stairs to know that the wick was trimmed and the glass was clean. The light told him so.

Years later the lamp was changed for an electric one that turned on by itself when the sun went down. The young
woman, who was no longer young, still climbed the stairs each evening. There was nothing to light, but she wiped
the glass and listened to the seventh step, and in the morning she wrote in the log. Wind from the north, sea
calm, one ferry and three fishing boats. Light on at five, off at eight. It was a short entry, and it was enough.
"""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CharCorpus:
    """A text as int64 symbol ids, split into a training and a validation part.

    Attributes:
        vocabulary: the distinct characters, sorted; symbol ``i`` is ``vocabulary[i]``.
        train: ``(N_train,)`` int64 ids of the first part of the text.
        validation: ``(N_val,)`` int64 ids of the rest.
    """

    vocabulary: str
    train: torch.Tensor
    validation: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> torch.Tensor:
        """``(len(text),)`` int64 ids; a character outside the vocabulary is an error naming it."""
        index = {c: i for i, c in enumerate(self.vocabulary)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the corpus vocabulary")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocabulary[int(i)] for i in ids.reshape(-1))

    def __repr__(self) -> str:
        return f"CharCorpus(vocab_size={self.vocab_size}, train={len(self.train)}, validation={len(self.validation)})"


def char_corpus(text: str | None = None, *, validation_fraction: float = 0.1) -> CharCorpus:
    """Split ``text`` (default :data:`LIGHTHOUSE`) into training and validation ids over its own vocabulary.

    Args:
        text: any string of at least 4 characters.
        validation_fraction: share of the text, taken from its end, kept for validation (in [0, 0.5]).
    """
    text = LIGHTHOUSE if text is None else text
    if not isinstance(text, str) or len(text) < 4:
        raise ValueError(f"text must be a string of at least 4 characters, got {text!r:.40}")
    fraction = check_real("validation_fraction", validation_fraction, low=0.0, high=0.5)
    vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    split = len(ids) - round(fraction * len(ids))
    return CharCorpus(vocabulary=vocabulary, train=ids[:split], validation=ids[split:])


def char_batch(ids: torch.Tensor, batch_size: int, context: int, *, seed: int, step: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of windows: inputs ``(batch_size, context)`` and next-symbol targets of the same shape.

    The window starts are drawn from ``(seed, step)``, so a run replays exactly.

    Args:
        ids: ``(N,)`` int64 symbol ids with ``N > context``.
        batch_size: windows per batch.
        context: window length ``T``.
        seed, step: the random stream of the draw.
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    context = check_int("context", context, low=1)
    if ids.ndim != 1 or len(ids) <= context:
        raise ValueError(f"ids must be 1-D and longer than context={context}, got shape {tuple(ids.shape)}")
    generator = torch_generator(check_seed(seed), check_int("step", step, low=0))
    starts = torch.randint(len(ids) - context, (batch_size,), generator=generator)
    offsets = torch.arange(context)
    windows = starts[:, None] + offsets
    return ids[windows], ids[windows + 1]
