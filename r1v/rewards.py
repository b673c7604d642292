"""Rewards and data filters: pure functions, each with adversarial tests (`tests/test_rewards.py`).

GRPO's rule rewards, TRL-style (`fn(completions, **columns) -> list[float]`):
* `accuracy_reward`: 1 when the task's own scorer (the benchmark's official rules, the think rules
  included) marks the completion correct; 0 otherwise, and 0 for an answer the rules *guessed*
  (MMMU picks a random option when it finds none) or for no answer at all;
* `format_reward`: 1 for the DeepSeek-R1 template the prompt opens: non-empty reasoning, exactly
  one `</think>`, then an answer holding `\\boxed{...}`.

R1V2's hybrid GRPO reward (`r1v/train/grpo.py`):
* `normalise_rm`: the reward model's raw, unbounded score mapped to a bounded term: a z-score
  within the group, clipped (`group`), or a sigmoid (`sigmoid`); a NaN or infinite score gets the
  scheme's floor;
* `hybrid_reward`: r = accuracy_weight * r_rule + format_weight * r_format + rm_weight * norm(r_theta),
  the reward-model term never positive for a completion that fails the format;
* `informative_groups`: the offline prompt-pool filter's rule: a group is kept when its rewards differ.

R1V2's preference signal (MPO's pairs; `r1v/train/mpo.py`):
* `preference_reward`: the reward model's raw score plus the rule checks (accuracy, format, and a
  penalty for a fact the data contradicts), weighted;
* `best_worst_pairs`: per prompt, its best completion against its worst when the gap reaches the
  threshold (R1V2's "calibrated threshold"), else no pair; with `eligible`, only a completion that
  keeps the rules (`mpo.factual_chosen`: states no false fact) may be the chosen one.

The iterative SFT's data selection (method.md, Stage 2):
* `rubric_score`: the mini-world's reward model, 0..5 (the paper's is a learnt RM; the mini-world
  can check a chain exactly, so its RM is a rubric). Pluggable: `sft.reward_model=field` reads a
  `score` column written by any RM, e.g. the LLM judge of `r1v distill`;
* `d_rm(scores, tau)`: D_rm(tau), the samples scoring at least tau;
* `mistakes(correct)`: E_{t-1}, the samples M_{t-1} answered wrongly;
* `iteration_ids`: D_t = D_rm(tau_t) u E_{t-1}.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from r1v.evaluate.answers import last_boxed
from r1v.model.templates import THINK_CLOSE, THINK_OPEN

_ARITH = re.compile(r"(-?\d+)\s*([+\-])\s*(-?\d+)\s*=\s*(-?\d+)")


def accuracy_reward(completions: Sequence[str], *, items, task) -> list[float]:
    out = []
    for item, text in zip(items, completions):
        s = task.score(item, text)
        out.append(1.0 if s.correct and not s.guessed else 0.0)
    return out


def format_reward(completions: Sequence[str], **_) -> list[float]:
    """The completion is what follows the prompt's `<think>\\n`: reasoning `</think>` answer."""
    out = []
    for text in completions:
        body = text.removeprefix(THINK_OPEN)
        reasoning, sep, answer = body.partition(THINK_CLOSE)
        ok = (bool(sep) and bool(reasoning.strip()) and THINK_CLOSE not in answer and THINK_OPEN not in answer
              and THINK_OPEN not in reasoning and _boxed_something(answer))
        out.append(1.0 if ok else 0.0)
    return out


def _boxed_something(answer: str) -> bool:
    """The box the scorers read (the rightmost, braces balanced) holds more than braces and spaces:
    `\\boxed{}}` or `\\boxed{{}` is no answer, `\\boxed{\\frac{1}{2}}` is one."""
    content = last_boxed(answer)
    return content is not None and re.search(r"[^{}\s]", content) is not None


def group_advantages(rewards: Sequence[float], group: int, eps: float = 1e-4) -> list[float]:
    """GRPO's advantage: (r - mean of its group) / (std of its group + eps); groups of `group`
    consecutive rewards. A group whose rewards are all equal gives 0 (no signal)."""
    import statistics

    if len(rewards) % group:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group}")
    out = []
    for g in range(0, len(rewards), group):
        rs = rewards[g : g + group]
        mean, std = statistics.fmean(rs), statistics.pstdev(rs) if group > 1 else 0.0
        out += [(r - mean) / (std + eps) if std > 0 else 0.0 for r in rs]
    return out


def informative_groups(rewards: Sequence[float], group: int) -> list[bool]:
    """Per group of `group` consecutive rewards: True when they differ (its advantages are not all 0).
    The offline pool filter keeps exactly these prompts (all right or all wrong: dropped)."""
    if len(rewards) % group:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group}")
    return [max(rewards[g : g + group]) != min(rewards[g : g + group]) for g in range(0, len(rewards), group)]


def effective_ratio(rewards: Sequence[float], group: int) -> float:
    """Share of groups whose rewards differ (non-zero advantage): R1V2's vanishing-advantage measure."""
    groups = [rewards[g : g + group] for g in range(0, len(rewards), group)]
    return sum(max(g) != min(g) for g in groups) / max(1, len(groups))


# --------------------------------------------------------------------------- GRPO's hybrid reward
def normalise_rm(scores: Sequence[float], group: int, *, scheme: str = "group", clip: float = 2.0,
                 center: float = 0.0, scale: float = 1.0) -> list[float]:
    """The reward model's raw scores (unbounded: Skywork-VL Reward gives 5.86 or -15.5) as a bounded
    term, per completion; groups of `group` consecutive scores.

    R1V2 does not say how it scales r_theta next to the 0/1 rules. Two schemes:
    * `group`: (r - mean) / std within the group over its finite scores, clipped to [-clip, clip] and
      divided by clip, so in [-1, 1]. Invariant to the reward model's offset and scale, so one weight
      fits any reward model; a group whose finite scores are all equal (or a group of one) gets 0;
    * `sigmoid`: sigmoid((r - center) / scale), in [0, 1]: absolute, so a group the reward model
      rates uniformly high keeps its credit (but then adds no advantage either).
    A NaN or infinite score (a broken endpoint, an overflow) is never rewarded: it gets the scheme's
    floor (-1, or 0) and is left out of its group's mean and std."""
    import math

    if len(scores) % group:
        raise ValueError(f"{len(scores)} reward-model scores do not split into groups of {group}")
    if scheme == "sigmoid":
        if not scale > 0:
            raise ValueError(f"the sigmoid's scale must be above 0, not {scale}")
        out = []
        for r in scores:
            r = float(r)
            if not math.isfinite(r):
                out.append(0.0)
                continue
            z = (r - center) / scale
            out.append(1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0)  # exp(700+) overflows a float
        return out
    if scheme != "group":
        raise ValueError(f"unknown reward-model normalisation {scheme!r}: group or sigmoid")
    if not clip > 0:
        raise ValueError(f"the clip must be above 0, not {clip}")
    out = []
    for g in range(0, len(scores), group):
        rs = [float(r) for r in scores[g : g + group]]
        # a z-score does not change with scale: divide by the largest |r| first, so 1e308s do not overflow
        big = max((abs(r) for r in rs if math.isfinite(r)), default=0.0) or 1.0
        rs = [r / big for r in rs]
        ok = [r for r in rs if math.isfinite(r)]
        mean = math.fsum(ok) / len(ok) if ok else 0.0
        std = math.sqrt(math.fsum((r - mean) ** 2 for r in ok) / len(ok)) if ok else 0.0
        for r in rs:
            if not math.isfinite(r):
                out.append(-1.0)
            elif std > 0 and math.isfinite(std):
                out.append(max(-clip, min(clip, (r - mean) / std)) / clip)
            else:
                out.append(0.0)
    return out


def hybrid_reward(accuracy: Sequence[float], fmt: Sequence[float], rm: Sequence[float] | None, *,
                  accuracy_weight: float = 1.0, format_weight: float = 1.0, rm_weight: float = 1.0) -> list[float]:
    """R1V2's GRPO reward, r = r_rule + r_theta + r_format, weighted: `rm` is the normalised term
    (`normalise_rm`), None for rules alone.

    Reward hacking: a completion that fails the format (no reasoning, no `</think>`, no non-empty
    `\\boxed{}`) keeps the reward model's penalty but never its credit (min(term, 0)), so an empty
    or format-only answer the reward model happens to like earns nothing. The rule part is the
    task's scorer, which gives a guess 0 (`accuracy_reward`)."""
    rm = [0.0] * len(accuracy) if rm is None else rm
    if not len(rm) == len(accuracy) == len(fmt):
        raise ValueError("one accuracy, format and reward-model term per completion")
    return [accuracy_weight * a + format_weight * f + rm_weight * (t if f > 0 else min(t, 0.0))
            for a, f, t in zip(accuracy, fmt, rm)]


# --------------------------------------------------------------------------- MPO's pairs
def preference_reward(rm: Sequence[float] | None, accuracy: Sequence[float], fmt: Sequence[float],
                      hallucinated: Sequence[bool | None], *, rm_weight: float = 1.0, accuracy_weight: float = 1.0,
                      format_weight: float = 1.0, fact_weight: float = 1.0) -> list[float]:
    """rm_weight * r_theta + accuracy_weight * accuracy + format_weight * format - fact_weight * [a false
    fact] per completion; `rm` None: the rules alone; a hallucination flag of None (the data does
    not know its facts) costs nothing."""
    rm = [0.0] * len(accuracy) if rm is None else rm
    if not len(rm) == len(accuracy) == len(fmt) == len(hallucinated):
        raise ValueError("one reward-model score, accuracy, format and hallucination flag per completion")
    return [rm_weight * r + accuracy_weight * a + format_weight * f - fact_weight * bool(h)
            for r, a, f, h in zip(rm, accuracy, fmt, hallucinated)]


def best_worst_pairs(rewards: Sequence[float], group: int, threshold: float,
                     eligible: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """(chosen, rejected) indices into `rewards`, one pair per group of `group` consecutive
    completions: its highest-rewarded against its lowest, made only when the gap is at least
    `threshold` (and above 0: equal rewards never make a pair). Ties go to the earlier sample.
    `eligible`: which completions may be chosen (the rest may still be rejected); the chosen is
    then the best eligible one, and a group with none makes no pair. A NaN or infinite reward (a
    reward model that failed on that sample) takes no part: it is neither chosen nor rejected."""
    if len(rewards) % group:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group}")
    if eligible is not None and len(eligible) != len(rewards):
        raise ValueError("one eligibility flag per reward")
    out = []
    for g in range(0, len(rewards), group):
        rs = list(rewards[g : g + group])
        scored = [k for k in range(group) if math.isfinite(rs[k])]
        can = [k for k in scored if eligible is None or eligible[g + k]]
        if not can:
            continue
        hi = max(can, key=lambda k: (rs[k], -k))
        lo = min(scored, key=lambda k: (rs[k], k))
        gap = rs[hi] - rs[lo]
        if gap > 0 and gap >= threshold:
            out.append((g + hi, g + lo))
    return out


# --------------------------------------------------------------------------- SFT data selection
def rubric_score(response: str, *, reference: str, correct: bool) -> int:
    """The mini-world's reward model: 0..5 for a response given the problem's reference chain.

    +1 format (`format_reward`), +2 correct final answer (the task's scorer, passed in),
    +1 every `a +/- b = c` in the reasoning is true, +1 every fact it states (a sentence without
    `=`, e.g. "red shapes 3.") is one the reference states. Empty reasoning earns neither of the
    last two."""
    score = int(format_reward([response])[0]) + (2 if correct else 0)
    reasoning = response.removeprefix(THINK_OPEN).partition(THINK_CLOSE)[0]
    sentences = [s.strip() for s in reasoning.split(".") if s.strip()]
    if not sentences:
        return score
    sums = _ARITH.findall(reasoning)
    if all(int(a) + (int(b) if op == "+" else -int(b)) == int(c) for a, op, b, c in sums):
        score += 1
    facts = {s.strip() for s in reference.split(".") if s.strip() and "=" not in s}
    stated = [s for s in sentences if "=" not in s]
    if all(s in facts for s in stated):
        score += 1
    return score


def d_rm(scores: np.ndarray, tau: int) -> np.ndarray:
    """D_rm(tau): the rows (indices into D) whose reward-model score is tau or more."""
    return np.flatnonzero(np.asarray(scores) >= tau)


def mistakes(rows: Sequence[int], correct: Sequence[bool]) -> np.ndarray:
    """E: the rows whose extracted answer was wrong."""
    return np.asarray([i for i, c in zip(rows, correct) if not c], dtype=np.int64)


def iteration_ids(scores: np.ndarray, tau: int, wrong: Sequence[int]) -> np.ndarray:
    """D_t = D_rm(tau_t) u E_{t-1} (method.md, Stage 2), as sorted row indices."""
    return np.union1d(d_rm(scores, tau), np.asarray(wrong, dtype=np.int64))
