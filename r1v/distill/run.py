"""AL-CoTD end to end: score every sample, turn the scores into its repetition penalty, distil
`<think>` chains at that penalty, check each answer, revise the wrong ones, score the result 0..5.

    r1v distill --data rows.jsonl --teacher http://localhost:8000/v1 --judge http://judge:8000/v1 --out OUT

OUT holds, all of it resumable (rerun the same command: finished samples are skipped, none is
lost or written twice; `--overwrite` starts again):

    run.json        what the run is (data, teacher, judge, penalty settings); a rerun must match
    scores.jsonl    per sample: the six 0..10 components and where each came from (rules, judge, a failure)
    records.jsonl   per sample: Ŝ_v, Ŝ_t, Ŝ_I, P, the teacher's chain and its length, the verdict,
                    every revision tried, the final response, its length and 0..5 score
    data.jsonl      the training rows: the input row + `response` (what follows `<think>\\n`), `score`
                    (0..5, for `sft.reward_model=field`), `penalty`; dropped samples are left out
    summary.json, report.md, penalty.png   (`report.py`)

Order of work: all scores first (DRLC needs the whole data set's min and max), then the chains in
chunks of `chunk` samples, each chunk saved once finished. A sample whose teacher or judge
request fails for good (an endpoint down, after its retries) is not recorded, so the next run
retries it: missing scores stop the run before any chain is written (P needs them all), missing
chains leave it unfinished (exit status 1). A judge reply that stays malformed after its retries
is a judgement, recorded as a failure: a score is imputed (the data set's mean), a verdict or a
reward falls back to the rules. With `penalty=fixed` the judge is not asked for scores (P does
not use them); the rules still give the report its difficulty bands.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from r1v.distill import scores as S
from r1v.distill.judge import Failure, Judge, Unreachable
from r1v.distill.models import EndpointModel, Request
from r1v.errors import R1VError
from r1v.evaluate.run import claim
from r1v.io import Journal
from r1v.io import write_atomic
from r1v.model.templates import THINK_CLOSE
from r1v.distill.config import DistillConfig

HINT = "\n(The correct final answer is {answer}. Reason your way to it.)"
# run.json keys that must match for a rerun to continue a run (operational settings may change)
SAME_RUN = ("data", "task", "teacher", "judge", "penalty", "fixed_penalty", "alpha", "beta", "gamma",
            "difficulty_field", "max_new_tokens", "temperature", "top_p", "revise", "reward")


def distill(rows: Sequence[dict], cfg: DistillConfig, out: str | Path, *, task, teacher, judge=None,
            root: Path | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Distil `rows` (the `jsonl` task's format; images relative to `root`) into `out`; returns the summary."""
    from tqdm.auto import tqdm

    from r1v.distill.report import summarise, write_report

    cfg.validate()
    if not rows:
        raise R1VError("no rows to distil")
    rows = [{**r, "id": str(r.get("id", ""))} for r in rows]
    ids = [r["id"] for r in rows]
    if "" in ids or len(set(ids)) != len(ids):
        dup = next((i for i, n in Counter(ids).items() if n > 1), "")
        raise R1VError(f"every row needs a unique id (found {'an empty one' if not dup else repr(dup)})")
    check_rows(rows)
    out = Path(out)
    settings = {**asdict(cfg), "data": _fingerprint(rows), "rows": len(rows), "task": task.name,
                "teacher": teacher.name, "judge": judge.name if judge else None}
    lock = claim(out, settings, SAME_RUN, overwrite=overwrite, what="distillation",  # noqa: F841 (held: the run's)
                 tool="r1v distill", files=("scores.jsonl", "records.jsonl", "data.jsonl", "summary.json", "report.md"))

    def items(chunk: list[dict]) -> dict:  # read per chunk: a data set's images never all sit in memory
        return {r["id"]: task.read_row(r, root=root) for r in chunk}

    by_id = {r["id"]: r for r in rows}
    quiet = not progress
    judge_ = Judge(judge, retries=cfg.judge_retries) if judge else None

    # ---- 1. QDAM and VTIA scores, every sample
    scored = Journal(out / "scores.jsonl", key=lambda r: r["id"])
    todo = [r for r in rows if r["id"] not in scored.records]
    asked = judge_ if cfg.penalty == "adaptive" else None  # a fixed P needs no judged scores
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc="scores", disable=quiet) as bar:
        for chunk in _chunks(todo, cfg.chunk):
            scored.add(_score(chunk, items(chunk), asked, cfg))
            bar.update(len(chunk))
    missing = len(rows) - len(scored.records)
    if missing:
        raise R1VError(f"the judge could not be reached for {missing} sample(s), so their scores (and every "
                       f"penalty, which needs them all) are missing; rerun the same command to retry them "
                       f"(the {len(scored.records)} scored are kept)")

    # ---- 2. normalise over the data set, DRLC
    comps = [scored.records[r["id"]]["components"] for r in rows]
    hats = S.normalise(comps)
    if cfg.penalty == "adaptive":
        pens = [S.penalty(h["vision"], h["text"], h["integration"], alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma)
                for h in hats]
    else:
        pens = [cfg.fixed_penalty] * len(rows)
    plan = {r["id"]: (h, p) for r, h, p in zip(rows, hats, pens)}

    # ---- 3. chains at P, checked, revised, scored 0..5
    work = Chains(task, plan, teacher, judge_, cfg)
    done = Journal(out / "records.jsonl", key=lambda r: r["id"])
    todo = [r for r in rows if r["id"] not in done.records]
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc="chains", disable=quiet) as bar:
        for chunk in _chunks(todo, cfg.chunk):
            done.add(work.run(chunk, items(chunk)))
            bar.update(len(chunk))
    failed = len(rows) - len(done.records)

    summary = summarise([done.records[i] for i in ids if i in done.records], rows=len(rows),
                        unit=teacher.unit, settings=settings,
                        score_failures=sum(bool(r["failures"]) for r in scored.records.values()))
    summary["unfinished"] = failed
    kept = [{**_portable(by_id[i], root), "response": rec["response"], "score": rec["score"], "penalty": rec["penalty"],
             "verdict": rec["verdict"]}
            for i in ids if (rec := done.records.get(i)) and rec["response"] is not None]
    write_atomic(out / "data.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    write_report(out, summary)
    if failed:
        print(f"{failed} sample(s) could not be finished (the teacher or judge failed for good, e.g. "
              f"{work.errors[0] if work.errors else 'unreachable'}); rerun the same command to retry them",
              file=sys.stderr)
    return summary


# --------------------------------------------------------------------------- the steps
def _score(chunk: list[dict], items: dict, judge: Judge | None, cfg: DistillConfig) -> list[dict]:
    """Score records of the chunk; a row the judge could not be reached for is left out (retried later)."""
    from r1v.model.processor import load_image

    recs, images = [], {}
    for r in chunk:
        item = items[r["id"]]
        try:
            pics = [load_image(b) for b in item.images]
        except R1VError as e:
            raise R1VError(f"row {r['id']}: {e}") from None
        comp = {"clarity": S.clarity(pics)}
        comp.update(S.rule_scores(r, has_image=bool(item.images), difficulty_field=cfg.difficulty_field))
        recs.append({"id": r["id"], "components": comp, "source": "rules", "failures": {}})
        images[r["id"]] = item.images
    if judge is None:
        return recs
    judged = judge.scores(chunk, images)
    for rec in recs:
        got = judged[rec["id"]]
        if got is None:
            continue
        rec["failures"] = got.pop("failures")
        for k in S.JUDGED:  # a question the judge answered badly leaves its components missing (imputed)
            rec["components"][k] = got.get(k)
        rec["source"] = "judge"
    return [rec for rec in recs if judged[rec["id"]] is not None]


class Chains:
    """Step 3 for a chunk of rows: the teacher's chains at their P, checked, revised, scored."""

    def __init__(self, task, plan: dict, teacher, judge: Judge | None, cfg: DistillConfig):
        self.task, self.plan, self.teacher, self.judge, self.cfg = task, plan, teacher, judge, cfg
        self.items: dict = {}
        self.unfinished: set[str] = set()  # this chunk's rows a teacher or judge request failed for, for good
        self.errors: list[str] = []

    def request(self, r: dict, hint: bool = False) -> Request:
        item, cfg = self.items[r["id"]], self.cfg
        prompt = self.task.prompt(item) + (HINT.format(answer=r["answer"]) if hint else "")
        return Request(r["id"], prompt, list(item.images), caption=r.get("caption"), max_tokens=cfg.max_new_tokens,
                       temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=self.plan[r["id"]][1],
                       seed=zlib.crc32(f"{r['id']}:{int(hint)}".encode()))

    def run(self, chunk: list[dict], items: dict) -> list[dict]:
        """Records of the rows finished; a row whose teacher or judge request failed for good is left out."""
        self.items, self.unfinished = items, set()
        outs = dict(self.teacher.complete([self.request(r) for r in chunk]))
        self.errors += [outs[r["id"]].error for r in chunk if outs[r["id"]].error]
        live = [r for r in chunk if not outs[r["id"]].error]
        state = {r["id"]: {"teacher": outs[r["id"]].text, "response": None, "revisions": [], "failures": []}
                 for r in live}
        for r, ok, how in self.check([(r, outs[r["id"]].text) for r in live], state):
            state[r["id"]].update(teacher_correct=ok, check=how, response=outs[r["id"]].text if ok else None)

        for how in strategies(self.cfg, self.judge, self.teacher):
            wrong = [r for r in live if state[r["id"]]["response"] is None]
            if not wrong:
                break
            got, rejected = self.revise(how, wrong, state)
            for k, text in rejected.items():
                state[k]["revisions"].append({"by": how, "response": text, "correct": False, "check": "cites the hint"})
            for r, ok, check in self.check([(r, got[r["id"]]) for r in wrong if r["id"] in got], state):
                state[r["id"]]["revisions"].append({"by": how, "response": got[r["id"]], "correct": ok, "check": check})
                if ok:
                    state[r["id"]]["response"] = got[r["id"]]

        rewards = self.rewards([(r, state[r["id"]]["response"]) for r in live if state[r["id"]]["response"]
                                and r["id"] not in self.unfinished])
        recs = []
        for r in live:
            if r["id"] in self.unfinished:
                continue
            s, (hat, p) = state[r["id"]], self.plan[r["id"]]
            response, (score, source) = s["response"], rewards.get(r["id"], (None, None))
            if response is None:
                verdict = "dropped"
            else:
                verdict = "kept" if s["teacher_correct"] else f"revised:{s['revisions'][-1]['by']}"
            recs.append({
                "id": r["id"], **{f"s_{k}": v for k, v in hat.items()}, "penalty": round(p, 6),
                "difficulty": S.label_difficulty(r, self.cfg.difficulty_field),
                "teacher": s["teacher"], "teacher_finished": outs[r["id"]].finished,
                "teacher_length": self.length(s["teacher"]), "teacher_correct": s["teacher_correct"],
                "check": s["check"], "verdict": verdict, "revisions": s["revisions"],
                "response": response, "length": self.length(response) if response is not None else None,
                "score": score, "score_source": source, "judge_failures": s["failures"],
            })
        return recs

    def check(self, pairs: list[tuple[dict, str]], state: dict) -> list[tuple[dict, bool, str]]:
        """(row, right?, how) by the task's scorer; a free-form gold the rules did not match goes to the judge."""
        out, ask = [], {}
        for r, text in pairs:
            item = self.items[r["id"]]
            sc = self.task.score(item, text)
            if not sc.correct and self.judge is not None and sc.extracted and _free_form(item):
                ask[r["id"]] = (r, sc.extracted)
            out.append([r, sc.correct, "rules"])
        verdicts = self.judge.verdicts(ask) if ask else {}
        for entry in out:
            v = verdicts.get(entry[0]["id"])
            if v is True:
                entry[1:] = [True, "judge"]
            elif isinstance(v, Failure):
                state[entry[0]["id"]]["failures"].append({"verdict": v.record()})
            elif isinstance(v, Unreachable):
                self._unfinished(entry[0]["id"], v.reason)
        return [tuple(e) for e in out]

    def _unfinished(self, key: str, reason: str) -> None:
        self.unfinished.add(key)
        self.errors.append(reason)

    def revise(self, how: str, wrong: list[dict], state: dict) -> tuple[dict[str, str], dict[str, str]]:
        """(candidate rewrites to check, rewrites rejected unchecked: hinted chains that cite the hint)."""
        wrong = [r for r in wrong if r["id"] not in self.unfinished]
        if how == "judge":
            got, unreachable = self.judge.revise({r["id"]: (r, _reasoning(state[r["id"]]["teacher"]),
                                                             self.items[r["id"]].images) for r in wrong})
            for k in unreachable:
                self._unfinished(k, "the judge could not be reached for a revision")
            return got, {}
        if how == "hint":
            got, rejected = {}, {}
            for k, c in self.teacher.complete([self.request(r, hint=True) for r in wrong]):
                if c.error:
                    self._unfinished(k, c.error)
                else:  # a chain that cites the hint it was given teaches nothing
                    (rejected if _quotes_hint(c.text) else got)[k] = c.text
            return got, rejected
        # reference: the row's own chain, written as the teacher would (`world.data.target`'s form)
        return {r["id"]: f" {str(r['reasoning']).strip()}{THINK_CLOSE}\n\\boxed{{{r['answer']}}}" for r in wrong
                if str(r.get("reasoning") or "").strip()}, {}

    def rewards(self, pairs: list[tuple[dict, str]]) -> dict[str, tuple[int, str]]:
        """The 0..5 reward-model score of each final response: the judge's, else (or where it
        failed) the rules' (`r1v/rewards.py`'s `rubric_score`: format, answer, true arithmetic, facts the
        row's reference states; a row without a reference has nothing to contradict)."""
        from r1v.rewards import rubric_score

        judged = {}
        if pairs and self.judge is not None and self.cfg.reward in ("auto", "judge"):
            judged = self.judge.rewards({r["id"]: (r, text) for r, text in pairs})
        out = {}
        for r, text in pairs:
            got = judged.get(r["id"])
            if isinstance(got, Unreachable):
                self._unfinished(r["id"], got.reason)
                continue
            if isinstance(got, int):
                out[r["id"]] = (got, "judge")
                continue
            reference = str(r.get("reasoning") or "") or _reasoning(text)
            out[r["id"]] = (rubric_score(text, reference=reference, correct=True),
                            "rules" if got is None else f"rules (judge failed: {got.reason})")
        return out

    def length(self, response: str) -> int:
        """Reasoning length: tokens by the teacher's tokenizer, words for an endpoint."""
        reasoning = _reasoning(response)
        n = self.teacher.count(reasoning)
        return n if n is not None else len(reasoning.split())


def strategies(cfg: DistillConfig, judge: Judge | None, teacher) -> list[str]:
    """The revisions tried, in order (`distill.revise`). auto: the judge when it is an endpoint,
    else the teacher with a hint (a teacher that only replays its rows, `--teacher rows`, cannot
    take one: the judge if any), then the row's reference chain."""
    if cfg.revise == "none":
        return []
    if cfg.revise != "auto":
        return [cfg.revise]
    generates = getattr(teacher, "generates", True)
    if judge is not None and (isinstance(judge.model, EndpointModel) or not generates):
        return ["judge", "reference"]
    return ["hint", "reference"] if generates else ["reference"]


def _quotes_hint(text: str) -> bool:
    return bool(re.search(r"correct final answer|\bhint\b", text, re.I))


def check_rows(rows: Sequence[dict]) -> None:
    """One-line errors for rows the readers would choke on (types, not just presence)."""
    for r in rows:
        where = f"row {r['id']}"
        if not isinstance(r.get("question"), str) or not r["question"].strip():
            raise R1VError(f"{where}: `question` must be non-empty text")
        if r.get("answer") is None or isinstance(r["answer"], (dict, list)):
            raise R1VError(f"{where}: `answer` must be text or a number")
        if r.get("image") is not None and not isinstance(r["image"], str):
            raise R1VError(f"{where}: `image` must be one path (several go in `images`, a list)")
        if r.get("images") is not None and (not isinstance(r["images"], list)
                                            or not all(isinstance(x, str) for x in r["images"])):
            raise R1VError(f"{where}: `images` must be a list of paths")
        if r.get("choices") is not None and not isinstance(r["choices"], list):
            raise R1VError(f"{where}: `choices` must be a list")
        for k in ("caption", "reasoning", "context"):
            if r.get(k) is not None and not isinstance(r[k], str):
                raise R1VError(f"{where}: `{k}` must be text")


def _free_form(item) -> bool:
    return not item.choices and not re.fullmatch(r"\s*-?[\d.,/]+\s*", str(item.answer))


def _reasoning(response: str) -> str:
    return response.partition(THINK_CLOSE)[0].strip()


def _chunks(xs: list, n: int):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


def _fingerprint(rows: Sequence[dict]) -> str:
    """The rows as a rerun must find them (every field, images by path)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def _portable(row: dict, root: Path | None) -> dict:
    """The row with image paths absolute, so data.jsonl works from any folder."""
    if root is None:
        return dict(row)
    out = dict(row)
    if row.get("image"):
        out["image"] = str((root / row["image"]).resolve())
    if row.get("images"):
        out["images"] = [str((root / x).resolve()) for x in row["images"]]
    return out
