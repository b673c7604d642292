"""MMMU-Pro (MMMU/MMMU_Pro, test split): 1,730 MMMU questions made harder, in three configs,
one folder each in the published snapshot, `<config>/test-*.parquet`:
* `standard (10 options)`: id, question (with `<image n>`), options (a Python-list string of up
  to ten options, A-J), explanation, image_1..image_7 (parquet image structs), img_type,
  answer (a letter), topic_difficulty, subject;
* `vision`: id, image (a screenshot or photo holding the question *and* its options), options,
  answer, subject: the prompt is the image and an instruction, nothing else;
* `standard (4 options)`: the standard layout with MMMU's original options (read the same way;
  the official inference scripts do not run it).
`--data` may be one config's folder or file, or the whole snapshot; the config is the name of the
folder a file sits in (else: a row with `image` and no `question` is `vision`, any other
`standard`). It is the `setting` breakdown group, and the id's prefix
("standard10/test_Art_1", "vision/test_Art_1"): one question appears in every config.

Prompts, as MMMU's `mmmu-pro/infer` builds them with `prompts.yaml`'s `cot` instructions
(reasoning models; the `direct` ones are kept in PROMPTS): standard = question, "A. option" lines,
instruction; vision = the instruction alone. Every `<image n>` of question and options becomes
`<image>` and brings `image_n` in that order (repeats included); images referenced nowhere (MMMU
keeps some for the explanation, MMMU issue #56) are not sent. The official API scripts send the
text with its `<image>` tokens and append the images after it; here each image sits at its
placeholder (VLMEvalKit interleaves the same way).

Scoring, `mmmu-pro/evaluate.py`'s `parse_multi_choice_response`, on what the think rules hand it
(the rightmost `\\boxed{}` after `</think>`, else the answer text, `r1v/evaluate/answers.py`):
1. after the last "Answer:" (case-sensitive), the option letters that occur anywhere in the rest
   (a plain substring test): exactly one -> that letter (`rules:answer-line`);
2. otherwise MMMU's parser with two changes: a letter counts when followed by a space ("B ")
   even with no space before it (MMMU wants " B "), then when followed by "." ("B."); several
   -> the one whose " X " occurs last, else the first in A-J order (`rules:letter`). The steps
   it shares with MMMU ("(B)", then option texts in answers over five words, then a random
   option) are `r1v/evaluate/tasks/mmmu.py`'s `parse_multi_choice`, reused, not copied.
This port gives the official letter on all 6,862 non-random GPT-4o responses that the MMMU
repository ships (`mmmu-pro/output/`). Departures (as for MMMU): an empty answer never scores
(the official script guesses one); the random option for an answer where nothing is found is
seeded per question and recorded (`rules:guess`; the GRPO reward gives it nothing).

Pitfalls, kept as the official rules have them and tested:
- with ten options "I" is an option letter: "Answer: I think it is D" holds I and D, so step 1
  passes and step 2 takes the later " D "; "A" (the article) likewise;
- step 2's "X " test matches any word that ends in a capital A-J: "DNA is the carrier" reads
  as A, and so does a response that ends "...made in the USA";
- "Answer: (B) Carbon" names B and C, so step 1 passes it on; step 2's "(B)" then gives B.
Others' harnesses: VLMEvalKit's CoT post-processing counted the "A" of the word "Answer" and so
rarely took its single-letter path (fixed in its PR #1591); models that echo the template write
"Answer: $B" (read as B here). The leaderboard reports the better of CoT and direct prompting
(MMMU issue #53), so a single CoT run can sit below it. In the 10-option config a few options are
themselves letters ("A. B", "B. A"; MMMU issue #83), which no parser can tell apart.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import unwrap_text
from r1v.evaluate.data import find_files, image_bytes, read_rows
from r1v.evaluate.tasks import Item, Task
from r1v.evaluate.tasks.mmmu import MAX_IMAGES, _literal, parse_multi_choice

# prompts.yaml (MMMU-Benchmark/MMMU, mmmu-pro/), verbatim
PROMPTS = {
    "cot": {
        "vision": "Write out the multiple-choice question in the image and then solve it. The last line of your "
                  "response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is "
                  "one of options. Think step by step before answering.",
        "standard": "Answer the preceding multiple choice question. The last line of your response should be of "
                    "the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. "
                    "Think step by step before answering.",
    },
    "direct": {
        "vision": "Answer with the option letter from the given choices directly. The last line of your response "
                  "should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of "
                  "options.",
        "standard": "Answer with the option letter from the given choices directly.",
    },
}
MODE = "cot"
SETTINGS = {"standard (10 options)": "standard10", "standard (4 options)": "standard4", "vision": "vision",
            "standard": "standard"}  # the config (folder) name -> the id prefix
_IMAGE_REF = re.compile(r"<image\s+(\d+)>")


# ---------------------------------------------------------------- official rules (mmmu-pro/evaluate.py)
def _padded(response: str) -> str:
    for ch in [",", ".", "!", "?", ";", ":", "'"]:  # one after the other, as MMMU's parser strips
        response = response.strip(ch)
    return f" {response} "


def parse_pro(response: str, letters: list[str], index2ans: dict[str, str],
              rng: random.Random) -> tuple[str, str]:
    """(letter, rule): "answer-line", "letter", "" (a step MMMU's parser shares) or "guess"."""
    at = response.rfind("Answer:")
    if at >= 0:
        tail = response[at + len("Answer:"):].strip()
        named = [c for c in letters if c in tail]
        if len(named) == 1:
            return named[0], "answer-line"
    padded = _padded(response)
    if not any(f"({c})" in padded for c in letters):
        found = [c for c in letters if f"{c} " in padded] or [c for c in letters if f"{c}." in padded]
        if len(found) == 1:
            return found[0], "letter"
        if found:  # the latest " X "; none there (-1 for all): the first candidate, as np.argmax
            marks = [padded.rfind(f" {c} ") for c in found]
            return found[marks.index(max(marks))], "letter"
    # "(X)" present, or no letter at all: exactly MMMU's steps from here on
    letter, guessed = parse_multi_choice(response, letters, index2ans, rng)
    return letter, "guess" if guessed else ""


# ---------------------------------------------------------------- the task
def _setting(f: Path, row: dict) -> str:
    for part in reversed(f.parts[:-1]):
        if part in SETTINGS:
            return part
    return "vision" if "image" in row and "question" not in row else "standard"


class MMMUPro(Task):
    name, title = "mmmupro", "MMMU-Pro"

    def read(self, path, *, seed: int = 0) -> list[Item]:
        items, seen = [], set()
        for f in find_files(path):
            for n, r in enumerate(read_rows(f)):
                if not isinstance(r, dict) or not {"id", "options", "answer"} <= set(r):
                    raise R1VError(f"MMMU-Pro: {f} row {n} lacks id, options or answer; is this the right --bench "
                                   f"and --data?")
                setting = _setting(f, r)
                item = self._vision(r, f) if setting == "vision" else self._standard(r, f)
                item.id = f"{SETTINGS[setting]}/{r['id']}"
                if item.id in seen:
                    raise R1VError(f"MMMU-Pro: {item.id} appears twice under {path}")
                seen.add(item.id)
                item.groups = {"setting": setting, **item.groups}
                items.append(item)
        return items

    @staticmethod
    def _options(r: dict, f: Path) -> list[str]:
        options = _literal(r["options"])
        if not isinstance(options, (list, tuple)) or not options:
            raise R1VError(f"MMMU-Pro: {f}, {r['id']}: options must be a list, got {str(r['options'])[:60]!r}")
        return [str(o) for o in options]

    def _standard(self, r: dict, f: Path) -> Item:
        if "question" not in r:
            raise R1VError(f"MMMU-Pro: {f}, {r['id']}: a standard row needs a question")
        options = self._options(r, f)
        opts = "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))
        text = f"{r['question']}\n{opts}\n{PROMPTS[MODE]['standard']}"
        images = []
        for k in map(int, _IMAGE_REF.findall(text)):
            img = image_bytes(r.get(f"image_{k}")) if 1 <= k <= MAX_IMAGES else None
            if img is None:
                raise R1VError(f"MMMU-Pro: {f}, {r['id']} refers to <image {k}> but has no image_{k}")
            images.append(img)
        groups = {"subject": str(r["subject"])} if r.get("subject") else {}
        if r.get("topic_difficulty"):
            groups["difficulty"] = str(r["topic_difficulty"])
        return Item(id="", question=r["question"], answer=str(r["answer"]).strip(), images=images, choices=options,
                    groups=groups, info={"prompt": _IMAGE_REF.sub("<image>", text)})

    def _vision(self, r: dict, f: Path) -> Item:
        img = image_bytes(r.get("image"))
        if img is None:
            raise R1VError(f"MMMU-Pro: {f}, {r['id']}: a vision row needs its image")
        groups = {"subject": str(r["subject"])} if r.get("subject") else {}
        # No question text: it is inside the image (and so not what `r1v eval leakage` can compare).
        return Item(id="", question="", answer=str(r["answer"]).strip(), images=[img],
                    choices=self._options(r, f), groups=groups, info={"prompt": PROMPTS[MODE]["vision"]})

    def prompt(self, item: Item) -> str:
        return item.info["prompt"]

    def rules(self, item, text, *, boxed, verifier):
        letters = [chr(65 + i) for i in range(len(item.choices))]
        rng = random.Random(f"mmmupro:{item.id}")
        letter, rule = parse_pro(unwrap_text(text), letters, dict(zip(letters, item.choices)), rng)
        return letter == item.answer, letter, rule
