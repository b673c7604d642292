"""The optimiser both mini-world training loops share: AdamW, linear warm-up, cosine decay, clipping."""

from __future__ import annotations

import math

import torch


class Optimiser:
    """AdamW (betas 0.9 / 0.95) with `warmup` of the steps rising linearly, then a cosine decay
    to `floor` x lr, and gradients clipped to norm 1."""

    def __init__(self, params, *, lr: float, steps: int, weight_decay: float = 0.0, warmup: float = 0.05,
                 floor: float = 0.1):
        self.params = [p for p in params if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
        warm = max(1, int(warmup * steps))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda s: min(1.0, (s + 1) / warm) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * s / steps))))

    def step(self, loss: torch.Tensor) -> float:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()
