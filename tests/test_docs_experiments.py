"""docs/experiments/restated_pass.py: the rewrite behind the AL-CoTD cause test (docs/mini-world-r1v2.md)
changes the chain's passes and nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "restated_pass.py"
spec = importlib.util.spec_from_file_location("restated_pass", SCRIPT)
rp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rp)

ONE = " green 6. yellow 5. 6 + 5 = 11.</think>\n\\boxed{11}"
TWO = " green 6. yellow 5. 6 + 5 = 11. green 6. yellow 5. 6 + 5 = 11.</think>\n\\boxed{11}"


def test_first_cuts_a_verbatim_restatement_and_keeps_the_answer():
    assert rp.rewrite(TWO, "first") == ONE
    assert rp.rewrite(ONE, "first") == ONE  # one pass already: unchanged


def test_double_restates_a_one_pass_chain_once():
    assert rp.rewrite(ONE, "double") == TWO
    assert rp.rewrite(TWO, "double") == TWO  # never four passes
    assert rp.rewrite(rp.rewrite(TWO, "first"), "double") == TWO


def test_near_restatements_and_odd_texts_are_left_alone():
    near = " green 6. yellow 5. 6 + 5 = 11. green 6. yellow 4. 6 + 4 = 10.</think>\n\\boxed{10}"
    for text in (near, "no think tag at all", "</think>\\boxed{3}", " </think>\\boxed{3}", ""):
        assert rp.rewrite(text, "first") == text
    assert rp.rewrite(near, "double") != near  # a chain that is not a restatement counts as one pass
    assert rp.rewrite("no think tag at all", "double") == "no think tag at all"


def test_the_file_round_trip_changes_only_response_and_reference(tmp_path):
    rows = [{"id": "a", "response": TWO, "reference": TWO, "answer": "11", "score": 5},
            {"id": "b", "response": ONE, "reference": None, "answer": "11"}]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert rp.main(["first", str(src), str(dst)]) == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert out[0] == {**rows[0], "response": ONE, "reference": ONE}
    assert out[1] == rows[1]
    assert rp.main(["sideways", str(src), str(dst)]) == 2
