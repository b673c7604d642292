"""The supervised loop every SFT-like stage shares (align's passes, M0, the SFT iterations).

    engine = Engine(model, parts, weight_decay=0.05, max_grad_norm=1.0)   # once per stage (r1v/train/engine.py)
    losses = supervised(engine, data, optim, lr=2e-4, pad_id=..., name="align/full", ...)

One readable loop on accelerate, so `accelerate launch` runs it unchanged; each pass resets the
optimiser's moments (the paper's passes and iterations are separate runs) but not the engine. Rows
stream in (`r1v/train/data.py`): the step's global batch is a pure function of (seed, step), each
process encodes its share in DataLoader workers, and a pass can start at any step (a resumed
checkpoint). AdamW, linear warm-up then cosine decay (transformers' schedule), gradient accumulation
over micro-batches, clipping. The loss is the mean over every target token of the *step*
(`num_items_in_batch`, summed over processes), so packing, padding, accumulation and the number of
processes all give the same number. Every process runs as many forward passes (sharded engines
gather weights in each one); one with fewer micro-batches runs zero-weighted ones.

`set_parts()` freezes what the config says; LoRA on the LLM comes from peft and is merged back
into the weights when the stage saves, so every checkpoint is a plain R1V model.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from r1v.model.builder import Trainable, set_trainable
from r1v.train.config import Optim, Parts
from r1v.train.data import Encoded, FeatureCache, batches, schedule
from r1v.train.samples import Sample, image_inputs, pack, packed_batch, padded_batch

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class Metrics:
    """Appends one JSON line per logged step to `path` (flushed: nothing lost on a crash), and sends
    the numbers to accelerate's experiment trackers (`tracking`: tensorboard, wandb, mlflow, ...)
    under `<stage>/<name>` tags, each stage on its own step axis."""

    def __init__(self, path: Path | None, *, tracking: Sequence[str] = (), name: str = "r1v",
                 config: dict | None = None):
        self.path = path
        self.trackers = None
        self._start = (list(tracking), name, _flat(config or {})) if path is not None and tracking else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **row) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._start is not None:  # started at the first number: a run that fails its checks leaves none
            from accelerate import Accelerator

            tracking, name, config = self._start
            self.trackers = Accelerator(log_with=tracking, project_dir=str(self.path.parent / "tracking"))
            self.trackers.init_trackers(name, config=config)
            self._start = None
        if self.trackers is not None:
            values = {f"{row.get('stage', 'train')}/{k}": v for k, v in row.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "stage")}
            self.trackers.log(values, step=row.get("step"))

    def close(self) -> None:
        if self.trackers is not None:
            for t in self.trackers.trackers:
                t.finish()
            self.trackers = None

    def forget(self, stage: str, from_step: int = 0) -> None:
        """Drop the lines of `stage` (and of its parts: `sft` covers `sft/m0`...) from `from_step` on:
        logged after the checkpoint a run resumes from, or by a run of the stage that starts over."""
        if self.path is None or not self.path.exists():
            return
        from r1v.io import write_atomic

        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            mine = row.get("stage") == stage or str(row.get("stage", "")).startswith(stage + "/")
            if mine and row.get("step", 0) >= from_step:
                continue
            keep.append(line + "\n")
        write_atomic(self.path, "".join(keep))


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested settings as the flat scalars trackers take (`sft.optim.lr`; lists as text)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def set_parts(model, parts: Parts):
    """Freeze per the config; with LoRA, wrap the LLM's projections (peft). Returns the model to train.
    A reward model (`r1v/model/reward.py`) has its parts frozen the same way; its head always trains."""
    from r1v.model.reward import RewardModel

    vlm = model.backbone if isinstance(model, RewardModel) else model
    set_trainable(vlm, Trainable(vision=parts.vision, projector=parts.projector, language=parts.language))
    if parts.lora_rank > 0 and not parts.language:
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=parts.lora_rank, lora_alpha=parts.lora_alpha, target_modules=LORA_TARGETS)
        inject_adapter_in_model(cfg, vlm)  # (peft leaves only the adapters trainable: re-apply the parts)
        set_trainable(vlm, Trainable(vision=parts.vision, projector=parts.projector, language=False))
        for name, p in vlm.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    if vlm is not model:
        model.head.requires_grad_(True)
        # The score never reaches the LM head: left trainable, it gets no gradient, and DDP's reducer
        # then skips the all-reduce of its bucket (each process keeps its own gradient) and fails on
        # the next step. Tied to the embeddings, it is the embeddings, which the score does use.
        head = vlm.get_output_embeddings()
        if head is not None and head.weight is not vlm.get_input_embeddings().weight:
            head.requires_grad_(False)
    return model


def plain_state(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (the model's, possibly gathered) with LoRA folded in: base + B·A·scale under the base
    layer's own names, so a checkpoint is a plain R1V model. The model keeps its adapters and
    trains on (SFT saves after every iteration)."""
    from peft.tuners.lora import LoraLayer

    out = {k: v for k, v in state.items() if "lora_" not in k}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            for kind in ("weight", "bias"):
                base = out.pop(f"{name}.base_layer.{kind}", None)
                if base is not None:
                    out[f"{name}.{kind}"] = base
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            out[f"{name}.weight"] = out[f"{name}.weight"] + delta.to(out[f"{name}.weight"])
    return out


def lr_at(step: int, steps: int, peak: float, warmup_ratio: float) -> float:
    """Linear warm-up over `warmup_ratio` of the steps, then cosine decay to 0 (transformers'
    get_cosine_schedule_with_warmup). The warm-up is floored: a few-step pass gets none (step 0 of
    a warm-up has lr 0 and would train nothing)."""
    warm = int(warmup_ratio * steps)
    if step < warm:
        return peak * step / warm
    progress = (step - warm) / max(1, steps - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def lm_loss(model, *, inputs: dict, samples: Sequence[Sample], cache, n_items):
    # use_cache=False matters: transformers reads packed rows from the position ids only when no
    # cache is made; with one, attention would cross samples in a row.
    return model(**inputs, **image_inputs(model, samples, cache), use_cache=False, num_items_in_batch=n_items).loss


def supervised(
    engine,
    data: Encoded,
    optim: Optim,
    *,
    lr: float,
    pad_id: int,
    seed: int = 0,
    cache: FeatureCache | None = None,
    pack_rows: bool = True,
    pack_length: int = 16384,
    workers: int = 0,
    log: Metrics | None = None,
    name: str = "train",
    start: int = 0,
    losses: list[float] | None = None,
    on_step: Callable[[int, list[float]], None] | None = None,
) -> list[float]:
    """Train on `data` for `optim.epochs` from step `start`; returns the loss of every step.

    `on_step(steps_done, losses)` runs after every step (the stage's checkpoint hook)."""
    acc = engine.acc
    n = len(data)
    per_step = min(optim.samples_per_step, n)  # a small D_t is not drawn over and over
    steps = max(1, math.ceil(n * optim.epochs / per_step))
    losses = list(losses or [])
    if start >= steps:
        return losses
    if start == 0:
        engine.reset_moments()
    engine.module.train()
    order = itertools.islice(schedule(n, per_step, seed=seed, start=start), steps - start)
    stream = batches(data, order, rank=acc.process_index, world=acc.num_processes, workers=workers, seed=seed,
                     cache=cache)
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=name, disable=not acc.is_main_process, leave=False)
    for step, mine in zip(bar, stream):
        t0 = time.perf_counter()
        engine.set_lr(lr_at(step, steps, lr, optim.warmup_ratio))
        n_targets = float(acc.reduce(torch.tensor(float(sum(len(s.response) for s in mine)), device=acc.device),
                                     "sum"))
        micro = optim.micro_batch_per_device
        if pack_rows:  # micro-batches of packed rows
            rows = pack(mine, pack_length)
            chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        else:
            chunks = [[[s] for s in mine[i : i + micro]] for i in range(0, len(mine), micro)]
        n_chunks = int(acc.reduce(torch.tensor(len(chunks), device=acc.device), "max"))
        weights = [1.0] * len(chunks) + [0.0] * (n_chunks - len(chunks))
        chunks += [[[mine[0]]]] * (n_chunks - len(chunks))
        total = 0.0
        for k, (chunk, weight) in enumerate(zip(chunks, weights)):
            flat = [s for row in chunk for s in row]
            inputs = packed_batch(chunk, pad_id) if pack_rows else padded_batch(flat, pad_id)
            inputs = {key: v.to(acc.device) for key, v in inputs.items()}
            with engine.no_sync(last=k == len(chunks) - 1):
                loss = engine(lm_loss, inputs=inputs, samples=flat, cache=cache,
                              n_items=torch.tensor(n_targets / acc.num_processes))
                acc.backward(loss * weight)
            total += loss.item() * weight
        engine.step()
        total = float(acc.reduce(torch.tensor(total, device=acc.device), "mean"))  # the step's loss, all processes
        losses.append(total)
        bar.set_postfix(loss=f"{total:.3f}")
        if log:
            log.log(stage=name, step=step, loss=round(total, 5), lr=lr_at(step, steps, lr, optim.warmup_ratio),
                    samples=per_step, target_tokens=int(n_targets), seconds=round(time.perf_counter() - t0, 3))
        if on_step:
            on_step(step + 1, losses)
    engine.module.eval()
    return losses
