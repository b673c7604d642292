"""Chat templates of the R1V family and the reasoning/answer split.

Two templates, both ending the generation prompt with an opened ``<think>`` block
(`../shared/docs/formats.md`):

* ``r1v``  (Skywork-R1V, R1V2; DeepSeek-R1 style)::

      <｜begin▁of▁sentence｜><｜User｜>\\n{question}<｜Assistant｜><think>\\n

* ``r1v3`` (Skywork-R1V3; ChatML)::

      <|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n

Templates are Jinja strings so they travel inside the tokenizer/processor files and
work with ``apply_chat_template`` and ``vllm serve``. Earlier assistant turns keep only
their answer: like DeepSeek-R1's own template, the reasoning of a past turn is dropped.

Run ``python -m r1v.model.templates`` to print both templates on a two-turn example.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
IMAGE_PLACEHOLDER = "<image>"
IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>")  # the processor's own: never typed in a prompt

# Message contents are plain strings; images are written in them as `<image>` placeholders
# (see r1v.model.processor.place_images), so the template itself never sees pixels.
# A message's content is a string, or (as processors, TRL and vLLM write it) a list of parts:
# {"type": "image"} becomes the processor's image token on a line of its own, as `<image>\n` does
# in a string; {"type": "text"} its text.
_CONTENT = (
    "{% macro content(c) %}{% if c is string %}{{ c }}{% else %}{% for p in c %}"
    "{% if p['type'] == 'image' %}<IMG_CONTEXT>\n{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endmacro %}"
)
_R1V = (
    _CONTENT + "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ content(m['content']) }}"
    "{% elif m['role'] == 'user' %}" + USER + "\n{{ content(m['content']) }}"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "{{ content(m['content']) }}" + EOS + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + THINK_OPEN + "\n{% endif %}"
)
_R1V3 = (
    _CONTENT + "{% for m in messages %}"
    + IM_START + "{{ m['role'] }}\n{{ content(m['content']) }}" + IM_END + "\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + IM_START + "assistant\n" + THINK_OPEN + "\n{% endif %}"
)


@dataclass(frozen=True)
class Template:
    name: str
    jinja: str
    stop: str  # the end-of-turn string that stops generation


TEMPLATES = {
    "r1v": Template("r1v", _R1V, EOS),
    "r1v3": Template("r1v3", _R1V3, IM_END),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def render(template: str | Template, messages: list[dict], bos_token: str = BOS) -> str:
    """The prompt text for `messages`, ending with the generation prompt (`<think>\\n`)."""
    t = get_template(template) if isinstance(template, str) else template
    return _compiled(t.jinja).render(messages=messages, add_generation_prompt=True, bos_token=bos_token)


@functools.lru_cache(maxsize=8)
def _compiled(source: str):
    import jinja2  # compiling is ~1.5 ms; the recipe renders tens of thousands of prompts

    return jinja2.Environment(keep_trailing_newline=True).from_string(source)


@dataclass(frozen=True)
class Split:
    reasoning: str
    answer: str | None  # None: no `</think>`, the output was cut off inside its reasoning


def split_reasoning(output: str) -> Split:
    """Split a generated output into reasoning and answer (formats.md).

    The prompt already opened `<think>`, so the output normally holds only `</think>`; a
    leading `<think>` the model repeated is dropped. Reasoning is the text before the first
    `</think>`, the answer the text after it. Without `</think>` the output is all reasoning
    and there is no answer: nothing is fished out of unfinished reasoning.
    """
    text = output.removeprefix(THINK_OPEN).lstrip("\n") if output.startswith(THINK_OPEN) else output
    head, sep, tail = text.partition(THINK_CLOSE)
    if not sep:
        return Split(reasoning=text.strip(), answer=None)
    return Split(reasoning=head.strip(), answer=tail.strip())


class ReasoningSplitter:
    """Streamed text in, ("reasoning" | "answer", text) pieces out, switching at the first `</think>`.

    Text that may be the start of a `</think>` split over several pieces is held back until it
    is known. `thinking=False` is for a prompt that already closed its think block (thinking
    off): everything is answer. The pieces concatenate to the input minus the `</think>`.
    """

    def __init__(self, thinking: bool = True):
        self.text, self.sent, self.closed = "", 0, not thinking

    def feed(self, delta: str, final: bool = False) -> list[tuple[str, str]]:
        self.text += delta
        out: list[tuple[str, str]] = []
        if not self.closed:
            cut = self.text.find(THINK_CLOSE, max(0, self.sent - len(THINK_CLOSE)))
            if cut < 0:
                hold = 0 if final else _partial_suffix(self.text, THINK_CLOSE)
                self._send(out, "reasoning", len(self.text) - hold)
                return out
            self._send(out, "reasoning", cut)
            self.sent, self.closed = max(self.sent, cut + len(THINK_CLOSE)), True
        self._send(out, "answer", len(self.text))
        return out

    def _send(self, out: list, kind: str, upto: int) -> None:
        if upto > self.sent:
            out.append((kind, self.text[self.sent:upto]))
            self.sent = upto


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


if __name__ == "__main__":
    demo = [
        {"role": "user", "content": "<image>\nHow many circles?"},
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "And squares?"},
    ]
    for name in TEMPLATES:
        print(f"--- {name}\n{render(name, demo)}")
