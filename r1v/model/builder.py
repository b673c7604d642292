"""Builders that put an R1V model together: vision tower -> pixel-shuffle MLP -> causal LM.

The model is transformers' `InternVLForConditionalGeneration`; nothing here re-implements
it. What the builders add is the R1V view of it:

* `build_r1v(vision=..., language=..., tokenizer=...)`: from configs (random weights) or
  from pretrained parts (any vision tower transformers builds from a config, any causal
  LM), with the projector freshly initialised, as in the paper's Stage 0.
* `preset("tiny")`: the miniature used by the tests and the default demo, with the
  official geometry (448 px tiles, patch 14, 256 tokens a tile, InternViT-6B features:
  RMSNorm, q/k norm, layer scale) at toy width.
* `set_trainable(model, Trainable(...))`: which parts train is a config value.
* `ps_version`: transformers implements the "v2" pixel shuffle; R1V checkpoints that
  declare "v1" (no final transpose) get it through `apply_ps_version`.

    python -m r1v.model.builder   # builds the tiny preset and prints its parameter counts
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

PARTS = ("vision", "projector", "language")


@dataclass
class Trainable:
    """Which parts of the model receive gradients. The paper trains only the projector."""

    vision: bool = field(default=False, metadata={"help": "train the vision tower"})
    projector: bool = field(default=True, metadata={"help": "train the MLP projector (mlp1)"})
    language: bool = field(default=False, metadata={"help": "train the language model (incl. lm_head)"})


def part_modules(model: InternVLForConditionalGeneration) -> dict[str, list[torch.nn.Module]]:
    inner = model.model
    return {
        "vision": [inner.vision_tower],
        "projector": [inner.multi_modal_projector],
        "language": [inner.language_model, model.lm_head],
    }


def set_trainable(model: InternVLForConditionalGeneration, trainable: Trainable) -> dict[str, int]:
    """Freeze / unfreeze each part; returns the trainable parameter count per part."""
    counts = {}
    for part, modules in part_modules(model).items():
        on = getattr(trainable, part)
        counts[part] = 0
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(on)
                counts[part] += p.numel() if on else 0
    return counts


def pixel_shuffle_v1(self, vision_features: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """InternVL's "v1" pixel shuffle: the "v2" form without its final (W, H) transpose.

    (B, W, H, C) -> (B, H*s, W*s, C/s^2). The channels of each output token are the same as
    in v2; only the order of the visual tokens differs (the 2-D grid is transposed).
    """
    b, w, h, c = vision_features.shape
    x = vision_features.reshape(b, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    return x.reshape(b, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor**2)))


def apply_ps_version(model: InternVLForConditionalGeneration) -> None:
    """Honour `config.ps_version` ("v1" or "v2"; transformers' class is "v2")."""
    version = getattr(model.config, "ps_version", "v2")
    if version == "v1":
        model.model.pixel_shuffle = types.MethodType(pixel_shuffle_v1, model.model)
    elif version != "v2":
        raise ValueError(f"unknown ps_version {version!r} (expected 'v1' or 'v2')")


def r1v_config(
    *,
    vision: PretrainedConfig,
    language: PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    downsample_ratio: float = 0.5,
    select_layer: int = -1,
    ps_version: str = "v2",
    template: str = "r1v",
) -> InternVLConfig:
    """The InternVLConfig of an R1V model, with the R1V extras (ps_version, template)."""
    image_size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    patch = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
    tokens_per_tile = int((image_size // patch) ** 2 * downsample_ratio**2)
    if len(tokenizer) > language.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the language model's vocabulary holds "
            f"{language.vocab_size}; resize the LM's embeddings first"
        )
    cfg = InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=language.to_dict(),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=tokens_per_tile,
        downsample_ratio=downsample_ratio,
        vision_feature_layer=select_layer,
        # The InternViT family prepends a CLS token, which R1V drops ("default").
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(getattr(language, "tie_word_embeddings", False)),
    )
    cfg.ps_version = ps_version
    cfg.template = template
    cfg.bos_token_id = tokenizer.bos_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    cfg.pad_token_id = tokenizer.pad_token_id
    return cfg


def build_r1v(
    *,
    vision: PretrainedConfig | str,
    language: PretrainedConfig | str,
    tokenizer: PreTrainedTokenizerBase,
    downsample_ratio: float = 0.5,
    select_layer: int = -1,
    ps_version: str = "v2",
    template: str = "r1v",
    trainable: Trainable | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int | None = 0,
) -> InternVLForConditionalGeneration:
    """Assemble an R1V model from configs or from pretrained parts.

    `vision` / `language` are configs (random weights) or paths to pretrained models: an
    InternViT folder in OpenGVLab's layout (InternViT-300M / 6B-448px-V2_5, converted on the
    fly, no remote code), or any vision model transformers loads with AutoModel; any causal LM
    for `language`. The projector is always freshly initialised.
    """
    from transformers import AutoModelForCausalLM

    from r1v.model.checkpoint import load_vision

    vision_model = lm = None
    if isinstance(vision, str):
        vision_model = load_vision(vision, dtype=dtype)
        vision = vision_model.config
    if isinstance(language, str):
        lm = AutoModelForCausalLM.from_pretrained(language, dtype=dtype)
        language = lm.config
    cfg = r1v_config(
        vision=vision, language=language, tokenizer=tokenizer, downsample_ratio=downsample_ratio,
        select_layer=select_layer, ps_version=ps_version, template=template,
    )
    if seed is not None:
        torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(cfg).to(dtype)
    if vision_model is not None:
        model.model.vision_tower.load_state_dict(vision_model.state_dict())
    if lm is not None:
        model.model.language_model.load_state_dict(lm.get_decoder().state_dict())
        model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    apply_ps_version(model)
    set_trainable(model, trainable or Trainable())
    return model


# --------------------------------------------------------------------------- presets
def tiny_vision_config(**overrides) -> InternVLVisionConfig:
    """InternViT-6B's architecture (RMSNorm, q/k norm, no qkv bias, layer scale) at toy width."""
    kw = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=448, patch_size=14, norm_type="rms_norm", use_qk_norm=True, attention_bias=False,
        layer_scale_init_value=0.1, use_mean_pooling=True,
    )
    return InternVLVisionConfig(**{**kw, **overrides})


def tiny_language_config(vocab_size: int, **overrides) -> Qwen2Config:
    """A Qwen2 decoder (the R1-Distill-Qwen architecture) at toy width, untied head as in R1V."""
    kw = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        tie_word_embeddings=False, rope_theta=10000.0,
    )
    return Qwen2Config(**{**kw, **overrides})


def preset(name: str, *, template: str = "r1v", ps_version: str = "v2", seed: int = 0):
    """(model, tokenizer) of a named preset. Only `tiny` exists today."""
    from r1v.model.tokenizer import tiny_tokenizer

    if name != "tiny":
        raise ValueError(f"unknown preset {name!r}; available: tiny")
    tok = tiny_tokenizer(template)
    model = build_r1v(
        vision=tiny_vision_config(), language=tiny_language_config(len(tok)), tokenizer=tok,
        template=template, ps_version=ps_version, seed=seed,
    )
    return model, tok


if __name__ == "__main__":
    m, t = preset("tiny")
    for part, mods in part_modules(m).items():
        print(f"{part:10s} {sum(p.numel() for mod in mods for p in mod.parameters()):>10,d} params")
