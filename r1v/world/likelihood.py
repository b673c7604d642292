"""Does a model's own log-likelihood tell the mini-world's preference pairs apart? The check behind
docs/history-r1v2.md's reading of the reward model's result (a last-token head at chance on arithmetic slips
while the LLM's likelihood is not).

    python -m r1v.world.likelihood runs/r1v2-tiny/transfer [--pairs ~/.cache/r1v/world/recipe/rm-eval.jsonl]

Prints, per kind of rejected response, the share of pairs whose chosen response has the higher
summed log-probability under the model (the prompt and image run once; `grpo.completion_logprobs`).
"""

from __future__ import annotations

import argparse
import collections
import os

import torch


def main() -> None:
    from r1v.model.checkpoint import load_model
    from r1v.train.data import Rows
    from r1v.train.grpo import completion_logprobs
    from r1v.train.rm import Pairs
    from r1v.train.samples import Encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an R1V checkpoint, e.g. runs/r1v2-tiny/transfer")
    ap.add_argument("--pairs", default=os.path.expanduser(os.environ.get("R1V_CACHE", "~/.cache/r1v"))
                    + "/world/recipe/rm-eval.jsonl", help="preference pairs (r1v world data writes rm-eval.jsonl)")
    a = ap.parse_args()
    model, tok, tiles = load_model(a.model)
    rows = Rows(a.pairs, need=("id", "prompt", "chosen", "rejected"))
    data = Pairs(rows, Encoder(model, tok, max_tiles=tiles["max_tiles"]))
    right: dict[str, list[bool]] = collections.defaultdict(list)
    with torch.no_grad():
        for k in range(0, len(rows), 50):
            s = data[list(range(k, min(len(rows), k + 50)))]
            lp, m = completion_logprobs(model, prompts=s[0::2], completions=[x.response for x in s], group=2,
                                        pad_id=tok.pad_token_id)
            total = (lp * m).sum(-1)
            for i in range(len(s) // 2):
                right[rows[k + i].get("kind", "all")].append(bool(total[2 * i] > total[2 * i + 1]))
    for kind, r in sorted(right.items()):
        print(f"{kind:14s} chosen more likely in {100 * sum(r) / len(r):.1f}% of {len(r)} pairs")


if __name__ == "__main__":
    main()
