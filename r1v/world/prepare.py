"""`r1v world data`: the mini-world's training files for the R1V recipe, made from a built world.

    r1v world build                      # backbones and problem files (~/.cache/r1v/world)
    r1v world data                       # -> ~/.cache/r1v/world/recipe/ (this module)
    r1v recipe run recipes/tiny.yaml     # names the backbones and these files

Files (rows in the `world` task's format plus `response`, the target after `<think>\\n`):

* align-full.jsonl: every visual training problem, its question answered in the substitute's style,
  the work stated briefly after an empty think block ("</think>\\nred shapes 3. ... 3 + 2 = 5.\\n\\boxed{5}");
  with `captions`, each also as a caption ("Describe the picture." -> "</think>\\n{the scene in words}");
* align-filtered.jsonl: `filtered_share` of align-full (seeded);
* align-cot.jsonl: `cot_share` of the problems with their reference chain (" red shapes 3. ...</think>...");
* sft.jsonl (D): every visual training problem with the reasoning LM's chain, distilled by
  AL-CoTD (`r1v distill`'s code, its records, summary and plots in `distill/`);
* reference-scores.json: what the world's backbones allow (shown in the recipe's report);
* rm-train.jsonl, rm-eval.jsonl: preference pairs for R1V2's reward model (`r1v/world/pairs.py`:
  the right chain against a wrong answer, a false visual fact, a broken format), from the visual
  training and validation problems. Made on their own when missing, so a world prepared before
  they existed gains them without remaking D.

Decisions, where the paper's data do not exist in miniature:
* No captions by default, unlike the paper's general data. A real instruct LLM can describe a scene
  it reads in words; the world's substitute never learned to (its pretraining states scenes only in
  prompts), so a caption target can be met only by a projector that speaks some code of its own to
  the LLM, not the picture words the LLM reads. Measured (`r1v recipe run recipes/tiny.yaml
  stages=[align]`, the same 250 steps of the full pass): captions plus questions 20.5% visual, the
  questions alone twice 40.2%; `r1v world probe` on the captioned projector found 0-15% of occupied
  cells nearest their own picture word. Questions train the projector through what the LLM does read.
* The paper's pass 2 filters 2M samples down to 200K by quality; the mini-world's are exact, so
  the filter has nothing to remove and pass 2 is a seeded subset of the same share.
* D is distilled from the reasoning LM (the teacher) reading the scene in words (`caption`): each
  problem's QDAM / VTIA scores (the rules; its `steps` as difficulty) set its repetition penalty,
  the teacher writes its chain at that penalty, a wrong chain is regenerated with the answer as a
  hint and then replaced by the problem's reference chain (the judge's revision, in miniature),
  and every kept chain is scored 0..5 (`score`, which `sft.reward_model=field` reads). Each row
  also keeps the reference chain (`reference`), which E_{t-1} trains on. (Measured: projector-only
  SFT on revised chains beats SFT on the teacher's raw chains, wrong ones included, by far; the
  paper's D is judge-checked too.)

The files are made once per settings (`done.json`); other settings need `--overwrite`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from r1v.config import setting
from r1v.distill.config import DistillConfig
from r1v.errors import R1VError
from r1v.io import read_jsonl, write_json, write_jsonl
from r1v.world.data import from_row, target
from r1v.world.scenes import describe

CAPTION = "Describe the picture."


@dataclass
class DataSettings:
    seed: int = setting(0, "seed of the subsets")
    filtered_share: float = setting(0.1, "align pass 2 keeps this share of pass 1 (the paper: 200K of 2M)")
    cot_share: float = setting(0.25, "align pass 3 takes this share of the training problems, with chains")
    captions: bool = setting(False, "align-full also holds each training picture as a caption target (the "
                                    "paper's general data; the world's substitute cannot caption from words)")
    # greedy chains (as the held-out scoring), the world's own difficulty label (its computations)
    # for the rules, the text score (which holds that label) counting double beside the integration
    # score (a word-count rule)
    distill: DistillConfig = setting(
        DistillConfig(temperature=0.0, max_new_tokens=96, difficulty_field="steps", beta=2.0, batch_size=256,
                      chunk=512),
        "AL-CoTD, which distils D (r1v distill's settings; teacher: the world's reasoning LM)")

    def validate(self) -> None:
        if not (0 < self.filtered_share <= 1 and 0 < self.cot_share <= 1):
            raise R1VError("filtered_share and cot_share are shares in (0, 1]")
        self.distill.validate()


def prepare(world: Path, out: Path, cfg: DataSettings, *, overwrite: bool = False, log=print) -> dict[str, str]:
    """The recipe's files for `world` in `out` (made once; reused while `done.json` matches)."""
    import shutil

    cfg.validate()
    if not (world / "data" / "visual-train.jsonl").is_file() or not (world / "reasoning").is_dir():
        raise R1VError(f"{world} holds no built mini-world; run `r1v world build --out {world}` first")
    marker = out / "done.json"
    settings = _settings(world, cfg)
    if marker.exists():
        made = json.loads(marker.read_text())
        old = made.pop("settings", None)
        if old and isinstance(old.get("world"), dict):
            old["world"] = {k: v for k, v in old["world"].items() if k not in NOT_READ}
        if not overwrite and old is not None and old != settings and _distilled(old) == _distilled(settings):
            # only the align files' settings changed (or a setting was added since): remade in seconds,
            # D (the distillation) and the pairs kept
            for key, rows in zip(("align_full", "align_filtered", "align_cot"), align_rows(world, out, cfg)):
                write_jsonl(out / made[key], rows)
            write_json(marker, {**made, "settings": settings})
            log(f"{out}: align files remade for the new settings; D and the pairs reused")
            old = settings
        elif old == settings:
            log(f"{out}: made already, reused")
        if old == settings:
            write_json(out / "reference-scores.json", reference_scores(world))
            if "rm_train" not in made:
                made.update(write_pairs(world, out, cfg.seed))
                write_json(marker, {**made, "settings": settings})
            return {k: str((out / v).resolve()) for k, v in made.items()}  # relative: the folder may have moved
        if not overwrite:
            raise R1VError(f"{out} was made with other settings or from another world; pass --overwrite to remake "
                           f"it, or choose another --out")
    if overwrite:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    sft, summary = distil(world, read_jsonl(world / "data" / "visual-train.jsonl"), cfg.distill, out / "distill",
                          log=log)
    # Image paths relative to `out`, where the rows are written: the world folder can be moved or copied whole.
    for r in sft:
        r["image"] = os.path.relpath(Path(r["image"]), out.resolve()) if r.get("image") else r.get("image")
    full, filtered, cot = align_rows(world, out, cfg)
    files = {"align_full": full, "align_filtered": filtered, "align_cot": cot, "sft": sft}
    names = {k: f"{k.replace('_', '-')}.jsonl" for k in files}
    for k, rows in files.items():
        write_jsonl(out / names[k], rows)
    write_json(out / "reference-scores.json", reference_scores(world))
    names["reference_scores"] = "reference-scores.json"
    names.update(write_pairs(world, out, cfg.seed))
    write_json(marker, {**names, "settings": settings})  # names relative to `out`, so a moved folder resumes
    paths = {k: str((out / v).resolve()) for k, v in names.items()}
    log(f"{out}: {', '.join(f'{k} {len(v)} rows' for k, v in files.items())}; teacher accuracy "
        f"{100 * summary['teacher_accuracy']:.1f}%")
    return paths


def align_rows(world: Path, out: Path, cfg: DataSettings) -> tuple[list[dict], list[dict], list[dict]]:
    """The three align passes' rows from the world's visual training problems, their image paths
    relative to `out`: full, filtered (seeded subset of full), cot (seeded subset of the problems,
    with their reference chains)."""
    train = read_jsonl(world / "data" / "visual-train.jsonl")
    for r in train:
        r["image"] = os.path.relpath(world / "data" / r["image"], out)
    rng = random.Random(cfg.seed)
    full = []
    for r in train:
        if cfg.captions:
            scene = describe(from_row(r))
            full.append({**r, "id": r["id"] + "-caption", "question": CAPTION, "choices": None, "answer": scene,
                         "response": f"</think>\n{scene}"})
        full.append({**r, "response": target(r, "instruct")})
    filtered = rng.sample(full, max(1, int(cfg.filtered_share * len(full))))
    cot = [{**r, "response": target(r, "reasoning")} for r in
           rng.sample(train, max(1, int(cfg.cot_share * len(train))))]
    return full, filtered, cot


def write_pairs(world: Path, out: Path, seed: int) -> dict[str, str]:
    """The reward model's pairs: one of each kind per visual training / validation problem."""
    from r1v.world.pairs import preference_pairs

    names = {}
    for key, split in (("rm_train", "train"), ("rm_eval", "val")):
        rows = read_jsonl(world / "data" / f"visual-{split}.jsonl")
        for r in rows:
            r["image"] = os.path.relpath(world / "data" / r["image"], out)
        names[key] = f"{key.replace('_', '-')}.jsonl"
        write_jsonl(out / names[key], preference_pairs(rows, random.Random(f"{seed}:{split}")))
    return names


ALIGN_ONLY = ("filtered_share", "cot_share", "captions")  # settings that change only the align files
# World stages the files do not read (done.json files written before 7bb719c list them)
NOT_READ = ("vision", "scores")


def _distilled(settings: dict) -> dict:
    """What D depends on: the settings less those of the align files alone."""
    return {k: v for k, v in settings.items() if k not in ALIGN_ONLY}


def _settings(world: Path, cfg: DataSettings) -> dict:
    """What the files depend on: the world (its hashes) and the settings that change a distillation."""
    from r1v.distill.run import SAME_RUN

    stages = json.loads((world / "world.json").read_text()).get("stages", {})
    d = dataclasses.asdict(cfg)
    d["distill"] = {k: v for k, v in d["distill"].items() if k in SAME_RUN}
    # The files are words and the reasoning LM's chains: a world that changed its vision encoder alone
    # keeps them (reference-scores.json, which holds the encoder's probe, is rewritten on every call).
    return {**d, "world": {k: s.get("hash") for k, s in stages.items() if k not in NOT_READ}}


def distil(world: Path, rows: list[dict], cfg: DistillConfig, out: Path, *, log=print) -> tuple[list[dict], dict]:
    """D by AL-CoTD: the world's reasoning LM (or `cfg.teacher`) writes each problem's chain at its
    penalty, reading the scene in words. Resumable (`r1v distill`'s records)."""
    from r1v.distill.models import open_model
    from r1v.distill.run import distill
    from r1v.evaluate.tasks import get_task

    opts = dict(batch_size=cfg.batch_size, concurrency=cfg.concurrency, rpm=cfg.rpm or None, timeout=cfg.timeout,
                retries=cfg.retries)
    teacher = open_model(cfg.teacher or str(world / "reasoning"), **opts)
    judge = open_model(cfg.judge, **opts) if cfg.judge else None
    asked = [{**r, "caption": describe(from_row(r))} for r in rows]
    summary = distill(asked, cfg, out, task=get_task("world"), teacher=teacher, judge=judge, root=world / "data")
    sft = []
    for r in read_jsonl(out / "data.jsonl"):
        r.pop("caption")
        sft.append({**r, "reference": target(r, "reasoning"), "revised": r["verdict"] != "kept"})
    return sft, summary


def reference_scores(world: Path) -> dict[str, float]:
    """The world's ceilings, from its build's scores (`world.json`), labelled for the report."""
    s = json.loads((world / "world.json").read_text()).get("scores", {})
    labels = {"reasoning_text": "reasoning LLM, the scene in words (text test, 2+ steps)",
              "reasoning_picture": "reasoning LLM, the scene as the picture's cell words (what a perfect "
                                   "projector could hand it)",
              "reasoning_blind": "reasoning LLM, visual questions without their pictures",
              "substitute_text": "substitute LLM, the scene in words",
              "substitute_picture": "substitute LLM, the scene as cell words"}
    out: dict = {label: s[k] for k, label in labels.items() if k in s}
    if "reasoning_picture" in s:  # what the claims table divides the final accuracy by
        out[labels["reasoning_picture"]] = {"accuracy": s["reasoning_picture"], "claim": "ceiling"}
    if s.get("probe"):
        weakest = min(s["probe"], key=s["probe"].get)
        out[f"vision encoder, linear probe of its weakest attribute ({weakest})"] = s["probe"][weakest]
    return out
