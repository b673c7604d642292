"""Training samples: a row tokenised and tiled, its image arguments, batches packed.

A training row is a JSON line in the harness's format of its task (the mini-world's rows, or any
benchmark task's) plus the target `response`, the text after the template's opening `<think>\\n`:

    {"id": "bars-train-00012", "image": "images/train/bars-train-00012.png", "question": "...",
     "answer": "5", "response": " tallest green 7. shortest red 2. 7 - 2 = 5.</think>\\n\\boxed{5}"}

* `Encoder` renders the chat template and runs the model's processor (transformers'
  InternVLProcessor: tiling, `<img><IMG_CONTEXT>...</img>`), once per row.
* `features()`: the vision half of transformers' `get_image_features` (pixel-shuffled, before the
  projector). While the encoder is frozen they never change, so a stage that reads a row more than
  once keeps them (`r1v/train/data.py`'s FeatureCache) and a step only runs the projector on them,
  handed to the model as `mm_encoder_outputs`, the model's own path for precomputed encoder outputs.
* `pack()` concatenates samples into rows of at most `pack_length` tokens with per-sample
  position ids and no attention mask: transformers then builds a block-diagonal causal mask from
  the position ids, so no token attends across samples and no compute goes to padding.
  `pad()` is the plain right-padded batch (the baseline of `bench/align.py`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from r1v.model import templates as T
from r1v.model.processor import processor_for_model


@dataclass
class Sample:
    id: str
    prompt: list[int]  # template-rendered prompt, image tokens expanded, ends with "<think>\n"
    response: list[int] = field(default_factory=list)  # target ids, stop token included
    pixels: torch.Tensor | None = None  # (tiles, 3, H, W) of all the sample's images, in order
    item: object = None  # the harness Item (scoring), when the sample came from one
    index: int = -1  # its row in the stage's data (`r1v/train/data.py`): cache key, E_{t-1}, scores
    tiles: int = 0  # image tiles (kept when a cached sample drops its pixels for their features)

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


class Encoder:
    """Rows -> Samples for one model: its template, tokenizer and processor."""

    def __init__(self, model, tokenizer, *, template: str = "r1v", max_tiles: int = 12):
        self.tok = tokenizer
        self.template = template
        self.processor = processor_for_model(model, tokenizer, max_tiles=max_tiles)
        self.stop_id = tokenizer.convert_tokens_to_ids(T.get_template(template).stop)

    def encode_all(self, task, items, responses: Sequence[str | None] | None = None) -> list[Sample]:
        responses = responses if responses is not None else [None] * len(items)
        return self.encode_many(items, [task.prompt(it) for it in items], responses)

    def encode_many(self, items, prompts: Sequence[str], responses: Sequence[str | None],
                    chunk: int = 256) -> list[Sample]:
        """Batched: one processor call per `chunk` rows (about 10x faster than one call per row)."""
        from r1v.model.processor import place_images

        out = []
        image_token = self.processor.image_token
        per_tile = self.processor.image_seq_length
        context_id = self.tok.convert_tokens_to_ids(image_token)
        for start in range(0, len(items), chunk):
            its = items[start : start + chunk]
            texts, images = [], []
            for it, p in zip(its, prompts[start : start + chunk]):
                ims = [Image.open(io.BytesIO(b)).convert("RGB") if isinstance(b, bytes) else b for b in it.images]
                content = place_images(p, len(ims))
                text = T.render(self.template, [{"role": "user", "content": content}],
                                bos_token=self.tok.bos_token or "")
                texts.append(text.replace(T.IMAGE_PLACEHOLDER, image_token))
                images += ims
            enc = self.processor(text=texts, images=images or None)
            pixels = torch.as_tensor(np.asarray(enc["pixel_values"])) if images else None
            at = 0
            resp = [r for r in responses[start : start + chunk]]
            resp_ids = self.tok([r or "" for r in resp], add_special_tokens=False)["input_ids"]
            for it, ids, r, rids in zip(its, enc["input_ids"], resp, resp_ids):
                tiles = sum(t == context_id for t in ids) // per_tile
                px = pixels[at : at + tiles] if tiles else None
                at += tiles
                out.append(Sample(str(it.id), list(ids), rids + [self.stop_id] if r is not None else [], px, it,
                                  tiles=tiles))
        return out


# --------------------------------------------------------------------------- vision features
@torch.no_grad()
def features(model, pixels: torch.Tensor) -> torch.Tensor:
    """(tiles, tokens, 4*d_vit): the vision tower's features, CLS dropped, pixel-shuffled: what
    transformers' `get_image_features` feeds the projector."""
    inner = model.model
    cfg = model.config
    param = next(inner.vision_tower.parameters())
    out = inner.vision_tower(pixel_values=pixels.to(param.device, param.dtype),
                             output_hidden_states=cfg.vision_feature_layer != -1)
    x = out.last_hidden_state if cfg.vision_feature_layer == -1 else out.hidden_states[cfg.vision_feature_layer]
    if cfg.vision_feature_select_strategy == "default":
        x = x[:, 1:, :]
    side = int(x.shape[1] ** 0.5)
    x = inner.pixel_shuffle(x.reshape(x.shape[0], side, side, -1), scale_factor=cfg.downsample_ratio)
    return x.reshape(x.shape[0], -1, x.shape[-1])


def image_inputs(model, samples: Sequence[Sample], cache=None) -> dict:
    """The model's image arguments for `samples`. With a `cache` (`r1v/train/data.py`'s
    FeatureCache: the vision encoder is frozen), every tile's features come from it, the rows it
    lacks encoded here in one batch and kept, and go through the trainable projector as
    `mm_encoder_outputs`; without one, the pixels (the vision encoder runs in the step).

    Called inside the engine's forward (`r1v/train/engine.py`), so the encoder's weights are whole
    under FSDP and ZeRO-3, and every process runs one forward whatever its cache holds."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    device = next(model.parameters()).device
    lockstep = getattr(model, LOCKSTEP, False)
    if cache is None or not any(s.tiles for s in samples):
        pixels = [s.pixels for s in samples if s.pixels is not None]
        if not pixels and lockstep:
            _idle_vision(model)
        return {"pixel_values": torch.cat(pixels).to(device)} if pixels else {}
    have, missing = {}, {}
    for s in samples:
        if s.tiles and s.index not in have:
            f = cache.get(s.index)
            if f is None:
                missing[s.index] = s
            else:
                have[s.index] = f
    if missing:
        todo = list(missing.values())
        out = features(model, torch.cat([s.pixels for s in todo]))
        for s, f in zip(todo, out.split([s.tiles for s in todo])):
            cache.put(s.index, f)
            have[s.index] = f
    elif lockstep:
        _idle_vision(model, project=False)
    feats = torch.cat([have[s.index].to(device) for s in samples if s.tiles])
    projected = model.model.multi_modal_projector(feats)
    return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=projected)}}


# A sharded engine (FSDP, ZeRO-3) gathers a layer's weights when that layer runs, a collective that
# every process must join in the same order. A process whose micro-batch needs no vision encoder (its
# features were cached, or its rows are text-only) while another's does would leave the others
# waiting. `Engine` marks the model with LOCKSTEP under such an engine, and then a process with
# nothing for the encoder (and the projector) runs them on one blank tile and drops the result.
LOCKSTEP = "_r1v_lockstep"


def _idle_vision(model, *, project: bool = True) -> None:
    cfg = model.config.vision_config
    size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
    param = next(model.model.vision_tower.parameters())
    blank = torch.zeros((1, cfg.num_channels, size, size), device=param.device, dtype=param.dtype)
    out = features(model, blank)
    if project:
        projector = model.model.multi_modal_projector
        projector(out.to(next(projector.parameters()).dtype))


# --------------------------------------------------------------------------- batches
def labels_of(s: Sample) -> list[int]:
    return [-100] * len(s.prompt) + s.response


def pack(samples: Sequence[Sample], pack_length: int) -> list[list[Sample]]:
    """Greedy first-fit into rows of at most `pack_length` tokens (a longer sample gets a row alone)."""
    rows: list[list[Sample]] = []
    room: list[int] = []
    for s in sorted(samples, key=len, reverse=True):
        for i, r in enumerate(room):
            if len(s) <= r:
                rows[i].append(s)
                room[i] -= len(s)
                break
        else:
            rows.append([s])
            room.append(pack_length - len(s))
    return rows


def packed_batch(rows: Sequence[Sequence[Sample]], pad_id: int) -> dict[str, torch.Tensor]:
    """Packed rows: ids, labels and per-sample position ids; rows of unequal length are right-padded
    with a pad sample of their own (position ids restart, labels -100), so no mask is needed."""
    n = max(sum(len(s) for s in r) for r in rows)
    ids = torch.full((len(rows), n), pad_id)
    labels = torch.full((len(rows), n), -100)
    pos = torch.zeros((len(rows), n), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for s in row:
            k = len(s)
            ids[i, at : at + k] = torch.tensor(s.prompt + s.response)
            labels[i, at : at + k] = torch.tensor(labels_of(s))
            pos[i, at : at + k] = torch.arange(k)
            at += k
        pos[i, at:] = torch.arange(n - at)
    return {"input_ids": ids, "labels": labels, "position_ids": pos}


def padded_batch(samples: Sequence[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(s) for s in samples)
    ids = torch.full((len(samples), n), pad_id)
    labels = torch.full((len(samples), n), -100)
    mask = torch.zeros((len(samples), n), dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, : len(s)] = torch.tensor(s.prompt + s.response)
        labels[i, : len(s)] = torch.tensor(labels_of(s))
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
