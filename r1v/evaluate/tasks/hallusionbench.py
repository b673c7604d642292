"""HallusionBench (Guan et al., CVPR 2024): 1,129 yes/no questions about charts, tables, maps,
illusions, ... asked of original figures, of edited figures that flip the answer, and (for
"visual supplement" questions) of no figure at all, so that a model answering from memory
instead of from the figure is caught.

Formats, as published:
* tianyi-lab/HallusionBench (GitHub): `HallusionBench.json`, a list of rows {category (VD: visual
  dependent, VS: visual supplement), subcategory, visual_input ("0" no figure, "1" original,
  "2" edited), set_id, figure_id, sample_note, question_id, question, gt_answer_details,
  gt_answer ("1" yes, "0" no), filename ("./VD/illusion/0_0.png", or null)}, every value a
  string; the figures come in `hallusion_bench.zip`, unzipped beside the file as
  `hallusion_bench/<category>/<subcategory>/<set_id>_<figure_id>.png`. Point `--data` at the
  json or its folder (the repository's other json files are skipped there).
* lmms-lab/HallusionBench: `data/image-*.parquet` (951 rows) and `data/non_image-*.parquet` (178),
  the same fields plus `image` (parquet image struct). Read both: the text-only half belongs to
  the question pairs.
The id is the official key: category_subcategory_set_id_figure_id_question_id.

Prompt: the question as published (the official script and VLMEvalKit add nothing).

Answer reading. The official `evaluation.py` asks GPT-4 whether the response agrees with
`gt_answer_details` ("correct" / "incorrect" / "unclear"). This is the rule-only mode, VLMEvalKit's
`YOrN_Extraction` (its reading before it calls a judge): lower-case, VLMEvalKit's
`process_punctuation`, split into words; "yes" among them and not "no" -> yes, "no" and not
"yes" -> no, else unknown. It reads the text the think rules pick (the rightmost `\\boxed{}`
after `</think>`, else the answer text). `--judge-url` (extract mode) lets a judge pick the
answer text first; `--judge-mode match` shows it `gold_text`: the yes/no and the details.
Correct, as the official `assign_correctness`: the reading equals the gold; and for a VS question
asked with no figure (figure_id "0"), an answer that is neither yes nor no also counts as right
(the official "uncertain": not making up the missing figure is right there). The rules cannot
tell "I cannot know without the chart" from other answers that say neither yes nor no; both are
credited there (`rules:uncertain`, countable). An empty or unfinished answer never is.

Metrics (`metrics`, as the official `utils.py` groups them, per category VD / VS and overall;
checked against its functions on the 1,129 published questions):
- aAcc: the share of questions answered right;
- fAcc: the share of figures (category, subcategory, set_id, figure_id) with every question
  about it right; VS questions with no figure (figure_id "0") are no figure and are left out;
- qAcc: the share of question pairs (category, subcategory, set_id, question_id: one question
  asked of each figure of a set, and without one) with every question right;
- easy_aAcc / hard_aAcc: the official leaderboard's "easy" / "hard" columns, which group
  like qAcc over the questions without / with an edited figure (visual_input != "2" / "2").
Several samples: each metric per sample index, then their mean.

Departures: the GPT judge is not called (above); the official LH / VI / Mixed failure analysis and
yes/no-bias table need the judge's "same" comparison of paired answers and are not reproduced.
`hallucinated`: a yes or no that contradicts the gold, which `gt_answer_details` states (a VS
answer with no figure that states a wrong fact is the official "language hallucination"); None
when the rules read neither yes nor no.

Pitfalls:
- VLMEvalKit's reading is word-based: "yes/no", "Yes and no" and "no, yes" are unknown; "**Yes**"
  is unknown (the asterisks are not punctuation to it); "Answer:Yes" is unknown, "Answer: Yes" is
  yes; "No." and "No," read as no; "It's not." and "Nope" are unknown (POPE's reading says no).
  Its period stripping passes `re.UNICODE` as the count argument of `re.sub`, so only the first
  32 stray periods go, and a final "no." after them stays unread. Kept as it is, so that scores
  compare with VLMEvalKit's (checked against its code on 20,000 strings).
- lmms-eval's rule fallback (`hb_aggregation_result_intern`) reads any "yes" substring as yes
  ("eyes", "yesterday") and everything else as no, and its `hallusion_bench_image` task reads only
  the `image` split (951 of 1,129): the text-only half of every VS pair is missing from its qAcc.
- VLMEvalKit's fAcc groups every row by (l2-category, set_id, figure_id), with no exception for
  questions without a figure; numbers across harnesses are not comparable without checking which
  questions and groups they hold.
- A reasoning model says "no" on the way to "yes": only the text after `</think>` is read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import unwrap_text
from r1v.evaluate.data import find_files, image_bytes, need, read_rows
from r1v.evaluate.tasks import Item, Task

FIELDS = ("category", "subcategory", "visual_input", "set_id", "figure_id", "question_id", "question", "gt_answer")
FIGURE = {"0": "none", "1": "original", "2": "edited"}
COUNTS = ("questions", "figures", "pairs")


# ---------------------------------------------------------------- VLMEvalKit's yes/no reading
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?<!\d)\.(?!\d)")


def process_punctuation(text: str) -> str:
    """VLMEvalKit's `process_punctuation`: a mark beside a space (or any mark, when the text has a
    digit-comma-digit) is deleted, any other becomes a space; then stray periods go (the first 32)."""
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, 32)  # as VLMEvalKit: re.UNICODE (32) lands in `count`


def yes_no(text: str) -> str:
    """"yes", "no" or "unknown", as VLMEvalKit's `YOrN_Extraction`."""
    words = process_punctuation(text.lower()).split()
    if "yes" in words and "no" not in words:
        return "yes"
    if "no" in words and "yes" not in words:
        return "no"
    return "unknown"


# ---------------------------------------------------------------- the task
def _no_figure(item: Item) -> bool:
    """A VS question asked without its figure: an uncertain answer is right (assign_correctness)."""
    return item.info["category"] == "VS" and item.info["figure_id"] == "0"


class HallusionBench(Task):
    name, title = "hallusionbench", "HallusionBench"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        files = find_files(path)
        # A clone of the repository also holds the result sample and the leaderboard json.
        files = [f for f in files if f.name == "HallusionBench.json"] or \
            [f for f in files if f.suffix == ".parquet"] or files
        items, seen = [], set()
        for f in files:
            rows = read_rows(f)
            need(rows, FIELDS, f"HallusionBench ({f.name})")
            for r in rows:
                info = {k: str(r[k]).strip() for k in FIELDS if k != "question"}
                if info["gt_answer"] not in ("0", "1"):
                    raise R1VError(f"HallusionBench: {f}: gt_answer must be '0' or '1', got {r['gt_answer']!r}")
                iid = "_".join(info[k] for k in ("category", "subcategory", "set_id", "figure_id", "question_id"))
                if iid in seen:
                    raise R1VError(f"HallusionBench: question {iid} appears twice under {path}")
                seen.add(iid)
                images = []
                if info["visual_input"] != "0":  # as official: a text-only question gets no image
                    img = image_bytes(r.get("image")) or _find_image(r, info, f, Path(path))
                    images = [img]
                info["details"] = str(r.get("gt_answer_details") or "")
                items.append(Item(
                    id=iid, question=str(r["question"]).strip(), answer="yes" if info["gt_answer"] == "1" else "no",
                    images=images, info=info,
                    groups={"category": info["category"], "subcategory": info["subcategory"],
                            "figure": FIGURE.get(info["visual_input"], info["visual_input"])}))
        return items

    def prompt(self, item: Item) -> str:
        return item.question

    def gold_text(self, item: Item) -> str:
        gold = f"{item.answer.capitalize()}" + (f" ({item.info['details']})" if item.info.get("details") else "")
        if _no_figure(item):
            gold += "; an answer that says it cannot tell without the figure is also correct"
        return gold

    def rules(self, item, text, *, boxed, verifier):
        said = yes_no(unwrap_text(text))
        if said == "unknown":
            return _no_figure(item), said, "uncertain" if _no_figure(item) else "unknown"
        return said == item.answer, said, None

    def hallucinated(self, item: Item, output: str, *, think: bool = True) -> bool | None:
        s = self.score(item, output, think=think)
        if s.extracted in ("yes", "no"):
            return s.extracted != item.answer
        return None

    def metrics(self, items: list[Item], records: list[dict]) -> dict:
        """aAcc, fAcc, qAcc, easy_aAcc, hard_aAcc (in %), overall and per category; the mean over samples."""
        by_id = {it.id: it for it in items}
        samples: dict[int, list[tuple[Item, bool]]] = defaultdict(list)
        for r in records:
            if str(r["id"]) in by_id:
                samples[int(r.get("sample", 0))].append((by_id[str(r["id"])], bool(r["correct"])))
        per_sample = [hallusion_metrics(done) for _, done in sorted(samples.items())]
        if not per_sample:
            return {}
        out = {}
        for split, first in per_sample[0].items():
            runs = [m[split] for m in per_sample if split in m]
            out[split] = {k: (first[k] if k in COUNTS else round(sum(m[k] for m in runs) / len(runs), 2))
                          for k in first}
        return out


def _all_right(groups: dict) -> float:
    return 100 * sum(all(v) for v in groups.values()) / len(groups) if groups else 0.0


def hallusion_metrics(done: list[tuple[Item, bool]]) -> dict:
    """The official groupings over (item, correct) pairs: {"all"|"VD"|"VS": {questions, figures,
    pairs, aAcc, fAcc, qAcc, easy_aAcc, hard_aAcc}}, the accuracies in % (not rounded)."""
    out = {}
    for split in ("all", "VD", "VS"):
        mine = [(it, ok) for it, ok in done if split == "all" or it.info["category"] == split]
        if not mine:
            continue
        figures, pairs, easy, hard = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
        for it, ok in mine:
            i = it.info
            pair = (i["category"], i["subcategory"], i["set_id"], i["question_id"])
            pairs[pair].append(ok)
            (hard if i["visual_input"] == "2" else easy)[pair].append(ok)
            if not _no_figure(it):
                figures[(i["category"], i["subcategory"], i["set_id"], i["figure_id"])].append(ok)
        out[split] = {"questions": len(mine), "figures": len(figures), "pairs": len(pairs),
                      "aAcc": 100 * sum(ok for _, ok in mine) / len(mine), "fAcc": _all_right(figures),
                      "qAcc": _all_right(pairs), "easy_aAcc": _all_right(easy), "hard_aAcc": _all_right(hard)}
    return out


def _find_image(row: dict, info: dict, f: Path, root: Path) -> bytes:
    """The figure of a GitHub-release row: `filename` under the json's folder (or a
    `hallusion_bench/` folder there), else the official <category>/<subcategory>/<set>_<figure>.png."""
    base = root if root.is_dir() else f.parent
    rels = [str(row["filename"]).removeprefix("./")] if row.get("filename") else []
    rels.append(f"{info['category']}/{info['subcategory']}/{info['set_id']}_{info['figure_id']}.png")
    rels = [r.removeprefix("hallusion_bench/") for r in rels]
    for folder in dict.fromkeys((f.parent, base, f.parent / "hallusion_bench", base / "hallusion_bench")):
        for rel in rels:
            if (folder / rel).is_file():
                return (folder / rel).read_bytes()
    raise R1VError(f"HallusionBench: figure {rels[0]} (from {f}) not found beside it or in a hallusion_bench/ "
                   f"folder there; unzip hallusion_bench.zip beside HallusionBench.json")
