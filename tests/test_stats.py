"""Intervals (r1v.stats) and the claims table's verdicts (r1v.train.claims), adversarially."""

from __future__ import annotations

import pytest

from r1v.stats import bootstrap_gap, paired_interval, paired_ratio
from r1v.train.claims import _verdict_at_least, _verdict_gap


def test_paired_interval_is_exact_on_identical_and_opposite_runs():
    a = {i: i % 2 == 0 for i in range(100)}
    g = paired_interval(a, dict(a))
    assert g["gap"] == g["lo"] == g["hi"] == 0 and g["n"] == 100
    flipped = paired_interval(a, {k: not v for k, v in a.items()})
    assert flipped["gap"] == 0 and flipped["lo"] < -0.15  # same accuracy, every answer different: wide
    assert paired_interval(a, {"other": True}) is None  # no item in common


def test_paired_ratio_is_seeded_and_brackets_its_estimate():
    a = {i: i % 2 == 0 for i in range(200)}       # 50%
    b = {i: i % 4 == 0 for i in range(200)}       # 25%, a subset of a's right answers
    r = paired_ratio(a, b)
    assert r["ratio"] == pytest.approx(0.5) and r["lo"] < 0.5 < r["hi"] and r == paired_ratio(a, b)
    assert paired_ratio(a, b, seed=1) != r
    assert paired_ratio({1: False}, {1: True}) is None  # a ratio over zero is not a ratio
    same = paired_ratio(a, dict(a))
    assert same["lo"] == same["hi"] == 1.0


def paired_bootstrap(a, b, stat, **kw):
    """stat(b) - stat(a) on paired lists of items, through bootstrap_gap's counts."""
    taken = lambda xs: lambda counts: stat([x for x, c in zip(xs, counts) for _ in range(c)])  # noqa: E731
    return bootstrap_gap(len(a), taken(a), taken(b), **kw)


def test_paired_bootstrap_pairs_the_items_and_is_seeded():
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    a = [float(i % 7) for i in range(60)]  # items that differ widely from one another
    shifted = [x + 0.1 for x in a]
    g = paired_bootstrap(a, shifted, mean)
    # paired, the items' spread cancels: every resample shows the same +0.1
    assert g["gap"] == pytest.approx(0.1) and g["lo"] == pytest.approx(0.1) and g["hi"] == pytest.approx(0.1)
    unpaired = paired_bootstrap(a, list(reversed(shifted)), mean)
    assert unpaired["gap"] == pytest.approx(0.1) and unpaired["lo"] < 0 < unpaired["hi"]  # the same means, unpaired
    assert g == paired_bootstrap(a, shifted, mean) and unpaired != paired_bootstrap(a, list(reversed(shifted)), mean,
                                                                                     seed=1)
    nan_some = paired_bootstrap([0.0, 1.0], [1.0, 2.0], lambda xs: float("nan") if xs[0] == xs[-1] else mean(xs))
    assert nan_some["n"] == 2 and nan_some["lo"] == nan_some["hi"] == pytest.approx(1.0)  # NaN resamples skipped
    with pytest.raises(ValueError):
        bootstrap_gap(0, mean, mean)
    wide = paired_bootstrap(a, list(reversed(shifted)), mean, level=0.99)
    assert wide["lo"] < unpaired["lo"] and wide["hi"] > unpaired["hi"]  # a higher level, a wider interval
    with pytest.raises(ValueError):
        paired_bootstrap(a, shifted, mean, level=1.0)


@pytest.mark.parametrize("value,lo,target,word", [
    (0.70, 0.65, 0.60, "**holds**"),
    (0.62, 0.57, 0.60, "holds at the estimate"),
    (0.59, 0.54, 0.60, "**does not hold**"),
    (0.59, 0.54, 0.0, "no target set"),
])
def test_floor_verdicts(value, lo, target, word):
    assert _verdict_at_least(value, lo, target).startswith(word)


@pytest.mark.parametrize("gap,lo,word", [(0.02, 0.001, "**holds**"),
                                         (0.02, -0.01, "**does not hold** (a gain not distinguishable from 0)"),
                                         (0.0, -0.01, "**does not hold**"),
                                         (-0.03, -0.05, "**does not hold** (a loss: the interval is below 0)")])
def test_gain_verdicts(gap, lo, word):
    assert _verdict_gap({"gap": gap, "lo": lo, "hi": gap + (gap - lo)}) == word
