"""One GRPO step: the recipe's `r1v.train.grpo.step` beside stock TRL `GRPOTrainer`, same model, same lengths;
and the same with R1V2's Selective Sample Buffer beside TRL's replay-buffer trainer.

    python bench/grpo.py [--prompts 8] [--generations 8] [--completion 32] [--steps 4] [--rounds 5]
                         [--trl-replay DIR]

Both train the projector of the same freshly built R1V (the mini-world's default sizes; the
project's builders) with the same settings: G completions per prompt sampled at temperature 1.0,
every completion exactly `--completion` tokens (min = max new tokens, so both generate and score
the same number of tokens), the same prompts (one 112 px image each, rendered by the same chat
template), beta 0, one update per batch, token-level loss. The reward is a fixed function of the
completion text (so groups carry signal in both; a quarter of the groups are made uniform, so the
buffers have groups to replace). Seconds per step are the median over steps 2..N (step 1 warms
up), measured around the whole step: rollouts, rewards, loss, update.

The loops run interleaved, one round after another (TRL, r1v, r1v + SSB[, TRL replay] per round,
`--rounds`, at least 5), and the ratios are per round: the median and the spread over rounds are
printed, since one A-then-B timing on a shared machine swings several-fold.

What differs is how the group is computed: TRL repeats each prompt G times, so every image is
encoded G times and every prompt runs G times, in generation and again in the loss; r1v encodes
each image once (frozen encoder, cached features) and runs each prompt once, its KV cache shared
by the G completions in both passes. Target: >= 2x. The SSB row shows what the buffer costs (its
replayed groups replace uniform ones, so a step computes as many groups either way).

TRL's `GRPOWithReplayBufferTrainer` was experimental and is gone from TRL 1.14 on (checked: 1.14.2,
1.15.0, 1.16.0); 1.0.0 has it. `--trl-replay DIR` runs it from a folder holding that version, in a
subprocess (`pip install --no-deps --target DIR trl==1.0.0`; `make bench` does this).
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


def reward(texts, generations: int = 8):
    """A fixed, text-dependent reward in [0, 1] (a CRC of the text): groups differ in both loops,
    except every fourth group, whose rewards are all 0 (so the replay buffers have work)."""
    import zlib

    return [0.0 if (k // generations) % 4 == 3 else (zlib.crc32(t.encode()) % 100) / 100 for k, t in enumerate(texts)]


def ours(model, tok, samples, a, *, ssb: bool = False) -> list[float]:
    from r1v.train.config import GRPOConfig, SSBConfig
    from r1v.train.grpo import setup, step
    from r1v.train.samples import Sample
    from r1v.train.ssb import SelectiveSampleBuffer

    from r1v.train.data import FeatureCache

    cfg = GRPOConfig(steps=a.steps, prompts_per_step=a.prompts, generations_per_prompt=a.generations,
                     max_completion_tokens=a.completion, lr=1e-4, micro_groups=a.prompts,
                     ssb=SSBConfig(enabled=ssb, when="always"))
    engine, _ = setup(model, cfg)
    engine.set_lr(cfg.lr)
    cache = FeatureCache()
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item, index=s.index) for s in samples[1::2][: a.prompts]]
    buffer = SelectiveSampleBuffer(cfg.ssb.size, max_age=cfg.ssb.max_age) if ssb else None
    stop = tok.eos_token_id
    times, replayed = [], 0
    for i in range(a.steps):
        t0 = time.perf_counter()
        row = step(engine, prompts, cfg=cfg, tok=tok, stop_id=stop, cache=cache,
                   rewards_fn=lambda texts, items, **_: (reward(texts, a.generations), {"accuracy": [0.0] * len(texts),
                                                                                       "format": [0.0] * len(texts)}),
                   min_new_tokens=a.completion, buffer=buffer, step_no=i,
                   replay_samples=lambda pos: [next(p for p in prompts if p.index == q) for q in pos])
        times.append(time.perf_counter() - t0)
        replayed += row["replayed"]
        assert row["length"] == a.completion, row
    assert not ssb or replayed, "the buffer replayed nothing: the SSB row would measure no replay"
    return times


def trl(model, tok, samples, a, *, replay: bool = False) -> list[float]:
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if replay:  # TRL 1.0's experimental trainer (see the docstring)
        from trl.experimental.grpo_with_replay_buffer import GRPOWithReplayBufferConfig as GRPOConfig
        from trl.experimental.grpo_with_replay_buffer import GRPOWithReplayBufferTrainer as GRPOTrainer

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
        return reward(texts, a.generations)

    extra = {"replay_buffer_size": 64} if replay else {}
    args = GRPOConfig(**extra,
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
    import json
    import os
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    ap.add_argument("--completion", type=int, default=32, help="tokens per completion (exactly)")
    ap.add_argument("--steps", type=int, default=4, help="steps timed per loop and round (the first is a warm-up)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5)")
    ap.add_argument("--trl-replay", default="", help="a folder holding TRL 1.0.0: adds its replay-buffer trainer")
    ap.add_argument("--only", default="", help=argparse.SUPPRESS)  # one loop, its times as JSON (the subprocess)
    a = ap.parse_args()
    if a.rounds < 5 and not a.only:
        ap.error("--rounds must be at least 5: the ratio is a median over interleaved rounds")
    model_fn, tok, samples = world_model(2 * a.prompts)
    med = lambda t: statistics.median(t[1:] if len(t) > 1 else t)  # noqa: E731
    if a.only == "trl-replay":
        print(json.dumps(trl(model_fn(), tok, samples, a, replay=True)))
        return
    loops = {"TRL GRPOTrainer": lambda: trl(model_fn(), tok, samples, a),
             "r1v grpo.step": lambda: ours(model_fn(), tok, samples, a),
             "r1v grpo.step + SSB": lambda: ours(model_fn(), tok, samples, a, ssb=True)}
    if a.trl_replay:
        def replay():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([a.trl_replay, os.environ.get("PYTHONPATH", "")]),
                   "TRL_EXPERIMENTAL_SILENCE": "1"}
            cmd = [sys.executable, __file__, "--only", "trl-replay", "--prompts", str(a.prompts), "--generations",
                   str(a.generations), "--completion", str(a.completion), "--steps", str(a.steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(out.stderr.strip().splitlines()[-1])
            return json.loads(out.stdout.strip().splitlines()[-1])
        try:
            replay()
            loops["TRL 1.0 replay buffer"] = replay
        except RuntimeError as e:  # it ran with TRL 1.0's transformers; here it may not
            print(f"TRL 1.0's GRPOWithReplayBufferTrainer does not run here ({e}): no row for it")
            a.trl_replay = ""
    print(f"{a.prompts} prompts x G={a.generations}, {a.completion}-token completions, prompt "
          f"{len(samples[1].prompt)} tokens (16 visual), {torch.get_num_threads()} threads, {a.rounds} rounds")
    per = {k: [] for k in loops}
    for r in range(a.rounds):
        for name, fn in loops.items():
            per[name].append(med(fn()))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in per.items()), flush=True)
    n = a.prompts * a.generations
    print(f"\n{'loop':<24} {'s/step (median)':>16} {'completions/s':>14}")
    for name, t in per.items():
        print(f"{name:<24} {statistics.median(t):>16.3f} {n / statistics.median(t):>14.1f}")

    def ratio(x: str, y: str) -> str:
        rs = sorted(p / q for p, q in zip(per[x], per[y]))
        return f"{statistics.median(rs):.2f}x (rounds: {rs[0]:.2f} to {rs[-1]:.2f})"

    print(f"\nTRL GRPOTrainer / r1v grpo.step: {ratio('TRL GRPOTrainer', 'r1v grpo.step')} (target >= 2x)")
    print(f"r1v + SSB / r1v: {ratio('r1v grpo.step + SSB', 'r1v grpo.step')} (the buffer's cost; ~1x expected)")
    if a.trl_replay:
        print(f"TRL 1.0 replay buffer / r1v + SSB: {ratio('TRL 1.0 replay buffer', 'r1v grpo.step + SSB')}")


if __name__ == "__main__":
    main()
