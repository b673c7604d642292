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
* D (sft.jsonl) is distilled as AL-CoTD distils: the reasoning LM (the teacher) reads the scene
  stated in words and writes its chain; a chain whose answer is wrong is *revised* (AL-CoTD's judge
  rewrites it; here the problem's reference chain stands in for the judge) and marked `revised`.
  The reward model then scores every final chain 0..5 (the rubric in `rewards.py`): a right answer
  reached through false facts keeps a low score, which D_rm(tau) filters out. Each row also keeps
  the reference chain (`reference`), which E_{t-1} trains on. Until `r1v distill` lands, this is
  the recipe's distillation. (Measured: projector-only SFT on revised chains beats SFT on the
  teacher's raw chains, wrong ones included, by far; the paper's D is judge-checked too.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from r1v.world.data import from_row, read_jsonl, target
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
    return json.loads(marker.read_text())


def _prepare(ctx) -> None:
    out = ctx.dir / "data"
    marker = out / "done.json"
    out.mkdir(parents=True, exist_ok=True)
    world = ctx.world
    src = world / "data"
    train = read_jsonl(src / "visual-train.jsonl")
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
    sft = distil(ctx, train)

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
        "teacher_accuracy": round(sum(r["teacher_correct"] for r in sft) / len(sft), 4),
        "score_histogram": {str(k): scores.count(k) for k in range(6)}}
    ctx.save_results()
    marker.write_text(json.dumps(paths))


def distil(ctx, rows: list[dict]) -> list[dict]:
    """The reasoning LM's chain for every problem, asked in words; scored 0..5 by the rubric."""
    from transformers import AutoModelForCausalLM

    from r1v.model.tokenizer import load_tokenizer
    from r1v.train.rewards import rubric_score
    from r1v.world.lm import chat_prompt, generate

    teacher_dir = ctx.resolve(ctx.cfg.model.reasoning)
    tok = load_tokenizer(teacher_dir)
    lm = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    task = ctx.task
    items = [task.read_row({**r, "image": None, "context": describe(from_row(r))}) for r in rows]
    outs = generate(lm, tok, [chat_prompt(tok, task.prompt(it)) for it in items], max_new_tokens=96)
    sft = []
    for r, it, o in zip(rows, items, outs):
        ok = task.score(it, o).correct
        reference = target(r, "reasoning")
        response = o if ok else reference
        sft.append({**r, "response": response, "reference": reference, "teacher_correct": ok, "revised": not ok,
                    "score": rubric_score(response, reference=r["reasoning"], correct=True)})
    return sft


def _write(path: Path, rows: list[dict]) -> str:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return str(path)
