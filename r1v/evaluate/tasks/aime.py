"""AIME 2024 (HuggingFaceH4/aime_2024): 30 problems, integer answers 0..999.

Scored as MATH-500 is (last `\\boxed{}` after `</think>`, math-verify with a hard time bound),
against the `answer` column. The papers report pass@1 averaged over several samples
(`--samples 16` or more: 30 items give a wide interval otherwise).
"""

from __future__ import annotations

from r1v.evaluate.data import need, read_rows
from r1v.evaluate.tasks import Item, Task
from r1v.evaluate.tasks.math500 import math_prompt, math_rules


class AIME24(Task):
    name, title = "aime24", "AIME 2024"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        rows = read_rows(path)
        need(rows, ("id", "problem", "answer"), "AIME 2024")
        return [Item(id=str(r["id"]), question=r["problem"], answer=str(r["answer"]).strip(),
                     groups={"year": str(r["year"])} if r.get("year") else {},
                     info={"solution": r.get("solution") or None})
                for r in rows]

    def prompt(self, item: Item) -> str:
        return math_prompt(item.question)

    def rules(self, item, text, *, boxed, verifier):
        return math_rules(item.answer, text, boxed, verifier)
