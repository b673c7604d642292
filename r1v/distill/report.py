"""A distillation's summary and report: what was kept or revised, and P and reasoning length
against difficulty (`OUT/summary.json`, `OUT/report.md`, `OUT/penalty.png`).

Difficulty is the rows' own label when every row has one (`difficulty`, `level`, or the field
named by `difficulty_field`), else terciles of the normalised text score Ŝ_t (easy, medium, hard).

    r1v distill report OUT          # rewrites the report from OUT/records.jsonl
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from pathlib import Path

from r1v.evaluate.answers import is_number
from r1v.io import Journal, write_atomic

BANDS = ("easy", "medium", "hard", "all")


def bands(records: list[dict]) -> list[str]:
    """Each record's difficulty band: its label, or its Ŝ_t tercile."""
    if records and all(r.get("difficulty") is not None for r in records):
        return [_label(r["difficulty"]) for r in records]
    ordered = sorted(r["s_text"] for r in records if r["s_text"] is not None)
    if not ordered:  # nothing tells the samples apart
        return ["all"] * len(records)
    lo, hi = ordered[len(ordered) // 3], ordered[(2 * len(ordered)) // 3]
    mid = ordered[len(ordered) // 2]
    return ["easy" if (v := _or(r["s_text"], mid)) < lo else "hard" if v >= hi else "medium" for r in records]


def _or(v, default):
    return default if v is None else v


def _label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.fmean(xs), 3) if xs else None


def summarise(records: list[dict], *, rows: int, unit: str, settings: dict | None = None,
              score_failures: int = 0) -> dict:
    """Counts, means and the by-difficulty table of a distillation's records. Judge failures are
    samples whose scores (`score_failures`), verdict or 0..5 reward the judge could not give."""
    verdicts = Counter(r["verdict"] for r in records)
    by: dict[str, list[dict]] = {}
    for band, r in zip(bands(records), records):
        by.setdefault(band, []).append(r)
    order = sorted(by, key=lambda b: (0, float(b)) if is_number(b) else (1, BANDS.index(b)))
    return {
        "rows": rows, "finished": len(records), "unit": unit,
        "verdicts": dict(verdicts), "kept_or_revised": sum(v for k, v in verdicts.items() if k != "dropped"),
        "teacher_accuracy": _mean(float(r["teacher_correct"]) for r in records),
        "penalty": {"mean": _mean(r["penalty"] for r in records), "min": min((r["penalty"] for r in records),
                                                                              default=None),
                    "max": max((r["penalty"] for r in records), default=None)},
        "teacher_length": _mean(r["teacher_length"] for r in records),
        "final_length": _mean(r["length"] for r in records),
        "unfinished_chains": sum(not r["teacher_finished"] for r in records),
        "judge_failures": {"scores": score_failures,
                           "verdicts": sum(bool(r.get("judge_failures")) for r in records),
                           "rewards": sum(str(r.get("score_source")).startswith("rules (judge") for r in records)},
        "score_histogram": {str(k): sum(r["score"] == k for r in records) for k in range(6)},
        "difficulty_axis": "label" if records and all(r.get("difficulty") is not None for r in records) else "S_t",
        "by_difficulty": {b: {"n": len(by[b]), "kept": sum(r["length"] is not None for r in by[b]),
                              "penalty": _mean(r["penalty"] for r in by[b]),
                              "teacher_length": _mean(r["teacher_length"] for r in by[b]),
                              "final_length": _mean(r["length"] for r in by[b]),
                              "teacher_accuracy": _mean(float(r["teacher_correct"]) for r in by[b])}
                          for b in order},
        "settings": settings or {},
    }


def plot(summary: dict, path: Path, arms: dict[str, dict] | None = None) -> None:
    """P and reasoning length against difficulty; `arms` ({name: summary}) draws several runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = arms or {"AL-CoTD": summary}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, (name, s) in enumerate(arms.items()):
        xs, colour = list(s["by_difficulty"]), f"C{k}"
        a.plot(xs, [s["by_difficulty"][x]["penalty"] for x in xs], marker="o", color=colour, label=name)
        b.plot(xs, [s["by_difficulty"][x]["teacher_length"] for x in xs], marker="o", color=colour,
               label=f"{name}: teacher")
        b.plot(xs, [s["by_difficulty"][x]["final_length"] for x in xs], marker="s", linestyle="--", color=colour,
               label=f"{name}: kept")
    axis = "difficulty (label)" if summary["difficulty_axis"] == "label" else "difficulty (tercile of S_t)"
    a.set(xlabel=axis, ylabel="repetition penalty P", title="DRLC's penalty")
    b.set(xlabel=axis, ylabel=f"reasoning {summary['unit']}", title="reasoning length")
    save(fig, (a, b), path)


def save(fig, axes, path: Path) -> None:
    """Grid, legends, tight layout, written to `path` and closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # never a half-written picture
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def table(summary: dict) -> str:
    unit = summary["unit"]
    lines = [f"| difficulty | samples | mean P | teacher accuracy | teacher {unit} | kept {unit} |",
             "|---|---|---|---|---|---|"]
    for band, s in summary["by_difficulty"].items():
        acc = "" if s["teacher_accuracy"] is None else f"{100 * s['teacher_accuracy']:.1f}%"
        lines.append(f"| {band} | {s['n']} | {_num(s['penalty'], 2)} | {acc} | {_num(s['teacher_length'], 1)} | "
                     f"{_num(s['final_length'], 1)} |")
    return "\n".join(lines)


def _num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write_report(out: Path, summary: dict) -> None:
    plot(summary, out / "penalty.png")
    st = summary.get("settings", {})
    v = summary["verdicts"]
    acc = summary["teacher_accuracy"]
    text = f"""# AL-CoTD distillation

Teacher `{st.get('teacher')}`, judge `{st.get('judge') or 'none (rules)'}`; penalty {st.get('penalty')}
(alpha {st.get('alpha')}, beta {st.get('beta')}, gamma {st.get('gamma')}{
        f", fixed P {st.get('fixed_penalty')}" if st.get('penalty') == 'fixed' else ''}).

- {summary['finished']} of {summary['rows']} samples finished; teacher right {
        '' if acc is None else f'{100 * acc:.1f}%'} of the time.
- Kept as written: {v.get('kept', 0)}; revised: {', '.join(f"{n} by {k.split(':')[1]}" for k, n in v.items()
                                                      if k.startswith('revised')) or 'none'}; dropped: {
        v.get('dropped', 0)}.
- P: mean {_num(summary['penalty']['mean'], 3)} (from {_num(summary['penalty']['min'], 3)} to {
        _num(summary['penalty']['max'], 3)}).
- Reasoning length ({summary['unit']}): teacher {_num(summary['teacher_length'], 1)}, kept {
        _num(summary['final_length'], 1)}.
- Chains that hit max_new_tokens: {summary['unfinished_chains']}. Malformed judge replies, after their
  retries (a score is then imputed, a verdict or reward falls back to the rules): {
        ', '.join(f'{k} {n}' for k, n in summary['judge_failures'].items())}.
- 0..5 scores: {', '.join(f'{k}: {n}' for k, n in summary['score_histogram'].items())}.

{table(summary)}

![P and length against difficulty](penalty.png)
"""
    write_atomic(out / "report.md", text)


def rewrite(out: Path) -> dict:
    """`r1v distill report OUT`: the summary and report again, from the records on disk."""
    from r1v.errors import R1VError
    out = Path(out)
    if not (out / "records.jsonl").is_file():
        raise R1VError(f"{out} has no records.jsonl: not a distillation folder")
    try:
        settings = json.loads((out / "run.json").read_text())
        old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    except (OSError, ValueError):
        raise R1VError(f"{out}/run.json or summary.json is unreadable; rerun the distillation") from None
    records = list(Journal(out / "records.jsonl", key=lambda r: r["id"]).records.values())  # a torn line is dropped
    scored = Journal(out / "scores.jsonl", key=lambda r: r["id"]).records.values()
    summary = summarise(records, rows=settings.get("rows", len(records)), unit=old.get("unit", "tokens"),
                        settings=settings, score_failures=sum(bool(r.get("failures")) for r in scored))
    summary["unfinished"] = settings.get("rows", len(records)) - len(records)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    write_report(out, summary)
    return summary
