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

Saves `sft/m0` ... `sft/m{T}` and scores each on the held-out splits. D streams from disk; D_t and
E_{t-1} are row indices into it, and D's scores one small integer a row, so nothing here grows
with D but those arrays. The model is prepared once for M0 and every iteration (`Engine`); each
iteration starts with fresh optimiser moments, as a separate run would. Mid-stage checkpoints
hold the iteration, its E_{t-1} and the step, so a crash resumes inside the iteration.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from r1v.errors import R1VError
from r1v.train.context import Context
from r1v.train.engine import Engine
from r1v.train.loop import supervised
from r1v.rewards import d_rm, iteration_ids, mistakes, rubric_score
from r1v.train.rollout import score
from r1v.train.samples import Encoder
from r1v.train.vllm import open_rollouts, scoring, uneven


def scores_of(ctx: Context, rows) -> np.ndarray:
    """The reward model's 0..5 score of every row of D (`sft.reward_model`), one byte a row:
    rubric: the mini-world's rule checks (`rewards.rubric_score`) against the row's reference chain;
    field: a `score` column written by any reward model or judge."""
    kind = ctx.cfg.sft.reward_model
    if kind == "field":
        def one(r):
            if not isinstance(r.get("score"), int) or not 0 <= r["score"] <= 5:
                raise R1VError(f"row {r.get('id')} of the SFT data has no integer `score` in 0..5 "
                               f"(sft.reward_model=field)")
            return r["score"]
    elif kind == "rubric":
        task = ctx.task

        def one(r):
            if "reasoning" not in r:
                raise R1VError("the rubric reward model checks chains against a reference (`reasoning`), which "
                               "only mini-world rows carry; give D a `score` column and set sft.reward_model=field")
            correct = task.score(task.read_row({**r, "image": None, "images": None}), r["response"]).correct
            return rubric_score(r["response"], reference=r["reasoning"], correct=correct)
    else:
        raise R1VError(f"sft.reward_model={kind!r}; choose rubric or field")
    return rows.column(one, dtype=np.int8)


def run(ctx: Context) -> None:
    cfg = ctx.cfg.sft
    rows = ctx.rows("sft", need=("id", "response"))
    scores = scores_of(ctx, rows)
    T = len(cfg.taus)
    finished = [t for t in range(T + 1) if ctx.done(f"sft/m{t}")]
    last = max(finished, default=-1)  # resuming: start from the last finished iteration
    ckpt = ctx.checkpoints("sft")
    inside = ckpt.peek()
    if inside and inside["iteration"] <= last:  # killed after the iteration finished, before its checkpoints went
        ckpt.clear()
    # ... or inside an iteration, on the checkpoint this engine started from (its LoRA adapters hold
    # what was learnt since; the finished iterations' checkpoints have theirs folded in)
    base = (ckpt.peek() or {}).get("base", "transfer" if last < 0 else f"sft/m{last}")
    model, tok = ctx.load(base)
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine = Engine(model, cfg.parts, weight_decay=cfg.optim.weight_decay,
                    max_grad_norm=cfg.optim.max_grad_norm)
    rollouts = uneven(open_rollouts(ctx, engine, tok, enc))
    pos = ckpt.resume(engine) or {"iteration": last + 1, "step": 0, "losses": [], "base": base}
    cache = ctx.feature_cache("sft") if cfg.cache_features and not cfg.parts.vision else None
    for t in range(pos["iteration"], T + 1):
        t0 = time.perf_counter()
        name = f"m{t}"
        here = {k: v for k, v in pos.items() if k not in ("path", "base")} if pos["iteration"] == t \
            else {"step": 0, "losses": []}
        extra = {}
        if t == 0:
            data, optim, lr = ctx.data("sft", enc), cfg.optim, cfg.optim.lr
        else:
            tau, lr = cfg.taus[t - 1], cfg.lrs[t - 1]
            if "wrong" not in here:  # E_{t-1} (generation over D) is saved at once: a crash keeps it
                here.update(find_mistakes(ctx, engine, tok, enc, t, rollouts=rollouts))
                ckpt.save(engine, 0, {**here, "iteration": t, "base": base}, phase=t)
            wrong = np.asarray(here["wrong"], dtype=np.int64)
            ids = iteration_ids(scores, tau, wrong)
            data = ctx.data("sft", enc, revised=wrong, subset=ids)
            optim = dataclasses.replace(cfg.optim, epochs=cfg.iteration_epochs)
            extra = dict(tau=tau, lr=lr, d_rm=len(d_rm(scores, tau)), mistakes=len(wrong), pool=here["pool"],
                         pool_accuracy=here["pool_accuracy"], size=len(ids))
        ctx.metrics.forget(f"sft/{name}", here["step"])

        def on_step(done, ls, t=t, here=here):
            if ckpt.due(done):
                ckpt.save(engine, done, {**here, "iteration": t, "step": done, "losses": ls, "base": base}, phase=t)

        losses = supervised(engine, data, optim, lr=lr, pad_id=tok.pad_token_id, seed=ctx.cfg.seed + t,
                            cache=cache, pack_rows=cfg.pack, pack_length=cfg.pack_length,
                            workers=ctx.workers, log=ctx.metrics, name=f"sft/{name}",
                            start=here["step"], losses=here["losses"], on_step=on_step)
        ctx.save(engine.model, f"sft/{name}", tok, state=engine.state_dict())
        with scoring(engine, rollouts) as m:
            ctx.evaluate(m, tok, f"sft/{name}", rollouts=rollouts)
        ctx.mark_done(f"sft/{name}", time.perf_counter() - t0 + ckpt.earlier, **extra,
                      **({"size": len(data)} if t == 0 else {}), loss=[losses[0], losses[-1]] if losses else None)
        ckpt.clear()  # a later crash resumes from this iteration's checkpoint, not inside an earlier one
    # the iterations' seconds, those finished by an earlier attempt included
    ctx.mark_done("sft", sum(ctx.results["stages"][f"sft/m{t}"]["seconds"] for t in range(T + 1)),
                  final=final_stage(ctx))


def find_mistakes(ctx: Context, engine, tok, enc, t: int, *, rollouts=None) -> dict:
    """E_{t-1}: the rows of D (all of it, or a fresh seeded sample of `sft.mistake_pool` rows each
    iteration) that M_{t-1} answers wrongly, greedily, by the task's own scorer."""
    cfg = ctx.cfg.sft
    n = len(ctx.rows("sft", need=("id", "response")))
    pool = np.arange(n)
    if 0 < cfg.mistake_pool < n:
        pool = np.sort(np.random.default_rng([ctx.cfg.seed, t]).choice(n, cfg.mistake_pool, replace=False))
    mine = pool[ctx.state.process_index :: ctx.state.num_processes]  # each process answers its share
    with scoring(engine, rollouts) as m:
        answered = score(ctx.task, m, tok, ctx.stream(ctx.data("sft", enc, field=""), mine, ctx.cfg.eval.batch_size),
                         n=len(mine), stop_id=enc.stop_id, max_new_tokens=cfg.max_new_tokens,
                         desc=f"sft/m{t}: E_{t - 1}", keep=False, rollouts=rollouts,
                         images=lambda chunk: ctx.images("sft", chunk))
    wrong = mistakes(mine, answered.correct).tolist()
    if ctx.state.num_processes > 1:  # every process trains on the same E_{t-1}
        from accelerate.utils import gather_object

        wrong = sorted(gather_object(wrong))
    return {"wrong": wrong, "pool": len(pool), "pool_accuracy": round(1 - len(wrong) / max(1, len(pool)), 4)}


def final_stage(ctx: Context) -> str:
    return f"sft/m{len(ctx.cfg.sft.taus)}"
