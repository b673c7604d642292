"""Stage 0b, transfer: re-assemble the trained projector with the *reasoning* LLM and its tokenizer.

    r1v train transfer --config recipes/tiny.yaml

The aligned model's vision encoder and projector are kept bit-identical; the substitute LLM and
its tokenizer are swapped for the reasoning LLM's (method.md: both descend from one base, so
the projector's outputs land in a space the reasoning LLM reads). The held-out scores of the
re-assembled model, before any further training, sit beside the substitute model's: the paper's
64.0 -> 60.2 row.
"""

from __future__ import annotations

import time

from r1v.train.context import Context, check_pair


def run(ctx: Context) -> None:
    t0 = time.perf_counter()
    aligned, _ = ctx.load("align")
    model = ctx.assemble(ctx.cfg.model.reasoning)
    tok = ctx.tokenizer(ctx.cfg.model.reasoning)
    check_pair(aligned.config.text_config, model.config.text_config, warn_vocab=ctx.cfg.transfer.check_vocab)
    model.model.vision_tower.load_state_dict(aligned.model.vision_tower.state_dict())
    model.model.multi_modal_projector.load_state_dict(aligned.model.multi_modal_projector.state_dict())
    del aligned
    ctx.save(model, "transfer", tok)
    ctx.evaluate(model, tok, "transfer")
    ctx.mark_done("transfer", time.perf_counter() - t0)
