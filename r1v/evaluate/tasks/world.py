"""The mini-world (`r1v world build`): synthetic visual and text-only reasoning problems.

Rows are the JSON lines `r1v/world/data.py` writes (`visual-test.jsonl`, `text-test.jsonl`, ...);
a row's `image` is a path relative to its file. Scoring reuses the benchmarks' rules: free-form
answers are integers compared by the MATH-500 path (math-verify, whose exact-integer quick path
needs no subprocess); multiple-choice answers are letters read by the GPQA letter rules.
Breakdowns: family, level and steps. The GRPO accuracy reward of the recipe calls this scorer.

    r1v eval run --model runs/tiny/final --bench world --data ~/.cache/r1v/world/data/visual-test.jsonl
"""

from __future__ import annotations

from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.data import find_files, need, read_rows
from r1v.evaluate.tasks import Item, Task
from r1v.evaluate.tasks.gpqa import extract_letter
from r1v.evaluate.tasks.math500 import math_rules

LETTERS = "ABCD"


def prompt(question: str, choices: list[str] | None = None, context: str | None = None) -> str:
    """The mini-world's prompt (the task owns it; the world's LMs are trained on it): the scene in
    words (text-only problems), the question, the choices."""
    lines = [context] if context else []
    lines.append(question)
    if choices:
        lines.append("Choices: " + " ".join(f"({L}) {c}" for L, c in zip(LETTERS, choices)))
    return "\n".join(lines)


class World(Task):
    name, title = "world", "Mini-world"
    columns = ("id", "family", "question", "answer")

    def read(self, path, *, seed: int = 0) -> list[Item]:
        items = []
        for f in find_files(path):
            rows = read_rows(f)
            need(rows, self.columns, self.title)
            items += [self.read_row(r, root=Path(f).parent, source=f) for r in rows]
        return items

    def read_row(self, r: dict, *, root: Path | None = None, source=None) -> Item:
        """One row as an Item; its image is read from `root` (no root: the picture is left out)."""
        images = []
        names = r.get("images") or ([r["image"]] if r.get("image") else [])
        for name in names if root is not None else []:
            img = root / name
            if not img.is_file():
                raise R1VError(f"{source or root}: row {r['id']} names image {name}, which is missing")
            images.append(img.read_bytes())
        question = "\n".join(x for x in (r.get("context"), r["question"]) if x)
        groups = {k: str(r[k]) for k in ("family", "level", "steps") if r.get(k) is not None}
        return Item(id=str(r["id"]), question=question, answer=str(r["answer"]), images=images,
                    choices=r.get("choices") or None, groups=groups)

    def prompt(self, item: Item) -> str:
        return prompt(item.question, item.choices)

    def rules(self, item, text, *, boxed, verifier):
        if item.choices:
            letter, rule = extract_letter(text)
            return letter == item.answer, letter, rule
        return math_rules(item.answer, text, boxed, verifier)


class JSONL(World):
    """Any JSON lines of the same shape: {"id", "question", "answer", optional "image" / "images"
    (paths relative to the file), "choices", "context"}: the recipe's format for your own data.
    Free-form answers are compared by math-verify, choices by letter, as in the mini-world."""

    name, title = "jsonl", "JSONL"
    columns = ("id", "question", "answer")
