"""Stage 0a, modality alignment: train the projector between the frozen vision encoder and the
frozen *substitute* LLM, in the paper's three passes (method.md): the full data (lr 2e-4), a
quality-filtered subset (4e-5), chain-of-thought data (4e-5); one epoch each.

    r1v train align --config recipes/tiny.yaml [align.passes=...] [key=value ...]
    accelerate launch -m r1v train align --config recipes/r1v-38b.yaml   # many GPUs, unchanged

Saves `runs/<name>/align/` (the substitute R1V model) and scores it on the held-out splits: the
"substitute model" row of the paper's transfer table. The frozen encoder's features are computed
once (`align.cache_features`) and samples are packed (`align.pack`): `bench/align.py` measures both.
"""

from __future__ import annotations

import time

from r1v.train.context import Context
from r1v.train.loop import supervised
from r1v.train.samples import Encoder

PASS_DATA = {"full": "align_full", "filtered": "align_filtered", "cot": "align_cot"}


def run(ctx: Context) -> None:
    cfg = ctx.cfg.align
    t0 = time.perf_counter()
    model = ctx.assemble(ctx.cfg.model.substitute)
    tok = ctx.tokenizer(ctx.cfg.model.substitute)
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    losses = {}
    for i, p in enumerate(cfg.passes):
        if p.name not in PASS_DATA:
            from r1v.errors import R1VError

            raise R1VError(f"align pass {p.name!r}: choose full, filtered or cot")
        samples, _ = ctx.samples(enc, PASS_DATA[p.name])
        optim = type(cfg.optim)(**{**vars(cfg.optim), "lr": p.lr, "epochs": p.epochs})
        losses[p.name] = supervised(model, samples, optim, parts=cfg.parts, pad_id=tok.pad_token_id,
                                    seed=ctx.cfg.seed + i, cache_features=cfg.cache_features, pack_rows=cfg.pack,
                                    pack_length=cfg.pack_length, log=ctx.metrics, desc=f"align/{p.name}")
    ctx.save(model, "align", tok)
    ctx.evaluate(model, tok, "align")
    ctx.mark_done("align", time.perf_counter() - t0,
                  loss={k: [v[0], v[-1]] for k, v in losses.items() if v})
