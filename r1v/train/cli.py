"""`r1v train STAGE` and `r1v recipe run|report`: the recipe's command line.

    r1v recipe run recipes/tiny.yaml [key=value ...] [--restart]
    r1v train align|transfer|sft|grpo --config recipes/tiny.yaml [key=value ...]
    accelerate launch -m r1v train sft --config recipes/r1v-38b.yaml      # many GPUs, unchanged
    r1v recipe report runs/tiny
"""

from __future__ import annotations

import argparse
import time

from r1v.errors import R1VError
from r1v.io import docstring

SETTINGS = "\n\nsettings (key=value; YAML values; nested keys dotted):\n"


def _settings() -> str:
    from r1v.train.config import RecipeConfig, help_lines

    return SETTINGS + "\n".join(help_lines(RecipeConfig))


def add_parsers(sub) -> None:
    r = sub.add_parser("recipe", help="the whole R1V recipe by config: align, transfer, SFT, GRPO, report",
                       description="Run the R1V training recipe end to end from a YAML file. Finished stages are "
                                   "skipped, so an interrupted run resumes.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    rsub = r.add_subparsers(dest="recipe_command", metavar="ACTION")
    rsub.required = True
    p = rsub.add_parser("run", help="run every stage of a recipe, then write the report",
                        description="Run every stage of a recipe, then write runs/<name>/report.md. Every backbone "
                                    "and data file is checked first; a finished stage is skipped, and a stage that "
                                    "crashed resumes from its newest mid-stage checkpoint. A recipe names its files; "
                                    "string settings expand ~ and ${VAR:-default}. recipes/tiny.yaml names the "
                                    "mini-world's, which `r1v world build` and `r1v world data` make (make demo "
                                    "runs all three).",
                        epilog="examples:\n  r1v recipe run recipes/tiny.yaml\n"
                               "  r1v recipe run recipes/tiny.yaml grpo.steps=20 name=short --restart" + _settings(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="the recipe YAML (recipes/tiny.yaml: the mini-world on a CPU)")
    p.add_argument("settings", nargs="*", metavar="key=value", help="override a setting (listed below)")
    p.add_argument("--restart", action="store_true", help="delete the run folder and start over")
    p.set_defaults(func=cmd_run)
    p = rsub.add_parser("report", help="(re)write runs/<name>/report.md and its plots",
                        description="Write a recipe run's report again from its results.json and metrics.jsonl: the "
                                    "claims table, each stage's held-out accuracy, the plots and the example answer. "
                                    "Nothing is trained or evaluated.")
    p.add_argument("run", help="the run folder, e.g. runs/tiny")
    p.set_defaults(func=cmd_report)

    t = sub.add_parser("train", help="run one stage of a recipe: align, transfer, sft, rm, mpo or grpo",
                       description="Run one stage of a recipe (its earlier stages' checkpoints must exist in "
                                   "the run folder). The stage reruns even when it finished before.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = t.add_subparsers(dest="stage", metavar="STAGE")
    tsub.required = True
    for name in ("align", "transfer", "sft", "rm", "mpo", "grpo"):
        doc = docstring(f"r1v.train.{name}")
        p = tsub.add_parser(name, help=doc.split(":")[0], description=doc, epilog=_settings(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", required=True, help="the recipe YAML whose settings and run folder to use")
        p.add_argument("settings", nargs="*", metavar="key=value", help="override a setting")
        p.set_defaults(func=cmd_stage)


def cmd_run(a) -> int:
    from r1v.train.config import load_recipe
    from r1v.train.recipe import run

    run(load_recipe(a.recipe, a.settings), restart=a.restart)
    return 0


def cmd_stage(a) -> int:
    from r1v.train.config import load_recipe
    from r1v.train.context import Context
    from r1v.train.recipe import stage_module

    ctx = Context(load_recipe(a.config, a.settings))
    t0 = time.perf_counter()
    ctx.check([a.stage])
    ctx.forget(a.stage)  # an explicit rerun starts the stage afresh; the stages after it are stale
    stage_module(a.stage).run(ctx)
    ctx.metrics.close()
    print(f"{a.stage}: done in {time.perf_counter() - t0:.0f} s -> {ctx.dir / a.stage}")
    for s, r in ctx.results["stages"].items():
        if s.split("/")[0] == a.stage and "eval" in r:
            print(f"  {s}: " + ", ".join(f"{k} {100 * v['accuracy']:.1f}%" for k, v in r["eval"].items()))
    return 0


def cmd_report(a) -> int:
    from pathlib import Path

    from r1v.train.report import write

    if not (Path(a.run) / "results.json").exists():
        raise R1VError(f"{a.run} holds no results.json: not a recipe run folder")
    print(f"wrote {write(a.run)}")
    return 0
