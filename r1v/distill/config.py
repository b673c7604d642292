"""AL-CoTD's settings (`r1v distill`, and any tool that runs it: `key=value` on its command line).

Defaults where the paper gives values; the rest (alpha, beta, gamma) are free parameters, each
documented where it is defined. `r1v distill run --help` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1v.config import setting as _f
from r1v.errors import R1VError

PENALTIES = ("adaptive", "fixed")
REVISIONS = ("auto", "judge", "hint", "reference", "none")
REWARDS = ("auto", "judge", "rules")


@dataclass
class DistillConfig:
    teacher: str = _f("", "the model that writes the chains: a checkpoint folder, an http(s):// endpoint, or rows "
                          "(the rows' own `response`); `r1v world data`: empty means the world's reasoning LM")
    judge: str = _f("", "the judge (scores, verdicts, revisions, the 0..5 reward score): as teacher; empty: the "
                        "documented rules (r1v/distill/scores.py) and the answer as a hint")
    penalty: str = _f("adaptive", "adaptive: DRLC's P per sample; fixed: fixed_penalty for every sample")
    fixed_penalty: float = _f(1.0, "the repetition penalty of every sample when penalty=fixed")
    alpha: float = _f(round(math.log(2), 6), "DRLC alpha (not reported; ln 2 makes P span exactly [1, 2])")
    beta: float = _f(1.0, "DRLC beta: the text score's weight beside the vision score's 1 (not reported)")
    gamma: float = _f(1.0, "DRLC gamma: the integration score's weight (not reported)")
    difficulty_field: str = _f("auto", "a row field holding a difficulty label for the rules (auto: difficulty, "
                                       "then level)")
    max_new_tokens: int = _f(8192, "most tokens the teacher writes per chain")
    temperature: float = _f(0.6, "the teacher's sampling temperature (0: greedy)")
    top_p: float = _f(0.95, "the teacher's nucleus mass")
    revise: str = _f("auto", "wrong chains: judge (the judge rewrites), hint (the teacher again, told the answer), "
                             "reference (the row's `reasoning`), none (dropped); auto: judge for an endpoint judge, "
                             "else hint, then reference when the row has one")
    reward: str = _f("auto", "the 0..5 reward-model score: judge, rules (format, answer, true arithmetic, facts), "
                             "auto: judge when there is one")
    judge_retries: int = _f(2, "re-asks after a malformed judge reply before it is recorded as a failure")
    chunk: int = _f(64, "samples finished and saved together (a crash loses at most one chunk's work)")
    batch_size: int = _f(16, "local models: requests per generation batch")
    concurrency: int = _f(8, "endpoints: requests in flight")
    rpm: float = _f(0.0, "endpoints: most requests a minute (0: no limit)")
    timeout: float = _f(600.0, "endpoints: seconds before a request is abandoned (and retried)")
    retries: int = _f(5, "endpoints: retries of a failed request (429, 5xx, timeouts, dropped connections), "
                         "with exponential backoff")

    def validate(self) -> None:
        checks = [(self.penalty in PENALTIES, f"distill.penalty must be one of {', '.join(PENALTIES)}"),
                  (self.revise in REVISIONS, f"distill.revise must be one of {', '.join(REVISIONS)}"),
                  (self.reward in REWARDS, f"distill.reward must be one of {', '.join(REWARDS)}"),
                  (self.fixed_penalty > 0, "distill.fixed_penalty must be positive"),
                  (min(self.alpha, self.beta, self.gamma) >= 0, "distill.alpha, beta and gamma must be >= 0"),
                  (min(self.chunk, self.batch_size, self.concurrency, self.max_new_tokens) >= 1,
                   "distill.chunk, batch_size, concurrency and max_new_tokens must be at least 1"),
                  (self.judge_retries >= 0 and self.retries >= 0, "retries must be >= 0"),
                  (self.timeout > 0 and self.rpm >= 0, "distill.timeout must be positive and rpm >= 0"),
                  (not (self.revise == "judge" and not self.judge), "distill.revise=judge needs a judge"),
                  (not (self.reward == "judge" and not self.judge), "distill.reward=judge needs a judge")]
        for ok, msg in checks:
            if not ok:
                raise R1VError(msg)
        from r1v.generation import GenerationOptions

        try:  # the sampling values, by the rules every r1v command checks them with
            GenerationOptions(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p)
        except R1VError as e:
            raise R1VError(f"distill.{e}") from None


