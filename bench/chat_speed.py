"""Chat-path generation speed beside transformers' `generate` called directly.

    python bench/chat_speed.py [--new-tokens 128] [--repeats 5]

Same tiny model (the `tiny` preset), same image and question, greedy. The chat path pays
for everything a user call does (image loading, tiling, template, processor, decoding,
reasoning split). Two baselines, measured in the same run:
* `generate` alone, on inputs prepared once outside the timer (the issue's baseline);
* the plain transformers pipeline a user would write: PIL open + InternVLProcessor + generate.
Target: under 10% overhead (ratio >= 0.90). Tokens/s counts generated tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1v.chat import Chat  # noqa: E402
from r1v.model.builder import preset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-tiles", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model, tok = preset("tiny")
    chat = Chat(model.eval(), tok, max_tiles=a.max_tiles)
    img = Path(tempfile.mkdtemp()) / "scene.png"
    Image.effect_mandelbrot((900, 600), (-2, -1, 1, 1), 100).convert("RGB").save(img)
    question = "How many regions are there?"
    text, imgs = chat.prompt(question, [img])
    inputs = chat.encode([text], imgs)
    gen = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False,
               repetition_penalty=1.0, pad_token_id=tok.pad_token_id, eos_token_id=chat.stop_ids,
               temperature=None, top_p=None, top_k=None)

    def direct() -> int:
        with torch.inference_mode():
            out = model.generate(**inputs, **gen)
        return out.shape[1] - inputs["input_ids"].shape[1]

    def pipeline() -> int:
        image = Image.open(img).convert("RGB")
        enc = chat.processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out.shape[1] - enc["input_ids"].shape[1]

    def via_chat() -> int:
        # min_new_tokens keeps both paths at the same length whatever the random weights emit.
        return chat.ask(question, images=[img], max_new_tokens=a.new_tokens, temperature=0,
                        repetition_penalty=1.0, min_new_tokens=a.new_tokens).new_tokens

    def rate(fn) -> float:
        fn()  # warm-up
        speeds = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            n = fn()
            speeds.append(n / (time.perf_counter() - t))
        return statistics.median(speeds)

    base, pipe, ours = rate(direct), rate(pipeline), rate(via_chat)
    print(f"prompt: {inputs['input_ids'].shape[1]} tokens ({len(imgs)} image, "
          f"{inputs['pixel_values'].shape[0]} tiles); {a.new_tokens} new tokens, median of {a.repeats}")
    print(f"transformers generate (baseline): {base:8.1f} tokens/s")
    print(f"processor + generate (pipeline) : {pipe:8.1f} tokens/s")
    print(f"r1v Chat.ask                    : {ours:8.1f} tokens/s")
    print(f"ratio r1v / generate alone      : {ours / base:8.3f}  (includes image preprocessing)")
    print(f"ratio r1v / processor+generate  : {ours / pipe:8.3f}  (target >= 0.90: under 10% overhead)")


if __name__ == "__main__":
    main()
