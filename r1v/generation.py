"""Sampling options shared by chat, evaluation and the CLI (kept free of torch, so that
`r1v --help` and the CLI's parser start fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from r1v.errors import R1VError


# transformers reads a sampling knob left at None as "unset" and fills it from the checkpoint's
# generation_config.json, then from its own defaults: top_k None samples from the top 50. Sampling in r1v is
# exactly temperature + top_p (as vLLM's engines here run it), so every other truncation is switched off by
# value: the policy GRPO scores is the one it sampled from, and a checkpoint's card cannot narrow a reply.
UNTRUNCATED = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


@dataclass
class GenerationOptions:
    max_new_tokens: int = field(default=2048, metadata={"help": "most tokens to generate per reply"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    repetition_penalty: float = field(default=1.05, metadata={"help": "penalty on repeated tokens (1 = none)"})
    seed: int | None = field(default=None, metadata={"help": "seed for sampling, for repeatable replies"})
    min_new_tokens: int = field(default=0, metadata={"help": "generate at least this many tokens"})

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> R1VError:
            return R1VError(f"{name} must be {rule}, got {getattr(self, name)}")

        for name in ("temperature", "top_p", "repetition_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise bad(name, "a finite number")
        if self.max_new_tokens < 1:
            raise bad("max_new_tokens", "at least 1")
        if self.min_new_tokens < 0:
            raise bad("min_new_tokens", "0 or more")
        if self.temperature < 0:
            raise bad("temperature", "0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]")
        if self.repetition_penalty <= 0:
            raise bad("repetition_penalty", "positive (1 = none)")

    def generate_kwargs(self) -> dict:
        greedy = self.temperature <= 0
        kw = dict(max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
                  do_sample=not greedy)
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if greedy:  # unset the sampling knobs so transformers does not warn about them
            kw.update(temperature=None, top_p=None, top_k=None)
        else:
            kw.update(temperature=self.temperature, top_p=self.top_p, **UNTRUNCATED)
        return kw
