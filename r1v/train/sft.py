"""Stages 1-2, supervised fine-tuning: M0 on the full data D, then T iterations on
D_t = D_rm(tau_t) u E_{t-1} (method.md):

* a reward model scores every sample of D 0..5 (`sft.reward_model`: the mini-world's rubric, or a
  `score` column any RM or judge wrote); D_rm(tau) keeps the samples scoring tau or more, with
  tau_t = 2, 3, 4, 5;
* E_{t-1}: the samples whose answer, generated greedily by M_{t-1} and extracted by the task's
  scorer, is wrong. They are trained on their revised response (`reference`) when the row has
  one, as AL-CoTD's judge revises wrong chains, else on D's response;
* one epoch per iteration, lr 1e-4 for t = 1 and 2e-5 after (`sft.lrs`).

Only the projector trains by default; `sft.parts.lora_rank=16` adds LoRA on the LLM (peft, merged
into the weights when saved), `sft.parts.language=true` trains it all.

    r1v train sft --config recipes/tiny.yaml [sft.taus=[2,3,4,5] ...]

Saves `sft/m0` ... `sft/m{T}` and scores each on the held-out splits.
"""

from __future__ import annotations

import dataclasses
import random
import time

from r1v.errors import R1VError
from r1v.train.context import Context
from r1v.train.loop import supervised
from r1v.train.rewards import d_rm, iteration_ids, mistakes, rubric_score
from r1v.train.rollout import score
from r1v.train.samples import Encoder


def scores_of(ctx: Context, rows: list[dict]) -> dict[str, int]:
    """The reward model's 0..5 score of every sample of D (`sft.reward_model`):
    rubric: the mini-world's rule checks (`rewards.rubric_score`) against the row's reference chain;
    field: a `score` column written by any reward model or judge."""
    kind = ctx.cfg.sft.reward_model
    if kind == "field":
        missing = [r.get("id") for r in rows if not isinstance(r.get("score"), int) or not 0 <= r["score"] <= 5]
        if missing:
            raise R1VError(f"row {missing[0]} of the SFT data has no integer `score` in 0..5 (sft.reward_model=field)")
        return {str(r["id"]): r["score"] for r in rows}
    if kind == "rubric":
        if any("reasoning" not in r for r in rows):
            raise R1VError("the rubric reward model checks chains against a reference (`reasoning`), which only "
                           "mini-world rows carry; give D a `score` column and set sft.reward_model=field")
        task = ctx.task
        return {str(r["id"]): rubric_score(r["response"], reference=r["reasoning"],
                                           correct=task.score(task.read_row({**r, "image": None, "images": None}),
                                                              r["response"]).correct)
                for r in rows}
    raise R1VError(f"sft.reward_model={kind!r}; choose rubric or field")


def run(ctx: Context) -> None:
    cfg = ctx.cfg.sft
    model, tok = ctx.load("transfer")
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    samples, rows = ctx.samples(enc, "sft")
    if not samples:
        raise R1VError(f"{ctx.data_file('sft')} holds no rows: no data for SFT")
    revised = {s.id: r.get("reference") for s, r in zip(samples, rows)}
    scores = scores_of(ctx, rows)
    by_id = {s.id: s for s in samples}
    train = dict(parts=cfg.parts, pad_id=tok.pad_token_id, cache_features=cfg.cache_features,
                 pack_rows=cfg.pack, pack_length=cfg.pack_length, log=ctx.metrics)

    def finish(name: str, t0: float, **extra) -> None:
        ctx.save(model, f"sft/{name}", tok)
        ctx.evaluate(model, tok, f"sft/{name}")
        ctx.mark_done(f"sft/{name}", time.perf_counter() - t0, **extra)

    start = time.perf_counter()
    held = "transfer"  # which checkpoint `model` holds
    if not ctx.done("sft/m0"):
        t0 = time.perf_counter()
        losses = supervised(model, samples, cfg.optim, seed=ctx.cfg.seed, desc="sft/m0", **train)
        finish("m0", t0, size=len(samples), loss=[losses[0], losses[-1]])
        held = "sft/m0"
    for t, (tau, lr) in enumerate(zip(cfg.taus, cfg.lrs), start=1):
        name = f"m{t}"
        if ctx.done(f"sft/{name}"):
            continue
        t0 = time.perf_counter()
        if held != f"sft/m{t - 1}":  # resuming: start from the last finished iteration
            model, tok = ctx.load(f"sft/m{t - 1}")
        # E_{t-1} is looked for in all of D, or in a fresh seeded sample of it each iteration
        pool = random.Random(ctx.cfg.seed + t).sample(samples, cfg.mistake_pool) \
            if 0 < cfg.mistake_pool < len(samples) else samples
        pool_prompts = [dataclasses.replace(s, response=[]) for s in pool]
        answered = score(ctx.task, model, tok, pool_prompts, stop_id=enc.stop_id, max_new_tokens=cfg.max_new_tokens,
                         batch_size=ctx.cfg.eval.batch_size, desc=f"sft/{name}: E_{t - 1}")
        wrong = mistakes([s.id for s in pool], answered.correct)
        if ctx.state.num_processes > 1:  # one E_{t-1} for all (greedy ties could break differently)
            from accelerate.utils import broadcast_object_list

            wrong = broadcast_object_list([wrong])[0]
        ids = iteration_ids(scores, tau, wrong)
        data = []
        for i in sorted(ids):
            s = by_id[i]
            if i in wrong and revised.get(i):
                s = enc.encode(s.item, ctx.task.prompt(s.item), revised[i])
            data.append(s)
        optim = type(cfg.optim)(**{**vars(cfg.optim), "lr": lr, "epochs": cfg.iteration_epochs})
        losses = supervised(model, data, optim, seed=ctx.cfg.seed + t, desc=f"sft/{name}", **train)
        finish(name, t0, tau=tau, lr=lr, d_rm=len(d_rm(scores, tau)), mistakes=len(wrong), pool=len(pool),
               pool_accuracy=round(answered.accuracy, 4), size=len(data),
               loss=[losses[0], losses[-1]] if losses else None)
        held = f"sft/{name}"
    ctx.mark_done("sft", time.perf_counter() - start, final=final_stage(ctx))


def final_stage(ctx: Context) -> str:
    return f"sft/m{len(ctx.cfg.sft.taus)}"
