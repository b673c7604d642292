"""MMMU validation (MMMU/MMMU: one folder per subject, validation parquet): 900 questions,
up to 7 images each, multiple-choice and open.

Reading: `options` is a Python-list string; `image_1..image_7` hold parquet image structs;
the images go in front of the question as "Image-k: <image>" and the question keeps its
`<image n>` references as text (the R1V / InternVL convention). Subject = the id without its
split prefix and number ("validation_Art_Theory_3" -> "Art_Theory").

Scoring follows MMMU's official `eval_utils.py` (scoring.md), ported rule for rule, applied to
what the harness hands it: the content of the last `\\boxed{}` after `</think>`, else the
answer text (`r1v/evaluate/answers.py`). Departures:
- an empty answer is not given a random option (it never scores);
- the random choice for a non-empty answer with no option found is seeded per question (the
  official code seeds once, so its guesses depend on the order of scoring) and recorded as a
  guess (`rules:guess`);
- a gold answer stored as a Python-list string ("['24', '24.0']") is read as that list, so
  any element matches (the official code would compare against the string itself).
Open questions are scored with the official open rules; they are never rewritten as a choice.
"""

from __future__ import annotations

import ast
import random
import re

from r1v.evaluate.data import image_bytes, need, read_rows
from r1v.evaluate.tasks import BOXED_HINT, Item, Task

MAX_IMAGES = 7


# ---------------------------------------------------------------- official rules (MMMU eval_utils.py)
def parse_multi_choice(response: str, letters: list[str], index2ans: dict[str, str],
                       rng: random.Random) -> tuple[str, bool]:
    """(letter, guessed)."""
    for ch in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(ch)
    response = " " + response + " "
    index_ans, with_brackets, candidates = True, False, []
    for c in letters:
        if f"({c})" in response:
            candidates.append(c)
            with_brackets = True
    if not candidates:
        candidates = [c for c in letters if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        for c, ans in index2ans.items():
            if ans.lower() in response.lower():
                candidates.append(c)
                index_ans = False
    if not candidates:
        return rng.choice(letters), True
    if len(candidates) == 1:
        return candidates[0], False
    if index_ans:
        marks = [response.rfind(f"({c})") if with_brackets else response.rfind(f" {c} ") for c in candidates]
    else:
        marks = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[max(range(len(marks)), key=lambda i: (marks[i], -i))], False


def _is_number(s: str) -> bool:
    try:
        float(s.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_str(s: str) -> list:
    s = s.strip()
    if _is_number(s):
        return [round(float(s.replace(",", "")), 2)]
    s = s.lower()
    return [" " + s, s + " "] if len(s) == 1 else [s]


def extract_numbers(s: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", s)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", s)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", s)
    return commas + scientific + simple


def parse_open(response: str) -> list:
    def key_subresponses(resp: str) -> list[str]:
        resp = resp.strip().strip(".").lower()
        # As official: split on ". " before a capital letter, which after lower() only the
        # newline split can do; kept so that scores match the official scorer's.
        subs = re.split(r"\.\s(?=[A-Z])|\n", resp)
        indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
        keys = []
        for i, sub in enumerate(subs):
            if i == len(subs) - 1:
                indicators.append("=")
            shortest = None
            for ind in indicators:
                if ind in sub:
                    tail = sub.split(ind)[-1].strip()
                    if not shortest or len(tail) < len(shortest):  # as official: "" counts as unset
                        shortest = tail
            if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
                keys.append(shortest)
        return keys or [resp]

    keys = key_subresponses(response)
    preds = list(keys)
    for k in keys:
        preds += extract_numbers(k)
    out = []
    for p in preds:
        out += normalize_str(p)
    return list(dict.fromkeys(out))


def eval_open(gold, preds: list) -> bool:
    golds = []
    for g in gold if isinstance(gold, list) else [gold]:
        golds += normalize_str(str(g))
    for p in preds:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in golds):
                return True
        elif p in golds:
            return True
    return False


# ---------------------------------------------------------------- the task
def _literal(value):
    """MMMU stores lists as Python-literal strings ("['a', 'b']")."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


class MMMU(Task):
    name, title = "mmmu", "MMMU(Val)"
    prefer_files = "validation"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        rows = read_rows(path, prefer=self.prefer_files)
        need(rows, ("id", "question", "options", "answer"), "MMMU")
        items = []
        for r in rows:
            options = _literal(r["options"]) or []
            qtype = r.get("question_type") or ("multiple-choice" if options else "open")
            images = [b for k in range(1, MAX_IMAGES + 1) if (b := image_bytes(r.get(f"image_{k}")))]
            subject = re.sub(r"^(validation|dev|test)_|_\d+$", "", r["id"])
            groups = {"subject": subject}
            if r.get("topic_difficulty"):
                groups["difficulty"] = r["topic_difficulty"]
            items.append(Item(id=r["id"], question=r["question"], answer=_literal(r["answer"]), images=images,
                              choices=[str(o) for o in options] if qtype == "multiple-choice" else None,
                              groups=groups, info={"question_type": qtype}))
        return items

    def prompt(self, item: Item) -> str:
        if item.choices:
            opts = "".join(f"{chr(65 + i)}. {c}\n" for i, c in enumerate(item.choices))
            return (f"{item.question}\n{opts}Answer with the option's letter from the given choices, "
                    f"and {BOXED_HINT}.")
        return f"{item.question}\nAnswer the question with a single word or phrase, and {BOXED_HINT}."

    def rules(self, item, text, *, boxed, verifier):
        if item.choices:
            letters = [chr(65 + i) for i in range(len(item.choices))]
            rng = random.Random(f"mmmu:{item.id}")
            letter, guessed = parse_multi_choice(text, letters, dict(zip(letters, item.choices)), rng)
            golds = item.answer if isinstance(item.answer, list) else [item.answer]
            return letter in golds, letter, "guess" if guessed else ""
        preds = parse_open(text)
        return eval_open(item.answer, preds), "; ".join(map(str, preds)), ""
