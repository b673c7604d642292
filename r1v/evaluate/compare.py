"""`r1v eval compare`: is a change better? A candidate's scores minus a baseline's on the same items,
item by item, with 95% intervals, for one pair of runs or several (one per seed) pooled.

    r1v eval compare --baseline runs/eval/base --candidate runs/eval/new
    r1v eval compare --baseline runs/val/a-s0 runs/val/a-s1 runs/val/a-s2 \\
                     --candidate runs/val/b-s0 runs/val/b-s1 runs/val/b-s2 --by family --out runs/a-vs-b
    r1v eval compare --baseline runs/tiny --candidate runs/tiny-new     # every stage of two recipe runs

Each path is one of:
- an `r1v eval run` / `r1v eval score` folder: its `items.jsonl`;
- a recipe run folder (`runs/<name>`, or its `outputs/`): each stage's held-out outputs
  (`outputs/<stage>-<kind>.jsonl`), each compared with the candidate's file of the same name (a file not
  every path holds is skipped, and the output says so);
- a JSONL file of scored records (`id`, `correct`), such as `runs/tiny/outputs/grpo-visual.jsonl`.

The i-th baseline is paired with the i-th candidate (the same seed, say). Items are matched by id, never
by position; an item's score is its mean over samples. Where the records carry the gold answer and the
prompt (`r1v eval run`'s do; a recipe's outputs do not), an id whose gold or prompt differs between the two
is refused: the runs scored other rows (another split, another world) under the same ids.

Three intervals, each answering its own question:
- **per pair**: the normal interval of the mean item difference (a paired test, as lm-evaluation-harness
  users ask for in its issue 3831: most items are right or wrong under both, so it is far tighter than
  two separate intervals). It is what `r1v recipe`'s report gives a stage's gain;
- **pooled**: every pair's items at once, each item's difference averaged over the pairs that scored it
  first (an item is one observation however many seeds scored it: an item that the change flips at one
  seed tends to flip at the others, so its seeds are not independent). It counts the items' sampling, not
  the training runs' lottery;
- **over runs** (three pairs or more): the mean of the pairs' gaps with a t interval over the pairs (k - 1
  degrees of freedom): an interval for the mean gap over seeds, the runs being the observations. Three
  pairs give a wide one; that width is what three seeds can say about the lottery.

Hallucination rates are compared the same way where the task marks them, over the items both sides marked
(n is given: a task may mark only some answers). Writes nothing unless `--out` is given: then `compare.md`,
`compare.json` and `compare.png` (each scored file's accuracy gap, per pair and pooled).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import write_atomic, write_json
from r1v.stats import paired_interval, pct, points, t_interval

METRICS = {"accuracy": "score", "hallucination": "hallucinated"}


@dataclass
class Item:
    score: float                      # mean of `correct` over the item's samples
    hallucinated: float | None        # mean of the task's hallucination flag, where it could tell
    groups: dict = field(default_factory=dict)
    row: tuple = ()                   # (gold, prompt), where recorded: the same id must be the same row


def read_scored(path: Path) -> dict[str, Item]:
    """{id: Item} of a JSONL of scored records (`items.jsonl`, a recipe's outputs file)."""
    samples: dict[str, list[dict]] = defaultdict(list)
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line.decode("utf-8"))
                if not isinstance(r["correct"], bool) or not isinstance(r.get("groups") or {}, dict):
                    raise TypeError
                samples[str(r["id"])].append(r)
            except (ValueError, KeyError, TypeError):
                raise R1VError(f"{path}:{n} is not a scored record (a JSON object with an id and a boolean "
                               f"correct): pass an `r1v eval run` folder, a recipe run folder or its "
                               f"outputs/*.jsonl") from None
    if not samples:
        raise R1VError(f"{path} holds no scored records: pass an `r1v eval run` folder, a recipe run folder "
                       f"or a scored JSONL")
    items = {}
    for i, rs in samples.items():
        flags = [bool(r["hallucinated"]) for r in rs if r.get("hallucinated") is not None]
        items[i] = Item(score=sum(r["correct"] for r in rs) / len(rs),
                        hallucinated=sum(flags) / len(flags) if flags else None,
                        groups=rs[0].get("groups") or {},
                        row=(rs[0].get("gold"), rs[0].get("prompt")))
    return items


def scored_files(path: str) -> dict[str, Path]:
    """The scored files one path stands for: {name: file}."""
    p = Path(path)
    if p.is_file():
        return {p.stem: p}
    if (p / "items.jsonl").is_file():
        try:
            name = json.loads((p / "summary.json").read_text(encoding="utf-8"))["bench"]
        except (OSError, ValueError, KeyError, TypeError):
            name = None
        return {name if isinstance(name, str) else "items": p / "items.jsonl"}
    # a recipe run (or its outputs folder): its held-out tests' outputs (visual, text), not the reward model's pairs
    folder = p if p.name == "outputs" else p / "outputs"
    found = {f.stem: f for f in sorted(folder.glob("*-*.jsonl")) if f.stem.rpartition("-")[2] in ("visual", "text")}
    if found:
        return found
    if not p.exists():
        raise R1VError(f"{p} does not exist: pass an `r1v eval run` folder, a recipe run folder or a scored JSONL")
    raise R1VError(f"{p} holds no scored records (items.jsonl, or outputs/<stage>-<kind>.jsonl): pass an "
                   f"`r1v eval run` folder, a recipe run folder or a scored JSONL")


def _matched(baselines: list[str], candidates: list[str]) -> tuple[dict[str, list[tuple[Path, Path]]], list[str]]:
    """Which files are compared: {name: [(baseline file, candidate file) per pair]}, and the names skipped
    because not every path holds them. Paths that each stand for one file (eval run folders, JSONL files)
    make one comparison whatever their names; recipe run folders one per file name every path holds."""
    loaded = [(scored_files(b), scored_files(c)) for b, c in zip(baselines, candidates)]
    if all(len(b) == 1 == len(c) for b, c in loaded):
        names = {next(iter(b)) for b, _ in loaded}
        name = names.pop() if len(names) == 1 else "scored items"
        return {name: [(next(iter(b.values())), next(iter(c.values()))) for b, c in loaded]}, []
    every = set.intersection(*(set(b) & set(c) for b, c in loaded))
    if not every:
        raise R1VError(f"no scored file of the same name in every path ({', '.join(loaded[0][0])} against "
                       f"{', '.join(loaded[0][1])}, ...): compare runs of the same kind")
    skipped = sorted(set().union(*(set(b) | set(c) for b, c in loaded)) - every, key=_order)
    return {n: [(b[n], c[n]) for b, c in loaded] for n in sorted(every, key=_order)}, skipped


def _order(name: str) -> tuple:
    """Recipe stages in the order they run ("sft-m2-visual": the stage sft/m2, visual test; R1V3's kept
    checkpoints grpo@N by step, before the chosen grpo), then the rest by name."""
    stage = name.rpartition("-")[0]
    if m := re.fullmatch(r"(sft-m|mpo-r|grpo@)(\d+)", stage):
        return {"sft-m": 2, "mpo-r": 3, "grpo@": 4}[m[1]], int(m[2]), name
    return {"align": (0, 0), "transfer": (1, 0), "grpo": (4, math.inf)}.get(stage, (5, 0)) + (name,)


def _values(base: dict[str, Item], cand: dict[str, Item], attr: str, keys) -> dict:
    """{id: (baseline's, candidate's)} over `keys`, where both sides have `attr`."""
    return {k: (getattr(base[k], attr), getattr(cand[k], attr)) for k in keys
            if getattr(base[k], attr) is not None and getattr(cand[k], attr) is not None}


def _gap(values: dict) -> dict | None:
    """Both means over the items and candidate minus baseline, paired ({gap, lo, hi, n} and the means)."""
    g = paired_interval({k: a for k, (a, _) in values.items()}, {k: b for k, (_, b) in values.items()})
    if g is None:
        return None
    return {"baseline": sum(a for a, _ in values.values()) / g["n"],
            "candidate": sum(b for _, b in values.values()) / g["n"], **g}


def _pooled(per_pair: list[dict]) -> dict | None:
    """Every pair's items at once, each item's values averaged over the pairs that scored it (one
    observation per item), with how many (item, pair) values went in."""
    sums: dict = defaultdict(lambda: [0.0, 0.0, 0])
    for values in per_pair:
        for k, (a, b) in values.items():
            s = sums[k]
            s[0], s[1], s[2] = s[0] + a, s[1] + b, s[2] + 1
    g = _gap({k: (a / n, b / n) for k, (a, b, n) in sums.items()})
    return g and {**g, "values": sum(n for _, _, n in sums.values())}


def _groups(base: dict[str, Item], keys: list[str], by: str, where: Path) -> dict[str, list[str]]:
    """The shared items by their value of the group `by`."""
    out = defaultdict(list)
    for k in keys:
        if by not in base[k].groups:
            known = sorted(base[k].groups) or ["none: recipe runs before r1v recorded them have none; score the "
                                               "stage with `r1v eval run` for them"]
            raise R1VError(f"--by {by}: item {k} in {where} has no such group (its groups: {', '.join(known)})")
        out[str(base[k].groups[by])].append(k)
    return dict(sorted(out.items()))


def compare(baselines: list[str], candidates: list[str], *, by: str | None = None) -> dict:
    """Candidate minus baseline per scored file, per pair and pooled (see the module's docstring)."""
    if len(baselines) != len(candidates):
        raise R1VError(f"{len(baselines)} baselines and {len(candidates)} candidates: give one candidate per "
                       f"baseline, in the same order (the i-th of each are paired)")
    files, skipped = _matched(baselines, candidates)
    out = []
    for name, paired_files in files.items():
        pairs, values, grouped = [], {m: [] for m in METRICS}, defaultdict(list)
        for i, (fb, fc) in enumerate(paired_files):
            base, cand = read_scored(fb), read_scored(fc)
            keys = [k for k in base if k in cand]
            if not keys:
                raise R1VError(f"{fb} and {fc} share no item ids: compare runs scored on the same rows")
            for k in keys:
                if any(x is not None and y is not None and x != y for x, y in zip(base[k].row, cand[k].row)):
                    raise R1VError(f"item {k} is another row in {fc} than in {fb} (its gold or prompt differs): "
                                   f"compare runs scored on the same data")
            pair = {"pair": i, "baseline": str(fb), "candidate": str(fc), "n": len(keys),
                    "only_baseline": len(base) - len(keys), "only_candidate": len(cand) - len(keys)}
            for metric, attr in METRICS.items():
                values[metric].append(_values(base, cand, attr, keys))
                pair[metric] = _gap(values[metric][-1])
            if by is not None:
                pair["groups"] = {}
                for v, ks in _groups(base, keys, by, fb).items():
                    grouped[v].append(_values(base, cand, "score", ks))
                    pair["groups"][v] = _gap(grouped[v][-1])
            pairs.append(pair)
        row = {"name": name, "pairs": pairs}
        if len(pairs) > 1:
            row["pooled"] = {m: _pooled(values[m]) for m in METRICS}
            # Two runs' gaps say next to nothing of the spread between runs (t's 12.7 quantile, or a width
            # of 0 when they happen to agree): over runs needs three pairs or more.
            row["over_runs"] = {m: t_interval([p[m]["gap"] for p in pairs])
                                if len(pairs) > 2 and all(p[m] for p in pairs) else None for m in METRICS}
            if by is not None:
                row["groups"] = {v: _pooled(vs) for v, vs in grouped.items()}
                row["groups_over_runs"] = {
                    v: t_interval([p["groups"][v]["gap"] for p in pairs])
                    if len(pairs) > 2 and all(p["groups"].get(v) for p in pairs) else None for v in grouped}
        out.append(row)
    return {"baselines": baselines, "candidates": candidates, "by": by, "comparisons": out, "skipped": skipped}


# --------------------------------------------------------------------------- rendering
def _points(g: dict) -> str:
    """A gap with its interval, or "the same on every item" where no item differs (an interval of width 0
    would read as certainty about items not scored)."""
    if g["gap"] == g["lo"] == g["hi"] == 0:
        return "the same on every item"
    return points(g)


def render(result: dict) -> str:
    """The comparison as markdown: a table per metric, a row per scored file."""
    k = len(result["candidates"])
    lines = [f"# Candidate minus baseline, paired by item ({k} pair{'s' * (k > 1)})", ""]
    for i, (b, c) in enumerate(zip(result["baselines"], result["candidates"])):
        lines.append(f"- pair {i}: `{c}` minus `{b}`")
    extra = ["pooled (items)"] * (k > 1) + ["mean over runs (t)"] * (k > 2)
    for metric, title in (("accuracy", "Accuracy"), ("hallucination", "Hallucination rate (lower is better)")):
        rows = [r for r in result["comparisons"] if any(p[metric] for p in r["pairs"])]
        if not rows:
            continue
        head = ["scored file", *(f"pair {i}" for i in range(k)), *extra]
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["name"]]
            for p in r["pairs"]:
                g = p[metric]
                # n where not every item of both files went in (a partial overlap; a task marking some answers)
                n = f", n = {g['n']}" if g and (g["n"] < p["n"] or p["only_baseline"] or p["only_candidate"]
                                                  or metric == "hallucination") else ""
                cells.append(f"{pct(g['baseline'])} -> {pct(g['candidate'])}: {_points(g)}{n}" if g else "-")
            if k > 1:
                g = r["pooled"][metric]
                cells.append(f"{_points(g)}, {g['n']} items" if g else "-")
            if k > 2:
                t = r["over_runs"][metric]
                cells.append(_points(t) if t else "-")
            lines.append("| " + " | ".join(cells) + " |")
    if result["by"]:
        for r in result["comparisons"]:
            values = list(r.get("groups") or r["pairs"][0]["groups"])  # pooled: every pair's values
            head = [result["by"], *(f"pair {i}" for i in range(k)), *extra, "items"]
            lines += ["", f"## {r['name']}: accuracy by {result['by']}", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            for v in values:
                cells = [v] + [_points(g) if (g := p["groups"].get(v)) else "-" for p in r["pairs"]]
                if k > 1:
                    cells.append(_points(g) if (g := r["groups"].get(v)) else "-")
                if k > 2:
                    cells.append(_points(t) if (t := r["groups_over_runs"].get(v)) else "-")
                cells.append(str((r.get("groups") or r["pairs"][0]["groups"])[v]["n"]))
                lines.append("| " + " | ".join(cells) + " |")
    missing = [(r["name"], p) for r in result["comparisons"] for p in r["pairs"]
               if p["only_baseline"] or p["only_candidate"]]
    if missing:
        lines += ["", "Compared on the items both scored: "
                  + "; ".join(f"{n}, pair {p['pair']}: {p['only_baseline']} only in the baseline, "
                              f"{p['only_candidate']} only in the candidate" for n, p in missing) + "."]
    if result["skipped"]:
        lines += ["", f"Skipped, not in every path: {', '.join(result['skipped'])}."]
    lines += ["", "Gaps in percentage points with 95% intervals, normal over the items (paired"
              + ("; pooled: each item's gaps averaged over the pairs first, so it counts the items' sampling, not "
                 "the runs'" if k > 1 else "") + ")"
              + ("; mean over runs: a t interval over the pairs' gaps, the runs as the observations (the one to "
                 "read for a change that should hold whatever the seed)." if k > 2 else ".")]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Each scored file's accuracy gap on a row: every pair's (grey) with its interval, the pooled one in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["comparisons"][::-1]  # the first at the top
    fig, ax = plt.subplots(figsize=(7, 1 + 0.5 * len(rows)))
    for y, r in enumerate(rows):
        entries = [(p["accuracy"], "tab:gray", 1) for p in r["pairs"]]
        entries += [(r["pooled"]["accuracy"], "black", 2)] if "pooled" in r else []
        offsets = [0.3 * (j + 1) / len(entries) - 0.15 for j in range(len(entries))]
        for (g, colour, width), dy in zip(entries, offsets):
            if g:
                ax.errorbar(100 * g["gap"], y + dy, xerr=[[100 * (g["gap"] - g["lo"])], [100 * (g["hi"] - g["gap"])]],
                            fmt="o", ms=3 + width, color=colour, capsize=2, lw=width)
    ax.axvline(0, color="tab:red", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    ax.set_xlabel("candidate minus baseline, accuracy points, 95% intervals\n(grey: pairs 0, 1, ... from the top; "
                  "black: pooled)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(result: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out / "compare.md", render(result)), write_json(out / "compare.json", result),
            plot(result, out / "compare.png")]
