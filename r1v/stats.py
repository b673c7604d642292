"""Confidence intervals, in one place: every accuracy, gap and ratio r1v reports comes with one.

* `half_width`: the 95% normal half-width of an accuracy p over n items (the report's "± x");
* `pct`: a share as the reports print it ("12.3%");
* `points`: such a gap as the reports print it, in percentage points with its interval;
* `mean_ci`: the mean of per-item scores with a 95% interval (the CLT over items; Wilson when
  every item scores the same), what `r1v eval` reports;
* `paired_interval`: stage b minus stage a on the same items (a paired difference; far tighter
  than two separate intervals, since most items are right or wrong under both);
* `t_interval`: the mean of a few values with a Student t interval (k - 1 degrees of freedom): the mean
  of several runs' gaps, where the runs (seeds), not the items, are the observations;
* `paired_ratio`: b / a on the same items, with a seeded paired bootstrap interval (a ratio of two
  correlated means has no simple normal interval);
* `bootstrap_gap`: any statistic of one set of items measured twice (b minus a), with a seeded paired
  bootstrap interval; the statistic takes a resample as the count of each item in it, so a large one need
  not join its items' data every time (R1V3's critical-token entropy of two checkpoints on the same probe
  prompts);
* `ratio_gap`: the difference of two token-averaged losses over *different* item sets (Skywork-13B's
  leakage Δs), with a seeded bootstrap that resamples the items of each set independently.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Z95 = 1.959964
# Student t's 97.5% quantile for 1-30 degrees of freedom (two-sided 95%); beyond, its expansion in 1/df.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def half_width(p: float, n: int) -> float:
    """95% normal half-width of a proportion p measured on n items."""
    return Z95 * math.sqrt(max(p * (1 - p), 1e-12) / max(1, n))


def pct(x: float | None) -> str:
    """A share as the reports print it: "12.3%", or "-" where there is none."""
    return "-" if x is None else f"{100 * x:.1f}%"


def points(g: dict, unit: str = " points") -> str:
    """A gap of two shares (`paired_interval`'s: accuracies, hallucination rates) in percentage points with
    its interval: "+1.2 points (-0.3 to +2.7)" (`unit=""` in a table whose heading names the unit). A bound
    that would print as 0.0 without being 0 gets two decimals, so that "-0.0" never hides which side of 0 it
    is on ("-0.01")."""
    near = any(0 < abs(100 * g[k]) < 0.05 for k in ("lo", "hi"))
    return f"{100 * g['gap']:+.1f}{unit} ({100 * g['lo']:+.{1 + near}f} to {100 * g['hi']:+.{1 + near}f})"


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% interval of per-item scores, in percent: the CLT over questions (Miller
    2024, "Adding error bars to evals"), each item's score being its mean over samples. When
    every item scores the same the CLT interval collapses to a point; the Wilson interval over
    the items is used then (4 items all wrong: 0-49%, not 0-0%)."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0, 0.0
    m = sum(values) / n
    se = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    if se == 0:
        z2 = Z95 ** 2
        centre = (m + z2 / (2 * n)) / (1 + z2 / n)
        half = Z95 * math.sqrt(m * (1 - m) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return 100 * m, 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)
    return 100 * m, 100 * max(0.0, m - Z95 * se), 100 * min(1.0, m + Z95 * se)


def paired_interval(ra: dict, rb: dict) -> dict | None:
    """Mean of b - a over the items both scored (right = 1), with a 95% normal interval."""
    diffs = [float(rb[k]) - float(ra[k]) for k in ra if k in rb]
    if not diffs:
        return None
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, n - 1) / n)
    return {"gap": mean, "lo": mean - Z95 * se, "hi": mean + Z95 * se, "n": n}


def t95(df: int) -> float:
    """Student t's two-sided 95% quantile at `df` degrees of freedom (at least 1)."""
    if df < 1:
        raise ValueError(f"t needs at least 1 degree of freedom, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def t_interval(values: list[float]) -> dict | None:
    """Mean of `values` with a 95% t interval over them ({gap, lo, hi, n}, as `paired_interval`'s); None for
    fewer than two (one value says nothing of its spread)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    half = t95(n - 1) * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
    return {"gap": mean, "lo": mean - half, "hi": mean + half, "n": n}


def paired_ratio(ra: dict, rb: dict, *, rounds: int = 2000, seed: int = 0) -> dict | None:
    """mean(b) / mean(a) over the items both scored, with a 95% percentile interval from a paired
    bootstrap (items resampled together; seeded, so the same scores give the same interval)."""
    keys = [k for k in ra if k in rb]
    if not keys or not sum(float(ra[k]) for k in keys):
        return None
    a = [float(ra[k]) for k in keys]
    b = [float(rb[k]) for k in keys]
    rng = random.Random(seed)
    n = len(keys)
    ratios = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        sa = sum(a[i] for i in idx)
        if sa:
            ratios.append(sum(b[i] for i in idx) / sa)
    ratios.sort()
    return {"ratio": sum(b) / sum(a), "lo": ratios[int(0.025 * len(ratios))],
            "hi": ratios[min(len(ratios) - 1, int(0.975 * len(ratios)))], "n": n}


def bootstrap_gap(n: int, stat_a: Callable[[list[int]], float], stat_b: Callable[[list[int]], float], *,
                  rounds: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """stat_b - stat_a over n items each measured twice (e.g. one probe prompt's rollouts under two
    checkpoints), with a `level` (95%) percentile interval from resampling the items together, `rounds`
    times (seeded: the same inputs give the same interval). Each statistic takes a resample as the count
    of every item in it (every item once: the point estimate), so that a large one need not join its
    items' data on every resample (`r1v/train/critical.py:resampler`); a resample whose gap is NaN is
    skipped."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: an interval's coverage, in (0, 1)")
    if n < 1:
        raise ValueError("bootstrap_gap needs at least one item")
    rng = random.Random(seed)
    gaps = []
    for _ in range(rounds):
        counts = [0] * n
        for _ in range(n):
            counts[rng.randrange(n)] += 1
        g = stat_b(counts) - stat_a(counts)
        if not math.isnan(g):
            gaps.append(g)
    gap = stat_b([1] * n) - stat_a([1] * n)
    if not gaps:
        return {"gap": gap, "lo": math.nan, "hi": math.nan, "n": n}
    gaps.sort()
    tail = (1 - level) / 2
    return {"gap": gap, "lo": gaps[int(tail * len(gaps))], "hi": gaps[min(len(gaps) - 1, int((1 - tail) * len(gaps)))],
            "n": n}


def ratio_gap(a: list[tuple[float, int]], b: list[tuple[float, int]], *, rounds: int = 2000,
              seed: int = 0) -> dict:
    """L(a) - L(b), where L is a set's token-averaged loss: sum of its items' summed token losses over
    the sum of their token counts (items are (loss sum, tokens)). The 95% percentile interval comes
    from resampling the items of a and of b independently (the sets share no items), `rounds` times."""
    if not a or not b:
        raise ValueError("both sets need items")

    def mean(xs):
        return sum(x for x, _ in xs) / max(1, sum(n for _, n in xs))

    rng = random.Random(seed)
    gaps = []
    for _ in range(rounds):
        ra = [a[rng.randrange(len(a))] for _ in a]
        rb = [b[rng.randrange(len(b))] for _ in b]
        gaps.append(mean(ra) - mean(rb))
    gaps.sort()
    return {"gap": mean(a) - mean(b), "lo": gaps[int(0.025 * len(gaps))],
            "hi": gaps[min(len(gaps) - 1, int(0.975 * len(gaps)))], "n": (len(a), len(b))}
