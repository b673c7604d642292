"""`r1v train STAGE` and `r1v recipe run|report`: the recipe's command line.

    r1v recipe run recipes/tiny.yaml [key=value ...] [--restart]
    r1v train align|transfer|sft|rm|mpo|grpo --config recipes/tiny.yaml [key=value ...]
    r1v train grpo-filter --config recipes/r1v2-tiny.yaml       # R1V2's offline prompt-pool filter
    r1v train grpo-probe --config recipes/r1v2-tiny.yaml --seeds 0,1,2   # R1V3's choice, probed again
    accelerate launch -m r1v train sft --config recipes/r1v-38b.yaml      # many GPUs, unchanged
    r1v recipe report runs/tiny
    r1v recipe claims runs/s0 runs/s1 runs/s2 [--out DIR]     # the paper's claims over several runs (seeds)
    r1v recipe compare runs/A runs/B ... --out DIR             # GRPO of several runs, each against the first
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
                                    "crashed resumes from its newest mid-stage checkpoint, unless its settings, the "
                                    "content of its backbones or data, or the stage before it changed since it "
                                    "started: then it runs again, with every stage after it. A recipe names its files; "
                                    "string settings expand ~ and ${VAR:-default}. recipes/tiny.yaml names the "
                                    "mini-world's, which `r1v world build` and `r1v world data` make (make demo "
                                    "runs all three).",
                        epilog="examples:\n  r1v recipe run recipes/tiny.yaml\n"
                               "  r1v recipe run recipes/tiny.yaml grpo.steps=20 name=short --restart" + _settings(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="the recipe YAML (recipes/tiny.yaml: the mini-world on a CPU)")
    p.add_argument("settings", nargs="*", metavar="key=value", help="override a setting (listed below)")
    p.add_argument("--restart", action="store_true", help="start over: the run folder goes once the new run's "
                                                          "backbones and data pass their checks (until then it is "
                                                          "<run>.before-restart)")
    p.set_defaults(func=cmd_run)
    p = rsub.add_parser("report", help="(re)write runs/<name>/report.md and its plots",
                        description="Write a recipe run's report again from its results.json and metrics.jsonl: the "
                                    "claims table, each stage's held-out accuracy, the plots and the example answer. "
                                    "Nothing is trained or evaluated.")
    p.add_argument("run", help="the run folder, e.g. runs/tiny")
    p.set_defaults(func=cmd_report)
    p = rsub.add_parser("claims", help="the paper's claims over several runs (seeds, or machines): each run, "
                                       "pooled, and over the runs",
                        description="The claims table of each run's report, over several runs of one recipe that "
                                    "differ in their seed (runs with other settings, backbones, data or targets are "
                                    "refused): each run's figure; pooled over the items (each item's scores averaged "
                                    "over the runs first: the items' sampling); and over the runs (the mean of the "
                                    "runs' figures with a Student t 95% interval, from three runs on: the seeds' "
                                    "spread). The verdict applies the one-run rule to both intervals and keeps the "
                                    "weaker, and says at how many runs the claim held alone; two runs give no "
                                    "verdict. A table of each stage's visual accuracy follows. Runs of one seed on "
                                    "several machines give the spread floating point adds. Prints the tables; --out "
                                    "also writes claims.md, claims.json and claims.png (a panel per claim). Nothing "
                                    "is trained or evaluated. README: \"What the mini-world run gives\".",
                        epilog="examples:\n  r1v recipe run recipes/tiny.yaml seed=1 name=tiny-s1    # and seed=2\n"
                               "  r1v recipe claims runs/tiny runs/tiny-s1 runs/tiny-s2 --out runs/claims",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="two recipe run folders or more (results.json and outputs/), each once")
    p.add_argument("--out", help="folder for claims.md, claims.json and claims.png (made if missing)")
    p.set_defaults(func=cmd_claims)
    p = rsub.add_parser("compare", help="the GRPO stage of several runs side by side, each against the first",
                        description="Compare the GRPO stage of several runs on the same held-out files: "
                                    "visual accuracy and hallucination, each run minus the first as a 95% paired "
                                    "interval, the effective-sample shares with and without the Selective Sample "
                                    "Buffer, and a plot of the effective share over steps. Writes OUT/compare.md "
                                    "and OUT/effective.png. Every stage of two runs, or of several seeds of each, "
                                    "paired item by item: `r1v eval compare --baseline RUN... --candidate RUN...`.",
                        epilog="example (make r1v2-ablation makes these runs):\n  r1v recipe compare "
                               "runs/r1v2-tiny-rules runs/r1v2-tiny-rules-ssb runs/r1v2-tiny-rm runs/r1v2-tiny "
                               "--out runs/r1v2-ablation",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders; the first is the baseline")
    p.add_argument("--out", required=True, help="folder for compare.md and effective.png")
    p.set_defaults(func=cmd_compare)

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
    p = tsub.add_parser("grpo-filter", help="R1V2's offline prompt-pool filter: drop the prompts GRPO's policy "
                                            "answers all right or all wrong",
                        description="Roll out every prompt of GRPO's pool (D_rm(grpo.tau); the first "
                                    "grpo.filter_limit in a seeded order) G times with the policy GRPO starts from, "
                                    "and keep the prompts whose answers differ: a uniform group has advantage 0 and "
                                    "teaches nothing. The rollouts go to <run>/grpo-filter/ as they finish (a rerun "
                                    "goes on from there); GRPO with grpo.filter_pool=true trains on the kept ones.",
                        epilog="example:\n  r1v train grpo-filter --config recipes/r1v2-tiny.yaml grpo.filter_limit=512"
                               + _settings(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the recipe YAML whose settings and run folder to use")
    p.add_argument("settings", nargs="*", metavar="key=value", help="override a setting")
    p.set_defaults(func=cmd_filter)
    p = tsub.add_parser("grpo-probe", help="R1V3's checkpoint choice, probed again: does it hold when the probe's "
                                           "rollouts are drawn at other seeds?",
                        description="Probe every checkpoint a finished GRPO run kept (grpo.select=entropy keeps them) "
                                    "again, on the same held-out probe prompts with the rollouts drawn at each seed, "
                                    "and make R1V3's choice from each probe: the last checkpoint unless an earlier "
                                    "one's critical-token entropy is above it with the paired interval of the gap "
                                    "above 0 (95%, Bonferroni over the earlier checkpoints). "
                                    "--config and key=value find the run; it is probed with its own settings (its "
                                    "recipe.yaml), so the run's seed reproduces its own probe. Prints a table and "
                                    "writes <run>/grpo-probe/seeds.json.",
                        epilog="examples:\n  r1v train grpo-probe --config recipes/r1v2-tiny.yaml --seeds 0,1,2,3,4,5"
                               "   # runs/r1v2-tiny\n  r1v train grpo-probe --config recipes/r1v2-tiny.yaml "
                               "out=/data/runs/mine --seeds 7"
                               + _settings(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the recipe YAML whose settings and run folder to use")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated sampling seeds of the probe's "
                                                                  "rollouts (default 0,1,2)")
    p.add_argument("settings", nargs="*", metavar="name=|out=", help="which run (as for the recipe: runs/<name>, "
                                                                       "or out=DIR); its own settings are used")
    p.set_defaults(func=cmd_probe)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(x < 0 for x in seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give seeds as non-negative integers, e.g. 0,1,2")
    return list(dict.fromkeys(seeds))


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
    ctx.check([a.stage], rerun=True)  # before anything of the finished stage is forgotten
    ctx.write_config()
    if (ctx.dir / "checkpoints" / a.stage).is_dir() and ctx.main:
        print(f"{a.stage}: starting afresh; its mid-stage checkpoints go (`r1v recipe run` would resume from them)")
    ctx.forget(a.stage)  # an explicit rerun starts the stage afresh; the stages after it are stale
    ctx.begin(a.stage)
    stage_module(a.stage).run(ctx)
    ctx.metrics.close()
    print(f"{a.stage}: done in {time.perf_counter() - t0:.0f} s -> {ctx.dir / a.stage}")
    for s, r in ctx.results["stages"].items():
        if s.split("/")[0] == a.stage and "eval" in r:
            print(f"  {s}: " + ", ".join(f"{k} {100 * v['accuracy']:.1f}%" for k, v in r["eval"].items()))
    if ctx.main:
        from r1v.train.report import write

        print(f"report: {write(ctx.dir)}")
    return 0


def cmd_compare(a) -> int:
    from r1v.train.report import compare

    print(f"wrote {compare(a.runs, a.out)}")
    return 0


def cmd_claims(a) -> int:
    import shlex
    from pathlib import Path

    from r1v.train.claims import over_runs, render, write

    if len(a.runs) < 2:
        raise R1VError(f"one run's claims open its report (`r1v recipe report {a.runs[0]}`): give two runs or more, "
                       f"e.g. the same recipe at seed=1 and seed=2")
    out = Path(a.out) if a.out else None
    for folder in ([out, *out.parents] if out is not None else []):
        if folder.exists() and not folder.is_dir():  # before anything is read or printed
            raise R1VError(f"--out {out}: {folder} is a file; give a folder for claims.md, claims.json and claims.png")
    result = over_runs(a.runs)
    command = "r1v recipe claims " + " ".join(shlex.quote(r) for r in a.runs) + (f" --out {shlex.quote(a.out)}"
                                                                                  if a.out else "")
    print(render(result, command))
    if out is not None:
        for f in write(result, out, command):
            print(f"wrote {f}")
    return 0


def cmd_filter(a) -> int:
    from r1v.train.config import load_recipe
    from r1v.train.context import Context
    from r1v.train.grpo import run_filter

    ctx = Context(load_recipe(a.config, a.settings))
    ctx.check(["grpo"], rerun=True, reward_model=False)
    ctx.write_config()
    run_filter(ctx)
    ctx.metrics.close()
    return 0


def cmd_probe(a) -> int:
    from r1v.train.config import load_recipe
    from r1v.train.context import Context
    from r1v.train.grpo import reprobe

    other = [kv for kv in a.settings if "=" in kv and kv.split("=", 1)[0] not in ("name", "out")]
    if other:
        raise R1VError(f"r1v train grpo-probe probes a run with its own settings (its recipe.yaml); name= or out= "
                       f"find the run, nothing else is taken: drop {' '.join(other)}")
    cfg = load_recipe(a.config, a.settings)
    if not (cfg.run_dir / "results.json").exists():  # before Context makes the folder
        raise R1VError(f"{cfg.run_dir} holds no recipe run: give the run's settings (name=... or out=...) after "
                       f"--config, or run the recipe first")
    if (cfg.run_dir / "recipe.yaml").exists():  # probe as the run did: its prompts, sampling and critical tokens
        cfg = load_recipe(cfg.run_dir / "recipe.yaml", [f"out={cfg.run_dir}"])
    ctx = Context(cfg)
    found = reprobe(ctx, a.seeds)
    if not ctx.main:
        return 0
    steps = sorted(next(iter(found.values()))["entropy"])
    last = steps[-1]
    pct = lambda x: "   -" if x is None else f"{100 * x:4.1f}"  # noqa: E731
    ent = lambda x: "     -" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"R1V3's probe of {ctx.dir}, by the probe's seed: critical-token entropy in nats (probe accuracy %), and "
          f"each earlier step's gap to step {last} with its interval (the rule's test)")
    for seed, f in found.items():
        print(f"seed {seed}: chosen step {f['chosen']}")
        for at in steps:
            g = f["gaps"].get(at)
            gap = (f"  gap {g['gap']:+.4f} ({g['lo']:+.4f} to {g['hi']:+.4f})" + ("  clearly above" if g["lo"] > 0
                                                                                   else "") if g and g["lo"] is not None
                   else "")
            print(f"  step {at:>6}  {ent(f['entropy'][at])} ({pct(f['accuracy'][at])}%){gap}")
    chosen = [f["chosen"] for f in found.values()]
    sel = ctx.results["stages"]["grpo"].get("selected", {})
    how = "with this test" if sel.get("test") else "by the highest entropy, before this test"
    print(f"the rule keeps step {max(set(chosen), key=chosen.count)} at {max(chosen.count(c) for c in chosen)} of "
          f"{len(chosen)} seeds; the run itself chose step {sel.get('step')} ({how}); "
          f"-> {ctx.dir / 'grpo-probe' / 'seeds.json'}")
    return 0


def cmd_report(a) -> int:
    from pathlib import Path

    from r1v.train.report import write

    if not (Path(a.run) / "results.json").exists():
        raise R1VError(f"{a.run} holds no results.json: not a recipe run folder")
    print(f"wrote {write(a.run)}")
    return 0
