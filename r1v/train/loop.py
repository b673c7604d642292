"""The supervised loop every SFT-like stage shares (align's passes, M0, the SFT iterations).

    losses = supervised(model, samples, optim, parts=..., pad_id=..., log=metrics, desc="align/full")

One readable loop on accelerate, so `accelerate launch` runs it unchanged. DDP is tested (two
CPU processes, `tests/test_train.py`); for sharded engines (DeepSpeed ZeRO-3, FSDP) every process
runs the same number of forward passes, but no GPU run has checked them here. The loop itself:
AdamW, linear warm-up then cosine decay (transformers' schedule), gradient accumulation over
micro-batches, clipping. The loss is the mean over every target token of the *step*
(`num_items_in_batch`), so packing, padding and accumulation all give the same number.

`set_parts()` freezes what the config says; LoRA on the LLM comes from peft and is merged back
into the weights after each run, so every checkpoint is a plain R1V model.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from r1v.model.builder import Trainable, set_trainable
from r1v.train.config import Optim, Parts
from r1v.train.samples import FeatureCache, Sample, image_inputs, pack, packed_batch, padded_batch

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class Metrics:
    """Appends one JSON line per logged step to `path` (flushed: nothing lost on a crash)."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **row) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


def set_parts(model, parts: Parts):
    """Freeze per the config; with LoRA, wrap the LLM's projections (peft). Returns the model to train."""
    set_trainable(model, Trainable(vision=parts.vision, projector=parts.projector, language=parts.language))
    if parts.lora_rank > 0 and not parts.language:
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=parts.lora_rank, lora_alpha=parts.lora_alpha, target_modules=LORA_TARGETS)
        inject_adapter_in_model(cfg, model)  # (peft leaves only the adapters trainable: re-apply the parts)
        set_trainable(model, Trainable(vision=parts.vision, projector=parts.projector, language=False))
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    return model


def merge_lora(model) -> None:
    """Fold LoRA weights into the base layers (a plain R1V model again)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            setattr(parent, name.rsplit(".", 1)[1], module.get_base_layer())
    if hasattr(model, "peft_config"):  # left by inject_adapter_in_model; the adapters are gone now
        del model.peft_config


def supervised(
    model,
    samples: Sequence[Sample],
    optim: Optim,
    *,
    parts: Parts,
    pad_id: int,
    seed: int = 0,
    cache_features: bool = True,
    pack_rows: bool = True,
    pack_length: int = 16384,
    log: Metrics | None = None,
    desc: str = "train",
    accelerator=None,
) -> list[float]:
    """Train `model` on `samples` (1 epoch by default); returns the loss of every step."""
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    if not samples:
        return []
    accelerator = accelerator or Accelerator()
    set_parts(model, parts)
    cache = FeatureCache(model) if cache_features and not parts.vision else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=(0.9, 0.95))
    per_step = min(optim.samples_per_step, len(samples))  # a small D_t is not drawn over and over
    steps = max(1, math.ceil(len(samples) * optim.epochs / per_step))
    # floor: a few-step run gets no warm-up (step 0 of a warm-up has lr 0 and would train nothing)
    sched = get_cosine_schedule_with_warmup(opt, int(optim.warmup_ratio * steps), steps)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not accelerator.is_main_process, leave=False)
    for step in bar:
        t0 = time.perf_counter()
        batch = []
        while len(batch) < per_step:
            if not order:
                order = list(range(len(samples)))
                rng.shuffle(order)
            batch.append(samples[order.pop()])
        mine = batch[accelerator.process_index :: accelerator.num_processes]
        n_targets = sum(len(s.response) for s in batch)
        micro = optim.micro_batch_per_device
        if pack_rows:  # micro-batches of packed rows
            rows = pack(mine, pack_length)
            chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        else:
            chunks = [[[s] for s in mine[i : i + micro]] for i in range(0, len(mine), micro)]
        # Every process runs as many forward passes (sharded engines gather weights in each one); a
        # process with fewer chunks runs zero-weighted ones.
        n_chunks = int(accelerator.reduce(torch.tensor(len(chunks), device=accelerator.device), "max"))
        weights = [1.0] * len(chunks) + [0.0] * (n_chunks - len(chunks))
        chunks += [[[batch[0]]]] * (n_chunks - len(chunks))
        total = 0.0
        for k, (chunk, weight) in enumerate(zip(chunks, weights)):
            flat = [s for row in chunk for s in row]
            inputs = packed_batch(chunk, pad_id) if pack_rows else padded_batch(flat, pad_id)
            inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
            with accelerator.no_sync(model) if k < len(chunks) - 1 else contextlib.nullcontext():
                # use_cache=False matters: transformers reads packed rows from the position ids
                # only when no cache is made; with one, attention would cross samples in a row.
                out = model(**inputs, **image_inputs(raw, flat, cache), use_cache=False,
                            num_items_in_batch=torch.tensor(n_targets / accelerator.num_processes))
                accelerator.backward(out.loss * weight)
            total += out.loss.item() * weight
        if optim.max_grad_norm:
            accelerator.clip_grad_norm_(params, optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.3f}")
        if log:
            log.log(stage=desc, step=step, loss=round(total, 5), lr=sched.get_last_lr()[0],
                    samples=len(batch), target_tokens=n_targets, seconds=round(time.perf_counter() - t0, 3))
    model.eval()
    model = accelerator.unwrap_model(model)
    if parts.lora_rank > 0 and not parts.language:
        merge_lora(model)
    return losses

