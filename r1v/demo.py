"""A plumbing check in seconds on a CPU, fully offline: no training (`make demo` runs the recipe).

    r1v demo [--out runs/demo]

1. build the tiny R1V (InternViT-style tower -> pixel-shuffle MLP -> Qwen2) with random weights;
2. write it in the official Skywork layout (fused qkv, `vision_model.` / `mlp1.` / `language_model.`);
3. load that directory back natively and check its logits equal the in-memory model's;
4. convert it `--to hf` and back `--to skywork`, and check the round trip is bit-identical;
5. draw a test image and chat about it, streaming the reasoning apart from the answer.

The weights are random, so the reply is noise: this shows the plumbing. `make demo` (the recipe
on the mini-world) makes a model worth asking, `runs/tiny/grpo`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw


def draw_scene(path: Path) -> Path:
    img = Image.new("RGB", (640, 360), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((40, 40, 160, 160), fill="red")
    d.ellipse((200, 60, 300, 160), fill="red")
    d.rectangle((360, 80, 480, 200), fill="blue")
    d.polygon([(520, 300), (600, 300), (560, 220)], fill="green")
    img.save(path)
    return path


def _same_weights(a: Path, b: Path) -> bool:
    from r1v.model.checkpoint import inspect, iter_tensors

    ta = dict(iter_tensors(inspect(a).weight_files))
    tb = dict(iter_tensors(inspect(b).weight_files))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def run(out: str = "runs/demo") -> None:
    from r1v.chat import Chat
    from r1v.chat import TerminalPrinter
    from r1v.model.builder import preset
    from r1v.model.checkpoint import convert, load_model, save_model

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def step(msg: str) -> None:
        print(f"[{time.time() - t0:5.1f}s] {msg}", flush=True)

    model, tok = preset("tiny")
    step(f"built tiny R1V: {sum(p.numel() for p in model.parameters()):,} parameters")
    official = save_model(model, tok, root / "tiny-skywork", layout="skywork")
    step(f"wrote the official layout: {official}")

    loaded, _, _ = load_model(official)
    image = draw_scene(root / "scene.png")
    chat = Chat(loaded, tok, max_tiles=4)
    text, imgs = chat.prompt("How many red circles are there?", [image])
    inputs = chat.encode([text], imgs)
    with torch.no_grad():
        diff = (loaded(**inputs).logits - model(**inputs).logits).abs().max().item()
    step(f"loaded it back natively: max |logit difference| with image = {diff:.2e}")

    hf = convert(official, root / "tiny-hf", to="hf", overwrite=True, progress=False)
    back = convert(hf, root / "tiny-skywork-roundtrip", to="skywork", overwrite=True, progress=False)
    step(f"skywork -> hf -> skywork bit-identical: {_same_weights(official, back)}")

    step(f"chat about {image} (greedy, 48 tokens, random weights: expect noise)")
    printer = TerminalPrinter()
    reply = chat.ask("How many red circles are there?", images=[image], stream=printer,
                     max_new_tokens=48, temperature=0)
    printer.finish(reply)
    step(f"done; try: r1v chat --model {official} --image {image} \"What shapes do you see?\"")
