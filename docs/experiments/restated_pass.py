"""Take out, or put in, the second pass of the mini-world's SFT chains: the test behind "Why it loses: one
pass where P = 1 has two" (docs/mini-world-r1v2.md, "AL-CoTD on the mini-world", LM set 5).

LM set 5's reasoning LM restates its work verbatim after a first pass (`X X</think>`), and a repetition
penalty of 1.14 or more stops it doing so; so AL-CoTD's chains are one pass on 3,775 of its 4,000 problems,
P = 1's two on 3,944. This script rewrites an SFT file's `response` and `reference` so that only that
differs between two arms:

    python3 docs/experiments/restated_pass.py first  runs/tiny/distill-compare/fixed-p1/sft.jsonl first.jsonl
    python3 docs/experiments/restated_pass.py double runs/tiny/distill-compare/al-cotd/sft.jsonl double.jsonl
    r1v recipe run recipes/tiny.yaml seed=1 name=x-first-s1 data.sft=$PWD/first.jsonl "stages=[align,transfer,sft]"

`first` keeps a restated chain's first pass (`X X</think>A` -> `X</think>A`); `double` restates every
one-pass chain (`X</think>A` -> `X X</think>A`). Other rows and fields are copied unchanged. Standard
library only; it reads and writes one row at a time.
"""

from __future__ import annotations

import json
import sys

CLOSE = "</think>"


def passes(body: str) -> tuple[str, bool]:
    """The chain's first pass, and whether the chain is that pass written twice (whitespace aside)."""
    s = body.strip()
    half = len(s) // 2
    first, second = s[:half].strip(), s[half:].strip()
    return (first, True) if first and first == second else (s, False)


def rewrite(text: str, mode: str) -> str:
    body, close, tail = text.partition(CLOSE)
    if not close or not body.strip():
        return text
    first, restated = passes(body)
    if mode == "first" and restated:
        return f" {first}{close}{tail}"
    if mode == "double" and not restated:
        return f" {first} {first}{close}{tail}"
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("first", "double"):
        print("usage: restated_pass.py first|double IN.jsonl OUT.jsonl", file=sys.stderr)
        return 2
    mode, src, dst = argv
    n = changed = 0
    with open(src) as f, open(dst, "w") as g:
        for line in f:
            row = json.loads(line)
            n += 1
            for key in ("response", "reference"):
                if row.get(key):
                    new = rewrite(row[key], mode)
                    changed += key == "response" and new != row[key]
                    row[key] = new
            g.write(json.dumps(row) + "\n")
    print(f"{mode}: {changed} of {n} responses rewritten -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
