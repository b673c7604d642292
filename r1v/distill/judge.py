"""AL-CoTD's judge: QDAM / VTIA scores, answer verdicts, chain revisions and the 0..5 reward-model score.

The judge is any model `models.open_model` opens (an endpoint or a local checkpoint). Every
question it is asked is a fixed prompt whose reply must be one JSON object with exactly the
listed keys, each validated (type and range). A reply that is not (prose around the JSON, a
missing key, a 7 on a 0..5 scale) is asked again, up to `retries` more times, at temperature
0.7 so that a greedy judge does not repeat itself; then the item's answer is a `Failure`: it is
recorded, and the run goes on (scores fall back as `scores.minmax` says, a verdict to the rules).

The revision prompt is the one reply that is not JSON: the judge rewrites a wrong chain as
`<think>reasoning</think> answer`, and the task's scorer, not the judge, decides whether the
rewrite reaches the gold answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from r1v.distill.models import Request
from r1v.model import templates as T

SYSTEM = ("You are a careful data annotator for a visual reasoning data set. You answer with one JSON object "
          "and nothing else: no prose, no code fences.")

REVISE_SYSTEM = "You are a careful teacher who corrects students' reasoning."

QDAM = """Rate this question{about_image}.

Question:
{question}

Give four integers from 0 to 10:
- "image_necessity": how much answering needs the image (0: the text suffices; 10: impossible without it){no_image}
- "question_quality": how clear, well-formed and answerable the question is
- "difficulty": how hard it is for a strong student
- "reasoning_demand": how many reasoning steps it takes (0: recall or recognition; 10: a long derivation)

Reply with exactly: {{"image_necessity": n, "question_quality": n, "difficulty": n, "reasoning_demand": n}}"""

VTIA = """Rate how much this question needs the image and the text reasoned about together{about_image}.
High (7-10): why / how questions, several objects and their spatial relations, domain knowledge applied to
what is shown. Low (0-3): recognising one thing (what is this, where is it).

Question:
{question}

Reply with exactly: {{"integration": n}} where n is an integer from 0 to 10."""

VERDICT = """Does the response's final answer agree with the reference answer? Judge the meaning, not the wording.

Question:
{question}

Reference answer: {gold}

Response's final answer: {answer}

Reply with exactly: {{"correct": true}} or {{"correct": false}}"""

REVISE = """A student's reasoning reached a wrong answer. Rewrite the reasoning so that it is correct and reaches \
the reference answer, keeping what was right and fixing the first mistake. Do not mention the reference answer \
or that you were given it; reason as if solving the problem.

Question:
{question}

Reference answer: {gold}

Student's reasoning:
{reasoning}

Reply in exactly this form: <think>the corrected reasoning</think> the final answer in \\boxed{{}}"""

REWARD = """Score this solution from 0 to 5.
5: correct final answer, every step true and necessary. 4: correct, with a minor flaw or redundant steps.
3: correct answer, but a false step or a lucky guess. 2: wrong answer with mostly sound reasoning.
1: wrong answer, poor reasoning. 0: no answer, or nonsense.

Question:
{question}

Reference answer: {gold}

Solution:
{solution}

Reply with exactly: {{"score": n}} where n is an integer from 0 to 5."""

SCHEMAS = {
    "qdam": {"image_necessity": (0, 10), "question_quality": (0, 10), "difficulty": (0, 10),
             "reasoning_demand": (0, 10)},
    "vtia": {"integration": (0, 10)},
    "verdict": {"correct": bool},
    "reward": {"score": (0, 5)},
}
QDAM_KEYS = {"image_necessity": "necessity", "question_quality": "quality", "difficulty": "difficulty",
             "reasoning_demand": "demand"}
RETRY_TEMPERATURE = 0.7


class BadReply(ValueError):
    """The judge's reply is not the JSON object asked for."""


@dataclass
class Failure:
    """The judge gave no valid answer after its retries (or could not be reached)."""
    reason: str
    reply: str = ""

    def record(self) -> dict:
        return {"reason": self.reason, "reply": self.reply[:500]}


def parse_reply(text: str, schema: dict) -> dict:
    """The reply as a validated dict: one JSON object (after any reasoning and code fences) with
    exactly the schema's keys; numbers integral and in range, flags true / false."""
    body = text.split(T.THINK_CLOSE)[-1].strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise BadReply(f"not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise BadReply(f"a JSON {type(obj).__name__}, not an object")
    if set(obj) != set(schema):
        raise BadReply(f"keys {sorted(obj)}, expected {sorted(schema)}")
    for k, rule in schema.items():
        v = obj[k]
        if rule is bool:
            if not isinstance(v, bool):
                raise BadReply(f"{k} is {v!r}, not true or false")
            continue
        lo, hi = rule
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise BadReply(f"{k} is {v!r}, not an integer")
        if not lo <= v <= hi:
            raise BadReply(f"{k} is {v}, outside {lo}..{hi}")
        obj[k] = int(v)
    return obj


class Judge:
    """Asks a model the fixed questions above, in batches, and validates every reply."""

    def __init__(self, model, *, retries: int = 2, max_tokens: int = 2048):
        self.model, self.retries, self.max_tokens = model, retries, max_tokens

    def ask_json(self, kind: str, prompts: dict[str, tuple[str, list]]) -> dict[str, dict | Failure]:
        """{key: (prompt, images)} -> {key: validated dict or Failure}."""
        schema, out = SCHEMAS[kind], {}
        pending = dict(prompts)
        last: dict[str, Failure] = {}
        for attempt in range(self.retries + 1):
            if not pending:
                break
            temperature = 0.0 if attempt == 0 else RETRY_TEMPERATURE
            requests = [Request(k, p, list(imgs), system=SYSTEM, max_tokens=self.max_tokens, temperature=temperature,
                                seed=attempt) for k, (p, imgs) in pending.items()]
            for key, c in self.model.complete(requests):
                if c.error:
                    last[key] = Failure(f"judge unreachable: {c.error}")
                    continue
                try:
                    out[key] = parse_reply(c.text, schema)
                    pending.pop(key)
                except BadReply as e:
                    last[key] = Failure(f"malformed reply: {e}", c.text)
        for key in pending:
            out[key] = last.get(key, Failure("no reply"))
        return out

    # ---------------------------------------------------------------- the questions
    def scores(self, rows: Sequence[dict], images: dict[str, list]) -> dict[str, dict]:
        """QDAM's judged components and VTIA's integration (0..10) per row id; a failed question
        leaves its components out and says why under "failures"."""
        def context(r):
            imgs = images.get(r["id"], [])
            about = " about the image shown" if imgs else ""
            return about, "" if imgs else " (there is no image: answer 0)"

        qdam, vtia = {}, {}
        for r in rows:
            about, no_image = context(r)
            question = _question(r)
            imgs = images.get(r["id"], [])
            qdam[r["id"]] = (QDAM.format(about_image=about, question=question, no_image=no_image), imgs)
            vtia[r["id"]] = (VTIA.format(about_image=about, question=question), imgs)
        a, b = self.ask_json("qdam", qdam), self.ask_json("vtia", vtia)
        out = {}
        for r in rows:
            k, res = r["id"], {"failures": {}}
            if isinstance(a[k], Failure):
                res["failures"]["qdam"] = a[k].record()
            else:
                res.update({QDAM_KEYS[n]: float(v) for n, v in a[k].items()})
            if isinstance(b[k], Failure):
                res["failures"]["vtia"] = b[k].record()
            else:
                res["integration"] = float(b[k]["integration"])
            out[k] = res
        return out

    def verdicts(self, items: dict[str, tuple[dict, str]]) -> dict[str, bool | Failure]:
        """{id: (row, extracted answer)} -> {id: agrees with the gold, or Failure}."""
        asked = self.ask_json("verdict", {k: (VERDICT.format(question=_question(r), gold=r["answer"], answer=a), [])
                                          for k, (r, a) in items.items()})
        return {k: v if isinstance(v, Failure) else v["correct"] for k, v in asked.items()}

    def revise(self, items: dict[str, tuple[dict, str, list]]) -> dict[str, str]:
        """{id: (row, wrong reasoning, images)} -> {id: the judge's rewrite, `reasoning</think> answer`}."""
        requests = [Request(k, REVISE.format(question=_question(r), gold=r["answer"], reasoning=reasoning), list(imgs),
                            system=REVISE_SYSTEM, max_tokens=self.max_tokens)
                    for k, (r, reasoning, imgs) in items.items()]
        from r1v.distill.models import strip_think_open

        return {k: strip_think_open(c.text) for k, c in self.model.complete(requests) if not c.error}

    def rewards(self, items: dict[str, tuple[dict, str]]) -> dict[str, int | Failure]:
        """The reward model's 0..5 score of each (row, final response): the SFT filter's D_rm(tau)."""
        asked = self.ask_json("reward", {k: (REWARD.format(question=_question(r), gold=r["answer"],
                                                           solution=solution), [])
                                         for k, (r, solution) in items.items()})
        return {k: v if isinstance(v, Failure) else v["score"] for k, v in asked.items()}


def _question(row: dict) -> str:
    q = row["question"]
    if row.get("choices"):
        q += "\nChoices: " + " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(row["choices"]))
    return q
