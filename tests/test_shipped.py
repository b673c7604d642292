"""The default world's backbones that r1v ships (r1v/world/backbones/): they load, they are the files
their provenance describes, a default build installs them (and refuses a damaged copy), and the
reasoning LM cannot answer the visual questions without their pictures."""

from __future__ import annotations

import dataclasses
import shutil
from itertools import islice

import pytest

from r1v.world.build import (PRESETS, SHIPPED, SHIPPED_STAGES, build, config_from, majority_baseline, provenance,
                             recorded, tree_hash)


def test_shipped_backbones_load_and_match_their_provenance():
    from transformers import AutoModelForCausalLM, InternVLVisionModel

    from r1v.model.tokenizer import load_tokenizer

    prov = provenance()
    assert prov is not None, f"no backbones shipped in {SHIPPED}"
    assert recorded(prov["config"]) == dataclasses.asdict(PRESETS["default"]), \
        "shipped with other settings than the default"
    for name in SHIPPED_STAGES:
        assert tree_hash(SHIPPED / name) == prov["stages"][name]["hash"], name
    total = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert total <= 50e6
    tok = load_tokenizer(str(SHIPPED / "tokenizer"))
    # `lm.skills` reads one greedy token as the answer: every value a drill asks is one token
    assert all(len(tok(f" {v}", add_special_tokens=False)["input_ids"]) == 1 for v in range(9))
    for name in ("base", "substitute", "reasoning"):
        model = AutoModelForCausalLM.from_pretrained(SHIPPED / name)
        assert model.config.vocab_size >= len(tok) and model.config.hidden_size == prov["config"]["lm_hidden"]
    vit = InternVLVisionModel.from_pretrained(SHIPPED / "vision")
    assert vit.config.hidden_size == prov["config"]["vit_hidden"]
    # the build's scores travel with them
    assert {"reasoning_text", "reasoning_picture", "probe"} <= set(prov["scores"])


def test_a_default_build_installs_them_and_refuses_a_damaged_copy(tmp_path):
    from r1v.errors import R1VError

    prov = provenance()
    logs = []
    data = build(config_from("default"), tmp_path / "w", log=logs.append)
    for name in SHIPPED_STAGES:
        assert data["stages"][name]["hash"] == prov["stages"][name]["hash"] and data["stages"][name]["shipped"]
    assert data["scores"] == prov["scores"]
    assert sum("shipped" in line for line in logs) == len(SHIPPED_STAGES)
    # the data are drawn here; where this machine draws them as the build machine did, the hashes agree
    assert data["stages"]["data"]["hash"]

    damaged = tmp_path / "damaged"
    shutil.copytree(SHIPPED, damaged)
    weights = damaged / "reasoning" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(R1VError, match="does not match its provenance"):
        build(config_from("default"), tmp_path / "w2", shipped=damaged, log=lambda s: None)
    assert not (tmp_path / "w2" / "reasoning").exists()


def test_without_the_picture_the_reasoning_lm_stays_near_chance_on_every_family():
    """Every family needs its picture: the shipped reasoning LM, asked the visual test questions
    without their pictures, does no better than the commonest training answer of each question
    (the best a model that never looks can do), within sampling noise."""
    from transformers import AutoModelForCausalLM

    from r1v.model.tokenizer import load_tokenizer
    from r1v.world import lm
    from r1v.world.build import by_family
    from r1v.world.data import stream, to_row

    seed = PRESETS["default"].seed
    test = [to_row(p, rid=f"t{i}", split="test", image=f"t{i}.png")
            for i, p in enumerate(islice(stream("test", seed=f"visual:{seed}", unique=True), 240))]
    train = [to_row(p, rid=f"r{i}", split="train", image=f"r{i}.png")
             for i, p in enumerate(islice(stream("train", seed=f"visual:{seed}"), 4000))]
    tok = load_tokenizer(str(SHIPPED / "tokenizer"))
    model = AutoModelForCausalLM.from_pretrained(SHIPPED / "reasoning").eval()
    _, scored = lm.accuracy(model, tok, test)
    blind = by_family(test, [s.correct for _, s in scored])
    assert set(blind) == {"shapes", "bars", "expr", "clock"}
    for family, acc in blind.items():
        rows = [r for r in test if r["family"] == family]
        chance = majority_baseline(train, rows)
        assert acc <= chance + 0.12, f"{family}: {acc:.2f} without the picture, chance {chance:.2f}"
