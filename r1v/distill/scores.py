"""AL-CoTD's scores (QDAM, VTIA) and its repetition penalty (DRLC): pure functions.

Every sample gets six component scores on a 0..10 scale (method.md, "Adaptive-Length CoT Distillation"):

    vision  S_v: clarity (blur + resolution, computed here), necessity (does the question need the image)
    text    S_t: quality, difficulty, demand (reasoning demand)
    VTIA    S_I: integration (how much the answer needs the image and the text reasoned together)

All but clarity come from the judge (`judge.py`) or, without one, from the rules below. Each
component is min-max normalised over the data set, the three scores are the means of their
normalised components, min-max normalised again (the paper's Ŝ), and DRLC turns them into the
repetition penalty the teacher generates with:

    P = min(2, exp(alpha * (1 - (Ŝ_v + beta * Ŝ_t + gamma * Ŝ_I) / (1 + beta + gamma))))

so a hard, rich question (all Ŝ near 1) gets P near 1 (room to think) and an easy one a penalty
that cuts repetition (re-checking, restating) short. The paper reports neither alpha, beta nor
gamma. Defaults here: alpha = ln 2, the one value for which P spans exactly [1, 2] over the
scores' range (a larger alpha saturates at 2 for a band of easy items, a smaller one never
reaches 2); beta = gamma = 1, the three scores weighted alike.

The rules (no judge) are deliberately simple and documented per score; they are what lets the
method run offline, not a claim to match a strong judge. A data set's own difficulty label
(`difficulty`, `level`: MATH's 1..5, the mini-world's `steps`) is the best judge-free difficulty
there is, so the rules use it when the rows have one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

COMPONENTS = ("clarity", "necessity", "quality", "difficulty", "demand", "integration")
GROUPS = {"vision": ("clarity", "necessity"), "text": ("quality", "difficulty", "demand"),
          "integration": ("integration",)}
JUDGED = tuple(c for c in COMPONENTS if c != "clarity")
ALPHA = math.log(2)
FLAT = 0.5  # clarity spreading less than this (of 10) over a data set is noise, not signal
SHARP = 100.0  # variance of the Laplacian below which an image counts as blurred (the usual OpenCV threshold)
FULL_RESOLUTION = 448  # R1V's tile side: an image whose short side is this or more loses nothing to resolution
DIFFICULTY_FIELDS = ("difficulty", "level")


# --------------------------------------------------------------------------- clarity (QDAM, local)
def laplacian_variance(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image: falls as the image blurs."""
    g = np.asarray(image.convert("L"), dtype=np.float64)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def clarity(images: Sequence[Image.Image]) -> float | None:
    """0..10: half sharpness (min(1, v / SHARP), v the Laplacian variance: saturated above the
    blur threshold, since past it v measures how busy the picture is, not how sharp), half
    resolution (short side / 448, capped at 1). Several images: the least clear. No image: None."""
    if not images:
        return None
    scores = []
    for im in images:
        v = laplacian_variance(im)
        sharp = min(1.0, v / SHARP)
        res = min(1.0, min(im.size) / FULL_RESOLUTION)
        scores.append(5 * sharp + 5 * res)
    return round(min(scores), 4)


# --------------------------------------------------------------------------- the rules (no judge)
_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LOOKS_AT = {"image", "picture", "figure", "diagram", "chart", "graph", "plot", "photo", "shown", "shows", "table",
             "map", "drawn", "depicted", "visible", "clock", "bar", "bars", "shape", "shapes", "expression"}
_DEMAND = {"total", "sum", "difference", "more", "less", "fewer", "than", "taller", "shorter", "later", "earlier",
           "after", "before", "compare", "ratio", "percent", "percentage", "average", "mean", "prove", "calculate",
           "compute", "then", "times", "each", "remaining", "left", "both", "between", "value", "expression"}
_SPATIAL = {"left", "right", "above", "below", "between", "next", "behind", "front", "top", "bottom", "inside",
            "outside", "under", "over", "beside", "near", "adjacent", "tallest", "shortest", "largest", "smallest"}
_DOMAIN = {"angle", "area", "perimeter", "radius", "diameter", "triangle", "circle", "square", "polygon", "vertex",
           "probability", "velocity", "acceleration", "force", "energy", "molecule", "atom", "cell", "function",
           "derivative", "integral", "equation", "slope", "hour", "hours", "clock"}
_RECOGNITION = ("what is", "what are", "where", "which", "who", "what colour", "what color", "name")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def label_difficulty(row: dict, field: str = "auto") -> float | None:
    """The row's own difficulty label: `field`, or with "auto" the first of difficulty / level."""
    names = DIFFICULTY_FIELDS if field == "auto" else (field,)
    for name in names:
        v = row.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str) and _NUMBER.fullmatch(v.strip().removeprefix("Level ").strip()):
            return float(v.strip().removeprefix("Level ").strip())  # MATH writes "Level 3"
    return None


def rule_scores(row: dict, *, has_image: bool, difficulty_field: str = "auto") -> dict[str, float]:
    """The five judged components (0..10) by rules, from the question's text and the row's fields.

    * necessity: 0 without an image; 4 when the row states the picture in words (`context`);
      10 when the question points at it ("the chart", "shown", a shape, ...) or holds fewer than
      two numbers of its own, else 6.
    * quality: 10 less deductions: under 4 words (-4) or over 400 (-2), neither a question mark
      nor an asking word (-2), fewer than two or repeated choices (-3), unbalanced brackets or `$`
      (-2), no gold answer (-5).
    * difficulty: the row's own label (`label_difficulty`); else 2 + numbers in the question (up to
      4) + multi-step words (up to 4).
    * demand: 2 per multi-step word (total, difference, later, compare, ...), +1 per number (up to
      3), capped at 10.
    * integration: 3, +3 for a why / how (not "how many") question, +1.5 per spatial or relational
      word, +1 per domain term, +1 per "and" joining the things asked about, -2 for a what / where /
      which recognition question; 0..10.
    """
    q = row.get("question") or ""
    words = _words(q)
    lower = q.lower()
    numbers = len(_NUMBER.findall(q))
    demand_words = sum(w in _DEMAND for w in words)

    if not has_image:
        necessity = 0.0
    elif row.get("context"):
        necessity = 4.0
    elif any(w in _LOOKS_AT for w in words) or numbers < 2:
        necessity = 10.0
    else:
        necessity = 6.0  # a question that carries its own numbers may be answerable from the text

    quality = 10.0
    if len(words) < 4:
        quality -= 4
    elif len(words) > 400:
        quality -= 2
    if "?" not in q and not re.search(r"\b(what|how|which|find|compute|calculate|determine|evaluate|why|who|where|"
                                      r"when|solve|prove|give|state)\b", lower):
        quality -= 2
    choices = row.get("choices")
    if choices is not None and (len(choices) < 2 or len(set(map(str, choices))) < len(choices)):
        quality -= 3
    if q.count("(") != q.count(")") or q.count("{") != q.count("}") or q.count("$") % 2:
        quality -= 2
    if str(row.get("answer", "")).strip() == "":
        quality -= 5

    difficulty = label_difficulty(row, difficulty_field)
    if difficulty is None:
        difficulty = 2.0 + min(numbers, 4) + min(demand_words, 4)

    demand = min(10.0, 2.0 * demand_words + min(numbers, 3))

    integration = 3.0
    if re.search(r"\b(why|how)\b", lower) and "how many" not in lower and "how much" not in lower:
        integration += 3
    integration += 1.5 * sum(w in _SPATIAL for w in words) + sum(w in _DOMAIN for w in words)
    integration += words.count("and")
    if lower.lstrip().startswith(_RECOGNITION):
        integration -= 2

    return {"necessity": necessity, "quality": max(0.0, quality), "difficulty": difficulty,
            "demand": demand, "integration": min(10.0, max(0.0, integration))}


# --------------------------------------------------------------------------- normalisation and DRLC
def minmax(values: Sequence[float | None], flat: float = 1e-9) -> list[float] | None:
    """Min-max to [0, 1] over the data set; None when the score does not vary (spread under `flat`).

    A missing value (no image to judge, a judge that failed) takes the mean of the others."""
    present = [v for v in values if v is not None]
    if not present or max(present) - min(present) < flat:
        return None
    lo, hi = min(present), max(present)
    out = [None if v is None else (v - lo) / (hi - lo) for v in values]
    mean = sum(x for x in out if x is not None) / len(present)
    return [mean if x is None else x for x in out]


def normalise(components: Sequence[dict[str, float | None]]) -> list[dict[str, float | None]]:
    """Per sample {"vision", "text", "integration"}: each component min-max normalised, a score
    the mean of its components, each score min-max normalised again (the paper's Ŝ).

    A component that does not vary is flat: left out of its score's mean. Clarity counts as flat
    when it spreads under FLAT (half a point of ten): past the blur threshold the Laplacian
    measures how busy a picture is, and min-max would blow that noise up to [0, 1]. A score with
    no varying component is None, and `penalty` leaves it out (the paper does not say what a
    constant score does; pinning it to any value would only shrink P's range)."""
    n = len(components)
    columns = {c: minmax([s.get(c) for s in components], flat=FLAT if c == "clarity" else 1e-9) for c in COMPONENTS}
    groups = {}
    for g, cs in GROUPS.items():
        live = [columns[c] for c in cs if columns[c] is not None]
        means = [sum(col[i] for col in live) / len(live) for i in range(n)] if live else None
        groups[g] = minmax(means, flat=1e-9) if means is not None else None  # means of [0, 1] values
    return [{g: None if groups[g] is None else round(groups[g][i], 6) for g in GROUPS} for i in range(n)]


def penalty(vision: float | None, text: float | None, integration: float | None, *, alpha: float = ALPHA,
            beta: float = 1.0, gamma: float = 1.0) -> float:
    """DRLC: P = min(2, exp(alpha * (1 - (Ŝ_v + beta Ŝ_t + gamma Ŝ_I) / (1 + beta + gamma)))).

    A None score (flat over the data set) is left out, numerator and denominator; with every
    score None (nothing tells the samples apart) the mean is taken as 0.5."""
    if alpha < 0 or beta < 0 or gamma < 0:
        raise ValueError("alpha, beta and gamma must be non-negative")
    total = weight = 0.0
    for name, v, w in (("vision", vision, 1.0), ("text", text, beta), ("integration", integration, gamma)):
        if v is None:
            continue
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"the {name} score must be normalised to [0, 1], got {v}")
        total, weight = total + w * v, weight + w
    mean = total / weight if weight else 0.5
    return min(2.0, math.exp(alpha * (1.0 - mean)))
