"""MathVerse testmini (AI4Math/MathVerse; Zhang et al. 2024): 788 visual maths problems, each in
five versions that move information from the text into the diagram (Text Dominant, Text Lite,
Vision Intensive, Vision Dominant, Vision Only: 3,940 rows), plus a Text Only version (788 rows,
no image) published apart.

Reading: `testmini.parquet` (`sample_index, problem_index, problem_version, question, image
(parquet image struct), answer, question_type (multi-choice / free-form), metadata {split,
source, subject, subfield}, query_wo, query_cot, question_for_eval`) and
`testmini_text_only.parquet` (the same fields, `problem_version` "Text Only", `image` empty), or
the `.json` releases with image paths (looked up beside the file and in `images/`). The id is
`sample_index` ("text-only-<sample_index>" for Text Only rows, whose sample_index repeats
testmini's); breakdown groups: `version` (problem_version), `subject`, `question_type`. The
prompt is the published `query_cot` (for Vision Only it says the question is in the image) with
the `\\boxed{}` instruction added.

Picking versions (no flag): by default every version in the files read is scored and each is a
`version` group in the summary. Under a folder the text-only file is left out, so the overall
number is the leaderboard's "All" (the five versions with a diagram). To score only some
versions, add them to `--data` after `::`, comma-separated, in any case, with `-`, `_` or
spaces: `--data MathVerse/::vision-only,text-dominant` (the run records the whole string, so a
resumed run scores the same rows); `::text-only` reads the text-only file from the folder.

Scoring. Officially MathVerse uses GPT-4 twice: to extract the answer from the response, then to
judge it against the gold answer given `question_for_eval` ("consistent" answers: the same letter,
or for free-form the same meaning, "0.5m and 50cm"); its `--quick_match` mode is an exact string
comparison of the extraction with the answer. Without `--judge-url` this runs rule-only, and says
so (`rules` in every record and the summary); with `--judge-url` the judge extracts and these
rules compare. The rules, applied to the rightmost `\\boxed{}` after `</think>` (else the answer
text):
- multiple choice (gold: a letter, or several "C\\nD"): the letter from a lone letter, "(B)",
  "B.", "B: text", "answer is B", "answer: B" (`gpqa.extract_letter`'s ordered rules with E and
  "answer is", without its last resort "any capital letter", which reads "A circle..." as A); an answer
  that is one option's text (the options parsed from `question_for_eval`'s "Choices:" lines) is
  that option's letter (`:option-text`), as the official judge's examples accept. Several gold
  letters need the same set of letters;
- free form: the official quick match (equal strings after trimming, `:exact`), else math-verify
  equivalence under a hard time bound stands in for the judge's "same meaning" (`:math-verify`):
  intervals, equations, fractions vs decimals. Units and other words are not understood: "50cm"
  for "0.5m" is wrong here, right for the judge.
Pitfalls: Vision Only rows have (almost) no question text, so a prompt built from `question`
instead of `query_cot` asks nothing: the published query is used. The official extraction
prompt maps "cannot determine" answers to "null", which the rules never match. One popular
harness filters its per-version breakdown with `score is True` on a whole column (an identity
test), which never selects rows: per-version numbers must come from the records, as here.
"""

from __future__ import annotations

import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import unwrap_text
from r1v.evaluate.data import find_files, image_bytes, need, read_rows
from r1v.evaluate.tasks import BOXED_HINT, Item, Task
from r1v.evaluate.tasks.gpqa import LETTER_RULES

VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only", "Text Only")
# GPQA's ordered letter rules with E allowed, "answer is X" added, and no last-resort "any capital":
# "A circle has area pi" must not read as A (the official LLM extraction would not).
_LETTER_RULES = tuple((name, re.compile(p.pattern.replace("A-D", "A-E"), p.flags))
                      for name, p in LETTER_RULES if name != "any")
_LETTER_RULES = _LETTER_RULES[:1] + (("answer-is", re.compile(r"(?i:answer is)\s*:?\s*[\*\(\[]*([A-E])\b")),) \
    + _LETTER_RULES[1:]
_CHOICE_LINE = re.compile(r"^\s*\(?([A-E])\)?\s*[:.：]\s*(.+?)\s*$", re.MULTILINE)


def _key(version: str) -> str:
    return re.sub(r"[\s_\-]+", " ", version.strip()).lower()


def parse_selector(path: str) -> tuple[str, list[str] | None]:
    """`"dir::vision-only,text-dominant"` -> ("dir", ["Vision Only", "Text Dominant"])."""
    path = str(path)
    if "::" not in path:
        return path, None
    path, spec = path.rsplit("::", 1)
    known = {_key(v): v for v in VERSIONS}
    chosen = []
    for name in filter(None, (s.strip() for s in spec.split(","))):
        if _key(name) not in known:
            raise R1VError(f"MathVerse: unknown version {name!r}; choose from {', '.join(VERSIONS)}")
        chosen.append(known[_key(name)])
    if not chosen:
        raise R1VError("MathVerse: no version named after '::'")
    return path, chosen


def _text_only_file(f: Path) -> bool:
    return bool(re.search(r"text[_-]only", f.name, re.I))


def parse_choices(question: str) -> dict[str, str]:
    """{letter: option text} from the "Choices:" lines of a MathVerse question."""
    if "Choices" not in question:
        return {}
    tail = question.split("Choices", 1)[1]
    return {m[1]: m[2] for m in _CHOICE_LINE.finditer(tail)}


def _norm(s: str) -> str:
    s = unwrap_text(s).replace("$", "").replace("\\left", "").replace("\\right", "")
    return re.sub(r"\s+", "", s).rstrip(".").lower()


def extract_letters(text: str, choices: dict[str, str]) -> tuple[list[str], str]:
    """The chosen letter(s) and the rule that found them ([], "none" when none did)."""
    text = unwrap_text(text).strip()
    if re.fullmatch(r"[\(\s]*[A-E][\)\.]?(?:\s*(?:,|and|\n)\s*\(?[A-E]\)?)+\s*", text):  # "A, C" / "C\nD"
        return sorted(set(re.findall(r"[A-E]", text))), "letters"
    for name, pattern in _LETTER_RULES:
        found = pattern.findall(text)
        if found:
            return [found[-1]], name
    for letter, option in choices.items():
        if _norm(option) and _norm(option) == _norm(text):
            return [letter], "option-text"
    return [], "none"


class MathVerse(Task):
    name, title = "mathverse", "MathVerse(mini)"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        raw, versions = parse_selector(path)
        root = Path(raw)
        files = find_files(root)
        if root.is_dir() and not (versions and "Text Only" in versions):
            files = [f for f in files if not _text_only_file(f)] or files
        base = root if root.is_dir() else root.parent
        items = []
        for f in files:
            rows = read_rows(f)
            need(rows, ("sample_index", "problem_version", "question", "answer", "question_type"),
                 f"MathVerse {f.name}")
            for r in rows:
                version = str(r["problem_version"])
                if versions and version not in versions:
                    continue
                img = image_bytes(r.get("image"))
                if img is None and isinstance(r.get("image"), str) and r["image"]:
                    for folder in (base, base / "images", f.parent, f.parent / "images"):
                        if (folder / r["image"]).is_file():
                            img = (folder / r["image"]).read_bytes()
                            break
                meta = r.get("metadata") or {}
                groups = {"version": version, "question_type": str(r["question_type"])}
                if isinstance(meta, dict) and meta.get("subject"):
                    groups["subject"] = str(meta["subject"])
                question_for_eval = r.get("question_for_eval") or r["question"]
                items.append(Item(
                    id=f"text-only-{r['sample_index']}" if version == "Text Only" else str(r["sample_index"]),
                    question=r["question"], answer=str(r["answer"]).strip(),
                    images=[img] if img else [], groups=groups,
                    info={"question_type": str(r["question_type"]), "query": r.get("query_cot") or r.get("query_wo"),
                          "question_for_eval": question_for_eval, "problem_index": str(r.get("problem_index")),
                          "choices": parse_choices(question_for_eval)}))
        if not items:
            raise R1VError(f"MathVerse: no rows of version(s) {', '.join(versions or [])} in {raw}")
        return items

    def prompt(self, item: Item) -> str:
        return f"{item.info.get('query') or item.question}\nPlease {BOXED_HINT}."

    def gold_text(self, item: Item) -> str:
        option = item.info["choices"].get(item.answer)
        return f"({item.answer}) {option}" if option else item.answer

    def rules(self, item, text, *, boxed, verifier):
        gold = item.answer
        if item.info["question_type"] == "multi-choice":
            golds = sorted(set(re.findall(r"[A-E]", gold))) if re.fullmatch(r"[A-E\s,\n]+", gold) else [gold]
            letters, how = extract_letters(text, item.info["choices"])
            return bool(letters) and letters == golds, ",".join(letters) or None, how
        if text.strip() == gold:
            return True, text.strip(), "exact"
        from r1v.evaluate.tasks.math500 import shared_verifier

        verdict = (verifier or shared_verifier())(gold, text, boxed)
        return verdict.equal, text.strip(), verdict.how
