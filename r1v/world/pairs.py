"""The mini-world's preference pairs for the reward model (`r1v world data` writes them).

For every problem the right chain (the reference, in the reasoning LM's R1 format) is *chosen*,
against three kinds of *rejected* response, one pair of each:

* `wrong_answer`: the chain's last computation slips (its result, and so the answer, is off);
* `false_fact`: the chain states a fact the picture contradicts (a count, a bar, the hour, a
  digit of the expression) and computes on from it consistently, so only the picture can tell;
* `format`: the right work, but the R1 template broken (no `</think>`, no `\\boxed{}`, or the
  reasoning after an empty think block).

    pairs = preference_pairs(rows, random.Random(0))   # rows: the world's problem rows

Pure functions of the rows and the RNG; `tests/test_world.py` checks each kind is what it says
(the false fact is one the world's own `false_facts` finds; the right chain has none).
"""

from __future__ import annotations

import random
import re

from r1v.evaluate.tasks.world import gold_text, prompt
from r1v.world.data import target

KINDS = ("wrong_answer", "false_fact", "format")
FACT = re.compile(r"^(.*?)(-?\d+)$")
EQ = re.compile(r"^(-?\d+) ([+-]) (-?\d+) = (-?\d+)$")


def r1(reasoning: str, answer: str) -> str:
    """The reasoning LM's target: what follows the template's `<think>\\n`."""
    return f" {reasoning}</think>\n\\boxed{{{answer}}}"


def _parse(reasoning: str) -> list[list]:
    """Sentences as [kind, ...]: ["eq", a, op, b, c], ["fact", text, v], ["text", s]."""
    out = []
    for s in (x.strip() for x in reasoning.split(".")):
        if not s:
            continue
        if m := EQ.match(s):
            out.append(["eq", int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))])
        elif m := FACT.match(s):
            out.append(["fact", m.group(1), int(m.group(2))])
        else:
            out.append(["text", s])
    return out


def _render(parts: list[list]) -> str:
    words = []
    for p in parts:
        if p[0] == "eq":
            words.append(f"{p[1]} {p[2]} {p[3]} = {p[4]}.")
        elif p[0] == "fact":
            words.append(f"{p[1]}{p[2]}.")
        else:
            words.append(f"{p[1]}.")
    return " ".join(words)


def _recompute(parts: list[list]) -> str:
    """Each computation redone on the (changed) facts: equation e reads the first fact (e = 0) or
    the last result, and fact e + 1 or its own literal (the world's chains are such folds). Returns
    the value the chain now boxes."""
    facts = [p for p in parts if p[0] == "fact"]
    eqs = [p for p in parts if p[0] == "eq"]
    result = None
    for e, q in enumerate(eqs):
        if e == 0 and facts:
            q[1] = facts[0][2]
        elif e > 0:
            q[1] = result
        if e + 1 < len(facts):
            q[3] = facts[e + 1][2]
        q[4] = q[1] + q[3] if q[2] == "+" else q[1] - q[3]
        result = q[4]
    if result is None:
        result = facts[-1][2] if facts else 0
    return str(result)


def wrong_answer(row: dict, rng: random.Random) -> str:
    """The last computation slips: its result, and so the boxed value, is off by 1 or 2 (also for
    multiple choice, whose box holds the value; it may or may not be another option's)."""
    parts = _parse(row["reasoning"])
    eqs = [p for p in parts if p[0] == "eq"]
    if eqs:
        eqs[-1][4] += rng.choice([v for v in (-2, -1, 1, 2) if eqs[-1][4] + v >= 0])
        return r1(_render(parts), str(eqs[-1][4]))
    return r1(row["reasoning"], str(int(row["value"]) + 1))


def false_fact(row: dict, rng: random.Random) -> str:
    parts = _parse(row["reasoning"])
    facts = [p for p in parts if p[0] == "fact"]
    if facts:
        f = rng.choice(facts)
        top = 12 if f[1].startswith("clock") else 8
        lowest = 0 if f[1].endswith("s ") else 1  # a count may be 0; a bar or an hour may not
        f[2] = rng.choice([v for v in range(lowest, top + 1) if v != f[2]])
    else:  # the expression: a digit misread (the first computation's second operand), computed on
        q = next(p for p in parts if p[0] == "eq")
        q[3] = rng.choice([v for v in range(1, 10) if v != q[3]])
        q[4] = q[1] + q[3] if q[2] == "+" else q[1] - q[3]
        return _expr_on(parts, q)
    answer = _recompute(parts)
    return r1(_render(parts), answer)


def _expr_on(parts: list[list], changed: list) -> str:
    eqs = [p for p in parts if p[0] == "eq"]
    result = changed[4]
    for q in eqs[eqs.index(changed) + 1 :]:
        q[1] = result
        q[4] = q[1] + q[3] if q[2] == "+" else q[1] - q[3]
        result = q[4]
    return r1(_render(parts), str(result))


def broken_format(row: dict, rng: random.Random) -> str:
    reasoning, answer = row["reasoning"], gold_text(row["answer"], row.get("choices"))
    return rng.choice([f" {reasoning}\n\\boxed{{{answer}}}",            # no </think>
                       f" {reasoning}</think>\nThe answer is {answer}.",   # no \boxed{}
                       f"</think>\n{reasoning}\n\\boxed{{{answer}}}"])     # reasoning outside the think block


MAKERS = {"wrong_answer": wrong_answer, "false_fact": false_fact, "format": broken_format}


def preference_pairs(rows: list[dict], rng: random.Random, kinds=KINDS) -> list[dict]:
    """One pair of each kind per problem row (rows with an image; their `image` path is kept)."""
    out = []
    for r in rows:
        chosen = target(r, "reasoning")
        for kind in kinds:
            rejected = MAKERS[kind](r, rng)
            if rejected == chosen:
                continue
            out.append({"id": f"{r['id']}-{kind}", "prompt": prompt(r["question"], r.get("choices")),
                        "image": r.get("image"), "chosen": chosen, "rejected": rejected, "kind": kind,
                        "family": r["family"]})
    return out
