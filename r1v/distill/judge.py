"""AL-CoTD's judge: QDAM / VTIA scores, answer verdicts, chain revisions and the 0..5 reward-model score.

The judge is any model `models.open_model` opens (an endpoint or a local checkpoint). Every
question it is asked is a fixed prompt whose reply must be one JSON object with exactly the
listed keys, each validated (type and range). A reply that is not (prose around the JSON, a
missing key, a 7 on a 0..5 scale, NaN) is asked again, up to `retries` more times, at
temperature 0.7 so that a greedy judge does not repeat itself; then the item's answer is a
`Failure`: it is recorded, and the run goes on (a score is imputed as `scores.minmax` says, a
verdict or a reward falls back to the rules).

A judge that cannot be reached (its request failed after the endpoint's own retries) is not a
judgement: the answer is `Unreachable`, nothing is recorded for that sample, and a rerun asks again.

The revision prompt is the one reply that is not JSON: the judge rewrites a wrong chain as
`<think>reasoning</think> answer`, and the task's scorer, not the judge, decides whether the
rewrite reaches the gold answer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from r1v.distill.models import Request, strip_think_open
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


@dataclass
class Unreachable:
    """The judge's request failed for good (after the endpoint's retries): not recorded, asked again later."""
    reason: str


def _no_constants(name: str):
    raise BadReply(f"{name} is not a number")


def parse_reply(text: str, schema: dict) -> dict:
    """The reply as a validated dict: one JSON object (after any reasoning and code fences) with
    exactly the schema's keys; numbers integral and in range, flags true / false."""
    body = text.split(T.THINK_CLOSE)[-1].strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body, parse_constant=_no_constants)  # NaN and Infinity are not scores
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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
            raise BadReply(f"{k} is {v!r}, not an integer")
        if not lo <= v <= hi:
            raise BadReply(f"{k} is {v}, outside {lo}..{hi}")
        obj[k] = int(v)
    return obj


class Judge:
    """Asks a model the fixed questions above, in batches, and validates every reply."""

    def __init__(self, model, *, retries: int = 2, max_tokens: int = 2048):
        self.model, self.retries, self.max_tokens = model, retries, max_tokens

    def ask_json(self, kind: str, prompts: dict[str, tuple]) -> dict[str, dict | Failure | Unreachable]:
        """{key: (prompt, images, caption)} -> {key: validated dict, Failure or Unreachable}.

        Only malformed replies are asked again; a request that failed is the endpoint's to retry."""
        schema, out = SCHEMAS[kind], {}
        pending = dict(prompts)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            temperature = 0.0 if attempt == 0 else RETRY_TEMPERATURE
            requests = [Request(k, p, list(imgs), caption=cap, system=SYSTEM, max_tokens=self.max_tokens,
                                temperature=temperature, seed=attempt) for k, (p, imgs, cap) in pending.items()]
            for key, c in self.model.complete(requests):
                if c.error:
                    out[key] = Unreachable(c.error)
                    pending.pop(key)
                    continue
                try:
                    out[key] = parse_reply(c.text, schema)
                    pending.pop(key)
                except BadReply as e:
                    out[key] = Failure(f"malformed reply: {e}", c.text)
        return out

    # ---------------------------------------------------------------- the questions
    def scores(self, rows: Sequence[dict], images: dict[str, list]) -> dict[str, dict | None]:
        """QDAM's judged components and VTIA's integration (0..10) per row id; a question the judge
        answered badly leaves its components out and says why under "failures"; None for a row
        the judge could not be reached for."""
        qdam, vtia = {}, {}
        for r in rows:
            imgs = images.get(r["id"], [])
            about = " about the image shown" if imgs else ""
            no_image = "" if imgs else " (there is no image: answer 0)"
            question, caption = _question(r), r.get("caption")
            qdam[r["id"]] = (QDAM.format(about_image=about, question=question, no_image=no_image), imgs, caption)
            vtia[r["id"]] = (VTIA.format(about_image=about, question=question), imgs, caption)
        a, b = self.ask_json("qdam", qdam), self.ask_json("vtia", vtia)
        out = {}
        for r in rows:
            k, res = r["id"], {"failures": {}}
            if isinstance(a[k], Unreachable) or isinstance(b[k], Unreachable):
                out[k] = None
                continue
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

    def verdicts(self, items: dict[str, tuple[dict, str]]) -> dict[str, bool | Failure | Unreachable]:
        """{id: (row, extracted answer)} -> {id: agrees with the gold, Failure or Unreachable}."""
        asked = self.ask_json("verdict", {k: (VERDICT.format(question=_question(r), gold=r["answer"], answer=a), [],
                                              None) for k, (r, a) in items.items()})
        return {k: v["correct"] if isinstance(v, dict) else v for k, v in asked.items()}

    def revise(self, items: dict[str, tuple[dict, str, list]]) -> tuple[dict[str, str], set[str]]:
        """{id: (row, wrong reasoning, images)} -> ({id: the rewrite, `reasoning</think> answer`}, ids the
        judge could not be reached for)."""
        requests = [Request(k, REVISE.format(question=_question(r), gold=r["answer"], reasoning=reasoning), list(imgs),
                            caption=r.get("caption"), system=REVISE_SYSTEM, max_tokens=self.max_tokens)
                    for k, (r, reasoning, imgs) in items.items()]
        got, unreachable = {}, set()
        for k, c in self.model.complete(requests):
            if c.error:
                unreachable.add(k)
            else:
                got[k] = rewrite_of(c.text)
        return got, unreachable

    def rewards(self, items: dict[str, tuple[dict, str]]) -> dict[str, int | Failure | Unreachable]:
        """The reward model's 0..5 score of each (row, final response): the SFT filter's D_rm(tau)."""
        asked = self.ask_json("reward", {k: (REWARD.format(question=_question(r), gold=r["answer"],
                                                           solution=solution), [], None)
                                         for k, (r, solution) in items.items()})
        return {k: v["score"] if isinstance(v, dict) else v for k, v in asked.items()}


def rewrite_of(text: str) -> str:
    """The revised chain in a judge's reply, as `reasoning</think> answer`.

    The reply is `<think>reasoning</think> answer`, but a reasoning judge wraps it in its own
    thinking (its `<think>` block, or `thinking</think>` from a server's reasoning parser): the
    rewrite is what follows the last `<think>`."""
    text = strip_think_open(text)
    last = text.rfind(T.THINK_OPEN)
    return text[last + len(T.THINK_OPEN):].lstrip("\n") if last >= 0 else text


def _question(row: dict) -> str:
    q = row["question"]
    if row.get("choices"):
        q += "\nChoices: " + " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(row["choices"]))
    return q
