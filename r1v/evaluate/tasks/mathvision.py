"""MATH-Vision (MathLLMs/MathVision; Wang et al. 2024): competition maths with one diagram each,
`test` (3,040 problems) and `testmini` (304, a subset of test), multiple-choice and free-form.

Reading: `data/test-*.parquet` and `data/testmini-*.parquet` as published (`id, question,
options (list; [] for free-form), image (a path), decoded_image (parquet image struct), answer
(a letter A-E for multiple choice), solution, level (1-5), subject`), or the GitHub release
(`data/test.jsonl`, `data/testmini.jsonl`, images under `images/`). The split is read from the
file name and reported as the `split` breakdown group, beside `subject` and `level`.
`--data` at a file reads that split. Under a folder, `test` is read when present (the number
the MATH-V leaderboard and VLMEvalKit's "MathVision" report), else `testmini`: never both,
because testmini's problems are also in test. Point `--data` at the testmini file to score
testmini. The prompt lists the options as "(A) ..." and asks for the letter (or the value) in
`\\boxed{}`.

Scoring follows MATH-V's `evaluation/evaluate.py` + `utils.py`, re-implemented:
- the answer: the harness's text (rightmost `\\boxed{}` after `</think>`, else the answer text),
  then the official clean-up: an ending " C." / " (C)." or a start "C\\n" / "(C)\\n" is the letter
  C; a number after the last "is " is taken; without a box, the text after the last "the
  (final / correct) answer is" / "the answer should be" (first line, first sentence); then
  `find_math_answer`: lower case, the part after the last `=` / `\\approx`, spaces, `\\text`,
  `\\left/\\right`, degrees, `\\$`, `%`, a few units (km, m^3, "units") removed, `dfrac`/`tfrac` ->
  `frac`, "0.5" -> `\\frac{1}{2}`, "a/b" -> `\\frac{a}{b}`, "(a)" -> "a";
- equality (`is_equal`, case-insensitive), against the gold answer and, for multiple choice,
  also against the gold option's text: equal strings; tuples "(a,b)" / "[a,b]" compared
  element-wise after evaluating and rounding each element to 2 decimals; else both evaluated as
  numbers and compared rounded to 2 decimals.
The official code evaluates LaTeX with latex2sympy + Python `eval`; here numbers come from a
small bounded evaluator (`\\frac`, `\\sqrt`, `\\pi`, powers: `olympiadbench.latex_value`), and
what it cannot evaluate (logs, trig functions, symbols) goes to math-verify under a hard time
bound (`:math-verify`; the official eval would score a symbolic answer only by equal strings,
and never runs `eval` on model text here).

Pitfalls (kept, as official, and tested): the 2-decimal rounding makes near misses right
(3.141 for \\pi, 0.004 for 0) and tiny answers indistinguishable; every answer is lower-cased,
so the letter rules and the values are case-blind; a letter answer is matched as the gold
letter or the gold option's text, so when the options are only drawn in the image (options
"A".."E") the letter is all that can match. An empty answer never scores (as official).
"""

from __future__ import annotations

import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import is_number
from r1v.evaluate.data import find_files, image_bytes, need, read_rows
from r1v.evaluate.tasks import BOXED_HINT, Item, Task
from r1v.evaluate.tasks.olympiadbench import latex_value

LETTERS = "ABCDE"
_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")


# ---------------------------------------------------------------- official rules (MATH-V evaluation)
def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(?!\{)(\w)", r"\\sqrt{\1}", s)


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}
    s = re.sub(r"\\frac(?!\{)(\w)(?!\{)(\w)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\frac(?!\{)(\w)\{", r"\\frac{\1}{", s)


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    return f"\\frac{{{int(m[1])}}}{{{int(m[2])}}}" if m and s == f"{int(m[1])}/{int(m[2])}" else s


def _strip_string(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = s.split("\\text{ ")[0]  # units on the right
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    s = _fix_sqrt(s).replace(" ", "")
    if "sqrt" in s:
        s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def find_math_answer(s: str) -> str:
    s = s.lower().replace("{}", "")
    boxes = re.findall(r"oxed\{(.*)\}", s, flags=re.S)  # greedy, as official: up to the last "}"
    ans = boxes[-1] if boxes else s
    if "}" in ans and ("{" not in ans or ans.find("}") < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
                     ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                     ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")):
        ans = ans.replace(old, new)
    return _strip_string(ans)


def extract_answer(response: str) -> str:
    """The model's answer as MATH-V's `evaluate` takes it from a response."""
    s = response.strip()
    for c in LETTERS:
        if (s.endswith(f" {c}.") or s.endswith(f" ({c}).") or s.startswith(f"{c}\n") or s.startswith(f"({c})\n")
                or s.startswith(f"({c}) {c}\n")):
            s = c
    tail = s.split("is ")[-1].rstrip(".")
    if is_number(tail):
        s = tail
    if "oxed{" not in s:
        for flag in _FLAGS:
            for f in (flag, flag.replace("the", "The")):
                if f in s:
                    s = s.split(f)[-1].strip().split("\n")[0].split(". ")[0]
    elif s.count("oxed{") > 1:
        s = "\\boxed{" + s.split("oxed{")[-1]
    s = find_math_answer(s)
    for c in "abcde":
        s = s.replace(f"({c})", c).replace(f"{{{c}}}", c)
    return s.rstrip(".").lstrip(":").strip()


def _eval_tuple(s: str) -> str:
    parts = s[1:-1].split(",")
    if len(s) > 1 and len(parts) > 1 and (s[0], s[-1]) in (("(", ")"), ("[", "]")):
        vals = []
        for p in parts:
            if "infty" in p or p in ("a", "-a"):
                vals.append(p)
                continue
            v = latex_value(p)
            if v is None:
                return s  # as official: any failure keeps the original string
            vals.append(str(round(v, 2)))
        return s[0] + ",".join(vals) + s[-1]
    return s


def is_equal(pred: str, gold: str, verifier=None) -> tuple[bool, str]:
    """(equal, how) by MATH-V's `is_equal`."""
    pred, gold = pred.lower(), gold.lower()
    if not pred.replace(" ", "") or not gold.replace(" ", ""):
        return False, "empty"
    if pred.strip() == gold.strip():
        return True, "exact"
    pred, gold = _eval_tuple(pred), _eval_tuple(gold)
    if pred == gold:
        return True, "tuple"
    g, p = latex_value(gold), latex_value(pred)
    if g is not None and p is not None:
        return round(g, 2) == round(p, 2), "2dp"
    if verifier is None or not re.search(r"\d|\\", gold + pred):  # words / letters: strings only
        return False, "string"
    verdict = verifier(gold, pred, True)
    return verdict.equal, "math-verify"


# ---------------------------------------------------------------- the task
def split_of(f: Path) -> str:
    m = re.match(r"(testmini|test)(?![a-z])", f.name)
    return m.group(1) if m else f.stem


class MathVision(Task):
    name, title = "mathvision", "MathVision"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        path = Path(path)
        files = find_files(path)
        if path.is_dir():
            splits = {split_of(f) for f in files}
            want = "test" if "test" in splits else "testmini" if "testmini" in splits else None
            if want is None:
                raise R1VError(f"MathVision: no test-* or testmini-* files under {path}")
            files = [f for f in files if split_of(f) == want]
        base = path if path.is_dir() else path.parent
        items = []
        for f in files:
            rows = read_rows(f)
            need(rows, ("id", "question", "answer"), f"MathVision {f.name}")
            split = split_of(f)
            for r in rows:
                img = image_bytes(r.get("decoded_image")) or image_bytes(r.get("image"))
                if img is None and isinstance(r.get("image"), str):
                    for folder in (base, base.parent, f.parent, f.parent.parent):
                        if (folder / r["image"]).is_file():
                            img = (folder / r["image"]).read_bytes()
                            break
                options = [str(o) for o in (r.get("options") or [])]
                groups = {"split": split}
                for k in ("subject", "level"):
                    if r.get(k) is not None and str(r[k]) != "":
                        groups[k] = str(r[k])
                items.append(Item(id=str(r["id"]), question=r["question"], answer=str(r["answer"]).strip(),
                                  images=[img] if img else [], choices=options or None, groups=groups))
        return items

    def prompt(self, item: Item) -> str:
        if item.choices:
            opts = "".join(f"({chr(65 + i)}) {c}\n" for i, c in enumerate(item.choices))
            return (f"{item.question}\nChoices:\n{opts}Answer with the correct option's letter, and "
                    f"{BOXED_HINT}.")
        return f"{item.question}\nPlease reason step by step, and {BOXED_HINT}."

    def rules(self, item, text, *, boxed, verifier):
        from r1v.evaluate.tasks.math500 import shared_verifier

        pred = extract_answer(f"\\boxed{{{text}}}" if boxed else text)
        gold = item.answer
        verifier = verifier or shared_verifier()
        ok, how = is_equal(pred, gold, verifier)
        if not ok and item.choices and gold.upper() in LETTERS[:len(item.choices)]:
            value = item.choices[LETTERS.index(gold.upper())]
            ok2, how2 = is_equal(pred, value, verifier)
            if ok2:
                ok, how = True, f"option-{how2}"
        return ok, pred, how
