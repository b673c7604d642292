"""Benchmarks: each module reads its published format, writes its prompt and owns its scorer.

    from r1v.evaluate.tasks import get_task
    task = get_task("math500")
    items = task.read("MATH-500/test.jsonl")
    score = task.score(items[0], "<think>...</think> The answer is \\boxed{5}.")

A scorer is a pure function of (item, raw output): the think rules and `\\boxed{}` extraction
(`r1v/evaluate/answers.py`) pick the text, then the benchmark's official rules parse it
(`../shared/docs/scoring.md`). Every score records which path produced it (`Score.scorer`),
so a report can say how many answers were rule-extracted, judged, guessed or missing.
The GRPO accuracy reward calls the same `score`, and gives nothing for a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1v.errors import R1VError
from r1v.evaluate.answers import extract

BOXED_HINT = "put your final answer within \\boxed{}"


@dataclass
class Item:
    id: str
    question: str  # the prompt body; images go in front unless it holds one `<image>` per image
    answer: Any  # gold, as the benchmark states it
    images: list = field(default_factory=list)  # encoded image bytes, in prompt order
    choices: list[str] | None = None
    groups: dict[str, str] = field(default_factory=dict)  # breakdown keys: subject, level, ...
    info: dict = field(default_factory=dict)  # benchmark-specific fields the scorer needs


@dataclass(frozen=True)
class Score:
    correct: bool
    extracted: str | None  # what the rules (or the judge) took as the answer
    scorer: str  # the path: "rules", "rules:guess", "judge", "none:unfinished", ... (see Task.score)
    judge: dict | None = None  # a judged output: the judge, its prompt version, its raw replies (judge.py)

    @property
    def guessed(self) -> bool:
        """The official rules guessed (MMMU picks a seeded random option when none is found)."""
        return self.scorer.endswith(":guess")

    @property
    def answered(self) -> bool:
        return not self.scorer.startswith("none")


class JudgeError(Exception):
    """The LLM judge gave no usable verdict; scoring falls back to the rules. `info` is what the
    record keeps of the attempt (replies, error); `split`: the judge's samples had no majority."""

    def __init__(self, message: str, info: dict | None = None, *, split: bool = False):
        super().__init__(message)
        self.info, self.split = info or {"error": message}, split


class Task:
    name = ""
    title = ""  # the column heading in `r1v eval report`
    prefer_files: str | None = None  # which files under a folder hold the split

    def read(self, path, *, seed: int = 0) -> list[Item]:
        raise NotImplementedError

    def prompt(self, item: Item) -> str:
        raise NotImplementedError

    def rules(self, item: Item, text: str, *, boxed: bool, verifier) -> tuple[bool, str | None, str]:
        """(correct, extracted, path detail) by the benchmark's official rules, on non-empty text."""
        raise NotImplementedError

    def gold_text(self, item: Item) -> str:
        """The gold answer as a judge reads it (`--judge-mode match`): the answer, and for a
        multiple-choice item the option's text beside its letter."""
        answers = item.answer if isinstance(item.answer, list) else [item.answer]
        if item.choices:
            letters = [chr(65 + i) for i in range(len(item.choices))]
            return " or ".join(f"({a}) {item.choices[letters.index(a)]}" if a in letters else str(a)
                               for a in map(str, answers))
        return " or ".join(map(str, answers))

    def reference(self, item: Item) -> str:
        """A reference response to the item, what `r1v eval leakage --method loss` scores after the
        prompt: the item's worked solution where the data has one, then the gold answer in a box,
        written as a reasoning model's output (the prompt ends in the template's `<think>`). Test,
        train and reference items all take this form, so a gap between them is not one of format."""
        solution = item.info.get("solution")
        return f"{solution or ''}</think>\n\\boxed{{{self.gold_text(item)}}}"

    def metrics(self, items: list[Item], records: list[dict]) -> dict | None:
        """Benchmark metrics beyond pass@1 (POPE's precision, recall, F1), from the records."""
        return None

    def hallucinated(self, item: Item, output: str, *, think: bool = True) -> bool | None:
        """Does `output` state something the item's data says is false (the mini-world's scene facts,
        POPE's absent objects)? None when the task cannot tell: the hallucination rate counts only
        the items it can."""
        return None

    def score(self, item: Item, output: str, *, think: bool = True, verifier=None, judge=None) -> Score:
        """Score one raw output.

        Paths: `none:unfinished` (no `</think>`), `none:empty` (nothing to parse),
        `rules[:detail]`, `judge[:detail]` (the judge extracted, the rules compared),
        `judge-match` (the judge compared the answer with the gold: R1V2's answer matching; the
        rules' extraction is still recorded), and `rules-after-judge-error[:detail]` /
        `rules-after-judge-split[:detail]` (no usable verdict, or no majority among the judge's
        samples: the rules alone scored it)."""
        ans = extract(output, think=think)
        if ans.text is None:
            return Score(False, None, "none:unfinished")
        text, path, boxed, info, verdict = ans.parsed, "rules", ans.boxed, None, None
        if judge is not None and ans.text.strip():
            try:
                verdict = judge.judge(self, item, ans.text)
            except JudgeError as e:
                path, info = ("rules-after-judge-split" if e.split else "rules-after-judge-error"), e.info
            else:
                info = verdict.info
                if judge.mode == "extract":
                    text, path, boxed = verdict.value, "judge", True
        if not text or not text.strip():
            return Score(False, None, "none:empty", info)
        correct, extracted, detail = self.rules(item, text.strip(), boxed=boxed, verifier=verifier)
        if verdict is not None and judge.mode == "match":
            return Score(verdict.correct, extracted, "judge-match", info)
        return Score(bool(correct), extracted, f"{path}:{detail}" if detail else path, info)


def _registry() -> dict[str, type[Task]]:
    from r1v.evaluate.tasks.aime import AIME24
    from r1v.evaluate.tasks.gpqa import GPQA
    from r1v.evaluate.tasks.hallusionbench import HallusionBench
    from r1v.evaluate.tasks.math500 import MATH500
    from r1v.evaluate.tasks.mathverse import MathVerse
    from r1v.evaluate.tasks.mathvision import MathVision
    from r1v.evaluate.tasks.mathvista import MathVista
    from r1v.evaluate.tasks.mmmu import MMMU
    from r1v.evaluate.tasks.mmmupro import MMMUPro
    from r1v.evaluate.tasks.olympiadbench import OlympiadBench
    from r1v.evaluate.tasks.pope import POPE
    from r1v.evaluate.tasks.world import JSONL, World

    return {t.name: t for t in (MATH500, AIME24, GPQA, MathVista, MMMU, OlympiadBench, MathVision, MathVerse,
                                MMMUPro, HallusionBench, POPE, World, JSONL)}


def names() -> list[str]:
    return list(_registry())


def get_task(name: str) -> Task:
    reg = _registry()
    if name not in reg:
        raise R1VError(f"unknown benchmark {name!r}; choose from {', '.join(reg)}")
    return reg[name]()
