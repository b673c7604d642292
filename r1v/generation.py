"""Sampling options shared by chat, evaluation and the CLI (kept free of torch, so that
`r1v --help` and the CLI's parser start fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from r1v.errors import R1VError


@dataclass
class GenerationOptions:
    max_new_tokens: int = field(default=2048, metadata={"help": "most tokens to generate per reply"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    repetition_penalty: float = field(default=1.05, metadata={"help": "penalty on repeated tokens (1 = none)"})
    seed: int | None = field(default=None, metadata={"help": "seed for sampling, for repeatable replies"})
    min_new_tokens: int = field(default=0, metadata={"help": "generate at least this many tokens"})

    def generate_kwargs(self) -> dict:
        if self.max_new_tokens < 1:
            raise R1VError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        greedy = self.temperature <= 0
        kw = dict(max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
                  do_sample=not greedy)
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if greedy:  # unset the sampling knobs so transformers does not warn about them
            kw.update(temperature=None, top_p=None, top_k=None)
        else:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=None)
        return kw
