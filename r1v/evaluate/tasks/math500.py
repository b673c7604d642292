"""MATH-500 (HuggingFaceH4/MATH-500, test.jsonl): competition maths, free-form answers.

Scoring (scoring.md): the gold answer is the last `\\boxed{}` of the reference solution (the
`answer` column when the solution has none); the model's answer is the last `\\boxed{}` after
`</think>`, or its whole answer text; equivalence by math-verify under a hard time bound
(`r1v/evaluate/verify.py`). pass@1 is the mean over k samples at temperature 0.6, top_p 0.95.
"""

from __future__ import annotations

import threading

from r1v.evaluate.answers import last_boxed
from r1v.evaluate.data import need, read_rows
from r1v.evaluate.tasks import BOXED_HINT, Item, Task

_shared = None
_shared_lock = threading.Lock()


def shared_verifier():
    """One MathVerifier per process, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from r1v.evaluate.verify import MathVerifier, default_workers

            _shared = MathVerifier(workers=default_workers())
        return _shared


def math_prompt(problem: str) -> str:
    # DeepSeek-R1's evaluation prompt, which the R1V reports follow.
    return f"{problem}\nPlease reason step by step, and {BOXED_HINT}."


def math_rules(gold: str, text: str, boxed: bool, verifier) -> tuple[bool, str, str]:
    verdict = (verifier or shared_verifier())(str(gold), text, boxed)
    return verdict.equal, text, verdict.how


class MATH500(Task):
    name, title = "math500", "MATH-500"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        rows = read_rows(path)
        need(rows, ("problem", "answer", "unique_id"), "MATH-500")
        items = []
        for r in rows:
            gold = last_boxed(r.get("solution") or "") or str(r["answer"])
            groups = {k: str(r[k]) for k in ("subject", "level") if r.get(k) is not None}
            items.append(Item(id=str(r["unique_id"]), question=r["problem"], answer=gold, groups=groups,
                              info={"solution": r.get("solution") or None}))
        return items

    def prompt(self, item: Item) -> str:
        return math_prompt(item.question)

    def rules(self, item, text, *, boxed, verifier):
        return math_rules(item.answer, text, boxed, verifier)
