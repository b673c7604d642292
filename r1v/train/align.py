"""Stage 0a, modality alignment: train the projector between the frozen vision encoder and the
frozen *substitute* LLM, in the paper's three passes (method.md): the full data (lr 2e-4), a
quality-filtered subset (4e-5), chain-of-thought data (4e-5); one epoch each.

    r1v train align --config recipes/tiny.yaml [align.passes=...] [key=value ...]
    accelerate launch -m r1v train align --config recipes/r1v-38b.yaml   # many GPUs, unchanged

Saves `runs/<name>/align/` (the substitute R1V model) and scores it on the held-out splits: the
"substitute model" row of the paper's transfer table. results.json records the median norm of the
visual tokens against the words' input embeddings (`token_norms`): a pre-norm LLM barely changes a
token far longer than its words from layer to layer (arXiv 2512.08374).

The frozen encoder's features are computed once where a pass reads its rows more than once
(`align.cache_features`, epochs > 1: the paper's one-epoch passes read each row once and gain
nothing from it), and samples are packed (`align.pack`): `bench/align.py` and `bench/scale.py`
measure both. Rows stream from disk step by step (`r1v/train/data.py`); the model is prepared once
for the three passes (`Engine`), and a crash resumes inside the pass it was in (`checkpoint.*`).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from r1v.errors import R1VError
from r1v.train.context import Context
from r1v.train.engine import Engine
from r1v.train.loop import supervised
from r1v.train.samples import Encoder, features

PASS_DATA = {"full": "align_full", "filtered": "align_filtered", "cot": "align_cot"}


def run(ctx: Context) -> None:
    cfg = ctx.cfg.align
    t0 = time.perf_counter()
    for p in cfg.passes:
        if p.name not in PASS_DATA:
            raise R1VError(f"align pass {p.name!r}: choose full, filtered or cot")
    for p in cfg.passes:  # every file read and checked before any training
        ctx.rows(PASS_DATA[p.name], need=("id", "response"))
    model = ctx.assemble(ctx.cfg.model.substitute)
    tok = ctx.tokenizer(ctx.cfg.model.substitute)
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    engine = Engine(model, cfg.parts, weight_decay=cfg.optim.weight_decay,
                    max_grad_norm=cfg.optim.max_grad_norm)
    ckpt = ctx.checkpoints("align", since=t0)
    pos = ckpt.resume(engine) or {"pass": 0, "step": 0, "losses": {}}
    losses = pos["losses"]
    for i, p in enumerate(cfg.passes):
        if i < pos["pass"]:
            continue
        start = pos["step"] if i == pos["pass"] else 0
        ctx.metrics.forget(f"align/{p.name}", start)
        data = ctx.data(PASS_DATA[p.name], enc)
        cache = ctx.feature_cache(f"align-{p.name}") if cfg.cache_features and p.epochs > 1 \
            and not cfg.parts.vision else None

        def on_step(done, ls, i=i, name=p.name):
            if ckpt.due(done):
                ckpt.save(engine, done, {"pass": i, "step": done, "losses": {**losses, name: ls}}, phase=i)

        losses[p.name] = supervised(engine, data, dataclasses.replace(cfg.optim, epochs=p.epochs), lr=p.lr,
                                    pad_id=tok.pad_token_id, seed=ctx.cfg.seed + i, cache=cache,
                                    pack_rows=cfg.pack, pack_length=cfg.pack_length, workers=ctx.workers,
                                    log=ctx.metrics, name=f"align/{p.name}", start=start,
                                    losses=losses.get(p.name), on_step=on_step)
    ctx.save(engine.model, "align", tok, state=engine.state_dict())
    first = ctx.data(PASS_DATA[cfg.passes[0].name], enc)
    with engine.generating() as m:
        ctx.evaluate(m, tok, "align")
        norms = token_norms(m, first[list(range(min(16, len(first))))])
    ctx.mark_done("align", time.perf_counter() - t0 + ckpt.earlier,
                  loss={k: [v[0], v[-1]] for k, v in losses.items() if v}, token_norms=norms)
    ckpt.clear()


@torch.no_grad()
def token_norms(model, samples) -> dict[str, float]:
    """The median norm of the visual tokens the projector writes for `samples` and of the input
    embeddings of their words (every other token). One sample at a time, so a 38B model's tiles
    never pass the encoder together; the weights must be whole (align calls it under
    `Engine.generating`)."""
    visual, words = [], []
    embed, projector, image_id = model.get_input_embeddings(), model.model.multi_modal_projector, \
        model.config.image_token_id
    for s in samples:
        if s.pixels is not None:
            out = projector(features(model, s.pixels).to(next(projector.parameters()).dtype))
            visual.append(out.float().norm(dim=-1).flatten())
        ids = torch.tensor([t for t in s.prompt + s.response if t != image_id], device=embed.weight.device)
        words.append(embed(ids).float().norm(dim=-1))
    if not visual:
        return {}
    return {"visual": round(torch.cat(visual).median().item(), 3), "words": round(torch.cat(words).median().item(), 3)}
