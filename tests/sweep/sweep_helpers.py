"""Helpers of the sweep tests: the settings of a tiny run, and a warm-up for workers."""

from __future__ import annotations


def tiny(**changes: object) -> dict:
    """Settings of a run of about a second: digits, 200 samples, one hidden layer of 16, one epoch."""
    return {"dataset": "digits", "limit": 200, "hidden": [16], "epochs": 1, "batch_size": 50, "lr": 3e-3,
            "alignment_every": 2, **changes}


def warm_up() -> None:
    """Import what a run needs and load its data once, so that tests time runs rather than imports."""
    import torch.utils.tensorboard  # noqa: F401

    import optodfa.tensorboard_log
    import optodfa.train  # noqa: F401
    from optodfa.data import load_dataset

    load_dataset("digits", limit=1)
