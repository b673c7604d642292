"""`r1v eval run` / `r1v eval score`: generate (or read) outputs, score them, summarise.

    r1v eval run --model DIR_OR_URL --bench math500 --data MATH-500/test.jsonl --samples 4 --out runs/eval/m500
    r1v eval score --bench gpqa --data gpqa_diamond.csv --responses outputs.jsonl --out runs/eval/gpqa

Every run directory holds:
- `run.json`: what was run (model, benchmark, data, sampling, scoring) — a resumed run must match it;
- `items.jsonl`: one record per (item, sample): id, sample, prompt, output, reasoning, answer,
  extracted, gold, correct, scorer (the path that scored it), groups, tokens, finished;
- `summary.json`: pass@1 (mean over items of the mean over samples), its 95% confidence
  interval, the breakdown per subject / level / ..., and counts per scoring path.

Records are appended and flushed one by one, so an interrupted run loses at most the
generations in flight; run the same command again and it continues: records already on disk
are kept, a torn last line is dropped, and no (item, sample) is ever counted twice.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from r1v.errors import R1VError
from r1v.evaluate.answers import extract
from r1v.evaluate.judge import summary as judge_summary
from r1v.evaluate.tasks import Item, Task
from r1v.io import Journal, write_atomic
from r1v.stats import mean_ci

# What a resumed run must share with the records already on disk.
RUN_KEYS = ("bench", "model", "data", "samples", "think", "sampling", "load", "responses", "seed", "extraction",
            "judge")


# ---------------------------------------------------------------- the run directory
class RunDir:
    def __init__(self, out: str | Path, settings: dict, *, overwrite: bool = False):
        self.path = Path(out)
        self._lock = claim(self.path, settings, RUN_KEYS, overwrite=overwrite, files=("items.jsonl", "summary.json"),
                           what="run", tool="r1v eval")
        self.items_path = self.path / "items.jsonl"
        self.journal = Journal(self.items_path, key=lambda r: (str(r["id"]), int(r["sample"])))
        self.records = self.journal.records

    def add(self, rec: dict) -> None:
        self.journal.add([rec])

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.path / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))


def claim(out: Path, settings: dict, keys, *, overwrite: bool, files, what: str, tool: str):
    """Make the output folder `out` this process's (its lock, returned: hold it while the run
    lives) and start `out/run.json`, or check that the run there is this one (its `keys` agree).
    `--overwrite` deletes run.json and `files` first; a different run is a one-line error."""
    if out.exists() and not out.is_dir():
        raise R1VError(f"--out {out} is a file; name a directory")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out, tool)
    run_json = out / "run.json"
    if overwrite:
        for name in ("run.json", *files):
            (out / name).unlink(missing_ok=True)
    if run_json.exists():
        try:
            old = json.loads(run_json.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise R1VError(f"{run_json} is not readable JSON; use another --out, or --overwrite") from None
        diff = [k for k in keys if old.get(k) != settings.get(k)]
        if diff:
            raise R1VError(f"{out} holds a different {what} ({', '.join(diff)} differ); use another --out, "
                           f"or --overwrite to start again")
    write_atomic(run_json, json.dumps(settings, indent=2))
    return lock


def _lock(path: Path, what: str = "r1v eval"):
    """Hold an exclusive lock on the run directory for this process's lifetime: two runs
    appending to one items.jsonl would duplicate records."""
    f = open(path / ".lock", "w")
    try:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no lock
        pass
    except OSError:
        f.close()
        raise R1VError(f"another {what} is writing to {path}; wait for it, or use another --out") from None
    return f


# ---------------------------------------------------------------- scoring one output
def record(task: Task, item: Item, sample: int, output: str, *, think: bool, verifier, judge,
           finished: bool | None = None, new_tokens: int | None = None, error: str | None = None) -> dict:
    """The record of one output. A generation that failed for this item alone (a prompt longer
    than the context, a request the server rejects) is recorded as unanswered, with the error."""
    if error is not None:
        return {"id": item.id, "sample": sample, "prompt": task.prompt(item), "images": len(item.images),
                "output": "", "reasoning": "", "answer": None, "extracted": None, "gold": item.answer,
                "correct": False, "scorer": "none:generation-failed", "error": error, "groups": item.groups,
                "new_tokens": 0, "finished": False}
    score = task.score(item, output, think=think, verifier=verifier, judge=judge)
    ans = extract(output, think=think)
    return {
        "id": item.id, "sample": sample, "prompt": task.prompt(item), "images": len(item.images),
        "output": output, "reasoning": ans.reasoning, "answer": ans.text, "extracted": score.extracted,
        "gold": item.answer, "correct": score.correct, "scorer": score.scorer, "groups": item.groups,
        "new_tokens": new_tokens, "finished": finished, "hallucinated": task.hallucinated(item, output, think=think),
        **({"judge": score.judge} if score.judge else {}),
    }


# ---------------------------------------------------------------- runs
def evaluate(task: Task, items: list[Item], generator, sampling, run: RunDir, *, samples: int = 1,
             think: bool = True, verifier=None, judge=None) -> dict:
    """Generate what is missing from `run`, score it, write the summary; returns the summary."""
    if samples < 1:
        raise R1VError(f"--samples must be at least 1, got {samples}")
    by_id = {it.id: it for it in items}
    jobs = [((it.id, k), task.prompt(it), it.images) for it in items for k in range(samples)
            if (it.id, k) not in run.records]
    if len(jobs) < len(items) * samples:
        print(f"resuming: {len(items) * samples - len(jobs)} of {len(items) * samples} outputs already in "
              f"{run.items_path}")
    def score(done):
        (iid, k), comp = done
        return record(task, by_id[iid], k, comp.text, think=think, verifier=verifier, judge=judge,
                      finished=comp.finished, new_tokens=comp.new_tokens, error=comp.error)

    with tqdm(total=len(jobs), desc=f"{task.name}: generating", unit="output", disable=not jobs) as bar:
        for rec in scored(score, generator.run(jobs, sampling), judge):
            run.add(rec)
            bar.update()
    return finish(task, items, run, samples)


def scored(score, jobs, judge):
    """`score(job)` for every job, in this thread, or, with a judge, on `judge.concurrency` threads
    (a judge's replies take seconds: one at a time, thousands of outputs would take hours). The jobs
    iterator itself (a generator's outputs) is advanced in this thread; records come back here, so
    only this thread writes the run's journal."""
    if judge is None or judge.concurrency <= 1:
        return map(score, jobs)
    from r1v.evaluate.endpoint import map_concurrent

    return map_concurrent(score, jobs, judge.concurrency)


def read_responses(task: Task, items: list[Item], responses: str | Path, *,
                   limited: bool = False) -> list[tuple[str, int, str]]:
    """Outputs produced elsewhere: JSONL lines {"id": ..., "output": "..."}; repeated ids are further
    samples of the same item. [(item id, sample, output)], every line checked (before a run folder is
    claimed, so a mistake here leaves nothing behind)."""
    path = Path(responses)
    if not path.is_file():
        raise R1VError(f"responses not found: {path}")
    by_id = {it.id: it for it in items}
    rows = {str(it.info["row"]): it.id for it in items if "row" in it.info}  # GPQA: row numbers work too
    seen: Counter = Counter()
    outputs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise R1VError(f"{path} is not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            iid, out = str(row["id"]), row["output"]
        except (ValueError, KeyError, TypeError):
            raise R1VError(f"{path}:{n}: expected {{\"id\": ..., \"output\": \"...\"}}") from None
        if not isinstance(out, str):
            raise R1VError(f"{path}:{n}: output must be a string")
        iid = iid if iid in by_id else rows.get(iid, iid)
        if iid not in by_id:
            raise R1VError(f"{path}:{n}: id {iid!r} is not among the {len(by_id)} {task.name} items read "
                           f"(ids look like {next(iter(by_id))!r}" + ("; --limit shortened the list)" if limited else ")"))
        outputs.append((iid, seen[iid], out))
        seen[iid] += 1
    if not outputs:
        raise R1VError(f"{path}: no responses")
    return outputs


def score_responses(task: Task, items: list[Item], outputs: list[tuple[str, int, str]], run: RunDir, *,
                    think: bool = True, verifier=None, judge=None) -> dict:
    """Score `read_responses`' outputs into `run`, keeping what it already holds."""
    by_id = {it.id: it for it in items}
    samples = max(k for _, k, _ in outputs) + 1
    todo = [(iid, k, out) for iid, k, out in outputs if (iid, k) not in run.records]

    def score(job):
        iid, k, out = job
        return record(task, by_id[iid], k, out, think=think, verifier=verifier, judge=judge)

    for rec in tqdm(scored(score, todo, judge), total=len(todo), desc=f"{task.name}: scoring", unit="output"):
        run.add(rec)
    return finish(task, items, run, samples)


def finish(task: Task, items: list[Item], run: RunDir, samples: int) -> dict:
    settings = json.loads((run.path / "run.json").read_text())
    summary = summarize(task, items, list(run.records.values()), samples)
    summary.update(model=settings.get("model"), name=settings.get("name"), data=settings.get("data"),
                   extraction=settings.get("extraction"), think=settings.get("think"))
    run.write_summary(summary)
    return summary


# ---------------------------------------------------------------- summary
def summarize(task: Task, items: list[Item], records: list[dict], samples: int) -> dict:
    per_item: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        per_item[str(r["id"])].append(bool(r["correct"]))
    wanted = [it for it in items if it.id in per_item]
    scores = {it.id: sum(per_item[it.id]) / len(per_item[it.id]) for it in wanted}
    acc, lo, hi = mean_ci(list(scores.values()))
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for it in wanted:
        for key, value in it.groups.items():
            groups[key][value].append(scores[it.id])
    breakdown = {key: {v: {"n": len(s), "accuracy": round(100 * sum(s) / len(s), 2)} for v, s in sorted(vals.items())}
                 for key, vals in groups.items()}
    mine = [r for r in records if str(r["id"]) in scores]
    tokens = [r["new_tokens"] for r in mine if r.get("new_tokens") is not None]
    return {
        "bench": task.name, "title": task.title, "items": len(wanted), "items_in_data": len(items),
        "samples": samples, "outputs": len(mine), "complete": len(mine) == len(items) * samples,
        "generation_failed": sum(r["scorer"] == "none:generation-failed" for r in mine),
        "accuracy": round(acc, 2), "ci95": [round(lo, 2), round(hi, 2)],
        "answered": round(100 * sum(not r["scorer"].startswith("none") for r in mine) / max(1, len(mine)), 2),
        "unfinished": sum(r["finished"] is False for r in mine),
        "scorers": dict(Counter(r["scorer"] for r in mine).most_common()),
        "mean_new_tokens": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "groups": breakdown,
        **_hallucination(mine), **({"metrics": m} if (m := task.metrics(wanted, mine)) else {}),
        **({"judge": j} if (j := judge_summary(mine)) else {}),
    }


def _hallucination(records: list[dict]) -> dict:
    """The share of outputs the task marks as stating something false (where it can tell)."""
    known = [r["hallucinated"] for r in records if r.get("hallucinated") is not None]
    return {"hallucination": round(100 * sum(known) / len(known), 2), "hallucination_n": len(known)} if known else {}


def print_summary(summary: dict, out: Path, *, resumable: bool = True) -> None:
    print(f"\n{summary['title']}: {summary['accuracy']:.1f}% pass@1 "
          f"(95% CI {summary['ci95'][0]:.1f}-{summary['ci95'][1]:.1f}), {summary['items']} items x "
          f"{summary['samples']} sample(s); answered {summary['answered']:.1f}%; scored by "
          + ", ".join(f"{k} {v}" for k, v in summary["scorers"].items()))
    for key, vals in summary["groups"].items():
        if 1 < len(vals) <= 40:
            print(f"  by {key}: " + ", ".join(f"{v} {s['accuracy']:.0f}% ({s['n']})" for v, s in vals.items()))
    if "hallucination" in summary:
        print(f"  hallucination: {summary['hallucination']:.1f}% of {summary['hallucination_n']} outputs state "
              f"something the data says is false")
    for split, m in (summary.get("metrics") or {}).items():
        print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    if j := summary.get("judge"):
        print(f"  judged ({j['mode']}) by {j['model']}, prompt {j['prompt']} ({j['prompt_sha']}), "
              f"{j['samples']} sample(s) each: {j['judged']} outputs"
              + (f", agreement {j['agreement']:.1f}% ({j['unanimous']:.1f}% unanimous)" if j["samples"] > 1 else ""))
        if j["fell_back"]:
            print(f"  {j['fell_back']} judged output(s) fell back to the rules: the judge gave no usable verdict, "
                  f"or its samples no majority (see `judge.error` in the records)")
    if summary["generation_failed"]:
        print(f"  {summary['generation_failed']} output(s) could not be generated (see `error` in the records)")
    if not summary["complete"]:
        print(f"  partial: {summary['items']} of {summary['items_in_data']} items"
              + (" (run the same command again to finish)" if resumable else ""))
    print(f"records: {out / 'items.jsonl'}  summary: {out / 'summary.json'}")
