"""The LLM judge (`--judge-url`): reproducible, cached, and never trusted blindly.

    judge = Judge("http://localhost:8001/v1", mode="match", samples=3)
    verdict = judge.judge(task, item, answer_text)     # JudgeError: the rules score the item instead

Two modes, each with its prompt in a versioned file (`judge_prompts/<mode>-v<N>.txt`, or your own
with `--judge-prompt FILE`):
- `extract` (default): the judge copies out the final answer; the benchmark's own rules then
  compare it with the gold, so a judge can make extraction more forgiving (MathVista's and
  MathVerse's official pipelines extract with an LLM) but can never mark an answer right by itself.
- `match`: R1V2's "LLM judge for answer matching": the judge sees the question, the gold
  (`Task.gold_text`) and the answer text after `</think>`, and replies CORRECT or INCORRECT.

Why this much care: users report judged scores that move with the judge, its prompt and the run
(Skywork-R1V #15: MMMU 62.0 vs 69.0; Qwen3-VL #1149; VisionThink #12). So:
- every judged record keeps the judge model, the prompt's version and hash, and the raw replies;
- replies are cached on disk (`--judge-cache`; the CLI's default is `~/.cache/r1v/judge.jsonl`), keyed by the
  judge's URL and model, the prompt's hash, the exact messages, the sampling and the sample number: a
  rerun, a rescoring into a new folder, or a second model with the same outputs asks nothing twice;
- `--judge-samples K` asks K times (at `--judge-temperature`, default 0.6 when K > 1) and takes the
  strict majority; agreement (the share of replies that side with it) is recorded per item and
  summarised per run. With no strict majority the item falls back to the rules (`judge-split`).
- several outputs are judged at once (`--judge-concurrency`, default 8): a judge's replies take
  seconds, and one at a time a real benchmark's thousands of outputs would take hours;
- a reply that is not an answer raises JudgeError: an error, an empty or overlong reply, an
  extraction that is not in the response (the prompt asks the judge to copy the answer as the
  response states it, so "Well, I think the answer might be..." is refused, not parsed), a match
  reply that is not exactly CORRECT or INCORRECT. The item is then scored by the rules alone, and
  the record says so (`rules-after-judge-error`, with the replies).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.endpoint import Endpoint
from r1v.evaluate.tasks import Item, JudgeError, Task
from r1v.io import Journal

PROMPTS = Path(__file__).with_name("judge_prompts")
MODES = ("extract", "match")
MAX_REPLY_CHARS = 300
_VERDICT = re.compile(r"^[\s*`'\"]*(CORRECT|INCORRECT)[\s*`'\".!]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Prompt:
    """A judge prompt file: `# comments`, then a `[system]` and a `[user]` section."""
    version: str  # the file's stem: extract-v1, match-v1, or your file's name
    sha: str  # the first 12 hex digits of the file's sha256: two texts never share a version silently
    system: str
    user: str

    @classmethod
    def load(cls, path: str | Path, mode: str) -> "Prompt":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise R1VError(f"judge prompt not readable: {path}") from None
        parts = re.split(r"^\[(system|user)\]\s*$", text, flags=re.MULTILINE)
        sections = dict(zip(parts[1::2], (p.strip("\n") for p in parts[2::2])))
        if set(sections) != {"system", "user"}:
            raise R1VError(f"judge prompt {path} needs a [system] and a [user] section")
        need = {"extract": ("{question}", "{response}"), "match": ("{question}", "{gold}", "{response}")}[mode]
        missing = [k for k in need if k not in sections["user"]]
        if missing:
            raise R1VError(f"judge prompt {path} lacks {', '.join(missing)} in its [user] section "
                           f"(--judge-mode {mode} fills {', '.join(need)})")
        return cls(path.stem, hashlib.sha256(text.encode()).hexdigest()[:12], sections["system"], sections["user"])

    def render(self, **fields: str) -> str:
        out = self.user  # str.replace, not format: prompts and answers are full of LaTeX braces
        for k, v in fields.items():
            out = out.replace("{" + k + "}", v)
        return out


@dataclass
class Verdict:
    value: str  # the extraction ("" = NONE), or "CORRECT" / "INCORRECT"
    info: dict = field(default_factory=dict)  # what the record keeps: model, prompt, replies, agreement

    @property
    def correct(self) -> bool:
        return self.value == "CORRECT"


class Judge:
    def __init__(self, url: str, model: str | None = None, *, mode: str = "extract", samples: int = 1,
                 temperature: float | None = None, prompt: str | Path | None = None,
                 cache: str | Path | None = None, concurrency: int = 8, timeout: float = 120.0, retries: int = 3):
        if mode not in MODES:
            raise R1VError(f"--judge-mode must be one of {', '.join(MODES)}, got {mode!r}")
        if samples < 1:
            raise R1VError(f"--judge-samples must be at least 1, got {samples}")
        if concurrency < 1:
            raise R1VError(f"--judge-concurrency must be at least 1, got {concurrency}")
        self.temperature = (0.0 if samples == 1 else 0.6) if temperature is None else float(temperature)
        if not 0 <= self.temperature <= 2:
            raise R1VError(f"--judge-temperature must be in [0, 2], got {temperature}")
        self.mode, self.samples = mode, samples
        self.prompt = Prompt.load(prompt or PROMPTS / f"{mode}-v1.txt", mode)
        self.endpoint = Endpoint(url, model, timeout=timeout, retries=retries)
        self.name = self.endpoint.model
        self.cache = Journal(Path(cache), key=lambda r: r["key"]) if cache else None
        if self.cache is not None:
            self.cache.path.parent.mkdir(parents=True, exist_ok=True)
        self.requests = self.cached = 0
        self.concurrency = concurrency  # outputs judged at once (`run.scored`); the cache and counts are locked
        self._lock = threading.Lock()

    def settings(self) -> dict:
        """What a run records about its judge (and a resumed run must share)."""
        return {"mode": self.mode, "model": self.name, "prompt": self.prompt.version, "prompt_sha": self.prompt.sha,
                "samples": self.samples, "temperature": self.temperature}

    # ------------------------------------------------------------ asking
    def _ask(self, user: str, k: int) -> str:
        """The raw reply to sample k of this message, from the cache when it was asked before."""
        params = {"temperature": self.temperature, "max_tokens": 128 if self.mode == "extract" else 16}
        if self.temperature > 0:
            params["seed"] = k  # a server that honours seeds gives the same K replies again
        key = hashlib.sha256(json.dumps([self.endpoint.url, self.name, self.prompt.sha, self.prompt.system, user,
                                         params, k],
                                        ensure_ascii=False).encode()).hexdigest()
        with self._lock:
            if self.cache is not None and key in self.cache.records:
                self.cached += 1
                return self.cache.records[key]["reply"]
            self.requests += 1
        reply = self.endpoint.chat(user, system=self.prompt.system, **params).text  # R1VError: not cached
        if self.cache is not None:
            with self._lock:
                self.cache.add([{"key": key, "model": self.name, "prompt": self.prompt.version, "reply": reply}])
        return reply

    def judge(self, task: Task, item: Item, response: str) -> Verdict:
        """The majority verdict of K replies on one answer text; JudgeError when there is none."""
        fields = {"question": task.prompt(item), "response": response}
        if self.mode == "match":
            fields["gold"] = task.gold_text(item)
        user = self.prompt.render(**fields)
        info = {**self.settings(), "replies": []}
        values = []
        for k in range(self.samples):
            try:
                reply = self._ask(user, k)
            except R1VError as e:
                info["error"] = str(e)[:300]
                raise JudgeError(f"judge request failed: {e}", info) from None
            info["replies"].append(reply)
            value = self.read(reply)
            if value is None:
                info["error"] = f"unusable judge reply: {reply[:80]!r}"
                raise JudgeError(info["error"], info)
            if self.mode == "extract" and value and _squash(value) not in _squash(response):
                info["error"] = f"the judge's extraction {value[:80]!r} is not in the response"
                raise JudgeError(info["error"], info)
            values.append(value)
        (top, n), *rest = Counter(values).most_common()
        info["agreement"] = round(n / len(values), 4)
        if rest and rest[0][1] == n:
            info["error"] = "no strict majority among the judge's replies"
            raise JudgeError(info["error"], info, split=True)
        return Verdict(top, info)

    def read(self, reply: str) -> str | None:
        """A reply as a value (extraction or verdict), or None when it is not one."""
        reply = reply.split("</think>")[-1].strip().strip("`").strip()
        if self.mode == "match":
            m = _VERDICT.match(reply)
            return m[1].upper() if m else None
        if not reply or len(reply) > MAX_REPLY_CHARS:
            return None
        return "" if reply.upper().rstrip(".") == "NONE" else reply


def _squash(text: str) -> str:
    """Text compared for containment: lower case, no whitespace, no `$` (a judge may drop the maths
    delimiters or the spaces around an operator when it copies an answer)."""
    return re.sub(r"[\s$]", "", text).lower()


def summary(records: list[dict]) -> dict | None:
    """The judge's part of a run's summary: who judged, how often, how consistently, and how many
    outputs fell back to the rules."""
    judged = [r["judge"] for r in records if r.get("judge")]
    if not judged:
        return None
    first = judged[0]
    agreements = [j["agreement"] for j in judged if "agreement" in j]
    return {"mode": first["mode"], "model": first["model"], "prompt": first["prompt"],
            "prompt_sha": first["prompt_sha"], "samples": first["samples"], "judged": len(judged),
            "agreement": round(100 * sum(agreements) / len(agreements), 2) if agreements else None,
            "unanimous": round(100 * sum(a == 1 for a in agreements) / len(agreements), 2) if agreements else None,
            "fell_back": sum("error" in j for j in judged)}
