"""Where the picture is lost: how much of each cell's content survives the vision encoder, the
projector, and the step into the LLM's vocabulary, for any R1V checkpoint on the mini-world.

    r1v world probe --model runs/tiny/sft/m0 [--images 800]

Three readings, on freshly drawn pictures (never a training image):
* vision encoder: a fresh linear probe per attribute on the visual tokens (as `r1v world build`);
* projector: the same probe on the projector's outputs, the vectors the LLM reads. Information
  that is here reached the LLM's input;
* as words: for each visual token, the picture word (`scenes.PICTURE_WORDS`) whose input embedding
  is nearest (cosine) to the projector's output, against the word of that token's cell. The LLM
  was pretrained to read those words, so this is how much of the picture arrives in a form it
  already reads.

A family whose cells survive the projector (the probe) but not as words is lost at the LLM's
input: the projector passes the information on in a form the LLM was never taught to read.
"""

from __future__ import annotations

from pathlib import Path

import torch

from r1v.errors import R1VError


def readings(model_dir: str | Path, images: int = 800, seed: int = 0) -> dict:
    """The three readings of `model_dir` on `images` fresh pictures (half fit the probes)."""
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
    out = {"vision encoder": vit.probe(encoder, fit, test)}
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
    return out


def table(r: dict) -> str:
    attrs = list(r["vision encoder"])
    lines = ["| reading | " + " | ".join(attrs) + " |", "|---|" + "---|" * len(attrs)]
    for name in ("vision encoder", "projector"):
        lines.append(f"| {name} (linear probe) | " + " | ".join(f"{100 * r[name][a]:.1f}%" for a in attrs) + " |")
    lines += ["", "| family | " + " | ".join(r["as words"]) + " |", "|---|" + "---|" * len(r["as words"]),
              "| occupied cells whose projection is nearest their own picture word | "
              + " | ".join(f"{100 * v:.1f}%" for v in r["as words"].values()) + " |"]
    return "\n".join(lines)
