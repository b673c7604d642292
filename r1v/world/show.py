"""A contact sheet of mini-world problems: the picture, the question, the chain of thought, the answer.

    r1v world show [--world DIR] [--split test] [--n 8] [--out world.png]
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from r1v.io import read_jsonl
from r1v.world.data import from_row, stream, to_row
from r1v.world.scenes import FAMILIES, draw

TILE, SCALE = 300, 2  # one problem per 300 px column; pictures drawn at twice their size


def _rows(data: Path | None, split: str, n: int) -> list[dict]:
    """n rows, families in turn: from the built world's files, else generated on the fly."""
    if data is not None:
        rows = read_jsonl(data / f"visual-{split}.jsonl")
        by_family = {f: [r for r in rows if r["family"] == f] for f in FAMILIES}
        picked = []
        for i in range(n):
            pool = by_family[FAMILIES[i % len(FAMILIES)]]
            if i // len(FAMILIES) < len(pool):
                picked.append(pool[i // len(FAMILIES)])
        return picked
    return [to_row(p, rid=f"{p.family}-{split}-{k}", split=split, image=None)
            for k, p in zip(range(n), stream(split, seed="show", unique=True))]


def contact_sheet(data: Path | None, split: str, n: int, out: Path) -> Path:
    rows = _rows(data, split, n)
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    height = 470
    sheet = Image.new("RGB", (cols * TILE, nrows * height), "white")
    d = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        x, y = (i % cols) * TILE, (i // cols) * height
        if data is not None and r.get("image"):
            pic = Image.open(data / r["image"]).convert("RGB")
        else:
            pic = draw(from_row(r))
        pic = pic.resize((pic.width * SCALE, pic.height * SCALE), Image.NEAREST)
        sheet.paste(pic, (x + (TILE - pic.width) // 2, y + 8))
        q = r["question"] + (" Choices: " + " ".join(f"({L}) {c}" for L, c in zip("ABCD", r["choices"]))
                             if r.get("choices") else "")
        black, grey = (0, 0, 0), (110, 110, 110)
        blocks = [([f"{r['id']}  (level {r['level']}, {r['steps']} steps)"], black),
                  (textwrap.wrap("Q: " + q, 44), black),
                  (textwrap.wrap("<think> " + r["reasoning"] + " </think>", 44), grey),  # reasoning dimmed
                  ([f"answer: {r['answer']}"], black)]
        ty = y + 8 + pic.height + 8
        for lines, colour in blocks:
            for line in lines:
                d.text((x + 10, ty), line, fill=colour)
                ty += 13
            ty += 13
        d.rectangle((x, y, x + TILE - 1, y + height - 1), outline=(200, 200, 200))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
