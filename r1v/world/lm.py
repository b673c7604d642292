"""The mini-world's language models: a base LM, and from it a substitute and a reasoning LM.

As in R1V, the two LMs the method needs descend from one base, so they share an embedding space
(Qwen2.5-32B -> Qwen2.5-32B-Instruct and DeepSeek-R1-Distill-Qwen-32B):

* base: a Qwen2 decoder pretrained on plain-text problems of the four families (the scene stated
  in words; 70% with a worked solution, the rest with the answer alone) and on short drills of the
  skills every chain uses (arithmetic, looking a value up by its key, counting);
* substitute (the "instruct" model): the base fine-tuned on the chat template to work briefly in
  its answer, with no think block: `</think>\\nred shapes 3. blue circles 2. 3 + 2 = 5.\\n\\boxed{5}`,
  as Qwen2.5-Instruct states its steps in the answer where R1-Distill-Qwen thinks first;
* reasoning (the "R1-distilled" model): the base fine-tuned to write its chain of thought first,
  `red shapes 3. blue circles 2. 3 + 2 = 5.</think>\\n\\boxed{5}`.

Training is a plain loop (AdamW, warm-up then cosine decay, length-bucketed right-padded batches,
loss on the completion only for the chat models). Measured here: on a CPU budget, steps spent
fine-tuning the reasoning LM on chat examples buy more accuracy than base pretraining steps (the
completion-only loss puts every gradient on the chain), so the default spends most there.
Scoring uses the evaluation harness's `world` task, so a held-out accuracy here is what
`r1v eval run --bench world` reports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

from r1v.model.builder import tiny_language_config
from r1v.model.templates import render
from r1v.world.data import target
from r1v.world.optim import Optimiser
from r1v.world.scenes import COLOURS, MAX_BAR, SHAPES, Problem, picture, prompt

Example = tuple[list[int], list[int]]  # (input ids, labels with -100 where no loss)


@dataclass
class LMSize:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    tied: bool = False  # R1V's LMs have an untied head


def new_lm(vocab_size: int, size: LMSize, *, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = tiny_language_config(
        vocab_size, hidden_size=size.hidden, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads, intermediate_size=size.intermediate, max_position_embeddings=1024,
        tie_word_embeddings=size.tied,
    )
    return Qwen2ForCausalLM(cfg)


def freeze_bottom(model: Qwen2ForCausalLM, layers: int) -> None:
    """Freeze the input embeddings and the first `layers` decoder layers (-1: nothing).

    Why: fine-tuned in full, the world's two LMs move 28-34% (substitute) and 42-52% (reasoning) of
    each layer's weight norm away from the base, and a projector fitted to the substitute loses 40% of
    its accuracy on the reasoning LM. Freezing the bottom keeps the part that first reads a visual
    token the same in both (docs/history-mini-world.md, "Why transfer loses")."""
    if layers < 0:
        return
    model.get_input_embeddings().weight.requires_grad_(False)
    for layer in model.model.layers[:layers]:
        layer.requires_grad_(False)


# --------------------------------------------------------------------------- examples
def token_order() -> list[int]:
    """The grid cell of each visual token, as transformers' ("v2") pixel shuffle orders them."""
    from r1v.world.vit import token_cells

    return token_cells("v2")


def stated(p: Problem, as_picture: bool = False, order: list[int] | None = None) -> str:
    """The text-only problem: its scene in words, or as the picture's cell words (`scenes.picture`)."""
    if not as_picture:
        return p.prompt(text_only=True)
    return prompt(p.question, p.choices, picture(p, order or token_order()))


def base_examples(tok: PreTrainedTokenizerBase, problems: Sequence[Problem], *, worked: Sequence[bool],
                  pictured: Sequence[bool] | None = None) -> list[Example]:
    """Pretraining documents: each text-only problem, a worked solution or not, the answer."""
    pictured = pictured or [False] * len(problems)
    order = token_order()
    texts = [stated(p, pic, order) + (f"\nSolution: {p.reasoning}" if w else "") + f"\nThe answer is {p.answer}."
             for p, w, pic in zip(problems, worked, pictured)]
    return documents(tok, texts)


def documents(tok: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Example]:
    """Plain-text training documents, BOS ... EOS, loss on every token."""
    out = []
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:  # one batched call: fast tokenizers are
        ids = [tok.bos_token_id, *ids, tok.eos_token_id]            # ~50x quicker than one call per text
        out.append((ids, list(ids)))
    return out


def drill_text(rng: random.Random) -> str:
    """A short pretraining drill of one skill every chain uses, many times over (a curriculum:
    tiny models learn retrieval and counting far faster from dense drills than from whole problems).

    arithmetic: "7 + 5 = 12. 20 - 3 = 17. ..." over the world's range (0..30 and 1..12);
    lookup:     "Bars: red 5, blue 3, green 7, yellow 2. blue 3. red 5. ..." (find a key, copy its value);
    counting:   "Objects: red circle, blue square, red square. red shapes 2. squares 2. ..."."""
    kind = rng.choice(("arithmetic", "lookup", "counting"))
    if kind == "arithmetic":
        lines = []
        for _ in range(6):
            a, b = rng.randint(0, 30), rng.randint(1, 12)
            lines.append(f"{a} - {b} = {a - b}." if a >= b and rng.random() < 0.5 else f"{a} + {b} = {a + b}.")
        text = " ".join(lines)
    elif kind == "lookup":
        colours = rng.sample(COLOURS, 4)
        values = {c: rng.randint(1, MAX_BAR) for c in colours}
        text = _lookup_drill(values, [rng.choice(colours) for _ in range(6)])
    else:
        objs = [(rng.choice(COLOURS), rng.choice(SHAPES)) for _ in range(rng.randint(2, 8))]
        text = _count_drill(objs, [_count_ask(objs, rng) for _ in range(5)])
    return text


def _lookup_drill(values: dict[str, int], asks: Sequence[str]) -> str:
    return "Bars: " + ", ".join(f"{c} {v}" for c, v in values.items()) + ". " + " ".join(
        f"{c} {values[c]}." for c in asks)


def _count_ask(objs: Sequence[tuple[str, str]], rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        c = rng.choice(COLOURS)
        return f"{c} shapes", sum(o[0] == c for o in objs)
    sh = rng.choice(SHAPES)
    return f"{sh}s", sum(o[1] == sh for o in objs)


def _count_drill(objs: Sequence[tuple[str, str]], asks: Sequence[tuple[str, int]]) -> str:
    return "Objects: " + ", ".join(f"{c} {sh}" for c, sh in objs) + ". " + " ".join(f"{a} {k}." for a, k in asks)


def chat_prompt(tok: PreTrainedTokenizerBase, question: str) -> list[int]:
    return tok(render("r1v", [{"role": "user", "content": question}], bos_token=tok.bos_token),
               add_special_tokens=False)["input_ids"]


def chat_examples(tok: PreTrainedTokenizerBase, problems: Sequence[Problem], style: str,
                  pictured: Sequence[bool] | None = None, rechecked: Sequence[bool] | None = None) -> list[Example]:
    """Chat-template examples of the text-only problems; the loss covers the completion only.

    `rechecked` problems restate their whole chain once more before `</think>`: the reasoning LM's
    overthinking, as R1-distilled models re-verify what they already worked out."""
    pictured = pictured or [False] * len(problems)
    rechecked = rechecked or [False] * len(problems)
    order = token_order()
    prompts = [render("r1v", [{"role": "user", "content": stated(p, pic, order)}], bos_token=tok.bos_token)
               for p, pic in zip(problems, pictured)]
    enc = tok(prompts, add_special_tokens=False)["input_ids"]
    comp = tok([target(p, style).replace(p.reasoning, f"{p.reasoning} {p.reasoning}", 1) if again
                else target(p, style) for p, again in zip(problems, rechecked)], add_special_tokens=False)["input_ids"]
    return [(pr + c + [tok.eos_token_id], [-100] * len(pr) + c + [tok.eos_token_id]) for pr, c in zip(enc, comp)]


def mixed_chat_examples(tok: PreTrainedTokenizerBase, problems: Sequence[Problem], rng: random.Random, *,
                        picture_share: float, overthink_share: float) -> list[Example]:
    """Chat examples of both styles for the end of the base's pretraining: each problem instruct or
    reasoning at even odds, stated as cell words at `picture_share`, a reasoning chain restated at
    `overthink_share`; in the problems' order. Draws from `rng` problem by problem, in that order."""
    styles, pictured, rechecked = [], [], []
    for _ in problems:
        styles.append(rng.choice(("instruct", "reasoning")))
        pictured.append(rng.random() < picture_share)
        rechecked.append(styles[-1] == "reasoning" and rng.random() < overthink_share)
    out: list[Example | None] = [None] * len(problems)
    for style in ("instruct", "reasoning"):
        idx = [i for i, s in enumerate(styles) if s == style]
        made = chat_examples(tok, [problems[i] for i in idx], style, [pictured[i] for i in idx],
                             [rechecked[i] for i in idx])
        for i, ex in zip(idx, made):
            out[i] = ex
    return out


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), n), pad_id)
    labels = torch.full((len(batch), n), -100)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --------------------------------------------------------------------------- training
def train(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    pad_id: int,
    seed: int,
    warmup: float = 0.05,
    weight_decay: float = 0.0,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train on `examples` (shuffled epochs) for `steps` steps; returns the loss of every step."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = Optimiser(model.parameters(), lr=lr, steps=steps, weight_decay=weight_decay, warmup=warmup)
    batches: list[list[int]] = []
    losses = []
    model.train()
    for step in range(steps):
        if not batches:
            batches = _length_batches(examples, batch_size, rng)
        batch = [examples[i] for i in batches.pop()]
        inputs = {k: v.to(model.device) for k, v in collate(batch, pad_id).items()}
        losses.append(opt.step(model(**inputs).loss))
        if progress:
            progress(step, losses[-1])
    model.eval()
    return losses


def _length_batches(examples: Sequence[Example], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches: shuffled, then sorted by length within windows of 16 batches, so a
    batch pads little (problems run from 20 to 100 tokens) while the order stays random."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = 16 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i][0]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------- generation
@torch.no_grad()
def generate(model, tok: PreTrainedTokenizerBase, prompts: Sequence[list[int]], *, max_new_tokens: int = 128,
             batch_size: int = 256) -> list[str]:
    """Greedy completions of token-id prompts, batched with left padding."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        n = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), n), tok.pad_token_id)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, n - len(p):], mask[i, n - len(p):] = torch.tensor(p), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        out += tok.batch_decode(gen[:, n:], skip_special_tokens=True)
    return out


def skills(model, tok: PreTrainedTokenizerBase, *, n: int = 300, seed: int = 0) -> dict[str, float]:
    """Greedy next-token accuracy of `model`, read as a plain LM (no chat template), on the two skills the
    chains lean on, in the drills' own format (`drill_text`), `n` fresh items each:

    look-up:  "Bars: red 5, blue 3, green 7, yellow 2. green 7. red 5. blue" -> " 3": the third of three keys
              asked in random order (a guess among the four listed values: about 34%);
    counting: "Objects: red circle, blue square, red square. red shapes" -> " 2".

    Why it is measured: the shipped LMs never learned the look-up (33-38% here: the induction that copies
    the value after a key did not form at their base's lm_lr of 2e-3; it does at 5e-4), and that is every
    miss of theirs on the bars in words (docs/mini-world-backbones.md, "Look-up never formed")."""
    rng = random.Random(f"skills:{seed}")
    texts: dict[str, list[tuple[str, int]]] = {"look-up": [], "counting": []}

    def cut(drill: str, answer: int) -> tuple[str, int]:  # the drill's text up to its last answer
        assert drill.endswith(f" {answer}.")
        return drill[: -len(f" {answer}.")], answer

    for _ in range(n):
        colours = rng.sample(COLOURS, 4)
        values = {c: rng.randint(1, MAX_BAR) for c in colours}
        asks = rng.sample(colours, 3)
        texts["look-up"].append(cut(_lookup_drill(values, asks), values[asks[2]]))
        objs = [(rng.choice(COLOURS), rng.choice(SHAPES)) for _ in range(rng.randint(2, 8))]
        ask = _count_ask(objs, rng)
        texts["counting"].append(cut(_count_drill(objs, [ask]), ask[1]))
    out = {}
    for skill, items in texts.items():
        ids = tok([t for t, _ in items], add_special_tokens=False)["input_ids"]
        prompts = [[tok.bos_token_id, *x] for x in ids]
        got = generate(model, tok, prompts, max_new_tokens=1)
        out[skill] = sum(g.strip() == str(v) for g, (_, v) in zip(got, items)) / max(1, n)
    return out


def accuracy(model, tok: PreTrainedTokenizerBase, rows: Sequence[dict], *,
             as_picture: bool = False) -> tuple[float, list]:
    """Greedy accuracy of a text-only LM on mini-world rows, scored by the harness's `world` task.

    Text-only rows state their scene (in words, or `as_picture`: in cell words, the visual path's
    ceiling); visual rows are asked *without* their picture (read without a root, a row's image is
    left out): the "ignores the image" baseline, near chance."""
    from r1v.evaluate.tasks import get_task
    from r1v.world.data import from_row

    task = get_task("world")
    if as_picture:
        order = token_order()
        rows = [{**r, "context": picture(from_row(r), order)} for r in rows]
    items = [task.read_row(r) for r in rows]
    prompts = [chat_prompt(tok, task.prompt(it)) for it in items]
    outputs = generate(model, tok, prompts)
    scores = [task.score(it, o) for it, o in zip(items, outputs)]
    return sum(s.correct for s in scores) / max(1, len(scores)), list(zip(outputs, scores))
