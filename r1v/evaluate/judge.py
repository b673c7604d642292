"""LLM-judge answer extraction through an OpenAI-compatible endpoint (`--judge-url`).

The judge only *extracts*: given the question and the model's answer text (after
`</think>`), it returns the final answer as written, or NONE. The benchmark's own rules then
compare it with the gold answer, so a judge can make extraction more forgiving (MathVista's
official pipeline extracts with an LLM) but can never mark an answer right by itself.
Anything but a clean reply (an error, an empty or overlong reply) raises JudgeError and the
item is scored by the rules alone; every record says which path scored it.
"""

from __future__ import annotations

from r1v.errors import R1VError
from r1v.evaluate.endpoint import Endpoint
from r1v.evaluate.tasks import JudgeError

SYSTEM = ("You extract final answers. You never solve the problem yourself and never correct the response. "
          "Reply with the final answer only, copied as the response states it (a number, an expression, "
          "an option letter or a short phrase), with no explanation. If the response gives no final answer, "
          "reply NONE.")
TEMPLATE = "Question:\n{question}\n\nResponse:\n{answer}\n\nThe final answer stated in the response:"
MAX_REPLY_CHARS = 300


class Judge:
    def __init__(self, url: str, model: str | None = None, *, timeout: float = 120.0, retries: int = 3):
        self.endpoint = Endpoint(url, model, timeout=timeout, retries=retries)
        self.name = self.endpoint.model

    def extract(self, question: str, answer: str) -> str:
        """The judge's extraction ("" for NONE); JudgeError when it gives none usable."""
        try:
            reply = self.endpoint.chat(TEMPLATE.format(question=question, answer=answer), system=SYSTEM,
                                       temperature=0.0, max_tokens=128).text
        except R1VError as e:
            raise JudgeError(str(e)) from None
        reply = reply.split("</think>")[-1].strip().strip("`").strip()
        if not reply or len(reply) > MAX_REPLY_CHARS:
            raise JudgeError(f"unusable judge reply ({len(reply)} characters)")
        return "" if reply.upper().rstrip(".") == "NONE" else reply
