"""R1V3's checkpoint choice: the entropy of critical reasoning tokens.

R1V3 reports that the entropy of the policy at a chain's critical tokens tells a model that reasons
from one that imitates reasoning's surface (a chain learnt by rote is near-deterministic at its
branch points), and it picks its RL checkpoint by it. It names no token list and no formula.
Which tokens count as critical here (`grpo.critical`):
* `forks` (default): the highest-entropy `critical_share` (20%) of the reasoning's tokens in the
  batch. Wang et al. 2025 ("Beyond the 80/20 rule") find that ~20% of a chain's tokens are
  high-entropy *forks* where the reasoning branches, that RL mostly changes these, and that they
  carry its gains. This needs no vocabulary, so it works on any model and on the mini-world, whose
  chains hold no connectives;
* `words`: the tokens that begin a reasoning connective (`critical_words`: wait, but, so, ...),
  the reading R1V3's examples suggest, for models that write such words.
Only tokens before `</think>` count: the answer's tokens are not reasoning.

    ent = critical_entropy(entropy, mask, reasoning, mode="forks", share=0.2)   # one float

`grpo.py` logs it every step on the fresh rollouts trained on, and at every `grpo.eval_every`
checkpoint on fixed probe prompts held out of the pool (`grpo.probe_entropy`); `grpo.select=entropy`
keeps the checkpoint with the highest probe entropy (`choose`).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import torch


def critical_token_ids(tok, words: Sequence[str]) -> torch.Tensor:
    """A (V,) boolean mask of the tokens that begin one of `words` (case and the leading space or
    word-start mark aside, trailing punctuation allowed): "Wait", " wait", "Wait,", "▁so"."""
    wanted = {w.lower() for w in words}
    mask = torch.zeros(len(tok), dtype=torch.bool)
    for i in range(len(tok)):
        piece = tok.decode([i]).strip().lower().strip(string.punctuation)
        if piece in wanted:
            mask[i] = True
    return mask


def reasoning_mask(completions: torch.Tensor, mask: torch.Tensor, close_id: int) -> torch.Tensor:
    """(N, C) bool: the completion tokens before its first `</think>` (all of it when it has none)."""
    is_close = (completions == close_id) & mask.bool()
    seen = is_close.long().cumsum(-1) > 0  # at and after the first </think>
    return mask.bool() & ~seen


def critical_entropy(entropy: torch.Tensor, reasoning: torch.Tensor, *, mode: str = "forks", share: float = 0.2,
                     tokens: torch.Tensor | None = None, word_ids: torch.Tensor | None = None) -> float:
    """Mean entropy (nats) at the critical tokens of a batch: `entropy` (N, C) per generated token,
    `reasoning` (N, C) the tokens that count (`reasoning_mask`). `forks`: the top `share` of those
    tokens by entropy; `words`: those whose id (`tokens`, (N, C)) is in `word_ids`. NaN when there
    is no critical token."""
    ent = entropy.detach().float()
    keep = reasoning.bool() & torch.isfinite(ent)
    if mode == "words":
        if tokens is None or word_ids is None:
            raise ValueError("mode=words needs the completion tokens and the critical word ids")
        hits = word_ids.to(tokens.device)[tokens.clamp(min=0, max=len(word_ids) - 1)] & (tokens < len(word_ids))
        vals = ent[keep & hits]
        return float(vals.mean()) if vals.numel() else math.nan
    if mode != "forks":
        raise ValueError(f"unknown critical-token mode {mode!r}: forks or words")
    vals = ent[keep]
    if not vals.numel():
        return math.nan
    k = max(1, math.ceil(share * vals.numel()))
    return float(torch.topk(vals, k).values.mean())


def choose(candidates: Sequence[dict]) -> dict:
    """R1V3's rule: the candidate ({step, critical_entropy, ...}) with the highest critical-token
    entropy; the later one on a tie; a candidate whose entropy is NaN is never chosen unless all are."""
    if not candidates:
        raise ValueError("no checkpoint to choose from")
    finite = [c for c in candidates if math.isfinite(c["critical_entropy"])]
    if not finite:
        return candidates[-1]
    return max(finite, key=lambda c: (c["critical_entropy"], c["step"]))
