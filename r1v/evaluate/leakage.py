"""`r1v eval leakage`: which benchmark questions appear in a training set (n-gram overlap).

    r1v eval leakage --train distilled.jsonl --bench mathvista --data testmini.parquet

The Skywork-13B report's concern: a distilled or scraped training set may hold test items.
Text is normalised (lower case, LaTeX commands and punctuation dropped, `<image>`
placeholders removed, whitespace collapsed) and cut into word n-grams (default n = 8). A
question shorter than n words is flagged only when a training example is exactly it: short
questions such as "What is x?" occur everywhere without being leaks. A benchmark item is flagged when at least
`threshold` of its n-grams occur in the training text; the report lists each flagged item
with its overlap and the first training line that shares an n-gram with it.

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
        return [" ".join(_strings(row)) for row in read_rows(path)]
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise R1VError(f"{path} is not UTF-8 text") from None


def check(items, texts: list[str], *, n: int = 8, threshold: float = 0.5) -> list[dict]:
    """Flagged items: [{id, overlap, question, train_line}], most overlapping first."""
    if n < 1 or not 0 < threshold <= 1:
        raise R1VError("need n >= 1 and 0 < threshold <= 1")
    index: dict[tuple[str, ...], int] = {}
    short: dict[tuple[str, ...], int] = {}  # whole short lines, for questions shorter than n
    for line_no, text in enumerate(texts):
        words = normalise(text)
        for g in ngrams(words, n):
            index.setdefault(g, line_no)
        if len(words) < n:
            short.setdefault(tuple(words), line_no)
    flagged = []
    for it in items:
        words = normalise(it.question)
        grams = ngrams(words, n)
        if not grams:
            continue
        if len(words) < n:  # a short question ("What is x?") leaks only as a whole training example
            hit = short.get(tuple(words))
            overlap, first = (1.0, hit) if hit is not None else (0.0, None)
        else:
            hits = [index[g] for g in grams if g in index]
            overlap, first = len(hits) / len(grams), (min(hits) if hits else None)
        if overlap >= threshold:
            flagged.append({"id": it.id, "overlap": round(overlap, 3), "question": it.question[:200],
                            "train_line": first + 1})
    return sorted(flagged, key=lambda f: -f["overlap"])


def write(flagged: list[dict], out: str | Path, meta: dict) -> None:
    if Path(out).is_dir():
        raise R1VError(f"--out {out} is a directory; name a file")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({**meta, "flagged": flagged}, indent=2, ensure_ascii=False), encoding="utf-8")
