"""Builders: trainable parts, assembling from pretrained parts."""

import pytest
import torch
from transformers import InternVLVisionModel, Qwen2ForCausalLM

from r1v.model.builder import Trainable, build_r1v, preset, set_trainable, tiny_language_config, tiny_vision_config


def test_trainable_parts_follow_the_config():
    model, _ = preset("tiny")
    counts = set_trainable(model, Trainable(vision=False, projector=True, language=False))
    assert counts["vision"] == counts["language"] == 0 and counts["projector"] > 0
    assert all(p.requires_grad for p in model.model.multi_modal_projector.parameters())
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert not any(p.requires_grad for p in model.lm_head.parameters())
    counts = set_trainable(model, Trainable(vision=True, projector=False, language=True))
    assert counts["vision"] > 0 and counts["projector"] == 0 and counts["language"] > 0


def test_build_from_pretrained_parts(tmp_path):
    from r1v.model.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(5)
    vit = InternVLVisionModel(tiny_vision_config())
    lm = Qwen2ForCausalLM(tiny_language_config(len(tok)))
    vit.save_pretrained(tmp_path / "vit")
    lm.save_pretrained(tmp_path / "lm")
    model = build_r1v(vision=str(tmp_path / "vit"), language=str(tmp_path / "lm"), tokenizer=tok)
    for k, v in vit.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[k], v)
    for k, v in lm.model.state_dict().items():
        assert torch.equal(model.model.language_model.state_dict()[k], v)
    assert torch.equal(model.lm_head.weight, lm.lm_head.weight)
    assert model.config.image_seq_length == 256


def test_tokenizer_larger_than_vocabulary_is_refused():
    from r1v.model.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="resize"):
        build_r1v(vision=tiny_vision_config(), language=tiny_language_config(10), tokenizer=tok)


def test_build_from_an_internvit_folder_in_opengvlab_layout(tiny, tmp_path):
    """InternViT-300M/6B-448px-V2_5 ship as remote code with a fused qkv; r1v converts them on load."""
    import json

    from safetensors.torch import save_file

    from r1v.model.checkpoint import load_vision
    from tests.conftest import official_config, official_state_dict

    model, tok = tiny
    vit = tmp_path / "InternViT-tiny"
    vit.mkdir()
    state = {k.removeprefix("vision_model."): v for k, v in official_state_dict(model).items()
             if k.startswith("vision_model.")}
    save_file(state, vit / "model.safetensors")
    (vit / "config.json").write_text(json.dumps(official_config(model)["vision_config"]))
    loaded = load_vision(vit)
    ref = model.model.vision_tower.state_dict()
    assert loaded.state_dict().keys() == ref.keys()
    assert all(torch.equal(loaded.state_dict()[k], ref[k]) for k in ref)
    # and assembled: an R1V whose vision tower is that InternViT
    lm = tmp_path / "lm"
    Qwen2ForCausalLM(tiny_language_config(len(tok))).save_pretrained(lm)
    r1v = build_r1v(vision=str(vit), language=str(lm), tokenizer=tok)
    assert all(torch.equal(r1v.model.vision_tower.state_dict()[k], ref[k]) for k in ref)
    del state["encoder.layers.0.attn.qkv.weight"]
    save_file(state, vit / "model.safetensors")
    from r1v.errors import R1VError

    with pytest.raises(R1VError, match="q/k/v|do not match"):
        load_vision(vit)
