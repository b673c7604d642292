"""R1V3's checkpoint choice at scale: the bootstrap behind `r1v/train/critical.py:choose`.

    python bench/critical_choice.py [--prompts 256] [--rollouts 4] [--tokens 1000] [--resamples 20] [--rounds 5]

A probe of a large run holds every reasoning token's entropy of its rollouts (R1V2-38B's recipe: 256
prompts x 4 rollouts, chains up to 8k tokens: 8M entropies), and the choice resamples the prompts
2,000 times per earlier checkpoint. Baseline, in the same run: each resample joins the resampled
prompts' entropies and ranks them (`critical_value` on the joined list). Candidate: `resampler`,
which sorts the tokens once and then only weights them by how often each prompt is drawn. Both on the
same resamples, checked to agree; timed alternately (ABAB) for `--rounds` rounds; printed: each one's
median seconds per resample and the median ratio with its spread.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from r1v.train.critical import critical_value, resampler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=256, help="probe prompts (R1V2-38B's recipe: 256)")
    ap.add_argument("--rollouts", type=int, default=4, help="rollouts per prompt (the probe's: 4)")
    ap.add_argument("--tokens", type=int, default=1000, help="mean reasoning tokens per rollout (38B: up to 8k)")
    ap.add_argument("--resamples", type=int, default=20, help="resamples timed per round (the choice: 2,000)")
    ap.add_argument("--rounds", type=int, default=5, help="ABAB rounds (at least 5)")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    # entropies: mostly near 0, a heavy tail of forks, as a reasoning model's are
    length = lambda: int(torch.randint(a.tokens // 2, a.tokens * 3 // 2, (1,), generator=g)) * a.rollouts  # noqa: E731
    prompts = [torch.distributions.Exponential(torch.tensor(8.0)).sample((length(),)) for _ in range(a.prompts)]
    n_tokens = sum(len(p) for p in prompts)
    rng = random.Random(0)

    def draws():
        out = []
        for _ in range(a.resamples):
            counts = [0] * a.prompts
            for _ in range(a.prompts):
                counts[rng.randrange(a.prompts)] += 1
            out.append(counts)
        return out

    t0 = time.perf_counter()
    fast = resampler(prompts, share=0.2)
    setup = time.perf_counter() - t0
    joined = lambda counts: critical_value([p for p, c in zip(prompts, counts) for _ in range(c)], share=0.2)  # noqa: E731
    times = {"join and rank": [], "resampler": []}
    worst = 0.0
    for _ in range(max(5, a.rounds)):
        batch = draws()
        for name, fn in (("join and rank", joined), ("resampler", fast)):
            t = time.perf_counter()
            got = [fn(c) for c in batch]
            times[name].append((time.perf_counter() - t) / len(batch))
            if name == "join and rank":
                ref = got
            else:
                worst = max(worst, max(abs(x - y) for x, y in zip(got, ref)))
    ratios = sorted(b / f for b, f in zip(times["join and rank"], times["resampler"]))
    print(f"probe: {a.prompts} prompts x {a.rollouts} rollouts, {n_tokens:,} entropies; {len(ratios)} rounds ABAB, "
          f"{a.resamples} resamples each")
    for name, ts in times.items():
        print(f"{name:14}: median {1000 * statistics.median(ts):8.2f} ms a resample")
    print(f"resampler's one-off sort: {1000 * setup:.0f} ms; largest difference between the two: {worst:.1e} nats")
    print(f"join and rank / resampler: median {statistics.median(ratios):.2f}x (spread {ratios[0]:.2f}-"
          f"{ratios[-1]:.2f}; target > 1); 2,000 resamples: {2000 * statistics.median(times['resampler']):.0f} s "
          f"against {2000 * statistics.median(times['join and rank']):.0f} s per earlier checkpoint")


if __name__ == "__main__":
    main()
