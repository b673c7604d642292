"""Scorers: the think rules, math equivalence under a hard time bound, and every benchmark's
official rules (scoring.md), including the pitfalls other harnesses fell into."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from r1v.evaluate.answers import extract, last_boxed
from r1v.evaluate.tasks import Item, JudgeError, get_task
from r1v.evaluate.tasks.gpqa import extract_letter
from r1v.evaluate.tasks.mathvista import normalize_extracted
from r1v.evaluate.tasks.mmmu import eval_open, parse_multi_choice, parse_open
from r1v.evaluate.verify import MathVerifier, quick

HANG = "9^{9^{9^{9}}}"  # SymPy evaluates this power eagerly, in C: no signal interrupts it


@pytest.fixture(scope="module")
def verifier():
    # A generous bound, so that a busy CI machine never turns a right answer into a timeout;
    # the tests of the bound itself use `impatient`.
    with MathVerifier(timeout=20.0, workers=2) as v:
        yield v


@pytest.fixture(scope="module")
def impatient():
    with MathVerifier(timeout=1.5, workers=1) as v:
        yield v


# ---------------------------------------------------------------- think rules and \boxed{}
@pytest.mark.parametrize("text, want", [
    ("so \\boxed{5}.", "5"),
    ("\\boxed{\\frac{1}{2}} and then \\boxed{\\sqrt{x^{2}}}", "\\sqrt{x^{2}}"),
    ("\\fbox{7}", "7"),
    ("\\boxed 42 is it", "42"),
    ("\\boxed{3} then \\boxed{4", None),  # the rightmost is unclosed: truncated
    ("no box here", None),
    ("\\boxed{}", ""),
])
def test_last_boxed(text, want):
    assert last_boxed(text) == want


def test_rightmost_boxed_after_think_wins():
    a = extract("<think>\\boxed{5}</think> \\boxed{7}")
    assert a.parsed == "7" and a.boxed and a.reasoning == "\\boxed{5}"


def test_truncated_output_has_no_answer():
    a = extract("Let me think... y=5 and then")
    assert a.text is None and a.parsed is None
    assert "y=5" in a.reasoning


def test_boxed_inside_reasoning_does_not_count():
    a = extract("first \\boxed{5} hmm</think>The answer is 7.")
    assert a.parsed == "The answer is 7." and not a.boxed


def test_no_think_mode_scores_the_whole_output():
    assert extract("The answer is \\boxed{3}", think=False).parsed == "3"
    assert extract("The answer is \\boxed{3}", think=True).text is None


# ---------------------------------------------------------------- math equivalence
@pytest.mark.parametrize("gold, pred, equal", [
    ("2", "2", True), ("24", "024", True), ("5", "5.0", True),
    ("\\frac{1}{2}", "0.5", True), ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2", True),
    ("x=5", "5-x=0", True), ("3", "4", False), ("\\frac{14}{3}", "\\dfrac{14}{3}", True),
    ("\\frac{1}{3}", "0.333333", True), ("1/3", "0.333333", True),  # a rounded decimal, either notation
    ("1/3", "0.33", False), ("3/4", "6/8", True), ("3/4", "3/5", False),
    # math-verify false positives reported by users; vetoed here
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False),
    ("10^{-7}", "2\\cdot 10^{-7}", False),
    ("a+b=b+a", "x=x", False),
    ("x^2-1=(x-1)(x+1)", "2=2", False),
    ("5", "", False), ("5", "   ", False),
])
def test_math_equivalence(verifier, gold, pred, equal):
    assert verifier(gold, pred).equal is equal


def test_quick_paths_need_no_sympy():
    assert quick("3", "3.0").how == "number"
    assert quick("\\text{(B)}", "(B)").how == "exact"
    assert quick("\\frac12", "0.5") is None


def test_pathological_expression_times_out_in_a_thread(impatient):
    verifier = impatient
    result = {}

    def work():
        t = time.monotonic()
        result["verdict"] = verifier("3", HANG)
        result["seconds"] = time.monotonic() - t

    th = threading.Thread(target=work)
    th.start()
    th.join(30)
    assert not th.is_alive()
    assert result["verdict"].how == "timeout" and not result["verdict"].equal
    # the bound holds outside the main thread: HANG alone runs for hours; the slack is for a busy machine
    # (killing and replacing the worker process took over 1.5 s with the cores shared by other jobs)
    assert result["seconds"] < verifier.timeout + 10
    assert verifier("\\frac{2}{4}", "0.5").equal  # a fresh worker replaced the killed one


def test_many_keeps_order(verifier):
    jobs = [("\\frac{1}{2}", "0.5"), ("3", "4"), ("\\sqrt{4}", "2"), ("x+1", "1+x")]
    assert [v.equal for v in verifier.many(jobs)] == [True, False, True, True]


# ---------------------------------------------------------------- MATH-500 / AIME through Task.score
def _item(**kw):
    return Item(id=kw.pop("id", "q1"), question=kw.pop("question", "Q"), answer=kw.pop("answer"), **kw)


@pytest.mark.parametrize("output, correct, scorer", [
    ("<think>\\boxed{5}</think> \\boxed{7}", True, "rules:exact"),  # rightmost, after </think>
    ("<think>so x = 7", False, "none:unfinished"),  # truncated: nothing is fished out
    ("x is \\boxed{7}, wait</think>I am not sure.", False, "rules:math-verify"),  # boxed in reasoning
    ("...</think>", False, "none:empty"),
    ("...</think>\\boxed{}", False, "none:empty"),
    ("...</think>The answer is $7$.", True, "rules:math-verify"),
    ("...</think>\\boxed{\\frac{14}{2}}", True, "rules:math-verify"),
])
def test_math_scorer(verifier, output, correct, scorer):
    s = get_task("math500").score(_item(answer="7"), output, verifier=verifier)
    assert (s.correct, s.scorer) == (correct, scorer)


def test_math_scorer_times_out_on_a_pathological_answer(impatient):
    s = get_task("math500").score(_item(answer="7"), "...</think>\\boxed{" + HANG + "}", verifier=impatient)
    assert (s.correct, s.scorer) == (False, "rules:timeout")


def test_an_empty_answer_never_scores_on_any_benchmark(verifier):
    items = {
        "math500": _item(answer="7"), "aime24": _item(answer="0"), "gpqa": _item(answer="A", choices=list("wxyz")),
        "mmmu": _item(answer="A", choices=["p", "q"], info={"question_type": "multiple-choice"}),
        "mathvista": _item(answer="p", choices=["p", "q"], info={"question_type": "multi_choice",
                           "answer_type": "text", "precision": None}),
    }
    for bench, item in items.items():
        for out in ("</think>", "</think>   ", "</think>\\boxed{}", "</think>\\boxed{ }"):
            s = get_task(bench).score(item, out, verifier=verifier)
            assert not s.correct and s.scorer == "none:empty", (bench, out, s)


def test_scoring_is_a_pure_function(verifier):
    task, item = get_task("mmmu"), _item(answer="B", choices=["p", "q", "r", "s"],
                                         info={"question_type": "multiple-choice"})
    out = "</think>I cannot tell."
    assert len({task.score(item, out, verifier=verifier) for _ in range(5)}) == 1


# ---------------------------------------------------------------- MMMU (official eval_utils rules)
LETTERS = ["A", "B", "C", "D"]
OPTS = dict(zip(LETTERS, ["square", "circle", "triangle", "line"]))


@pytest.mark.parametrize("response, want", [
    ("(B)", "B"), ("B", "B"), ("The answer is C.", "C"), ("(A) or maybe (C)", "C"),
    ("I think the shape that is round here is the circle", "B"),  # > 5 words: option text
    ("A or D, finally D", "D"),
])
def test_mmmu_multiple_choice(response, want):
    letter, guessed = parse_multi_choice(response, LETTERS, OPTS, random.Random(0))
    assert (letter, guessed) == (want, False)


def test_mmmu_no_option_is_a_seeded_guess_recorded_as_such(verifier):
    task = get_task("mmmu")
    item = _item(answer="B", choices=list(OPTS.values()), info={"question_type": "multiple-choice"})
    scores = {task.score(item, "</think>no idea", verifier=verifier) for _ in range(3)}
    assert len(scores) == 1
    s = scores.pop()
    assert s.scorer == "rules:guess" and s.guessed and s.extracted in LETTERS


@pytest.mark.parametrize("gold, response, correct", [
    ("3.14", "so the value is 3.14159", True),  # numbers rounded to 2 decimals
    ("3.14", "so the value is 3.15", False),
    ("1,000", "the total is 1000", True),
    ("Paris", "the capital is paris.", True),  # strings by containment
    ("4", "it has 4 sides", True),
    ("4", "it has 5 sides", False),
    ("['24', '24.0']", "the answer is 24", False),  # a raw list string is one (unmatchable) gold
    (["24", "24.0"], "the answer is 24", True),  # a list of golds: any
])
def test_mmmu_open(gold, response, correct):
    assert eval_open(gold, parse_open(response)) is correct


def test_mmmu_open_rules_match_the_official_quirks():
    from r1v.evaluate.tasks.mmmu import extract_numbers

    assert extract_numbers("12kg and 3.5 m") == ["3.5"]  # a number glued to a unit is not one
    assert not eval_open("42", parse_open("final answer is \n42"))  # official: "" tail counts as unset


def test_text_wrapped_letters_reach_the_letter_rules(verifier):
    mmmu = _item(answer="B", choices=["p", "q", "r", "s"], info={"question_type": "multiple-choice"})
    s = get_task("mmmu").score(mmmu, "</think>\\boxed{\\text{B}}", verifier=verifier)
    assert s.correct and s.scorer == "rules"
    vista = _item(answer="q", choices=["p", "q"], info={"question_type": "multi_choice", "answer_type": "text",
                                                        "precision": None})
    s = get_task("mathvista").score(vista, "</think>\\boxed{\\textbf{B}}", verifier=verifier)
    assert s.correct and s.extracted == "B"  # multiple choice records the letter
    s = get_task("mathvista").score(vista, "</think>the answer is q", verifier=verifier)
    assert s.correct and s.extracted == "B" and s.scorer == "rules:closest-option"


def test_mmmu_open_question_is_never_rewritten_as_a_choice(verifier):
    task = get_task("mmmu")
    item = _item(answer="4", info={"question_type": "open"})
    assert task.score(item, "</think>\\boxed{4}", verifier=verifier).correct
    assert not task.score(item, "</think>\\boxed{A}", verifier=verifier).correct


# ---------------------------------------------------------------- MathVista
@pytest.mark.parametrize("extraction, qtype, atype, precision, choices, want", [
    ("B", "multi_choice", "text", None, ["red", "blue"], "blue"),
    ("(B) blue", "multi_choice", "text", None, ["red", "blue"], "blue"),
    ("bleu", "multi_choice", "text", None, ["red", "blue"], "blue"),  # closest by edit distance
    ("3.0", "free_form", "integer", None, None, "3"),
    ("1.4512", "free_form", "float", 2, None, "1.45"),
    ("1.449 or so", "free_form", "float", 2, None, "1.45"),  # rule-only: a leading number
    ("12 cm^2", "free_form", "integer", None, None, "12"),
    ("The area is 12 cm^2.", "free_form", "integer", None, None, None),  # prose: not guessed at
    ("\\frac{3}{2}", "free_form", "float", 1, None, None),
    ("(3,4)", "free_form", "integer", None, None, None),
    ("inf", "free_form", "integer", None, None, None),  # no crash
    ("1.45", "free_form", "float", None, None, None),  # a float row without precision, as official
    ("B.", "multi_choice", "text", None, ["3", "4", "5"], "3"),  # as official: closest option, not B
    ("[2007, 2008]", "free_form", "list", None, None, "[2007, 2008]"),
    ("no number", "free_form", "integer", None, None, None),
])
def test_mathvista_normalisation(extraction, qtype, atype, precision, choices, want):
    assert normalize_extracted(extraction, choices, qtype, atype, precision)[0] == want


# ---------------------------------------------------------------- GPQA
@pytest.mark.parametrize("text, letter, rule", [
    ("so the final answer is (C), not A", "C", "final-answer-is"),
    ("Answer: B", "B", "answer-colon"),
    ("Answer: A. Checking again... Answer: C", "C", "answer-colon"),  # the last statement wins
    ("reasoning...\nD) because it fits", "D", "line-start"),
    ("  (A)  ", "A", "line-start"),
    ("\\text{B}", "B", "line-start"),
    ("I pick option C here", "C", "any"),
    ("none of these", None, "none"),
])
def test_gpqa_letter_rules(text, letter, rule):
    assert extract_letter(text) == (letter, rule)


@pytest.mark.parametrize("text, letter", [
    ("My final answer is a decrease in entropy, option (C).", "C"),  # the article "a" is no letter
    ("A catalyst lowers the barrier.\nSo the option is C.", "C"),  # nor is a sentence's "A"
])
def test_gpqa_articles_are_not_answers(text, letter):
    assert extract_letter(text)[0] == letter


def test_gpqa_rule_order_prefers_the_explicit_statement():
    assert extract_letter("A is tempting, but the final answer is B")[0] == "B"


# ---------------------------------------------------------------- the judge path
class FakeJudge:
    def __init__(self, reply=None, fail=False, mode="extract"):
        self.reply, self.fail, self.name, self.mode = reply, fail, "fake", mode

    def judge(self, task, item, response):
        from r1v.evaluate.judge import Verdict

        if self.fail:
            raise JudgeError("down", {"error": "down"})
        return Verdict(self.reply, {"model": "fake", "replies": [self.reply]})


def test_judge_extracts_and_rules_still_compare(verifier):
    task, item = get_task("math500"), _item(answer="12")
    out = "</think>After all that, twelve is what we get: 12 apples."
    assert task.score(item, out, verifier=verifier, judge=FakeJudge("12")).scorer == "judge:exact"
    wrong = task.score(item, out, verifier=verifier, judge=FakeJudge("13"))
    assert not wrong.correct and wrong.scorer.startswith("judge")
    fallback = task.score(item, out, verifier=verifier, judge=FakeJudge(fail=True))
    assert fallback.scorer.startswith("rules-after-judge-error")
    none = task.score(item, out, verifier=verifier, judge=FakeJudge(""))
    assert not none.correct and none.scorer == "none:empty"


def test_judge_match_decides_and_the_rules_still_record_their_reading(verifier):
    task, item = get_task("math500"), _item(answer="12")
    out = "</think>After all that, twelve apples remain."
    said = task.score(item, out, verifier=verifier, judge=FakeJudge("CORRECT", mode="match"))
    assert said.correct and said.scorer == "judge-match" and said.judge["replies"] == ["CORRECT"]
    assert not task.score(item, "</think>\\boxed{12}", verifier=verifier,
                          judge=FakeJudge("INCORRECT", mode="match")).correct  # the judge decides, both ways
    assert task.score(item, "</think>\\boxed{12}", verifier=verifier,
                      judge=FakeJudge(fail=True, mode="match")).scorer == "rules-after-judge-error:exact"
    assert task.score(item, "<think>\\boxed{12}", verifier=verifier,
                      judge=FakeJudge("CORRECT", mode="match")).scorer == "none:unfinished"  # never asked


def test_a_verifier_that_cannot_start_is_an_error_not_a_wrong_answer(monkeypatch):
    from r1v.errors import R1VError

    monkeypatch.setattr("sys.executable", "/bin/false")
    with MathVerifier(timeout=1.0) as v, pytest.raises(R1VError, match="could not start"):
        v("\\frac12", "0.5")


def _verify_in_a_worker_process(pair):
    with MathVerifier(timeout=1.0) as v:
        t = time.monotonic()
        verdict = v(*pair)
        return verdict.how, time.monotonic() - t


def test_the_time_bound_holds_in_worker_processes():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_verify_in_a_worker_process, [("3", HANG), ("\\frac12", "0.5")]))
    # the hang never ends on its own; 10 s tells "cut at the 1 s bound" from "not cut" even on a loaded
    # machine (2.5 s failed once with four jobs on two cores)
    assert results[0][0] == "timeout" and results[0][1] < 10
    assert results[1][0] == "math-verify"


def test_an_interrupted_comparison_does_not_shift_later_verdicts():
    import os
    import signal

    # A real SIGINT (as Ctrl-C sends), which also wakes the caller blocked in select(); with
    # Python's own handler, which a shell's background job would otherwise have ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with MathVerifier(timeout=30.0) as v:
            v("\\frac12", "0.5")
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            with pytest.raises(KeyboardInterrupt):
                v("1", "\\sum_{k=1}^{8000} \\frac{1}{k^2}")  # seconds of SymPy, then "not equal"
            # the interrupted comparison's late reply must not answer the next question
            assert v("\\frac{1}{4}", "0.25").equal is True
            assert v("\\frac{1}{3}", "0.25").equal is False
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_worker_dies_with_its_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import threading, time\n"
        "from r1v.evaluate.verify import MathVerifier\n"
        "v = MathVerifier(timeout=600)\n"
        f"threading.Thread(target=v, args=('3', {HANG!r}), daemon=True).start()\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 30
        workers = []
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        assert workers, "the verifier worker did not start"
        time.sleep(1.0)  # it is now busy with the pathological power
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{workers[0]}").exists():
        status = Path(f"/proc/{workers[0]}/status").read_text() if Path(f"/proc/{workers[0]}").exists() else ""
        if "State:\tZ" in status:
            break
        time.sleep(0.2)
    assert not Path(f"/proc/{workers[0]}").exists() or "State:\tZ" in Path(f"/proc/{workers[0]}/status").read_text()


def test_hallucination_follows_the_think_setting():
    """A `--no-think` model's "Yes." to an absent object is a hallucination; read with the think
    rules the same text has no `</think>`, so no answer and nothing stated."""
    from r1v.evaluate.tasks import Item

    pope, item = get_task("pope"), Item(id="random-2", question="Is there a dog in the image?", answer="no")
    assert pope.hallucinated(item, "Yes.", think=False) is True
    assert pope.hallucinated(item, "Yes.") is False
    assert pope.hallucinated(item, "<think>a dog? no</think>No.", think=True) is False
