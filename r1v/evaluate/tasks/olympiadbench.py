"""OlympiadBench, open-ended maths in English (Hothan/OlympiadBench: `OE_MM_maths_en_COMP` with
images, `OE_TO_maths_en_COMP` text-only; He et al. 2024): competition problems, free-form answers.

Reading: one parquet (or the GitHub release's JSON) per config, the config named by the file or a
folder above it (`OE_MM_maths_en_COMP/train/0000.parquet`, `OE_TO_maths_en_COMP.json`, ...). Rows:
`id, question, solution (list), final_answer (list; the judger reads element 0), context,
image_1..image_5 (parquet image structs, referenced as <image_k> in the question),
is_multiple_answer, unit, answer_type, error, subfield, question_type`. Under a folder only the
English maths open-ended configs are read (`OE_*_maths_en_*`); point `--data` at a file to read
another open-ended config (physics, zh). Theorem-proving configs (`TP_*`) have no final answer and
are refused, as the official pipeline skips them. Breakdown groups: `config` (multimodal vs
text-only) and `subfield`. The prompt is the official English one (answer type, multiple answers
"connected with commas", the unit outside the box), asking for `\\boxed{}`.

Scoring follows the official `math_judger.py` (MathJudger.judge), re-implemented:
- the answer: the harness's text (rightmost `\\boxed{}` after `</think>`, else the answer text);
  without a box, the official fallbacks: the text after the last "So the final answer is", then
  the `$...$` pieces of its last line joined by commas, else all of it;
- clean-up: `\\left`/`\\right`, `$`, `%`, `^\\circ`, primes, full-width commas; `\\approx`, `\\sim`,
  `\\simeq` become `=`; "x \\in " is dropped; `\\mathrm{}`/`\\mathbf{}` unwrapped; edge punctuation
  stripped; CJK characters removed;
- several answers: both sides split on top-level commas, `\\pm` expanded into two answers; the
  counts must agree and every gold answer must pair with a different predicted one (any order);
- one pair is equal when: identical; or both intervals (same brackets, endpoints equal, unions
  split on `\\cup`); or both plain numbers within the tolerance (gold, gold/100 or gold*100:
  the official percentage rule); or both numeric LaTeX (`\\frac`, `\\sqrt`, `\\pi`, powers) within
  the tolerance; a variable on one side only is unequal ("5 m" for 5); else, where the official
  code asks SymPy (symbolic expressions, equations), when math-verify finds them equivalent
  (`r1v/evaluate/verify.py`, hard time bound);
- tolerance: the row's `error` (one value, or one per answer "0.1,0.01"), else 1e-8, compared as
  |gold - pred| <= 1.01 * tolerance (absolute, as official); `Tuple` answers use the default.

Departures, each recorded in the scorer path where it applies:
- only the rightmost `\\boxed{}` is read (the think rules); the official preprocess joins every
  box with commas, so "\\boxed{2} and \\boxed{3}" answers a two-answer question there and only "3"
  here. The prompt asks for all answers in one box, as the official prompt does;
- symbolic equivalence is math-verify's, not `simplify(a - b) < 1e-3`, and equations are compared
  by math-verify rather than by "their difference forms are integer multiples";
- a predicted answer ending with the row's unit has it removed (`:unit`); officially the unit
  stays and the answer fails (the prompt says to keep it out of the box);
- "1,000" / "1{,}000" for a one-answer question is read as 1000 (`:thousands`), not as two answers.

Pitfalls (in the official code and its copies): the official `judge.py` passes the model's answer
as the judger's *ground truth* argument, so the percentage rule scales the prediction (the
outcome is the same set, `pred = gold * 100 or gold / 100`, kept here). The default tolerance is an
absolute 1e-8: a rounded decimal (0.3333 for 1/3) is wrong unless the row has an `error`, and a
tolerance is absolute, so it is loose for tiny answers. One popular harness's copy of the judger
comments out `sympy_sub_pi` but still calls it, so every non-identical expression comparison
raises and silently scores 0 (its rule-based scores ran far below its LLM-judged ones). The
official judger evaluates any SymPy power (it only refuses plain `a^b` with |b| > 1000), and can
hang: here every SymPy comparison has a hard time bound, and the numeric path refuses exponents
over 1000 and strings over 300 characters.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.data import find_files, image_bytes, need, read_rows
from r1v.evaluate.tasks import Item, Task

MAX_IMAGES = 5
DEFAULT_PRECISION = 1e-8
_CONFIG = re.compile(r"(OE|TP)_(MM|TO)_(maths|physics)_(en|zh)_(COMP|CEE)")


# ---------------------------------------------------------------- numbers from LaTeX, safely
_ALLOWED_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                   ast.Div: operator.truediv, ast.Pow: None}
MAX_EXPONENT = 1000  # the official `can_compute_power` bound


def _brace_arg(s: str, i: int) -> tuple[str, int] | None:
    """The `{...}` group (or single character) starting at s[i]: (content, index after it)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] != "{":
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1:j], j + 1
    return None


def _latex_to_python(s: str) -> str | None:
    """`\\frac{1}{2}+\\sqrt{3}\\pi` -> `((1)/(2))+((3)**0.5)*(pi)`, or None for anything else."""
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for junk in ("\\,", "\\;", "\\!", "\\ ", "\\left", "\\right", "$"):
        s = s.replace(junk, "")
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i):
            num = _brace_arg(s, i + 5)
            den = num and _brace_arg(s, num[1])
            if not den:
                return None
            a, b = _latex_to_python(num[0]), _latex_to_python(den[0])
            if a is None or b is None:
                return None
            out.append(f"(({a})/({b}))")
            i = den[1]
        elif s.startswith("\\sqrt", i):
            j, root = i + 5, "2"
            if s.startswith("[", j):
                end = s.find("]", j)
                if end < 0:
                    return None
                root, j = s[j + 1:end], end + 1
            arg = _brace_arg(s, j)
            if not arg:
                return None
            a, r = _latex_to_python(arg[0]), _latex_to_python(root)
            if a is None or r is None:
                return None
            out.append(f"(({a})**(1/({r})))")
            i = arg[1]
        elif s.startswith("\\pi", i):
            out.append("(pi)")
            i += 3
        elif s.startswith("\\cdot", i) or s.startswith("\\times", i):
            out.append("*")
            i += 5 if s.startswith("\\cdot", i) else 6
        elif s[i] == "^":
            arg = _brace_arg(s, i + 1)
            if not arg:
                return None
            a = _latex_to_python(arg[0])
            if a is None:
                return None
            out.append(f"**({a})")
            i = arg[1]
        elif s[i] in "{}":
            out.append("(" if s[i] == "{" else ")")
            i += 1
        elif s[i].isdigit() or s[i] in ".+-*/() ":
            out.append(s[i])
            i += 1
        else:
            return None  # a letter, another command: not a plain number
    expr = "".join(out)
    # implicit products: 2(pi), )(, 3(  ->  2*(pi), )*(, 3*(
    return re.sub(r"(?<=[\d)])\s*(?=\()", "*", expr)


def _eval_node(node) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval_node(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_BINOPS:
        a, b = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(b) > MAX_EXPONENT:
                raise ValueError("exponent too large")
            v = a ** b
            if isinstance(v, complex):
                raise ValueError("complex")
            return float(v)
        return _ALLOWED_BINOPS[type(node.op)](a, b)
    raise ValueError("not a number")


def latex_value(s: str) -> float | None:
    """The value of a numeric LaTeX string (digits, + - * /, powers, `\\frac`, `\\sqrt`, `\\pi`),
    or None. Pure Python with bounded exponents: it cannot hang."""
    s = s.strip()
    if not s or len(s) > 300:
        return None
    expr = _latex_to_python(s)
    if expr is None or not expr.strip():
        return None
    try:
        v = _eval_node(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None
    return v if math.isfinite(v) else None


def plain_float(s: str) -> float | None:
    try:
        v = float(s)
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------- official rules (math_judger.py)
_SYMBOLS = (("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","), ("$", ""), ("\\approx", "="),
            ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"), ("^\\circ", ""),
            ("%", ""))
_EDGE = "\n$,.:;^_=+`!@#%&*~，。"
_WRAPPER = re.compile(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}")
_CJK = re.compile(r"[\u4e00-\u9fff]+")


def official_answer_text(text: str) -> str:
    """The answer in an unboxed answer text: after the last "So the final answer is", then the
    `$...$` pieces of the last line joined by commas, else all of it."""
    found = re.findall(r"So the final answer is (.*)", text)
    if found:
        text = found[-1].strip()
    last = text.strip().split("\n")[-1]
    maths = re.findall(r"\$(.*?)\$", last)
    return ",".join(maths) if maths else text


def clean(expr: str) -> str:
    if "\\in " in expr:
        expr = expr.split("\\in ")[1]
    for old, new in _SYMBOLS:
        expr = expr.replace(old, new)
    expr = expr.strip(_EDGE)
    return _WRAPPER.sub(r"\1", expr)


def split_answers(expr: str) -> list[str]:
    """Top-level comma split (brackets protect commas), then `\\pm` expanded."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    if start < len(expr):
        parts.append(expr[start:].strip())
    out = []
    for p in parts:
        out += [p.replace("\\pm", "+"), p.replace("\\pm", "-")] if "\\pm" in p else [p]
    return out


def precisions(error, answer_type: str) -> list[float] | float:
    """The row's tolerance(s), as the official judge.py reads `error`."""
    if "Tuple" in (answer_type or "") or error is None or not str(error).strip():
        return DEFAULT_PRECISION
    error = str(error)
    if "," in error:
        return [float(p) if p.strip() else DEFAULT_PRECISION for p in error.split(",")]
    return float(error)


def _has_symbol(e: str) -> bool:
    """A variable (a Latin letter outside LaTeX commands), as SymPy's `has(Symbol)` after parsing."""
    return bool(re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", e)))


def _is_interval(e: str) -> bool:
    return e.startswith(("(", "[")) and e.endswith((")", "]"))


class Judge:
    """One comparison of a gold answer with a prediction under the official rules; `how`
    records which rule decided (exact, interval, number, value, math-verify, ...)."""

    def __init__(self, verifier):
        self.verifier = verifier
        self.how = "none"

    def same(self, gold: str, pred: str, precision: float) -> bool:
        if gold == pred and gold:
            self.how = "exact"
            return True
        if _is_interval(gold) and _is_interval(pred):
            ok = self.interval(gold, pred, precision)
            self.how = "interval"
            return ok
        g, p = plain_float(gold), plain_float(pred)
        if g is not None and p is not None:
            self.how = "number"
            return any(abs(x - p) <= precision * 1.01 for x in (g / 100, g, g * 100))
        if "=" in gold and "=" in pred:  # equations: never compared as expressions (official)
            return self.symbolic(gold, pred)
        return self.expression(gold, pred, precision)

    def expression(self, gold: str, pred: str, precision: float) -> bool:
        gold, pred = (e.split("=")[1].strip() if "=" in e else e.strip() for e in (gold, pred))
        if gold == pred and gold:
            self.how = "exact"
            return True
        g, p = latex_value(gold), latex_value(pred)
        if g is not None and p is not None:  # numbers: the official tolerance decides
            self.how = "value"
            return abs(g - p) <= precision * 1.01
        if _has_symbol(gold) != _has_symbol(pred):  # official: a symbol on one side only is unequal
            self.how = "symbol"
            return False
        return self.symbolic(gold, pred)

    def symbolic(self, gold: str, pred: str) -> bool:
        if not gold.strip() or not pred.strip():
            return False
        verdict = self.verifier(gold, pred, True)
        self.how = verdict.how
        return verdict.equal

    def interval(self, gold: str, pred: str, precision: float) -> bool:
        gs, ps = gold.split("\\cup"), pred.split("\\cup")
        if len(gs) != len(ps):
            return False
        for a, b in zip(gs, ps):
            a, b = a.strip(), b.strip()
            if not (a and b) or a[0] != b[0] or a[-1] != b[-1]:
                return False
            ea, eb = a.strip("[]()").split(","), b.strip("[]()").split(",")
            if len(ea) != len(eb) or not all(self.expression(x, y, precision) for x, y in zip(ea, eb)):
                return False
        return True


def judge(gold: str, pred: str, precision, verifier) -> tuple[bool, str]:
    """MathJudger.judge(gold, pred, precision): (equal, the rule that decided)."""
    gold, pred = clean(gold), clean(pred)
    if gold == pred:
        return bool(gold), "exact"
    gold, pred = _CJK.sub("", gold), _CJK.sub("", pred)
    golds, preds = split_answers(gold), split_answers(pred)
    if len(golds) != len(preds):
        return False, "count"
    tol = precision if isinstance(precision, list) else [precision] * len(golds)
    tol = (tol + [DEFAULT_PRECISION] * len(golds))[:len(golds)]
    j, left, hows = Judge(verifier), list(preds), []
    for g, t in zip(golds, tol):
        for p in left:
            if j.same(g, p, t):
                left.remove(p)
                hows.append(j.how)
                break
        else:
            return False, j.how
    return True, "+".join(dict.fromkeys(hows))


# ---------------------------------------------------------------- the task
_ANSWER_TYPES = (("Numerical", "a numerical value"), ("Expression", "an expression"),
                 ("Equation", "an equation"), ("Interval", "an interval"))


def _type_text(answer_type: str) -> str:
    for key, text in _ANSWER_TYPES:
        if key in answer_type:
            return text
    return "a numerical value"


def answer_type_hint(answer_type: str, multiple: bool) -> str:
    """The official prompt's sentence on the answer's type ("" for Tuple / human-judged ones)."""
    answer_type = answer_type or ""
    if "Need_human_evaluate" in answer_type or "Tuple" in answer_type or not answer_type:
        return ""
    if not multiple:
        return f"The answer of the problem should be {_type_text(answer_type)}. "
    kinds = [_type_text(t) for t in answer_type.split(",")]
    if len(set(kinds)) == 1:
        return f"The problem has multiple answers, each of them should be {kinds[0]}. "
    return f"The problem has multiple answers, with the answers in order being {', '.join(kinds)}. "


def config_of(path: Path) -> str | None:
    for part in reversed(path.parts):
        m = _CONFIG.search(part)
        if m:
            return m.group(0)
    return None


def _final_answer(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    value = list(value)
    return str(value[0]) if value else None


class OlympiadBench(Task):
    name, title = "olympiadbench", "OlympiadBench"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        path = Path(path)
        files = find_files(path)
        if path.is_dir():
            files = [f for f in files if (c := config_of(f.relative_to(path))) and c.startswith("OE_")
                     and "_maths_en_" in c]
            if not files:
                raise R1VError(f"OlympiadBench: no OE_*_maths_en_* files under {path} (name the config in the "
                               "file or folder name, as published: OE_MM_maths_en_COMP/..., OE_TO_maths_en_COMP...)")
        rows = []
        for f in files:
            config = config_of(f) or "unknown"
            if config.startswith("TP_"):
                raise R1VError(f"OlympiadBench: {f} holds theorem proofs, which have no final answer to score")
            part = read_rows(f)
            need(part, ("id", "question", "final_answer"), f"OlympiadBench {f.name}")
            rows += [(config, r) for r in part]
        ids = [str(r["id"]) for _, r in rows]
        clash = len(set(ids)) != len(ids)
        items = []
        for config, r in rows:
            gold = _final_answer(r.get("final_answer"))
            if gold is None:
                raise R1VError(f"OlympiadBench: row {r['id']} ({config}) has no final_answer")
            images = [b for k in range(1, MAX_IMAGES + 1) if (b := image_bytes(r.get(f"image_{k}")))]
            groups = {"config": config}
            if r.get("subfield"):
                groups["subfield"] = str(r["subfield"])
            items.append(Item(
                id=f"{config}/{r['id']}" if clash else str(r["id"]), question=r["question"], answer=gold,
                images=images, groups=groups,
                info={"context": r.get("context"), "unit": r.get("unit") or None,
                      "multiple": bool(r.get("is_multiple_answer")), "answer_type": r.get("answer_type") or "",
                      "precision": precisions(r.get("error"), r.get("answer_type") or ""),
                      "physics": "physics" in config, "zh": "_zh_" in config}))
        return items

    def prompt(self, item: Item) -> str:
        info = item.info
        box = "\\boxed{multiple answers connected with commas}" if info["multiple"] else "\\boxed{answer}"
        unit = ""
        if info["unit"]:
            box += "(unit)"
            unit = ", and keep the unit out of \\boxed{}"
        subject = "Physics" if info["physics"] else "Math"
        body = f"{info['context']}\n{item.question}" if info["physics"] and info["context"] else item.question
        return (f"The following is an open-ended problem from an International {subject} competition. "
                f"{answer_type_hint(info['answer_type'], info['multiple'])}Please calculate the answer according "
                f"to the given requirements and the information provided. Please use LaTeX format to represent "
                f"the variables and formulas used in the solution process and results. Please end your solution "
                f"with \"So the final answer is {box}.\" and give the result explicitly{unit}.\n"
                f"{body}")

    def rules(self, item, text, *, boxed, verifier):
        from r1v.evaluate.tasks.math500 import shared_verifier

        pred, details = text if boxed else official_answer_text(text), []
        unit = item.info.get("unit")
        if unit and pred.rstrip().endswith(unit.strip()) and pred.strip() != unit.strip():
            pred, details = pred.rstrip()[:-len(unit.strip())].rstrip(), ["unit"]
        if not item.info.get("multiple") and re.fullmatch(r"\s*-?\d{1,3}(?:(?:,|\{,\})\d{3})+\s*", pred):
            pred = re.sub(r",|\{,\}", "", pred)
            details.append("thousands")
        correct, how = judge(str(item.answer), pred, item.info["precision"], verifier or shared_verifier())
        return correct, pred.strip(), ":".join([how] + details)
