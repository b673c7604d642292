"""AL-CoTD's scores and penalty (`r1v/distill/scores.py`), and the judge's strict JSON (`judge.py`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from r1v.distill import scores as S
from r1v.distill.judge import BadReply, Failure, Judge, Unreachable, parse_reply, rewrite_of
from r1v.evaluate.endpoint import Completion


# --------------------------------------------------------------------------- DRLC
def test_penalty_formula_and_bounds():
    # the formula, by hand, away from the cap
    p = S.penalty(0.2, 0.5, 0.9, alpha=0.5, beta=2.0, gamma=0.5)
    assert p == pytest.approx(math.exp(0.5 * (1 - (0.2 + 2 * 0.5 + 0.5 * 0.9) / 3.5)))
    # hard, rich questions think freely (P = 1); the easiest get ln 2 -> exactly 2 with the default alpha
    assert S.penalty(1, 1, 1) == pytest.approx(1.0)
    assert S.penalty(0, 0, 0) == pytest.approx(2.0)
    # the cap: a large alpha saturates at 2, never above
    assert S.penalty(0, 0, 0, alpha=5) == 2.0 and S.penalty(0.3, 0.3, 0.3, alpha=5) == 2.0
    # P never falls below 1 (all scores <= 1) and falls as any score rises
    grid = np.linspace(0, 1, 6)
    for v in grid:
        for t in grid:
            assert 1.0 <= S.penalty(v, t, 0.5) <= 2.0
            if t < 1:
                assert S.penalty(v, t, 0.5) > S.penalty(v, min(1.0, t + 0.2), 0.5)
    # alpha = 0: no penalty at all
    assert S.penalty(0, 0, 0, alpha=0) == 1.0
    # a flat score (None) is left out of the mean, weights included
    assert S.penalty(None, 0.25, None, beta=3) == pytest.approx(math.exp(math.log(2) * 0.75))
    assert S.penalty(None, None, None) == pytest.approx(math.sqrt(2))
    for bad in ((1.2, 0, 0), (0, -0.1, 0)):
        with pytest.raises(ValueError, match="normalised"):
            S.penalty(*bad)
    with pytest.raises(ValueError, match="non-negative"):
        S.penalty(0.5, 0.5, 0.5, beta=-1)


def test_minmax_and_normalise():
    assert S.minmax([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    # a missing value takes the mean of the others
    assert S.minmax([0.0, None, 10.0]) == [0.0, 0.5, 1.0]
    # a flat score carries no information; nor does clarity's noise under half a point (FLAT)
    assert S.minmax([7.0, 7.0, 7.0]) is None
    assert S.minmax([6.215, 6.2182, 6.2139], flat=S.FLAT) is None and S.minmax([0.2, 0.25]) == [0.0, 1.0]
    assert S.minmax([None, None]) is None
    comps = [{"clarity": c, "necessity": 10, "quality": 10, "difficulty": d, "demand": m, "integration": i}
             for c, d, m, i in ((6.21, 1, 0, 2), (6.25, 3, 4, 2), (6.2, 5, 10, 8))]
    hats = S.normalise(comps)
    # clarity (noise), necessity and quality never vary: vision is flat (None), text is difficulty + demand
    assert [h["vision"] for h in hats] == [None] * 3
    assert [h["text"] for h in hats] == [0.0, pytest.approx(0.45), 1.0]
    assert [h["integration"] for h in hats] == [0.0, 0.0, 1.0]
    for h in hats:
        assert all(v is None or 0.0 <= v <= 1.0 for v in h.values())
    # a group whose means spread little still varies: the second normalisation has no noise floor
    close = [{**comps[0], "difficulty": d, "demand": m} for d, m in ((0, 10), (10, 0), (10, 10), (0, 0))]
    assert [h["text"] for h in S.normalise(close)] == [0.5, 0.5, 1.0, 0.0]


# --------------------------------------------------------------------------- clarity
def scene() -> Image.Image:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    d = ImageDraw.Draw(img)
    for k in range(0, 224, 16):
        d.line([(k, 0), (224 - k, 224)], fill=(0, 0, 0), width=2)
    return img


def test_blur_lowers_the_clarity_score():
    img = scene()
    radii = (0, 1, 2, 4, 8)
    variances = [S.laplacian_variance(img.filter(ImageFilter.GaussianBlur(r)) if r else img) for r in radii]
    assert all(a > b for a, b in zip(variances, variances[1:])), variances
    scores = [S.clarity([img.filter(ImageFilter.GaussianBlur(r)) if r else img]) for r in radii]
    assert all(a >= b for a, b in zip(scores, scores[1:])) and scores[0] > scores[-1] + 1, scores
    # resolution counts too: the same picture, smaller, is less clear; several images: the least clear
    small = img.resize((56, 56))
    assert S.clarity([small]) < S.clarity([img.resize((448, 448))])
    assert S.clarity([img, img.filter(ImageFilter.GaussianBlur(8))]) == scores[-1]
    assert S.clarity([]) is None
    assert S.laplacian_variance(Image.new("RGB", (2, 2))) == 0.0
    assert S.laplacian_variance(Image.new("RGB", (64, 64), (90, 90, 90))) == 0.0


# --------------------------------------------------------------------------- the rules
def test_rule_scores():
    r = S.rule_scores
    base = {"question": "How many red circles are there?", "answer": "3"}
    assert r(base, has_image=False)["necessity"] == 0
    assert r({**base, "context": "There are 3 red circles."}, has_image=True)["necessity"] == 4
    assert r(base, has_image=True)["necessity"] == 10
    assert r({"question": "Is 12 more than 7 plus 3?", "answer": "yes"}, has_image=True)["necessity"] == 6
    # a broken question loses quality: too short, unbalanced, duplicated choices, no gold
    bad = r({"question": "(x", "answer": "", "choices": ["1", "1"]}, has_image=True)
    assert bad["quality"] == 0 and r(base, has_image=True)["quality"] == 10
    # difficulty: the row's own label first (MATH's "Level 3" included), else the text's cues
    assert r({**base, "level": 2}, has_image=True)["difficulty"] == 2
    assert r({**base, "level": "Level 4"}, has_image=True)["difficulty"] == 4
    assert r({**base, "steps": 5, "level": 1}, has_image=True, difficulty_field="steps")["difficulty"] == 5
    easy = r({"question": "What colour is the car?", "answer": "red"}, has_image=True)
    hard = r({"question": "What is the total of 3, 8 and 12, minus the difference between 9 and 4?", "answer": "18"},
             has_image=True)
    assert hard["difficulty"] > easy["difficulty"] and hard["demand"] > easy["demand"]
    # integration: why / how and relations up, a recognition question down
    rich = r({"question": "Why is the ball to the left of the box moving faster than the one above it?",
              "answer": "x"}, has_image=True)
    assert rich["integration"] > easy["integration"]
    for s in (easy, hard, rich, bad):
        assert all(0 <= v <= 10 for k, v in s.items() if k != "difficulty")


# --------------------------------------------------------------------------- the judge's strict JSON
SCHEMA = {"score": (0, 5)}


@pytest.mark.parametrize("reply,ok", [
    ('{"score": 4}', 4), ('  {"score": 4.0}\n', 4), ('```json\n{"score": 3}\n```', 3),
    ('<think>hmm, 5?</think>{"score": 5}', 5),
    ('Sure! {"score": 4}', None), ('{"score": 7}', None), ('{"score": -1}', None), ('{"score": 2.5}', None),
    ('{"score": "4"}', None), ('{"score": true}', None), ('{"score": 4, "why": "x"}', None), ("[4]", None),
    ("", None), ('{"score": 4', None), ("null", None), ('{"Score": 4}', None), ('{"score": NaN}', None),
    ('{"score": Infinity}', None), ('{"score": 1e400}', None),
])
def test_parse_reply_is_strict(reply, ok):
    if ok is None:
        with pytest.raises(BadReply):
            parse_reply(reply, SCHEMA)
    else:
        assert parse_reply(reply, SCHEMA) == {"score": ok}
    assert parse_reply('{"correct": false}', {"correct": bool}) == {"correct": False}
    with pytest.raises(BadReply, match="not true or false"):
        parse_reply('{"correct": 0}', {"correct": bool})


class Scripted:
    """A judge model that replies from a script per key (the last reply repeats); logs temperatures."""
    name, unit = "scripted", "words"

    def __init__(self, script: dict[str, list[str]]):
        self.script, self.calls = script, []

    def count(self, text):
        return None

    def complete(self, requests):
        for r in requests:
            self.calls.append((r.key, r.temperature))
            replies = self.script[r.key]
            n = sum(k == r.key for k, _ in self.calls) - 1
            reply = replies[min(n, len(replies) - 1)]
            yield r.key, (Completion("", False, 0, error="HTTP 500") if reply is None else Completion(reply, True, 3))


def test_malformed_judge_json_is_retried_then_recorded_never_raised():
    model = Scripted({"a": ["I'd say 4", '{"score": 4}'], "b": ["nope", "still no", "{'score': 3}"],
                      "c": ['{"score": 2}'], "d": [None], "e": ['{"score": NaN}']})
    got = Judge(model, retries=2).ask_json("reward", {k: ("q", [], None) for k in "abcde"})
    assert got["a"] == {"score": 4} and got["c"] == {"score": 2}
    assert isinstance(got["b"], Failure) and "malformed" in got["b"].reason and got["b"].reply == "{'score': 3}"
    assert isinstance(got["e"], Failure) and "not a number" in got["e"].reason
    # each key asked at most 1 + retries times; the retries at a raised temperature, so a greedy judge varies
    assert [t for k, t in model.calls if k == "b"] == [0.0, 0.7, 0.7]
    assert [t for k, t in model.calls if k == "c"] == [0.0]
    # an unreachable judge is not a judgement: not re-asked here (the endpoint retried), not recorded
    assert isinstance(got["d"], Unreachable) and [k for k, _ in model.calls].count("d") == 1
    dead = Judge(Scripted({"x": [None]}), retries=1).scores([{"id": "x", "question": "Why?", "answer": "1"}], {})
    assert dead == {"x": None}
    bad = Judge(Scripted({"x": ["?"]}), retries=1).scores([{"id": "x", "question": "Why?", "answer": "1"}], {})
    assert set(bad["x"]) == {"failures"} and set(bad["x"]["failures"]) == {"qdam", "vtia"}


@pytest.mark.parametrize("reply", [
    "<think>3 + 4 = 7.</think> \\boxed{7}",                                       # as asked
    "Let me see what went wrong.</think><think>3 + 4 = 7.</think> \\boxed{7}",    # a reasoning parser's split
    "<think>Let me see.</think>\n<think>\n3 + 4 = 7.</think> \\boxed{7}",          # a reasoning judge, no parser
])
def test_a_reasoning_judges_own_thinking_is_not_the_revision(reply):
    assert rewrite_of(reply) == "3 + 4 = 7.</think> \\boxed{7}"
