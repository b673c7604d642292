"""AL-CoTD beside fixed-penalty distillation on the mini-world: the data, and a model trained on each.

    r1v world compare --config recipes/tiny.yaml [--fixed 1.0,2.0]      # ~5 minutes on 2 CPU cores

For each arm (AL-CoTD with `r1v world data`'s `distill.*` settings, then every fixed penalty), the same
teacher distils the same training problems (`r1v.distill.run`, into `<run>/distill-compare/<arm>/`),
M0 is trained on the result from the recipe's transfer checkpoint with the recipe's M0 settings
(`sft.optim`; align and transfer run first when the run folder lacks them), and the model answers
the held-out visual problems greedily. Reported per arm: accuracy (with a paired 95% interval
against AL-CoTD) and mean reasoning tokens on easy and hard items. Easy: the lowest difficulty
label (the world's `steps`: one computation); hard: the median label and above. The paper's claim
is shorter chains on easy items with no loss of accuracy.

Every arm's result is saved when it is finished, so an interrupted comparison resumes.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import write_atomic
from r1v.model.templates import THINK_CLOSE


def compare(cfg, world: Path, data_cfg, fixed: list[float]) -> Path:
    """`cfg`: the recipe (its M0 settings, held-out files, run folder); `data_cfg`: the world data
    step's settings (`r1v.world.prepare.DataSettings`), whose D is the AL-CoTD arm."""
    from r1v.train.context import Context
    from r1v.train.recipe import refresh, stage_module

    if not fixed:
        raise R1VError("name at least one fixed penalty to compare with (--fixed 1.0)")
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
    results = {}
    for name, dcfg in arms.items():
        path = out / _slug(name) / "result.json"
        key = _fingerprint(cfg, dcfg, made)
        old = json.loads(path.read_text()) if path.exists() else {}
        if old.get("settings") != key:  # missing, or made with other settings: (re)done
            print(f"{name}: distil, train M0, score ...")
            result = {**_arm(ctx, world, dcfg, out / _slug(name)), "settings": key}
            write_atomic(path, json.dumps(result, indent=1))
        results[name] = json.loads(path.read_text())
        r = results[name]
        print(f"  {name}: accuracy {100 * r['accuracy']:.1f}%, reasoning tokens easy {r['easy']['tokens']} / hard "
              f"{r['hard']['tokens']}")
    return write(out, results, base.difficulty_field)


def _fingerprint(cfg, dcfg, made: list) -> str:
    """What an arm's result depends on: its distillation, M0's training, the held-out scoring, and
    `made`: the transfer stage's making and the content of the problems and held-out rows."""
    import hashlib

    parts = [dataclasses.asdict(x) for x in (dcfg, cfg.sft.optim, cfg.sft.parts, cfg.eval)]
    parts += [cfg.seed, cfg.data.eval_limit, cfg.sft.pack, cfg.sft.pack_length, made]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _arm(ctx, world: Path, dcfg, folder: Path) -> dict:
    from r1v.io import read_jsonl, write_jsonl
    from r1v.train.data import Encoded, Rows
    from r1v.train.engine import Engine
    from r1v.train.loop import supervised
    from r1v.train.rollout import score
    from r1v.train.samples import Encoder
    from r1v.world.prepare import distil

    d, summary = distil(world, read_jsonl(world / "data" / "visual-train.jsonl"), dcfg, folder, log=print)
    model, tok = ctx.load("transfer")
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    sft = ctx.cfg.sft
    engine = Engine(model, sft.parts, weight_decay=sft.optim.weight_decay,
                    max_grad_norm=sft.optim.max_grad_norm)
    train = Encoded(Rows(write_jsonl(folder / "sft.jsonl", d), need=("id", "response")), ctx.task, enc)
    cache = ctx.feature_cache(f"compare-{folder.name}") if sft.cache_features and not sft.parts.vision else None
    supervised(engine, train, sft.optim, lr=sft.optim.lr, pad_id=tok.pad_token_id, seed=ctx.cfg.seed, cache=cache,
               pack_rows=sft.pack, pack_length=sft.pack_length, workers=ctx.workers, name=f"{folder.name}: M0")
    held_rows = ctx.rows("eval_visual")
    n = min(len(held_rows), ctx.cfg.data.eval_limit) if ctx.cfg.data.eval_limit else len(held_rows)
    with engine.generating() as m:
        scored = score(ctx.task, m, tok, ctx.stream(ctx.data("eval_visual", enc, field=""), range(n),
                                                    ctx.cfg.eval.batch_size),
                       n=n, stop_id=enc.stop_id, max_new_tokens=ctx.cfg.eval.max_new_tokens,
                       desc=f"{folder.name}: visual test")
    held = [held_rows[i] for i in range(n)]
    tokens = [len(tok(t.partition(THINK_CLOSE)[0], add_special_tokens=False)["input_ids"]) for t in scored.outputs]
    labels = [_label(r, dcfg.difficulty_field) for r in held]
    easy, hard = _bands(labels)
    by = {}
    for lab in sorted(set(labels)):
        idx = [i for i, x in enumerate(labels) if x == lab]
        by[str(lab)] = _cell(idx, scored.correct, tokens)
    return {
        "accuracy": round(scored.accuracy, 4), "n": scored.n,
        "easy": _cell([i for i, x in enumerate(labels) if x in easy], scored.correct, tokens),
        "hard": _cell([i for i, x in enumerate(labels) if x in hard], scored.correct, tokens),
        "by_difficulty": by, "correct": dict(zip(scored.ids, scored.correct)),
        "data": {k: summary[k] for k in ("verdicts", "penalty", "teacher_accuracy", "teacher_length", "final_length",
                                         "by_difficulty", "unit", "difficulty_axis")},
    }


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


def write(out: Path, results: dict, field: str) -> Path:
    from r1v.distill.report import plot
    from r1v.stats import paired_interval

    base = results["AL-CoTD"]
    lines = ["# AL-CoTD beside fixed-penalty distillation (mini-world)", "",
             "Same teacher, same training problems; M0 trained on each arm's data from the same transfer checkpoint; "
             f"{base['n']} held-out visual problems, greedy. Easy: the lowest difficulty label ({field}); hard: the "
             "median label and above. Reasoning tokens: what the model writes before `</think>`.", "",
             "| arm | data: mean P | teacher right | kept chains (easy / hard tokens) | model accuracy | vs AL-CoTD "
             "(paired 95%) | model tokens, easy | model tokens, hard | accuracy easy / hard |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        d = r["data"]
        kept_easy, kept_hard = _data_bands(d["by_difficulty"])
        gap = "" if name == "AL-CoTD" else _gap(paired_interval(base["correct"], r["correct"]))
        lines.append(f"| {name} | {d['penalty']['mean']:.2f} | {100 * d['teacher_accuracy']:.1f}% | "
                     f"{_num(kept_easy)} / {_num(kept_hard)} | {100 * r['accuracy']:.1f}% | {gap} | "
                     f"{r['easy']['tokens']} | {r['hard']['tokens']} | {_pct(r['easy']['accuracy'])} / "
                     f"{_pct(r['hard']['accuracy'])} |")
    lines += ["", "By difficulty label (model accuracy, mean reasoning tokens):", "",
              "| arm | " + " | ".join(base["by_difficulty"]) + " |", "|---|" + "---|" * len(base["by_difficulty"])]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{_pct(c['accuracy'])}, {c['tokens']}"
                                                 for c in r["by_difficulty"].values()) + " |")
    lines += ["", "![data: P and length](data.png)", "", "![models](models.png)", ""]
    plot(next(iter(results.values()))["data"], out / "data.png", arms={k: v["data"] for k, v in results.items()})
    _plot_models(results, out / "models.png")
    write_atomic(out / "report.md", "\n".join(lines))
    write_atomic(out / "results.json", json.dumps({k: {x: y for x, y in v.items() if x != "correct"}
                                                    for k, v in results.items()}, indent=1))
    return out / "report.md"


def _num(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _gap(g: dict | None) -> str:
    if g is None:
        return "-"
    return f"{100 * g['gap']:+.1f} ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f})"


def _plot_models(results: dict, path: Path) -> None:
    import matplotlib

    from r1v.distill.report import save

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, r in results.items():
        xs = list(r["by_difficulty"])
        a.plot(xs, [100 * r["by_difficulty"][x]["accuracy"] for x in xs], marker="o", label=name)
        b.plot(xs, [r["by_difficulty"][x]["tokens"] for x in xs], marker="o", label=name)
    a.set(xlabel="difficulty label", ylabel="held-out accuracy (%)", title="model trained on each arm's data")
    b.set(xlabel="difficulty label", ylabel="reasoning tokens", title="what the model writes before </think>")
    save(fig, (a, b), path)
