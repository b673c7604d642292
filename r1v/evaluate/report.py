"""`r1v eval report RUN...`: merge evaluation runs into the R1V README's table and a bar chart.

    r1v eval report runs/eval/* --out runs/report

Rows are models (each run's `--name`, else its model path's last part); columns are the
papers' benchmarks in the papers' order. Each cell is pass@1 in percent with its 95%
interval. Writes `report.md` and `report.png` (bars with the intervals).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1v.errors import R1VError

COLUMNS = ("math500", "aime24", "gpqa", "mathvista", "mmmu")
TITLES = {"math500": "MATH-500", "aime24": "AIME 2024", "gpqa": "GPQA", "mathvista": "MathVista(mini)",
          "mmmu": "MMMU(Val)"}


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
    """{model: {bench: summary}}; two runs of one model on one benchmark is an error."""
    table: dict[str, dict[str, dict]] = {}
    where: dict[tuple[str, str], Path] = {}
    for f in find_runs(paths):
        try:
            s = json.loads(f.read_text(encoding="utf-8"))
            key = (model_name(s), s["bench"])
            if not {"accuracy", "ci95", "items", "samples"} <= set(s):
                raise KeyError("fields")
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            raise R1VError(f"{f} is not an r1v eval summary") from None
        if key in where:
            raise R1VError(f"two runs of {key[0]} on {key[1]}: {where[key].parent} and {f.parent}; "
                           f"pass one, or tell them apart with `eval run --name`")
        where[key] = f
        table.setdefault(key[0], {})[key[1]] = s
    return table


def markdown(table: dict[str, dict[str, dict]]) -> str:
    cols = [c for c in COLUMNS if any(c in row for row in table.values())]
    cols += sorted({b for row in table.values() for b in row} - set(cols))
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
            cells.append(f"{s['accuracy']:.1f} ({s['ci95'][0]:.1f}–{s['ci95'][1]:.1f}){mark}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    notes = sorted({f"{TITLES.get(b, b)}: {s['items']} items x {s['samples']} sample(s), "
                    f"extraction {s.get('extraction') or 'rules'}"
                    for row in table.values() for b, s in row.items()})
    return "\n".join(lines) + "\n\npass@1 (%) and its 95% interval.\n" + \
        "".join(f"- {n}\n" for n in notes)


def bar_chart(table: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in COLUMNS if any(c in row for row in table.values())]
    cols += sorted({b for row in table.values() for b in row} - set(cols))
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
        err = [[e[0][0] for e in errs], [e[1][0] for e in errs]]
        bars = ax.bar(xs, ys, width, yerr=err, capsize=3, label=model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center")
    ax.set_xticks(range(len(cols)), [TITLES.get(c, c) for c in cols])
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(paths: list[str], out: str | Path) -> str:
    table = collect(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise R1VError(f"--out {out} is a file; name a directory")
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(table)
    (out / "report.md").write_text(md, encoding="utf-8")
    bar_chart(table, out / "report.png")
    return md
