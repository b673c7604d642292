"""Does the align pass hold at scale? Peak memory against the number of rows, and throughput beside
the loop it replaced, on streamed synthetic image rows.

    python bench/scale.py [--rows 2000 50000] [--steps 40] [--rounds 5] [--workers 0]

Data: JSONL shards of 10K rows in the `jsonl` task's format (image, question, answer, response),
pointing at 256 distinct mini-world pictures (112 px, one tile), written once to a temp folder.
Model: an R1V at the mini-world's default sizes, freshly built (bench/common.py); the projector
trains, packed rows of 128 tokens, 32 samples a step.

1. Memory. In fresh processes, the streamed pass (`r1v.train`: rows by offset index, encoding in
   DataLoader workers, step by step) over 2K and over 50K rows, with the same number of steps.
   Peak memory is the PSS of the whole process tree (trainer + workers), sampled every 20 ms.
   Target: the two within 10% of each other.
2. Throughput, 2K rows, one epoch, baseline and candidate interleaved (ABAB..., `--rounds`):
   * up-front (the loop before streaming): every row read, tiled and tokenised before the first
     step, every sample's pixels kept, every image's frozen features cached;
   * streamed: as the recipe runs it now.
   Printed: samples/s of each (wall time from data to the last step), the median candidate/baseline
   ratio and its spread. Target: >= 1.0. On a 2-core CPU, workers compete with the trainer's threads
   for the same cores (measured, 2 rounds each: 0 workers 1.13x, 1 worker 0.91x, 2 workers 0.83x),
   so the recipe runs 0 there (`data.workers=-1`); on a GPU they overlap with the step. The up-front
   loop's memory is printed beside it (it grows ~0.15 MB a row at this geometry, ~30 MB a row at
   R1V's 13 tiles of 448 px).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import torch
from bench.common import InMemory, world_model
from r1v.evaluate.tasks import get_task
from r1v.train.config import Optim, Parts
from r1v.train.data import Encoded, FeatureCache, Rows, shard_files
from r1v.train.engine import Engine
from r1v.train.loop import supervised
from r1v.train.samples import Encoder

mode, path, samples, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model_fn, tok, _ = world_model(2)
model = model_fn()
enc = Encoder(model, tok, max_tiles=1)
task = get_task("jsonl")
engine = Engine(model, Parts())
t0 = time.perf_counter()
if mode == "streamed":
    data = Encoded(Rows(path, need=("id", "response")), task, enc)
    cache = None  # one epoch or less: each row is read once, a cache would only grow
else:  # the loop before: every row encoded up front, pixels held, features cached for every image
    rows, items = [], []
    for f in shard_files(path):
        for line in open(f):
            r = json.loads(line)
            rows.append(r)
            items.append(task.read_row(r, root=f.parent))
    held = enc.encode_all(task, items, [r["response"] for r in rows])
    for i, s in enumerate(held):
        s.index = i

    data, cache = InMemory(held), FeatureCache(memory_mb=1e9)
optim = Optim(samples_per_step=32, micro_batch_per_device=8, epochs=samples / len(data), warmup_ratio=0.0)
losses = supervised(engine, data, optim, lr=1e-3, pad_id=tok.pad_token_id, cache=cache, pack_length=128,
                    workers=workers if mode == "streamed" else 0, name=mode)
print(json.dumps({{"seconds": time.perf_counter() - t0, "steps": len(losses), "loss": losses[-1]}}))
"""


def make_rows(folder: Path, n: int, shard: int = 10_000) -> Path:
    from r1v.world.data import stream, target
    from r1v.world.scenes import draw

    out = folder / f"rows-{n}"
    if out.exists():
        return out
    images = folder / "images"
    problems = [p for _, p in zip(range(256), stream("train", seed=0))]
    if not images.exists():
        images.mkdir(parents=True)
        for k, p in enumerate(problems):
            draw(p).save(images / f"{k}.png")
    out.mkdir()
    for s in range(0, n, shard):
        with open(out / f"part-{s // shard:05d}.jsonl", "w") as f:
            for i in range(s, min(n, s + shard)):
                p = problems[i % len(problems)]
                f.write(json.dumps({"id": f"row-{i}", "image": f"../images/{i % len(problems)}.png",
                                    "question": p.question, "answer": p.answer, "choices": p.choices,
                                    "response": target(p, "reasoning")}) + "\n")
    return out


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants (the DataLoader workers), in MB.
    PSS, not RSS: forked workers share the trainer's pages, and summed RSS would count them twice."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(x.split()[1]) for x in f if x.startswith("Pss:"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def child(mode: str, path: Path, samples: int, workers: int) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(path), str(samples),
                             str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_pss_mb(proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs=2, default=[2000, 50000], help="the small and the large set")
    ap.add_argument("--steps", type=int, default=40, help="steps of the memory runs (32 samples each)")
    ap.add_argument("--rounds", type=int, default=5, help="ABAB rounds of the throughput comparison")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the streamed loop (default 0, "
                                                           "the recipe's choice on a CPU: see the docstring)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="r1v-scale-"))
    small, large = (make_rows(tmp, n) for n in a.rows)

    print(f"1. peak PSS of the streamed align pass, {a.steps} steps of 32 samples, {a.workers} workers")
    mem = {n: child("streamed", path, 32 * a.steps, a.workers) for n, path in ((a.rows[0], small), (a.rows[1], large))}
    for n, r in mem.items():
        print(f"   {n:>7} rows: {r['peak_mb']:7.0f} MB  ({r['steps']} steps, {r['seconds']:.1f} s)")
    ratio = mem[a.rows[1]]["peak_mb"] / mem[a.rows[0]]["peak_mb"]
    print(f"   {a.rows[1]} rows / {a.rows[0]} rows: {ratio:.3f} (target within 1.10)")

    print(f"\n2. samples/s, {a.rows[0]} rows, one epoch: up-front (baseline) vs streamed, {a.rounds} ABAB rounds")
    ratios, base_peak = [], []
    for k in range(a.rounds):
        b = child("up-front", small, a.rows[0], 0)
        c = child("streamed", small, a.rows[0], a.workers)
        rb, rc = a.rows[0] / b["seconds"], a.rows[0] / c["seconds"]
        ratios.append(rc / rb)
        base_peak.append(b["peak_mb"])
        print(f"   round {k + 1}: up-front {rb:6.1f}/s ({b['peak_mb']:.0f} MB)   streamed {rc:6.1f}/s "
              f"({c['peak_mb']:.0f} MB)   ratio {rc / rb:.2f}")
    print(f"   median ratio streamed/up-front: {statistics.median(ratios):.2f} "
          f"(spread {min(ratios):.2f}-{max(ratios):.2f}; target >= 1.0)")


if __name__ == "__main__":
    main()
