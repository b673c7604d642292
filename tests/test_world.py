"""The mini-world: generator, splits, answers recomputed independently, tokenizer, backbones, build, CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from itertools import islice
from pathlib import Path

import pytest
import torch

from r1v.cli import main
from r1v.world.data import SPLITS, split_of, stream, target, write_split
from r1v.world.scenes import FAMILIES, LETTERS, describe, draw, make_problem


# --------------------------------------------------------------------------- generator
def test_generator_is_deterministic():
    for fam in FAMILIES:
        a, b = make_problem(fam, 7), make_problem(fam, 7)
        assert a == b
        buf_a, buf_b = io.BytesIO(), io.BytesIO()
        draw(a).save(buf_a, "PNG")
        draw(b).save(buf_b, "PNG")
        assert buf_a.getvalue() == buf_b.getvalue()
    assert make_problem("bars", 1) != make_problem("bars", 2)


def test_splits_are_disjoint_and_stable(tmp_path):
    keys = {}
    for split in SPLITS:
        probs = list(islice(stream(split, seed=3), 200))
        assert {split_of(p) for p in probs} == {split}
        keys[split] = {json.dumps(p.key(), sort_keys=True) for p in probs}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]
    # Eval splits hold no problem twice; files hold what the streams give.
    files = write_split(tmp_path, "test", visual=30, text=30, seed=0)
    rows = [json.loads(line) for line in files["visual"].read_text().splitlines()]
    assert len({json.dumps([r["scene"], r["question"], bool(r["choices"])]) for r in rows}) == 30
    assert all((tmp_path / r["image"]).is_file() and r["split"] == "test" for r in rows)
    text_rows = [json.loads(line) for line in files["text"].read_text().splitlines()]
    assert all(r["image"] is None and r["context"] for r in text_rows)


def test_every_family_and_level_is_generated():
    seen = {(p.family, p.level) for p in islice(stream("train", seed=0), 400)}
    assert seen == {(f, lvl) for f in FAMILIES for lvl in (1, 2, 3)}
    multi = [p for p in islice(stream("train", seed=1), 400) if p.choices]
    assert 0.1 < len(multi) / 400 < 0.4
    assert all(p.answer in LETTERS and p.choices[LETTERS.index(p.answer)] == str(p.value) for p in multi)
    assert all(len(set(p.choices)) == 4 for p in multi)


# --------------------------------------------------------------------------- answers, recomputed
def _solve(description: str, question: str) -> int:
    """An independent solver: reads the scene *in words* and the question, computes the answer."""
    if description.startswith("Objects:"):
        objs = [tuple(o.split()) for o in description[len("Objects: "):-1].split(", ")]

        def count(name: str) -> int:
            words = name.split()
            if words[-1] == "shapes":
                return sum(c == words[0] for c, _ in objs)
            return sum(s + "s" == words[-1] for _, s in objs)

        if m := re.fullmatch(r"How many more (.+) than (.+) are there\?", question):
            return count(m[1]) - count(m[2])
        if m := re.fullmatch(r"How many (.+) and (.+) are there, minus the (.+)\?", question):
            return count(m[1]) + count(m[2]) - count(m[3])
        if m := re.fullmatch(r"How many (.+), (.+) and (.+) are there in total\?", question):
            return count(m[1]) + count(m[2]) + count(m[3])
        m = re.fullmatch(r"How many (.+) and (.+) are there in total\?", question)
        return count(m[1]) + count(m[2])
    if description.startswith("Bars:"):
        bars = {c: int(v) for c, v in (b.split() for b in description[len("Bars: "):-1].split(", "))}
        if question == "What is the sum of all the bars?":
            return sum(bars.values())
        if question.startswith("How much taller"):
            return max(bars.values()) - min(bars.values())
        names = re.findall(r"the (\w+) bar", question)
        total = bars[names[0]] + bars[names[1]]
        return total - bars[names[2]] if len(names) == 3 else total
    if description.startswith("Expression:"):
        return eval(description[len("Expression: "):-1])  # digits and + - only, written by the generator
    hour = int(re.search(r"shows (\d+)", description)[1])
    shift = sum(int(k) for k in re.findall(r"(\d+) (?:more )?hours? later", question))
    shift -= sum(int(k) for k in re.findall(r"(\d+) hours? earlier", question))
    return (hour - 1 + shift) % 12 + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_recomputed_from_the_scene_in_words(family):
    for i in range(300):
        p = make_problem(family, f"check:{i}")
        assert _solve(describe(p), p.question) == p.value, (describe(p), p.question, p.reasoning)
        assert p.value >= 0 and p.steps >= 1
        # The chain of thought ends on the answer, and its arithmetic is right.
        for a, op, b, r in re.findall(r"(\d+) ([+-]) (\d+) = (\d+)\.", p.reasoning):
            assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(r)
        # It ends on the value, which is boxed also for multiple choice (the gold option's text).
        assert p.reasoning.rstrip(".").split()[-1] == str(p.value)
        if p.choices:
            assert p.choices[LETTERS.index(p.answer)] == str(p.value)
        assert target(p, "reasoning").endswith(f"</think>\n\\boxed{{{p.value}}}")


def test_the_scene_data_matches_the_picture_layout():
    from r1v.world.vit import cell_targets

    p = make_problem("expr", 3)
    glyphs = cell_targets(p)["glyph"]
    assert [g for g in glyphs if g] and glyphs[:4] == [0, 0, 0, 0]  # the expression starts on the second row
    img = draw(make_problem("shapes", 4))
    assert img.size == (112, 112)


# --------------------------------------------------------------------------- the harness reads the rows
@pytest.mark.parametrize("text, correct, rule", [
    ("13", True, "option-text"),          # the value the world's models box: the gold option's text
    (" 13 ", True, "option-text"),
    ("C", True, "lone-letter"),
    ("(C)", True, "lone-letter"),
    ("2", False, "option-text"),          # another option's text
    ("A", False, "lone-letter"),          # another option's letter
    ("14", False, "none"),                # a value no option holds: wrong, no closest-option guess
    ("013", False, "none"),               # not the option's exact text
    ("the answer is C", True, "any"),     # a letter in words: the GPQA letter rules
    ("C or A", False, "any"),             # two letters: the GPQA rules take the latest
    ("", False, "none"),
])
def test_multiple_choice_takes_the_option_text_or_the_letter(text, correct, rule):
    from r1v.evaluate.tasks.world import choice_rules

    ok, _, got = choice_rules("C", ["2", "4", "13", "5"], text)
    assert (ok, got) == (correct, rule)


def test_an_option_that_is_a_letter_is_read_as_the_letter():
    from r1v.evaluate.tasks.world import choice_rules

    assert choice_rules("A", ["B", "A"], "B") == (False, "B", "lone-letter")
    assert choice_rules("B", ["red bar", "Blue  bar"], "blue bar")[:2] == (True, "B")


def test_world_rows_are_scored_by_the_harness(tmp_path):
    from r1v.evaluate.tasks import get_task

    files = write_split(tmp_path, "val", visual=12, text=12, seed=1)
    task = get_task("world")
    items = task.read(files["visual"])
    rows = [json.loads(line) for line in files["visual"].read_text().splitlines()]
    assert len(items) == 12 and all(len(it.images) == 1 for it in items)
    for it, r in zip(items, rows):
        assert task.score(it, target(r, "reasoning")).correct
        assert task.score(it, target(r, "instruct")).correct
        assert not task.score(it, r["reasoning"]).correct  # unfinished: no </think>
        wrongs = [str(r["value"] + 1)]
        if r["choices"]:  # another option, by its text or its letter
            other = next(i for i, c in enumerate(r["choices"]) if c != str(r["value"]))
            wrongs += [r["choices"][other], LETTERS[other], "Z"]
            assert task.score(it, f"</think>\\boxed{{{r['answer']}}}").correct  # the gold's letter
        for wrong in wrongs:
            assert not task.score(it, f"</think>\\boxed{{{wrong}}}").correct
    text_items = task.read(files["text"])
    assert all(not it.images and it.question.split("\n")[0].split(":")[0] in
               ("Objects", "Bars", "Expression", "The clock shows 1", *[f"The clock shows {h}." for h in range(13)])
               or it.question.startswith("The clock") for it in text_items)
    (tmp_path / rows[0]["image"]).unlink()
    from r1v.errors import R1VError

    with pytest.raises(R1VError, match="missing"):
        task.read(files["visual"])


# --------------------------------------------------------------------------- tokenizer
def test_world_tokenizer_round_trips_and_is_deterministic():
    from r1v.model.tokenizer import train_bpe_tokenizer

    corpus = [f"{p.prompt(text_only=True)}\n{target(p, 'reasoning')}" for p in islice(stream("train", seed=0), 500)]
    tok = train_bpe_tokenizer(corpus, vocab_size=400)
    assert tok.get_vocab() == train_bpe_tokenizer(corpus, vocab_size=400).get_vocab()
    for text in [corpus[0], "héllo wörld ✓ 日本 <think>x</think>\\boxed{12}", "<image>\n  two  spaces\t"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # World words are single tokens; the specials are in.
    assert len(tok(" triangles", add_special_tokens=False)["input_ids"]) == 1
    for special in ("<think>", "</think>", "<IMG_CONTEXT>", "<｜Assistant｜>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert len(tok(corpus[0], add_special_tokens=False)["input_ids"]) < len(corpus[0]) / 2.5


# --------------------------------------------------------------------------- vision geometry
@pytest.mark.parametrize("ps_version", ["v1", "v2"])
def test_each_visual_token_covers_one_cell(ps_version):
    from r1v.world.vit import token_cells

    cells = token_cells(ps_version)
    assert sorted(cells) == list(range(16))
    if ps_version == "v2":
        assert cells == list(range(16))  # v2 keeps raster order
    else:
        assert cells == [c * 4 + r for r in range(4) for c in range(4)]  # v1 transposes the grid


def test_vit_pixels_equal_the_r1v_processor(tiny):
    import numpy as np

    from r1v.model.processor import build_image_processor
    from r1v.world.vit import as_uint8, pixels

    img = draw(make_problem("clock", 2))
    ours = pixels(as_uint8([img]))
    ref = build_image_processor(tile_size=112, max_tiles=1)(images=[img], return_tensors="pt")["pixel_values"]
    assert ref.shape == ours.shape == (1, 3, 112, 112)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(pixels(torch.from_numpy(np.array(img))[None]), ref, atol=1e-5)


# --------------------------------------------------------------------------- the build (small preset)
def test_small_build_writes_every_stage(small_world):
    from r1v.world.build import STAGES

    out, data = small_world
    assert set(data["stages"]) == set(STAGES)
    for stage in ("data", "tokenizer", "base", "substitute", "reasoning", "vision"):
        assert (out / stage).is_dir() and data["stages"][stage]["hash"]
    sc = data["scores"]
    assert 0 <= sc["reasoning_text"] <= 1 and set(sc["probe"]) == {"colour", "shape", "glyph", "height", "hour"}
    for lm_ in ("base", "substitute", "reasoning"):
        assert set(sc[f"{lm_}_skills"]) == {"look-up", "counting"}
        assert all(0 <= v <= 1 for v in sc[f"{lm_}_skills"].values())
    from r1v.world.build import table

    assert "Skills, each LM read as a plain LM" in table(data)
    assert json.loads((out / "world.json").read_text()) == data
    # Where each backbone trained is recorded: floating point differs between devices.
    assert {data["stages"][s]["device"] for s in ("base", "substitute", "reasoning", "vision", "scores")} == {"cpu"}


@pytest.mark.parametrize("family", ["shapes", "bars", "expr", "clock"])
def test_picture_words_say_what_the_vision_encoder_is_taught(family):
    """The cell words the LMs read and the per-cell targets the encoder learns describe the same cells."""
    from r1v.world.scenes import COLOURS, EMPTY, PICTURE_WORDS, cell_words, picture
    from r1v.world.vit import cell_targets, token_cells

    for seed in range(40):
        p = make_problem(family, seed)
        words, t = cell_words(p), cell_targets(p)
        for cell, w in enumerate(words):
            assert w in PICTURE_WORDS
            shows = [a for a in ("colour", "shape", "glyph", "height", "hour") if t[a][cell]]
            assert (w == EMPTY) == (not shows), (w, shows)
            if "colour" in shows:
                assert COLOURS[t["colour"][cell] - 1] in w
            if "height" in shows:
                assert w.endswith(f"bar{t['height'][cell]}>")
            if "hour" in shows:
                assert w == f"<h{t['hour'][cell]}>"
        order = token_cells("v2")
        assert picture(p, order) == "Picture: " + "".join(words[c] for c in order)


def test_picture_words_are_single_tokens(small_world):
    from r1v.model.tokenizer import load_tokenizer
    from r1v.world.scenes import PICTURE_WORDS, picture

    out, _ = small_world
    tok = load_tokenizer(str(out / "tokenizer"))
    for w in PICTURE_WORDS:
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    text = picture(make_problem("shapes", 2), list(range(16)))
    assert len(tok(text.removeprefix("Picture: "), add_special_tokens=False)["input_ids"]) == 16
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_overthinking_examples_restate_the_chain_once(small_world):
    """The reasoning LM's `rechecked` examples (overthinking, which AL-CoTD's penalty curbs) restate
    the whole chain once before `</think>`; the loss still covers the completion only."""
    from r1v.model.tokenizer import load_tokenizer
    from r1v.world.lm import chat_examples

    out, _ = small_world
    tok = load_tokenizer(str(out / "tokenizer"))
    p = make_problem("bars", 4, level=2)
    (plain, plain_labels), (again, again_labels) = chat_examples(tok, [p, p], "reasoning", rechecked=[False, True])
    completion = tok.decode([t for t in again_labels if t != -100], skip_special_tokens=True)
    assert completion == f" {p.reasoning} {p.reasoning}</think>\n\\boxed{{{p.answer}}}"
    assert tok.decode([t for t in plain_labels if t != -100], skip_special_tokens=True) == target(p, "reasoning")
    n_prompt = plain_labels.count(-100)
    assert again_labels.count(-100) == n_prompt and again[:n_prompt] == plain[:n_prompt]  # the same prompt


def test_backbones_save_and_load(small_world):
    from transformers import AutoModelForCausalLM, InternVLVisionModel

    from r1v.model.builder import build_r1v
    from r1v.model.processor import processor_for_model
    from r1v.model.tokenizer import load_tokenizer

    out, _ = small_world
    tok = load_tokenizer(str(out / "reasoning"))
    # The trained BPE loads as saved from an LM folder too (AutoTokenizer alone would swap in Qwen2's
    # pre-tokenizer there, because of the folder's qwen2 config.json).
    text = "Bars: yellow 7, blue 14.\nWhat is the green bar?"
    assert tok(text)["input_ids"] == load_tokenizer(str(out / "tokenizer"))(text)["input_ids"]
    ids = tok("Bars: red 5, blue 3.", return_tensors="pt")["input_ids"]
    lms = {n: AutoModelForCausalLM.from_pretrained(out / n).eval() for n in ("base", "substitute", "reasoning")}
    with torch.no_grad():
        logits = {n: m(ids).logits for n, m in lms.items()}
    assert not torch.equal(logits["base"], logits["reasoning"])  # fine-tuning changed the weights
    assert lms["base"].config.vocab_size == lms["reasoning"].config.vocab_size >= len(tok)
    # The substitute and the reasoning LM share the base's shapes and its input embeddings (frozen while
    # each is fine-tuned, `shared_layers`), and nothing above them.
    assert {k: v.shape for k, v in lms["substitute"].state_dict().items()} == \
        {k: v.shape for k, v in lms["reasoning"].state_dict().items()}
    sd = {n: m.state_dict() for n, m in lms.items()}
    for k in sd["base"]:
        kept = k == "model.embed_tokens.weight"
        for n in ("substitute", "reasoning"):
            assert torch.equal(sd[n][k], sd["base"][k]) == kept, (n, k)
    vit = InternVLVisionModel.from_pretrained(out / "vision")
    assert vit.config.image_size[0] == 112

    # R1V assembles from the saved parts, and an image becomes 16 visual tokens.
    model = build_r1v(vision=str(out / "vision"), language=str(out / "reasoning"), tokenizer=tok)
    assert torch.equal(model.model.vision_tower.embeddings.cls_token, vit.embeddings.cls_token)
    assert torch.equal(model.lm_head.weight, lms["reasoning"].lm_head.weight)
    from r1v.model.checkpoint import save_model

    saved = save_model(model, tok, out.parent / "r1v", layout="hf", overwrite=True)
    assert load_tokenizer(str(saved))(text)["input_ids"] == tok(text)["input_ids"]
    proc = processor_for_model(model, tok, max_tiles=1)
    inputs = proc(text=f"{proc.image_token}\nWhat is the red bar plus the blue bar?",
                  images=[draw(make_problem("bars", 1))], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_shared_layers_freezes_the_bottom_and_is_checked():
    from r1v.errors import R1VError
    from r1v.world import lm
    from r1v.world.build import config_from

    model = lm.new_lm(128, lm.LMSize(hidden=32, layers=3, heads=2, kv_heads=1, intermediate=64), seed=0)
    lm.freeze_bottom(model, 2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "model.embed_tokens.weight" in frozen and "lm_head.weight" not in frozen
    assert {n.split(".")[2] for n in frozen if ".layers." in n} == {"0", "1"}
    lm.freeze_bottom(lm.new_lm(128, lm.LMSize(32, 1, 2, 1, 64), seed=0), -1)  # -1: nothing, no error
    assert config_from("default").shared_layers == -1  # the shipped backbones froze nothing
    for bad in (-2, 5):
        with pytest.raises(R1VError, match="shared_layers"):
            config_from("default", {"shared_layers": bad})


def test_base_chat_steps_end_pretraining_on_both_styles(small_world, tmp_path):
    import random

    from r1v.model.tokenizer import load_tokenizer
    from r1v.world import lm
    from r1v.world.build import build, config_from

    out, data = small_world
    tok = load_tokenizer(str(out / "tokenizer"))
    probs = list(islice(stream("train", seed="lm:0"), 60))
    ex = lm.mixed_chat_examples(tok, probs, random.Random(0), picture_share=0.5, overthink_share=1.0)
    assert ex == lm.mixed_chat_examples(tok, probs, random.Random(0), picture_share=0.5, overthink_share=1.0)
    styles = []
    for p, (_, labels) in zip(probs, ex):  # each example is its own problem's, in order
        completion = tok.decode([t for t in labels if t != -100], skip_special_tokens=False)
        styles.append("instruct" if completion.startswith("</think>") else "reasoning")
        assert target(p, "instruct").split("\n")[-1] in completion  # its own boxed answer
        # a reasoning chain is restated (overthink_share 1); an instruct one is not
        assert completion.count(p.reasoning) == (2 if styles[-1] == "reasoning" else 1)
    assert 15 <= styles.count("instruct") <= 45
    # In a build (the small preset has 2): the base goes on from its pretraining, so it is not the base
    # without those steps.
    plain = build(config_from("small", {"base_chat_steps": 0}), tmp_path / "w", log=lambda s: None)
    assert plain["stages"]["base"]["hash"] != data["stages"]["base"]["hash"]
    assert plain["stages"]["tokenizer"]["hash"] == data["stages"]["tokenizer"]["hash"]


def test_finetune_lr_trains_the_siblings_alone_at_that_rate(small_world, tmp_path, monkeypatch):
    """`finetune_lr` is the siblings' rate (0: half of lm_lr, the previous shipped LMs'); the base is the
    same build's, so only the substitute and the reasoning LM change."""
    from r1v.errors import R1VError
    from r1v.world import lm
    from r1v.world.build import build, config_from

    for bad in (-1e-4, float("nan")):
        with pytest.raises(R1VError, match="finetune_lr"):
            config_from("small", {"finetune_lr": bad})
    rates = []
    train = lm.train
    monkeypatch.setattr(lm, "train", lambda *a, **k: rates.append(k["lr"]) or train(*a, **k))
    out, data = small_world
    cfg = config_from("small", {"finetune_lr": 1e-4})
    got = build(cfg, tmp_path / "w", log=lambda s: None)
    assert rates == [cfg.lm_lr, cfg.lm_lr / 2, 1e-4, 1e-4]  # base, its chat steps, substitute, reasoning
    assert got["stages"]["base"]["hash"] == data["stages"]["base"]["hash"]
    for s in ("substitute", "reasoning"):
        assert got["stages"][s]["hash"] != data["stages"][s]["hash"], s


def test_embed_noise_perturbs_the_siblings_input_embeddings_while_they_train(small_world, tmp_path, monkeypatch):
    """`embed_noise` is NEFTune on the siblings' fine-tuning only, on by default: a build without it
    trains the same base and other siblings, and its training forwards see the plain lookup where
    the default's siblings see noisy input embeddings; the hook is gone from the saved models."""
    from r1v.errors import R1VError
    from r1v.world import lm
    from r1v.world.build import WorldConfig, build, config_from

    assert WorldConfig().embed_noise == 3.0 and config_from("small").embed_noise == 3.0
    for bad in (-1.0, float("nan")):
        with pytest.raises(R1VError, match="embed_noise"):
            config_from("small", {"embed_noise": bad})
    noisy = []
    train = lm.train

    def spy(model, *a, **k):  # is the embedding's output, in training mode, not the plain lookup?
        emb = model.get_input_embeddings()
        ids = torch.tensor([[1, 2, 3]])
        model.train()
        noisy.append(not torch.equal(emb(ids), emb.weight[ids]))
        return train(model, *a, **k)

    monkeypatch.setattr(lm, "train", spy)
    out, data = small_world  # the small preset, so embed_noise=3
    got = build(config_from("small", {"embed_noise": 0.0}), tmp_path / "w", log=lambda s: None)
    assert noisy == [False] * 4  # base, its chat steps, substitute, reasoning
    assert got["stages"]["base"]["hash"] == data["stages"]["base"]["hash"]
    for s in ("substitute", "reasoning"):
        assert got["stages"][s]["hash"] != data["stages"][s]["hash"], s
    noisy.clear()
    again = build(config_from("small"), tmp_path / "d", log=lambda s: None)
    assert noisy == [False, False, True, True]
    for s in ("substitute", "reasoning"):  # the default's noise is seeded: the same siblings again
        assert again["stages"][s]["hash"] == data["stages"][s]["hash"], s
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "d" / "reasoning").train()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(saved.get_input_embeddings()(ids), saved.get_input_embeddings().weight[ids])


def test_a_world_recorded_before_a_setting_existed_is_reused(tmp_path):
    """A world whose world.json predates a setting was built with the value that reproduces it
    (`ADDED_SETTINGS`): it is reused under that value and refused under another."""
    import json

    from r1v.errors import R1VError
    from r1v.world.build import ADDED_SETTINGS, build, config_from

    cfg = config_from("small", dict(ADDED_SETTINGS))
    build(cfg, tmp_path / "w", log=lambda s: None)
    manifest = tmp_path / "w" / "world.json"
    data = json.loads(manifest.read_text())
    for key in ADDED_SETTINGS:
        del data["config"][key]
    manifest.write_text(json.dumps(data))
    logs = []
    build(cfg, tmp_path / "w", log=logs.append)
    assert logs and all("reused" in line for line in logs)
    with pytest.raises(R1VError, match=r"other settings \(base_chat_steps=0 there, 2 asked, finetune_lr=0.0 there, "
                       r"0.00025 asked, embed_noise=0.0 there, 3.0 asked, shared_layers=-1 there, 0 asked, "
                       r"vit_qk_norm=True there"):
        build(config_from("small"), tmp_path / "w", log=lambda s: None)


def test_vit_qk_norm_and_heads_reach_the_encoder_the_build_trains(small_world, tmp_path, monkeypatch):
    """`vit_qk_norm=false` (the default, the shipped encoder) builds an InternViT without q/k norm
    (InternViT-300M's variant); `true` builds InternViT-6B's, as the backbones shipped before it.
    `vit_heads` sets its heads (0: vit_hidden // 16), a divisor of its width."""
    import shutil

    from r1v.errors import R1VError
    from r1v.world import vit
    from r1v.world.build import build, config_from

    assert config_from("small").vit_qk_norm is False and config_from("small", {"vit_qk_norm": True}).vit_qk_norm
    with pytest.raises(R1VError):
        config_from("small", {"vit_qk_norm": "sometimes"})
    for bad in (-1, 3):  # the small preset's encoder is 16 wide
        with pytest.raises(R1VError, match="vit_heads"):
            config_from("small", {"vit_heads": bad})
    assert vit.new_vit(vit.ViTSize(16, 1, 1, 32, qk_norm=True), seed=0).config.use_qk_norm is True
    off = vit.new_vit(vit.ViTSize(16, 1, 1, 32), seed=0)
    assert off.config.use_qk_norm is False and not any("q_norm" in n for n, _ in off.named_parameters())
    # The build passes the setting on: resume a copy of the small world at its vision stage.
    out, _ = small_world
    w = tmp_path / "w"
    shutil.copytree(out, w)
    shutil.rmtree(w / "vision")
    manifest = json.loads((w / "world.json").read_text())
    manifest["config"].update(vit_qk_norm=True, vit_heads=2)
    for stage in ("vision", "scores"):
        manifest["stages"].pop(stage)
    (w / "world.json").write_text(json.dumps(manifest))
    made = []

    class Stop(Exception):
        pass

    def capture(model, *a, **k):
        made.append((model.config.use_qk_norm, model.config.num_attention_heads))
        raise Stop

    monkeypatch.setattr(vit, "pretrain", capture)
    with pytest.raises(Stop):
        build(config_from("small", {"vit_qk_norm": True, "vit_heads": 2}), w, log=lambda s: None)
    assert made == [(True, 2)]


def test_every_setting_belongs_to_a_stage_or_the_scores():
    """A setting no stage lists would let a shipped backbone be copied into a world it was not built for."""
    from r1v.world.build import SCORE_SETTINGS, STAGE_SETTINGS, WorldConfig

    listed = {k for keys in STAGE_SETTINGS.values() for k in keys} | set(SCORE_SETTINGS)
    assert listed == {f.name for f in dataclasses.fields(WorldConfig)}


def test_cpu_reads_the_model_name_and_falls_back_without_proc(tmp_path):
    from r1v.world.build import cpu

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu(str(info)) == "AMD EPYC 7B13"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # ARM kernels list no model name
    assert cpu(str(info)) and "model name" not in cpu(str(info))
    assert cpu(str(tmp_path / "absent"))


def test_shipped_backbones_are_copied_stage_by_stage_where_their_settings_match(small_world, tmp_path):
    """Ship the small world; a world that changes the encoder's settings copies the tokenizer and the
    LMs and trains the encoder, the same files as training every stage; one that changes the reasoning
    LM's steps keeps the base and the substitute. Shipping that world keeps the copied stages'
    provenance."""
    from r1v.errors import R1VError
    from r1v.world.build import SHIPPED_STAGES, build, config_from, cpu, provenance, ship, tree_hash

    out, data = small_world
    folder = tmp_path / "backbones"
    first = ship(out, folder)
    assert all(first["stages"][s]["built"]["code"] == first["code"] for s in SHIPPED_STAGES)
    # the CPU model travels with each trained stage: other makes train other bytes from the same code
    assert all(first["stages"][s]["built"]["machine"].endswith(f", {cpu()}") for s in SHIPPED_STAGES)
    hashes = lambda d: {k: v.get("hash") for k, v in d["stages"].items()}  # noqa: E731
    shipped_in = lambda d: sorted(k for k, v in d["stages"].items() if v.get("shipped"))  # noqa: E731

    enc = config_from("small", {"vit_qk_norm": True})
    mixed = build(enc, tmp_path / "mixed", shipped=folder, log=lambda s: None)
    assert shipped_in(mixed) == ["base", "reasoning", "substitute", "tokenizer"]
    trained = build(enc, tmp_path / "trained", shipped=None, log=lambda s: None)
    assert hashes(mixed) == hashes(trained) and mixed["scores"] == trained["scores"]
    assert hashes(mixed)["vision"] != data["stages"]["vision"]["hash"]

    longer = build(config_from("small", {"reasoning_steps": 3}), tmp_path / "longer", shipped=folder,
                   log=lambda s: None)
    assert shipped_in(longer) == ["base", "substitute", "tokenizer", "vision"]
    assert longer["stages"]["reasoning"]["hash"] != data["stages"]["reasoning"]["hash"]

    # A world copied whole is not shipped again; one copied from backbones since replaced is refused.
    build(config_from("small"), tmp_path / "same", shipped=folder, log=lambda s: None)
    with pytest.raises(R1VError, match="not trained"):
        ship(tmp_path / "same", folder)
    ship(tmp_path / "mixed", folder)
    prov = provenance(folder)
    assert prov["config"]["vit_qk_norm"] is True and prov["stages"]["vision"]["hash"] == hashes(mixed)["vision"]
    assert prov["stages"]["base"] == first["stages"]["base"]  # trained by the first ship's world, as recorded
    again = build(enc, tmp_path / "again", shipped=folder, log=lambda s: None)
    assert shipped_in(again) == sorted([*SHIPPED_STAGES, "scores"]) and again["scores"] == mixed["scores"]
    with pytest.raises(R1VError, match="no longer holds"):
        ship(tmp_path / "longer", folder)

    # Asked for with another encoder setting, a world of copies drops its copied encoder and trains the
    # new one (what a default world does when r1v ships another encoder); a trained stage is kept, and
    # a change that would retrain it is refused.
    logs = []
    moved = build(config_from("small"), tmp_path / "again", shipped=folder, log=logs.append)
    assert any("vision: a copy of a shipped backbone built with other settings; replaced" in x for x in logs)
    assert shipped_in(moved) == ["base", "reasoning", "substitute", "tokenizer"]
    assert hashes(moved)["vision"] == data["stages"]["vision"]["hash"] and moved["scores"] == data["scores"]
    with pytest.raises(R1VError, match="its vision would be trained again"):
        build(enc, tmp_path / "again", shipped=folder, log=lambda s: None)

    # A shipped LM is not copied on top of a base that is not the shipped one, though its settings match
    # (a --train build stopped after its base, then resumed without --train).
    import json
    import shutil

    own = tmp_path / "own-base"
    own.mkdir()
    for stage in ("data", "tokenizer", "base"):
        shutil.copytree(tmp_path / "mixed" / stage, own / stage)
    (own / "base" / "losses.json").write_text("[0.5]")
    manifest = json.loads((tmp_path / "mixed" / "world.json").read_text())
    manifest["stages"] = {k: {**v, "shipped": False} for k, v in manifest["stages"].items()
                          if k in ("data", "tokenizer")}
    manifest["stages"]["base"] = {"seconds": 1.0, "peak_rss_mb": 1, "hash": tree_hash(own / "base")}
    (own / "world.json").write_text(json.dumps(manifest))
    resumed = build(enc, own, shipped=folder, log=lambda s: None)
    assert shipped_in(resumed) == ["vision"]
    assert resumed["stages"]["reasoning"]["hash"] == hashes(mixed)["reasoning"]  # trained, from the same weights


def test_build_is_reused_resumed_and_deterministic(small_world, tmp_path):
    from r1v.errors import R1VError
    from r1v.world.build import build, config_from

    out, data = small_world
    logs = []
    again = build(config_from("small"), out, log=logs.append)
    assert again["stages"] == data["stages"] and all("reused" in line for line in logs)
    # A second world from the same seed has the same hashes; a stage lost is rebuilt identically.
    other = build(config_from("small"), tmp_path / "w2", log=lambda s: None)
    hashes = lambda d: {k: v.get("hash") for k, v in d["stages"].items()}  # noqa: E731
    assert hashes(other) == hashes(data)
    import shutil

    shutil.rmtree(tmp_path / "w2" / "reasoning")
    redone = build(config_from("small"), tmp_path / "w2", log=lambda s: None)
    assert redone["stages"]["reasoning"]["hash"] == data["stages"]["reasoning"]["hash"]
    with pytest.raises(R1VError, match="other settings"):
        build(config_from("small", {"seed": 1}), out, log=lambda s: None)


def test_backbones_trained_here_are_scored_against_the_shipped_ones(small_world, tmp_path):
    """With `against`, a build scores each backbone it trained beside the shipped one on the same held-out
    items: an encoder of other settings probed on the same pictures, a reasoning LM on the same problems
    (this world's minus the shipped one's); a rebuild with the same settings is said to have the same
    bytes. Shipping such a world does not carry the comparison into the provenance."""
    from r1v.io import read_jsonl
    from r1v.world import vit
    from r1v.world.build import SHIPPED_STAGES, against_shipped, build, config_from, provenance, ship, table
    from r1v.world.scenes import FAMILIES

    out, data = small_world
    folder = tmp_path / "backbones"
    ship(out, folder)
    quiet = lambda s: None  # noqa: E731

    enc = config_from("small", {"vit_qk_norm": True})
    mixed = build(enc, tmp_path / "mixed", shipped=folder, against=folder, log=quiet)
    vs = mixed["scores"]["against_shipped"]
    assert vs["code"] == provenance(folder)["code"] and list(vs["stages"]) == ["vision"]  # the rest was copied
    rec = vs["stages"]["vision"]
    assert rec["settings"] == {"vit_qk_norm": [True, False]} and not rec["same_bytes"]
    tested = enc.probe_images - enc.probe_images // 2  # the build draws the families in turn
    for attr, g in rec["scores"].items():
        assert g["mine"] == pytest.approx(mixed["scores"]["probe"][attr])
        assert g["shipped"] == pytest.approx(data["scores"]["probe"][attr])  # the same pictures
        assert g["gap"] == pytest.approx(g["mine"] - g["shipped"]) and g["lo"] <= g["gap"] <= g["hi"]
        assert g["n"] == sum(FAMILIES[i % len(FAMILIES)] in vit.PROBED_ON[attr] for i in range(tested))
    assert "| vision encoder, vit_qk_norm True (shipped False) | probe height |" in table(mixed)

    rebuilt = build(config_from("small"), tmp_path / "rebuilt", shipped=None, against=folder, log=quiet)
    stages = rebuilt["scores"]["against_shipped"]["stages"]
    assert list(stages) == list(SHIPPED_STAGES)
    assert all(r["same_bytes"] and not r["settings"] and "scores" not in r for r in stages.values())
    assert "| reasoning LM | files | | the shipped ones (hash " in table(rebuilt)

    longer = build(config_from("small", {"reasoning_steps": 3}), tmp_path / "longer", shipped=folder,
                   against=folder, log=quiet)
    rec = longer["scores"]["against_shipped"]["stages"]["reasoning"]
    for form in ("text", "picture"):
        g = rec["scores"][form]
        assert g["mine"] == pytest.approx(longer["scores"][f"reasoning_{form}"])
        assert g["shipped"] == pytest.approx(data["scores"][f"reasoning_{form}"])
        assert g["n"] == data["scores"]["text_items"]
    # This world's minus the shipped one's: a reasoning LM right on every problem against the shipped one
    # (the small preset's, right on none), scored with the shipped LM's own tokenizer.
    rows = [r for r in read_jsonl(out / "data" / "text-test.jsonl") if r["steps"] >= 2]
    right = {r["id"]: 1.0 for r in rows}
    g = against_shipped(longer, folder, lm_right={"reasoning_text": right, "reasoning_picture": right},
                        probed={}, text_test=rows, probe_images=(), device="cpu")
    g = g["stages"]["reasoning"]["scores"]["text"]
    assert g["mine"] == 1.0 and g["shipped"] == data["scores"]["reasoning_text"] < 1.0
    assert g["gap"] == 1.0 - g["shipped"] and g["lo"] <= g["gap"] <= g["hi"] and g["n"] == len(rows)

    ship(tmp_path / "mixed", folder)
    prov = provenance(folder)
    assert "against_shipped" not in prov["scores"] and "Against the shipped" not in prov["table"]
    again = build(enc, tmp_path / "again", shipped=folder, against=folder, log=quiet)  # every backbone copied
    assert "against_shipped" not in again["scores"] and "Against the shipped" not in table(again)


def test_against_shipped_pairs_items_by_id_and_pictures_whole():
    """Problems are paired by id, not by position; a picture's 16 tokens are one item; an attribute
    with no pictures gives no gap and an empty row."""
    import torch

    from r1v.evaluate.tasks import Score
    from r1v.world.build import _paired, by_id
    from r1v.world.vit import by_picture

    rows = [{"id": "a"}, {"id": "b"}]
    shipped = by_id(rows, [("", Score(True, "1", "rules")), ("", Score(False, "2", "rules"))])
    mine = {"b": 1.0, "a": 0.0}  # the other way round, in another order
    g = _paired(shipped, mine)
    assert g["gap"] == 0.0 and g["lo"] < 0 < g["hi"]  # by position the two would look identical
    assert _paired({}, {}) is None

    y = torch.arange(32) % 3
    half = y.clone()
    half[16:24] = (half[16:24] + 1) % 3
    assert by_picture((half, y, None)) == [1.0, 0.5] and by_picture((y.clone(), y, None)) == [1.0, 1.0]
    g = _paired({0: 1.0, 1: 1.0}, {0: 1.0, 1: 0.5})
    assert (g["mine"], g["shipped"], g["gap"], g["n"]) == (0.75, 1.0, -0.25, 2) and g["lo"] < g["gap"] < g["hi"]


def test_cli_build_compares_default_worlds_only(tmp_path, monkeypatch):
    """`r1v world build` scores its trained backbones against the shipped ones in the default preset; the
    small preset's (seconds, for tests) are not compared."""
    import r1v.world.build as wb

    seen = []
    monkeypatch.setattr(wb, "build", lambda cfg, out, **kw: seen.append(kw["against"]) or {})
    monkeypatch.setattr(wb, "table", lambda data: "")
    assert main(["world", "build", "--out", str(tmp_path / "d")]) == 0
    assert main(["world", "build", "--preset", "small", "--out", str(tmp_path / "s")]) == 0
    assert seen == [wb.SHIPPED, None]


def test_ignoring_the_image_baseline():
    from r1v.world.build import majority_baseline

    row = lambda a: {"question": "q", "choices": None, "answer": a}  # noqa: E731
    train, test = [row("3")] * 3 + [row("4")], [row("3"), row("5")]
    assert majority_baseline(train, test) == 0.5


# --------------------------------------------------------------------------- CLI
def test_cli_world_build_show_and_mistakes(small_world, tmp_path, capsys):
    out, _ = small_world
    assert main(["world", "build", "--preset", "small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| reasoning LM | text accuracy" in printed and "linear probe" in printed
    sheet = tmp_path / "sheet.png"
    assert main(["world", "show", "--world", str(out), "--n", "4", "--out", str(sheet)]) == 0
    from PIL import Image

    assert Image.open(sheet).size[0] == 4 * 300
    assert main(["world", "show", "--world", str(tmp_path / "nothing"), "--out", str(sheet)]) == 2
    assert "no built world" in capsys.readouterr().err
    assert main(["world", "build", "--preset", "small", "--out", str(tmp_path / "x"), "colour=red"]) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err
    assert main(["world", "build", "--preset", "small", "--out", str(tmp_path / "x"), "base_steps=lots"]) == 2
    assert "is not a int" in capsys.readouterr().err
    assert main(["world", "build", "--preset", "huge", "--out", str(tmp_path / "x")]) == 2
    assert main(["world", "build", "--preset", "small", "--out", str(tmp_path / "x"), "--device", "gpu0"]) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err
    assert main(["world", "build", "--preset", "small", "--train", "--out", str(tmp_path / "x"), "--device", "meta"]) == 2
    assert "unsupported device 'meta'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["world", "build", "--preset", "small", "--train", "--out", str(tmp_path / "x"),
                     "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # checked before anything is written
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["world", "build", "--preset", "small", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert Path(out / "world.json").exists()


def test_probe_accuracy_by_grid_row():
    from r1v.world.vit import GRID, by_row

    rows = torch.arange(2 * GRID) % GRID
    y = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    pred = y.clone()
    pred[rows == 0] = 0  # every top-row token wrong
    pred[5] = 0  # one of the two second-row tokens
    assert by_row({"height": (pred, y, rows)}) == {"height": [0.0, 0.5, 1.0, 1.0]}


def test_lm_skills_score_the_look_up_and_the_count_each_item_asks(monkeypatch, small_world):
    """An oracle that reads each prompt scores 100% on both skills; one that always answers the first listed
    value (what an LM without induction can do) and one that counts every object score low."""
    from r1v.model.tokenizer import load_tokenizer
    from r1v.world import lm

    out, _ = small_world
    tok = load_tokenizer(str(out / "tokenizer"))

    def oracle(look_up, count):
        def generate(model, tok_, prompts, max_new_tokens):
            assert max_new_tokens == 1
            answers = []
            for p in prompts:
                text = tok_.decode(p[1:])
                if text.startswith("Bars: "):
                    listed, asked = text[len("Bars: "):].split(". ", 1)
                    pairs = [kv.split() for kv in listed.split(", ")]
                    answers.append(" " + look_up(pairs, asked.split()[-1]))
                else:
                    listed, asked = text[len("Objects: "):].rsplit(". ", 1)
                    answers.append(" " + count([o.split() for o in listed.split(", ")], asked))
            return answers
        return generate

    def right_count(objs, asked):
        if asked.endswith(" shapes"):
            return str(sum(c == asked.split()[0] for c, _ in objs))
        return str(sum(s + "s" == asked for _, s in objs))

    monkeypatch.setattr(lm, "generate", oracle(lambda pairs, key: dict(pairs)[key], right_count))
    assert lm.skills(None, tok, n=200) == {"look-up": 1.0, "counting": 1.0}
    monkeypatch.setattr(lm, "generate", oracle(lambda pairs, key: pairs[0][1], lambda objs, asked: str(len(objs))))
    low = lm.skills(None, tok, n=200)
    assert low["look-up"] < 0.5 and low["counting"] < 0.3
    # Seeded: the same items every time.
    assert lm.skills(None, tok, n=200) == low


def test_world_probe_reads_a_checkpoint_at_three_points(recipe_run, capsys):
    """`r1v world probe`: the linear probes on the encoder's tokens and on the projector's outputs,
    and the picture-word reading, for a recipe checkpoint."""
    _, run, _ = recipe_run
    assert main(["world", "probe", "--model", str(run / "sft" / "m0"), "--images", "16"]) == 0
    out = capsys.readouterr().out
    assert "| vision encoder (linear probe) |" in out and "| projector (linear probe) |" in out
    assert "| vision encoder, by grid row (top to bottom) |" in out
    row = next(line for line in out.splitlines() if line.startswith("| occupied cells"))
    assert all(0 <= float(c.strip().rstrip("%")) <= 100 for c in row.split("|")[2:-1])
    for kind in ("picture", "computed"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {kind} values in the chain"))
        assert "reasoning chains" in row  # m0 is the reasoning LM's, and it finds its own style more likely
        assert all(0 <= float(c.strip().rstrip("%")) <= 100 for c in row.split("|")[2:-1] if c.strip() != "-")
    assert main(["world", "probe", "--model", str(run / "sft" / "m0"), "--images", "2"]) == 2


@pytest.mark.parametrize("family, reasoning, picture, computed", [
    ("expr", "9 - 7 = 2.", ["9", "7"], ["2"]),
    # a fold: the second equation's first operand is the first one's result, not the picture's
    ("expr", "5 + 3 = 8. 8 - 4 = 4.", ["5", "3", "4"], ["8", "4"]),
    ("expr", "16 - 10 = 6.", ["16", "10"], ["6"]),
    ("bars", "tallest green 8. shortest yellow 3. 8 - 3 = 5.", ["8", "3"], ["5"]),
    ("shapes", "squares 0. circles 2. 0 + 2 = 2.", ["0", "2"], ["2"]),
    # the clock's "+ 12" and "- 8" are the question's, not the picture's
    ("clock", "clock 4. 4 + 12 = 16. 16 - 8 = 8.", ["4"], ["16", "8"]),
    ("clock", "clock 10.", ["10"], []),
])
def test_value_spans_separate_what_the_picture_gives_from_what_the_chain_computes(family, reasoning, picture,
                                                                                    computed):
    from r1v.world.probe import value_spans

    got = value_spans(family, reasoning)
    assert [[reasoning[a:b] for a, b in spans] for spans in got] == [picture, computed]
    # the spans are where the values stand, not the first match of the same digits
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])


def test_value_spans_of_every_family_cover_each_value_the_world_writes():
    """On the world's own chains: each fact's value and each equation's numbers land in one class or
    (a copied result, a question's constant) neither, and no span is shared."""
    from r1v.world.probe import value_spans

    for family in FAMILIES:
        for seed in range(30):
            p = make_problem(family, seed)
            picture, computed = value_spans(family, p.reasoning)
            assert not set(picture) & set(computed)
            assert all(p.reasoning[a:b].lstrip("-").isdigit() for a, b in picture + computed)
            if family != "expr":  # every fact sentence names one picture value
                facts = [s for s in p.reasoning.split(". ") if "=" not in s]
                assert len(picture) == len(facts)
