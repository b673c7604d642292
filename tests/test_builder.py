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
