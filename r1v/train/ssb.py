"""R1V2's Selective Sample Buffer (SSB): GRPO's defence against vanishing advantages.

A group whose G rewards are all equal has advantage 0 everywhere and adds nothing to the gradient;
as the policy improves most groups become uniform. The buffer keeps groups whose advantages are
not all 0 (with their advantages and the log-probs their completions had when sampled) and, when a
step's fresh groups carry too little signal, replays buffered groups in place of its uniform ones.
`r1v/train/grpo.py` uses it (`grpo.ssb.*`); the off-policy ratio of a replayed group uses its stored
log-probs (`grpo.old_logprobs`).

R1V2 reports neither the buffer's size, nor when it injects, nor the mix. Decisions, after
VL-Rethinker's SSR (method.md) and TRL's experimental replay-buffer trainer:
* *what*: whole groups (the loss runs a prompt once with its G completions), weighted by the mean
  |advantage| of the group and drawn without replacement in proportion to it;
* *when*: `vanishing` replays only while the fresh groups' effective share is under `target`, and
  only as many groups as reach it; `always` replaces every uniform fresh group;
* *how many*: never more than `max_share` of the step's groups (SSR: half the batch), and only in
  place of uniform fresh groups, so a step costs what it cost without the buffer;
* *bounds*: at most `size` groups (the oldest go first), none older than `max_age` steps (their
  ratio to the current policy would be clipped anyway), each replayed once, then dropped.

The buffer is per process (each replays the groups it sampled) and goes into GRPO's mid-stage
checkpoints, so a resumed run replays what the uninterrupted one would.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class Group:
    """One prompt's G completions as they were sampled: `position` in the prompt data, the token ids,
    their advantages and their per-token log-probs under the sampling policy, and the step. Tokens
    and log-probs are kept as int32 / float32 tensors: at R1V's lengths (8K tokens, G = 8) a group
    is ~0.5 MB that way, several times that as Python lists."""

    position: int
    completions: list[torch.Tensor]
    advantages: list[float]
    logprobs: list[torch.Tensor]
    step: int

    @classmethod
    def of(cls, position: int, completions: Sequence[Sequence[int]], advantages: Sequence[float],
           logprobs: Sequence[Sequence[float]] | torch.Tensor, step: int) -> Group:
        """From token lists and log-probs (a padded (G, C) tensor is cut to each completion's length)."""
        lp = [torch.as_tensor(logprobs[i][: len(c)], dtype=torch.float32).detach().cpu().clone()
              for i, c in enumerate(completions)]
        return cls(int(position), [torch.tensor(list(c), dtype=torch.int32) for c in completions],
                   [float(a) for a in advantages], lp, int(step))

    @property
    def weight(self) -> float:
        return sum(abs(a) for a in self.advantages) / max(1, len(self.advantages))


class SelectiveSampleBuffer:
    def __init__(self, size: int, *, max_age: int = 0):
        if size < 1:
            raise ValueError(f"the buffer holds at least one group, not {size}")
        self.size, self.max_age = size, max_age
        self.groups: deque[Group] = deque()

    def __len__(self) -> int:
        return len(self.groups)

    def add(self, groups: Sequence[Group]) -> int:
        """Keep the groups whose advantages are not all 0 (the oldest go past `size`); how many kept."""
        kept = 0
        for g in groups:
            if g.weight > 0 and all(math.isfinite(a) for a in g.advantages):
                self.groups.append(g)
                kept += 1
        while len(self.groups) > self.size:
            self.groups.popleft()
        return kept

    def expire(self, step: int) -> None:
        """Drop the groups sampled more than `max_age` steps before `step` (0: no age limit)."""
        if self.max_age:
            self.groups = deque(g for g in self.groups if step - g.step <= self.max_age)

    def draw(self, n: int, rng: np.random.Generator) -> list[Group]:
        """Up to `n` groups, without replacement, each draw in proportion to the group's mean
        |advantage|; the drawn groups leave the buffer (replayed once)."""
        n = min(n, len(self.groups))
        if n <= 0:
            return []
        w = np.array([g.weight for g in self.groups], dtype=np.float64)
        picked = rng.choice(len(w), n, replace=False, p=w / w.sum())
        out = [self.groups[i] for i in picked]
        drop = set(int(i) for i in picked)
        self.groups = deque(g for i, g in enumerate(self.groups) if i not in drop)
        return out

    def state_dict(self) -> dict:
        """For `torch.save` (tensors inside): GRPO's mid-stage checkpoints keep it per process."""
        return {"size": self.size, "max_age": self.max_age, "groups": [asdict(g) for g in self.groups]}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.max_age = state["size"], state["max_age"]
        self.groups = deque(Group(**g) for g in state["groups"])


def replay_count(informative: Sequence[bool], *, available: int, when: str, target: float, max_share: float) -> int:
    """How many buffered groups replace uniform fresh ones this step, given which fresh groups are
    informative (advantages not all 0)."""
    b = len(informative)
    useful = sum(bool(x) for x in informative)
    uniform = b - useful
    cap = min(uniform, math.floor(max_share * b + 1e-9), available)
    if when == "always":
        return max(0, cap)
    if when != "vanishing":
        raise ValueError(f"unknown ssb.when {when!r}: vanishing or always")
    if useful >= target * b:
        return 0
    return max(0, min(cap, math.ceil(target * b - 1e-9) - useful))
