"""The mini-world's stage data, prepared from a built world (`r1v world build`) into `runs/<name>/data/`.

Every file is rows in the `world` task's format plus `response` (the target after `<think>\\n`):

* align-full.jsonl: every visual training problem twice, as a caption ("Describe the picture." ->
  "</think>\\n{the scene in words}") and as its question answered directly ("</think>\\n\\boxed{5}",
  the substitute's style);
* align-filtered.jsonl: `filtered_share` of align-full (seeded);
* align-cot.jsonl: `cot_share` of the problems with their reference chain (" red shapes 3. ...</think>...");
* sft.jsonl (D): every visual training problem with the reasoning LM's chain, distilled from the
  problem stated in words.

Decisions, where the paper's data do not exist in miniature:
* Captions carry the most signal per sample for a projector (every object of the scene is a
  target token), as the paper's 2M general samples do; the questions teach the answer format.
* The paper's pass 2 filters 2M samples down to 200K by quality; the mini-world's are exact, so
  the filter has nothing to remove and pass 2 is a seeded subset of the same share.
* D (sft.jsonl) is distilled by AL-CoTD (`r1v.distill`, settings under `distill:`), from the
  reasoning LM (the teacher) reading the scene in words (`caption`): each problem's QDAM / VTIA
  scores (the rules; its `steps` as difficulty in tiny.yaml) set its repetition penalty, the
  teacher writes its chain at that penalty, a wrong chain is regenerated with the answer as a
  hint and then replaced by the problem's reference chain (the judge's revision, in miniature),
  and every kept chain is scored 0..5 (`score`, which `sft.reward_model=field` reads). The run's
  records, summary and plots are in `data/distill/`. Each row also keeps the reference chain
  (`reference`), which E_{t-1} trains on. (Measured: projector-only SFT on revised chains beats
  SFT on the teacher's raw chains, wrong ones included, by far; the paper's D is judge-checked too.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import read_jsonl, write_jsonl
from r1v.world.data import from_row, target
from r1v.world.scenes import describe

FILES = ("align_full", "align_filtered", "align_cot", "sft", "eval_visual", "eval_text")
CAPTION = "Describe the picture."


def prepare(ctx) -> dict[str, str]:
    """The data files of a mini-world run (made once; reused while `data/done.json` exists)."""
    marker = ctx.dir / "data" / "done.json"
    ctx.world  # built (or found) by every process together: its barrier must not pair with the one below
    if ctx.main and not marker.exists():  # the main process writes the files; the others wait for them
        _prepare(ctx)
    ctx.state.wait_for_everyone()
    made = json.loads(marker.read_text())
    if made.pop("settings", None) != _settings(ctx):
        raise R1VError(f"{marker.parent} was made with other data or distill settings; start the run again "
                       f"(r1v recipe run ... --restart, or another name=...), or delete {marker.parent} to "
                       f"remake only the data")
    return made


def _settings(ctx) -> dict:
    """What the prepared files depend on, besides the world (its own build checks its settings)."""
    import dataclasses

    from r1v.distill.run import SAME_RUN

    d = ctx.cfg.data
    return {"seed": ctx.cfg.seed, "filtered_share": d.filtered_share, "cot_share": d.cot_share,
            "distill": {k: v for k, v in dataclasses.asdict(ctx.cfg.distill).items() if k in SAME_RUN}}


def _prepare(ctx) -> None:
    out = ctx.dir / "data"
    marker = out / "done.json"
    out.mkdir(parents=True, exist_ok=True)
    world = ctx.world
    src = world / "data"
    train = read_jsonl(src / "visual-train.jsonl")
    sft, summary = distil(ctx, train, src)
    for r in train:
        r["image"] = str((src / r["image"]).resolve())  # rows move to another folder
    rng = random.Random(ctx.cfg.seed)

    full = []
    for r in train:
        scene = describe(from_row(r))
        full.append({**r, "id": r["id"] + "-caption", "question": CAPTION, "choices": None, "answer": scene,
                     "response": f"</think>\n{scene}"})
        full.append({**r, "response": target(r, "direct")})
    filtered = rng.sample(full, max(1, int(ctx.cfg.data.filtered_share * len(full))))
    cot = [{**r, "response": target(r, "reasoning")} for r in
           rng.sample(train, max(1, int(ctx.cfg.data.cot_share * len(train))))]

    paths = {"align_full": _write(out / "align-full.jsonl", full),
             "align_filtered": _write(out / "align-filtered.jsonl", filtered),
             "align_cot": _write(out / "align-cot.jsonl", cot),
             "sft": _write(out / "sft.jsonl", sft),
             "eval_visual": str(src / "visual-test.jsonl"), "eval_text": str(src / "text-test.jsonl")}
    scores = [r["score"] for r in sft]
    world_scores = json.loads((world / "world.json").read_text()).get("scores", {})
    ctx.results["world"] = {k: world_scores[k] for k in ("reasoning_text", "reasoning_picture", "substitute_text",
                                                         "substitute_picture", "reasoning_blind") if k in world_scores}
    ctx.results["data"] = {
        "align_full": len(full), "align_filtered": len(filtered), "align_cot": len(cot), "sft": len(sft),
        "teacher_accuracy": summary["teacher_accuracy"], "score_histogram": {str(k): scores.count(k) for k in range(6)},
        "distill": {k: summary[k] for k in ("verdicts", "penalty", "teacher_length", "final_length", "unit",
                                            "by_difficulty")}}
    ctx.save_results()
    marker.write_text(json.dumps({**paths, "settings": _settings(ctx)}))


def distil(ctx, rows: list[dict], root: Path, *, cfg=None, out: Path | None = None) -> tuple[list[dict], dict]:
    """D by AL-CoTD: the reasoning LM's chains at each problem's penalty, asked in words
    (`cfg`: the recipe's `distill:` settings unless given; `out`: data/distill/ unless given)."""
    from r1v.distill.models import open_model
    from r1v.distill.run import distill

    cfg = cfg or ctx.cfg.distill
    opts = dict(resolve=ctx.resolve, batch_size=cfg.batch_size, concurrency=cfg.concurrency, rpm=cfg.rpm or None,
                timeout=cfg.timeout, retries=cfg.retries)
    teacher = open_model(cfg.teacher or ctx.cfg.model.reasoning, **opts)
    judge = open_model(cfg.judge, **opts) if cfg.judge else None
    asked = [{**r, "caption": describe(from_row(r))} for r in rows]
    out = out or ctx.dir / "data" / "distill"
    summary = distill(asked, cfg, out, task=ctx.task, teacher=teacher, judge=judge, root=root)
    sft = []
    for r in read_jsonl(out / "data.jsonl"):
        r.pop("caption")
        sft.append({**r, "reference": target(r, "reasoning"), "revised": r["verdict"] != "kept"})
    return sft, summary


def _write(path: Path, rows: list[dict]) -> str:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return str(path)
