"""`r1v eval leakage`: has a benchmark's test set leaked into a model or its training data? Two methods.

    r1v eval leakage --train distilled.jsonl --bench mathvista --data testmini.parquet     # --method ngram
    r1v eval leakage --method loss --model runs/tiny/grpo --bench world --data visual-test.jsonl \
        --train-split visual-train.jsonl --reference reference.jsonl
    r1v eval leakage make-reference --bench math500 --data test.jsonl --rewriter http://localhost:8001/v1 \
        --out leak/math500            # reference.jsonl + test.jsonl, for --method loss
    r1v world reference --data ~/.cache/r1v/world/data/visual-test.jsonl --out ref.jsonl   # the mini-world's

**n-gram (`--method ngram`, the default): which questions appear in a training file.** A distilled or
scraped training set may hold test items. Text is normalised (lower case, LaTeX commands and
punctuation dropped, `<image>` placeholders removed, whitespace collapsed). Two tests, and an item
is flagged by either:
* containment, for questions shorter than n words: the whole question, as a run of words, inside
  one training example (a MATH-500 problem of four words copied into a row with its solution);
* n-gram share, for the others: at least `threshold` of the question's word n-grams (default
  n = 8) occur in the training text (a question copied whole has them all: overlap 1.0).
The report lists each flagged item with how it matched, its overlap and the first training line
that matched. A short question can be contained by coincidence ("what is 2 2"); the report keeps its
word count so such hits can be read with that in mind. Training files: JSONL (every string value of
each row is read, nested messages included), parquet, csv, or plain text (one example per line).

**Loss (`--method loss`): the Skywork-13B report's test (§5.2), which looks at the model, not at its
data.** The model's token-averaged loss on three sets of the same kind: the benchmark's train split
(L_train), its test split (L_test) and a freshly written reference set (L_ref).
Δ1 = L_test - L_ref below 0 says the model finds the test items easier than new ones of the same
kind: the test set leaked. Δ2 = L_test - L_train well above 0 says it trained on the train split.
The paper gives no threshold (its outliers: Δ2 = 0.61, Δ1 = -0.51); here each Δ comes with a 95%
bootstrap interval (items of each set resampled independently, seeded), so "below 0" means the
interval excludes 0. What is scored: the item's reference response (`Task.reference`: its worked
solution where the data has one, then the gold answer) after the item's prompt and images, as the
model's chat template renders them: the loss of an instruction-tuned model on what it would be
trained to answer. The paper scored raw text with base models; a chat model's loss on its prompt
mostly measures the template. One loss per item: the summed token losses and the token count; a
set's loss is its total over its tokens. Departures: items are scored one at a time (no padding, so
a batch never shifts positions), and in-process only: an endpoint would need the log-probabilities of
a prompt's tokens, which only vLLM returns (`prompt_logprobs`, its extension), and R1-style chat
templates rewrite an assistant message (they drop what precedes `</think>`), so the scored text would
not be the reference response.

The reference set must be new (written after the model) and of the same kind. `make-reference`
asks an OpenAI-compatible model to rewrite each test item into a new one (new numbers and wording,
same topic, form and difficulty, its own answer and worked solution), keeping the item's images,
and writes the rewritten items *and* the originals in one neutral JSONL format (`--bench jsonl`), so
the comparison is not one of prompt format. The mini-world's rule-based rewriter
(`r1v world reference`) draws a new scene and question of the same family, level and form.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.data import read_rows
from r1v.stats import ratio_gap

_LATEX = re.compile(r"\\[a-zA-Z]+")
_PLACEHOLDER = re.compile(r"<image(?: \d+)?>")
_NON_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> list[str]:
    text = _PLACEHOLDER.sub(" ", text.lower())
    text = _LATEX.sub(" ", text)
    return _NON_WORD.sub(" ", text).split()


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def training_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise R1VError(f"training file not found: {path}")
    if path.suffix in (".jsonl", ".json", ".parquet", ".csv"):
        rows = []
        for row in read_rows(path):  # a line that is a JSON array holds several examples, not one
            rows += row if isinstance(row, list) else [row]
        return [" ".join(_strings(row)) for row in rows]
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise R1VError(f"{path} is not UTF-8 text") from None


def check(items, texts: list[str], *, n: int = 8, threshold: float = 0.5) -> list[dict]:
    """Flagged items: [{id, match, overlap, words, question, train_line}], most overlapping first."""
    if n < 1 or not 0 < threshold <= 1:
        raise R1VError("need n >= 1 and 0 < threshold <= 1")
    questions = {}
    for it in items:
        words = normalise(it.question)
        if words:
            questions[it.id] = (it, words)
    # Containment of questions shorter than n: their word runs, looked up by length in each example
    # (a question of n words or more is contained exactly when all its n-grams sit in one example).
    short = {}
    for _, words in questions.values():
        if len(words) < n:
            short.setdefault(len(words), set()).add(tuple(words))
    index: dict[tuple[str, ...], int] = {}
    contained: dict[tuple[str, ...], int] = {}
    for line_no, text in enumerate(texts):
        words = normalise(text)
        for g in (ngrams(words, n) if len(words) >= n else ()):
            index.setdefault(g, line_no)
        for length, targets in short.items():
            for i in range(len(words) - length + 1):
                run = tuple(words[i:i + length])
                if run in targets:
                    contained.setdefault(run, line_no)
    flagged = []
    for qid, (it, words) in questions.items():
        match, first, overlap = None, None, 0.0
        if len(words) < n:
            first = contained.get(tuple(words))
            match, overlap = ("contained", 1.0) if first is not None else (None, 0.0)
        else:
            grams = ngrams(words, n)
            hits = [index[g] for g in grams if g in index]
            overlap = len(hits) / len(grams)
            if overlap >= threshold:  # a long question contained in a row has all its n-grams there: 1.0
                match, first = "ngrams", min(hits)
        if match:
            flagged.append({"id": qid, "match": match, "overlap": round(overlap, 3), "words": len(words),
                            "question": it.question[:200], "train_line": first + 1})
    return sorted(flagged, key=lambda f: (-f["overlap"], str(f["id"])))


def write(flagged: list[dict], out: str | Path, meta: dict) -> None:
    if Path(out).is_dir():
        raise R1VError(f"--out {out} is a directory; name a file")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({**meta, "flagged": flagged}, indent=2, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- the loss method (Skywork-13B)
def encode_item(chat, task, item):
    """(model inputs, labels) for one item: its prompt and images as `chat` renders them, then
    `task.reference(item)`; labels are -100 on the prompt (the loss is the response's)."""
    prompt, images = chat.prompt(task.prompt(item), item.images)
    response = task.reference(item)
    full = chat.processor(text=[prompt + response], images=images or None, return_tensors="pt",
                          add_special_tokens=False)
    head = chat.processor(text=[prompt], images=images or None, return_tensors="pt", add_special_tokens=False)
    ids, head_ids = full["input_ids"][0], head["input_ids"][0]
    if chat.context and ids.shape[0] > chat.context:
        raise R1VError(f"item {item.id}: {ids.shape[0]} tokens, more than the model's context ({chat.context})")
    # The prompt ends in the template's assistant opening, so the response's first token does not
    # merge with it; where a tokenizer does merge, the shared prefix counts as the prompt.
    m = min(len(head_ids), len(ids))
    n = int((ids[:m] == head_ids[:m]).long().cumprod(0).sum())
    labels = ids.clone()
    labels[:n] = -100
    if "pixel_values" in full:
        full["pixel_values"] = full["pixel_values"].to(chat.model.dtype)
    return full.to(chat.model.device), labels.unsqueeze(0).to(chat.model.device)


def item_loss(chat, task, item) -> tuple[float, int]:
    """(summed token loss of the item's reference response, its token count)."""
    import torch

    inputs, labels = encode_item(chat, task, item)
    with torch.inference_mode():
        logits = chat.model(**inputs).logits[0, :-1].float()
    target = labels[0, 1:]
    keep = target != -100
    if not keep.any():
        raise R1VError(f"item {item.id}: its reference response is empty")
    loss = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
    return float(loss), int(keep.sum())


def set_losses(chat, task, items, *, desc: str) -> list[tuple[float, int]]:
    from tqdm import tqdm

    return [item_loss(chat, task, it) for it in tqdm(items, desc=desc, unit="item")]


def loss_test(train: list[tuple[float, int]], test: list[tuple[float, int]], ref: list[tuple[float, int]], *,
              rounds: int = 2000, seed: int = 0) -> dict:
    """L_train, L_test, L_ref and Skywork-13B's Δ1 = L_test - L_ref, Δ2 = L_test - L_train, each Δ with
    its 95% bootstrap interval, and what they suggest (an interval that excludes 0)."""
    def mean(xs):
        return sum(x for x, _ in xs) / sum(n for _, n in xs)

    d1 = ratio_gap(test, ref, rounds=rounds, seed=seed)
    d2 = ratio_gap(test, train, rounds=rounds, seed=seed + 1)
    return {"L_train": mean(train), "L_test": mean(test), "L_ref": mean(ref),
            "items": {"train": len(train), "test": len(test), "reference": len(ref)},
            "delta1": {k: d1[k] for k in ("gap", "lo", "hi")}, "delta2": {k: d2[k] for k in ("gap", "lo", "hi")},
            "test_leaked": d1["hi"] < 0, "trained_on_train": d2["lo"] > 0, "rounds": rounds, "seed": seed}


def describe(result: dict) -> str:
    d1, d2 = result["delta1"], result["delta2"]
    n = result["items"]
    return (f"L_train {result['L_train']:.4f} ({n['train']} items), L_test {result['L_test']:.4f} ({n['test']}), "
            f"L_ref {result['L_ref']:.4f} ({n['reference']})\n"
            f"Δ1 = L_test - L_ref   = {d1['gap']:+.4f} (95% interval {d1['lo']:+.4f} to {d1['hi']:+.4f}): "
            + ("below 0: the test set looks leaked" if result["test_leaked"] else
               "no sign that the test set leaked") + "\n"
            f"Δ2 = L_test - L_train = {d2['gap']:+.4f} (95% interval {d2['lo']:+.4f} to {d2['hi']:+.4f}): "
            + ("above 0: the model looks trained on the train split" if result["trained_on_train"] else
               "no sign of training on the train split"))


# ---------------------------------------------------------------- the reference set, by an LLM
REWRITE_SYSTEM = (
    "You write new benchmark items. Given an item, write one new item of the same kind: the same topic, form, "
    "difficulty and length, about the same image(s) if there are any, with new numbers or a new question, so that "
    "it is not a paraphrase with the same answer. Work out its answer yourself. Reply with JSON only: "
    '{"question": "...", "choices": ["...", ...] or null, "answer": "...", "solution": "a short worked solution"}; '
    "for multiple choice keep the number of options and give the answer as the option's letter.")


def _neutral(item) -> dict:
    """An item in the `jsonl` task's format: multiple-choice answers as the option's letter."""
    answer = item.answer[0] if isinstance(item.answer, list) and item.answer else item.answer
    if item.choices and str(answer) in item.choices and str(answer) not in [chr(65 + i) for i in
                                                                           range(len(item.choices))]:
        answer = chr(65 + item.choices.index(str(answer)))  # MathVista states the option's text
    return {"id": item.id, "question": item.question, "choices": item.choices, "answer": str(answer),
            "solution": item.info.get("solution")}


def _save_images(item, out: Path) -> list[str]:
    from r1v.evaluate.endpoint import _mime

    names = []
    for k, data in enumerate(item.images):
        name = f"images/{re.sub(r'[^A-Za-z0-9_.-]', '_', item.id)}-{k}.{_mime(data).split('/')[1]}"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
        names.append(name)
    return names


def parse_rewrite(reply: str, original: dict) -> dict:
    """The rewriter's JSON reply as an item; R1VError when it is not one."""
    text = reply.split("</think>")[-1].strip()
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        row = json.loads(text[text.index("{"):text.rindex("}") + 1])
    except ValueError:
        raise R1VError("the reply holds no JSON object") from None
    question, answer, choices = row.get("question"), row.get("answer"), row.get("choices")
    if not isinstance(question, str) or not question.strip() or answer in (None, "") or isinstance(answer, (dict, list)):
        raise R1VError("the reply needs a non-empty question and answer")
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(c, (str, int, float)) for c in choices) or len(choices) < 2:
            raise R1VError("choices must be a list of options, or null")
        if str(answer).strip().upper() not in [chr(65 + i) for i in range(len(choices))]:
            raise R1VError(f"answer {answer!r} is not one of the {len(choices)} option letters")
        choices, answer = [str(c) for c in choices], str(answer).strip().upper()
    if bool(choices) != bool(original["choices"]):
        raise R1VError("the rewrite changed the form (multiple choice or not)")
    if question.strip() == original["question"].strip():
        raise R1VError("the rewrite is the original question")
    return {"question": question.strip(), "choices": choices, "answer": str(answer).strip(),
            "solution": row.get("solution") if isinstance(row.get("solution"), str) else None}


def make_reference(task, items, url: str, out: Path, *, model: str | None = None, concurrency: int = 8,
                   seed: int = 0) -> dict:
    """Rewrite each item through an OpenAI-compatible model into `out/reference.jsonl`, and write the
    originals it rewrote to `out/test.jsonl`, both in the `jsonl` task's format with their images
    under `out/images/`. Rewrites already in reference.jsonl are kept (a rerun finishes the rest);
    replies that are not an item go to `out/failed.jsonl` with the reason."""
    from tqdm import tqdm

    from r1v.evaluate.endpoint import Endpoint, map_concurrent
    from r1v.io import Journal, write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    endpoint = Endpoint(url, model)
    done = Journal(out / "reference.jsonl", key=lambda r: r["rewrites"])
    originals = {it.id: {**_neutral(it), "images": _save_images(it, out)} for it in items}
    todo = [it for it in items if it.id not in done.records]

    def ask(item):
        o = originals[item.id]
        shown = {k: o[k] for k in ("question", "choices", "answer", "solution") if o[k] is not None}
        try:
            reply = endpoint.chat(json.dumps(shown, ensure_ascii=False), item.images, system=REWRITE_SYSTEM,
                                  temperature=0.7, max_tokens=2048, seed=seed).text
            return item, parse_rewrite(reply, o), None, reply
        except R1VError as e:
            return item, None, str(e), locals().get("reply")

    failed = []
    for item, row, error, reply in tqdm(map_concurrent(ask, todo, concurrency), total=len(todo),
                                        desc="rewriting", unit="item"):
        if row is None:
            failed.append({"id": item.id, "error": error, "reply": reply})
            continue
        done.add([{"id": f"{item.id}-ref", **row, "images": originals[item.id]["images"], "rewrites": item.id}])
    write_jsonl(out / "test.jsonl", [originals[i] for i in originals if i in done.records])
    write_jsonl(out / "failed.jsonl", failed)
    return {"written": len(done.records), "failed": len(failed)}
