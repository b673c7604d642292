"""The reward model: an R1V model with a linear head on the final hidden state of the response's
last token, one raw scalar per (prompt, images, response). This is Skywork-VL Reward's shape
(method.md, "R1V2 changes"), built on any R1V model rather than on Qwen2.5-VL.

    rm = RewardModel.build(model)                       # any R1V model; a fresh head
    scores = rm(input_ids=..., attention_mask=..., last=lengths - 1, pixel_values=...)   # (B,)
    save_reward(rm, tokenizer, "runs/r1v2-tiny/rm")     # one folder: the R1V checkpoint + the head
    rm, tok = load_reward(path)

Decisions: the score is read at the response's last token, which is the template's end-of-turn
token (`Encoder` appends it), as Skywork-VL Reward and transformers' *ForSequenceClassification
read the last non-pad token. The head has no bias (a pairwise loss cannot see one). The LM head is
kept in the folder, unused, so the folder is also a plain R1V checkpoint (`r1v chat` loads it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from r1v.errors import R1VError

HEAD_FILE, META_FILE = "reward_head.safetensors", "reward.json"


POOLING = ("last", "mean")


class RewardModel(torch.nn.Module):
    def __init__(self, backbone, head: torch.nn.Linear, *, pooling: str = "last"):
        super().__init__()
        if pooling not in POOLING:
            raise R1VError(f"reward model pooling {pooling!r}; choose last (Skywork-VL Reward's) or mean")
        self.backbone = backbone  # InternVLForConditionalGeneration; only its base model runs
        self.head = head
        self.pooling = pooling

    @classmethod
    def build(cls, backbone, *, seed: int = 0, pooling: str = "last") -> RewardModel:
        hidden = backbone.config.text_config.hidden_size
        head = torch.nn.Linear(hidden, 1, bias=False, dtype=backbone.dtype, device=backbone.device)
        # Its own generator: the global RNG (and an accelerator's) is left as it was.
        init = torch.Generator(device=head.weight.device).manual_seed(seed)
        torch.nn.init.normal_(head.weight, std=hidden ** -0.5, generator=init)
        return cls(backbone, head, pooling=pooling)

    @property
    def config(self):
        return self.backbone.config

    @property
    def dtype(self):
        return self.backbone.dtype

    def forward(self, *, input_ids, last: torch.Tensor, first: torch.Tensor | None = None, attention_mask=None,
                position_ids=None, **image_args):
        """(B,) float32 scores: the head on the final hidden state at position `last` of each row
        (pooling "last"), or on the mean of the states from `first` (the response's first token) to
        `last` (pooling "mean")."""
        out = self.backbone.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=False, **image_args)
        states = out.last_hidden_state
        rows = torch.arange(len(input_ids), device=input_ids.device)
        if self.pooling == "last" or first is None:
            h = states[rows, last]
        else:
            at = torch.arange(states.shape[1], device=states.device)
            span = ((at >= first[:, None]) & (at <= last[:, None])).to(states.dtype)
            h = (states * span[..., None]).sum(1) / span.sum(1, keepdim=True)
        return self.head(h).squeeze(-1).float()


def save_reward(rm: RewardModel, tokenizer, out: str | os.PathLike, *, state: dict | None = None,
                max_tiles: int = 12, info: dict | None = None) -> Path:
    """The R1V checkpoint (`save_model`) plus `reward_head.safetensors` and `reward.json`, in one
    folder. `state`: the RewardModel's weights when its own are not whole (a sharded engine's)."""
    from safetensors.torch import save_file

    from r1v.io import write_json
    from r1v.model.checkpoint import save_model

    state = dict(state) if state is not None else rm.state_dict()
    head = state.pop("head.weight")
    backbone = {k.removeprefix("backbone."): v for k, v in state.items()}
    out = save_model(rm.backbone, tokenizer, out, max_tiles=max_tiles, state_dict=backbone)
    save_file({"weight": head.detach().cpu().contiguous()}, str(out / HEAD_FILE))
    write_json(out / META_FILE, {"kind": "reward-model", "head": HEAD_FILE, "pooling": rm.pooling, **(info or {})})
    return out


def is_reward_model(path: str | os.PathLike) -> bool:
    return (Path(path) / META_FILE).is_file() and (Path(path) / HEAD_FILE).is_file()


def load_reward(path: str | os.PathLike, *, dtype="auto", device: str = "cpu") -> tuple[RewardModel, object, dict]:
    """(RewardModel, tokenizer, its reward.json plus `tiles`: the saved tiling) of a folder `save_reward` wrote."""
    from safetensors.torch import load_file

    from r1v.model.checkpoint import load_model

    if not Path(path).exists():
        raise R1VError(f"{path} not found: a reward model folder (`r1v train rm` writes one)")
    if not is_reward_model(path):
        raise R1VError(f"{path} is not a reward model (no {META_FILE} and {HEAD_FILE}): train one with `r1v train "
                       f"rm`, or serve yours behind an endpoint and give its URL")
    backbone, tok, tiles = load_model(path, dtype=dtype, device=device)
    weight = load_file(str(Path(path) / HEAD_FILE))["weight"]
    hidden = backbone.config.text_config.hidden_size
    if tuple(weight.shape) != (1, hidden):
        raise R1VError(f"{path}/{HEAD_FILE} holds a {tuple(weight.shape)} head; the model is {hidden} wide")
    head = torch.nn.Linear(hidden, 1, bias=False, dtype=backbone.dtype, device=backbone.device)
    with torch.no_grad():
        head.weight.copy_(weight)
    meta = json.loads((Path(path) / META_FILE).read_text())
    rm = RewardModel(backbone, head, pooling=meta.get("pooling", "last")).eval()
    return rm, tok, {**meta, "tiles": tiles}
