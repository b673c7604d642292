"""The mini-world's vision encoder: InternViT's architecture (transformers' InternVLVisionModel),
pretrained here on the scenes so that its features carry what the questions need.

R1V takes the last hidden layer, drops the CLS token and pixel-shuffles the 8x8 patch grid of a
112 px tile into 4x4 tokens of 4x the width; the projector sees those 16 tokens, one per grid
cell. Pretraining puts a linear head per attribute on exactly those tokens (dense prediction),
so the features are trained where R1V reads them:

| attribute | classes | on which images |
|---|---|---|
| colour | none + 4 | shapes: the object in the cell; bars: the colour of the bar in the cell's column |
| shape  | none + 3 | shapes: the object in the cell |
| glyph  | none + 0-9, +, - | expr: the glyph in the cell |
| height | 0-8 | bars: the height of the bar in the cell's column |
| hour   | none + 1-12 | clock: the hour the clock shows (every cell) |

`probe()` then fits *fresh* linear classifiers on the frozen features of training images and
reports their accuracy on held-out images: the linear-probe score of `r1v world build`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import InternVLVisionModel

from r1v.model.builder import pixel_shuffle_v1, tiny_vision_config
from r1v.model.processor import IMAGENET_MEAN, IMAGENET_STD
from r1v.world.optim import Optimiser
from r1v.world.scenes import COLOURS, GLYPHS, GRID, IMAGE_SIZE, MAX_BAR, SHAPES, Problem

ATTRIBUTES = {"colour": 1 + len(COLOURS), "shape": 1 + len(SHAPES), "glyph": 1 + len(GLYPHS),
              "height": 1 + MAX_BAR, "hour": 13}
# Which images each attribute is probed on: the families whose questions need it.
PROBED_ON = {"colour": ("shapes", "bars"), "shape": ("shapes",), "glyph": ("expr",), "height": ("bars",),
             "hour": ("clock",)}


@dataclass
class ViTSize:
    hidden: int = 64
    layers: int = 4
    heads: int = 4
    intermediate: int = 128
    # InternViT-300M's (6B normalises queries and keys). Chosen on one build whose probe read the bars' height
    # better without it; on another machine type the two probe alike (README, "On another machine type")
    qk_norm: bool = False


def new_vit(size: ViTSize, *, seed: int) -> InternVLVisionModel:
    torch.manual_seed(seed)
    cfg = tiny_vision_config(image_size=IMAGE_SIZE, patch_size=IMAGE_SIZE // (2 * GRID), hidden_size=size.hidden,
                             num_hidden_layers=size.layers, num_attention_heads=size.heads,
                             intermediate_size=size.intermediate, use_qk_norm=size.qk_norm)
    return InternVLVisionModel(cfg)


# --------------------------------------------------------------------------- inputs and targets
def as_uint8(images: Sequence) -> torch.Tensor:
    """(N, 112, 112, 3) uint8: how pictures are kept in memory for pretraining (4x smaller than floats)."""
    return torch.from_numpy(np.stack([np.array(im) for im in images]))


def pixels(batch_u8: torch.Tensor) -> torch.Tensor:
    """(B, 3, 112, 112) model inputs from uint8 pictures: what R1V's processor gives for a 112 px
    image and one tile (rescale, ImageNet mean / std)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch_u8.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def cell_targets(p: Problem) -> dict[str, list[int]]:
    """Per-cell class ids (cells in raster order) of every attribute, from the scene."""
    t = {a: [0] * GRID * GRID for a in ATTRIBUTES}
    if p.family == "shapes":
        for o in p.scene["objects"]:
            t["colour"][o["cell"]] = 1 + COLOURS.index(o["colour"])
            t["shape"][o["cell"]] = 1 + SHAPES.index(o["shape"])
    elif p.family == "bars":
        for col, b in enumerate(p.scene["bars"]):
            for row in range(GRID):
                t["colour"][row * GRID + col] = 1 + COLOURS.index(b["colour"])
                t["height"][row * GRID + col] = b["value"]
    elif p.family == "expr":
        for i, ch in enumerate(p.scene["expression"]):
            t["glyph"][GRID + i] = 1 + GLYPHS.index(ch)
    else:
        t["hour"] = [p.scene["hour"]] * GRID * GRID
    return t


def _shuffle(x: torch.Tensor, ps_version: str) -> torch.Tensor:
    from transformers.models.internvl.modeling_internvl import InternVLModel

    fn = pixel_shuffle_v1 if ps_version == "v1" else InternVLModel.pixel_shuffle
    return fn(None, x, 0.5)


def token_cells(ps_version: str = "v2") -> list[int]:
    """The grid cell each of the 16 visual tokens covers (pixel shuffle reorders them)."""
    side = 2 * GRID
    patch_cell = torch.tensor([[(r // 2) * GRID + c // 2 for c in range(side)] for r in range(side)])
    x = patch_cell.reshape(1, side, side, 1).repeat(1, 1, 1, 4).float()
    shuffled = _shuffle(x, ps_version).reshape(GRID * GRID, -1)
    assert bool((shuffled == shuffled[:, :1]).all()), "a visual token mixes two cells"
    return shuffled[:, 0].long().tolist()


def vision_tokens(vit: InternVLVisionModel, pixel_values: torch.Tensor, ps_version: str = "v2") -> torch.Tensor:
    """(B, 16, 4*hidden): the features R1V's projector reads (InternVLModel.get_image_features
    without the projector: last layer, CLS dropped, pixel shuffle 0.5)."""
    h = vit(pixel_values=pixel_values).last_hidden_state[:, 1:]
    b, n, c = h.shape
    side = int(math.isqrt(n))
    return _shuffle(h.reshape(b, side, side, c), ps_version).reshape(b, -1, 4 * c)


def targets(problems: Sequence[Problem], order: list[int]) -> dict[str, torch.Tensor]:
    """(B, 16) targets per attribute, in visual-token order."""
    per = [cell_targets(p) for p in problems]
    return {a: torch.tensor([[t[a][c] for c in order] for t in per]) for a in ATTRIBUTES}


# --------------------------------------------------------------------------- pretraining
def pretrain(
    vit: InternVLVisionModel,
    problems: Sequence[Problem],
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Dense attribute prediction on the visual tokens; `images` are uint8 (N, 112, 112, 3)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    order = token_cells()
    tgt = targets(problems, order)
    width = 4 * vit.config.hidden_size
    dev = vit.device
    heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, k) for a, k in ATTRIBUTES.items()}).to(dev)
    params = [*vit.parameters(), *heads.parameters()]
    opt = Optimiser(params, lr=lr, steps=steps, weight_decay=0.05, floor=0.05)
    vit.train()
    losses, queue = [], []
    for step in range(steps):
        if len(queue) < batch_size:
            fresh = list(range(len(problems)))
            rng.shuffle(fresh)
            queue += fresh
        idx, queue = queue[:batch_size], queue[batch_size:]
        feats = vision_tokens(vit, pixels(images[idx]).to(dev))
        losses.append(opt.step(sum(
            torch.nn.functional.cross_entropy(heads[a](feats).flatten(0, 1), tgt[a][idx].flatten().to(dev))
            for a in ATTRIBUTES)))
        if progress:
            progress(step, losses[-1])
    vit.eval()
    return losses


@torch.no_grad()
def features(vit: InternVLVisionModel, images: torch.Tensor, batch_size: int = 256, *,
             after: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The visual tokens of uint8 `images`, passed through `after` when given (e.g. a projector); on the
    CPU, whichever device `vit` runs on (the probes fit there)."""
    after = after or (lambda x: x)
    return torch.cat([after(vision_tokens(vit, pixels(images[i : i + batch_size]).to(vit.device))).cpu()
                      for i in range(0, len(images), batch_size)])


def probe(vit: InternVLVisionModel, train: tuple[Sequence[Problem], torch.Tensor],
          test: tuple[Sequence[Problem], torch.Tensor], *, steps: int = 500, seed: int = 0,
          after: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Held-out accuracy of fresh linear probes on the frozen visual tokens (or on `after` of them),
    per attribute, each on the images of the families that need it (every token of those images counts)."""
    return accuracy(probe_predictions(vit, train, test, steps=steps, seed=seed, after=after))


def accuracy(predictions: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Each attribute's probe accuracy over all its tokens."""
    return {a: (pred == y).float().mean().item() for a, (pred, y, _) in predictions.items()}


def by_row(predictions: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, list[float]]:
    """Each attribute's probe accuracy by grid row, top to bottom: where in the picture it misses
    (a bar's colour and height must reach the empty cells above it, which hold none of its pixels)."""
    return {a: [(pred == y)[rows == r].float().mean().item() for r in range(GRID)]
            for a, (pred, y, rows) in predictions.items()}


def by_picture(prediction: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[float]:
    """One attribute's probe accuracy on each of its pictures (`probe_predictions` keeps a picture's
    tokens together)."""
    pred, y, _ = prediction
    return (pred == y).float().view(-1, GRID * GRID).mean(1).tolist()


def probe_predictions(vit: InternVLVisionModel, train: tuple[Sequence[Problem], torch.Tensor],
                      test: tuple[Sequence[Problem], torch.Tensor], *, steps: int = 500, seed: int = 0,
                      after: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The probes of `probe`, fitted on `train`: per attribute, their predictions on `test`'s tokens, the
    targets, and each token's grid row. The tokens are those of `test`'s pictures of the families that
    need the attribute (`PROBED_ON`), in order, a picture's 16 together."""
    order = token_cells()
    out = {}
    fx = {"train": features(vit, train[1], after=after), "test": features(vit, test[1], after=after)}
    tg = {"train": targets(train[0], order), "test": targets(test[0], order)}
    fam = {"train": [p.family for p in train[0]], "test": [p.family for p in test[0]]}
    token_rows = torch.tensor(order) // GRID
    for attr, k in ATTRIBUTES.items():
        sel = {s: torch.tensor([f in PROBED_ON[attr] for f in fam[s]]) for s in fx}
        x = {s: fx[s][sel[s]].flatten(0, 1) for s in fx}
        y = {s: tg[s][attr][sel[s]].flatten() for s in fx}
        mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
        torch.manual_seed(seed)
        head = torch.nn.Linear(x["train"].shape[1], k)
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        xt = (x["train"] - mu) / sd
        for _ in range(steps):  # full-batch logistic regression
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(xt), y["train"]).backward()
            opt.step()
        with torch.no_grad():
            pred = head((x["test"] - mu) / sd).argmax(-1)
        out[attr] = (pred, y["test"], token_rows.repeat(int(sel["test"].sum())))
    return out
