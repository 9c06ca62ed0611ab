"""The benchmarks' timing helpers: medians of rounds, and ratios paired within a round."""

import pytest

from benchmarks.timing import interleaved_rounds, medians, paired_ratio


def test_paired_ratio_is_the_median_of_the_ratios_within_rounds() -> None:
    # A loaded round slows both variants: the paired ratio sees 1.1 in every round, the medians do not.
    per_round = {"a": [1.1, 2.2, 5.5, 1.1, 3.3], "b": [1.0, 2.0, 5.0, 1.0, 3.0]}
    assert paired_ratio(per_round, "a", "b") == pytest.approx(1.1)
    assert medians(per_round) == {"a": 2.2, "b": 2.0}
    shuffled = {"a": [1.1, 2.2, 5.5], "b": [5.0, 1.0, 2.0]}  # unpaired rounds give another figure
    assert paired_ratio(shuffled, "a", "b") == pytest.approx(2.2)


def test_paired_ratio_needs_the_same_rounds() -> None:
    with pytest.raises(ValueError):
        paired_ratio({"a": [1.0, 2.0], "b": [1.0]}, "a", "b")


def test_interleaved_rounds_runs_each_variant_in_each_round() -> None:
    order: list[str] = []
    calls = {"x": lambda: order.append("x"), "y": lambda: order.append("y")}
    per_round = interleaved_rounds(calls, rounds=3, sync=lambda: None, repeats=2, warmup=1)
    assert order == ["x", "y"] + ["x", "x", "y", "y"] * 3
    assert {name: len(values) for name, values in per_round.items()} == {"x": 3, "y": 3}
