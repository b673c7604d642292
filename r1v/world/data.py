"""The mini-world's data sets: disjoint splits, rows in the evaluation harness's format, targets.

A problem's split is a hash of its content (family, scene, question, multiple choice or not;
never the drawing's jitter), so train / val / test are disjoint by construction, across the
visual and the text-only problems alike: a scene asked about in the test split is never stated
in words in the training split. Shares: 80 / 10 / 10 of the space of problems.

Rows are JSON lines that `r1v eval run --bench world` reads (`r1v/evaluate/tasks/world.py`):

    {"id": "bars-test-00012", "family": "bars", "level": 2, "steps": 3, "split": "test",
     "image": "images/test/bars-test-00012.png",        # null for text-only rows
     "context": null,                                     # the scene in words, for text-only rows
     "question": "...", "choices": null, "answer": "5", "value": 5,
     "reasoning": "tallest green 7. shortest red 2. 7 - 2 = 5.", "scene": {...}}

Training targets (what follows the template's opening `<think>\\n`):
    reasoning LM:  " {reasoning}</think>\\n\\boxed{value}"
    substitute LM: "</think>\\n{reasoning}\\n\\boxed{value}"   (an instruct model: no think block, the
                   work stated briefly in the answer, as Qwen2.5-Instruct answers)
The box holds the value, also for multiple choice (the gold option's text; the task maps it to its
letter).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from r1v.evaluate.tasks.world import gold_text
from r1v.io import write_jsonl
from r1v.world.scenes import FAMILIES, Problem, describe, draw, make_problem

SPLITS = ("train", "val", "test")
SHARES = {"train": range(0, 80), "val": range(80, 90), "test": range(90, 100)}
STYLES = ("reasoning", "instruct")


def split_of(p: Problem) -> str:
    h = int(hashlib.sha256(json.dumps(p.key(), sort_keys=True).encode()).hexdigest()[:8], 16) % 100
    return next(s for s, r in SHARES.items() if h in r)


def stream(split: str, *, seed: int | str, families=FAMILIES, unique: bool = False) -> Iterator[Problem]:
    """Problems of `split`, families in turn, forever (or until `unique` ones run out).

    `unique`: never the same problem twice (test sets). Small families (a clock has 12 hours)
    run out first; the stream then goes on with the others."""
    seen: set[str] = set()
    live = list(families)
    i = 0
    while live:
        fam = live[i % len(live)]
        i += 1
        for attempt in range(400):
            p = make_problem(fam, f"{seed}:{i}:{attempt}")
            if split_of(p) != split:
                continue
            if unique:
                k = json.dumps(p.key(), sort_keys=True)
                if k in seen:
                    continue
                seen.add(k)
            yield p
            break
        else:
            live.remove(fam)


def target(p: Problem | dict, style: str) -> str:
    """The completion after `<think>\\n` that a model of `style` is trained to write."""
    reasoning, answer, choices = ((p.reasoning, p.answer, p.choices) if isinstance(p, Problem)
                                  else (p["reasoning"], p["answer"], p.get("choices")))
    answer = gold_text(answer, choices)
    if style == "reasoning":
        # The leading space makes the chain's first word the same token (" red") as everywhere else
        # in the prompt; right after "<think>\n" it would otherwise be a rare variant ("red").
        return f" {reasoning}</think>\n\\boxed{{{answer}}}"
    if style == "instruct":
        return f"</think>\n{reasoning}\n\\boxed{{{answer}}}"
    raise ValueError(f"unknown style {style!r}; choose from {STYLES}")


def to_row(p: Problem, *, rid: str, split: str, image: str | None) -> dict:
    return {
        "id": rid, "family": p.family, "level": p.level, "steps": p.steps, "split": split, "image": image,
        "context": None if image else describe(p), "question": p.question, "choices": p.choices,
        "answer": p.answer, "value": p.value, "reasoning": p.reasoning, "scene": p.scene, "jitter": p.jitter,
    }


def from_row(row: dict) -> Problem:
    """The problem a row was written from (to redraw its picture or rebuild its targets)."""
    return Problem(row["family"], row["scene"], row["question"], [row["reasoning"]], row["value"],
                   row["level"], row["steps"], row["choices"], row["answer"], row["jitter"])


def write_split(out: Path, split: str, *, visual: int, text: int, seed: int) -> dict[str, Path]:
    """Write `{out}/visual-{split}.jsonl` (with PNGs under `images/{split}/`) and `text-{split}.jsonl`."""
    out.mkdir(parents=True, exist_ok=True)
    unique = split != "train"
    files = {}
    for modality, n in (("visual", visual), ("text", text)):
        rows = []
        if modality == "visual":
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for k, p in zip(range(n), stream(split, seed=f"{modality}:{seed}", unique=unique)):
            rid = f"{p.family}-{split}-{k:05d}" if modality == "visual" else f"{p.family}-text-{split}-{k:05d}"
            image = None
            if modality == "visual":
                image = f"images/{split}/{rid}.png"
                draw(p).save(out / image, optimize=False)
            rows.append(to_row(p, rid=rid, split=split, image=image))
        files[modality] = out / f"{modality}-{split}.jsonl"
        write_jsonl(files[modality], rows)
    return files


