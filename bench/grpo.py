"""One GRPO step: the recipe's `r1v.train.grpo.step` beside stock TRL `GRPOTrainer`, same model, same lengths.

    python bench/grpo.py [--prompts 8] [--generations 8] [--completion 32] [--steps 4]

Both train the projector of the same freshly built R1V (the mini-world's default sizes; the
project's builders) with the same settings: G completions per prompt sampled at temperature 1.0,
every completion exactly `--completion` tokens (min = max new tokens, so both generate and score
the same number of tokens), the same prompts (one 112 px image each, rendered by the same chat
template), beta 0, one update per batch, token-level loss. The reward is a fixed function of the
completion text (so groups carry signal in both). Seconds per step are the median over steps
2..N (step 1 warms up), measured around the whole step: rollouts, rewards, loss, update.

What differs is how the group is computed: TRL repeats each prompt G times, so every image is
encoded G times and every prompt runs G times, in generation and again in the loss; r1v encodes
each image once (frozen encoder, cached features) and runs each prompt once, its KV cache shared
by the G completions in both passes. Target: >= 2x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import world_model  # noqa: E402


def reward(texts):
    """A fixed, text-dependent reward in [0, 1] (a CRC of the text): groups differ in both loops."""
    import zlib

    return [(zlib.crc32(t.encode()) % 100) / 100 for t in texts]


def ours(model, tok, samples, a) -> list[float]:
    from r1v.train.config import GRPOConfig
    from r1v.train.grpo import setup, step
    from r1v.train.samples import Sample

    from r1v.train.data import FeatureCache

    cfg = GRPOConfig(steps=a.steps, prompts_per_step=a.prompts, generations_per_prompt=a.generations,
                     max_completion_tokens=a.completion, lr=1e-4, micro_groups=a.prompts)
    engine, _ = setup(model, cfg)
    engine.set_lr(cfg.lr)
    cache = FeatureCache()
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item, index=s.index) for s in samples[1::2][: a.prompts]]
    stop = tok.eos_token_id
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        row = step(engine, prompts, cfg=cfg, tok=tok, stop_id=stop, cache=cache,
                   rewards_fn=lambda texts, items: (reward(texts), [0.0] * len(texts), [0.0] * len(texts)),
                   min_new_tokens=a.completion)
        times.append(time.perf_counter() - t0)
        assert row["length"] == a.completion, row
    return times


def trl(model, tok, samples, a) -> list[float]:
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1v.model.builder import Trainable, set_trainable
    from r1v.model.processor import build_processor
    from r1v.model.templates import get_template

    processor = build_processor(tok, tile_size=112, tokens_per_tile=16, max_tiles=1,
                                chat_template=get_template("r1v").jinja)
    import io

    rows = []
    for s in samples[1::2][: a.prompts]:
        rows.append({"prompt": [{"role": "user", "content": [{"type": "image"},
                                                             {"type": "text", "text": s.item.question}]}],
                     "image": Image.open(io.BytesIO(s.item.images[0])).convert("RGB")})
    data = Dataset.from_list(rows * (a.steps + 1))
    set_trainable(model, Trainable())
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *args, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, *args, **kw):
            times.append(time.perf_counter() - self.t0)

    def reward_fn(completions, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return reward(texts)

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.prompts * a.generations,
        num_generations=a.generations, max_completion_length=a.completion, temperature=1.0, top_p=1.0,
        generation_kwargs={"min_new_tokens": a.completion}, beta=0.0, learning_rate=1e-4, max_steps=a.steps,
        loss_type="dapo", logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
        seed=0, remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=data,
                          processing_class=processor, callbacks=[Clock()])
    trainer.train()
    lengths = [h.get("completions/mean_length") for h in trainer.state.log_history if "completions/mean_length" in h]
    assert all(x == a.completion for x in lengths), lengths
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    ap.add_argument("--completion", type=int, default=32, help="tokens per completion (exactly)")
    ap.add_argument("--steps", type=int, default=4, help="steps timed (the first is a warm-up)")
    a = ap.parse_args()
    model_fn, tok, samples = world_model(2 * a.prompts)
    print(f"{a.prompts} prompts x G={a.generations}, {a.completion}-token completions, prompt "
          f"{len(samples[1].prompt)} tokens (16 visual), {torch.get_num_threads()} threads")
    t_trl = trl(model_fn(), tok, samples, a)
    t_ours = ours(model_fn(), tok, samples, a)
    med = lambda t: statistics.median(t[1:] if len(t) > 1 else t)  # noqa: E731
    print(f"{'loop':<22} {'s/step':>8} {'completions/s':>14}")
    n = a.prompts * a.generations
    print(f"{'TRL GRPOTrainer':<22} {med(t_trl):>8.3f} {n / med(t_trl):>14.1f}")
    print(f"{'r1v grpo.step':<22} {med(t_ours):>8.3f} {n / med(t_ours):>14.1f}")
    print(f"ratio: {med(t_trl) / med(t_ours):.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
