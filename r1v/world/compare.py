"""AL-CoTD beside fixed-penalty distillation on the mini-world: the data, and a model trained on each.

    r1v world compare --config recipes/tiny.yaml [--fixed 1.0,2.0]   # ~18 minutes on 2 CPU cores (--fixed 1.0: ~12)
    r1v world compare --config recipes/tiny.yaml --iterations 0     # M0 alone: ~5 minutes

For each arm (AL-CoTD with `r1v world data`'s `distill.*` settings, then every fixed penalty), the same
teacher distils the same training problems (`r1v.distill.run`, into `<run>/distill-compare/<arm>/`),
and the recipe's own SFT stage trains on the result, M0 and then its iterations (D_rm(tau) and the
previous model's mistakes, all from that arm's D), from the recipe's transfer checkpoint, in a run
folder of the arm's own (`<arm>/run/`, with its report; align and transfer run first when the
recipe's run folder lacks them). The last model answers the held-out visual problems greedily.
Reported per arm: accuracy (with a paired 95% interval against AL-CoTD) and mean reasoning tokens on
easy and hard items, at the last iteration and at each one. The run's own report.md, when it has one, is
written again, as its AL-CoTD claim reads these arms. Easy: the lowest difficulty label (the
world's `steps`: one computation); hard: the median label and above. The paper's claim is shorter
chains on easy items with no loss of accuracy; the paper trains every SFT iteration on AL-CoTD's data,
so the claim is on the last model, and M0 alone (`--iterations 0`) is the quick look.

Beside the greedy lengths, each model (and the transfer checkpoint they all start from) is asked how
likely it is to stop where the world's own chain stops: p(`</think>`) right after that chain,
teacher-forced. The reasoning LLM stays frozen, so its habit of going over its work again can only be
moved through the projector; greedy decoding turns the move into shorter answers only on the items
where it carries that probability past the other continuations (docs/mini-world-r1v2.md, "AL-CoTD on the
mini-world").

Every arm's result is saved when it is finished, and an arm stopped midway resumes its SFT from the last
finished iteration in its run folder (or a mid-stage checkpoint), so an interrupted comparison loses
minutes, not arms.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from pathlib import Path

import torch

from r1v.errors import R1VError
from r1v.io import write_atomic
from r1v.model.templates import THINK_CLOSE
from r1v.stats import paired_interval, pct, points


# An arm's result.json holds these since the arms go through every SFT iteration; one made before is redone.
RESULT_FIELDS = ("by_iteration", "stop")


def compare(cfg, world: Path, data_cfg, fixed: list[float], iterations: int | None = None) -> Path:
    """`cfg`: the recipe (its SFT settings, held-out files, run folder); `data_cfg`: the world data
    step's settings (`r1v.world.prepare.DataSettings`), whose D is the AL-CoTD arm. Each arm's D goes
    through the recipe's SFT stage up to M_`iterations` (default: all of `sft.taus`; 0: M0 alone)."""
    from r1v.train.context import Context
    from r1v.train.recipe import refresh, stage_module

    if not fixed:
        raise R1VError("name at least one fixed penalty to compare with (--fixed 1.0)")
    T = len(cfg.sft.taus) if iterations is None else iterations
    if not 0 <= T <= len(cfg.sft.taus):
        raise R1VError(f"--iterations {iterations}: the recipe has {len(cfg.sft.taus)} SFT iterations after M0 "
                       f"(sft.taus); give 0 to {len(cfg.sft.taus)}")
    ctx = Context(cfg)
    for note in refresh(ctx, ("align", "transfer")):
        print(note)
    ctx.write_config()
    for stage in ("align", "transfer"):
        if not ctx.done(stage):
            print(f"{stage} (the comparison starts from the transfer checkpoint) ...")
            ctx.begin(stage)
            stage_module(stage).run(ctx)
    out = ctx.dir / "distill-compare"
    out.mkdir(exist_ok=True)
    base = data_cfg.distill
    arms = {"AL-CoTD": dataclasses.replace(base, penalty="adaptive")}
    for p in fixed:
        arms[f"fixed P={p:g}"] = dataclasses.replace(base, penalty="fixed", fixed_penalty=p)
    from r1v.io import content_digest, folder_files

    # the transfer model the arms start from, the problems they distil, the held-out file they are scored on
    made = [ctx.results["stages"]["transfer"].get("made"),
            content_digest(folder_files(world / "data" / "visual-train.jsonl")),
            content_digest(folder_files(ctx.data_file("eval_visual")))]
    model, tok = ctx.load("transfer")
    start = stop_after_chain(ctx, model, tok, base.difficulty_field)
    del model
    results = {}
    for name, dcfg in arms.items():
        path = out / _slug(name) / "result.json"
        key = _fingerprint(cfg, dcfg, made, T)
        old = json.loads(path.read_text()) if path.exists() else {}
        if old.get("settings") != key:  # missing, or made with other settings: (re)done
            print(f"{name}: distil, then the recipe's SFT to M{T} ...")
            result = {**_arm(ctx, world, dcfg, out / _slug(name), T), "settings": key}
            write_atomic(path, json.dumps(result, indent=1))
        results[name] = json.loads(path.read_text())
        r = results[name]
        print(f"  {name}: M{T} accuracy {100 * r['accuracy']:.1f}%, reasoning tokens easy {r['easy']['tokens']} / "
              f"hard {r['hard']['tokens']}")
    path = write(out, results, base.difficulty_field, start)
    if (ctx.dir / "report.md").exists():  # the run's own report: its AL-CoTD claim reads these arms
        from r1v.train.report import write as write_report

        write_report(ctx.dir)
    return path


def _fingerprint(cfg, dcfg, made: list, iterations: int) -> str:
    """What an arm's result depends on: its distillation, the SFT stage's settings (less the speed-only
    ones, as for the recipe's own stages) and iterations, the held-out scoring, and `made`: the transfer
    stage's making and the content of the problems and held-out rows."""
    import hashlib

    from r1v.train.context import SPEED_ONLY
    from r1v.train.loop import _flat

    sft = {k: v for k, v in _flat(dataclasses.asdict(cfg.sft), "sft.").items() if k.split(".")[-1] not in SPEED_ONLY}
    parts = [dataclasses.asdict(dcfg), sft, dataclasses.asdict(cfg.eval)]
    parts += [cfg.seed, cfg.data.eval_limit, iterations, made, RESULT_FIELDS]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _arm(ctx, world: Path, dcfg, folder: Path, iterations: int) -> dict:
    """Distil the arm's D, train on it with the recipe's own SFT stage (M0, then `iterations` rounds)
    from the run's transfer checkpoint, in a run folder of its own (`<arm>/run/`, with its report),
    and read the held-out outputs of every iteration."""
    from r1v.io import read_jsonl, write_jsonl
    from r1v.model.checkpoint import load_model
    from r1v.train import recipe
    from r1v.world.prepare import distil

    d, summary = distil(world, read_jsonl(world / "data" / "visual-train.jsonl"), dcfg, folder, log=print)
    data = write_jsonl(folder / "sft.jsonl", d)
    sub = _arm_run(ctx, folder / "run", data, iterations)
    recipe.run(sub, log=print)
    run = sub.run_dir
    held_rows = ctx.rows("eval_visual")
    n = min(len(held_rows), ctx.cfg.data.eval_limit) if ctx.cfg.data.eval_limit else len(held_rows)
    labels = [_label(held_rows[i], dcfg.difficulty_field) for i in range(n)]
    easy, hard = _bands(labels)
    model, tok, _ = load_model(run / "sft" / f"m{iterations}", dtype=ctx.dtype)
    by_iteration = {}
    for t in range(iterations + 1):  # the last iteration's outputs, right/wrong and lengths are the arm's
        outs = read_jsonl(run / "outputs" / f"sft-m{t}-visual.jsonl")
        correct = [bool(o["correct"]) for o in outs]
        tokens = [len(tok(o["output"].partition(THINK_CLOSE)[0], add_special_tokens=False)["input_ids"])
                  for o in outs]
        by_iteration[f"m{t}"] = {"accuracy": round(sum(correct) / len(correct), 4),
                                 "easy": _cell([i for i, x in enumerate(labels) if x in easy], correct, tokens),
                                 "hard": _cell([i for i, x in enumerate(labels) if x in hard], correct, tokens)}
    model.eval()
    stop = stop_after_chain(ctx, model, tok, dcfg.difficulty_field)
    by = {}
    for lab in sorted(set(labels)):
        by[str(lab)] = _cell([i for i, x in enumerate(labels) if x == lab], correct, tokens)
    last = by_iteration[f"m{iterations}"]
    return {
        "model": f"sft/m{iterations}", "accuracy": last["accuracy"], "n": len(correct),
        "easy": last["easy"], "hard": last["hard"], "by_iteration": by_iteration,
        "by_difficulty": by, "correct": {o["id"]: bool(o["correct"]) for o in outs}, "stop": stop,
        "data": {k: summary[k] for k in ("verdicts", "penalty", "teacher_accuracy", "teacher_length", "final_length",
                                         "by_difficulty", "unit", "difficulty_axis")},
    }


def _arm_run(ctx, folder: Path, data: Path, iterations: int):
    """The recipe for an arm's own run folder: its D as `data.sft`, SFT to M_`iterations`, and the
    comparison's align and transfer stages, linked in as finished (the arms all start from them)."""
    import os

    cfg = ctx.cfg
    sub = dataclasses.replace(
        cfg, name=f"{cfg.name}-{folder.parent.name}", out=str(folder), stages=["align", "transfer", "sft"],
        data=dataclasses.replace(cfg.data, sft=str(data)),
        sft=dataclasses.replace(cfg.sft, taus=cfg.sft.taus[:iterations], lrs=cfg.sft.lrs[:iterations]))
    folder.mkdir(parents=True, exist_ok=True)
    for stage in ("align", "transfer"):
        link = folder / stage
        if link.is_symlink() or link.exists():
            if link.resolve() == (ctx.dir / stage).resolve():
                continue
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        os.symlink((ctx.dir / stage).resolve(), link, target_is_directory=True)
    mine = folder / "results.json"
    old = json.loads(mine.read_text()) if mine.exists() else {"stages": {}, "done": [], "data": {}}
    for stage in ("align", "transfer"):  # as the comparison's run made them; its later stages are its own
        old["stages"][stage] = ctx.results["stages"][stage]
    old["done"] = ["align", "transfer"] + [s for s in old["done"] if s not in ("align", "transfer")]
    write_atomic(mine, json.dumps(old, indent=1))
    return sub


@torch.no_grad()
def stop_after_chain(ctx, model, tok, field: str, *, batch: int = 64) -> dict:
    """p(`</think>`) right after the world's own chain for each held-out visual problem, teacher-forced
    (the task's `reference`: the chain, then `</think>` and the boxed answer): how likely `model` is to
    stop where the short chain stops rather than go on. Mean and share above 1/2, on the easy and the
    hard items (`_bands` of the rows' difficulty labels, `field`)."""
    from r1v.train.grpo import completion_logprobs
    from r1v.train.samples import Encoder

    rows = ctx.rows("eval_visual")
    n = min(len(rows), ctx.cfg.data.eval_limit) if ctx.cfg.data.eval_limit else len(rows)
    labels = [_label(rows[i], field) for i in range(n)]
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    close = tok.convert_tokens_to_ids(THINK_CLOSE)
    p = []
    for k in range(0, n, batch):
        items = [ctx.task.read_row(rows[i], root=rows.root(i)) for i in range(k, min(n, k + batch))]
        s = enc.encode_many(items, [ctx.task.prompt(it) for it in items], [ctx.task.reference(it) for it in items])
        lp, _ = completion_logprobs(model, prompts=s, completions=[x.response for x in s], group=1,
                                    pad_id=tok.pad_token_id)
        p += [float(lp[j, x.response.index(close)].exp()) for j, x in enumerate(s)]
    easy, hard = _bands(labels)

    def cell(band):
        xs = [q for q, lab in zip(p, labels) if lab in band]
        return {"n": len(xs), "p": round(statistics.fmean(xs), 4) if xs else None,
                "above_half": round(sum(q > 0.5 for q in xs) / len(xs), 4) if xs else None}

    return {"easy": cell(easy), "hard": cell(hard)}


def _label(row: dict, field: str) -> float:
    from r1v.distill.scores import label_difficulty

    v = label_difficulty(row, field)
    return 0.0 if v is None else v


def _bands(labels: list[float]) -> tuple[set, set]:
    """Easy: the lowest label; hard: the median label and above."""
    ordered = sorted(labels)
    return {ordered[0]}, {x for x in labels if x >= ordered[len(ordered) // 2]}


def _data_bands(by: dict) -> tuple[float | None, float | None]:
    """Mean kept-chain length on easy and hard training items (as `_bands` splits them), weighted by
    the kept chains' count. `by` is a summary's by-difficulty table, in difficulty order."""
    labels = list(by)
    items = [lab for lab in labels for _ in range(by[lab]["n"])]
    if not items:
        return None, None
    hard = labels[labels.index(items[len(items) // 2]):]

    def mean(labs):
        cells = [by[x] for x in labs if by[x]["final_length"] is not None]
        n = sum(c["kept"] for c in cells)
        return sum(c["final_length"] * c["kept"] for c in cells) / n if n else None

    return mean(labels[:1]), mean(hard)


def _cell(idx: list[int], correct: list[bool], tokens: list[int]) -> dict:
    if not idx:
        return {"n": 0, "accuracy": None, "tokens": None}
    return {"n": len(idx), "accuracy": round(sum(correct[i] for i in idx) / len(idx), 4),
            "tokens": round(statistics.fmean(tokens[i] for i in idx), 1)}


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("=", "").replace("/", "-")


def write(out: Path, results: dict, field: str, start: dict) -> Path:
    from r1v.distill.report import plot

    base = results["AL-CoTD"]
    lines = ["# AL-CoTD beside fixed-penalty distillation (mini-world)", "",
             "Same teacher, same training problems; the recipe's SFT trained on each arm's data from the same transfer "
             f"checkpoint, to {base['model']} (the table's model); {base['n']} held-out visual problems, greedy. "
             f"Easy: the lowest difficulty label ({field}); hard: the median label and above. Reasoning tokens: "
             "what the model writes before `</think>`. p(stop): the "
             "model's probability of `</think>` right after the world's own chain, teacher-forced (mean; in brackets "
             "the share of items above 1/2); the transfer checkpoint the arms start from: easy "
             f"{_stop(start['easy'])}, hard {_stop(start['hard'])}. The LLM is frozen: only the projector can move it.",
             "",
             "| arm | data: mean P | teacher right | kept chains (easy / hard tokens) | model accuracy | vs AL-CoTD "
             "(paired 95%) | model tokens, easy | model tokens, hard | accuracy easy / hard | p(stop), easy | "
             "p(stop), hard |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        d = r["data"]
        kept_easy, kept_hard = _data_bands(d["by_difficulty"])
        gap = "" if name == "AL-CoTD" else _gap(paired_interval(base["correct"], r["correct"]))
        lines.append(f"| {name} | {d['penalty']['mean']:.2f} | {100 * d['teacher_accuracy']:.1f}% | "
                     f"{_num(kept_easy)} / {_num(kept_hard)} | {100 * r['accuracy']:.1f}% | {gap} | "
                     f"{r['easy']['tokens']} | {r['hard']['tokens']} | {pct(r['easy']['accuracy'])} / "
                     f"{pct(r['hard']['accuracy'])} | {_stop(r['stop']['easy'])} | {_stop(r['stop']['hard'])} |")
    its = list(base["by_iteration"])
    lines += ["", "By SFT iteration (accuracy; mean reasoning tokens on easy / hard items):", "",
              "| arm | " + " | ".join(its) + " |", "|---|" + "---|" * len(its)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{pct(c['accuracy'])}; {c['easy']['tokens']} / {c['hard']['tokens']}"
                                                 for c in r["by_iteration"].values()) + " |")
    lines += ["", f"By difficulty label ({base['model']}: accuracy, mean reasoning tokens):", "",
              "| arm | " + " | ".join(base["by_difficulty"]) + " |", "|---|" + "---|" * len(base["by_difficulty"])]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{pct(c['accuracy'])}, {c['tokens']}"
                                                 for c in r["by_difficulty"].values()) + " |")
    lines += ["", "![data: P and length](data.png)", "", "![models](models.png)", ""]
    plot(next(iter(results.values()))["data"], out / "data.png", arms={k: v["data"] for k, v in results.items()})
    _plot_models(results, out / "models.png")
    write_atomic(out / "report.md", "\n".join(lines))
    arms = {k: {x: y for x, y in v.items() if x != "correct"} for k, v in results.items()}
    write_atomic(out / "results.json", json.dumps({**arms, "transfer (start)": {"stop": start}}, indent=1))
    return out / "report.md"


def _num(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _stop(c: dict | None) -> str:
    if not c or c.get("p") is None:
        return "-"
    return f"{c['p']:.3f} ({100 * c['above_half']:.0f}%)"


def _gap(g: dict | None) -> str:
    if g is None:
        return "-"
    return points(g, unit="")


def _plot_models(results: dict, path: Path) -> None:
    import matplotlib

    from r1v.distill.report import save

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 3.8))
    for name, r in results.items():
        xs = list(r["by_difficulty"])
        a.plot(xs, [100 * r["by_difficulty"][x]["accuracy"] for x in xs], marker="o", label=name)
        b.plot(xs, [r["by_difficulty"][x]["tokens"] for x in xs], marker="o", label=name)
        its = list(r["by_iteration"])
        c.plot(its, [r["by_iteration"][t]["easy"]["tokens"] for t in its], marker="o", label=name)
    model = next(iter(results.values()))["model"]
    a.set(xlabel="difficulty label", ylabel="held-out accuracy (%)", title=f"{model} trained on each arm's data")
    b.set(xlabel="difficulty label", ylabel="reasoning tokens", title="what it writes before </think>")
    c.set(xlabel="SFT iteration", ylabel="reasoning tokens, easy items", title="easy items, iteration by iteration")
    save(fig, (a, b, c), path)
