"""Scoring throughput: r1v's MATH-500 scorer on 10,000 synthetic outputs, time bound in force.

    python bench/scoring_speed.py [--n 10000] [--timeout 5]

The outputs mix what reasoning models write: the gold answer boxed after `</think>`, an
equivalent form (0.5 for 1/2, 2\\sqrt{2} for \\sqrt{8}), wrong answers, answers in prose,
truncated outputs, a boxed answer only inside the reasoning, empty answers, and a few
pathological expressions that make SymPy hang. Golds and answers are drawn at random, so
few (gold, answer) pairs repeat and the cache does not carry the figure.

Baseline, in the same run: math-verify called directly (`parse` + `verify` on the answer
text, its own signal-based timeouts, main thread), on the same outputs minus the
pathological ones (its signal cannot interrupt SymPy stuck in C, so with them it would not
finish). r1v is measured on both sets; the ratio is on the shared set.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r1v.evaluate.answers import extract  # noqa: E402
from r1v.evaluate.tasks import Item, get_task  # noqa: E402
from r1v.evaluate.verify import MathVerifier, default_workers  # noqa: E402

HANG = "9^{9^{9^{9}}}"


def synthetic(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """[(gold, output, pathological)]."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 99)
        kind = rng.random()
        if kind < 0.3:
            gold, right, equiv = str(a), str(a), f"{a}.0"
        elif kind < 0.55:
            gold, right, equiv = f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}"
        elif kind < 0.75:
            gold, right, equiv = f"{a}\\sqrt{{2}}", f"{a}\\sqrt{{2}}", f"\\sqrt{{{2 * a * a}}}"
        else:
            gold, right, equiv = f"x^2+{a}x", f"x^2+{a}x", f"x({a}+x)"
        think = "Let me work through it. " * rng.randint(1, 40)
        style = rng.random()
        if style < 0.35:
            out = f"{think}</think>The answer is \\boxed{{{right}}}."
        elif style < 0.6:
            out = f"{think}</think>So \\boxed{{{equiv}}}"
        elif style < 0.8:
            out = f"{think}</think>\\boxed{{{rng.randint(1, 999)}}}"
        elif style < 0.88:
            out = f"{think}</think>The result is ${right}$."
        elif style < 0.93:
            out = f"{think} \\boxed{{{right}}} and then"  # truncated
        elif style < 0.97:
            out = f"{think}</think>"  # empty answer
        else:
            out = f"\\boxed{{{right}}} {think}</think>I am unsure."
        rows.append((gold, out, False))
    for k in range(min(10, n // 1000)):
        rows[k * 997 % n] = ("3", f"...</think>\\boxed{{{HANG}}}", True)
    return rows


def baseline(rows) -> float:
    from math_verify import parse, verify

    t = time.perf_counter()
    for gold, out, _ in rows:
        answer = extract(out).text
        if answer is None:
            continue
        verify(parse(f"$\\boxed{{{gold}}}$"), parse(answer))
    return time.perf_counter() - t


def ours(rows, timeout: float, workers: int) -> tuple[float, dict]:
    task = get_task("math500")
    with MathVerifier(timeout=timeout, workers=workers) as v:
        v("1", "\\frac{2}{2}")  # start the workers outside the timer
        t = time.perf_counter()
        items = [Item(id=str(i), question="", answer=g) for i, (g, _, _) in enumerate(rows)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(v.workers) as pool:
            scores = list(pool.map(lambda io: task.score(io[0], io[1], verifier=v),
                                   zip(items, (o for _, o, _ in rows))))
        seconds = time.perf_counter() - t
    paths: dict[str, int] = {}
    for s in scores:
        paths[s.scorer] = paths.get(s.scorer, 0) + 1
    return seconds, paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=5.0, help="r1v's hard bound per comparison (s)")
    a = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    rows = synthetic(a.n)
    clean = [r for r in rows if not r[2]]
    print(f"{len(rows)} outputs ({len(rows) - len(clean)} pathological), {default_workers()} verifier workers")
    n = default_workers()
    t_all, paths = ours(rows, a.timeout, n)
    t_ours, _ = ours(clean, a.timeout, n)
    t_one, _ = ours(clean, a.timeout, 1)
    t_base = baseline(clean)
    print(f"r1v, all outputs, {n} workers, bound {a.timeout:g}s : {len(rows) / t_all:6.0f} items/s  ({t_all:.1f} s)")
    print(f"r1v, without pathological, {n} workers  : {len(clean) / t_ours:6.0f} items/s  ({t_ours:.1f} s)")
    print(f"r1v, without pathological, 1 worker   : {len(clean) / t_one:6.0f} items/s  ({t_one:.1f} s)")
    print(f"math-verify direct, 1 thread (baseline): {len(clean) / t_base:6.0f} items/s  ({t_base:.1f} s)")
    print(f"ratio r1v / baseline: {t_base / t_ours:.2f}x with {n} workers, {t_base / t_one:.2f}x with 1")
    print("scoring paths (all outputs): " + ", ".join(f"{k} {v}" for k, v in sorted(paths.items())))


if __name__ == "__main__":
    main()
