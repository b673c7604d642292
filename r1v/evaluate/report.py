"""`r1v eval report RUN...`: merge evaluation runs into the papers' tables and a bar chart.

    r1v eval report runs/eval/* --out runs/report                 # every benchmark found, R1V's first
    r1v eval report runs/eval/* --out runs/report --table r1v2    # R1V2's columns and published rows

Rows are models (each run's `--name`, else its model path's last part); columns are benchmarks in
the paper's order. Each cell is pass@1 in percent with its 95% interval; a judged score is marked
† and the notes say by which judge, prompt version, samples and agreement. `--table r1v|r1v2|r1v3`
fixes the columns to one paper's table and adds its published rows, marked "(published)": they
are what the paper reports, not runs, and carry no interval. Writes `report.md` and `report.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1v.errors import R1VError

COLUMNS = ("math500", "aime24", "gpqa", "mathvista", "mmmu", "mathvision", "mathverse", "olympiadbench",
           "mmmupro", "hallusionbench")
TITLES = {"math500": "MATH-500", "aime24": "AIME 2024", "gpqa": "GPQA", "mathvista": "MathVista(mini)",
          "mmmu": "MMMU(Val)", "mathvision": "MathVision", "mathverse": "MathVerse", "olympiadbench": "OlympiadBench",
          "mmmupro": "MMMU-Pro", "hallusionbench": "HallusionBench"}

# The papers' tables as published (model cards on the Hugging Face Hub and the reports; `../shared/docs/
# method.md`). Benchmarks r1v does not run (LiveCodeBench, LiveBench, IFEval, BFCL, EMMA) are left out.
TABLES = {
    "r1v": {  # Skywork-R1V-38B model card / arXiv 2504.05599, Table: pass@1
        "columns": ("math500", "aime24", "gpqa", "mathvista", "mmmu"),
        "published": {"Skywork-R1V-38B": {"math500": 94.0, "aime24": 72.0, "gpqa": 61.6, "mathvista": 67.5,
                                          "mmmu": 69.0}},
    },
    "r1v2": {  # Skywork-R1V2-38B model card (arXiv 2504.16656): MathVision is its testmini ("MathVision(mini)")
        "columns": ("aime24", "gpqa", "mmmu", "mathvista", "mathvision", "olympiadbench", "mmmupro"),
        "published": {
            "Skywork-R1V2-38B": {"aime24": 78.9, "gpqa": 61.6, "mmmu": 73.6, "mathvista": 74.0, "mathvision": 49.0,
                                 "olympiadbench": 62.6, "mmmupro": 52.0},
            "Skywork-R1V-38B (R1V2's table)": {"aime24": 72.0, "mmmu": 68.0, "mathvista": 67.0,
                                               "olympiadbench": 40.4},
        },
    },
    "r1v3": {  # Skywork-R1V3-38B model card (arXiv 2507.06167)
        "columns": ("mmmu", "mathvista", "mathverse", "mathvision", "mmmupro", "hallusionbench"),
        "published": {"Skywork-R1V3-38B": {"mmmu": 76.0, "mathvista": 77.1, "mathverse": 59.6, "mathvision": 52.6,
                                           "mmmupro": 55.4, "hallusionbench": 61.3}},
    },
}


def find_runs(paths: list[str]) -> list[Path]:
    found = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            found.append(p / "summary.json")
        elif p.is_dir():
            found += sorted(p.glob("*/summary.json"))
        else:
            raise R1VError(f"not a run directory (no summary.json): {p}")
    if not found:
        raise R1VError(f"no summary.json under {', '.join(paths)}")
    return found


def model_name(summary: dict) -> str:
    return summary.get("name") or Path(str(summary.get("model") or "model").rstrip("/")).name


def collect(paths: list[str]) -> dict[str, dict[str, dict]]:
    """{model: {bench: summary}}. Two runs of one model on one benchmark that were scored differently
    (the rules, a judge) become two rows, "model (judge:match)" beside "model"; two scored alike are
    an error."""
    runs: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for f in find_runs(paths):
        try:
            s = json.loads(f.read_text(encoding="utf-8"))
            key = (model_name(s), s["bench"])
            if not {"accuracy", "ci95", "items", "samples"} <= set(s):
                raise KeyError("fields")
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            raise R1VError(f"{f} is not an r1v eval summary") from None
        runs.setdefault(key, []).append((f, s))
    table: dict[str, dict[str, dict]] = {}
    for (model, bench), found in runs.items():
        scorings = [s.get("extraction") or "rules" for _, s in found]
        if len(set(scorings)) < len(found):
            a, b = (f.parent for f, _ in found[:2])
            raise R1VError(f"two runs of {model} on {bench} scored alike: {a} and {b}; pass one, or tell them "
                           f"apart with --name")
        for (f, s), how in zip(found, scorings):
            row = model if how == "rules" or len(found) == 1 else f"{model} ({how})"
            table.setdefault(row, {})[bench] = s
    return table


def columns(table: dict[str, dict[str, dict]], which: str | None) -> list[str]:
    if which:
        return list(TABLES[which]["columns"])
    cols = [c for c in COLUMNS if any(c in row for row in table.values())]
    return cols + sorted({b for row in table.values() for b in row} - set(cols))


def judged(s: dict) -> bool:
    return (s.get("extraction") or "rules") != "rules"


def markdown(table: dict[str, dict[str, dict]], which: str | None = None) -> str:
    cols = columns(table, which)
    lines = ["| Model | " + " | ".join(TITLES.get(c, c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for model, row in table.items():
        cells = []
        for c in cols:
            s = row.get(c)
            if s is None:
                cells.append("–")
                continue
            mark = "" if s.get("complete", True) else " partial"
            cells.append(f"{s['accuracy']:.1f}{'†' if judged(s) else ''} ({s['ci95'][0]:.1f}–{s['ci95'][1]:.1f}){mark}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model, row in (TABLES[which]["published"] if which else {}).items():
        lines.append(f"| {model} (published) | " + " | ".join(f"{row[c]:.1f}" if c in row else "–" for c in cols)
                     + " |")
    notes = sorted({f"{TITLES.get(b, b)}: {s['items']} items x {s['samples']} sample(s){subset(s)}, " + scoring(s)
                    for row in table.values() for b, s in row.items() if b in cols})
    left = sorted({TITLES.get(b, b) for row in table.values() for b in row if b not in cols})
    text = "\n".join(lines) + "\n\npass@1 (%) and its 95% interval; † judged by an LLM (see the notes)." + \
        (" Published rows are the paper's figures, not runs." if which else "") + "\n" + \
        "".join(f"- {n}\n" for n in notes)
    if left:
        text += f"- not in the {which} table: {', '.join(left)}\n"
    return text


# The breakdowns that say which part of a benchmark a run scored: a published figure is for one split,
# version set or setting, and a cell beside it must say what it holds.
SUBSETS = {"split": "split", "version": "versions", "setting": "settings", "config": "configs"}
METRIC = {"hallusionbench": "aAcc (qAcc and fAcc in the run's summary)", "pope": "accuracy (F1 in the run's summary)"}


def subset(s: dict) -> str:
    parts = [f"{SUBSETS[k]} " + ", ".join(f"{v} ({g['n']})" for v, g in s["groups"][k].items())
             for k in SUBSETS if k in (s.get("groups") or {})]
    if s.get("bench") in METRIC:
        parts.append("the cell is " + METRIC[s["bench"]])
    return "".join(f"; {p}" for p in parts)


def scoring(s: dict) -> str:
    """How a run's answers were scored, as the report's note says it."""
    j = s.get("judge")
    if not judged(s) or not j:
        return "scored by the rules" if not judged(s) else f"extraction {s['extraction']}"
    out = f"judged ({j['mode']}) by {j['model']}, prompt {j['prompt']} ({j['prompt_sha']})"
    if j["samples"] > 1:
        out += f", {j['samples']} samples, agreement {j['agreement']:.1f}%"
    if j["fell_back"]:
        out += f", {j['fell_back']} output(s) fell back to the rules"
    return out


def bar_chart(table: dict[str, dict[str, dict]], path: Path, which: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(table, which)
    models = list(table)
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(cols), 4))
    for m, model in enumerate(models):
        xs, ys, errs = [], [], []
        for c, bench in enumerate(cols):
            s = table[model].get(bench)
            if s:
                xs.append(c + (m - (len(models) - 1) / 2) * width)
                ys.append(s["accuracy"])
                errs.append([[s["accuracy"] - s["ci95"][0]], [s["ci95"][1] - s["accuracy"]]])
        if not xs:
            continue
        err = [[e[0][0] for e in errs], [e[1][0] for e in errs]]
        bars = ax.bar(xs, ys, width, yerr=err, capsize=3, label=model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center")
    for model, row in (TABLES[which]["published"] if which else {}).items():  # published: ticks, no bars
        ax.scatter([c for c, b in enumerate(cols) if b in row], [row[b] for b in cols if b in row], marker="_",
                   s=400, linewidths=2, label=f"{model} (published)", zorder=3)
    ax.set_xticks(range(len(cols)), [TITLES.get(c, c) for c in cols])
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(paths: list[str], out: str | Path, which: str | None = None) -> str:
    if which is not None and which not in TABLES:
        raise R1VError(f"--table must be one of {', '.join(TABLES)}, got {which!r}")
    table = collect(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise R1VError(f"--out {out} is a file; name a directory")
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(table, which)
    (out / "report.md").write_text(md, encoding="utf-8")
    bar_chart(table, out / "report.png", which)
    return md
