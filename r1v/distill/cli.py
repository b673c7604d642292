"""`r1v distill`: AL-CoTD as a data tool.

    r1v distill --data rows.jsonl --teacher http://localhost:8000/v1 --judge http://localhost:8001/v1 --out OUT
    r1v distill --data rows.jsonl --teacher runs/tiny/sft/m0 --out /tmp/d --limit 200        # offline, local model
    r1v distill report OUT                                  # rewrite OUT/report.md from the records

The mini-world's own data step (`r1v world data`) and its comparison of AL-CoTD with fixed
penalties (`r1v world compare`) run this same code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r1v.errors import R1VError

MODES = ("run", "report")
EXAMPLES = """examples:
  r1v distill --data ~/.cache/r1v/world/data/visual-train.jsonl --teacher ~/.cache/r1v/world/reasoning \\
      --out /tmp/distill --limit 200 --task world
  r1v distill --data mine.jsonl --teacher http://localhost:8000/v1 --judge http://localhost:8001/v1 \\
      --out out/ concurrency=32 rpm=600 alpha=0.5
  r1v distill --data mine.jsonl --teacher runs/tiny/sft/m0 --out out/ penalty=fixed fixed_penalty=1.05
  r1v distill --data chains.jsonl --teacher rows --judge http://localhost:8001/v1 --out out/   # score existing D

rows: JSON lines {"id", "question", "answer", optional "image" / "images" (paths relative to the file),
"choices", "caption" (the image in words, for a text-only teacher), "reasoning" (a reference chain,
the last resort for revising a wrong one), "difficulty" / "level", "response" (with --teacher rows)}.
Rerunning a command resumes it.
"""


def add_parser(sub) -> None:
    from r1v.config import help_lines
    from r1v.distill.config import DistillConfig

    d = sub.add_parser("distill", help="AL-CoTD: adaptive-length <think> chains, checked and revised by a judge",
                       description="Adaptive-Length Chain-of-Thought Distillation (Skywork R1V). Each sample is "
                                   "scored (QDAM: clarity, necessity, quality, difficulty, demand; VTIA: "
                                   "integration), the scores set its repetition penalty (DRLC), the teacher "
                                   "writes its chain at that penalty, the answer is checked, wrong chains are "
                                   "revised, and every kept chain gets a 0..5 reward-model score. Modes: run "
                                   "(the default), report OUT.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = d.add_subparsers(dest="distill_command", metavar="MODE")
    dsub.required = True
    p = dsub.add_parser("run", help="distil a data set (the default: `r1v distill --data ...`)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=EXAMPLES + "\nsettings (key=value):\n" + "\n".join(help_lines(DistillConfig)))
    p.add_argument("--data", required=True, help="JSON lines of rows (see below)")
    p.add_argument("--teacher", help="checkpoint folder, an http(s):// endpoint, or `rows` (check, "
                                     "revise and score the rows' own `response` chains; nothing generated)")
    p.add_argument("--judge", help="as --teacher; none: the rules (or judge=...)")
    p.add_argument("--out", required=True, help="output folder (resumed when it holds the same run)")
    p.add_argument("--task", default=None, choices=["jsonl", "world"],
                   help="the scorer that checks answers (default: jsonl; world for the mini-world's rows)")
    p.add_argument("--teacher-model", default=None, help="the teacher endpoint's model name, when it serves several")
    p.add_argument("--judge-model", default=None, help="the judge endpoint's model name, when it serves several")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows (a quick try)")
    p.add_argument("--overwrite", action="store_true", help="start OUT afresh")
    p.add_argument("settings", nargs="*", metavar="key=value", help="a setting (listed below)")
    p.set_defaults(func=cmd_run)
    p = dsub.add_parser("report", help="rewrite OUT/summary.json, report.md and penalty.png")
    p.add_argument("out", help="a distillation folder")
    p.set_defaults(func=cmd_report)


def default_mode(argv: list[str]) -> list[str]:
    """`r1v distill --data ...` means `r1v distill run --data ...`."""
    if len(argv) >= 2 and argv[0] == "distill" and argv[1] == "compare":
        raise R1VError("`r1v distill compare` is now `r1v world compare` (the comparison runs on the mini-world)")
    if len(argv) >= 2 and argv[0] == "distill" and argv[1] not in (*MODES, "-h", "--help"):
        return ["distill", "run", *argv[1:]]
    return argv


def read_data(spec: str, limit: int | None) -> tuple[list[dict], Path]:
    """(rows, the folder their images are relative to)."""
    from r1v.evaluate.data import need, read_rows

    path = Path(spec)
    if not path.is_file():
        raise R1VError(f"--data {spec}: no such file")
    rows = read_rows(path)[:limit]
    need(rows, ("id", "question", "answer"), str(path))
    return rows, path.parent


def cmd_run(a) -> int:
    from r1v.distill.models import open_model
    from r1v.distill.run import distill
    from r1v.evaluate.tasks import get_task
    from r1v.config import build, parse_overrides
    from r1v.distill.config import DistillConfig

    cfg = build(DistillConfig, parse_overrides(a.settings))
    cfg.teacher = a.teacher or cfg.teacher
    if a.judge is not None:
        cfg.judge = "" if a.judge == "none" else a.judge
    if not cfg.teacher:
        raise R1VError("name a teacher: --teacher MODEL_DIR | http(s)://HOST/v1 | rows")
    cfg.validate()
    if a.limit is not None and a.limit < 1:
        raise R1VError(f"--limit {a.limit}: give a number of rows, at least 1")
    rows, root = read_data(a.data, a.limit)
    opts = dict(batch_size=cfg.batch_size, concurrency=cfg.concurrency, rpm=cfg.rpm or None,
                timeout=cfg.timeout, retries=cfg.retries)
    if cfg.teacher == "rows":
        from r1v.distill.models import RowResponses

        teacher = RowResponses(rows)
    else:
        teacher = open_model(cfg.teacher, served_model=a.teacher_model, **opts)
    judge = open_model(cfg.judge, served_model=a.judge_model, **opts) if cfg.judge else None
    if not teacher.sees_images and any(r.get("image") or r.get("images") for r in rows):
        print(f"note: {cfg.teacher} is a text-only model: it reads each row's `caption`, not its images")
    summary = distill(rows, cfg, a.out, task=get_task(a.task or "jsonl"), teacher=teacher, judge=judge, root=root,
                      overwrite=a.overwrite)
    _print(summary, Path(a.out))
    return 1 if summary["unfinished"] else 0


def _print(summary: dict, out: Path) -> None:
    from r1v.distill.report import table

    v = summary["verdicts"]
    print(f"{summary['finished']}/{summary['rows']} samples: {v.get('kept', 0)} kept, "
          f"{sum(n for k, n in v.items() if k.startswith('revised'))} revised, {v.get('dropped', 0)} dropped; "
          f"mean P {summary['penalty']['mean']}")
    print(table(summary))
    print(f"training rows: {out / 'data.jsonl'}; report: {out / 'report.md'}")


def cmd_report(a) -> int:
    from r1v.distill.report import rewrite

    rewrite(Path(a.out))
    print(f"wrote {Path(a.out) / 'report.md'}")
    return 0
