"""MMMU-Pro and HallusionBench: their published layouts, their official rules (MMMU-Pro's
`evaluate.py`, VLMEvalKit's yes/no reading, HallusionBench's qAcc / fAcc / aAcc), the pitfalls
their modules document, and `r1v eval score` end to end."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.examples import (
    COLOURS,
    HALLUSIONBENCH_ROWS,
    IMAGE,
    mmmupro_image,
    png,
    write_examples,
    write_hallusionbench,
    write_hallusionbench_parquet,
    write_mmmupro,
)
from r1v.evaluate.tasks import get_task
from r1v.evaluate.tasks.hallusionbench import yes_no
from r1v.evaluate.tasks.mmmu import parse_multi_choice
from r1v.evaluate.tasks.mmmupro import PROMPTS, parse_pro


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_b")
    write_mmmupro(root / "MMMU_Pro")
    write_hallusionbench(root / "HallusionBench")
    write_hallusionbench_parquet(root / "lmms-HallusionBench")
    return root


@pytest.fixture(scope="module")
def pro(data):
    task = get_task("mmmupro")
    return task, {it.id: it for it in task.read(data / "MMMU_Pro")}


@pytest.fixture(scope="module")
def hb(data):
    task = get_task("hallusionbench")
    return task, task.read(data / "HallusionBench")


def score(task, item, answer, *, reasoning="Let me look.", **kw):
    return task.score(item, f"<think>{reasoning}</think>{answer}", **kw)


# ---------------------------------------------------------------- MMMU-Pro: reading
def test_mmmupro_reads_every_config_with_the_setting_as_group_and_id_prefix(pro):
    _, items = pro
    assert list(items) == ["standard10/test_Art_1", "standard10/test_Math_2", "standard10/test_Biology_3",
                           "standard4/test_Art_1", "vision/test_Art_1", "vision/test_Math_2"]
    settings = {it.groups["setting"] for it in items.values()}
    assert settings == {"standard (10 options)", "standard (4 options)", "vision"}
    art = items["standard10/test_Art_1"]
    assert art.choices == COLOURS and art.answer == "C"
    assert art.groups == {"setting": "standard (10 options)", "subject": "Art", "difficulty": "Easy"}
    assert items["vision/test_Art_1"].choices == COLOURS  # a list column there, a list string in standard


def test_mmmupro_official_prompts_and_images_at_their_references(pro):
    task, items = pro
    art = items["standard10/test_Art_1"]
    assert task.prompt(art) == ("Which colour fills the circle in <image>?\n"
                                + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(COLOURS))
                                + "\n" + PROMPTS["cot"]["standard"])
    # options "<image 2>", "<image 1>": the images follow the references, not image_1..image_7
    two = items["standard10/test_Math_2"]
    assert two.images == [mmmupro_image("test_Math_2", 2), mmmupro_image("test_Math_2", 1)]
    assert "A. <image>\nB. <image>" in task.prompt(two)
    # image_2 of Biology_3 belongs to the explanation: referenced nowhere, not sent
    assert items["standard10/test_Biology_3"].images == [mmmupro_image("test_Biology_3", 1)]
    vision = items["vision/test_Math_2"]
    assert task.prompt(vision) == PROMPTS["cot"]["vision"] and len(vision.images) == 1 and vision.question == ""
    for it in items.values():  # one placeholder per image, or none (the one screenshot goes in front)
        assert task.prompt(it).count("<image>") in (0, len(it.images)) and "<image " not in task.prompt(it)


def test_mmmupro_reads_one_config_folder(data):
    items = get_task("mmmupro").read(data / "MMMU_Pro" / "vision")
    assert [it.id for it in items] == ["vision/test_Art_1", "vision/test_Math_2"]


def test_mmmupro_missing_image_and_wrong_data_are_clear_errors(data, tmp_path):
    d = tmp_path / "standard (10 options)"
    d.mkdir()
    cols = {"id": ["test_X_1"], "question": ["Look at <image 3>."], "options": ["['a', 'b']"], "answer": ["A"]}
    image = pa.array([{"bytes": png(1), "path": None}], IMAGE)
    table = pa.table({**{k: pa.array(v) for k, v in cols.items()}, "image_1": image})
    pq.write_table(table, d / "test-00000-of-00001.parquet")
    with pytest.raises(R1VError, match="<image 3> but has no image_3"):
        get_task("mmmupro").read(tmp_path)
    with pytest.raises(R1VError, match="right --bench"):
        get_task("mmmupro").read(data / "HallusionBench" / "HallusionBench.json")


# ---------------------------------------------------------------- MMMU-Pro: official rules
@pytest.mark.parametrize("answer, letter, rule", [
    ("Answer: D", "D", "answer-line"),
    ("Step by step...\nAnswer: $D", "D", "answer-line"),  # the template's "$" echoed
    ("Answer: I think it is D", "D", "letter"),  # "I" is an option letter with ten options: step 1 passes
    ("Answer: A or C", "C", "letter"),  # several letters: the later " X "
    ("Answer: (B) Carbon", "B", ""),  # B and C in the tail; then "(B)", MMMU's step
    ("(A) is wrong; the right one is (D)", "D", ""),  # brackets: the latest
    ("B. Carbon is right", "B", "letter"),  # "B." (MMMU's parser has no such step)
    ("Made in the USA", "A", "letter"),  # pitfall: any word ending in a capital A-J
    ("The answer is \\boxed{D}.", "D", "letter"),  # the rightmost box is what the rules read
    ("So \\boxed{\\text{(D)}}", "D", ""),
    ("the colour must be purple and nothing else", "E", ""),  # option text, in answers of over five words
])
def test_mmmupro_official_letter_rules(pro, answer, letter, rule):
    task, items = pro
    s = score(task, items["standard10/test_Art_1"], answer)
    assert (s.extracted, s.scorer) == (letter, f"rules:{rule}" if rule else "rules")
    assert s.correct == (letter == "C")


def test_mmmupro_relaxed_letter_step_differs_from_mmmu():
    letters, rng = list("ABCDEFGHIJ"), random.Random(0)
    index2ans = dict(zip(letters, COLOURS))
    assert parse_pro("Made in the USA", letters, index2ans, rng) == ("A", "letter")
    assert parse_multi_choice("Made in the USA", letters, index2ans, rng)[1]  # MMMU's: nothing found, a guess


def test_mmmupro_four_options_keep_i_out(pro):
    task, items = pro
    s = score(task, items["standard4/test_Art_1"], "Answer: I think it is C")
    assert (s.extracted, s.scorer, s.correct) == ("C", "rules:answer-line", True)
    s = score(task, items["standard4/test_Art_1"], "the colour must be green and nothing else")
    assert (s.extracted, s.correct) == ("C", True)


def test_mmmupro_letters_beyond_the_options_are_a_seeded_guess(pro):
    task, items = pro
    item = items["standard10/test_Art_1"]
    first, again = score(task, item, "Answer: K"), score(task, item, "Answer: K")
    assert first.scorer == "rules:guess" and first.guessed and first.extracted in "ABCDEFGHIJ"
    assert first == again  # seeded per question


def test_mmmupro_think_rules(pro):
    task, items = pro
    item = items["standard10/test_Art_1"]
    assert task.score(item, "<think>so Answer: C and then").scorer == "none:unfinished"  # truncated
    assert task.score(item, "<think>Answer: C</think>   ").scorer == "none:empty"
    assert not task.score(item, "<think>Answer: C</think>").correct
    # the answer only inside the reasoning does not count; "I" after it is option I
    s = task.score(item, "<think>Answer: C</think>I am not sure.")
    assert s.extracted == "I" and not s.correct
    assert score(task, item, "Answer: C", reasoning="\\boxed{A} Answer: A").correct


# ---------------------------------------------------------------- HallusionBench: reading
def test_hallusionbench_reads_the_github_release(hb, data):
    task, items = hb
    assert [it.id for it in items] == [f"{c}_{s}_{st}_{f}_{q}" for c, s, _, st, f, q, _, _ in HALLUSIONBENCH_ROWS]
    assert [it.answer for it in items] == ["yes" if r[-1] == "1" else "no" for r in HALLUSIONBENCH_ROWS]
    assert [len(it.images) for it in items] == [0 if r[2] == "0" else 1 for r in HALLUSIONBENCH_ROWS]
    assert items[0].images == [(data / "HallusionBench" / "hallusion_bench/VD/illusion/0_0.png").read_bytes()]
    assert items[6].groups == {"category": "VS", "subcategory": "chart", "figure": "original"}
    assert task.prompt(items[0]) == HALLUSIONBENCH_ROWS[0][6]
    # the file itself works too (the result sample beside it is skipped under the folder)
    assert len(task.read(data / "HallusionBench" / "HallusionBench.json")) == len(items)


def test_hallusionbench_reads_the_lmms_parquet_layout(hb, data):
    task, items = hb
    other = {it.id: it for it in task.read(data / "lmms-HallusionBench")}
    assert set(other) == {it.id for it in items}
    for it in items:
        assert other[it.id].answer == it.answer and other[it.id].images == it.images


def test_hallusionbench_missing_figure_is_a_clear_error(tmp_path):
    rows = write_hallusionbench(tmp_path)
    (tmp_path / "hallusion_bench" / "VS" / "chart" / "0_2.png").unlink()
    with pytest.raises(R1VError, match="hallusion_bench.zip"):
        get_task("hallusionbench").read(tmp_path)
    # a figure found by the official <category>/<subcategory>/<set>_<figure>.png rule
    (tmp_path / "hallusion_bench" / "VS" / "chart" / "0_2.png").write_bytes(png(3))
    rows[-1]["filename"] = None
    (tmp_path / "HallusionBench.json").write_text(json.dumps(rows))
    assert get_task("hallusionbench").read(tmp_path)[-1].images == [png(3)]


# ---------------------------------------------------------------- HallusionBench: reading answers
@pytest.mark.parametrize("text, said", [
    ("Yes", "yes"), ("No.", "no"), ("NO!", "no"), ("No, the bars differ.", "no"),
    ("Yes, it was.", "yes"), ("The answer: no.", "no"), ("(Yes)", "yes"),
    ("There is no doubt: yes.", "unknown"),  # "no" inside a longer sentence beside a yes
    ("yes/no", "unknown"), ("Yes and no", "unknown"),
    ("**Yes**", "unknown"), ("Answer:Yes", "unknown"), ("Answer: Yes", "yes"),  # VLMEvalKit's word rules
    ("It's not.", "unknown"), ("Nope", "unknown"), ("My eyes say so", "unknown"),
    ("x. " * 40 + "no.", "unknown"),  # only the first 32 stray periods are stripped
    ("x. " * 10 + "no.", "no"),
])
def test_yes_no_reading(text, said):
    assert yes_no(text) == said


def test_hallusionbench_think_rules_and_uncertain_credit(hb):
    task, items = hb
    vd, no_figure, edited = items[0], items[4], items[8]  # gold yes, yes (VS without a figure), no
    assert score(task, vd, "Yes, they are.", reasoning="no, wait: not the same? no...").correct
    assert task.score(vd, "<think>Yes").scorer == "none:unfinished"
    assert task.score(vd, "<think>Yes</think>").scorer == "none:empty"
    assert score(task, vd, "\\boxed{\\text{Yes}}").extracted == "yes"
    assert score(task, vd, "The answer is \\boxed{No}, I said yes before").extracted == "no"
    s = score(task, no_figure, "I cannot tell without the chart.")
    assert s.correct and s.scorer == "rules:uncertain"
    s = score(task, edited, "I cannot tell without the chart.")
    assert not s.correct and s.scorer == "rules:unknown"
    assert not task.score(no_figure, "<think>hmm</think>").correct  # empty: never credited
    assert not score(task, no_figure, "No.").correct


def test_hallusionbench_hallucinated_and_gold_text(hb):
    task, items = hb
    assert task.hallucinated(items[0], "<think></think>No.") is True
    assert task.hallucinated(items[0], "<think></think>Yes.") is False
    assert task.hallucinated(items[0], "<think></think>Maybe.") is None
    assert task.gold_text(items[0]).startswith("Yes (It is so: ")
    assert "cannot tell" in task.gold_text(items[4]) and "cannot tell" not in task.gold_text(items[6])


# ---------------------------------------------------------------- HallusionBench: qAcc, fAcc, aAcc by hand
# Outputs for the nine fixture questions and whether each is right:
#  VD fig 0: q0 yes/yes right, q1 no/no right | VD fig 1: q0 gold no, says yes: wrong; q1 yes/yes right
#  VS no figure: q0 uncertain: right (credited), q1 gold no, says yes: wrong
#  VS fig 1: q0 right, q1 right | VS fig 2: q0 gold no, uncertain: wrong (it has a figure)
OUTPUTS = ["Yes", "No", "Yes", "Yes", "I cannot tell without the chart.", "Yes", "Yes, it was.", "No.",
           "I am not sure"]
# aAcc 6/9. Pairs (VD q0: right, wrong), (VD q1: right, right), (VS q0: right, right, wrong), (VS q1: wrong,
# right) -> 1/4. Figures (VD 0: right, right), (VD 1: wrong, right), (VS 1: right, right), (VS 2: wrong) -> 2/4;
# the VS questions without a figure are no figure. Easy (no edited figure) pairs: VD q0 (right), VD q1 (right),
# VS q0 (right, right), VS q1 (wrong, right) -> 3/4; hard: VD q0 wrong, VD q1 right, VS q0 wrong -> 1/3.
EXPECTED = {
    "all": {"questions": 9, "figures": 4, "pairs": 4, "aAcc": 66.67, "fAcc": 50.0, "qAcc": 25.0,
            "easy_aAcc": 75.0, "hard_aAcc": 33.33},
    "VD": {"questions": 4, "figures": 2, "pairs": 2, "aAcc": 75.0, "fAcc": 50.0, "qAcc": 50.0,
           "easy_aAcc": 100.0, "hard_aAcc": 50.0},
    "VS": {"questions": 5, "figures": 2, "pairs": 2, "aAcc": 60.0, "fAcc": 50.0, "qAcc": 0.0,
           "easy_aAcc": 50.0, "hard_aAcc": 0.0},
}


def test_hallusionbench_metrics_by_hand(hb):
    task, items = hb
    records = [{"id": it.id, "sample": 0, "correct": score(task, it, out).correct} for it, out in zip(items, OUTPUTS)]
    assert [r["correct"] for r in records] == [True, True, False, True, True, False, True, True, False]
    assert task.metrics(items, records) == EXPECTED
    # a second sample, all right: each metric is the mean over the samples
    both = records + [{"id": it.id, "sample": 1, "correct": True} for it in items]
    m = task.metrics(items, both)["all"]
    assert (m["aAcc"], m["qAcc"], m["fAcc"], m["questions"]) == (83.33, 62.5, 75.0, 9)


# ---------------------------------------------------------------- end to end
def write_responses(path, pairs):
    path.write_text("".join(json.dumps({"id": i, "output": o}) + "\n" for i, o in pairs))
    return path


def test_eval_score_mmmupro_end_to_end(data, tmp_path, capsys):
    resp = write_responses(tmp_path / "resp.jsonl", [
        ("standard10/test_Art_1", "thinking...</think>The fill is green.\nAnswer: C"),
        ("vision/test_Art_1", "thinking...</think>Answer: D"),
        ("vision/test_Math_2", "Answer: B"),  # unfinished: no </think>
    ])
    out = tmp_path / "run"
    assert main(["eval", "score", "--bench", "mmmupro", "--data", str(data / "MMMU_Pro"), "--responses", str(resp),
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [(r["correct"], r["scorer"]) for r in records] == [(True, "rules:answer-line"), (False, "rules:answer-line"),
                                                             (False, "none:unfinished")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(100 / 3, abs=0.01) and summary["items"] == 3
    assert summary["groups"]["setting"] == {"standard (10 options)": {"n": 1, "accuracy": 100.0},
                                            "vision": {"n": 2, "accuracy": 0.0}}
    assert "by setting: standard (10 options) 100% (1), vision 0% (2)" in capsys.readouterr().out


def test_eval_score_hallusionbench_end_to_end(data, hb, tmp_path, capsys):
    _, items = hb
    resp = write_responses(tmp_path / "resp.jsonl", [(it.id, f"hm...</think>{o}") for it, o in zip(items, OUTPUTS)])
    out = tmp_path / "run"
    assert main(["eval", "score", "--bench", "hallusionbench", "--data", str(data / "HallusionBench"),
                 "--responses", str(resp), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == 66.67 and summary["complete"]
    assert summary["metrics"] == EXPECTED
    # confident wrong answers: VD fig 1 q0 and VS no-figure q1; the two unknowns are not counted
    assert (summary["hallucination"], summary["hallucination_n"]) == (round(200 / 7, 2), 7)
    printed = capsys.readouterr().out
    assert "all: questions 9, figures 4, pairs 4, aAcc 66.67, fAcc 50.0, qAcc 25.0" in printed


def test_examples_register_both(tmp_path):
    paths = write_examples(tmp_path)
    assert len(get_task("mmmupro").read(paths["mmmupro"])) == 6
    assert len(get_task("hallusionbench").read(paths["hallusionbench"])) == len(HALLUSIONBENCH_ROWS)
