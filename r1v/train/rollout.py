"""Batched generation for the recipe: held-out scoring, finding E_{t-1}, and GRPO rollouts.

Generation is the recipe's main cost, so it is batched and each prompt is processed once:

* prompts are left-padded into a batch and *prefilled* once (images encoded once, in that pass);
* for G completions per prompt the prefilled KV cache is repeated G times
  (`DynamicCache.batch_repeat_interleave`), and transformers' `generate` continues from it.
  Stock GRPO loops (TRL's) instead repeat the prompt G times and encode its image G times.

    outs = generate(model, samples, stop_id=..., pad_id=..., n=8, temperature=1.0)  # [[ids]*8]*len
    acc = score(task, model, tok, chunks, n=len(rows), max_new_tokens=96)         # greedy, streamed, scored
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from r1v.generation import UNTRUNCATED
from r1v.train.samples import Sample


def left_pad(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id)
    mask = torch.zeros((len(prompts), n), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, n - len(p) :] = torch.tensor(p)
        mask[i, n - len(p) :] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def prefill(model, samples: Sequence[Sample], pad_id: int, *, upto: int = 0, grad: bool = False,
            image_args: dict | None = None):
    """Run the left-padded prompts once (all but their last `upto` tokens); returns (ids, mask, output)
    with the KV cache in `output.past_key_values`."""
    from r1v.train.samples import image_inputs

    ids, mask = left_pad([s.prompt for s in samples], pad_id)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    cut = ids.shape[1] - upto
    args = image_args if image_args is not None else image_inputs(model, samples, None)
    with torch.set_grad_enabled(grad):
        # only the last position's logits are used: at R1V's scale the rest would be tens of GB
        out = model(input_ids=ids[:, :cut], attention_mask=mask[:, :cut], position_ids=positions(mask[:, :cut]),
                    use_cache=True, logits_to_keep=1, **args)
    return ids, mask, out


@torch.no_grad()
def generate(model, samples: Sequence[Sample], *, stop_id: int, pad_id: int, n: int = 1, temperature: float = 0.0,
             top_p: float = 1.0, max_new_tokens: int = 256, min_new_tokens: int = 0, batch_size: int = 64,
             image_args=None) -> list[list[list[int]]]:
    """n completions (token ids, through the stop token when it came) for every sample."""
    out: list[list[list[int]]] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        ids, mask, pre = prefill(model, chunk, pad_id, upto=1, image_args=image_args(chunk) if image_args else None)
        cache = pre.past_key_values
        if n > 1:
            cache.batch_repeat_interleave(n)
            ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        # Every setting explicit: a checkpoint's generation_config.json (the model card's
        # repetition_penalty 1.05, top_p 0.95) and transformers' own top_k 50 must not leak into greedy
        # scoring or GRPO sampling (`UNTRUNCATED`; vLLM's rollouts are set the same way).
        config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                  do_sample=temperature > 0,
                                  temperature=temperature if temperature > 0 else 1.0, top_p=top_p,
                                  repetition_penalty=1.0, pad_token_id=pad_id, eos_token_id=stop_id, **UNTRUNCATED)
        gen = model.generate(input_ids=ids, attention_mask=mask, cache=cache,
                             generation_config=config)[:, ids.shape[1]:].tolist()
        for i in range(len(chunk)):
            out.append([_trim(g, stop_id) for g in gen[i * n : (i + 1) * n]])
    return out


def _trim(ids: list[int], stop_id: int) -> list[int]:
    return ids[: ids.index(stop_id) + 1] if stop_id in ids else ids


@dataclass
class Scored:
    accuracy: float
    n: int
    ids: list[str]
    correct: list[bool]
    outputs: list[str]
    lengths: list[int]  # generated tokens per output

    groups: list[dict] | None = None  # each item's breakdown keys (family, level, ...)
    hallucinated: list[bool | None] | None = None  # `task.hallucinated` per output (None: cannot tell)

    def summary(self) -> dict:
        import statistics

        out = {"accuracy": round(self.accuracy, 4), "n": self.n,
               "mean_tokens": round(statistics.fmean(self.lengths), 1) if self.lengths else 0.0,
               "median_tokens": statistics.median(self.lengths) if self.lengths else 0}
        known = [h for h in self.hallucinated or [] if h is not None]
        if known:  # R1V2's Table 3: the share of outputs stating a fact the data contradicts
            out["hallucination"] = round(sum(known) / len(known), 4)
            out["hallucination_n"] = len(known)
        out["by"] = _shares(zip(self.groups or [], self.correct))
        if known:  # the same breakdown of the rate: which family's facts the model gets wrong
            out["hallucination_by"] = _shares((g, h) for g, h in zip(self.groups or [], self.hallucinated)
                                              if h is not None)
        return out


def _shares(pairs) -> dict[str, dict[str, float]]:
    """{key: {value: share of True}} over (breakdown keys, flag) pairs."""
    by: dict[str, dict[str, list[bool]]] = {}
    for g, flag in pairs:
        for key, value in g.items():
            by.setdefault(key, {}).setdefault(str(value), []).append(flag)
    return {k: {v: round(sum(x) / len(x), 4) for v, x in sorted(vals.items())} for k, vals in by.items()}


def score(task, model, tokenizer, chunks: Iterable[Sequence[Sample]], *, n: int, stop_id: int, max_new_tokens: int,
          desc: str = "score", keep: bool = True, rollouts=None, images=None) -> Scored:
    """Greedy answers of `model` on the samples of `chunks` (one generation batch each, e.g. streamed
    from `r1v/train/data.py`), scored by `task` (the harness's scorer). `keep=False`: only the
    verdicts are kept (E_{t-1} over all of D), not the outputs. `rollouts` (vLLM's, with
    `images(chunk)` giving each sample's pictures) generate in the model's place."""
    from tqdm.auto import tqdm

    ids, correct, texts, lengths, groups, false = [], [], [], [], [], []
    with tqdm(total=n, desc=desc, leave=False) as bar:
        for chunk in chunks:
            if rollouts is not None:
                gens = rollouts.generate(chunk, images(chunk), max_new_tokens=max_new_tokens)
            else:
                gens = generate(model, chunk, stop_id=stop_id, pad_id=tokenizer.pad_token_id,
                                max_new_tokens=max_new_tokens, batch_size=len(chunk))
            for s, g in zip(chunk, gens):
                text = tokenizer.decode(g[0], skip_special_tokens=True)
                correct.append(task.score(s.item, text).correct)
                if keep:
                    ids.append(s.id)
                    texts.append(text)
                    lengths.append(len(g[0]))
                    groups.append(getattr(s.item, "groups", {}))
                    false.append(task.hallucinated(s.item, text))
            bar.update(len(chunk))
    return Scored(sum(correct) / max(1, len(correct)), len(correct), ids, correct, texts, lengths, groups, false)
