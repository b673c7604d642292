"""The mini-world (`r1v world build`): synthetic visual and text-only reasoning problems.

Rows are the JSON lines `r1v/world/data.py` writes (`visual-test.jsonl`, `text-test.jsonl`, ...);
a row's `image` is a path relative to its file. Scoring reuses the benchmarks' rules: free-form
answers are integers compared by the MATH-500 path (math-verify, whose exact-integer quick path
needs no subprocess). A multiple-choice answer is the option's text or its letter, as MathVista's
rule maps either to the option: the world's models box the value (`\\boxed{8}`), and a letter
is read by the GPQA letter rules.
Breakdowns: family, level and steps. The GRPO accuracy reward of the recipe calls this scorer.

Hallucination (`false_facts`, `World.hallucinated`): the world knows every fact of every scene
(the row's `scene`), so an output *hallucinates* when a sentence of it states a visual fact the
scene contradicts: a count ("red shapes 4." with three red shapes), a bar ("tallest green 7."
when green is not the tallest, or not 7), the clock's hour ("clock 9."), or an operand read off an
expression ("3 + 6 = 9." under "3+5"). Sums that are merely wrong are reasoning errors, not
hallucinations; sentences the grammar does not know are not counted either way. R1V2 tracks this
rate by stage (its Table 3) without saying how it measured it; this is the mini-world's measure.

    r1v eval run --model runs/tiny/grpo --bench world --data ~/.cache/r1v/world/data/visual-test.jsonl
"""

from __future__ import annotations

import re
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


def gold_text(answer: str, choices: list[str] | None) -> str:
    """What a model boxes for the gold `answer`: the value, or for multiple choice the text of the
    gold option (the world's models answer with the value, never the letter; see `choice_rules`)."""
    return choices[LETTERS.index(answer)] if choices else answer


def choice_rules(answer: str, choices: list[str], text: str) -> tuple[bool, str | None, str]:
    """(correct, letter, rule) for a multiple-choice answer `text` (the boxed content, or the
    answer's text): a lone letter; else an option's exact text (MathVista's rule maps option text
    to the option; its closest-option fallback is left out, so a value no option holds is wrong);
    else the GPQA letter rules.

    Why the value: the world's 1.8M-parameter LMs find a value among the choices ("8 is (A).")
    no better than chance (measured on the first shipped backbones: 25 of 87 multiple-choice text
    test problems right, against 223 of 248 free-form; 61 of the 62 wrong ones said "(A)"), so the
    letter step measured the look-up, not the reasoning. Real models answer with either."""
    stripped = " ".join(text.split())
    if m := re.fullmatch(r"[\(\[]?([A-D])[\)\]\.]?", stripped):
        letter, rule = m.group(1), "lone-letter"
    elif stripped.casefold() in (options := [" ".join(c.split()).casefold() for c in choices]):
        letter, rule = LETTERS[options.index(stripped.casefold())], "option-text"
    else:
        letter, rule = extract_letter(text)
    return letter == answer, letter, rule


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
        info = {"family": r["family"], "scene": r["scene"]} if isinstance(r.get("scene"), dict) else {}
        if r.get("reasoning") or r.get("solution"):
            info["solution"] = r.get("reasoning") or r.get("solution")
        return Item(id=str(r["id"]), question=question, answer=str(r["answer"]), images=images,
                    choices=r.get("choices") or None, groups=groups, info=info)

    def prompt(self, item: Item) -> str:
        return prompt(item.question, item.choices)

    def reference(self, item: Item) -> str:
        # The reasoning LM's training target (`r1v/world/data.py`): the chain follows "<think>\\n"
        # after a space, so its first word is the same token as everywhere else.
        return f" {item.info.get('solution') or ''}</think>\n\\boxed{{{gold_text(item.answer, item.choices)}}}"

    def hallucinated(self, item: Item, output: str, *, think: bool = True) -> bool | None:
        """Does `output` state a fact its scene contradicts? None: the row carries no scene."""
        if "scene" not in item.info:
            return None
        return bool(false_facts(item.info["family"], item.info["scene"], output))

    def rules(self, item, text, *, boxed, verifier):
        if item.choices:
            return choice_rules(item.answer, item.choices, text)
        return math_rules(item.answer, text, boxed, verifier)


_COUNT = re.compile(r"^(?:(red|green|blue|yellow) )?(?:(circle|square|triangle)s|shapes) (-?\d+)$")
_BAR = re.compile(r"^(?:(tallest|shortest) )?(red|green|blue|yellow) (-?\d+)$")
_CLOCK = re.compile(r"^clock (-?\d+)$")
_EQUATION = re.compile(r"(-?\d+) ([+-]) (-?\d+) = -?\d+")


def false_facts(family: str, scene: dict, output: str) -> list[str]:
    """The sentences of `output` (reasoning and answer alike: the substitute states its work after
    the think block) that state a visual fact `scene` contradicts. Pure; see the module docstring."""
    text = re.sub(r"\\boxed\{[^{}]*\}", " ", output.replace("<think>", " ").replace("</think>", " "))
    sentences = [" ".join(s.split()) for s in re.split(r"[.\n]", text)]
    false = []
    if family == "expr":  # operands in the order the expression gives them, left to right
        expr = scene["expression"]
        nums = [int(n) for n in re.findall(r"\d+", expr)]
        signs = re.findall(r"(?<=\d)[+-]", expr)
        for k, m in enumerate(_EQUATION.finditer(text)):
            if k >= len(signs):
                break
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            if (k == 0 and a != nums[0]) or op != signs[k] or b != nums[k + 1]:
                false.append(m.group(0))
        return false
    for s in sentences:
        if family == "shapes" and (m := _COUNT.match(s)):
            colour, shape, n = m.group(1), m.group(2), int(m.group(3))
            true = sum((colour is None or o["colour"] == colour) and (shape is None or o["shape"] == shape)
                       for o in scene["objects"])
            if n != true:
                false.append(s)
        elif family == "bars" and (m := _BAR.match(s)):
            which, colour, n = m.group(1), m.group(2), int(m.group(3))
            of = {b["colour"]: b["value"] for b in scene["bars"]}
            pick = {"tallest": max, "shortest": min}.get(which)
            if colour not in of or of[colour] != n or (pick and of[colour] != pick(of.values())):
                false.append(s)
        elif family == "clock" and (m := _CLOCK.match(s)):
            if int(m.group(1)) != scene["hour"]:
                false.append(s)
    return false


class JSONL(World):
    """Any JSON lines of the same shape: {"id", "question", "answer", optional "image" / "images"
    (paths relative to the file), "choices", "context"}: the recipe's format for your own data.
    Free-form answers are compared by math-verify, choices by letter, as in the mini-world."""

    name, title = "jsonl", "JSONL"
    columns = ("id", "question", "answer")
