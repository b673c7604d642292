"""The mini-world's visual reasoning tasks: scenes drawn with PIL from a seed, with exact answers.

Four families, each needing the image *and* several reasoning steps:

* shapes: 2-8 coloured circles, squares and triangles on a 4x4 grid.
  "How many red shapes and blue shapes are there in total?" -> "red shapes 3. blue shapes 2. 3 + 2 = 5."
* bars: a chart of four coloured bars, heights 1-8.
  "How much taller is the tallest bar than the shortest bar?" -> "tallest green 7. shortest red 2. 7 - 2 = 5."
* expr: an arithmetic expression in seven-segment digits.
  "What is the value of the expression?" -> "3 + 5 = 8. 8 - 2 = 6."
* clock: a clock face whose short hand shows the hour.
  "What hour will the clock show 5 hours later?" -> "clock 9. 9 + 5 = 14. 14 - 12 = 2."

A `Problem` holds the scene as plain data (`scene`), the question, the chain of thought (`cot`),
the answer and its difficulty (`level` 1-3: objects and operations; `steps`: the computations in
the chain: counts, comparisons, arithmetic; reading a number is not a step). With `choices` it is
multiple choice: the answer is a letter, and the chain ends on the value, which the model boxes
(the option's text, as MathVista scores it). `describe(problem)` states the scene in words: the
text-only problem of the same kind.

Layout: 112 px images on a 4x4 grid of 28 px cells. With the mini-world vision encoder (patch 14)
and R1V's pixel shuffle (0.5), one visual token covers exactly one cell, so what a question needs
(an object, a digit, a bar's column) sits in known tokens.

    python -m r1v.world.scenes [--family bars] [--seed 3]   # prints a problem and saves its image
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from r1v.evaluate.tasks.world import LETTERS, prompt  # the world task owns its prompt

FAMILIES = ("shapes", "bars", "expr", "clock")
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
RGB = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 190, 20)}
GLYPHS = "0123456789+-"
IMAGE_SIZE, GRID = 112, 4
CELL = IMAGE_SIZE // GRID
MAX_BAR = 8


@dataclass
class Problem:
    family: str
    scene: dict  # what the picture shows, as data (drawing adds only jitter)
    question: str
    cot: list[str]  # the reasoning, one sentence per step
    value: int  # the numeric answer
    level: int
    steps: int
    choices: list[str] | None = None
    answer: str = ""  # the gold as the scorer sees it: the value, or the letter of a choice
    jitter: int = 0  # seed of the drawing's random placement

    def __post_init__(self):
        if not self.answer:
            self.answer = str(self.value)

    def prompt(self, *, text_only: bool = False) -> str:
        """What the model reads (the picture goes in front as `<image>`; text-only problems state it)."""
        return prompt(self.question, self.choices, describe(self) if text_only else None)

    @property
    def reasoning(self) -> str:
        return " ".join(self.cot)

    def key(self) -> dict:
        """What makes two problems the same (the drawing's jitter does not)."""
        return {"family": self.family, "scene": self.scene, "question": self.question, "mc": bool(self.choices)}


# --------------------------------------------------------------------------- families
def _op(a: int, sign: str, b: int) -> tuple[int, str]:
    r = a + b if sign == "+" else a - b
    # Spaced, so every number is the same token (" 5") wherever it appears.
    return r, f"{a} {sign} {b} = {r}."


def _category_name(colour: str | None, shape: str | None) -> str:
    if colour and shape:
        return f"{colour} {shape}s"
    return f"{colour} shapes" if colour else f"{shape}s"


def _count(objects: list[dict], colour: str | None, shape: str | None) -> int:
    return sum((colour is None or o["colour"] == colour) and (shape is None or o["shape"] == shape) for o in objects)


def _shapes(rng: random.Random, level: int) -> Problem:
    n = rng.randint(2, 4) if level == 1 else rng.randint(4, 8)
    cells = rng.sample(range(GRID * GRID), n)
    objects = [{"cell": c, "colour": rng.choice(COLOURS), "shape": rng.choice(SHAPES)} for c in sorted(cells)]
    terms = 3 if level == 3 else 2
    # Count by colour or by shape, never both in one question, so the groups never overlap
    # and the counts add up honestly.
    if rng.random() < 0.5:
        cats = [(c, None) for c in rng.sample(COLOURS, terms)]
    else:
        cats = [(None, s) for s in rng.sample(SHAPES, terms)]
    counts = [_count(objects, *c) for c in cats]
    names = [_category_name(*c) for c in cats]
    kind = "sum" if terms == 2 and rng.random() < 0.5 else ("diff" if terms == 2 else "sum-diff")
    if kind == "diff" and counts[0] < counts[1]:
        cats, counts, names = cats[::-1], counts[::-1], names[::-1]
    if kind == "sum-diff" and counts[0] + counts[1] < counts[2]:
        kind = "sum3"
    cot = [f"{nm} {k}." for nm, k in zip(names, counts)]
    if kind == "sum":
        q = f"How many {names[0]} and {names[1]} are there in total?"
        value, line = _op(counts[0], "+", counts[1])
        cot.append(line)
    elif kind == "diff":
        q = f"How many more {names[0]} than {names[1]} are there?"
        value, line = _op(counts[0], "-", counts[1])
        cot.append(line)
    else:
        s, line = _op(counts[0], "+", counts[1])
        cot.append(line)
        if kind == "sum-diff":
            q = f"How many {names[0]} and {names[1]} are there, minus the {names[2]}?"
            value, line = _op(s, "-", counts[2])
        else:
            q = f"How many {names[0]}, {names[1]} and {names[2]} are there in total?"
            value, line = _op(s, "+", counts[2])
        cot.append(line)
    return Problem("shapes", {"objects": objects}, q, cot, value, level, steps=len(cot))


def _ties(values: list[int]) -> bool:
    v = sorted(values)
    return v[-1] == v[-2] or v[0] == v[1]


def _bars(rng: random.Random, level: int) -> Problem:
    colours = rng.sample(COLOURS, 4)
    values = [rng.randint(1, MAX_BAR) for _ in colours]
    bars = [{"colour": c, "value": v} for c, v in zip(colours, values)]
    of = dict(zip(colours, values))
    if level == 1:
        a, b = rng.sample(colours, 2)
        q = f"What is the {a} bar plus the {b} bar?"
        value, line = _op(of[a], "+", of[b])
        cot = [f"{a} {of[a]}.", f"{b} {of[b]}.", line]
        return Problem("bars", {"bars": bars}, q, cot, value, level, steps=1)
    if level == 3:
        q = "What is the sum of all the bars?"
        cot = [f"{c} {of[c]}." for c in colours]
        s = values[0]
        for v in values[1:]:
            s, line = _op(s, "+", v)
            cot.append(line)
        return Problem("bars", {"bars": bars}, q, cot, s, level, steps=3)
    if rng.random() < 0.5:
        while _ties(values):  # one tallest and one shortest bar
            values = [rng.randint(1, MAX_BAR) for _ in colours]
        bars = [{"colour": c, "value": v} for c, v in zip(colours, values)]
        hi, lo = colours[values.index(max(values))], colours[values.index(min(values))]
        q = "How much taller is the tallest bar than the shortest bar?"
        value, line = _op(max(values), "-", min(values))
        cot = [f"tallest {hi} {max(values)}.", f"shortest {lo} {min(values)}.", line]
        return Problem("bars", {"bars": bars}, q, cot, value, level, steps=3)
    a, b, c = rng.sample(colours, 3)
    if of[a] + of[b] < of[c]:
        a, c = c, a
    q = f"What is the {a} bar plus the {b} bar minus the {c} bar?"
    s, l1 = _op(of[a], "+", of[b])
    value, l2 = _op(s, "-", of[c])
    cot = [f"{a} {of[a]}.", f"{b} {of[b]}.", f"{c} {of[c]}.", l1, l2]
    return Problem("bars", {"bars": bars}, q, cot, value, level, steps=2)


def _expr(rng: random.Random, level: int) -> Problem:
    # Left to right, every partial result in 0..30, so no negative numbers appear anywhere.
    while True:
        nums = [rng.randint(1, 9) for _ in range(level + 1)]
        signs = [rng.choice("+-") for _ in range(level)]
        acc, cot, ok = nums[0], [], True
        for sign, n in zip(signs, nums[1:]):
            acc, line = _op(acc, sign, n)
            cot.append(line)
            ok &= 0 <= acc <= 30
        if ok:
            break
    text = str(nums[0]) + "".join(s + str(n) for s, n in zip(signs, nums[1:]))
    return Problem("expr", {"expression": text}, "What is the value of the expression?", cot, acc, level,
                   steps=level)


def _shift(h: int, sign: str, k: int, cot: list[str]) -> int:
    """Move a 12-hour clock by k hours, writing each step (and the wrap) into `cot`."""
    if sign == "-" and h - k < 1:
        h, line = _op(h, "+", 12)
        cot.append(line)
    r, line = _op(h, sign, k)
    cot.append(line)
    if r > 12:
        r, line = _op(r, "-", 12)
        cot.append(line)
    return r


def _hours(k: int, more: str = "") -> str:
    return f"{k} {more}hour" + ("s" if k != 1 else "")


def _clock(rng: random.Random, level: int) -> Problem:
    hour = rng.randint(1, 12)
    cot = [f"clock {hour}."]
    k = rng.randint(1, 11)
    if level == 1:
        q = f"What hour will the clock show {_hours(k)} later?"
        value = _shift(hour, "+", k, cot)
    elif level == 2:
        q = f"What hour did the clock show {_hours(k)} earlier?"
        value = _shift(hour, "-", k, cot)
    else:
        m = rng.randint(1, 11)
        q = f"What hour will the clock show {_hours(k)} later and then {_hours(m, 'more ')} later?"
        value = _shift(_shift(hour, "+", k, cot), "+", m, cot)
    return Problem("clock", {"hour": hour}, q, cot, value, level, steps=len(cot) - 1)


MAKERS = {"shapes": _shapes, "bars": _bars, "expr": _expr, "clock": _clock}


def make_problem(family: str, seed: int | str, *, level: int | None = None, mc: bool | None = None) -> Problem:
    """A problem of `family`, fully determined by `seed` (and the optional level / mc)."""
    rng = random.Random(f"{family}:{seed}")
    level = level or rng.choice((1, 2, 2, 3))  # most problems need two steps or more
    p = MAKERS[family](rng, level)
    if mc if mc is not None else rng.random() < 0.25:
        _add_choices(p, rng)
    p.jitter = rng.randrange(2**31)
    return p


def _add_choices(p: Problem, rng: random.Random) -> None:
    lo, hi = (1, 12) if p.family == "clock" else (0, max(p.value + 4, 8))
    wrong = rng.sample([v for v in range(lo, hi + 1) if v != p.value], 3)
    options = [p.value, *wrong]
    rng.shuffle(options)
    p.choices = [str(v) for v in options]
    p.answer = LETTERS[options.index(p.value)]
    # The chain ends on the value and the model boxes it (the option's text; the task scores text
    # or letter). A closing "8 is (A)." look-up was measured: the world's LMs then said "(A)" to
    # nearly every question (`r1v/evaluate/tasks/world.py`, `choice_rules`).


# --------------------------------------------------------------------------- words
def describe(p: Problem) -> str:
    """The scene in words: what the text-only problem states instead of showing a picture."""
    s = p.scene
    if p.family == "shapes":
        return "Objects: " + ", ".join(f"{o['colour']} {o['shape']}" for o in s["objects"]) + "."
    if p.family == "bars":
        return "Bars: " + ", ".join(f"{b['colour']} {b['value']}" for b in s["bars"]) + "."
    if p.family == "expr":
        return "Expression: " + " ".join(s["expression"]) + "."
    return f"The clock shows {s['hour']}."


# --------------------------------------------------------------------------- the picture, one word per cell
# The scene as the picture lays it out: one word per grid cell, so one word per visual token. The
# LMs read problems stated this way too (besides in words), so their vocabulary has a word for
# every cell a picture can hold: the mini-world's stand-in for the visual descriptions a real LLM
# has read. Each word is a single token (added to the tokenizer), and the projector's job is then
# what R1V asks of it: turn each visual token into something the frozen LLM can read.
EMPTY = "<.>"
PICTURE_WORDS = (
    [EMPTY] + [f"<{c}-{sh}>" for c in COLOURS for sh in SHAPES]
    + [f"<{c}-bar{h}>" for c in COLOURS for h in range(1, MAX_BAR + 1)]
    + [f"<g{g}>" for g in GLYPHS] + [f"<h{h}>" for h in range(1, 13)]
)


def cell_words(p: Problem) -> list[str]:
    """The word of each grid cell, raster order. What each cell shows is what the vision encoder is
    pretrained to see there (`r1v/world/vit.py: cell_targets`): a bar's colour and height fill its
    whole column; a clock's hour, every cell."""
    words = [EMPTY] * (GRID * GRID)
    s = p.scene
    if p.family == "shapes":
        for o in s["objects"]:
            words[o["cell"]] = f"<{o['colour']}-{o['shape']}>"
    elif p.family == "bars":
        for col, b in enumerate(s["bars"]):
            for row in range(GRID):
                words[row * GRID + col] = f"<{b['colour']}-bar{b['value']}>"
    elif p.family == "expr":
        for i, ch in enumerate(s["expression"]):
            words[GRID + i] = f"<g{ch}>"
    else:
        words = [f"<h{s['hour']}>"] * (GRID * GRID)
    return words


def picture(p: Problem, order: list[int]) -> str:
    """"Picture: <.><red-circle>...": the cell words in visual-token order (`order[k]` is the cell
    of token k: R1V's pixel shuffle reorders the grid; see vit.token_cells)."""
    words = cell_words(p)
    return "Picture: " + "".join(words[c] for c in order)


# --------------------------------------------------------------------------- drawing
def draw(p: Problem) -> Image.Image:
    """The picture of `p.scene` (112x112 RGB), placement jittered by `p.jitter`."""
    rng = random.Random(p.jitter)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    d = ImageDraw.Draw(img)
    {"shapes": _draw_shapes, "bars": _draw_bars, "expr": _draw_expr, "clock": _draw_clock}[p.family](d, p.scene, rng)
    return img


def _tint(colour: str, rng: random.Random) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in RGB[colour])


def _cell_origin(cell: int) -> tuple[int, int]:
    return (cell % GRID) * CELL, (cell // GRID) * CELL


def _draw_shapes(d: ImageDraw.ImageDraw, scene: dict, rng: random.Random) -> None:
    for o in scene["objects"]:
        x0, y0 = _cell_origin(o["cell"])
        size = rng.randint(14, 22)
        x = x0 + rng.randint(2, CELL - size - 2)
        y = y0 + rng.randint(2, CELL - size - 2)
        fill = _tint(o["colour"], rng)
        if o["shape"] == "circle":
            d.ellipse((x, y, x + size, y + size), fill=fill)
        elif o["shape"] == "square":
            d.rectangle((x, y, x + size, y + size), fill=fill)
        else:
            d.polygon([(x, y + size), (x + size, y + size), (x + size / 2, y)], fill=fill)


def _draw_bars(d: ImageDraw.ImageDraw, scene: dict, rng: random.Random) -> None:
    base = IMAGE_SIZE - 2
    unit = (IMAGE_SIZE - 8) / MAX_BAR
    for i in range(MAX_BAR + 1):  # faint grid lines, one per unit
        y = round(base - i * unit)
        d.line((0, y, IMAGE_SIZE, y), fill=(225, 225, 225))
    for col, b in enumerate(scene["bars"]):
        width = rng.randint(14, 20)
        x = col * CELL + (CELL - width) // 2 + rng.randint(-2, 2)
        d.rectangle((x, round(base - b["value"] * unit), x + width, base), fill=_tint(b["colour"], rng))
    d.line((0, base, IMAGE_SIZE, base), fill=(0, 0, 0), width=1)


# Seven segments: a (top), b (top right), c (bottom right), d (bottom), e (bottom left), f (top left), g (middle).
SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg", "6": "acdefg",
    "7": "abc", "8": "abcdefg", "9": "abcdfg", "-": "g",
}


def _draw_glyph(d: ImageDraw.ImageDraw, ch: str, x: int, y: int, w: int, h: int, ink, width: int) -> None:
    if ch == "+":
        d.line((x, y + h / 2, x + w, y + h / 2), fill=ink, width=width)
        d.line((x + w / 2, y + h / 4, x + w / 2, y + 3 * h / 4), fill=ink, width=width)
        return
    m = y + h / 2
    seg = {
        "a": (x, y, x + w, y), "b": (x + w, y, x + w, m), "c": (x + w, m, x + w, y + h), "d": (x, y + h, x + w, y + h),
        "e": (x, m, x, y + h), "f": (x, y, x, m), "g": (x, m, x + w, m),
    }
    for s in SEGMENTS[ch]:
        d.line(seg[s], fill=ink, width=width)


def _draw_expr(d: ImageDraw.ImageDraw, scene: dict, rng: random.Random) -> None:
    ink = tuple([rng.randint(0, 60)] * 3)
    # Glyphs fill the cells row by row from the second row: one glyph per cell (= one visual token).
    for i, ch in enumerate(scene["expression"]):
        x0, y0 = _cell_origin(GRID + i)
        w, h = rng.randint(10, 14), rng.randint(16, 20)
        x = x0 + rng.randint(3, CELL - w - 3)
        y = y0 + rng.randint(2, CELL - h - 2)
        _draw_glyph(d, ch, x, y, w, h, ink, width=rng.randint(2, 3))


def _draw_clock(d: ImageDraw.ImageDraw, scene: dict, rng: random.Random) -> None:
    c = IMAGE_SIZE / 2 + rng.uniform(-3, 3)
    r = rng.uniform(44, 52)
    d.ellipse((c - r, c - r, c + r, c + r), outline=(30, 30, 30), width=2)
    for i in range(12):
        a = math.radians(i * 30)
        d.line((c + 0.85 * r * math.sin(a), c - 0.85 * r * math.cos(a), c + r * math.sin(a), c - r * math.cos(a)),
               fill=(30, 30, 30), width=2 if i % 3 else 3)
    d.line((c, c, c, c - 0.8 * r), fill=(90, 90, 90), width=2)  # the minute hand, on the hour
    a = math.radians(scene["hour"] * 30)
    d.line((c, c, c + 0.5 * r * math.sin(a), c - 0.5 * r * math.cos(a)), fill=(0, 0, 0), width=5)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=FAMILIES, default="shapes")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--out", default="scene.png")
    a = ap.parse_args()
    prob = make_problem(a.family, a.seed)
    draw(prob).save(a.out)
    print(f"{prob.prompt(text_only=True)}\n<think>{prob.reasoning}</think> \\boxed{{{prob.value}}}")
    print(f"level {prob.level}, {prob.steps} steps; image: {a.out}")
