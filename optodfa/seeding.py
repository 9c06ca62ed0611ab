"""One place that turns user seeds into generators.

Seeds are non-negative integers. Sub-streams (a block of a matrix, the camera noise of one device) are derived from
a root seed and a tuple of integer labels through :class:`numpy.random.SeedSequence`, so that any piece can be
regenerated alone, in any order, with the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from optodfa.validation import check_int

SEED_MAX = 2**63 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """Validate a user seed: an integer in ``[0, 2**63 - 1]``."""
    return check_int(name, seed, low=0, high=SEED_MAX)


def derive_seed(seed: int, *labels: int) -> int:
    """A 63-bit seed for the sub-stream ``labels`` of root ``seed`` (stable across platforms and versions)."""
    sequence = np.random.SeedSequence(entropy=check_seed(seed), spawn_key=tuple(int(x) for x in labels))
    return int(sequence.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**32], np.uint64)
               % np.uint64(SEED_MAX))


def numpy_generator(seed: int, *labels: int) -> np.random.Generator:
    """A Philox-based numpy generator for sub-stream ``labels`` of ``seed``."""
    return np.random.Generator(np.random.Philox(derive_seed(seed, *labels)))


def torch_generator(seed: int, *labels: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` for sub-stream ``labels`` of ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *labels))
    return generator
