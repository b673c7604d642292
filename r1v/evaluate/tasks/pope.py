"""POPE (Li et al. 2023, "Evaluating Object Hallucination in Large Vision-Language Models"):
yes/no probes of whether an object is in a COCO image, half present, half absent, with absent
objects drawn at random, by frequency ("popular") or by co-occurrence ("adversarial").

Formats, as published:
* RUCAIBox/POPE (`output/coco/coco_pope_{random,popular,adversarial}.json`): JSON lines
  `{"question_id", "image": "COCO_val2014_....jpg", "text": "Is there a ... in the image?",
  "label": "yes" | "no"}`; the images are COCO val2014's, looked up under `--data`'s folder (the
  file's folder, or a `val2014/` or `images/` folder in it or beside it). The split is the file
  name's last word (random, popular, adversarial).
* lmms-lab/POPE (parquet): `question_id, question, answer, image_source, image {bytes}, category`.

Scoring, POPE's `evaluate.py`: keep the answer's first sentence (up to the first "."), drop
commas, split on spaces; if "No", "not" or "no" is one of the words the answer is "no", else
"yes". The think rules come first: only the text after `</think>` is read (the reasoning of a
reasoning model would say "not" on the way), and a `\\boxed{}` answer is read from inside it.
Metrics (`metrics`): accuracy, precision, recall and F1 with "yes" the positive class, and the
yes-ratio, per split (lmms-eval reports the same).

Pitfalls, kept as the official script has them: "Not" capitalised and "nope" read as "yes"; an
answer with no sentence at all ("") reads as "yes" there, but is unanswered here (`none:empty`),
so it is wrong and counted. A hallucination (`hallucinated`) is "yes" to an absent object.
"""

from __future__ import annotations

from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import unwrap_text
from r1v.evaluate.data import find_files, image_bytes, read_rows
from r1v.evaluate.tasks import Item, Task

SPLITS = ("random", "popular", "adversarial")


def pope_answer(text: str) -> str:
    """POPE's own reading of an answer: "yes" or "no"."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


class POPE(Task):
    name, title = "pope", "POPE"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        items = []
        for f in find_files(path):
            rows = read_rows(f)
            for n, r in enumerate(rows):
                if not isinstance(r, dict) or not {"question_id"} <= set(r):
                    raise R1VError(f"POPE: {f} row {n} has no question_id; is this the right --bench and --data?")
                question = r.get("text") or r.get("question")
                label = str(r.get("label") or r.get("answer") or "").strip().lower()
                if not question or label not in ("yes", "no"):
                    raise R1VError(f"POPE: {f} row {n} needs a question (`text`) and a yes/no `label`")
                split = r.get("category") or f.stem.rsplit("_", 1)[-1]
                img = image_bytes(r.get("image")) if not isinstance(r.get("image"), str) else \
                    _find_image(r["image"], f, Path(path))
                if img is None:
                    raise R1VError(f"POPE: {f} row {n}: no image")
                items.append(Item(id=f"{split}-{r['question_id']}", question=question.strip(), answer=label,
                                  images=[img], groups={"split": str(split)}))
        return items

    def prompt(self, item: Item) -> str:
        # POPE's question as published, with the short answer the official prompt asks for
        return f"{item.question} Please answer yes or no."

    def rules(self, item, text, *, boxed, verifier):
        said = pope_answer(unwrap_text(text).strip())
        return said == item.answer, said, None

    def hallucinated(self, item: Item, output: str, *, think: bool = True) -> bool | None:
        s = self.score(item, output, think=think)
        return item.answer == "no" and s.extracted == "yes"

    def metrics(self, items: list[Item], records: list[dict]) -> dict:
        """Accuracy, precision, recall, F1 and yes-ratio (in %), overall and per split."""
        gold = {it.id: (it.answer, it.groups.get("split", "all")) for it in items}
        by: dict[str, list[tuple[str, str]]] = {}
        for r in records:
            if str(r["id"]) in gold:
                label, split = gold[str(r["id"])]
                pred = r.get("extracted") or "none"
                for key in ("all", split):
                    by.setdefault(key, []).append((label, pred))
        return {k: _confusion(v) for k, v in by.items()}


def _confusion(pairs: list[tuple[str, str]]) -> dict:
    tp = sum(g == "yes" and p == "yes" for g, p in pairs)
    fp = sum(g == "no" and p == "yes" for g, p in pairs)
    tn = sum(g == "no" and p == "no" for g, p in pairs)
    fn = sum(g == "yes" and p != "yes" for g, p in pairs)  # an unanswered probe of a present object: missed
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "accuracy": round(100 * (tp + tn) / max(1, n), 2), "precision": round(100 * precision, 2),
            "recall": round(100 * recall, 2), "f1": round(100 * f1, 2),
            "yes_ratio": round(100 * (tp + fp) / max(1, n), 2)}


def _find_image(name: str, f: Path, root: Path) -> bytes | None:
    base = root if root.is_dir() else f.parent
    for folder in (f.parent, base, f.parent / "val2014", base / "val2014", f.parent / "images", base / "images",
                   f.parent.parent / "val2014", f.parent.parent / "images"):
        p = folder / name
        if p.is_file():
            return p.read_bytes()
    raise R1VError(f"POPE: image {name} (from {f}) not found beside the file, or in a val2014/ or images/ folder")
