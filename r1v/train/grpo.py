"""Stage 3, GRPO with rule rewards (method.md): prompts from D_rm(tau = 5), G = 8 completions each
at temperature 1.0, reward = accuracy (the task's own scorer) + format (the R1 template), group-
normalised advantages, PPO's clipped surrogate, an optional KL penalty against the starting policy.

    r1v train grpo --config recipes/tiny.yaml [grpo.steps=50 grpo.kl=0.01 ...]

Logged every step (`metrics.jsonl`, plotted in the report): reward, accuracy, format, response
length, the effective-sample ratio (share of groups whose rewards differ, so whose advantages are
non-zero; R1V2's vanishing-advantage measure), the rollouts' hallucination rate (where the task
knows its facts), loss and KL.

R1V2's monitoring: with `grpo.eval_every`, the held-out visual split is scored every N steps, its
hallucination rate beside its accuracy; past `grpo.hallucination_ceiling` the run stops there and
keeps that model (`hallucination_action: stop`) or notes it and goes on (`flag`).

Why a loop of our own rather than TRL's GRPOTrainer (which trains this model too): the group
shares its prompt. Each image is encoded once per run (frozen encoder, cached features) and each
prompt is run once per step, for the rollouts and for the loss alike: the prompt's KV cache is
repeated G times and the G completions attend to it, gradients flowing back through it into the
projector. TRL repeats every prompt G times in both passes. `bench/grpo.py` measures the
difference on one step with the same model, data and lengths.

Under accelerate the step goes through the engine (`r1v/train/engine.py`): rollouts on the whole
(gathered) model, the loss as one engine forward per micro-group (prompt, then completions on its
KV cache), gradients reduced by DDP / FSDP / ZeRO, not by hand; the KL reference is placed by the
engine too. Prompts are drawn per step as a pure function of (seed, step) and streamed from D;
mid-stage checkpoints keep the step, the optimiser and the sampling RNG, so a resumed run goes on
as the uninterrupted one would.

Decisions (the papers leave them open): one optimisation step per batch of rollouts, so the
"old" policy is the current one and the ratio is 1 at the step (as TRL's default); the loss is
normalised by the completion tokens of the whole step (DAPO's token-level mean, no length bias
towards short answers); KL by the k3 estimator, against a frozen copy of the starting model.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from r1v.train.context import Context
from r1v.train.data import batches
from r1v.train.engine import Engine
from r1v.rewards import accuracy_reward, d_rm, effective_ratio, format_reward, group_advantages
from r1v.train.rollout import generate, prefill
from r1v.train.samples import Encoder, Sample, image_inputs


def completion_logprobs(model, *, prompts: Sequence[Sample], completions: Sequence[list[int]], group: int,
                        pad_id: int, cache=None, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities (B*G, C) of the completions and their mask, each prompt run once.

    The prompts (B, P) go through the model once (images: the feature `cache`, or pixels); their KV
    cache is repeated G times and the completions (B*G, C-1 inputs) attend to it. The first
    completion token is scored from the prompt's last position. Run it inside the engine
    (`engine(completion_logprobs, ...)`): both passes are one engine forward."""
    ids, mask, out = prefill(model, prompts, pad_id, grad=torch.is_grad_enabled(),
                             image_args=image_inputs(model, prompts, cache))
    n = max(len(c) for c in completions)
    comp = torch.full((len(completions), n), pad_id, device=ids.device)
    cmask = torch.zeros((len(completions), n), dtype=torch.long, device=ids.device)
    for i, c in enumerate(completions):
        comp[i, : len(c)] = torch.tensor(c)
        cmask[i, : len(c)] = 1
    logits = out.logits[:, -1:, :].repeat_interleave(group, 0)  # (B*G, 1, V): predicts token 0
    if n > 1:
        cache = out.past_key_values
        cache.batch_repeat_interleave(group)
        pmask = mask.repeat_interleave(group, 0)
        pos = pmask.sum(-1, keepdim=True) + torch.arange(n - 1, device=ids.device)
        rest = model(input_ids=comp[:, :-1], attention_mask=torch.cat([pmask, cmask[:, :-1]], 1), position_ids=pos,
                     cache=cache, use_cache=True)
        logits = torch.cat([logits, rest.logits], 1)
    logp = torch.log_softmax(logits.float() / temperature, -1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    return logp, cmask


def grpo_loss(logp, old_logp, advantages, mask, *, clip_eps: float, kl: float = 0.0, ref_logp=None,
              n_tokens: int | None = None) -> tuple[torch.Tensor, float]:
    """PPO's clipped surrogate with group advantages (B*G,), summed over tokens and divided by
    `n_tokens` (the step's completion tokens); plus kl * k3(ref || policy). Returns (loss, mean kl)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    mean_kl = 0.0
    if kl and ref_logp is not None:
        d = ref_logp - logp
        k3 = torch.exp(d) - d - 1
        per_token = per_token + kl * k3
        mean_kl = float((k3.detach() * mask).sum() / mask.sum().clamp(min=1))
    denom = n_tokens if n_tokens is not None else int(mask.sum())
    return (per_token * mask).sum() / max(1, denom), mean_kl


def rule_rewards(cfg, task):
    """reward = accuracy_weight * accuracy + format_weight * format, per completion."""
    def fn(texts, items):
        acc_r = accuracy_reward(texts, items=items, task=task)
        fmt_r = format_reward(texts)
        return [cfg.accuracy_weight * a + cfg.format_weight * f for a, f in zip(acc_r, fmt_r)], acc_r, fmt_r
    return fn


def step(engine: Engine, batch: Sequence[Sample], *, cfg, tok, stop_id: int, rewards_fn, cache=None, ref=None,
         min_new_tokens: int = 0, task=None) -> dict:
    """One GRPO step: G rollouts per prompt (prefix shared), rewards, advantages, one update."""
    acc = engine.acc
    G = cfg.generations_per_prompt
    t0 = time.perf_counter()
    with engine.generating() as model:
        gens = generate(model, batch, stop_id=stop_id, pad_id=tok.pad_token_id, n=G, temperature=cfg.temperature,
                        max_new_tokens=cfg.max_completion_tokens, min_new_tokens=min_new_tokens,
                        batch_size=len(batch), image_args=lambda ch: image_inputs(model, ch, cache))
    t_gen = time.perf_counter() - t0
    flat = [c for g in gens for c in g]
    texts = tok.batch_decode(flat, skip_special_tokens=True)
    rewards, acc_r, fmt_r = rewards_fn(texts, [s.item for s in batch for _ in range(G)])
    false = [task.hallucinated(s.item, t) for s, t in zip((s for s in batch for _ in range(G)), texts)] if task else []
    false = [float(h) for h in false if h is not None]
    adv = torch.tensor(group_advantages(rewards, G), device=acc.device)
    # the loss is normalised by the completion tokens of the whole step, over every process; the
    # engine averages gradients over processes, so each divides by its share of that count
    n_tokens = float(acc.reduce(torch.tensor(float(sum(len(c) for c in flat)), device=acc.device), "sum"))
    n_tokens /= acc.num_processes
    groups = list(range(0, len(batch), cfg.micro_groups))
    if acc.num_processes == 1:  # a micro-group whose groups are all uniform has no gradient: skip it
        groups = [g0 for g0 in groups if cfg.kl or bool((adv[g0 * G : (g0 + cfg.micro_groups) * G] != 0).any())]
    # every process runs as many forward passes (the engine reduces and gathers in each)
    n = int(acc.reduce(torch.tensor(len(groups), device=acc.device), "max"))
    weights = [1.0] * len(groups) + [0.0] * (n - len(groups))
    groups += [0] * (n - len(groups))
    engine.module.train()
    loss_total, kl_total = 0.0, 0.0
    for k, (g0, weight) in enumerate(zip(groups, weights)):
        prompts = batch[g0 : g0 + cfg.micro_groups]
        comps = flat[g0 * G : (g0 + len(prompts)) * G]
        a = adv[g0 * G : (g0 + len(prompts)) * G]
        args = dict(prompts=prompts, completions=comps, group=G, pad_id=tok.pad_token_id, cache=cache,
                    temperature=cfg.temperature)
        ref_logp = None
        if ref is not None:
            with torch.no_grad():
                ref_logp, _ = ref(fn=completion_logprobs, **args)
        with engine.no_sync(last=k == len(groups) - 1):
            logp, mask = engine(completion_logprobs, **args)
            loss, mean_kl = grpo_loss(logp, logp.detach(), a, mask.float(), clip_eps=cfg.clip_eps, kl=cfg.kl,
                                      ref_logp=ref_logp, n_tokens=n_tokens)
            acc.backward(loss * weight)
        loss_total += loss.item() * weight
        kl_total += mean_kl * len(prompts) / len(batch) * weight
    engine.step(max_grad_norm=1.0)
    engine.module.eval()
    # the step's numbers over every process's groups
    sums = acc.reduce(torch.tensor([sum(rewards), sum(acc_r), sum(fmt_r), sum(len(c) for c in flat), len(rewards),
                                    effective_ratio(rewards, G) * len(batch), len(batch), loss_total, kl_total,
                                    sum(false), len(false)], dtype=torch.float64, device=acc.device), "sum").tolist()
    n, k = sums[4], acc.num_processes
    out = dict(reward=sums[0] / n, accuracy=sums[1] / n, format=sums[2] / n, length=sums[3] / n,
               effective=sums[5] / sums[6], loss=sums[7], kl=sums[8] / k, seconds=round(time.perf_counter() - t0, 3),
               generate_seconds=round(t_gen, 3))
    if sums[10]:
        out["hallucination"] = sums[9] / sums[10]
    return out


def setup(model, cfg) -> tuple[Engine, object]:
    """(engine, KL reference placed by the engine, or None)."""
    ref = copy.deepcopy(model).requires_grad_(False) if cfg.kl else None  # before LoRA goes in
    engine = Engine(model, cfg.parts, weight_decay=0.0, betas=(0.9, 0.99))
    if ref is not None:
        from r1v.train.engine import TrainModule

        ref = engine.acc.prepare_model(TrainModule(ref), evaluation_mode=True)
    return engine, ref


def prompt_schedule(pool: np.ndarray, per_step: int, *, seed: int, start: int = 0):
    """Each step's prompts (row indices), drawn without replacement from `pool` by (seed, step)."""
    for i in itertools.count(start):
        yield np.random.default_rng([seed, i]).choice(pool, min(per_step, len(pool)), replace=False)


def run(ctx: Context) -> None:
    from r1v.train.sft import scores_of

    cfg = ctx.cfg.grpo
    t0 = time.perf_counter()
    pool = d_rm(scores_of(ctx, ctx.rows("sft", need=("id", "response"))), cfg.tau)
    if not len(pool):
        from r1v.errors import R1VError

        raise R1VError(f"no SFT sample scores grpo.tau={cfg.tau} or more: no prompts for GRPO")
    model, tok = ctx.load(ctx.policy_before("grpo"))
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine, ref = setup(model, cfg)
    cache = ctx.feature_cache("grpo") if not cfg.parts.vision else None
    ckpt = ctx.checkpoints("grpo")
    pos = ckpt.resume(engine)  # restores the sampling RNG with the weights
    if pos is None:
        torch.manual_seed(ctx.cfg.seed)
        pos = {"step": 0, "history": []}
    start, history = pos["step"], pos["history"]
    ctx.metrics.forget("grpo", start)
    acc = engine.acc
    if cfg.prompts_per_step < acc.num_processes:
        from r1v.errors import R1VError

        raise R1VError(f"grpo.prompts_per_step={cfg.prompts_per_step} is fewer than the {acc.num_processes} processes: "
                       f"give each at least one prompt")
    stream = batches(ctx.data("sft", enc, field=""),
                     itertools.islice(prompt_schedule(pool, cfg.prompts_per_step, seed=ctx.cfg.seed, start=start),
                                      cfg.steps - start),
                     rank=acc.process_index, world=acc.num_processes, workers=ctx.workers, seed=ctx.cfg.seed,
                     cache=cache)
    rewards_fn = rule_rewards(cfg, ctx.task)
    warm = max(1, math.ceil(0.03 * cfg.steps))
    bar = tqdm(range(start, cfg.steps), desc="grpo", leave=False, disable=not ctx.main)
    for i, batch in zip(bar, stream):
        lr = cfg.lr * min(1.0, (i + 1) / warm)  # constant after a linear warm-up
        engine.set_lr(lr)
        row = step(engine, batch, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn, cache=cache, ref=ref,
                   task=ctx.task)
        row = {"stage": "grpo", "step": i, **row, "lr": lr}
        history.append({k: row[k] for k in ("reward", "effective")})
        ctx.metrics.log(**{k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        if cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < cfg.steps:
            with engine.generating() as m:
                rate = ctx.evaluate(m, tok, f"grpo@{i + 1}").get("visual", {}).get("hallucination")
            if cfg.hallucination_ceiling and rate is not None and rate > cfg.hallucination_ceiling:
                note = {"step": i + 1, "hallucination": rate, "ceiling": cfg.hallucination_ceiling,
                        "action": cfg.hallucination_action}
                ctx.results["stages"].setdefault("grpo", {}).setdefault("hallucination_alarms", []).append(note)
                ctx.save_results()
                if ctx.main:
                    print(f"grpo step {i + 1}: held-out hallucination {100 * rate:.1f}% is above the ceiling "
                          f"{100 * cfg.hallucination_ceiling:.1f}%: "
                          + ("stopping here (grpo.hallucination_action=stop)" if cfg.hallucination_action == "stop"
                             else "flagged, going on"))
                if cfg.hallucination_action == "stop":
                    break
        if ckpt.due(i + 1):
            ckpt.save(engine, i + 1, {"step": i + 1, "history": history})
    del ref
    ctx.save(engine.model, "grpo", tok, state=engine.state_dict())
    with engine.generating() as m:
        ctx.evaluate(m, tok, "grpo")
    ckpt.clear()
    first, last = history[: max(1, len(history) // 5)], history[-max(1, len(history) // 5):]
    ctx.mark_done("grpo", time.perf_counter() - t0, prompts=len(pool), steps_run=len(history),
                  reward_first=statistics.fmean(r["reward"] for r in first),
                  reward_last=statistics.fmean(r["reward"] for r in last),
                  effective_first=statistics.fmean(r["effective"] for r in first),
                  effective_last=statistics.fmean(r["effective"] for r in last))
