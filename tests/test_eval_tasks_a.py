"""OlympiadBench, MATH-Vision and MathVerse: reading the published layouts, each official rule
and each documented pitfall, and `r1v eval score` end to end on the example files."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.examples import (MATHVISION_ROWS, OLYMPIADBENCH_ROWS, write_mathverse, write_mathvision,
                                   write_olympiadbench)
from r1v.evaluate.tasks import Item, get_task
from r1v.evaluate.tasks.mathverse import parse_choices, parse_selector
from r1v.evaluate.tasks.mathvision import extract_answer, is_equal
from r1v.evaluate.tasks.olympiadbench import judge, latex_value, precisions, split_answers
from r1v.evaluate.verify import MathVerifier


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(timeout=20.0, workers=2) as v:
        yield v


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_a")
    write_olympiadbench(root / "OlympiadBench")
    write_mathvision(root / "MathVision")
    write_mathverse(root / "MathVerse")
    return {"olympiadbench": root / "OlympiadBench", "mathvision": root / "MathVision", "mathverse": root / "MathVerse"}


def _items(bench, data):
    return {it.id: it for it in get_task(bench).read(data[bench])}


def _score(bench, item, output, verifier):
    return get_task(bench).score(item, output, verifier=verifier)


# ---------------------------------------------------------------- OlympiadBench: reading
def test_olympiadbench_reads_english_maths_open_ended_only(data):
    items = get_task("olympiadbench").read(data["olympiadbench"])
    assert [it.id for it in items] == [str(r["id"]) for _, r in OLYMPIADBENCH_ROWS]  # zh and TP skipped
    assert [len(it.images) for it in items] == [r["n_images"] for _, r in OLYMPIADBENCH_ROWS]
    assert {it.groups["config"] for it in items} == {"OE_MM_maths_en_COMP", "OE_TO_maths_en_COMP"}
    by = {it.id: it for it in items}
    assert by["3002"].info["multiple"] and by["3102"].info["precision"] == 0.01
    assert by["3001"].info["precision"] == 1e-8 and by["3001"].answer == "$4$"  # final_answer[0]


def test_olympiadbench_file_choice(data):
    zh = data["olympiadbench"] / "OE_TO_maths_zh_COMP" / "train" / "0000.parquet"
    assert [it.id for it in get_task("olympiadbench").read(zh)] == ["9001"]  # a file names its config
    with pytest.raises(R1VError, match="theorem proofs"):
        get_task("olympiadbench").read(data["olympiadbench"] / "TP_TO_maths_en_COMP" / "train" / "0000.parquet")


def test_olympiadbench_prompt_states_type_multiple_answers_and_unit(data):
    task, items = get_task("olympiadbench"), _items("olympiadbench", data)
    p = task.prompt(items["3002"])
    assert "multiple answers, each of them should be a numerical value" in p
    assert "\\boxed{multiple answers connected with commas}" in p and p.endswith(items["3002"].question)
    unit = Item(id="u", question="How far?", answer="5", info=dict(items["3001"].info, unit="m"))
    assert "(unit)" in task.prompt(unit) and "keep the unit out of \\boxed{}" in task.prompt(unit)


# ---------------------------------------------------------------- OlympiadBench: official rules
@pytest.mark.parametrize("item_id, output, correct", [
    ("3001", "</think>\\boxed{4}", True),
    ("3001", "</think>\\boxed{4.0}", True),
    ("3001", "</think>\\boxed{4.0000001}", False),  # default tolerance: absolute 1e-8
    ("3001", "</think>\\boxed{400}", True),  # the official percentage rule: gold * 100 ...
    ("3001", "</think>\\boxed{0.04}", True),  # ... and gold / 100
    ("3001", "</think>\\boxed{5}", False),
    ("3001", "</think>\\boxed{4^\\circ}", True),  # degrees dropped
    ("3001", "</think>So the final answer is $4$.", True),  # the official phrase, no box
    ("3001", "</think>The side is 2.\nSo the area is $2$ times $2$, i.e. $4$", False),  # last line's $..$ joined
    ("3002", "</think>\\boxed{3, 2}", True),  # several answers, any order
    ("3002", "</think>\\boxed{2}", False),  # one missing
    ("3002", "</think>\\boxed{2, 2}", False),  # each gold answer pairs with a different prediction
    ("3002", "</think>\\boxed{2, 3, 4}", False),
    ("3002", "</think>\\boxed{2} and \\boxed{3}", False),  # departure: only the rightmost box is read
    ("3101", "</think>\\boxed{(-2, 2)}", True),
    ("3101", "</think>\\boxed{x \\in (-2,2)}", True),
    ("3101", "</think>\\boxed{[-2,2]}", False),  # brackets differ
    ("3101", "</think>\\boxed{(-2,3)}", False),
    ("3102", "</think>\\boxed{1.414}", True),  # error 0.01
    ("3102", "</think>\\boxed{1.42}", True),  # |diff| = 0.01 <= 1.01 * 0.01
    ("3102", "</think>\\boxed{1.4202}", False),  # 0.0102 > 0.0101
    ("3102", "</think>\\boxed{\\sqrt{2}}", True),  # numeric LaTeX, same tolerance
    ("3103", "</think>\\boxed{1+2x}", True),  # symbolic: math-verify
    ("3103", "</think>\\boxed{2x-1}", False),
    ("3103", "</think>\\boxed{y=2x+1}", True),  # the official rule compares what follows "="
])
def test_olympiadbench_official_rules(data, verifier, item_id, output, correct):
    s = _score("olympiadbench", _items("olympiadbench", data)[item_id], output, verifier)
    assert s.correct is correct, s


@pytest.mark.parametrize("output, scorer", [
    ("<think>so \\boxed{4}</think>", "none:empty"),  # the answer only inside the reasoning
    ("<think>the area is 4, so \\boxed{4", "none:unfinished"),  # truncated
    ("</think>\\boxed{}", "none:empty"),
    ("</think>   ", "none:empty"),
])
def test_olympiadbench_no_answer(data, verifier, output, scorer):
    s = _score("olympiadbench", _items("olympiadbench", data)["3001"], output, verifier)
    assert (s.correct, s.scorer) == (False, scorer)


def _ob_item(answer, *, error=None, multiple=False, unit=None, answer_type="Numerical"):
    return Item(id="x", question="q", answer=answer,
                info={"unit": unit, "multiple": multiple, "answer_type": answer_type, "context": None,
                      "precision": precisions(error, answer_type), "physics": False, "zh": False})


@pytest.mark.parametrize("gold, pred, kw, correct", [
    ("\\frac{1}{3}", "0.3333", {}, False),  # pitfall: a rounded decimal fails the 1e-8 default ...
    ("\\frac{1}{3}", "0.3333", {"error": "0.001"}, True),  # ... unless the row gives an error
    ("\\frac{\\pi}{2}", "1.5707963268", {}, True),
    ("\\frac{3}{2}", "1.51", {"error": "0.01"}, True),  # numeric LaTeX: the tolerance boundary
    ("\\frac{3}{2}", "1.5102", {"error": "0.01"}, False),
    ("\\frac{\\pi}{2}", "1.5708", {}, False),
    ("$\\pm 2$", "2, -2", {"multiple": True}, True),  # \pm expands to two answers
    ("$\\pm 2$", "2", {"multiple": True}, False),
    ("1.5, 20", "1.6, 20", {"error": "0.1,0.01", "multiple": True}, True),  # one tolerance per answer
    ("1.5, 20", "1.5, 20.1", {"error": "0.1,0.01", "multiple": True}, False),
    ("5", "5 m", {"unit": "m"}, True),  # departure: the unit is removed
    ("5", "5 m", {}, False),
    ("1000", "1,000", {}, True),  # departure: a thousands separator
    ("1000", "1{,}000", {}, True),
    ("1000, 2", "1,000", {"multiple": True}, False),
    ("(2, 3)", "(3, 2)", {"answer_type": "Tuple"}, False),
    ("y=2x+1", "y=1+2x", {"answer_type": "Equation"}, True),
])
def test_olympiadbench_tolerances_and_departures(verifier, gold, pred, kw, correct):
    s = get_task("olympiadbench").score(_ob_item(gold, **kw), f"</think>\\boxed{{{pred}}}", verifier=verifier)
    assert s.correct is correct, s
    if kw.get("unit") and correct:
        assert s.scorer.endswith(":unit")


def test_olympiadbench_helpers():
    assert split_answers("1, (2,3), [4,5]") == ["1", "(2,3)", "[4,5]"]
    assert precisions("0.1,0.01", "Numerical") == [0.1, 0.01] and precisions("0.5", "Tuple") == 1e-8
    assert precisions(None, "Numerical") == 1e-8 and precisions("", "Numerical") == 1e-8
    assert latex_value("2\\sqrt{3}") == pytest.approx(3.4641016) and latex_value("\\sqrt[3]{8}") == pytest.approx(2)
    assert latex_value("x+1") is None and latex_value("") is None
    assert judge("$4$", "", 1e-8, verifier=None) == (False, "count")


def test_olympiadbench_numeric_path_cannot_hang():
    t = time.monotonic()
    assert latex_value("9^{9^{9^{9}}}") is None and latex_value("10^{10^{10}}") is None
    assert latex_value("2^{" * 60 + "2" + "}" * 60) is None
    assert time.monotonic() - t < 1.0


# ---------------------------------------------------------------- MATH-Vision
def test_mathvision_reads_test_under_a_folder_and_the_split_a_file_names(data):
    items = get_task("mathvision").read(data["mathvision"])
    assert [it.id for it in items] == [r["id"] for r in MATHVISION_ROWS]  # test only: testmini not added
    assert {it.groups["split"] for it in items} == {"test"} and all(len(it.images) == 1 for it in items)
    assert items[0].choices == ["3", "4", "5", "6", "7"] and items[1].choices is None
    assert items[0].groups["level"] == "1"
    mini = next((data["mathvision"] / "data").glob("testmini-*.parquet"))
    items = get_task("mathvision").read(mini)
    assert [it.id for it in items] == ["1", "2"] and {it.groups["split"] for it in items} == {"testmini"}
    assert "(C) 5" in get_task("mathvision").prompt(get_task("mathvision").read(mini)[0])


@pytest.mark.parametrize("item_id, output, correct", [
    ("1", "</think>\\boxed{C}", True),
    ("1", "</think>\\boxed{(C)}", True),
    ("1", "</think>\\boxed{c}", True),  # pitfall: lower-cased, so case-blind
    ("1", "</think>\\boxed{5}", True),  # the gold option's text
    ("1", "</think>\\boxed{D}", False),
    ("1", "</think>\\boxed{6}", False),  # another option's text
    ("1", "</think>There are five dots, so the answer is C.", True),  # official: " C." at the end
    ("1", "</think>I count them: the answer is 5", True),  # a number after the last "is "
    ("1", "</think>C or D, I am not sure", False),
    ("2", "</think>\\boxed{2\\sqrt{3}}", True),
    ("2", "</think>\\boxed{\\sqrt{12}}", True),  # both evaluated, rounded to 2 decimals
    ("2", "</think>\\boxed{3.46}", True),
    ("2", "</think>\\boxed{3.4641}", True),
    ("2", "</think>\\boxed{3.47}", False),  # near miss
    ("2", "</think>\\boxed{h = 2\\sqrt{3}}", True),  # the part after "="
    ("2", "</think>\\boxed{2\\sqrt{3} \\text{ cm}}", True),  # "\text{ unit}" removed
    ("3", "</think>\\boxed{E}", True),  # options only in the image: the letter
    ("3", "</think>\\boxed{A}", False),
])
def test_mathvision_official_rules(data, verifier, item_id, output, correct):
    s = _score("mathvision", _items("mathvision", data)[item_id], output, verifier)
    assert s.correct is correct, s


@pytest.mark.parametrize("output, scorer", [
    ("<think>it is \\boxed{C}</think>", "none:empty"),
    ("<think>there are 5 dots so C", "none:unfinished"),
    ("</think>\\boxed{ }", "none:empty"),
])
def test_mathvision_no_answer(data, verifier, output, scorer):
    s = _score("mathvision", _items("mathvision", data)["1"], output, verifier)
    assert (s.correct, s.scorer) == (False, scorer)


@pytest.mark.parametrize("pred, gold, equal", [
    ("0.004", "0", True),  # pitfall: 2-decimal rounding makes tiny answers equal
    ("3.141", "\\pi", True),
    ("3.149", "3.14", False),
    ("(1.001,2)", "(1,2)", True),  # tuples element-wise, 2 decimals
    ("(2,1)", "(1,2)", False),
    ("\\frac{1}{2}", "0.5", True),
    ("", "3", False),
    ("b", "a", False),
])
def test_mathvision_is_equal(verifier, pred, gold, equal):
    assert is_equal(pred, gold, verifier)[0] is equal


def test_mathvision_extraction():
    assert extract_answer("\\boxed{x=\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{0.5}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{12 \\text{ km}}") == "12"
    assert extract_answer("The final answer is 7.\nMore text") == "7"


# ---------------------------------------------------------------- MathVerse
def test_mathverse_reads_the_five_versions_and_leaves_text_only_out_of_a_folder(data):
    items = get_task("mathverse").read(data["mathverse"])
    assert len(items) == 10 and all(len(it.images) == 1 for it in items)
    assert sorted({it.groups["version"] for it in items}) == sorted(
        ["Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"])
    vision_only = next(it for it in items if it.groups["version"] == "Vision Only")
    assert vision_only.question == "" and "shown in the image" in get_task("mathverse").prompt(vision_only)
    assert vision_only.info["choices"] == {"A": "1", "B": "\\pi", "C": "2\\pi", "D": "4"}  # from question_for_eval


def test_mathverse_picks_versions_from_the_data_string(data):
    task, root = get_task("mathverse"), str(data["mathverse"])
    picked = task.read(root + "::vision-only,Text_Dominant")
    assert sorted(it.groups["version"] for it in picked) == ["Text Dominant"] * 2 + ["Vision Only"] * 2
    text_only = task.read(root + "::text only")
    assert [it.id for it in text_only] == ["text-only-1", "text-only-2"] and not text_only[0].images
    assert len(task.read(root + "::text-only,vision-only")) == 4
    assert len(task.read(data["mathverse"] / "testmini_text_only.parquet")) == 2  # the file itself
    with pytest.raises(R1VError, match="unknown version"):
        task.read(root + "::vision")
    assert parse_selector("a/b.parquet") == ("a/b.parquet", None)


def _mv(data, version, qtype):
    return next(it for it in get_task("mathverse").read(data["mathverse"])
                if it.groups["version"] == version and it.info["question_type"] == qtype)


@pytest.mark.parametrize("qtype, output, correct", [
    ("multi-choice", "</think>\\boxed{B}", True),
    ("multi-choice", "</think>\\boxed{(B)}", True),
    ("multi-choice", "</think>\\boxed{B: \\pi}", True),
    ("multi-choice", "</think>\\boxed{\\pi}", True),  # the option's text is its letter
    ("multi-choice", "</think>The answer is B.", True),
    ("multi-choice", "</think>\\boxed{A}", False),
    ("multi-choice", "</think>\\boxed{2\\pi}", False),  # another option's text
    ("multi-choice", "</think>A circle of radius one has area pi.", False),  # an article is not a letter
    ("multi-choice", "</think>\\boxed{B, C}", False),
    ("free-form", "</think>\\boxed{2}", True),  # quick match
    ("free-form", "</think>\\boxed{2.0}", True),
    ("free-form", "</think>\\boxed{\\frac{4}{2}}", True),  # math-verify stands in for the judge
    ("free-form", "</think>\\boxed{3}", False),
    ("free-form", "</think>\\boxed{2.01}", False),
])
def test_mathverse_rules(data, verifier, qtype, output, correct):
    for version in ("Text Dominant", "Vision Only"):
        s = _score("mathverse", _mv(data, version, qtype), output, verifier)
        assert s.correct is correct, (version, s)


@pytest.mark.parametrize("output, scorer", [
    ("<think>the answer is \\boxed{B}</think>", "none:empty"),
    ("<think>area is pi so B", "none:unfinished"),
    ("</think>\\boxed{}", "none:empty"),
])
def test_mathverse_no_answer(data, verifier, output, scorer):
    s = _score("mathverse", _mv(data, "Vision Only", "multi-choice"), output, verifier)
    assert (s.correct, s.scorer) == (False, scorer)


def test_mathverse_several_gold_letters_need_the_same_set(verifier):
    item = Item(id="m", question="q", answer="C\nD",
                info={"question_type": "multi-choice", "choices": {}, "query": "q", "question_for_eval": "q"})
    task = get_task("mathverse")
    assert task.score(item, "</think>\\boxed{C, D}", verifier=verifier).correct
    assert task.score(item, "</think>\\boxed{D and C}", verifier=verifier).correct
    assert not task.score(item, "</think>\\boxed{C}", verifier=verifier).correct


def test_mathverse_gold_text_for_the_judge(data):
    item = _mv(data, "Vision Only", "multi-choice")
    assert get_task("mathverse").gold_text(item) == "(B) \\pi"
    assert parse_choices("no choices here") == {}


# ---------------------------------------------------------------- a folder of the wrong benchmark
def test_wrong_files_are_a_clear_error(tmp_path):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "testmini.parquet")
    for bench in ("mathvision", "mathverse"):
        with pytest.raises(R1VError, match="lacks field"):
            get_task(bench).read(tmp_path / "testmini.parquet")
    with pytest.raises(R1VError, match="no OE_"):
        get_task("olympiadbench").read(tmp_path)


# ---------------------------------------------------------------- r1v eval score, end to end
RIGHT_WRONG = {
    "olympiadbench": [("3001", "\\boxed{4}"), ("3101", "\\boxed{(-2, 3)}"), ("3103", "\\boxed{1+2x}")],
    "mathvision": [("1", "\\boxed{C}"), ("2", "\\boxed{3.47}"), ("3", "\\boxed{E}")],
    "mathverse": [("1", "\\boxed{B}"), ("5", "\\boxed{A}"), ("10", "\\boxed{2}")],
}


@pytest.mark.parametrize("bench, group, values", [
    ("olympiadbench", "config", {"OE_MM_maths_en_COMP", "OE_TO_maths_en_COMP"}),
    ("mathvision", "split", {"test"}),
    ("mathverse", "version", {"Text Dominant", "Vision Only"}),
])
def test_eval_score_end_to_end(data, tmp_path, capsys, bench, group, values):
    resp = tmp_path / "resp.jsonl"
    resp.write_text("".join(json.dumps({"id": i, "output": f"thinking...</think>{o}"}) + "\n"
                            for i, o in RIGHT_WRONG[bench]))
    out = tmp_path / "run"
    assert main(["eval", "score", "--bench", bench, "--data", str(data[bench]), "--responses", str(resp),
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in records] == [True, False, True]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(200 / 3, abs=0.01)
    assert summary["complete"] == (summary["items_in_data"] == 3)
    assert set(summary["groups"][group]) == values
    assert "pass@1" in capsys.readouterr().out
