"""Chat templates render exactly as formats.md writes them; outputs split per its rules."""

from r1v.model.templates import render, split_reasoning


def test_r1v_template_exact():
    assert render("r1v", [{"role": "user", "content": "Q?"}]) == (
        "<｜begin▁of▁sentence｜><｜User｜>\nQ?<｜Assistant｜><think>\n")


def test_r1v3_template_exact():
    assert render("r1v3", [{"role": "user", "content": "Q?"}]) == (
        "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think>\n")


def test_multi_turn_keeps_answers_only():
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "1"},
            {"role": "user", "content": "b"}]
    assert render("r1v", msgs) == ("<｜begin▁of▁sentence｜><｜User｜>\na<｜Assistant｜>1<｜end▁of▁sentence｜>"
                                   "<｜User｜>\nb<｜Assistant｜><think>\n")


def test_split_reasoning():
    s = split_reasoning("let me see\n</think>\n\nThe answer is \\boxed{7}.")
    assert (s.reasoning, s.answer) == ("let me see", "The answer is \\boxed{7}.")
    cut = split_reasoning("y=5 and then")
    assert cut.answer is None and cut.reasoning == "y=5 and then"
    again = split_reasoning("<think>\nhmm</think>4")
    assert (again.reasoning, again.answer) == ("hmm", "4")
    first = split_reasoning("a</think>b</think>c")  # the first </think> closes the reasoning
    assert (first.reasoning, first.answer) == ("a", "b</think>c")
    empty = split_reasoning("</think>")
    assert (empty.reasoning, empty.answer) == ("", "")
