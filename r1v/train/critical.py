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

    ent = critical_entropy(entropy, reasoning, mode="forks", share=0.2)   # one float

`grpo.py` logs it every step on the fresh rollouts trained on, and at every `grpo.eval_every`
checkpoint on fixed probe prompts held out of the pool (`grpo.probe`); `grpo.select=entropy` keeps
the checkpoint with the highest probe entropy where the probe can tell it from the last's (`choose`).
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


def counted(entropy: torch.Tensor, reasoning: torch.Tensor, *, mode: str = "forks", tokens: torch.Tensor | None = None,
            word_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per completion (row of `entropy`, (N, C)), the entropies the critical measure draws from: every
    reasoning token's (`forks`, which then keeps the top share of them all) or those of the reasoning
    tokens whose id (`tokens`, (N, C)) is in `word_ids` (`words`)."""
    ent = entropy.detach().float()
    keep = reasoning.bool() & torch.isfinite(ent)
    if mode == "words":
        if tokens is None or word_ids is None:
            raise ValueError("mode=words needs the completion tokens and the critical word ids")
        keep &= word_ids.to(tokens.device)[tokens.clamp(min=0, max=len(word_ids) - 1)] & (tokens < len(word_ids))
    elif mode != "forks":
        raise ValueError(f"unknown critical-token mode {mode!r}: forks or words")
    return [row[k] for row, k in zip(ent, keep)]


def critical_value(values: Sequence[torch.Tensor], *, mode: str = "forks", share: float = 0.2) -> float:
    """The critical-token entropy of the `counted` values of a set of completions (or of prompts, each
    its rollouts' values joined): their mean (`words`), or the mean of their top `share` (`forks`). NaN
    when there is none."""
    vals = torch.cat([torch.as_tensor(v, dtype=torch.float32).flatten() for v in values]) if len(values) else \
        torch.zeros(0)
    if not vals.numel():
        return math.nan
    if mode == "forks":
        vals = torch.topk(vals, max(1, math.ceil(share * vals.numel()))).values
    return float(vals.mean())


def resampler(prompts: Sequence[torch.Tensor], *, mode: str = "forks", share: float = 0.2,
              device: torch.device | str = "cpu"):
    """`critical_value` of a bootstrap resample of `prompts` (each prompt's counted entropies), the
    resample given as how often each prompt is in it: stat(counts) -> float. Equal to `critical_value`
    of the joined resample, but it sorts the tokens once instead of joining and ranking millions of them
    on every resample (a 38B probe: 256 prompts x 4 rollouts x 8k tokens; `bench/critical_choice.py`).
    `forks`: the tokens sorted from the highest, each weighted by its prompt's count, are taken until
    the resample's top share is reached; `words`: a weighted mean."""
    vals = [torch.as_tensor(v, dtype=torch.float64).flatten() for v in prompts]
    sizes = torch.tensor([len(v) for v in vals], dtype=torch.float64, device=device)
    if mode == "words":
        sums = torch.stack([v.sum() for v in vals]).to(device) if vals else torch.zeros(0, dtype=torch.float64)

        def mean(counts) -> float:
            w = torch.as_tensor(counts, dtype=torch.float64, device=device)
            n = float(w @ sizes)
            return float(w @ sums) / n if n else math.nan
        return mean
    flat = torch.cat(vals).to(device) if vals else torch.zeros(0, dtype=torch.float64, device=device)
    owner = torch.repeat_interleave(torch.arange(len(vals), device=device), sizes.long())
    order = torch.argsort(flat, descending=True, stable=True)
    flat, owner = flat[order], owner[order]
    # A resample's top share nearly always lies within the whole probe's top 2.5 x share: weigh that part
    # first, and all of it only for a resample whose top share reaches below it (the result is exact either way).
    head = min(len(flat), math.ceil(min(1.0, 2.5 * share) * len(flat)))

    def top(counts) -> float:
        w = torch.as_tensor(counts, dtype=torch.float64, device=device)
        n = int(w @ sizes)
        if not n:
            return math.nan
        k = max(1, math.ceil(share * n))
        for end in (head, len(flat)):
            weight = w[owner[:end]]
            cum = torch.cumsum(weight, 0)
            if end and cum[-1] >= k:
                break
        i = int(torch.searchsorted(cum, torch.tensor([float(k)], dtype=torch.float64, device=device)))
        before = float(cum[i - 1]) if i else 0.0
        return (float(weight[:i] @ flat[:i]) + (k - before) * float(flat[i])) / k
    return top


def critical_entropy(entropy: torch.Tensor, reasoning: torch.Tensor, *, mode: str = "forks", share: float = 0.2,
                     tokens: torch.Tensor | None = None, word_ids: torch.Tensor | None = None) -> float:
    """Mean entropy (nats) at the critical tokens of a batch: `entropy` (N, C) per generated token,
    `reasoning` (N, C) the tokens that count (`reasoning_mask`). `forks`: the top `share` of those
    tokens by entropy; `words`: those whose id (`tokens`, (N, C)) is in `word_ids`. NaN when there
    is no critical token."""
    return critical_value(counted(entropy, reasoning, mode=mode, tokens=tokens, word_ids=word_ids), mode=mode,
                          share=share)


def choose(candidates: Sequence[dict], probes: dict[int, Sequence[torch.Tensor]] | None = None, *,
           mode: str = "forks", share: float = 0.2, rounds: int = 2000, seed: int = 0,
           device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """R1V3's rule, guarded against the probe's noise. `candidates`: {step, critical_entropy, ...};
    `probes`: step -> its probe's counted entropies per prompt (the same prompts at every step).

    The last checkpoint is kept unless an earlier one's critical-token entropy is above the last's with
    the paired interval of the gap (the probe prompts resampled together) above 0; of such, the highest
    (the later on a tie). The interval is 95% when one earlier checkpoint is tested and Bonferroni's
    1 - 0.05/k for k, so that noise moves the choice off the last at most 2.5% of the time however many
    checkpoints are kept. R1V3 names no test; without one the rule follows differences the probe cannot
    see: on `make demo-r1v2` its 64 prompts put the steps' entropies within 0.0032 nats of one another,
    while drawing the probe's rollouts again moves each by 0.01 or more (docs/mini-world-r1v2.md). Returns (chosen,
    {step: its gap to the last, with the interval}). A NaN entropy is never chosen unless all are; when
    the last's is NaN there is nothing to test against, and the highest finite one is taken.

    The resamples go through `resampler`, on `device` (where the probe ran)."""
    from r1v.stats import bootstrap_gap

    if not candidates:
        raise ValueError("no checkpoint to choose from")
    last = max(candidates, key=lambda c: c["step"])
    finite = [c for c in candidates if math.isfinite(c["critical_entropy"])]
    if not finite:
        return last, {}
    if not math.isfinite(last["critical_entropy"]):
        return max(finite, key=lambda c: (c["critical_entropy"], c["step"])), {}
    probes = probes or {}
    tested = [c for c in finite if c is not last and c["step"] in probes and last["step"] in probes]
    level = 1 - 0.05 / max(1, len(tested))
    stat = {at: resampler(probes[at], mode=mode, share=share, device=device)
            for at in ({last["step"], *(c["step"] for c in tested)} if tested else ())}
    gaps, above = {}, []
    for c in tested:
        if len(probes[c["step"]]) != len(probes[last["step"]]):
            raise ValueError(f"the probes of steps {c['step']} and {last['step']} hold different numbers of prompts")
        g = bootstrap_gap(len(probes[last["step"]]), stat[last["step"]], stat[c["step"]], rounds=rounds, seed=seed,
                          level=level)
        gaps[c["step"]] = {**g, "level": level}
        if g["lo"] > 0:
            above.append(c)
    if not above:
        return last, gaps
    return max(above, key=lambda c: (c["critical_entropy"], c["step"])), gaps
