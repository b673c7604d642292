"""MathVista testmini (AI4Math/MathVista, testmini parquet): 1,000 visual maths questions.

Reading: the image is `decoded_image` (parquet image struct) or `image` (a path relative to
the data folder, as in the GitHub release, whose `testmini.json` maps pid -> row); the prompt
is the published `query` (it carries the answer-format hint) with the `\\boxed{}` instruction
added; `choices`, `unit`, `precision`, `answer_type` drive scoring.

Scoring follows MathVista's `normalize_extracted_answer` + exact match (scoring.md):
multiple choice maps a letter (or "(B) ...") to its option, else takes the closest option by
edit distance; integer answers compare as str(int(float(x))), floats rounded to the row's
`precision`, lists as strings. The official pipeline extracts the answer with an LLM; without
`--judge-url` this runs rule-only, and says so (`rules` in every record and the summary).
Departures, each recorded in the scorer path: a numeric answer that is not a bare number but
starts with one ("12 cm^2", "$3.5") is read as that number (`:leading-number`; the official
pipeline leaves such cases to its LLM); an empty answer is never mapped to the closest option
(the official `--ignore_empty_extractions`). `\\boxed{\\text{B}}` reaches the rules as `B`
(`answers.py`). A float row without `precision` has no readable answer, as officially.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from r1v.evaluate.data import image_bytes, need, read_rows
from r1v.evaluate.tasks import BOXED_HINT, Item, Task

_LEADING_NUMBER = re.compile(r"\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![\d/^.,])")


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_extracted(extraction: str, choices: list[str] | None, question_type: str, answer_type: str,
                        precision) -> tuple[str | None, str]:
    """(normalised answer or None, rule detail), as MathVista's normalize_extracted_answer."""
    extraction = extraction.strip()
    if question_type == "multi_choice":
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in letters:
            return choices[letters.index(extraction)], ""
        return min(choices, key=lambda c: levenshtein(extraction, str(c))), "closest-option"
    if answer_type in ("integer", "float"):
        detail = ""
        try:
            value = float(extraction)
        except ValueError:
            # Rule-only departure: "12 cm^2" -> 12. Only a *leading* number is read; prose,
            # fractions and tuples stay unreadable (None), as the official rules leave them.
            m = _LEADING_NUMBER.match(extraction)
            if not m:
                return None, ""
            value, detail = float(m[1].replace(",", "")), "leading-number"
        try:
            if answer_type == "integer":
                return str(int(value)), detail
            if precision is None:  # as official: int(None) fails, no answer
                return None, "no-precision"
            return str(round(value, int(precision))), detail
        except (OverflowError, ValueError):  # inf, nan
            return None, ""
    return str(extraction), ""


def _precision(value) -> float | None:
    try:
        p = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(p) else p


class MathVista(Task):
    name, title = "mathvista", "MathVista(mini)"
    prefer_files = "testmini"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        rows = read_rows(path, prefer=self.prefer_files)
        need(rows, ("pid", "question", "answer", "question_type", "answer_type"), "MathVista")
        base = Path(path) if Path(path).is_dir() else Path(path).parent
        items = []
        for r in rows:
            img = image_bytes(r.get("decoded_image")) or image_bytes(r.get("image"))
            if img is None and isinstance(r.get("image"), str) and (base / r["image"]).is_file():
                img = (base / r["image"]).read_bytes()
            meta = r.get("metadata") or {}
            groups = {k: str(meta[k]) for k in ("task", "category") if meta.get(k)}
            choices = list(r["choices"]) if r.get("choices") is not None and len(r["choices"]) else None
            items.append(Item(
                id=str(r["pid"]), question=r["question"], answer=str(r["answer"]),
                images=[img] if img else [], choices=choices, groups=groups,
                info={"question_type": r["question_type"], "answer_type": r["answer_type"],
                      "precision": _precision(r.get("precision")), "unit": r.get("unit"),
                      "query": r.get("query")}))
        return items

    def prompt(self, item: Item) -> str:
        # The published query carries the hint and the choices; `question` is the bare question
        # (what `r1v eval leakage` compares: the hints are shared boilerplate).
        return f"{item.info.get('query') or item.question}\nPlease {BOXED_HINT}."

    def rules(self, item, text, *, boxed, verifier):
        info = item.info
        if info["question_type"] == "multi_choice" and not item.choices:
            return False, None, "no-choices"
        norm, detail = normalize_extracted(text, item.choices, info["question_type"], info["answer_type"],
                                           info["precision"])
        correct = norm is not None and norm == item.answer  # official: the option text against the answer
        if info["question_type"] == "multi_choice" and norm is not None:
            norm = chr(ord("A") + item.choices.index(norm))  # multiple choice records the letter
        return correct, norm, detail
