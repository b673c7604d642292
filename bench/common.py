"""What the training benchmarks share: an R1V of the mini-world's default sizes, freshly initialised
by the project's builders (no world build needed), and align-pass samples from the world's generator."""

from __future__ import annotations

import io


def world_model(n: int, seed: int = 0):
    """(model factory, tokenizer, samples): `n` samples, half captions, half questions answered (instruct style)."""
    from r1v.evaluate.tasks import Item, get_task
    from r1v.model.builder import build_r1v
    from r1v.model.tokenizer import train_bpe_tokenizer
    from r1v.train.samples import Encoder
    from r1v.world.build import WorldConfig
    from r1v.world.data import stream, target
    from r1v.world.lm import LMSize, new_lm
    from r1v.world.scenes import describe, draw
    from r1v.world.vit import ViTSize, new_vit

    cfg = WorldConfig()
    problems = [p for _, p in zip(range(max(1, n // 2)), stream("train", seed=seed))]
    tok = train_bpe_tokenizer([describe(p) + " " + p.question + " " + p.reasoning for p in problems],
                              vocab_size=cfg.vocab_size)
    vit = new_vit(ViTSize(hidden=cfg.vit_hidden, layers=cfg.vit_layers, qk_norm=cfg.vit_qk_norm), seed=seed)
    lm = new_lm(len(tok), LMSize(hidden=cfg.lm_hidden, layers=cfg.lm_layers, intermediate=cfg.lm_intermediate),
                seed=seed)

    def model():
        m = build_r1v(vision=vit.config, language=lm.config, tokenizer=tok, seed=seed)
        m.model.vision_tower.load_state_dict(vit.state_dict())
        m.model.language_model.load_state_dict(lm.model.state_dict())
        m.lm_head.load_state_dict(lm.lm_head.state_dict())
        return m.eval()

    items, responses = [], []
    for k, p in enumerate(problems):
        buf = io.BytesIO()
        draw(p).save(buf, format="PNG")
        for kind in ("caption", "direct"):
            items.append(Item(id=f"{k}-{kind}", question="Describe the picture." if kind == "caption" else p.question,
                              answer=p.answer, images=[buf.getvalue()], choices=p.choices))
            responses.append(f"</think>\n{describe(p)}" if kind == "caption" else target(p, "instruct"))
    samples = Encoder(model(), tok, max_tiles=1).encode_all(get_task("world"), items, responses)
    for k, s in enumerate(samples):
        s.index = k  # its row (the feature cache's key)
    return model, tok, samples


class InMemory:
    """Samples already encoded, served as `r1v.train.data.Encoded` serves rows: by lists of positions."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, positions):
        return [self.samples[int(i)] for i in positions]

    def row_of(self, position: int) -> int:
        return int(position)

    def kind(self, row: int) -> str:
        return "response"
