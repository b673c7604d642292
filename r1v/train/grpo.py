"""Stage 3, GRPO with rule rewards (method.md): prompts from D_rm(tau = 5), G = 8 completions each
at temperature 1.0, reward = accuracy (the task's own scorer) + format (the R1 template), group-
normalised advantages, PPO's clipped surrogate, an optional KL penalty against the starting policy.

    r1v train grpo --config recipes/tiny.yaml [grpo.steps=50 grpo.kl=0.01 ...]

Logged every step (`metrics.jsonl`, plotted in the report): reward, accuracy, format, response
length, the effective-sample ratio (share of groups whose rewards differ, so whose advantages are
non-zero; R1V2's vanishing-advantage measure), loss and KL.

Why a loop of our own rather than TRL's GRPOTrainer (which trains this model too): the group
shares its prompt. Each image is encoded once per run (frozen encoder, cached features) and each
prompt is run once per step, for the rollouts and for the loss alike: the prompt's KV cache is
repeated G times and the G completions attend to it, gradients flowing back through it into the
projector. TRL repeats every prompt G times in both passes. `bench/grpo.py` measures the
difference on one step with the same model, data and lengths.

Decisions (the papers leave them open): one optimisation step per batch of rollouts, so the
"old" policy is the current one and the ratio is 1 at the step (as TRL's default); the loss is
normalised by the completion tokens of the whole step (DAPO's token-level mean, no length bias
towards short answers); KL by the k3 estimator, against a frozen copy of the starting model.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from r1v.train.context import Context
from r1v.train.loop import merge_lora, set_parts
from r1v.train.rewards import accuracy_reward, effective_ratio, format_reward, group_advantages
from r1v.train.rollout import generate, prefill
from r1v.train.samples import Encoder, FeatureCache, Sample, image_inputs


def completion_logprobs(model, prompts: Sequence[Sample], completions: Sequence[list[int]], group: int, *,
                        pad_id: int, image_args: dict, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities (B*G, C) of the completions and their mask, each prompt run once.

    The prompts (B, P) go through the model once; their KV cache is repeated G times and the
    completions (B*G, C-1 inputs) attend to it. The first completion token is scored from the
    prompt's last position."""
    ids, mask, out = prefill(model, prompts, pad_id, grad=torch.is_grad_enabled(), image_args=image_args)
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
        mean_kl = float((k3 * mask).sum() / mask.sum().clamp(min=1))
    denom = n_tokens if n_tokens is not None else int(mask.sum())
    return (per_token * mask).sum() / max(1, denom), mean_kl


def rule_rewards(cfg, task):
    """reward = accuracy_weight * accuracy + format_weight * format, per completion."""
    def fn(texts, items):
        acc_r = accuracy_reward(texts, items=items, task=task)
        fmt_r = format_reward(texts)
        return [cfg.accuracy_weight * a + cfg.format_weight * f for a, f in zip(acc_r, fmt_r)], acc_r, fmt_r
    return fn


def step(raw, opt, batch: Sequence[Sample], *, cfg, tok, stop_id: int, rewards_fn, cache, ref=None,
         accelerator, min_new_tokens: int = 0) -> dict:
    """One GRPO step: G rollouts per prompt (prefix shared), rewards, advantages, one update."""
    G = cfg.generations_per_prompt
    t0 = time.perf_counter()
    raw.eval()
    with torch.no_grad():
        gens = generate(raw, batch, stop_id=stop_id, pad_id=tok.pad_token_id, n=G, temperature=cfg.temperature,
                        max_new_tokens=cfg.max_completion_tokens, min_new_tokens=min_new_tokens,
                        batch_size=len(batch), image_args=lambda ch: image_inputs(raw, ch, cache))
    t_gen = time.perf_counter() - t0
    flat = [c for g in gens for c in g]
    texts = tok.batch_decode(flat, skip_special_tokens=True)
    rewards, acc_r, fmt_r = rewards_fn(texts, [s.item for s in batch for _ in range(G)])
    adv = torch.tensor(group_advantages(rewards, G), device=accelerator.device)
    # the loss is normalised by the completion tokens of the whole step, over every process
    n_tokens = int(accelerator.reduce(torch.tensor(sum(len(c) for c in flat), device=accelerator.device), "sum"))
    raw.train()
    loss_total, kl_total = 0.0, 0.0
    for g0 in range(0, len(batch), cfg.micro_groups):
        prompts = batch[g0 : g0 + cfg.micro_groups]
        comps = flat[g0 * G : (g0 + len(prompts)) * G]
        a = adv[g0 * G : (g0 + len(prompts)) * G]
        if not bool((a != 0).any()) and not cfg.kl:
            continue  # every group here is uniform: no gradient, skip the forward
        # the unwrapped model: the prompt and the completions are two forward passes of one graph,
        # which DDP's reducer does not allow; gradients are summed over processes below instead
        logp, mask = completion_logprobs(raw, prompts, comps, G, pad_id=tok.pad_token_id,
                                         image_args=image_inputs(raw, prompts, cache), temperature=cfg.temperature)
        ref_logp = None
        if ref is not None:
            with torch.no_grad():
                ref_logp, _ = completion_logprobs(ref, prompts, comps, G, pad_id=tok.pad_token_id,
                                                  image_args=image_inputs(ref, prompts, None),
                                                  temperature=cfg.temperature)
        loss, mean_kl = grpo_loss(logp, logp.detach(), a, mask.float(), clip_eps=cfg.clip_eps, kl=cfg.kl,
                                  ref_logp=ref_logp, n_tokens=n_tokens)
        accelerator.backward(loss)
        loss_total += loss.item()
        kl_total += mean_kl * len(prompts) / len(batch)
    params = [p for p in raw.parameters() if p.requires_grad]
    if accelerator.num_processes > 1:
        for p in params:
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = accelerator.reduce(grad, "sum")
    accelerator.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    raw.eval()
    return dict(reward=statistics.fmean(rewards), accuracy=statistics.fmean(acc_r), format=statistics.fmean(fmt_r),
                length=statistics.fmean(len(c) for c in flat), effective=effective_ratio(rewards, G),
                loss=loss_total, kl=kl_total, seconds=round(time.perf_counter() - t0, 3),
                generate_seconds=round(t_gen, 3))


def setup(model, cfg):
    """(prepared model, the model itself, optimiser, scheduler, accelerator, feature cache, reference).

    `step` runs the model itself (unwrapped); `accelerate.prepare` places it and wraps the optimiser."""
    from accelerate import Accelerator

    set_parts(model, cfg.parts)
    ref = copy.deepcopy(model).requires_grad_(False) if cfg.kl else None
    cache = FeatureCache(model) if not cfg.parts.vision else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    warm = max(1, math.ceil(0.03 * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    acc = Accelerator()
    wrapped, opt = acc.prepare(model, opt)
    if ref is not None:
        ref.to(acc.device)
    return wrapped, acc.unwrap_model(wrapped), opt, sched, acc, cache, ref


def run(ctx: Context) -> None:
    from r1v.train.sft import final_stage

    cfg = ctx.cfg.grpo
    t0 = time.perf_counter()
    model, tok = ctx.load(final_stage(ctx))
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    samples, rows = ctx.samples(enc, "sft", field="")  # prompts only
    from r1v.train.sft import scores_of

    scores = scores_of(ctx, rows)
    pool = [s for s in samples if scores[s.id] >= cfg.tau]
    if not pool:
        from r1v.errors import R1VError

        raise R1VError(f"no SFT sample scores grpo.tau={cfg.tau} or more: no prompts for GRPO")
    model, raw, opt, sched, acc, cache, ref = setup(model, cfg)
    rng = random.Random(ctx.cfg.seed)
    torch.manual_seed(ctx.cfg.seed)
    rewards_fn = rule_rewards(cfg, ctx.task)
    history = []
    for i in tqdm(range(cfg.steps), desc="grpo", leave=False, disable=not ctx.main):
        batch = rng.sample(pool, min(cfg.prompts_per_step, len(pool)))  # the same on every process
        batch = batch[acc.process_index :: acc.num_processes] or batch[:1]
        row = step(raw, opt, batch, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn,
                   cache=cache, ref=ref, accelerator=acc)
        sched.step()
        row = {"stage": "grpo", "step": i, **row, "lr": sched.get_last_lr()[0]}
        history.append(row)
        ctx.metrics.log(**{k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        if cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < cfg.steps:
            ctx.evaluate(raw, tok, f"grpo@{i + 1}")
    del ref
    if cfg.parts.lora_rank > 0 and not cfg.parts.language:
        merge_lora(raw)
    ctx.save(raw, "grpo", tok)
    ctx.evaluate(raw, tok, "grpo")
    first, last = history[: max(1, len(history) // 5)], history[-max(1, len(history) // 5):]
    ctx.mark_done("grpo", time.perf_counter() - t0, prompts=len(pool),
                  reward_first=statistics.fmean(r["reward"] for r in first),
                  reward_last=statistics.fmean(r["reward"] for r in last),
                  effective_first=statistics.fmean(r["effective"] for r in first),
                  effective_last=statistics.fmean(r["effective"] for r in last))
