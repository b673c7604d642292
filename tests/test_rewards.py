"""Rewards and SFT data selection: pure functions, tested adversarially."""

from __future__ import annotations

import numpy as np
import pytest

from r1v.evaluate.tasks import Item, get_task
from r1v.rewards import (
    accuracy_reward,
    d_rm,
    effective_ratio,
    format_reward,
    group_advantages,
    iteration_ids,
    mistakes,
    rubric_score,
)

WORLD = get_task("world")
ITEM = Item(id="a", question="How many?", answer="5")
MC = Item(id="b", question="Which?", answer="B", choices=["1", "5", "7", "9"])


@pytest.mark.parametrize("text, expected", [
    (" 3 + 2 = 5.</think>\n\\boxed{5}", 1.0),
    (" 3 + 2 = 5.</think>\nThe answer is \\boxed{5}.", 1.0),
    (" 3 + 2 = 5.</think>\n\\boxed{6}", 0.0),              # wrong
    (" 3 + 2 = 5. \\boxed{5}", 0.0),                       # never closed its reasoning: no answer
    ("</think>\n\\boxed{5}", 1.0),                         # empty reasoning is a format matter, not accuracy
    (" so \\boxed{5}</think>\n\\boxed{4}", 0.0),           # only the text after </think> counts
    ("", 0.0),
])
def test_accuracy_reward_uses_the_task_scorer(text, expected):
    assert accuracy_reward([text], items=[ITEM], task=WORLD) == [expected]


def test_accuracy_reward_multiple_choice_and_guesses():
    assert accuracy_reward([" x.</think>\n\\boxed{B}", " x.</think>\n\\boxed{C}"], items=[MC, MC], task=WORLD) == [1, 0]

    class Guessing:  # a task whose rules guess (as MMMU's do) earns nothing for the guess
        def score(self, item, text):
            from r1v.evaluate.tasks import Score

            return Score(True, "B", "rules:guess")

    assert accuracy_reward(["anything"], items=[MC], task=Guessing()) == [0.0]


@pytest.mark.parametrize("text, expected", [
    (" 3 + 2 = 5.</think>\n\\boxed{5}", 1.0),
    ("<think> 3 + 2 = 5.</think>\n\\boxed{5}", 1.0),       # a repeated opening tag is tolerated
    ("</think>\n\\boxed{5}", 0.0),                          # no reasoning
    ("   \n</think>\n\\boxed{5}", 0.0),                     # whitespace is not reasoning
    (" 3 + 2 = 5.\n\\boxed{5}", 0.0),                       # no </think>
    (" a.</think>\n5", 0.0),                                # no \boxed{}
    (" a.</think>\n\\boxed{}", 0.0),                        # empty box
    (" a.</think>\n\\boxed{}}", 0.0),                       # an empty box and a stray brace
    (" a.</think>\n\\boxed{{}", 0.0),                       # a box never closed
    (" a.</think>\n\\boxed{ {} }", 0.0),                    # braces and spaces only
    (" a.</think>\n\\boxed{5} and \\boxed{}", 0.0),         # the box the scorer reads is empty
    (" a.</think>\n\\boxed{\\frac{1}{2}}", 1.0),             # nested braces are an answer
    (" a.</think>\n\\boxed{5}</think>", 0.0),               # two closings
    (" a.</think><think>b</think>\\boxed{5}", 0.0),         # a second think block
    (" <think> a.</think>\\boxed{5}", 0.0),                 # nested opening
])
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]


def test_group_advantage_matches_a_hand_computed_group():
    # rewards 1, 0, 0, 1.5: mean 0.625, population std sqrt(((.375)^2*1 + (.625)^2*2 + (.875)^2)/4)
    r = [1.0, 0.0, 0.0, 1.5]
    mean = 0.625
    std = ((0.375**2 + 0.625**2 + 0.625**2 + 0.875**2) / 4) ** 0.5
    got = group_advantages(r + [0.5] * 4, 4)
    assert got[:4] == pytest.approx([(x - mean) / (std + 1e-4) for x in r])
    assert got[4:] == [0.0] * 4  # a uniform group carries no signal
    assert sum(got[:4]) == pytest.approx(0.0, abs=1e-9)
    assert effective_ratio(r + [0.5] * 4, 4) == 0.5
    with pytest.raises(ValueError):
        group_advantages([1.0, 2.0, 3.0], 2)


REF = "red shapes 3. blue shapes 2. 3 + 2 = 5."


@pytest.mark.parametrize("response, correct, expected", [
    (" red shapes 3. blue shapes 2. 3 + 2 = 5.</think>\n\\boxed{5}", True, 5),
    (" blue shapes 2. red shapes 3. 3 + 2 = 5.</think>\n\\boxed{5}", True, 5),     # order of facts is free
    (" red shapes 3. blue shapes 2. 3 + 2 = 6.</think>\n\\boxed{6}", False, 2),    # false sum, wrong answer
    (" red shapes 4. blue shapes 1. 4 + 1 = 5.</think>\n\\boxed{5}", True, 4),     # right by luck, false facts
    (" red shapes 3. blue shapes 2. 3 + 2 = 5.</think>\n5", True, 4),              # no \boxed
    ("</think>\n\\boxed{5}", True, 2),                                            # no reasoning at all
    (" red shapes 3. blue shapes 2. 3 + 3 = 7.\\boxed{5}", False, 0),   # never closed, a false sum, a stray fact
    ("", False, 0),
])
def test_rubric_reward_model(response, correct, expected):
    assert rubric_score(response, reference=REF, correct=correct) == expected


def test_tau_schedule_and_mistakes():
    scores = np.array([5, 4, 3, 2, 0])  # rows a..e of D
    assert [d_rm(scores, t).tolist() for t in (2, 3, 4, 5)] == [[0, 1, 2, 3], [0, 1, 2], [0, 1], [0]]
    wrong = mistakes([0, 1, 2, 4], [True, False, True, False])
    assert wrong.tolist() == [1, 4]
    # D_4 = D_rm(5) u E_3: a low-scored sample re-enters when the model gets it wrong
    assert iteration_ids(scores, 5, wrong).tolist() == [0, 1, 4]
    assert iteration_ids(scores, 5, []).tolist() == [0]
    assert iteration_ids(scores, 0, [4]).tolist() == [0, 1, 2, 3, 4]  # no row twice
