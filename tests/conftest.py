"""Shared fixtures: tiny models from the real builders, and an *independent* writer of the
official Skywork layout (its own name table, taken from formats.md), so that loader and
converter are checked against the format, not against themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from r1v.model.builder import preset

LAYER = "model.vision_tower.encoder.layer."
OFFICIAL_LAYER_PARTS = {  # transformers -> official, inside a vision layer
    "attention.projection_layer.": "attn.proj.", "attention.q_norm.": "attn.q_norm.",
    "attention.k_norm.": "attn.k_norm.", "lambda_1": "ls1", "lambda_2": "ls2",
    "layernorm_before.": "norm1.", "layernorm_after.": "norm2.", "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2.",
}
OFFICIAL_PREFIXES = {
    "model.vision_tower.embeddings.cls_token": "vision_model.embeddings.class_embedding",
    "model.vision_tower.embeddings.position_embeddings": "vision_model.embeddings.position_embedding",
    "model.vision_tower.embeddings.patch_embeddings.projection.": "vision_model.embeddings.patch_embedding.",
    "model.multi_modal_projector.layer_norm.": "mlp1.0.",
    "model.multi_modal_projector.linear_1.": "mlp1.1.",
    "model.multi_modal_projector.linear_2.": "mlp1.3.",
    "model.language_model.": "language_model.model.",
    "lm_head.": "language_model.lm_head.",
}


def official_state_dict(model) -> dict[str, torch.Tensor]:
    out, qkv = {}, {}
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if k.startswith(LAYER):
            n, rest = k[len(LAYER):].split(".", 1)
            m = re.fullmatch(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if m:
                qkv.setdefault((n, m[2]), {})[m[1]] = v
                continue
            part = next(p for p in OFFICIAL_LAYER_PARTS if rest.startswith(p))
            out[f"vision_model.encoder.layers.{n}.{OFFICIAL_LAYER_PARTS[part]}{rest[len(part):]}"] = v
            continue
        prefix = next(p for p in OFFICIAL_PREFIXES if k.startswith(p))
        out[OFFICIAL_PREFIXES[prefix] + k[len(prefix):]] = v
    for (n, kind), parts in qkv.items():
        out[f"vision_model.encoder.layers.{n}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def official_config(model) -> dict:
    c, v, t = model.config, model.config.vision_config, model.config.text_config
    llm = t.to_dict()
    llm["architectures"] = ["Qwen2ForCausalLM"]
    return {
        "architectures": ["SkyworkR1VChatModel"], "model_type": "skywork_chat",
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": v.image_size[0],
        "select_layer": c.vision_feature_layer, "ps_version": c.ps_version, "template": "r1v",
        "max_dynamic_patch": 12, "min_dynamic_patch": 1, "use_thumbnail": True, "llm_config": llm,
        "vision_config": {
            "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size, "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads, "intermediate_size": v.intermediate_size,
            "image_size": v.image_size[0], "patch_size": v.patch_size[0], "qk_normalization": v.use_qk_norm,
            "qkv_bias": v.attention_bias, "norm_type": v.norm_type, "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": v.hidden_act, "initializer_factor": 0.1, "num_channels": 3,
        },
    }


def write_official(model, tokenizer, path: Path, shards: int = 1) -> Path:
    """Write `model` as an official Skywork checkpoint, split into `shards` files."""
    path.mkdir(parents=True, exist_ok=True)
    sd = official_state_dict(model)
    keys = sorted(sd)
    if shards == 1:
        save_file(sd, path / "model.safetensors")
    else:
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: sd[k] for k in keys[i::shards]}
            save_file(part, path / name)
            weight_map.update(dict.fromkeys(part, name))
        (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps(official_config(model)))
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _judge_cache(tmp_path, monkeypatch):
    """Each test's own judge cache: replies cached by one test (or by a user's runs) never answer another's."""
    monkeypatch.setattr("r1v.evaluate.cli.DEFAULT_CACHE", tmp_path / "judge-cache.jsonl")


@pytest.fixture(scope="session")
def tiny():
    model, tok = preset("tiny")
    return model.eval(), tok


@pytest.fixture(scope="session")
def tiny_v1():
    model, tok = preset("tiny", ps_version="v1", seed=1)
    return model.eval(), tok


@pytest.fixture(scope="session")
def official_dir(tiny, tmp_path_factory):
    return write_official(*tiny, tmp_path_factory.mktemp("official") / "tiny", shards=3)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    torch.manual_seed(0)
    paths = []
    for i, (w, h) in enumerate([(640, 360), (200, 500), (64, 64)]):
        arr = (torch.rand(h, w, 3) * 255).to(torch.uint8).numpy()
        p = d / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A mini-world built with the `small` preset (seconds; every stage runs, nothing is learnt)."""
    from r1v.world.build import build, config_from

    out = tmp_path_factory.mktemp("world") / "w"
    data = build(config_from("small"), out, log=lambda s: None)
    return out, data


# The recipe's stages on the small mini-world, at a few steps each.
SMALL = """
name: small
seed: 0
model: {{vision: {world}/vision, substitute: {world}/substitute, reasoning: {world}/reasoning, max_tiles: 1}}
data:
  task: world
  align_full: {world}/recipe/align-full.jsonl
  align_filtered: {world}/recipe/align-filtered.jsonl
  align_cot: {world}/recipe/align-cot.jsonl
  sft: {world}/recipe/sft.jsonl
  eval_visual: {world}/data/visual-test.jsonl
  eval_text: {world}/data/text-test.jsonl
  reference_scores: {world}/recipe/reference-scores.json
  eval_limit: 8
align:
  passes: [{{name: full, lr: 1.0e-2, epochs: 0.2}}, {{name: filtered, lr: 1.0e-3}}, {{name: cot, lr: 1.0e-3}}]
  optim: {{samples_per_step: 8, micro_batch_per_device: 4}}
  pack_length: 256
sft:
  optim: {{lr: 1.0e-2, samples_per_step: 8, epochs: 0.5}}
  taus: [2, 5]
  lrs: [1.0e-3, 1.0e-3]
  mistake_pool: 8
  max_new_tokens: 12
  pack_length: 256
grpo: {{steps: 2, prompts_per_step: 2, generations_per_prompt: 4, max_completion_tokens: 12, lr: 1.0e-2, tau: 0}}
eval: {{max_new_tokens: 12, batch_size: 8}}
"""


@pytest.fixture(scope="session")
def recipe_run(small_world, tmp_path_factory):
    """The small recipe, every stage, once: (recipe yaml, run folder, world folder). Tests that change
    a run work on a copy, except where they rerun GRPO (nothing compares it after them)."""
    from r1v.cli import main

    out, _ = small_world
    assert main(["world", "data", "--world", str(out)]) == 0  # the world's files, as `make demo` makes them
    d = tmp_path_factory.mktemp("recipe")
    yaml_path = d / "small.yaml"
    yaml_path.write_text(SMALL.format(world=out))
    assert main(["recipe", "run", str(yaml_path), f"out={d / 'run'}"]) == 0
    return yaml_path, d / "run", out
