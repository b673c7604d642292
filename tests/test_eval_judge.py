"""Reproducible judging (`r1v/evaluate/judge.py`): versioned prompts, recorded replies, the reply
cache (counted on a loopback judge), K samples with agreement, junk replies falling back to the
rules, `--judge-mode match`, and `r1v eval report` saying which scores were judged."""

from __future__ import annotations

import json
import re

import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.examples import write_math500
from r1v.evaluate.judge import PROMPTS, Prompt
from r1v.io import read_jsonl
from tests.loopback import Loopback


class LoopbackJudge(Loopback):
    """A loopback judge. `answer(user_text, seed)` gives the reply; the default extracts the response's
    last word (extract mode) or says CORRECT when the reference's text is in the response (match mode)."""

    def __init__(self, answer=None):
        answer = answer or self.default
        super().__init__(lambda body: answer(body["messages"][-1]["content"], body.get("seed")), model="judge-1")

    @staticmethod
    def default(user: str, seed) -> str:
        response = user.split("Response:\n", 1)[1].split("\n\n", 1)[0]
        if "Reference answer:" in user:
            gold = user.split("Reference answer:\n", 1)[1].split("\n\n", 1)[0]
            words = {"2": "two", "3": "three"}
            return "CORRECT" if gold in response or words.get(gold, "?") in response else "INCORRECT"
        return re.findall(r"\w+", response)[-1]


OUTPUTS = [("test/prealgebra/1.json", "</think>I counted, and it is 2"),  # gold 2: right
           ("test/algebra/2.json", "</think>one half, so 1/3"),  # gold 1/2: wrong
           ("test/algebra/3.json", "</think>x is three")]  # gold 3: right in words only


def records_of(path):
    """A run's records in the order of OUTPUTS (judged outputs are recorded as their verdicts come back)."""
    order = [i for i, _ in OUTPUTS]
    return sorted(read_jsonl(path), key=lambda r: (order.index(r["id"]), r["sample"]))


@pytest.fixture
def bench(tmp_path):
    data = tmp_path / "MATH-500" / "test.jsonl"
    write_math500(data)
    resp = tmp_path / "responses.jsonl"
    resp.write_text("".join(json.dumps({"id": i, "output": o}) + "\n" for i, o in OUTPUTS))
    return data, resp


def score(bench, out, url, *extra):
    data, resp = bench
    return main(["eval", "score", "--bench", "math500", "--data", str(data), "--responses", str(resp),
                 "--out", str(out), "--judge-url", url, *extra])


def test_shipped_prompts_are_versioned_and_checked(tmp_path):
    for mode in ("extract", "match"):
        p = Prompt.load(PROMPTS / f"{mode}-v1.txt", mode)
        assert p.version == f"{mode}-v1" and len(p.sha) == 12 and "{response}" in p.user and p.system
        assert "{" not in p.render(question="q", response="r", gold="g").replace("\\boxed{", "")
    bad = tmp_path / "mine.txt"
    bad.write_text("[system]\nGrade.\n[user]\nQuestion: {question}\nResponse: {response}\n")
    with pytest.raises(R1VError, match="lacks \\{gold\\}"):
        Prompt.load(bad, "match")  # a match prompt that never shows the gold
    bad.write_text("no sections at all {question} {response}")
    with pytest.raises(R1VError, match="\\[system\\] and a \\[user\\]"):
        Prompt.load(bad, "extract")


def test_records_keep_the_judge_and_a_rerun_asks_nothing(bench, tmp_path, capsys):
    cache = tmp_path / "cache.jsonl"
    with LoopbackJudge() as judge:
        assert score(bench, tmp_path / "a", judge.url, "--judge-cache", str(cache)) == 0
        asked = len(judge.requests)
        assert asked == 3
        # a new folder, the same outputs: every reply comes from the cache
        assert score(bench, tmp_path / "b", judge.url, "--judge-cache", str(cache)) == 0
        assert len(judge.requests) == asked
        assert "judge: 0 request(s), 3 reply(ies) from the cache" in capsys.readouterr().out
        # no cache: asked again
        assert score(bench, tmp_path / "c", judge.url, "--judge-cache", "none") == 0
        assert len(judge.requests) == 2 * asked
    a, b = records_of(tmp_path / "a" / "items.jsonl"), records_of(tmp_path / "b" / "items.jsonl")
    assert [r["correct"] for r in a] == [r["correct"] for r in b] == [True, False, False]  # "three" != 3 by rules
    j = a[0]["judge"]
    assert (j["model"], j["prompt"], j["mode"], j["replies"]) == ("judge-1", "extract-v1", "extract", ["2"])
    assert j["prompt_sha"] == Prompt.load(PROMPTS / "extract-v1.txt", "extract").sha
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["judge"]["judged"] == 3 and summary["judge"]["fell_back"] == 0


def test_match_mode_judges_against_the_gold(bench, tmp_path):
    with LoopbackJudge() as judge:
        assert score(bench, tmp_path / "m", judge.url, "--judge-mode", "match",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
        golds = [re.search(r"Reference answer:\n(.*)\n", r["messages"][-1]["content"])[1] for r in judge.requests]
    records = records_of(tmp_path / "m" / "items.jsonl")
    assert sorted(golds) == ["2", "3", "\\frac{1}{2}"]  # MATH-500's gold: the solution's boxed answer
    assert [(r["correct"], r["scorer"]) for r in records] == [(True, "judge-match"), (False, "judge-match"),
                                                                (True, "judge-match")]  # "three" matches 3
    assert records[2]["extracted"] is not None  # the rules' own reading is kept beside the verdict
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["extraction"] == "judge:match" and summary["judge"]["prompt"] == "match-v1"


def test_junk_replies_fall_back_to_the_rules_and_say_so(bench, tmp_path, capsys):
    with LoopbackJudge(answer=lambda user, seed: "Sure! Let me think about whether this is right...") as judge:
        assert score(bench, tmp_path / "j", judge.url, "--judge-mode", "match",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
    records = records_of(tmp_path / "j" / "items.jsonl")
    assert [r["scorer"].split(":")[0] for r in records] == ["rules-after-judge-error"] * 3
    assert [r["correct"] for r in records] == [True, False, False]  # the rules' scores
    assert "unusable judge reply" in records[0]["judge"]["error"] and records[0]["judge"]["replies"]
    out = capsys.readouterr().out
    assert "3 judged output(s) fell back to the rules" in out
    assert json.loads((tmp_path / "j" / "summary.json").read_text())["judge"]["fell_back"] == 3


def test_judge_samples_report_agreement_and_a_split_falls_back(bench, tmp_path, capsys):
    def flaky(user, seed):  # sample 2 of every request says the opposite
        said = LoopbackJudge.default(user, seed)
        return ({"CORRECT": "INCORRECT", "INCORRECT": "CORRECT"}[said]) if seed == 2 else said

    with LoopbackJudge(answer=flaky) as judge:
        assert score(bench, tmp_path / "k3", judge.url, "--judge-mode", "match", "--judge-samples", "3",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
        assert {r["seed"] for r in judge.requests} == {0, 1, 2} and judge.requests[0]["temperature"] == 0.6
        assert score(bench, tmp_path / "k4", judge.url, "--judge-mode", "match", "--judge-samples", "4",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
        assert len(judge.requests) == 3 * 3 + 3  # K=4 reuses the cached samples 0-2, asks sample 3
    k3 = records_of(tmp_path / "k3" / "items.jsonl")
    assert [r["correct"] for r in k3] == [True, False, True]  # the majority, 2 of 3
    assert all(r["judge"]["agreement"] == pytest.approx(2 / 3, abs=1e-3) for r in k3)
    summary = json.loads((tmp_path / "k3" / "summary.json").read_text())["judge"]
    assert summary["agreement"] == pytest.approx(66.67, abs=0.01) and summary["unanimous"] == 0
    assert "agreement 66.7% (0.0% unanimous)" in capsys.readouterr().out
    k4 = records_of(tmp_path / "k4" / "items.jsonl")  # samples 0, 1, 3 agree, 2 dissents: 3 of 4
    assert [r["scorer"] for r in k4] == ["judge-match"] * 3


def test_an_even_split_is_scored_by_the_rules(bench, tmp_path):
    def coin(user, seed):
        return "CORRECT" if seed % 2 else "INCORRECT"

    with LoopbackJudge(answer=coin) as judge:
        assert score(bench, tmp_path / "s", judge.url, "--judge-mode", "match", "--judge-samples", "2",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
    records = records_of(tmp_path / "s" / "items.jsonl")
    assert [r["scorer"].split(":")[0] for r in records] == ["rules-after-judge-split"] * 3
    assert [r["correct"] for r in records] == [True, False, False]


def test_a_resumed_run_must_keep_its_judge(bench, tmp_path, capsys):
    with LoopbackJudge() as judge:
        assert score(bench, tmp_path / "r", judge.url, "--judge-cache", str(tmp_path / "c.jsonl")) == 0
        assert score(bench, tmp_path / "r", judge.url, "--judge-mode", "match") == 2
    assert "differ" in capsys.readouterr().err


def test_judge_options_need_a_judge(bench, tmp_path, capsys):
    data, resp = bench
    assert main(["eval", "score", "--bench", "math500", "--data", str(data), "--responses", str(resp),
                 "--out", str(tmp_path / "x"), "--judge-samples", "3"]) == 2
    assert "need --judge-url" in capsys.readouterr().err


def test_report_marks_judged_scores(bench, tmp_path):
    with LoopbackJudge() as judge:
        assert score(bench, tmp_path / "runs" / "judged", judge.url, "--judge-mode", "match", "--name", "m1",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
    data, resp = bench
    assert main(["eval", "score", "--bench", "math500", "--data", str(data), "--responses", str(resp),
                 "--out", str(tmp_path / "runs" / "rules"), "--name", "m2"]) == 0
    assert main(["eval", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    row1 = next(line for line in md.splitlines() if line.startswith("| m1"))
    row2 = next(line for line in md.splitlines() if line.startswith("| m2"))
    assert "†" in row1 and "†" not in row2
    assert "judged (match) by judge-1, prompt match-v1" in md


def test_paper_tables_fix_the_columns_and_add_the_published_rows(bench, tmp_path):
    data, resp = bench
    assert main(["eval", "score", "--bench", "math500", "--data", str(data), "--responses", str(resp),
                 "--out", str(tmp_path / "runs" / "m"), "--name", "mine"]) == 0
    assert main(["eval", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "r3"), "--table", "r1v3"]) == 0
    lines = (tmp_path / "r3" / "report.md").read_text().splitlines()
    assert lines[0] == "| Model | MMMU(Val) | MathVista(mini) | MathVerse | MathVision | MMMU-Pro | HallusionBench |"
    assert lines[2] == "| mine | – | – | – | – | – | – |"  # its MATH-500 run is not in R1V3's table...
    assert lines[3] == "| Skywork-R1V3-38B (published) | 76.0 | 77.1 | 59.6 | 52.6 | 55.4 | 61.3 |"
    assert "- not in the r1v3 table: MATH-500" in lines  # ...and the notes say so
    assert main(["eval", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "r1"), "--table", "r1v"]) == 0
    row = next(line for line in (tmp_path / "r1" / "report.md").read_text().splitlines() if line.startswith("| mine"))
    assert row.startswith("| mine | 33.3 (") and (tmp_path / "r1" / "report.png").is_file()


def test_a_chatty_extraction_is_refused_not_parsed(bench, tmp_path):
    """The extract prompt asks the judge to copy the answer as the response states it: a reply that is
    not in the response is no extraction ("Well, I think..." once scored 0% as an "answer")."""
    with LoopbackJudge(answer=lambda user, seed: "Well, I think probably the answer might be") as judge:
        assert score(bench, tmp_path / "x", judge.url, "--judge-cache", str(tmp_path / "c.jsonl")) == 0
    records = records_of(tmp_path / "x" / "items.jsonl")
    assert [r["scorer"].split(":")[0] for r in records] == ["rules-after-judge-error"] * 3
    assert [r["correct"] for r in records] == [True, False, False]
    assert "not in the response" in records[0]["judge"]["error"]


def test_the_cache_tells_two_judges_apart_by_their_url(bench, tmp_path):
    cache = str(tmp_path / "c.jsonl")
    with LoopbackJudge() as one, LoopbackJudge(answer=lambda user, seed: "NONE") as two:  # both serve "judge-1"
        assert score(bench, tmp_path / "a", one.url, "--judge-cache", cache) == 0
        assert score(bench, tmp_path / "b", two.url, "--judge-cache", cache) == 0
        assert len(one.requests) == len(two.requests) == 3
    assert [r["scorer"] for r in records_of(tmp_path / "b" / "items.jsonl")] == ["none:empty"] * 3


def test_a_reply_that_is_not_json_is_a_judge_error_not_a_crash(bench, tmp_path):
    with Loopback(lambda body: b"not json at all") as judge:
        assert score(bench, tmp_path / "n", judge.url, "--judge-cache", "none") == 0
    records = records_of(tmp_path / "n" / "items.jsonl")
    assert all(r["scorer"].startswith("rules-after-judge-error") and "unreadable reply" in r["judge"]["error"]
               for r in records)


def test_outputs_are_judged_several_at_once(bench, tmp_path):
    """A judge answers in seconds: outputs are judged `--judge-concurrency` at a time, and the records
    and the cache come out the same as one at a time."""
    import threading
    import time

    live, most, lock = [0], [0], threading.Lock()

    def slow(user, seed):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.3)
        with lock:
            live[0] -= 1
        return LoopbackJudge.default(user, seed)

    with LoopbackJudge(answer=slow) as judge:
        assert score(bench, tmp_path / "c", judge.url, "--judge-concurrency", "3",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
        assert most[0] == 3  # all three outputs in flight together
        most[0] = 0
        assert score(bench, tmp_path / "s", judge.url, "--judge-concurrency", "1", "--judge-cache", "none") == 0
        assert most[0] == 1
    key = lambda r: (r["id"], r["correct"], r["scorer"], r["judge"]["replies"])  # noqa: E731
    assert sorted(map(key, records_of(tmp_path / "c" / "items.jsonl"))) == \
        sorted(map(key, records_of(tmp_path / "s" / "items.jsonl")))
    assert len(read_jsonl(tmp_path / "c.jsonl")) == 3


def test_one_model_scored_by_the_rules_and_by_a_judge_gets_two_rows(bench, tmp_path):
    data, resp = bench
    with LoopbackJudge() as judge:
        assert score(bench, tmp_path / "runs" / "j", judge.url, "--judge-mode", "match", "--name", "m",
                     "--judge-cache", str(tmp_path / "c.jsonl")) == 0
    assert main(["eval", "score", "--bench", "math500", "--data", str(data), "--responses", str(resp),
                 "--out", str(tmp_path / "runs" / "r"), "--name", "m"]) == 0
    assert main(["eval", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    rows = [line.split(" | ")[0] for line in (tmp_path / "rep" / "report.md").read_text().splitlines()[2:4]]
    assert sorted(rows) == ["| m", "| m (judge:match)"]
