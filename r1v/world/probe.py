"""Where the picture is lost: how much of each cell's content survives the vision encoder, the
projector, and the step into the LLM's vocabulary, for any R1V checkpoint on the mini-world.

    r1v world probe --model runs/tiny/sft/m0 [--images 800]

Four readings, on freshly drawn pictures (never a training image):
* vision encoder: a fresh linear probe per attribute on the visual tokens (as `r1v world build`),
  also by grid row: a bar's colour and height are asked of every cell of its column, and the empty
  cells above a short bar hold none of its pixels;
* projector: the same probe on the projector's outputs, the vectors the LLM reads. Information
  that is here reached the LLM's input;
* as words: for each visual token, the picture word (`scenes.PICTURE_WORDS`) whose input embedding
  is nearest (cosine) to the projector's output, against the word of that token's cell. The LLM
  was pretrained to read those words, so this is how much of the picture arrives in a form it
  already reads;
* read by the LLM: the world's own chain for each picture, teacher-forced, in the style the
  checkpoint's LLM writes (the substitute's `instruct`, the reasoning LM's `reasoning`: whichever
  it finds more likely). The share of the values the chain takes from the picture (a count, a bar,
  the hour, an expression's operands) that the model predicts with probability above 1/2, beside
  the share of the values it computes (each equation's result).

A family whose cells survive the projector (the probe) but not as words is lost at the LLM's
input: the projector passes the information on in a form the LLM was never taught to read. One
whose computed values are predicted but whose picture values are not is lost there too, and the
LLM's arithmetic is fine.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from r1v.errors import R1VError
from r1v.world.pairs import EQ, FACT

Span = tuple[int, int]


def value_spans(family: str, reasoning: str) -> tuple[list[Span], list[Span]]:
    """Character spans in a world chain of the values taken from the picture and of the values
    computed. A fact sentence's value ("red 4.", "clock 7.") is the picture's; in an expression the
    first operand and every second operand are (the chain folds left, so a later first operand is
    the previous result); every equation's result is computed. A question's constant (the clock's
    "+ 12") is neither."""
    picture, computed = [], []
    first = True
    for m in re.finditer(r"\s*([^.]+)\.", reasoning):
        text, at = m.group(1), m.start(1)
        if e := EQ.match(text):
            if family == "expr":
                picture += [(at + e.start(1), at + e.end(1))] if first else []
                picture.append((at + e.start(3), at + e.end(3)))
            computed.append((at + e.start(4), at + e.end(4)))
            first = False
        elif f := FACT.match(text):
            picture.append((at + f.start(2), at + f.end(2)))
    return picture, computed


def readings(model_dir: str | Path, images: int = 800, seed: int = 0) -> dict:
    """The four readings of `model_dir` on `images` fresh pictures (half fit the probes)."""
    from r1v.model.checkpoint import load_model
    from r1v.world import vit
    from r1v.world.scenes import FAMILIES, PICTURE_WORDS, cell_words, draw, make_problem

    model, tok, _ = load_model(model_dir, dtype=torch.float32)
    model.eval()
    order = vit.token_cells()  # the order vit.features shuffles the tokens in

    def render(n: int, tag: str):
        probs = [make_problem(FAMILIES[i % len(FAMILIES)], f"probe:{tag}:{seed}:{i}") for i in range(n)]
        return probs, vit.as_uint8([draw(p) for p in probs])

    fit, test = render(images // 2, "fit"), render(images - images // 2, "test")
    encoder = model.model.vision_tower
    enc = vit.probe_predictions(encoder, fit, test)
    out = {"vision encoder": vit.accuracy(enc), "by row": vit.by_row(enc)}
    projector = model.model.multi_modal_projector
    out["projector"] = vit.probe(encoder, fit, test, after=projector)  # what the projector hands the LLM
    ids = tok.convert_tokens_to_ids(list(PICTURE_WORDS))
    if any(i is None or i == tok.unk_token_id for i in ids):
        raise R1VError(f"{model_dir}'s tokenizer has no picture words: not a mini-world model")
    words = torch.nn.functional.normalize(model.get_input_embeddings().weight[ids], dim=-1)
    probs, imgs = test
    feats = vit.features(encoder, imgs, after=projector)
    nearest = (torch.nn.functional.normalize(feats, dim=-1) @ words.T).argmax(-1)
    hits: dict[str, list[bool]] = {}
    for p, row in zip(probs, nearest):
        cells = cell_words(p)
        for k, w in enumerate(row.tolist()):
            want = cells[order[k]]
            if want != PICTURE_WORDS[0]:  # occupied cells only: an empty cell is most of every picture
                hits.setdefault(p.family, []).append(PICTURE_WORDS[w] == want)
    out["as words"] = {f: sum(v) / len(v) for f, v in sorted(hits.items())}
    out["read by the LLM"] = llm_reading(model, tok, probs)
    return out


@torch.no_grad()
def llm_reading(model, tok, probs) -> dict:
    """Teacher-forced, the share of picture values and of computed values in the world's chains
    that `model` predicts with p > 1/2, per family, in the chain style it finds more likely."""
    from r1v.evaluate.tasks import Item
    from r1v.evaluate.tasks.world import prompt
    from r1v.train.grpo import completion_logprobs
    from r1v.train.samples import Encoder
    from r1v.world.data import STYLES, target
    from r1v.world.scenes import draw

    encoder = Encoder(model, tok, max_tiles=1)  # the world's pictures are one 112 px tile
    items = [Item(id=str(i), question=p.question, answer=None, images=[draw(p)]) for i, p in enumerate(probs)]
    prompts = [prompt(p.question, p.choices) for p in probs]
    best = None
    for style in STYLES:
        texts = [target(p, style) for p in probs]
        logps = []
        for k in range(0, len(probs), 64):
            s = encoder.encode_many(items[k : k + 64], prompts[k : k + 64], texts[k : k + 64])
            lp, mask = completion_logprobs(model, prompts=s, completions=[x.response for x in s], group=1,
                                           pad_id=tok.pad_token_id)
            logps += [row[: int(m.sum())] for row, m in zip(lp, mask)]
        total = float(sum(x.sum() for x in logps))
        if best is None or total > best[0]:
            best = (total, style, texts, logps)
    _, style, texts, logps = best
    hits: dict[str, dict[str, list[bool]]] = {"picture": {}, "computed": {}}
    for p, text, lp in zip(probs, texts, logps):
        at = text.index(p.reasoning)
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        for kind, spans in zip(("picture", "computed"), value_spans(p.family, p.reasoning)):
            for a, b in spans:
                for j, (x, y) in enumerate(offsets):
                    if min(y, at + b) > max(x, at + a):  # the token overlaps the value
                        hits[kind].setdefault(p.family, []).append(bool(lp[j] > math.log(0.5)))
    return {"style": style} | {k: {f: sum(v) / len(v) for f, v in sorted(h.items())} for k, h in hits.items()}


def table(r: dict) -> str:
    attrs = list(r["vision encoder"])
    lines = ["| reading | " + " | ".join(attrs) + " |", "|---|" + "---|" * len(attrs)]
    for name in ("vision encoder", "projector"):
        lines.append(f"| {name} (linear probe) | " + " | ".join(f"{100 * r[name][a]:.1f}%" for a in attrs) + " |")
        if name == "vision encoder":  # where it misses: a bar's empty cells above it hold none of its pixels
            lines.append("| vision encoder, by grid row (top to bottom) | " + " | ".join(
                " / ".join(f"{100 * v:.0f}" for v in r["by row"][a]) + "%" for a in attrs) + " |")
    lines += ["", "| family | " + " | ".join(r["as words"]) + " |", "|---|" + "---|" * len(r["as words"]),
              "| occupied cells whose projection is nearest their own picture word | "
              + " | ".join(f"{100 * v:.1f}%" for v in r["as words"].values()) + " |"]
    read = r["read by the LLM"]
    for kind in ("picture", "computed"):
        lines.append(f"| {kind} values in the chain the LLM predicts (p > 1/2, {read['style']} chains) | "
                     + " | ".join(f"{100 * read[kind][f]:.1f}%" if f in read[kind] else "-" for f in r["as words"])
                     + " |")
    return "\n".join(lines)
