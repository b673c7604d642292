"""The reward model (R1V2's preference signal): an R1V model plus a linear head, trained on
preference pairs with the pairwise loss -log sigmoid(r(x, y+) - r(x, y-)) (Skywork-VL Reward).

    r1v train rm --config recipes/r1v2-tiny.yaml          # -> runs/<name>/rm/ (one folder)
    r1v rm score --model runs/r1v2-tiny/rm --data pairs.jsonl

Pairs are JSON lines `{"id", "prompt", "images": [paths relative to the file], "chosen",
"rejected"}` (`image`: one path; `kind`: an optional label the held-out accuracy is broken down
by; `tie`: true drops the row). `chosen` / `rejected` are the assistant's text after the
template's opening `<think>\\n`, as every response in r1v. Ties (`tie`, or chosen == rejected) are
excluded, as Skywork-VL Reward excludes them.

Decisions, where the papers are silent: the model starts from `rm.base` (a finished stage of this
run, by default `transfer`, or any R1V folder); the vision encoder is frozen (Skywork-VL Reward)
and its features cached, the projector and the LLM train (`rm.parts`); the head is always
trained. The head reads the final hidden state at the response's last token (`rm.pooling: last`,
Skywork-VL Reward's), or the mean over the response's tokens (`mean`). Held-out pair accuracy
(r(y+) > r(y-); a tie counts as wrong) is reported per `kind`. Steps, checkpoints and resuming
are the supervised loop's (`r1v/train/engine.py`).

`rm.phases`, a curriculum the papers do not have: phases run in order on one model and head, each
over the pairs of its `kinds` with its own warm-up and cosine; steps, checkpoints and metrics
count across them, so a crash in a later phase resumes there. On the mini-world, the arithmetic
slips (`wrong_answer`) learned alone first and then every pair reach what every pair from the
start does not (docs/history-r1v2.md, "The reward model").

Scoring a trained one: `LocalReward` in this process, `RemoteReward` against an endpoint
(`r1v rm serve`), both `score(items, prompts, responses) -> [float]`; MPO takes either.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from r1v.errors import R1VError
from r1v.evaluate.tasks import Item
from r1v.model.reward import RewardModel
from r1v.train.context import Context
from r1v.train.data import Encoded, batches, chunked, loader, schedule
from r1v.train.engine import Engine
from r1v.train.loop import lr_at
from r1v.train.samples import Encoder, Sample, image_inputs, padded_batch

PAIR_FIELDS = ("id", "prompt", "chosen", "rejected")


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Per pair, -log sigmoid(r+ - r-) (the Bradley-Terry likelihood of the preference)."""
    return -F.logsigmoid(chosen - rejected)


def pair_item(row: dict, root: Path | None) -> Item:
    """A pair row's prompt and images as the harness Item the encoder reads."""
    names = row.get("images") or ([row["image"]] if row.get("image") else [])
    images = [(root / n).read_bytes() for n in names] if root is not None else []
    return Item(id=str(row["id"]), question=row["prompt"], answer=None, images=images)


class Pairs(Encoded):
    """`data[[i, ...]]` -> [chosen_i, rejected_i, ...]: both Samples share the prompt, its pixels
    and its row index (so its cached features)."""

    def __init__(self, rows, encoder, *, subset=None):
        super().__init__(rows, None, encoder, field="", subset=subset)

    def _encode(self, positions) -> list:
        positions = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        indices = [int(i) for i in (positions if self.subset is None else self.subset[positions])]
        rows = [self.rows[i] for i in indices]
        items = [pair_item(r, self.rows.root(i)) for i, r in zip(indices, rows)]
        chosen = self.encoder.encode_many(items, [r["prompt"] for r in rows], [r["chosen"] for r in rows])
        out = []
        for i, r, s in zip(indices, rows, chosen):
            s.index, s.item = i, dataclasses.replace(s.item, images=[])
            ids = self.encoder.tok(r["rejected"], add_special_tokens=False)["input_ids"]
            out += [s, dataclasses.replace(s, response=ids + [self.encoder.stop_id])]
        return out


def scores_of(rm, samples: list[Sample], *, pad_id: int, cache=None) -> torch.Tensor:
    """(len(samples),) reward scores, read at each sample's last token. Run it inside the engine
    (`engine(scores_of, ...)`) when training."""
    inputs = padded_batch(samples, pad_id)
    device = next(rm.parameters()).device
    last = torch.tensor([len(s) - 1 for s in samples], device=device)
    first = torch.tensor([len(s.prompt) for s in samples], device=device)
    return rm(input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device), last=last,
              first=first, **image_inputs(rm.backbone, samples, cache))


@torch.no_grad()
def score_pairs(rm, tok, data: Pairs, *, batch_size: int = 32, workers: int = 0, desc: str = "rm: held-out",
                indices=None) -> dict:
    """Scores of every pair of `data` (or of its positions `indices`), `batch_size` pairs a forward:
    {"ids", "chosen", "rejected", "kind"}."""
    rm.eval()
    out = {"ids": [], "chosen": [], "rejected": [], "kind": []}
    todo = np.arange(len(data)) if indices is None else np.asarray(indices)
    with tqdm(total=len(todo), desc=desc, leave=False) as bar:
        for chunk in loader(data, chunked(todo, batch_size), workers=workers):
            s = scores_of(rm, chunk, pad_id=tok.pad_token_id).tolist()
            for k in range(0, len(chunk), 2):
                row = data.rows[chunk[k].index]
                out["ids"].append(str(row["id"]))
                out["chosen"].append(s[k])
                out["rejected"].append(s[k + 1])
                out["kind"].append(str(row.get("kind", "all")))
            bar.update(len(chunk) // 2)
    return out


def pair_accuracy(scored: dict) -> dict:
    """Held-out pair accuracy (r+ > r-), overall and per `kind`, with the mean margin."""
    right = [c > r for c, r in zip(scored["chosen"], scored["rejected"])]
    by: dict[str, list[bool]] = {}
    for k, ok in zip(scored["kind"], right):
        by.setdefault(k, []).append(ok)
    n = len(right)
    margins = [c - r for c, r in zip(scored["chosen"], scored["rejected"])]
    return {"accuracy": round(sum(right) / max(1, n), 4), "n": n,
            "margin": round(sum(margins) / max(1, n), 4),
            "by_kind": {k: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(by.items())}}


def usable(rows) -> np.ndarray:
    """Rows that are pairs: not marked `tie` and chosen != rejected (ties are excluded)."""
    keep = rows.column(lambda r: not r.get("tie") and r["chosen"] != r["rejected"], dtype=bool)
    return np.flatnonzero(keep)


@dataclasses.dataclass
class Phase:
    """One phase of the curriculum, as it runs: its rows (indices into the pairs file), its global
    batch, its steps and its peak lr."""

    kinds: list[str]
    ids: np.ndarray
    per_step: int
    steps: int
    lr: float


def kind_codes(rows) -> tuple[np.ndarray, list[str]]:
    """Each row's `kind` as a small integer (4 bytes a row, at millions of rows), and the names."""
    names: dict[str, int] = {}
    codes = rows.column(lambda r: names.setdefault(str(r.get("kind", "all")), len(names)), dtype=np.int32)
    return codes, list(names)


def plan(kinds: np.ndarray, names: list[str], ids: np.ndarray, cfg) -> list[Phase]:
    """The phases `cfg` (an RMConfig) asks for, over the usable rows `ids`, whose kinds are
    `names[kinds[i]]` (one code per row of the file): each phase's rows and steps. No phases: one
    over every pair for optim.epochs. A phase that selects no pair is an error, raised before any
    model loads."""
    from r1v.train.config import RMPhase

    optim = cfg.optim
    out = []
    for k, phase in enumerate(cfg.phases or [RMPhase(kinds=[], epochs=optim.epochs, lr=optim.lr)]):
        wanted = [names.index(n) for n in phase.kinds if n in names]
        mine = ids if not phase.kinds else ids[np.isin(kinds[ids], wanted)]
        if not len(mine):
            have = ", ".join(sorted({names[c] for c in np.unique(kinds[ids])}))
            raise R1VError(f"rm.phases[{k}].kinds={phase.kinds} selects no pair of the training file; its kinds: "
                           f"{have}")
        per_step = min(optim.samples_per_step, len(mine))
        steps = max(1, math.ceil(len(mine) * phase.epochs / per_step))
        out.append(Phase(list(phase.kinds), mine, per_step, steps, phase.lr or optim.lr))
    return out


def run(ctx: Context) -> None:
    cfg = ctx.cfg.rm
    t0 = time.perf_counter()
    rows = ctx.rows("rm_train", need=PAIR_FIELDS)
    ids = usable(rows)
    if not len(ids):
        raise R1VError(f"{ctx.cfg.data.rm_train}: every row is a tie (chosen == rejected, or `tie`): no pairs")
    phases = plan(*kind_codes(rows), ids, cfg)
    model, tok = ctx.load_model(cfg.base)
    rm = RewardModel.build(model, seed=ctx.cfg.seed, pooling=cfg.pooling)
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine = Engine(rm, cfg.parts, weight_decay=cfg.optim.weight_decay, max_grad_norm=cfg.optim.max_grad_norm,
                    dropout=False)
    cache = ctx.feature_cache("rm") if not cfg.parts.vision else None  # row-indexed: phases share it
    ckpt = ctx.checkpoints("rm", since=t0)
    pos = ckpt.resume(engine) or {"step": 0, "losses": []}
    acc, optim = engine.acc, cfg.optim
    total_steps = sum(p.steps for p in phases)
    ctx.metrics.forget("rm", pos["step"])
    losses = pos["losses"]
    engine.module.train()
    bar = tqdm(total=total_steps, initial=pos["step"], desc="rm", leave=False, disable=not ctx.main)
    start = 0  # the global step the phase begins at: steps, checkpoints and metrics count across phases
    for k, phase in enumerate(phases):
        first = max(0, pos["step"] - start)
        if first < phase.steps:
            # each phase its own warm-up and cosine, its own seeded order of its pairs
            order = itertools.islice(schedule(len(phase.ids), phase.per_step, seed=ctx.cfg.seed + k, start=first),
                                     phase.steps - first)
            data = Pairs(rows, enc, subset=phase.ids)
            # two Samples a pair: a step's positions are pairs, each process takes its share of them
            stream = batches(data, order, rank=acc.process_index, world=acc.num_processes, workers=ctx.workers,
                             seed=ctx.cfg.seed + k)
            for local, mine in zip(range(first, phase.steps), stream):
                step = start + local
                t1 = time.perf_counter()
                lr = lr_at(local, phase.steps, phase.lr, optim.warmup_ratio)
                engine.set_lr(lr)
                loss_step, right, n_pairs = _step(engine, mine, tok, cache, optim.micro_batch_per_device)
                losses.append(loss_step)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_step:.3f}", phase=k)
                ctx.metrics.log(stage="rm", step=step, phase=k, loss=round(loss_step, 5),
                                pair_accuracy=round(right / n_pairs, 4), lr=lr, pairs=int(n_pairs),
                                seconds=round(time.perf_counter() - t1, 3))
                if ckpt.due(step + 1):
                    ckpt.save(engine, step + 1, {"step": step + 1, "losses": losses})
        start += phase.steps
    bar.close()
    engine.module.eval()
    state = engine.state_dict()
    trained = [{"kinds": p.kinds or "all", "pairs": int(len(p.ids)), "steps": p.steps, "lr": p.lr} for p in phases]
    if ctx.main:
        from r1v.model.reward import save_reward

        save_reward(engine.model, tok, ctx.dir / "rm", state=state, max_tiles=ctx.cfg.model.max_tiles,
                    info={"base": cfg.base, "pairs": int(len(ids)), "phases": trained})
    ctx.state.wait_for_everyone()
    extra = {"pairs": int(len(ids)), "ties_dropped": int(len(rows) - len(ids)), "phases": trained,
             "loss": [losses[0], losses[-1]] if losses else None}
    if ctx.cfg.data.rm_eval:
        with engine.generating() as whole:  # the whole model (FSDP / ZeRO-3 shards gathered), no collectives
            extra["pairs_eval"] = evaluate(ctx, whole, tok, enc)
    ctx.mark_done("rm", time.perf_counter() - t0 + ckpt.earlier, **extra)
    ckpt.clear()


def _step(engine: Engine, mine: list, tok, cache, micro: int) -> tuple[float, int, float]:
    """One optimiser step on this process's share of the step's pairs: (the step's mean loss over
    every process's pairs, pairs ranked right, pairs in the step)."""
    acc = engine.acc
    pairs = [mine[k : k + 2] for k in range(0, len(mine), 2)]
    real = bool(mine[0].response)  # a process with no share of the step runs one emptied pair, weighted 0
    n_pairs = float(acc.reduce(torch.tensor(float(len(pairs) if real else 0), device=acc.device), "sum"))
    chunks = [pairs[i : i + micro] for i in range(0, len(pairs), micro)]
    n_chunks = int(acc.reduce(torch.tensor(len(chunks), device=acc.device), "max"))
    weights = [float(real)] * len(chunks) + [0.0] * (n_chunks - len(chunks))
    chunks += [pairs[:1]] * (n_chunks - len(chunks))  # every process runs as many forwards
    total, right = 0.0, 0
    for k, (chunk, weight) in enumerate(zip(chunks, weights)):
        flat = [s for p in chunk for s in p]
        with engine.no_sync(last=k == len(chunks) - 1):
            r = engine(scores_of, samples=flat, pad_id=tok.pad_token_id, cache=cache)
            per_pair = pairwise_loss(r[0::2], r[1::2])
            # the mean over the step's pairs on every process (the engine averages over processes)
            loss = per_pair.sum() / (n_pairs / acc.num_processes)
            acc.backward(loss * weight)
        total += loss.item() * weight
        right += int((r[0::2] > r[1::2]).sum()) if weight else 0
    engine.step()
    sums = acc.reduce(torch.tensor([total, right], dtype=torch.float64, device=acc.device), "sum").tolist()
    return sums[0] / acc.num_processes, int(sums[1]), n_pairs


def evaluate(ctx: Context, rm, tok, enc) -> dict:
    """Held-out pair accuracy on `data.rm_eval` (each process its share), its scores written to
    `<run>/outputs/rm-pairs.jsonl`."""
    rows = ctx.rows("rm_eval", need=PAIR_FIELDS)
    ids = usable(rows)
    data = Pairs(rows, enc, subset=ids)
    mine = np.arange(len(ids))[ctx.state.process_index :: ctx.state.num_processes]
    scored = score_pairs(rm, tok, data, batch_size=ctx.cfg.rm.eval_batch_pairs, workers=ctx.workers,
                         indices=mine)
    if ctx.state.num_processes > 1:
        from accelerate.utils import gather_object

        parts = gather_object([scored])
        scored = {k: [x for p in parts for x in p[k]] for k in scored}
    if ctx.main:
        from r1v.io import write_jsonl

        path = ctx.dir / "outputs" / "rm-pairs.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, ({"id": i, "kind": k, "chosen": c, "rejected": r}
                           for i, k, c, r in zip(scored["ids"], scored["kind"], scored["chosen"], scored["rejected"])))
    return pair_accuracy(scored)


# --------------------------------------------------------------------------- scoring, for MPO and `r1v rm score`
def open_reward(ctx: Context, ref: str, setting: str):
    """The reward model a setting (`mpo.reward_model`, `grpo.reward_model`) names, ready to score:
    empty = this run's `rm` stage, a folder, or an http(s) URL of `r1v rm serve`; None for `none`."""
    if ref == "none":
        return None
    if ref.startswith(("http://", "https://")):
        return RemoteReward(ref)
    from r1v.model.reward import load_reward

    path = ctx.dir / "rm" if ref == "" else ref
    if ref == "" and not ctx.done("rm"):
        raise R1VError(f"{setting} is empty, which means this run's reward model, and {path} holds none: run `r1v "
                       f"train rm` with this recipe first")
    rm, tok, _ = load_reward(path, dtype=ctx.dtype, device=str(ctx.state.device))
    return LocalReward(rm, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)


def once_each(score):
    """A scorer's `score(items, prompts, responses)` that sees each distinct (item, prompt, response)
    once and hands its score to every copy. A reward model is a function of its input, so copies must
    score alike, and in bf16 they need not: a copy padded into another batch rounds differently, by a
    few ulps, and when the policy writes one completion for a whole group (common late in RL), the
    group z-score (`normalise_rm`) turns those ulps into rewards of +-1. It also saves the copies'
    forward passes."""
    @functools.wraps(score)
    def once(self, items: list[Item], prompts: list[str], responses: list[str]) -> list[float]:
        keys = list(zip((it.id for it in items), prompts, responses))
        slot: dict = {}
        for k, key in enumerate(keys):
            slot.setdefault(key, k)
        picks = list(slot.values())  # first-seen order (dicts keep it), so a prompt's responses stay together
        got = dict(zip(picks, score(self, [items[k] for k in picks], [prompts[k] for k in picks],
                                    [responses[k] for k in picks])))
        return [got[slot[key]] for key in keys]
    return once


class LocalReward:
    """A reward model in this process: `score(items, prompts, responses)` -> one float each.
    Consecutive responses to the same prompt (MPO's K samples) share one encoding of it and its
    image features."""

    def __init__(self, rm: RewardModel, tok, *, template: str = "r1v", max_tiles: int = 12, batch_size: int = 32):
        self.rm, self.tok, self.batch_size = rm.eval(), tok, batch_size
        self.enc = Encoder(rm.backbone, tok, template=template, max_tiles=max_tiles)

    @once_each
    @torch.no_grad()
    def score(self, items: list[Item], prompts: list[str], responses: list[str]) -> list[float]:
        from r1v.train.data import FeatureCache

        firsts, samples = {}, []
        for k, (item, prompt) in enumerate(zip(items, prompts)):
            firsts.setdefault((item.id, prompt), k)
        order = sorted(set(firsts.values()))
        heads = self.enc.encode_many([items[k] for k in order], [prompts[k] for k in order],
                                     [responses[k] for k in order])
        head_of = {k: dataclasses.replace(s, index=j) for j, (k, s) in enumerate(zip(order, heads))}
        for k, (item, prompt, text) in enumerate(zip(items, prompts, responses)):
            head = head_of[firsts[(item.id, prompt)]]
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            samples.append(dataclasses.replace(head, response=ids + [self.enc.stop_id]))
        cache = FeatureCache(memory_mb=256)  # each prompt's image encoded once in this call
        out = []
        for k in range(0, len(samples), self.batch_size):
            out += scores_of(self.rm, samples[k : k + self.batch_size], pad_id=self.tok.pad_token_id,
                             cache=cache).tolist()
        return out


class RemoteReward:
    """A reward model behind an HTTP endpoint (`r1v rm serve`, or anything that speaks its
    protocol): POST {url}/score with {"prompt": str, "images": [data URLs], "responses": [str]},
    answered by {"scores": [float]} (one request per prompt, its responses together)."""

    def __init__(self, url: str, *, timeout: float = 600.0, api_key: str | None = None):
        import os

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key or os.environ.get('R1V_API_KEY', '')}"} \
            if (api_key or os.environ.get("R1V_API_KEY")) else {}

    def ping(self, setting: str) -> None:
        """One tiny request, so an endpoint that is down is found before the long work, not at step 1."""
        try:
            self.score([Item(id="ping", question="ping", answer="")], ["ping"], ["ping"])
        except R1VError as e:
            raise R1VError(f"{setting}={self.url}: {e}; start `r1v rm serve` there, or set {setting}=none") from None

    @once_each
    def score(self, items: list[Item], prompts: list[str], responses: list[str]) -> list[float]:
        import base64
        import json
        import urllib.error
        import urllib.request

        out = []
        k = 0
        while k < len(items):
            j = k
            while j < len(items) and items[j].id == items[k].id and prompts[j] == prompts[k]:
                j += 1
            images = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in items[k].images]
            body = json.dumps({"prompt": prompts[k], "images": images, "responses": responses[k:j]}).encode()
            request = urllib.request.Request(f"{self.url}/score", data=body, method="POST",
                                             headers={"Content-Type": "application/json", **self.headers})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as r:
                    scores = json.loads(r.read())["scores"]
            except (urllib.error.URLError, OSError, KeyError, ValueError, TypeError) as e:
                raise R1VError(f"the reward endpoint {self.url} failed: {type(e).__name__}: {e}") from None
            if not isinstance(scores, list) or len(scores) != j - k or \
                    not all(isinstance(s, (int, float)) for s in scores):
                raise R1VError(f"the reward endpoint {self.url} did not answer {j - k} scores")
            out += [float(s) for s in scores]
            k = j
        return out
