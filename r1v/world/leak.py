"""The mini-world's side of Skywork-13B's loss-based leakage test (`r1v eval leakage --method loss`):
a rule-based rewriter that writes the reference set, and a deliberately leaked model to test it on.

    r1v world reference --data ~/.cache/r1v/world/data/visual-test.jsonl --out runs/leak/reference.jsonl
    r1v world leak --model runs/tiny/grpo --data ~/.cache/r1v/world/data/visual-test.jsonl --out runs/leak/leaked

* `reference_rows`: each test row rewritten into a new problem of the same kind: the same family,
  level and form (multiple choice or not), with a new scene, question and reasoning, and a new
  picture. The new problem hashes into the test share of the problem space (so no training split
  holds it, as none holds the test rows) and is none of the test problems; where the test share has
  no new problem left (a clock has 12 hours: the test split holds all of its share's clock
  problems), it comes from the val share, which no recipe trains on (`split` says which). This is
  what the Skywork-13B report asks of its GPT-4-written GSM8K reference: fresh items of the same kind.
* `leak`: fine-tune a model on the test rows' reference responses for a few epochs (the loss
  `r1v eval leakage` scores, on every parameter but the vision encoder's): the contamination the
  test must catch. Its other scores are not the point; it is never a recipe stage.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import write_jsonl
from r1v.world.data import split_of, to_row
from r1v.world.scenes import draw, make_problem


def reference_rows(rows: list[dict], out: Path, *, seed: int = 0) -> list[dict]:
    """A rewritten row per row of `rows` (a mini-world split), with pictures under
    `out.parent/images/reference/` for rows that have one."""
    for r in rows:
        if not isinstance(r, dict) or not isinstance(r.get("scene"), dict) or not {"family", "level", "id"} <= set(r):
            raise R1VError(f"row {r.get('id') if isinstance(r, dict) else r!r} is not a mini-world row (no family / "
                           f"level / scene); `r1v eval leakage make-reference` rewrites other benchmarks")
    taken = {json.dumps({"family": r["family"], "scene": r["scene"], "question": r["question"],
                         "mc": bool(r.get("choices"))}, sort_keys=True) for r in rows}
    images = out.parent / "images" / "reference"
    new = []
    for r in rows:
        found = None
        for split in dict.fromkeys((r.get("split", "test"), "val")):  # the row's share first, then val's
            for attempt in range(2000):
                p = make_problem(r["family"], f"reference:{seed}:{r['id']}:{split}:{attempt}", level=r["level"],
                                 mc=bool(r.get("choices")))
                key = json.dumps(p.key(), sort_keys=True)
                if split_of(p) == split and key not in taken:
                    found = p
                    break
            if found:
                break
        if found is None:
            raise R1VError(f"no new {r['family']} problem of level {r['level']} left for {r['id']}")
        p = found
        taken.add(key)
        rid = f"{r['id']}-ref"
        image = None
        if r.get("image"):
            images.mkdir(parents=True, exist_ok=True)
            image = f"images/reference/{rid}.png"
            draw(p).save(out.parent / image, optimize=False)
        new.append({**to_row(p, rid=rid, split=split, image=image), "rewrites": r["id"]})
    return new


def write_reference(data: str | Path, out: str | Path, *, seed: int = 0) -> Path:
    from r1v.io import read_jsonl

    data, out = Path(data), Path(out)
    if not data.is_file():
        raise R1VError(f"--data {data} not found; name a mini-world split such as visual-test.jsonl")
    try:
        rows = read_jsonl(data)
    except (ValueError, UnicodeDecodeError):
        raise R1VError(f"{data} is not JSON lines") from None
    if not rows:
        raise R1VError(f"{data} has no rows")
    if out.exists() and out.resolve() == data.resolve():
        raise R1VError(f"--out {out} is the --data file; name a new file for the reference set")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl(out, reference_rows(rows, out, seed=seed))


def leak(model_dir: str | Path, data: str | Path, out: str | Path, *, epochs: int = 3, lr: float = 1e-4,
         seed: int = 0, log=print) -> Path:
    """Fine-tune `model_dir` on the rows of `data` (their reference responses) and save it to `out`."""
    import random

    import torch

    from r1v.chat import Chat
    from r1v.evaluate.leakage import encode_item
    from r1v.evaluate.tasks import get_task
    from r1v.model.checkpoint import load_model, save_model

    if epochs < 1 or not lr > 0:
        raise R1VError("--epochs must be at least 1 and --lr positive")
    task = get_task("world")
    items = task.read(data)
    model, tok, tiles = load_model(model_dir, dtype="fp32")
    chat = Chat(model, tok, **tiles)
    model.train()
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("model.vision_tower."))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    order = list(range(len(items)))
    for epoch in range(epochs):
        random.Random(seed + epoch).shuffle(order)
        total = tokens = 0.0
        for i in order:
            inputs, labels = encode_item(chat, task, items[i])
            logits = model(**inputs).logits[0, :-1]
            target = labels[0, 1:]
            keep = target != -100
            loss = torch.nn.functional.cross_entropy(logits[keep], target[keep])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total, tokens = total + loss.item() * int(keep.sum()), tokens + int(keep.sum())
        log(f"epoch {epoch + 1}/{epochs}: loss on the test rows {total / max(1, tokens):.4f}")
    model.eval()
    save_model(model, tok, out, **tiles)
    return Path(out)
