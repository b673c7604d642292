"""GPQA-Diamond (Idavidrein/gpqa, gpqa_diamond.csv): 198 graduate-level four-option questions.

The csv stores the correct answer and three wrong ones; the options are shuffled here with a
fixed seed, per question (a question's order does not depend on which others are read). The
id is the csv's `Record ID`, or the row number (from 0) when the column is absent; `r1v eval
score` also accepts the row number for a csv that has Record IDs.

Scoring (scoring.md): the letter is taken, in order, from "final answer is X", "answer: X",
a line starting with X, a lone X, then any standalone A-D (the last match of the first rule
that matches), in the rightmost `\\boxed{}` after `</think>` if there is one, else the answer text.
The prompt asks for the letter in `\\boxed{}` (as the papers' prompts do); an output that ends
"Answer: X" instead (simple-evals' format) is read by the second rule. The last resort, any
standalone capital A-D, can misread prose ("option C: vitamin D" -> D); the path is recorded
(`rules:any`) so such answers can be counted.
"""

from __future__ import annotations

import random
import re

from r1v.evaluate.answers import unwrap_text
from r1v.evaluate.data import need, read_rows
from r1v.evaluate.tasks import Item, Task

LETTERS = "ABCD"
# The phrases match in any case, the letter only in capitals: "the final answer is a
# decrease..." must not read as A. A line "starts with X" only as "X)", "X.", "X:" or a lone
# X, so a sentence opening with the article "A" is not an answer.
LETTER_RULES = (
    ("final-answer-is", re.compile(r"(?i:final answer is)\s*:?\s*[\*\(\[]*([A-D])\b")),
    ("answer-colon", re.compile(r"(?i:answer)\s*:\s*[\*\(\[]*([A-D])\b")),
    ("line-start", re.compile(r"^\s*[\*\(\[]*([A-D])(?:[\)\]\.:]|\s*$)", re.MULTILINE)),
    ("lone", re.compile(r"^\s*[\*\(\[]*([A-D])[\)\]\.\*]*\s*$")),
    ("any", re.compile(r"\b([A-D])\b")),
)


def extract_letter(text: str) -> tuple[str | None, str]:
    """(letter, rule) by the ordered rules; (None, "none") when no rule matches."""
    text = unwrap_text(text)
    for rule, pattern in LETTER_RULES:
        found = pattern.findall(text)
        if found:
            return found[-1], rule
    return None, "none"


class GPQA(Task):
    name, title = "gpqa", "GPQA"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        rows = read_rows(path)
        need(rows, ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                       "Incorrect Answer 3"), "GPQA")
        items = []
        for n, r in enumerate(rows):
            rid = str(r.get("Record ID") or n)
            options = [r["Correct Answer"].strip()] + [r[f"Incorrect Answer {k}"].strip() for k in (1, 2, 3)]
            order = list(range(4))
            random.Random(f"gpqa:{seed}:{rid}").shuffle(order)
            choices = [options[i] for i in order]
            groups = {"domain": r["High-level domain"]} if r.get("High-level domain") else {}
            items.append(Item(id=rid, question=r["Question"].strip(), answer=LETTERS[order.index(0)],
                              choices=choices, groups=groups, info={"row": n}))
        return items

    def prompt(self, item: Item) -> str:
        opts = "\n".join(f"{L}) {c}" for L, c in zip(LETTERS, item.choices))
        return (f"{item.question}\n\n{opts}\n\nPlease reason step by step, and put the letter of the correct "
                f"option (A, B, C or D) within \\boxed{{}}.")

    def rules(self, item, text, *, boxed, verifier):
        letter, rule = extract_letter(text)
        return letter == item.answer, letter, rule
