"""What part of a model's output is scored: the think rules and `\\boxed{}` extraction.

Rules (`../shared/docs/scoring.md`), shared by every benchmark and by the RL rewards:
- only the text after `</think>` is scored; an output without `</think>` has no answer
  (nothing is fished out of unfinished reasoning), so a `\\boxed{}` inside the reasoning
  never counts;
- when the answer text holds a `\\boxed{}`, the content of the rightmost one is what the
  benchmark's official rules parse; otherwise they parse the whole answer text;
- an empty answer (or an empty `\\boxed{}`) never scores.

One normalisation is added at this level: `\\text{...}` (and `\\textbf`, `\\mathrm`, `\\mbox`)
around boxed content is unwrapped, so `\\boxed{\\text{B}}` reaches MMMU's and MathVista's
letter rules as `B` (they would otherwise guess, or take the closest option).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r1v.model.templates import split_reasoning

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def is_number(s: str) -> bool:
    """`s` reads as a float ("3", "-0.5", "1e3", "inf")."""
    try:
        float(s)
        return True
    except ValueError:
        return False


def unwrap_text(s: str) -> str:
    """`\\text{B}` -> `B` (also `\\textbf`, `\\mathrm`, `\\mbox`)."""
    return _TEXT_WRAPPER.sub(r"\1", s)


@dataclass(frozen=True)
class Answer:
    reasoning: str
    text: str | None  # the text after `</think>`; None when the output has no `</think>`
    parsed: str | None  # what the official rules parse: last \boxed{} content, else `text`
    boxed: bool  # `parsed` came from a \boxed{}


def last_boxed(text: str) -> str | None:
    """Content of the rightmost `\\boxed{...}` / `\\fbox{...}` (braces balanced), or `\\boxed 5`.

    None when there is none, or when the rightmost one is never closed (truncated output).
    """
    start, cmd = max((text.rfind(c), c) for c in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(cmd)
    if text.startswith(" ", i) and not text.startswith(" {", i):  # `\boxed 5`: up to the next space or `$`
        rest = text[i + 1:]
        end = min((rest.find(c) for c in " $\n" if c in rest), default=len(rest))
        return rest[:end]
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def extract(output: str, *, think: bool = True) -> Answer:
    """Apply the think rules to a raw output. `think=False` scores models that do not reason
    (the whole output is the answer text)."""
    if think:
        split = split_reasoning(output)
        reasoning, text = split.reasoning, split.answer
    else:
        reasoning, text = "", output.strip()
    if text is None:
        return Answer(reasoning, None, None, False)
    boxed = last_boxed(text)
    if boxed is not None:
        return Answer(reasoning, text, unwrap_text(boxed).strip(), True)
    return Answer(reasoning, text, text.strip(), False)
