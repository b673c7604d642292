"""`r1v eval leakage`: which benchmark questions appear in a training set (n-gram overlap).

    r1v eval leakage --train distilled.jsonl --bench mathvista --data testmini.parquet

The Skywork-13B report's concern: a distilled or scraped training set may hold test items.
Text is normalised (lower case, LaTeX commands and punctuation dropped, `<image>`
placeholders removed, whitespace collapsed). Two tests, and an item is flagged by either:
* containment, for questions shorter than n words: the whole question, as a run of words, inside
  one training example (a MATH-500 problem of four words copied into a row with its solution);
* n-gram share, for the others: at least `threshold` of the question's word n-grams (default
  n = 8) occur in the training text (a question copied whole has them all: overlap 1.0).
The report lists each flagged item with how it matched, its overlap and the first training line
that matched. A short question can be contained by coincidence ("what is 2 2"); the report keeps its
word count so such hits can be read with that in mind.

Training files: JSONL (every string value of each row is read, nested messages included),
parquet, csv, or plain text (one example per line).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.data import read_rows

_LATEX = re.compile(r"\\[a-zA-Z]+")
_PLACEHOLDER = re.compile(r"<image(?: \d+)?>")
_NON_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> list[str]:
    text = _PLACEHOLDER.sub(" ", text.lower())
    text = _LATEX.sub(" ", text)
    return _NON_WORD.sub(" ", text).split()


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def training_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise R1VError(f"training file not found: {path}")
    if path.suffix in (".jsonl", ".json", ".parquet", ".csv"):
        rows = []
        for row in read_rows(path):  # a line that is a JSON array holds several examples, not one
            rows += row if isinstance(row, list) else [row]
        return [" ".join(_strings(row)) for row in rows]
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise R1VError(f"{path} is not UTF-8 text") from None


def check(items, texts: list[str], *, n: int = 8, threshold: float = 0.5) -> list[dict]:
    """Flagged items: [{id, match, overlap, words, question, train_line}], most overlapping first."""
    if n < 1 or not 0 < threshold <= 1:
        raise R1VError("need n >= 1 and 0 < threshold <= 1")
    questions = {}
    for it in items:
        words = normalise(it.question)
        if words:
            questions[it.id] = (it, words)
    # Containment of questions shorter than n: their word runs, looked up by length in each example
    # (a question of n words or more is contained exactly when all its n-grams sit in one example).
    short = {}
    for _, words in questions.values():
        if len(words) < n:
            short.setdefault(len(words), set()).add(tuple(words))
    index: dict[tuple[str, ...], int] = {}
    contained: dict[tuple[str, ...], int] = {}
    for line_no, text in enumerate(texts):
        words = normalise(text)
        for g in (ngrams(words, n) if len(words) >= n else ()):
            index.setdefault(g, line_no)
        for length, targets in short.items():
            for i in range(len(words) - length + 1):
                run = tuple(words[i:i + length])
                if run in targets:
                    contained.setdefault(run, line_no)
    flagged = []
    for qid, (it, words) in questions.items():
        match, first, overlap = None, None, 0.0
        if len(words) < n:
            first = contained.get(tuple(words))
            match, overlap = ("contained", 1.0) if first is not None else (None, 0.0)
        else:
            grams = ngrams(words, n)
            hits = [index[g] for g in grams if g in index]
            overlap = len(hits) / len(grams)
            if overlap >= threshold:  # a long question contained in a row has all its n-grams there: 1.0
                match, first = "ngrams", min(hits)
        if match:
            flagged.append({"id": qid, "match": match, "overlap": round(overlap, 3), "words": len(words),
                            "question": it.question[:200], "train_line": first + 1})
    return sorted(flagged, key=lambda f: (-f["overlap"], str(f["id"])))


def write(flagged: list[dict], out: str | Path, meta: dict) -> None:
    if Path(out).is_dir():
        raise R1VError(f"--out {out} is a directory; name a file")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({**meta, "flagged": flagged}, indent=2, ensure_ascii=False), encoding="utf-8")
