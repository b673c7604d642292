"""Stage 3, GRPO (method.md): prompts from D_rm(tau = 5) (R1V2: `data.prompts`), G = 8 completions each at
temperature 1.0, group-normalised advantages, PPO's clipped surrogate, an optional KL penalty against the
starting policy. R1V's reward: accuracy (the task's own scorer) + format (the R1 template). R1V2's
additions, each a setting:
* the hybrid reward (`grpo.reward_model`, `rm_weight`, `rm_norm`): r = r_rule + w * norm(r_theta)
  + r_format (`rewards.hybrid_reward`), the reward model in-process or at an endpoint;
* the Selective Sample Buffer (`grpo.ssb.*`, `r1v/train/ssb.py`): groups with non-zero advantages
  kept and replayed, with their sampling-time log-probs, in place of uniform groups;
* the offline prompt-pool filter (`grpo.filter_pool`, or `r1v train grpo-filter` alone): every
  prompt rolled out G times, the uniform ones (all right or all wrong) dropped;
* R1V3's monitor and checkpoint choice (`grpo.critical`, `grpo.select`, `r1v/train/critical.py`).

    r1v train grpo --config recipes/tiny.yaml [grpo.steps=50 grpo.kl=0.01 ...]
    r1v train grpo --config recipes/r1v2-tiny.yaml grpo.ssb.enabled=false name=r1v2-tiny-nossb \\
        grpo.base=runs/r1v2-tiny/mpo/r4                       # an ablation from another run's policy
    r1v train grpo-filter --config recipes/r1v2-tiny.yaml    # the pool filter alone
    r1v train grpo-probe --config recipes/r1v2-tiny.yaml --seeds 0,1,2   # R1V3's choice, probed again

Logged every step (`metrics.jsonl`, plotted in the report): reward, accuracy, format, the reward
model's raw score, response length, the effective-sample share of the fresh groups (`effective`:
groups whose rewards differ, so whose advantages are non-zero; R1V2's vanishing-advantage measure)
and of the groups trained on after SSB's replay (`effective_trained`), groups replayed, the
rollouts' hallucination rate (where the task knows its facts), the critical-token entropy, loss, KL.

R1V2's monitoring: with `grpo.eval_every`, the held-out visual split is scored every N steps, its
hallucination rate beside its accuracy; past `grpo.hallucination_ceiling` the run stops there and
keeps that model (`hallucination_action: stop`) or notes it and goes on (`flag`). At the same
points the critical-token entropy is measured on probe prompts held out of the pool; with
`grpo.select=entropy` the checkpoint with the highest is GRPO's output where the probe can tell it
from the last (`critical.choose`; else the last; the others stay as `grpo@N`). `r1v train grpo-probe`
probes a finished run's checkpoints again at other seeds, to see whether the choice holds.

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
mid-stage checkpoints keep the step, the optimiser, the sampling RNG and each process's sample
buffer, so a resumed run goes on as the uninterrupted one would.

Decisions (the papers leave them open): one optimisation step per batch of rollouts, so the
"old" policy of a fresh group is the current one and its ratio is 1 at the step (as TRL's
default); a replayed group's old policy is the one that sampled it, its log-probs stored in the
buffer, so its ratio is pi_now / pi_then, clipped, and dual-clipped where the advantage is negative
(`grpo.dual_clip`); the loss is normalised by the completion tokens of the whole step (DAPO's
token-level mean, no length bias towards short answers); KL by the k3 estimator, against a frozen
copy of the starting model. Dropout is off (`Engine(dropout=False)`).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from r1v.errors import R1VError
from r1v.io import write_json
from r1v.rewards import (accuracy_reward, d_rm, effective_ratio, format_reward, group_advantages, hybrid_reward,
                         informative_groups, normalise_rm)
from r1v.train.context import Context
from r1v.train.critical import choose, counted, critical_entropy, critical_token_ids, critical_value, reasoning_mask
from r1v.train.data import batches, loader
from r1v.train.engine import Engine
from r1v.train.rollout import generate, prefill
from r1v.train.samples import Encoder, Sample, image_inputs
from r1v.train.ssb import Group, SelectiveSampleBuffer, replay_count
from r1v.train.vllm import open_rollouts, scoring, uneven


class TokenLogprobs(torch.autograd.Function):
    """log softmax(logits / T) at `tokens`, in float32 whatever the logits' dtype, holding nothing
    the size of the logits beyond the logits themselves: the softmax is recomputed `rows` positions
    at a time, forward and backward. The plain `log_softmax(logits.float())` keeps an (N, C, V)
    float32 tensor for backward, 40 GB for one group of G = 8 completions of 8K tokens over Qwen's
    152K vocabulary."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature: float, rows: int):
        flat, tok = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1, 1)
        lse = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
        for s in range(0, flat.shape[0], rows):
            lse[s : s + rows] = torch.logsumexp(flat[s : s + rows].float() / temperature, -1)
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.rows = temperature, rows
        return (flat.gather(-1, tok)[:, 0].float() / temperature - lse).view(tokens.shape)

    @staticmethod
    def backward(ctx, grad):
        # d logp / d z_j = (1[j = token] - softmax(z / T)_j) / T
        logits, tokens, lse = ctx.saved_tensors
        flat, tok, g = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1, 1), grad.reshape(-1, 1).float()
        out = torch.empty_like(flat)
        for s in range(0, flat.shape[0], ctx.rows):
            e = slice(s, s + ctx.rows)
            d = torch.exp(flat[e].float() / ctx.temperature - lse[e, None]).mul_(-g[e])
            d.scatter_add_(-1, tok[e], g[e])
            out[e] = d.div_(ctx.temperature)
        return out.view(logits.shape), None, None, None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, *, temperature: float = 1.0,
                   elements: int = 2 ** 26) -> torch.Tensor:
    """log softmax(logits / T) at `tokens` (float32), a slice of about `elements` logits at a time."""
    return TokenLogprobs.apply(logits, tokens, temperature, max(1, elements // logits.shape[-1]))


@torch.no_grad()
def token_entropy(logits: torch.Tensor, *, temperature: float = 1.0, elements: int = 2 ** 26) -> torch.Tensor:
    """The entropy (nats, float32) of softmax(logits / T) at every position, a slice at a time."""
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
    rows = max(1, elements // flat.shape[-1])
    for s in range(0, flat.shape[0], rows):
        logp = torch.log_softmax(flat[s : s + rows].float() / temperature, -1)
        out[s : s + rows] = -(logp.exp() * logp).sum(-1)
    return out.view(logits.shape[:-1])


def completion_logprobs(model, *, prompts: Sequence[Sample], completions: Sequence[list[int]], group: int,
                        pad_id: int, cache=None, temperature: float = 1.0, entropy: bool = False):
    """Per-token log-probabilities (B*G, C) of the completions and their mask, each prompt run once;
    with `entropy`, also the entropy (nats) of the policy at every completion position.

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
    logp = token_logprobs(logits, comp, temperature=temperature)
    if not entropy:
        return logp, cmask
    return logp, cmask, token_entropy(logits, temperature=temperature)


def grpo_loss(logp, old_logp, advantages, mask, *, clip_eps: float, kl: float = 0.0, ref_logp=None,
              n_tokens: int | None = None, dual_clip: float = 0.0) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate with group advantages (B*G,), summed over tokens and divided by
    `n_tokens` (the step's completion tokens); plus kl * k3(ref || policy). Returns (loss, {"kl": mean
    kl, "clipped": tokens whose gradient PPO's clip stops, "dual_clipped": those dual clip stops}),
    the counts over `mask` (verl logs the same as pg_clipfrac and pg_clipfrac_lower).
    `old_logp`: the log-probs under the policy that sampled the completions (a fresh group's are
    the current ones, detached; a replayed group's, its stored ones: `old_logprobs`).
    `dual_clip` c > 1: a token with a negative advantage costs at most c * |A|, with no gradient
    past it. PPO's clip leaves -r * A unbounded in r there; a fresh group's r is 1, a replayed one's
    pi_now / pi_then can be anything."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    plain, clipped = ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(plain, clipped)
    on = mask > 0
    stats = {"clipped": int(((clipped < plain) & on).sum())}
    if dual_clip:
        capped = (adv < 0) & (per_token > -dual_clip * adv)
        per_token = torch.where(capped, -dual_clip * adv, per_token)
        stats["dual_clipped"] = int((capped & on).sum())
    mean_kl = 0.0
    if kl and ref_logp is not None:
        d = ref_logp - logp
        k3 = torch.exp(d) - d - 1
        per_token = per_token + kl * k3
        mean_kl = float((k3.detach() * mask).sum() / mask.sum().clamp(min=1))
    denom = n_tokens if n_tokens is not None else int(mask.sum())
    return (per_token * mask).sum() / max(1, denom), {"kl": mean_kl, **stats}


def old_logprobs(logp: torch.Tensor, stored: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """The old policy's per-token log-probs (N, C) for the loss: row i is `stored[i]` (a replayed
    completion's sampling-time log-probs, its length) where given, else the current `logp`, detached."""
    old = logp.detach().clone()
    for i, lp in enumerate(stored):
        if lp is not None:
            old[i, : len(lp)] = lp.to(old.device, old.dtype)
    return old


# --------------------------------------------------------------------------- rewards
def rule_rewards(cfg, task):
    """reward = accuracy_weight * accuracy + format_weight * format, per completion."""
    def fn(texts, items, **_):
        acc_r = accuracy_reward(texts, items=items, task=task)
        fmt_r = format_reward(texts)
        total = hybrid_reward(acc_r, fmt_r, None, accuracy_weight=cfg.accuracy_weight, format_weight=cfg.format_weight)
        return total, {"accuracy": acc_r, "format": fmt_r}
    return fn


def hybrid_rewards(cfg, task, reward, *, rows=None):
    """R1V2's r = r_rule + rm_weight * norm(r_theta) + r_format; `reward`: a LocalReward or
    RemoteReward (`r1v/train/rm.py`), which scores the task's row as the reward model saw it."""
    def fn(texts, items, *, samples, group):
        acc_r = accuracy_reward(texts, items=items, task=task)
        fmt_r = format_reward(texts)
        full = [task.read_row(rows[s.index], root=rows.root(s.index)) for s in samples]
        each = lambda xs: [x for x in xs for _ in range(group)]  # noqa: E731
        raw = reward.score(each(full), each([task.prompt(f) for f in full]), texts)
        term = normalise_rm(raw, group, scheme=cfg.rm_norm, clip=cfg.rm_clip, center=cfg.rm_center,
                            scale=cfg.rm_scale)
        total = hybrid_reward(acc_r, fmt_r, term, accuracy_weight=cfg.accuracy_weight,
                              format_weight=cfg.format_weight, rm_weight=cfg.rm_weight)
        return total, {"accuracy": acc_r, "format": fmt_r, "rm": [float(r) for r in raw if math.isfinite(r)]}
    return fn


# --------------------------------------------------------------------------- one step
class Unit(NamedTuple):
    """One prompt's group as the loss sees it: fresh from this step's rollouts, or replayed from the
    buffer with the log-probs its completions were sampled with (`stored`; None when fresh)."""

    prompt: Sample
    completions: list[list[int]]
    advantages: list[float]
    stored: list[torch.Tensor] | None
    fresh: bool


def step(engine: Engine, batch: Sequence[Sample], *, cfg, tok, stop_id: int, rewards_fn, cache=None, ref=None,
         min_new_tokens: int = 0, task=None, buffer: SelectiveSampleBuffer | None = None, replay_samples=None,
         step_no: int = 0, seed: int = 0, critical: dict | None = None, rollouts=None, images=None) -> dict:
    """One GRPO step: G rollouts per prompt (prefix shared; or on vLLM: `rollouts`, with `images(batch)`
    the prompts' pictures), rewards, advantages; with a `buffer`, buffered groups replace uniform ones
    (`replay_samples(positions)` gives their prompts); one update."""
    acc = engine.acc
    G = cfg.generations_per_prompt
    t0 = time.perf_counter()
    if rollouts is not None:
        gens = rollouts.generate(batch, images(batch), n=G, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_completion_tokens, min_new_tokens=min_new_tokens)
    else:
        with engine.generating() as model:
            gens = generate(model, batch, stop_id=stop_id, pad_id=tok.pad_token_id, n=G, temperature=cfg.temperature,
                            max_new_tokens=cfg.max_completion_tokens, min_new_tokens=min_new_tokens,
                            batch_size=len(batch), image_args=lambda ch: image_inputs(model, ch, cache))
    t_gen = time.perf_counter() - t0
    flat = [c for g in gens for c in g]
    texts = tok.batch_decode(flat, skip_special_tokens=True)
    rewards, parts = rewards_fn(texts, [s.item for s in batch for _ in range(G)], samples=batch, group=G)
    false = [task.hallucinated(s.item, t) for s, t in zip((s for s in batch for _ in range(G)), texts)] if task else []
    false = [float(h) for h in false if h is not None]
    adv = group_advantages(rewards, G)
    useful = informative_groups(rewards, G)

    units = [Unit(s, flat[b * G : (b + 1) * G], adv[b * G : (b + 1) * G], None, True) for b, s in enumerate(batch)]
    replayed: list[Group] = []
    if buffer is not None:
        buffer.expire(step_no)
        n = replay_count(useful, available=len(buffer), when=cfg.ssb.when, target=cfg.ssb.target,
                         max_share=cfg.ssb.max_share)
        replayed = buffer.draw(n, np.random.default_rng([seed, step_no, 1]))
        if replayed:
            prompts = replay_samples([g.position for g in replayed])
            uniform = [k for k, u in enumerate(useful) if not u][: len(replayed)]
            for k, g, s in zip(uniform, replayed, prompts):
                units[k] = Unit(s, [c.tolist() for c in g.completions], g.advantages, g.logprobs, False)
    trained_useful = sum(u for u, unit in zip(useful, units) if unit.fresh) + len(replayed)

    # the loss is normalised by the completion tokens of the whole step, over every process; the
    # engine averages gradients over processes, so each divides by its share of that count
    mine = float(sum(len(c) for u in units for c in u.completions))
    n_tokens = float(acc.reduce(torch.tensor(mine, device=acc.device), "sum"))
    n_tokens /= acc.num_processes
    groups = list(range(0, len(units), cfg.micro_groups))
    if acc.num_processes == 1:  # a micro-group whose groups are all uniform has no gradient: skip it
        groups = [g0 for g0 in groups
                  if cfg.kl or any(a != 0 for u in units[g0 : g0 + cfg.micro_groups] for a in u.advantages)]
    # every process runs as many forward passes (the engine reduces and gathers in each)
    n = int(acc.reduce(torch.tensor(len(groups), device=acc.device), "max"))
    weights = [1.0] * len(groups) + [0.0] * (n - len(groups))
    groups += [0] * (n - len(groups))
    engine.module.train()
    loss_total, kl_total, clip_counts, ents = 0.0, 0.0, [0, 0], []
    for k, (g0, weight) in enumerate(zip(groups, weights)):
        part = units[g0 : g0 + cfg.micro_groups]
        comps = [c for u in part for c in u.completions]
        a = torch.tensor([x for u in part for x in u.advantages], device=acc.device, dtype=torch.float32)
        args = dict(prompts=[u.prompt for u in part], completions=comps, group=G, pad_id=tok.pad_token_id, cache=cache,
                    temperature=cfg.temperature)
        ref_logp = None
        if ref is not None:
            with torch.no_grad():
                ref_logp, _ = ref(fn=completion_logprobs, **args)
        with engine.no_sync(last=k == len(groups) - 1):
            logp, mask, ent = engine(completion_logprobs, entropy=True, **args)
            stored = [lp for u in part for lp in (u.stored if u.stored is not None else [None] * G)]
            loss, st = grpo_loss(logp, old_logprobs(logp, stored), a, mask.float(), clip_eps=cfg.clip_eps,
                                 kl=cfg.kl, ref_logp=ref_logp, n_tokens=n_tokens, dual_clip=cfg.dual_clip)
            acc.backward(loss * weight)
        loss_total += loss.item() * weight
        kl_total += st["kl"] * len(part) / len(units) * weight
        if weight:
            clip_counts[0] += st["clipped"]
            clip_counts[1] += st.get("dual_clipped", 0)
            fresh = [j for j, u in enumerate(part) if u.fresh]
            if fresh and critical is not None:
                comp = torch.nn.utils.rnn.pad_sequence([torch.tensor(c) for c in comps], batch_first=True,
                                                       padding_value=tok.pad_token_id).to(mask.device)
                rows = [j * G + i for j in fresh for i in range(G)]
                reasoning = reasoning_mask(comp[rows], mask[rows], critical["close_id"])
                ents.append((ent[rows], reasoning, comp[rows]))
            if buffer is not None:  # the fresh informative groups, with the log-probs they were sampled with
                lp = logp.detach()
                buffer.add([Group.of(u.prompt.index, u.completions, u.advantages, lp[j * G : (j + 1) * G], step_no)
                            for j, u in enumerate(part) if u.fresh and any(x != 0 for x in u.advantages)])
    engine.step()
    engine.module.eval()
    crit = math.nan
    if ents:
        width = max(e.shape[1] for e, _, _ in ents)
        pad = lambda t, v: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=v)  # noqa: E731
        crit = critical_entropy(torch.cat([pad(e, 0.0) for e, _, _ in ents]),
                                torch.cat([pad(r, False) for _, r, _ in ents]), mode=critical["mode"],
                                share=critical["share"], tokens=torch.cat([pad(c, 0) for _, _, c in ents]),
                                word_ids=critical.get("word_ids"))
    # the step's numbers over every process's groups
    rm = parts.get("rm", [])
    sums = acc.reduce(torch.tensor([sum(rewards), sum(parts["accuracy"]), sum(parts["format"]),
                                    sum(len(c) for c in flat), len(rewards), effective_ratio(rewards, G) * len(batch),
                                    len(batch), loss_total, kl_total, sum(false), len(false), trained_useful,
                                    len(replayed), sum(rm), len(rm), 0.0 if math.isnan(crit) else crit,
                                    0.0 if math.isnan(crit) else 1.0, *clip_counts],
                                   dtype=torch.float64, device=acc.device), "sum").tolist()
    n, k = sums[4], acc.num_processes
    out = dict(reward=sums[0] / n, accuracy=sums[1] / n, format=sums[2] / n, length=sums[3] / n,
               effective=sums[5] / sums[6], effective_trained=sums[11] / sums[6], replayed=int(sums[12]),
               # each process's loss is over n_tokens, the step's tokens / k: its sum is k times the step's
               loss=sums[7] / k, kl=sums[8] / k, seconds=round(time.perf_counter() - t0, 3),
               generate_seconds=round(t_gen, 3))
    if buffer is not None:
        out["buffer"] = int(acc.reduce(torch.tensor(len(buffer), device=acc.device), "sum"))
        # only replayed groups are off-policy (a fresh group's ratio is 1): the share of the step's trained
        # tokens whose gradient the clip, and the dual clip, stopped
        out["clipped"] = sums[17] / max(1.0, n_tokens * k)
        out["dual_clipped"] = sums[18] / max(1.0, n_tokens * k)
    if sums[14]:
        out["rm_score"] = sums[13] / sums[14]
    if sums[16]:
        out["critical_entropy"] = sums[15] / sums[16]
    if sums[10]:
        out["hallucination"] = sums[9] / sums[10]
    return out


def setup(model, cfg) -> tuple[Engine, object]:
    """(engine, KL reference placed by the engine, or None)."""
    ref = copy.deepcopy(model).requires_grad_(False) if cfg.kl else None  # before LoRA goes in
    engine = Engine(model, cfg.parts, weight_decay=0.0, betas=(0.9, 0.99), dropout=False)
    if ref is not None:
        from r1v.train.engine import TrainModule

        ref = engine.acc.prepare_model(TrainModule(ref), evaluation_mode=True)
    return engine, ref


def prompt_schedule(pool: np.ndarray, per_step: int, *, seed: int, start: int = 0):
    """Each step's prompts (row indices), drawn without replacement from `pool` by (seed, step)."""
    for i in itertools.count(start):
        yield np.random.default_rng([seed, i]).choice(pool, min(per_step, len(pool)), replace=False)


# --------------------------------------------------------------------------- the prompt pool
def prompt_key(ctx: Context) -> str:
    """The data file GRPO's prompts come from: `data.prompts` when set (R1V2: no SFT data), else D."""
    return "prompts" if ctx.cfg.data.prompts else "sft"


def prompt_pool(ctx: Context) -> np.ndarray:
    """R1V: D_rm(tau), the rows of D whose reward-model score is at least grpo.tau. With
    `data.prompts` (R1V2), every row of it (the offline filter, `grpo.filter_pool`, thins it)."""
    from r1v.train.sft import scores_of

    if prompt_key(ctx) == "prompts":
        return np.arange(len(ctx.rows("prompts")), dtype=np.int64)
    pool = d_rm(scores_of(ctx, ctx.rows("sft", need=("id", "response"))), ctx.cfg.grpo.tau)
    if not len(pool):
        raise R1VError(f"no SFT sample scores grpo.tau={ctx.cfg.grpo.tau} or more: no prompts for GRPO")
    return pool


def split_probe(ctx: Context, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training pool, probe rows): with `grpo.select=entropy` or `eval_every`, `probe_prompts`
    rows of the pool (a seeded draw) are held out to measure the critical-token entropy."""
    cfg = ctx.cfg.grpo
    if not cfg.eval_every or not cfg.probe_prompts:
        return pool, pool[:0]
    n = min(cfg.probe_prompts, len(pool) // 2)
    probe = np.sort(np.random.default_rng([ctx.cfg.seed, 31]).choice(pool, n, replace=False))
    return np.setdiff1d(pool, probe), probe


def filter_file(ctx: Context, rank: int):
    return ctx.dir / "grpo-filter" / f"rollouts-{rank}.jsonl"


def filter_settings(ctx: Context) -> dict:
    """What the filter's rollouts depend on: the policy and the prompts (their content: a moved run
    filters nothing again), G, the sampling settings and the seed. `filter_limit` is not among them:
    a larger limit rolls out only the prompts not yet done."""
    from r1v.io import content_digest, folder_files
    from r1v.train.data import shard_files

    cfg = ctx.cfg.grpo
    ref = cfg.base or ctx.policy_before("grpo")
    folder = ctx.dir / ref if ref.split("/")[0] in ("transfer", "sft", "mpo", "grpo") else Path(ref)
    prompts = shard_files(ctx.data_file(prompt_key(ctx)))
    return {"policy": content_digest(folder_files(folder)), "prompts": content_digest((f.name, f) for f in prompts),
            "generations": cfg.generations_per_prompt, "temperature": cfg.temperature,
            "max_completion_tokens": cfg.max_completion_tokens, "seed": ctx.cfg.seed, "task": ctx.cfg.data.task}


def filter_pool(ctx: Context, pool: np.ndarray, *, engine: Engine | None = None, tok=None, enc=None) -> np.ndarray:
    """R1V2's offline filter: each prompt of `pool` (the first `filter_limit` in a seeded order)
    rolled out G times by the policy GRPO starts from, scored by the task; the prompts whose G
    answers are all right or all wrong are dropped. Rollouts are appended to
    `<run>/grpo-filter/rollouts-<rank>.jsonl` as they finish, so a crash loses one chunk at most and a
    rerun goes on. Returns the kept rows, sorted."""
    cfg = ctx.cfg.grpo
    G = cfg.generations_per_prompt
    order = np.random.default_rng([ctx.cfg.seed, 17]).permutation(pool)
    if cfg.filter_limit:
        order = order[: cfg.filter_limit]
    rank, world = ctx.state.process_index, ctx.state.num_processes
    path = filter_file(ctx, rank)
    done = {}
    made_by = filter_settings(ctx)
    stamp = path.parent / "settings.json"
    if ctx.main and path.parent.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != made_by):
        print(f"grpo: {path.parent} was rolled out under other settings or another policy: filtering afresh")
        shutil.rmtree(path.parent)
    ctx.state.wait_for_everyone()
    if ctx.main:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(stamp, made_by)
    ctx.state.wait_for_everyone()
    spent = {}  # row -> the seconds its rollouts took, when an earlier attempt made them
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                done[int(r["row"])] = r["correct"]
                spent[int(r["row"])] = r.get("seconds", 0.0)
            except (ValueError, KeyError):
                break  # a line cut by a crash: that chunk is rolled out again
    mine = [int(r) for r in order[rank::world]]
    todo = [r for r in mine if r not in done]
    reused = sum(spent[r] for r in mine if r in done)
    # every process enters the engine's generation together (it gathers sharded weights), even one
    # whose share was rolled out before a crash
    if any(ctx.everyone(bool(todo))):
        if engine is None:
            model, tok = ctx.load_model(cfg.base or ctx.policy_before("grpo"))
            enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
            engine = Engine(model, cfg.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ctx.data(prompt_key(ctx), enc, field="")
        with open(path, "a") as f, tqdm(total=len(mine), initial=len(mine) - len(todo), desc="grpo: filter pool",
                                        leave=False, disable=not ctx.main) as bar, engine.generating() as model:
            t0 = time.perf_counter()
            for k, chunk in enumerate(ctx.stream(data, todo, cfg.micro_groups)):
                torch.manual_seed(ctx.cfg.seed * 1_000_003 + chunk[0].index)  # a chunk's rollouts: the same on a rerun
                gens = generate(model, chunk, stop_id=enc.stop_id, pad_id=tok.pad_token_id, n=G,
                                temperature=cfg.temperature, max_new_tokens=cfg.max_completion_tokens,
                                batch_size=len(chunk), image_args=lambda ch, m=model: image_inputs(m, ch, None))
                texts = tok.batch_decode([c for g in gens for c in g], skip_special_tokens=True)
                right = accuracy_reward(texts, items=[s.item for s in chunk for _ in range(G)], task=ctx.task)
                t1, t0 = t0, time.perf_counter()
                for b, s in enumerate(chunk):
                    done[int(s.index)] = right[b * G : (b + 1) * G]
                    f.write(json.dumps({"row": int(s.index), "id": s.id, "correct": done[int(s.index)],
                                        "seconds": round((t0 - t1) / len(chunk), 4)}) + "\n")
                f.flush()
                bar.update(len(chunk))
    verdicts = [(r, informative_groups(done[r], G)[0], min(done[r]) == 1) for r in mine]
    if world > 1:
        from accelerate.utils import gather_object

        verdicts = gather_object(verdicts)
    kept = np.array(sorted(r for r, keep, _ in verdicts if keep), dtype=np.int64)
    all_right = sum(1 for _, keep, right in verdicts if not keep and right)
    # seconds_reused: what an earlier attempt spent on the rollouts taken from the file (this process's)
    note = {"filtered": len(verdicts), "kept": len(kept), "all_right": all_right,
            "all_wrong": len(verdicts) - len(kept) - all_right, "seconds_reused": round(reused, 3)}
    ctx.results["stages"].setdefault("grpo", {})["filter"] = note
    ctx.save_results()
    if ctx.main:
        print(f"grpo: the pool filter kept {len(kept)} of {len(verdicts)} prompts ({note['all_wrong']} all wrong, "
              f"{note['all_right']} all right)")
    if not len(kept):
        raise R1VError("the pool filter kept no prompt: every group was uniform; lower grpo.tau, raise "
                       "grpo.filter_limit, or leave grpo.filter_pool off")
    return kept


def run_filter(ctx: Context) -> None:
    """`r1v train grpo-filter`: the pool filter alone (GRPO with grpo.filter_pool=true reuses it)."""
    t0 = time.perf_counter()
    kept = filter_pool(ctx, split_probe(ctx, prompt_pool(ctx))[0])
    if ctx.main:
        print(f"grpo-filter: {len(kept)} prompts kept in {time.perf_counter() - t0:.0f} s -> "
              f"{filter_file(ctx, 0).parent}")


# --------------------------------------------------------------------------- R1V3's probe
PROBE_ROLLOUTS = 4  # per probe prompt
# how `choose` tells an earlier checkpoint's entropy from the last's (recorded with the choice)
TEST = ("paired bootstrap over the probe prompts; an earlier checkpoint wins if the gap's interval, at 1 - 0.05/k "
        "for k earlier checkpoints (Bonferroni), lies above 0: at most 2.5% one-sided over all k")


def finite(x: float) -> float | None:
    """`x` rounded for the record, None for NaN (JSON has no NaN)."""
    return None if math.isnan(x) else round(x, 5)


def kept(prompts: Sequence[torch.Tensor]) -> list[list[float]]:
    """A probe's per-prompt entropies as recorded, to five digits: what `choose` resamples, in a run and
    after a crash alike."""
    return [[round(float(x), 5) for x in p] for p in prompts]


def gap_record(g: dict) -> dict:
    """One checkpoint's gap to the last (`choose`'s), as recorded."""
    return {k: finite(v) for k, v in g.items() if k in ("gap", "lo", "hi", "level")}


def probe(engine: Engine, chunks, *, cfg, tok, stop_id: int, critical: dict, task, cache=None, seed: int = 0,
          n: int = PROBE_ROLLOUTS) -> dict:
    """R1V3's probe of one checkpoint: `n` rollouts per probe prompt (`chunks`: lists of Samples,
    streamed) at the GRPO temperature, sampled under a fixed seed that leaves the training RNG as it was.
    Returns their critical-token entropy, the share of them answered right, and per prompt the
    entropies the measure draws from (`critical.counted`, its rollouts joined), which `choose` resamples."""
    per_prompt, right = [], []
    # manual_seed reseeds the accelerator too, and generate() samples there: fork this device's RNG as well.
    here = [torch.accelerator.current_device_index()] if torch.accelerator.is_available() else []
    with torch.random.fork_rng(devices=here), engine.generating() as model, torch.no_grad():
        torch.manual_seed(seed)
        for chunk in chunks:
            gens = generate(model, chunk, stop_id=stop_id, pad_id=tok.pad_token_id, n=n, temperature=cfg.temperature,
                            max_new_tokens=cfg.max_completion_tokens, batch_size=len(chunk),
                            image_args=lambda ch: image_inputs(model, ch, cache))
            comps = [c for g in gens for c in g]
            _, mask, ent = completion_logprobs(model, prompts=chunk, completions=comps, group=n,
                                               pad_id=tok.pad_token_id, cache=cache, temperature=cfg.temperature,
                                               entropy=True)
            comp = torch.nn.utils.rnn.pad_sequence([torch.tensor(c) for c in comps], batch_first=True,
                                                   padding_value=tok.pad_token_id).to(mask.device)
            rows = counted(ent, reasoning_mask(comp, mask, critical["close_id"]), mode=critical["mode"], tokens=comp,
                           word_ids=critical.get("word_ids"))
            per_prompt += [torch.cat(rows[j : j + n]).cpu() for j in range(0, len(rows), n)]
            right += accuracy_reward(tok.batch_decode(comps, skip_special_tokens=True),
                                     items=[s.item for s in chunk for _ in range(n)], task=task)
    return {"entropy": critical_value(per_prompt, mode=critical["mode"], share=critical["share"]),
            "accuracy": statistics.fmean(right) if right else math.nan, "prompts": per_prompt}


def probe_file(ctx: Context, step: int) -> Path:
    """Where the probe of checkpoint `step` is kept (its per-prompt entropies, for the choice at the end)."""
    return ctx.dir / "grpo-probe" / f"step-{step}.json"


def reprobe(ctx: Context, seeds: Sequence[int]) -> dict:
    """`r1v train grpo-probe`: probe a finished GRPO run's checkpoints again, with the probe's rollouts drawn
    at each of `seeds`, and make R1V3's choice from each probe: does the choice hold when the probe is
    sampled again? The recipe's seed reproduces the run's own probe. Returns {seed: {"entropy": {step: x},
    "accuracy": {step: x}, "chosen": step, "gaps": {step: gap to the last}}}, also kept in
    <run>/grpo-probe/seeds.json."""
    cfg = ctx.cfg.grpo
    st = ctx.results["stages"].get("grpo", {})
    if "grpo" not in ctx.results["done"] or not st.get("candidates"):
        raise R1VError(f"{ctx.dir} has no finished GRPO stage with probed checkpoints: run it with "
                       f"grpo.eval_every=N grpo.select=entropy first (recipes/r1v2-tiny.yaml does)")
    last = max(c["step"] for c in st["candidates"])
    sel = st.get("selected") or {}
    adopted = sel.get("step", last) != last
    folders = {c["step"]: ctx.dir / ("grpo" if c["step"] == last and not adopted else f"grpo@{c['step']}")
               for c in st["candidates"]}
    missing = [f.name for f in folders.values() if not (f / "config.json").exists()]
    if missing:
        raise R1VError(f"checkpoints {', '.join(missing)} of {ctx.dir} are gone (grpo.select=last keeps none but "
                       f"the last): rerun GRPO with grpo.select=entropy to keep them")
    _, probe_rows = split_probe(ctx, prompt_pool(ctx))
    found = {seed: {"entropy": {}, "accuracy": {}} for seed in seeds}
    probes = {seed: {} for seed in seeds}
    for at, folder in folders.items():  # one model load per checkpoint, every seed on it
        if ctx.main:
            print(f"grpo-probe: step {at} ({folder.name}), seeds {', '.join(map(str, seeds))}", flush=True)
        model, tok = ctx.load_model(str(folder))
        enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
        engine = Engine(model, cfg.parts, dropout=False)
        critical = critical_setup(cfg, tok)
        data = ctx.data(prompt_key(ctx), enc, field="")
        for seed in seeds:
            got = probe(engine, ctx.stream(data, probe_rows, cfg.micro_groups), cfg=cfg, tok=tok, stop_id=enc.stop_id,
                        critical=critical, task=ctx.task, seed=seed)
            probes[seed][at] = [torch.tensor(p) for p in kept(got["prompts"])]
            found[seed]["entropy"][at] = finite(got["entropy"])
            found[seed]["accuracy"][at] = finite(got["accuracy"])
        del model, engine
    for seed in seeds:
        chosen, gaps = choose([{"step": at, "critical_entropy": math.nan if x is None else x}
                               for at, x in found[seed]["entropy"].items()],
                              probes[seed], mode=critical["mode"], share=critical["share"], seed=ctx.cfg.seed,
                              device=ctx.state.device)
        found[seed]["chosen"] = chosen["step"]
        found[seed]["gaps"] = {at: gap_record(g) for at, g in gaps.items()}
    if ctx.main:  # added to the seeds probed before (the stage's rerun clears them)
        path = probe_file(ctx, 0).with_name("seeds.json")
        path.parent.mkdir(exist_ok=True)
        before = json.loads(path.read_text()) if path.exists() else {}
        write_json(path, {**before, **{str(k): v for k, v in found.items()}})
    return found


def critical_setup(cfg, tok) -> dict:
    from r1v.model.templates import THINK_CLOSE

    out = {"mode": cfg.critical, "share": cfg.critical_share, "close_id": tok.convert_tokens_to_ids(THINK_CLOSE)}
    if cfg.critical == "words":
        out["word_ids"] = critical_token_ids(tok, cfg.critical_words)
    return out


# --------------------------------------------------------------------------- the stage
def run(ctx: Context) -> None:
    cfg = ctx.cfg.grpo
    t0 = time.perf_counter()
    pool, probe_rows = split_probe(ctx, prompt_pool(ctx))
    model, tok = ctx.load_model(cfg.base or ctx.policy_before("grpo"))
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine, ref = setup(model, cfg)
    rollouts = open_rollouts(ctx, engine, tok, enc)
    # the reward model is opened (an endpoint asked once) before the long work, and everything that
    # draws random numbers while loading (its head) before the RNG is restored, so a resumed run
    # samples as the uninterrupted one did
    if cfg.reward_model == "none":
        rewards_fn = rule_rewards(cfg, ctx.task)
    else:
        from r1v.train.rm import open_reward

        rewards_fn = hybrid_rewards(cfg, ctx.task, open_reward(ctx, cfg.reward_model, "grpo.reward_model"),
                                    rows=ctx.rows(prompt_key(ctx)))
    if cfg.filter_pool:
        pool = filter_pool(ctx, pool, engine=engine, tok=tok, enc=enc)
    cache = ctx.feature_cache("grpo") if not cfg.parts.vision else None
    ckpt = ctx.checkpoints("grpo", since=t0)
    buffer = SelectiveSampleBuffer(cfg.ssb.size, max_age=cfg.ssb.max_age) if cfg.ssb.enabled else None
    pos = ckpt.resume(engine)  # restores the sampling RNG with the weights, and the buffer
    if pos is None:
        torch.manual_seed(ctx.cfg.seed)
        pos = {"step": 0, "history": [], "candidates": []}
        # a killed attempt's filter rollouts, reused (a resumed checkpoint's seconds hold them already)
        ckpt.earlier += ctx.results["stages"].get("grpo", {}).get("filter", {}).get("seconds_reused", 0.0)
        if ctx.main:  # an earlier run's candidates would be mistaken for this one's
            for old in ctx.dir.glob("grpo@*"):
                shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(ctx.dir / "grpo-probe", ignore_errors=True)
    elif buffer is not None and pos.get("local"):
        buffer.load_state_dict(pos["local"])
    start, history, candidates = pos["step"], pos["history"], pos.get("candidates", [])
    ctx.metrics.forget("grpo", start)
    acc = engine.acc
    if len(pool) < acc.num_processes:  # a step draws at most the pool; a process left without would train a copy
        raise R1VError(f"GRPO's pool holds {len(pool)} prompts (after the filter), fewer than the "
                       f"{acc.num_processes} processes: give it more prompts, or set grpo.filter_pool=false")
    data = ctx.data(prompt_key(ctx), enc, field="")
    stream = batches(data, itertools.islice(prompt_schedule(pool, cfg.prompts_per_step, seed=ctx.cfg.seed, start=start),
                                            cfg.steps - start),
                     rank=acc.process_index, world=acc.num_processes, workers=ctx.workers, seed=ctx.cfg.seed,
                     cache=cache)
    critical = critical_setup(cfg, tok)
    probes = {}  # step -> its probe's entropies per prompt (`choose` resamples them)

    def checkpoint_candidate(at: int) -> None:
        """R1V3: the probe of the model at step `at` (kept as grpo@at when grpo.select=entropy)."""
        got = probe(engine, ctx.stream(data, probe_rows, cfg.micro_groups), cfg=cfg, tok=tok, stop_id=enc.stop_id,
                    critical=critical, task=ctx.task, cache=cache, seed=ctx.cfg.seed)
        ent = got["entropy"]
        record = kept(got["prompts"])
        probes[at] = [torch.tensor(p) for p in record]
        if ctx.main:
            probe_file(ctx, at).parent.mkdir(exist_ok=True)
            write_json(probe_file(ctx, at), {"step": at, "critical_entropy": finite(ent), "accuracy":
                                             finite(got["accuracy"]), "prompts": record}, indent=None)
        evaluated = ctx.results["stages"].get(f"grpo@{at}", {}).get("eval", {}).get("visual", {})
        candidates.append({"step": at, "critical_entropy": finite(ent), "probe_accuracy": finite(got["accuracy"]),
                           "accuracy": evaluated.get("accuracy"), "hallucination": evaluated.get("hallucination")})
        ctx.results["stages"].setdefault("grpo", {})["candidates"] = candidates
        ctx.save_results()

    warm = max(1, math.ceil(0.03 * cfg.steps))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="grpo", leave=False, disable=not ctx.main)
    for i, batch in zip(bar, stream):
        lr = cfg.lr * min(1.0, (i + 1) / warm)  # constant after a linear warm-up
        engine.set_lr(lr)
        row = step(engine, batch, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn, cache=cache, ref=ref,
                   task=ctx.task, buffer=buffer, replay_samples=lambda positions: next(loader(data, [positions])),
                   step_no=i, seed=ctx.cfg.seed, critical=critical, rollouts=rollouts,
                   images=lambda b: ctx.images(prompt_key(ctx), b))
        history.append({k: row[k] for k in ("reward", "effective", "effective_trained", "replayed")})
        # the learning rate unrounded, as MPO logs it: rounded to 5 decimals, 1.5e-5 would read 2e-05
        ctx.metrics.log(stage="grpo", step=i, **{k: round(v, 5) if isinstance(v, float) else v
                                                  for k, v in row.items()}, lr=lr)
        if cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < cfg.steps:
            with scoring(engine, uneven(rollouts)) as m:
                scored = ctx.evaluate(m, tok, f"grpo@{i + 1}", rollouts=uneven(rollouts))
            rate = scored.get("visual", {}).get("hallucination")
            checkpoint_candidate(i + 1)
            if cfg.select == "entropy":
                ctx.save(engine.model, f"grpo@{i + 1}", tok, state=engine.state_dict())
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
            ckpt.save(engine, i + 1, {"step": i + 1, "history": history, "candidates": candidates},
                      local=buffer.state_dict() if buffer is not None else None)
    del ref
    last = len(history)
    ctx.save(engine.model, "grpo", tok, state=engine.state_dict())
    with scoring(engine, uneven(rollouts)) as m:
        ctx.evaluate(m, tok, "grpo", rollouts=uneven(rollouts))
    if cfg.eval_every and not any(c["step"] == last for c in candidates):  # a hallucination stop probed it already
        ctx.results["stages"][f"grpo@{last}"] = {"eval": ctx.results["stages"]["grpo"]["eval"]}
        checkpoint_candidate(last)
    extra = {}
    if cfg.select == "entropy" and candidates:
        decision = None
        if ctx.main:  # decided once and sent to every process, which then agree on what `adopt` does
            for c in candidates:  # those probed before a crash, from their files
                if c["step"] not in probes and probe_file(ctx, c["step"]).exists():
                    probes[c["step"]] = [torch.tensor(p) for p in
                                         json.loads(probe_file(ctx, c["step"]).read_text())["prompts"]]
                elif c["step"] not in probes:
                    print(f"grpo: step {c['step']} has no probe file ({probe_file(ctx, c['step'])}): it cannot be "
                          f"chosen over the last")
            chosen, gaps = choose([{**c, "critical_entropy": math.nan if c["critical_entropy"] is None else
                                    c["critical_entropy"]} for c in candidates], probes, mode=critical["mode"],
                                  share=critical["share"], seed=ctx.cfg.seed, device=acc.device)
            decision = chosen["step"], gaps
        chosen_step, gaps = ctx.from_main(decision)
        for c in candidates:
            if c["step"] in gaps:
                c["vs_last"] = gap_record(gaps[c["step"]])
        extra["selected"] = {"rule": "entropy", "test": TEST, "step": chosen_step, "last": last}
        if chosen_step != last:
            adopt(ctx, f"grpo@{chosen_step}", keep_last=f"grpo@{last}")
    first, tail = history[: max(1, len(history) // 5)], history[-max(1, len(history) // 5):]
    mean = lambda rows, k: statistics.fmean(r[k] for r in rows)  # noqa: E731
    ctx.mark_done("grpo", time.perf_counter() - t0 + ckpt.earlier, prompts=len(pool), probe_prompts=len(probe_rows),
                  probe_rollouts=PROBE_ROLLOUTS,
                  steps_run=len(history), reward_first=mean(first, "reward"), reward_last=mean(tail, "reward"),
                  effective_first=mean(first, "effective"), effective_last=mean(tail, "effective"),
                  effective_trained_first=mean(first, "effective_trained"),
                  effective_trained_last=mean(tail, "effective_trained"),
                  replayed=sum(r.get("replayed", 0) for r in history), **extra)
    ckpt.clear()


def adopt(ctx: Context, chosen: str, *, keep_last: str) -> None:
    """Make the checkpoint `chosen` (grpo@N) GRPO's output: the last model moves to `keep_last`,
    `chosen`'s folder, held-out scores and output files become `grpo`'s."""
    if ctx.main:
        shutil.rmtree(ctx.dir / keep_last, ignore_errors=True)
        (ctx.dir / "grpo").rename(ctx.dir / keep_last)
        shutil.copytree(ctx.dir / chosen, ctx.dir / "grpo")
        out = ctx.dir / "outputs"
        for f in sorted(out.glob("grpo-*.jsonl")) if out.is_dir() else []:
            shutil.copyfile(f, out / f.name.replace("grpo-", f"{keep_last}-", 1))
        for f in sorted(out.glob(f"{chosen}-*.jsonl")) if out.is_dir() else []:
            shutil.copyfile(f, out / f.name.replace(f"{chosen}-", "grpo-", 1))
    ctx.state.wait_for_everyone()
    ctx.results["stages"]["grpo"]["eval"] = ctx.results["stages"][chosen]["eval"]
    ctx.save_results()
