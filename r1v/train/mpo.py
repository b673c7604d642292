"""R1V2's Mixed Preference Optimization (method.md, "R1V2 changes"), in rounds of the policy's own
samples: the stage that replaces R1V's SFT.

    r1v train mpo --config recipes/r1v2-tiny.yaml [mpo.threshold=1.5 mpo.rounds=2 ...]

Each round:
1. *sample*: `prompts_per_round` prompts (a seeded draw per round from `data.prompts`, else D's
   rows), K = `samples_per_prompt` completions each from the current policy (the prompt prefilled
   once and its KV cache shared by the K, as GRPO's rollouts);
2. *score*: `rewards.preference_reward`: the reward model's raw score (this run's `rm` stage, a
   folder, or an endpoint) plus the rules: the task's scorer, the R1 format, and a penalty for a
   fact the data contradicts (`task.hallucinated`, where the data knows its facts);
3. *pair*: per prompt its best completion against its worst, when the gap reaches `threshold`
   (R1V2's calibrated threshold; `rewards.best_worst_pairs`); with `factual_chosen`, the best one
   that states no false fact, since a chosen sample is trained towards (NLL) and on the mini-world
   half of the best samples state one (docs/history-r1v2.md, "MPO against SFT"). The pairs, with their log-probs under
   the round's starting policy (the reference), go to `<run>/mpo-pairs/round-K.jsonl` first, so
   a crash while training does not sample again;
4. *train*: L = w1 DPO + w2 BCO + w3 NLL over the pairs (`mpo_loss`), the adapter only by default;
5. *save and score*: `mpo/rK`, held-out accuracy and hallucination rate.

Why not TRL's DPOTrainer (checked, TRL 1.16): its `bco_pair` has no delta (the paper's BCO shifts
the implicit reward by a running mean delta), its `sft` term is a token mean over the batch, not
the paper's per-response length-normalised NLL, its reference is a second forward each step where
a round's reference is fixed and computed once here, and its collator renders images through the
processor's chat template, not R1V's template and PIL-exact tiling. The loss is small and tested
against hand-computed values (`tests/test_mpo.py`).

Decisions (R1V2 leaves them open): the reference is the policy at the round's start (iterative
DPO), delta is the mean of every implicit reward beta * log-ratio seen in earlier steps of the
*round* (TRL's former `RunningMoments`; "past" rewards: the current step's are added after its
update), one pair per prompt (best vs worst), and the loss is the mean over the step's pairs.
delta starts again at 0 each round: a new reference puts every implicit reward back at 0, and a
mean carried over from rewards against the old one would shift BCO by a bias of its own (up to
aa7f5bb it ran on over the stage, and docs/history-r1v2.md's MPO figures from then say so).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from r1v.errors import R1VError
from r1v.rewards import accuracy_reward, best_worst_pairs, format_reward, preference_reward
from r1v.train.context import Context
from r1v.train.data import Rows, loader, schedule
from r1v.train.engine import Engine
from r1v.train.vllm import open_rollouts, uneven
from r1v.train.grpo import completion_logprobs
from r1v.train.loop import lr_at
from r1v.train.rollout import generate
from r1v.train.samples import Encoder, image_inputs


def mpo_loss(logp_c: torch.Tensor, logp_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             len_c: torch.Tensor, *, beta: float, delta: float, w_dpo: float, w_bco: float,
             w_nll: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair MPO loss (B,) and its terms. `logp_*`: summed log-probs of the chosen / rejected
    response under the policy, `ref_*` under the reference, `len_c` the chosen length in tokens.

    DPO: -log sigmoid(beta lr_c - beta lr_r); BCO: -log sigmoid(beta lr_c - delta)
    - log sigmoid(-(beta lr_r - delta)); NLL: -logp_c / len_c (lr: log-ratio to the reference)."""
    rc, rr = beta * (logp_c - ref_c), beta * (logp_r - ref_r)
    dpo = -F.logsigmoid(rc - rr)
    bco = -F.logsigmoid(rc - delta) - F.logsigmoid(-(rr - delta))
    nll = -logp_c / len_c.clamp(min=1)
    return w_dpo * dpo + w_bco * bco + w_nll * nll, {"dpo": dpo, "bco": bco, "nll": nll, "reward_c": rc,
                                                     "reward_r": rr}


class RunningMean:
    """delta: the mean of every value added so far (a count-weighted running mean)."""

    def __init__(self, mean: float = 0.0, count: int = 0):
        self.mean, self.count = mean, count

    def add(self, total: float, n: int) -> None:
        if n:
            self.mean = (self.mean * self.count + total) / (self.count + n)
            self.count += n

    def state(self) -> dict:
        return {"mean": self.mean, "count": self.count}


# --------------------------------------------------------------------------- sample -> score -> pair
def make_pairs(ctx: Context, engine: Engine, tok, enc: Encoder, reward, round_: int, cache, *, rollouts=None) -> dict:
    """Steps 1-3 of a round; writes `<run>/mpo-pairs/round-K.jsonl`; returns the round's numbers.
    `rollouts`: vLLM samples (`r1v/train/vllm.py`); the reference log-probs stay on the engine's model."""
    from r1v.io import write_jsonl

    cfg = ctx.cfg.mpo
    key = "prompts" if ctx.cfg.data.prompts else "sft"
    rows = ctx.rows(key)
    draw = np.random.default_rng([ctx.cfg.seed, round_]).choice(len(rows), min(cfg.prompts_per_round, len(rows)),
                                                                 replace=False)
    mine = draw[ctx.state.process_index :: ctx.state.num_processes]
    # the round's samples are a function of (seed, round, policy): the same after a crash or in another process
    torch.manual_seed(ctx.cfg.seed * 1000 + round_)
    K = cfg.samples_per_prompt
    out, stats = [], {"prompts": 0, "pairs": 0, "reward": [], "accuracy": [], "format": [], "hallucinated": [],
                      "right_over_wrong": 0, "wrong_over_right": 0}
    if rollouts is not None:
        rollouts.sync()
    # one generation context for the whole share: the processes' shares may differ in length, and the
    # engine gathers sharded weights (a collective) on entering it
    with tqdm(total=len(mine), desc=f"mpo/r{round_}: sample", leave=False, disable=not ctx.main) as bar, \
            engine.generating() as model:
        for chunk in ctx.stream(ctx.data(key, enc, field=""), mine, cfg.micro_prompts):
            if rollouts is not None:
                gens = rollouts.generate(chunk, ctx.images(key, chunk), n=K, temperature=cfg.temperature,
                                         max_new_tokens=cfg.max_completion_tokens)
            else:
                gens = generate(model, chunk, stop_id=enc.stop_id, pad_id=tok.pad_token_id, n=K,
                                temperature=cfg.temperature, max_new_tokens=cfg.max_completion_tokens,
                                batch_size=len(chunk), image_args=lambda ch, m=model: image_inputs(m, ch, cache))
            flat = [c for g in gens for c in g]
            texts = tok.batch_decode(flat, skip_special_tokens=True)
            items = [s.item for s in chunk for _ in range(K)]
            acc = accuracy_reward(texts, items=items, task=ctx.task)
            fmt = format_reward(texts)
            false = [ctx.task.hallucinated(it, t) for it, t in zip(items, texts)]
            rm = None
            if reward is not None:
                full = [ctx.task.read_row(rows[s.index], root=rows.root(s.index)) for s in chunk]
                rm = reward.score([f for f in full for _ in range(K)], [ctx.task.prompt(f) for f in full for _ in
                                                                        range(K)], texts)
            total = preference_reward(rm, acc, fmt, false, rm_weight=cfg.rm_weight, accuracy_weight=cfg.accuracy_weight,
                                      format_weight=cfg.format_weight, fact_weight=cfg.fact_weight)
            pairs = best_worst_pairs(total, K, cfg.threshold,
                                     eligible=[h is not True for h in false] if cfg.factual_chosen else None)
            # the reference: this round's starting policy, once per pair (no second model kept)
            ref = _pair_logps(model, chunk, [(flat[c], flat[r]) for c, r in pairs], [c // K for c, _ in pairs],
                              pad_id=tok.pad_token_id, cache=cache)
            for (c, r), (lc, lr) in zip(pairs, ref):
                s = chunk[c // K]
                out.append({"row": int(s.index), "id": s.id, "chosen": flat[c], "rejected": flat[r], "ref_chosen": lc,
                            "ref_rejected": lr, "reward_chosen": total[c], "reward_rejected": total[r],
                            "chosen_text": texts[c], "rejected_text": texts[r], "accuracy_chosen": acc[c],
                            "accuracy_rejected": acc[r]})
                # what the pair teaches about correctness: the rest were ranked by the reward model
                # (and format, and facts) between two answers equally right or equally wrong
                stats["right_over_wrong"] += int(acc[c] > acc[r])
                stats["wrong_over_right"] += int(acc[c] < acc[r])
            stats["prompts"] += len(chunk)
            stats["pairs"] += len(pairs)
            stats["reward"] += total
            stats["accuracy"] += acc
            stats["format"] += fmt
            stats["hallucinated"] += [h for h in false if h is not None]
            bar.update(len(chunk))
    if ctx.state.num_processes > 1:
        from accelerate.utils import gather_object

        out = gather_object(out)
        parts = gather_object([stats])
        stats = {k: sum((p[k] for p in parts), [] if isinstance(stats[k], list) else 0) for k in stats}
    path = pairs_file(ctx, round_)
    if ctx.main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        write_jsonl(tmp, out)
        tmp.replace(path)
    ctx.state.wait_for_everyone()
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return {"prompts": stats["prompts"], "pairs": stats["pairs"], "pair_share": round(stats["pairs"] /
            max(1, stats["prompts"]), 4), "sample_reward": mean(stats["reward"]),
            "sample_accuracy": mean(stats["accuracy"]), "sample_format": mean(stats["format"]),
            "sample_hallucination": mean([float(h) for h in stats["hallucinated"]]),
            "right_over_wrong": stats["right_over_wrong"], "wrong_over_right": stats["wrong_over_right"]}


@torch.no_grad()
def _pair_logps(model, prompts, pairs: Sequence[tuple[list, list]], owners: Sequence[int], *, pad_id: int,
                cache) -> list[tuple[float, float]]:
    """Summed log-probs of each (chosen, rejected) under the current policy (`model`: whole, see
    `Engine.generating`), prompts run once."""
    out = []
    for k in range(0, len(pairs), 16):
        part, who = pairs[k : k + 16], owners[k : k + 16]
        logp, mask = completion_logprobs(model, prompts=[prompts[w] for w in who],
                                         completions=[x for p in part for x in p], group=2, pad_id=pad_id,
                                         cache=cache)
        sums = (logp * mask).sum(-1).tolist()
        out += [(sums[i], sums[i + 1]) for i in range(0, len(sums), 2)]
    return out


def pairs_file(ctx: Context, round_: int):
    return ctx.dir / "mpo-pairs" / f"round-{round_}.jsonl"


# --------------------------------------------------------------------------- train on the pairs
def train_round(ctx: Context, engine: Engine, tok, enc: Encoder, round_: int, cache, pos: dict, ckpt) -> dict:
    """Step 4: the MPO loss over the round's pairs; returns the round's training numbers."""
    cfg, optim, acc = ctx.cfg.mpo, ctx.cfg.mpo.optim, engine.acc
    pairs = Rows(pairs_file(ctx, round_), need=("row", "chosen", "rejected", "ref_chosen", "ref_rejected"))
    n = len(pairs)
    per_step = min(optim.samples_per_step, n)
    steps = max(1, math.ceil(n * optim.epochs / per_step))
    start = pos.get("step", 0)
    delta = RunningMean(**pos.get("delta", {}))
    if start == 0:
        engine.reset_moments()
    plan = []
    for batch in itertools.islice(schedule(n, per_step, seed=ctx.cfg.seed * 1000 + round_, start=start),
                                  steps - start):
        share = batch[acc.process_index :: acc.num_processes]
        plan.append((share if len(share) else batch[:1], bool(len(share))))
    key = "prompts" if ctx.cfg.data.prompts else "sft"
    data = ctx.data(key, enc, field="")
    chunks = ([pairs[int(p)]["row"] for p in share] for share, _ in plan)
    prompts_stream = loader(data, chunks, workers=ctx.workers, seed=ctx.cfg.seed)
    losses = list(pos.get("losses", []))
    engine.module.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"mpo/r{round_}: train", leave=False,
               disable=not ctx.main)
    for step, (share, real), prompts in zip(bar, plan, prompts_stream):
        t0 = time.perf_counter()
        lr = lr_at(step, steps, optim.lr, optim.warmup_ratio)
        engine.set_lr(lr)
        rows = [pairs[int(p)] for p in share]
        n_pairs = float(acc.reduce(torch.tensor(float(len(rows) if real else 0), device=acc.device), "sum"))
        micro = optim.micro_batch_per_device
        parts = [list(range(i, min(i + micro, len(rows)))) for i in range(0, len(rows), micro)]
        n_parts = int(acc.reduce(torch.tensor(len(parts), device=acc.device), "max"))
        weights = [float(real)] * len(parts) + [0.0] * (n_parts - len(parts))
        parts += [[0]] * (n_parts - len(parts))
        sums = torch.zeros(6, dtype=torch.float64)
        for k, (idx, weight) in enumerate(zip(parts, weights)):
            with engine.no_sync(last=k == len(parts) - 1):
                logp, mask = engine(completion_logprobs, prompts=[prompts[i] for i in idx],
                                    completions=[x for i in idx for x in (rows[i]["chosen"], rows[i]["rejected"])],
                                    group=2, pad_id=tok.pad_token_id, cache=cache)
                lp = (logp * mask).sum(-1)
                dev = lp.device
                ref_c = torch.tensor([rows[i]["ref_chosen"] for i in idx], device=dev)
                ref_r = torch.tensor([rows[i]["ref_rejected"] for i in idx], device=dev)
                loss, terms = mpo_loss(lp[0::2], lp[1::2], ref_c, ref_r, mask[0::2].sum(-1).float(), beta=cfg.beta,
                                       delta=delta.mean, w_dpo=cfg.dpo_weight, w_bco=cfg.bco_weight,
                                       w_nll=cfg.nll_weight)
                # over the step's pairs: DDP averages the k processes' gradients, so each divides by n / k
                # (no floor at 1: a step with fewer pairs than processes would be under-weighted)
                step_loss = loss.sum() / (n_pairs / acc.num_processes)
                acc.backward(step_loss * weight)
            if weight:
                t = {k: v.detach() for k, v in terms.items()}
                sums += torch.tensor([float(step_loss.detach()), float(t["dpo"].sum()),
                                      float(t["bco"].sum()), float(t["nll"].sum()),
                                      float((t["reward_c"] + t["reward_r"]).sum()),
                                      float((t["reward_c"] > t["reward_r"]).sum())], dtype=torch.float64)
        engine.step()
        total = acc.reduce(sums.to(acc.device), "sum").tolist()
        npairs = max(1.0, n_pairs)
        delta.add(total[4], int(2 * n_pairs))  # this step's implicit rewards join the past ones
        row = {"loss": total[0] / acc.num_processes, "dpo": total[1] / npairs, "bco": total[2] / npairs,
               "nll": total[3] / npairs, "delta": delta.mean, "preferred": total[5] / npairs}
        losses.append(row["loss"])
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        ctx.metrics.log(stage=f"mpo/r{round_}", step=step, **{k: round(v, 5) for k, v in row.items()}, lr=lr,
                        pairs=int(n_pairs), seconds=round(time.perf_counter() - t0, 3))
        if ckpt.due(step + 1):
            ckpt.save(engine, step + 1, {"round": round_, "step": step + 1, "losses": losses,
                                         "delta": delta.state(), "base": pos.get("base")}, phase=round_)
    engine.module.eval()
    return {"steps": steps, "loss": [losses[0], losses[-1]] if losses else None, "delta": delta.state()}


def run(ctx: Context) -> None:
    cfg = ctx.cfg.mpo
    R = cfg.rounds
    finished = [r for r in range(1, R + 1) if ctx.done(f"mpo/r{r}")]
    last = max(finished, default=0)
    ckpt = ctx.checkpoints("mpo")
    inside = ckpt.peek()
    if inside and inside["round"] <= last:  # killed after the round finished, before its checkpoints went
        ckpt.clear()
    start_from = ctx.policy_before("mpo")
    base = (ckpt.peek() or {}).get("base") or (start_from if last == 0 else f"mpo/r{last}")
    model, tok = ctx.load(base)
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine = Engine(model, cfg.parts, weight_decay=cfg.optim.weight_decay,
                    max_grad_norm=cfg.optim.max_grad_norm, dropout=False)
    rollouts = uneven(open_rollouts(ctx, engine, tok, enc))
    pos = ckpt.resume(engine) or {"round": last + 1, "step": 0, "base": base}
    pos["base"] = base
    cache = ctx.feature_cache("mpo") if not cfg.parts.vision else None
    from r1v.train.rm import open_reward

    reward = open_reward(ctx, ctx.cfg.mpo.reward_model, "mpo.reward_model")
    pos.setdefault("delta", {})  # each round's delta starts at 0; a mid-round checkpoint holds its own
    for r in range(pos["round"], R + 1):
        t1 = time.perf_counter()
        here = pos if pos["round"] == r else {"step": 0, "base": base, "delta": {}}
        ctx.metrics.forget(f"mpo/r{r}", here.get("step", 0))
        made = ctx.results["stages"].get(f"mpo/r{r}", {}).get("sampling")
        if made is None or not pairs_file(ctx, r).exists():
            made = make_pairs(ctx, engine, tok, enc, reward, r, cache, rollouts=rollouts)
            made["seconds"] = round(time.perf_counter() - t1, 1)
            ctx.results["stages"].setdefault(f"mpo/r{r}", {})["sampling"] = made
            ctx.save_results()
        elif not ("path" in here and here is pos):  # the pairs of a killed attempt, no checkpoint after them
            ckpt.earlier += made.get("seconds", 0.0)
        if not made["pairs"]:
            raise R1VError(f"mpo round {r}: no prompt's samples differ by mpo.threshold={cfg.threshold} or more, so "
                           f"no pairs; lower the threshold (see the rewards in {pairs_file(ctx, r).parent})")
        trained = train_round(ctx, engine, tok, enc, r, cache, here, ckpt)
        ctx.save(engine.model, f"mpo/r{r}", tok, state=engine.state_dict())
        with engine.generating() as m:
            ctx.evaluate(m, tok, f"mpo/r{r}")
        ctx.mark_done(f"mpo/r{r}", time.perf_counter() - t1 + ckpt.earlier, **trained, threshold=cfg.threshold)
        ckpt.clear()
    # the rounds' seconds, those finished by an earlier attempt included
    ctx.mark_done("mpo", sum(ctx.results["stages"][f"mpo/r{r}"]["seconds"] for r in range(1, R + 1)),
                  final=f"mpo/r{R}")
