"""`r1v eval run|score|report|leakage` end to end: every published format, an OpenAI-compatible
server on loopback, the tiny model in-process, resumption after a crash, reports, leakage."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.endpoint import Completion
from r1v.evaluate.examples import GPQA_ROWS, MATH500_ROWS, MMMU_ROWS, write_examples
from r1v.evaluate.generate import Sampling
from r1v.evaluate.run import RunDir, evaluate
from r1v.evaluate.tasks import get_task
from r1v.stats import mean_ci


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_examples(tmp_path_factory.mktemp("benchdata"))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- eval score, every format
def right_and_wrong(bench, data):
    """One correct and one wrong output for the first two items of each benchmark."""
    task = get_task(bench)
    items = task.read(data[bench])
    good = {"math500": "\\boxed{2}", "aime24": "\\boxed{24}", "mathvista": "\\boxed{B}",
            "mmmu": "\\boxed{B}", "gpqa": f"\\boxed{{{items[0].answer}}}", "pope": "Yes, there is."}[bench]
    return [{"id": items[0].id, "output": f"thinking...</think>{good}"},
            {"id": items[1].id, "output": "thinking...</think>\\boxed{999}"}]


@pytest.mark.parametrize("bench", ["math500", "aime24", "gpqa", "mathvista", "mmmu", "pope"])
def test_score_every_benchmark_format(bench, data, tmp_path, capsys):
    resp = tmp_path / "resp.jsonl"
    resp.write_text("".join(json.dumps(r) + "\n" for r in right_and_wrong(bench, data)))
    out = tmp_path / "run"
    assert main(["eval", "score", "--bench", bench, "--data", str(data[bench]), "--responses", str(resp),
                 "--out", str(out)]) == 0
    records = read_jsonl(out / "items.jsonl")
    assert [r["correct"] for r in records] == [True, False]
    for key in ("id", "prompt", "output", "reasoning", "answer", "extracted", "correct", "scorer"):
        assert key in records[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == 50.0 and summary["items"] == 2
    assert summary["complete"] == (summary["items_in_data"] == 2)  # responses for only some items: partial
    out = capsys.readouterr().out
    assert "50.0% pass@1" in out and ("partial" in out) != summary["complete"]


def test_mmmu_reads_validation_only_with_images_and_subjects(data):
    items = get_task("mmmu").read(data["mmmu"])
    assert [it.id for it in items] == [r["id"] for r in MMMU_ROWS]  # dev files skipped
    assert [len(it.images) for it in items] == [r["n_images"] for r in MMMU_ROWS]
    assert items[0].choices == ["square", "circle", "triangle", "line"] and items[1].choices is None
    assert {it.groups["subject"] for it in items} == {"Art", "Math"}


def test_gpqa_shuffle_is_fixed_per_seed_and_tracks_the_answer(data):
    task = get_task("gpqa")
    a, b, c = task.read(data["gpqa"]), task.read(data["gpqa"]), task.read(data["gpqa"], seed=1)
    assert [i.choices for i in a] == [i.choices for i in b]
    assert [i.choices for i in a] != [i.choices for i in c]
    for item, row in zip(a + c, GPQA_ROWS + GPQA_ROWS):
        assert item.choices["ABCD".index(item.answer)] == row["Correct Answer"]


def test_mathvista_github_release_json(tmp_path):
    rows = {"7": {"pid": "7", "question": "How many?", "query": "Question: How many?", "image": "images/7.png",
                  "choices": None, "unit": None, "precision": None, "answer": "3", "question_type": "free_form",
                  "answer_type": "integer", "metadata": {"task": "tq"}}}
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "7.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "testmini.json").write_text(json.dumps(rows, indent=2))
    [item] = get_task("mathvista").read(tmp_path / "testmini.json")
    assert (item.id, item.answer, item.images) == ("7", "3", [b"\x89PNG fake"])


def test_math500_gold_comes_from_the_solution(data):
    items = get_task("math500").read(data["math500"])
    assert [i.answer for i in items] == ["2", "\\frac{1}{2}", "3"]
    assert [i.id for i in items] == [r["unique_id"] for r in MATH500_ROWS]


# ---------------------------------------------------------------- resumption
class Crashing:
    """Yields `ok` completions, then dies the way a killed job does."""

    def __init__(self, ok: int | None):
        self.ok, self.asked = ok, []

    def run(self, jobs, sampling):
        for n, (key, prompt, images) in enumerate(jobs):
            self.asked.append(key)
            if self.ok is not None and n == self.ok:
                raise KeyboardInterrupt
            yield key, Completion(f"...</think>\\boxed{{{2 if key[1] == 0 else 3}}}", True, 5)


def test_an_interrupted_run_resumes_without_loss_or_double_counting(data, tmp_path):
    task = get_task("math500")
    items = task.read(data["math500"])
    settings = {"bench": "math500", "model": "m", "data": "d", "samples": 2, "think": True,
                "sampling": {}, "extraction": "rules"}
    with pytest.raises(KeyboardInterrupt):
        evaluate(task, items, Crashing(ok=3), Sampling(), RunDir(tmp_path, settings), samples=2)
    path = tmp_path / "items.jsonl"
    assert len(read_jsonl(path)) == 3
    with open(path, "a") as f:  # a crash in the middle of a write
        f.write('{"id": "test/algebra/3.json", "sam')
    again = Crashing(ok=None)
    summary = evaluate(task, items, again, Sampling(), RunDir(tmp_path, settings), samples=2)
    assert len(again.asked) == 3  # only what was missing
    records = read_jsonl(path)
    keys = [(r["id"], r["sample"]) for r in records]
    assert len(keys) == len(set(keys)) == 6
    assert summary["complete"] and summary["outputs"] == 6
    # item 1 (gold 2): samples 2, 3 -> 0.5; item 2 (gold 1/2): 0; item 3 (gold 3): 0.5
    assert summary["accuracy"] == pytest.approx(100 / 3, abs=0.01)


def test_gpqa_responses_may_use_row_numbers(data, tmp_path):
    items = get_task("gpqa").read(data["gpqa"])
    resp = tmp_path / "r.jsonl"
    resp.write_text("".join(json.dumps({"id": n, "output": f"</think>\\boxed{{{it.answer}}}"}) + "\n"
                            for n, it in enumerate(items)))
    out = tmp_path / "o"
    assert main(["eval", "score", "--bench", "gpqa", "--data", str(data["gpqa"]), "--responses", str(resp),
                 "--out", str(out)]) == 0
    assert [r["id"] for r in read_jsonl(out / "items.jsonl")] == ["recA", "recB", "recC"]
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 100.0


def test_resuming_a_different_run_is_refused(data, tmp_path, capsys):
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"id": "recA", "output": "</think>A"}) + "\n")
    args = ["eval", "score", "--bench", "gpqa", "--data", str(data["gpqa"]), "--responses", str(resp),
            "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert main(args + ["--no-think"]) == 2
    assert "holds a different run (think differ)" in capsys.readouterr().err
    other = tmp_path / "r2.jsonl"
    other.write_text(resp.read_text())
    assert main([*args[:-4], "--responses", str(other), "--out", str(tmp_path / "o")]) == 2
    assert "responses differ" in capsys.readouterr().err
    assert main(args + ["--no-think", "--overwrite"]) == 0


# ---------------------------------------------------------------- an OpenAI-compatible server
class FakeServer:
    """/v1/models and /v1/chat/completions. Answers generation requests from a table (the
    reasoning split off as vLLM's reasoning parser does), judge requests with the response's
    last word, and fails the first request with a 500 to exercise the client's retries."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.requests, self.failed_once = answers, [], False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake-r1v", "object": "model", "created": 0,
                                                              "owned_by": "me"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not server.failed_once:
                    server.failed_once = True
                    return self._send(500, {"error": {"message": "boom"}})
                server.requests.append(body)
                self._send(200, server.reply(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, body):
        msgs = body["messages"]
        content = msgs[-1]["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        if msgs[0]["role"] == "system":  # a judge request
            response = text.split("Response:\n", 1)[1].split("\n\nThe final answer", 1)[0]
            message = {"role": "assistant", "content": re.findall(r"\w+", response)[-1]}
        else:
            answer = next(a for q, a in self.answers.items() if q in text)
            message = {"role": "assistant", "content": f"So it is \\boxed{{{answer}}}.",
                       "reasoning_content": "Let me look at the image."}
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 7, "total_tokens": 8}}

    def close(self):
        self.httpd.shutdown()


def test_run_through_an_openai_compatible_endpoint(data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    golds = {r["question"].split(":")[-1].strip(): r["answer"] for r in MMMU_ROWS}
    server = FakeServer(golds)
    try:
        out = tmp_path / "run"
        assert main(["eval", "run", "--model", server.url, "--bench", "mmmu", "--data", str(data["mmmu"]),
                     "--out", str(out), "--samples", "2", "--concurrency", "3"]) == 0
    finally:
        server.close()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == 100.0 and summary["outputs"] == 8
    assert summary["groups"]["subject"] == {"Art": {"n": 2, "accuracy": 100.0}, "Math": {"n": 2, "accuracy": 100.0}}
    gen = [r for r in server.requests if r["messages"][0]["role"] == "user"]
    n_images = sorted(sum(p["type"] == "image_url" for p in r["messages"][0]["content"]) for r in gen)
    assert n_images == sorted([r["n_images"] for r in MMMU_ROWS] * 2)
    two = next(r["messages"][0]["content"] for r in gen if len(r["messages"][0]["content"]) == 5)
    assert [p["type"] for p in two] == ["text", "image_url", "text", "image_url", "text"]
    assert two[0]["text"] == "Image-1: " and two[2]["text"] == "\nImage-2: "  # as in-process prompts
    rec = read_jsonl(out / "items.jsonl")[0]
    assert rec["reasoning"] == "Let me look at the image." and rec["new_tokens"] == 7
    assert len({r["seed"] for r in gen}) == 8  # one seed per (item, sample), never reused
    assert not any("repetition_penalty" in r for r in gen)  # unset: the server's default


def test_a_repetition_penalty_goes_to_the_endpoint_and_into_run_json(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    server = FakeServer({r["question"].split(":")[-1].strip(): r["answer"] for r in MMMU_ROWS})
    out = tmp_path / "run"
    args = ["eval", "run", "--model", server.url, "--bench", "mmmu", "--data", str(data["mmmu"]), "--out", str(out)]
    try:
        assert main(args + ["--repetition-penalty", "1"]) == 0
        assert main(args) == 2  # a resumed run must keep the penalty its records were made with
        assert "sampling differ" in capsys.readouterr().err
    finally:
        server.close()
    assert {r["repetition_penalty"] for r in server.requests} == {1.0}
    assert json.loads((out / "run.json").read_text())["sampling"]["repetition_penalty"] == 1.0
    assert main(args + ["--repetition-penalty", "0", "--out", str(tmp_path / "other")]) == 2
    assert "--repetition-penalty must be in (0, 10]" in capsys.readouterr().err


def test_greedy_without_a_penalty_gives_the_recipes_held_out_outputs(recipe_run, tmp_path):
    # The recipe scores each stage greedily with no repetition penalty (r1v/train/rollout.py), in its
    # own batched path; `r1v eval run` with the same settings must give the same outputs, so a user can
    # score any stage on another file (the validation split) the way the recipe does.
    _, run, world = recipe_run
    recipe = {r["id"]: r["output"] for r in read_jsonl(run / "outputs" / "grpo-visual.jsonl")}
    out = tmp_path / "eval"
    assert main(["eval", "run", "--model", str(run / "grpo"), "--bench", "world", "--data",
                 str(world / "data" / "visual-test.jsonl"), "--out", str(out), "--limit", str(len(recipe)),
                 "--temperature", "0", "--repetition-penalty", "1", "--max-new-tokens", "12", "--max-tiles", "1",
                 "--batch-size", "3"]) == 0
    assert {r["id"]: r["output"] for r in read_jsonl(out / "items.jsonl")} == recipe


def test_judge_extraction_through_an_endpoint(data, tmp_path):
    server = FakeServer({})
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"id": "test/prealgebra/1.json", "output": "</think>I counted, and it is 2"}) + "\n"
                    + json.dumps({"id": "test/algebra/3.json", "output": "</think>x equals 4"}) + "\n")
    try:
        out = tmp_path / "run"
        assert main(["eval", "score", "--bench", "math500", "--data", str(data["math500"]), "--responses",
                     str(resp), "--out", str(out), "--judge-url", server.url]) == 0
    finally:
        server.close()
    records = sorted(read_jsonl(out / "items.jsonl"), key=lambda r: r["id"])  # in the order verdicts came
    assert [(r["correct"], r["scorer"].split(":")[0], r["extracted"]) for r in records] == \
        [(False, "judge", "4"), (True, "judge", "2")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extraction"] == "judge:extract" and summary["judge"]["model"] == "fake-r1v"
    assert records[1]["judge"]["prompt"] == "extract-v1" and records[1]["judge"]["replies"] == ["2"]


# ---------------------------------------------------------------- in-process generation
def test_run_in_process_with_the_tiny_model(data, tmp_path):
    model = tmp_path / "tiny"
    assert main(["build", "--out", str(model)]) == 0
    out = tmp_path / "run"
    args = ["eval", "run", "--model", str(model), "--bench", "mathvista", "--data", str(data["mathvista"]),
            "--out", str(out), "--limit", "3", "--max-new-tokens", "4", "--batch-size", "2", "--max-tiles", "1"]
    assert main(args) == 0
    records = read_jsonl(out / "items.jsonl")
    assert len(records) == 3 and all(r["images"] == 1 and r["new_tokens"] <= 4 for r in records)
    assert json.loads((out / "summary.json").read_text())["complete"]
    assert main(args) == 0  # a finished run resumes to the same summary without generating
    assert len(read_jsonl(out / "items.jsonl")) == 3


# ---------------------------------------------------------------- report
def test_report_table_and_chart(data, tmp_path, capsys):
    runs = []
    for name, bench in [("m1", "math500"), ("m1", "gpqa"), ("m2", "math500")]:
        resp = tmp_path / f"{name}-{bench}.jsonl"
        resp.write_text("".join(json.dumps(r) + "\n" for r in right_and_wrong(bench, data)))
        out = tmp_path / "runs" / f"{name}-{bench}"
        assert main(["eval", "score", "--bench", bench, "--data", str(data[bench]), "--responses", str(resp),
                     "--out", str(out), "--name", name]) == 0
        runs.append(str(out))
    assert main(["eval", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "| Model | MATH-500 | GPQA |"
    assert lines[2].startswith("| m1 | 50.0 (0.0–") and lines[3].startswith("| m2 | 50.0 (0.0–")
    assert lines[3].endswith("| – |")
    assert (tmp_path / "rep" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["eval", "report", runs[0], runs[0], "--out", str(tmp_path / "rep2")]) == 2
    assert "two runs of m1 on math500" in capsys.readouterr().err


def test_confidence_interval():
    m, lo, hi = mean_ci([1.0, 0.0] * 50)  # CLT over items: sd with ddof=1
    assert m == 50.0 and lo == pytest.approx(50 - 1.959964 * 100 * (0.25 * 100 / 99) ** 0.5 / 10, abs=1e-6)
    assert hi == pytest.approx(100 - lo)
    m, lo, hi = mean_ci([0.0] * 4)  # all alike: Wilson over the items, not a zero-width interval
    assert (m, lo) == (0.0, 0.0) and hi == pytest.approx(100 * 3.8415 / (4 + 3.8415), abs=0.01)
    assert mean_ci([1.0] * 10)[1] == pytest.approx(100 * 10 / (10 + 3.8415), abs=0.01)


# ---------------------------------------------------------------- leakage
def test_leakage_finds_test_items_in_training_data(data, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": "Q: Which particle carries a NEGATIVE charge? (A) ..."},
                          {"role": "assistant", "content": "electron"}]},
            {"messages": [{"role": "user", "content": "Which organelle makes DNA"}]},  # a near miss
            {"question": "which molecule is water"}]  # an exact short question
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "leak.json"
    assert main(["eval", "leakage", "--train", str(train), "--bench", "gpqa", "--data", str(data["gpqa"]),
                 "--n", "4", "--out", str(out)]) == 0
    flagged = json.loads(out.read_text())["flagged"]
    assert sorted(f["id"] for f in flagged) == ["recA", "recB"]
    assert "2 of 3 gpqa items" in capsys.readouterr().out


def test_run_dir_is_locked_and_survives_a_damaged_line(tmp_path, capsys):
    settings = {"bench": "gpqa", "model": "m"}
    run = RunDir(tmp_path, settings)
    with pytest.raises(R1VError, match="another r1v eval is writing"):
        RunDir(tmp_path, settings)
    for k in range(3):
        run.add({"id": "a", "sample": k, "correct": True, "scorer": "rules"})
    del run
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    (tmp_path / "items.jsonl").write_text("\n".join([lines[0], "#garbage", lines[1], '{"no": "id"}', lines[2]])
                                          + "\n")
    again = RunDir(tmp_path, settings)
    assert sorted(again.records) == [("a", 0), ("a", 1), ("a", 2)]  # records after the damage are kept
    assert "dropped 2 unreadable line(s)" in capsys.readouterr().err
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 3


def test_an_item_that_cannot_be_generated_is_recorded_and_the_run_goes_on(tmp_path):
    model = tmp_path / "tiny"
    assert main(["build", "--out", str(model)]) == 0
    rows = [dict(problem="Compute 1+1. " * 3000, solution="\\boxed{2}", answer="2", unique_id="long"),
            dict(problem="Compute 2+2.", solution="\\boxed{4}", answer="4", unique_id="short")]
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["eval", "run", "--model", str(model), "--bench", "math500", "--data", str(data), "--out", str(out),
                 "--max-new-tokens", "2"]) == 0
    long, short = read_jsonl(out / "items.jsonl")
    assert long["scorer"] == "none:generation-failed" and "context" in long["error"]
    assert short["id"] == "short" and short["new_tokens"] > 0
    assert json.loads((out / "summary.json").read_text())["generation_failed"] == 1


def test_mathvista_leakage_ignores_the_shared_hints(data, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("Hint: answer with the option letter. Hint: answer with an integer. Hint: answer with a "
                     "two-decimal float. Question: something else entirely\n")
    assert main(["eval", "leakage", "--train", str(train), "--bench", "mathvista", "--data", str(data["mathvista"]),
                 "--n", "3", "--out", str(tmp_path / "l.json")]) == 0
    assert json.loads((tmp_path / "l.json").read_text())["flagged"] == []


# ---------------------------------------------------------------- user mistakes: one line, exit 2
@pytest.mark.parametrize("case", ["no-data", "wrong-bench", "bad-id", "bad-json", "no-model", "mixed-folder",
                                  "not-utf8", "nan-timeout", "bad-device", "bad-temperature", "out-is-a-file",
                                  "math500-as-aime"])
def test_eval_mistakes_give_one_clear_line(case, data, tmp_path, capsys):
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"id": "nope", "output": "x"}) + "\n" if case == "bad-id" else "{not json\n")
    if case == "not-utf8":
        resp.write_bytes(b'{"id": "recA", "output": "\xff\xfe"}\n')
    model = tmp_path / "m"
    model.mkdir()
    (tmp_path / "afile").write_text("x")
    gpqa = ["--bench", "gpqa", "--data", str(data["gpqa"])]
    args = {
        "mixed-folder": ["score", "--bench", "math500", "--data", str(data["math500"].parent.parent),
                         "--responses", str(resp)],
        "not-utf8": ["score", *gpqa, "--responses", str(resp)],
        "nan-timeout": ["score", *gpqa, "--responses", str(resp), "--verify-timeout", "nan"],
        "bad-device": ["run", *gpqa, "--model", str(model), "--device", "foo"],
        "bad-temperature": ["run", *gpqa, "--model", str(model), "--temperature", "-1"],
        "math500-as-aime": ["score", "--bench", "aime24", "--data", str(data["math500"]), "--responses", str(resp)],
        "out-is-a-file": ["score", *gpqa, "--responses", str(resp)],
        "no-data": ["score", "--bench", "gpqa", "--data", str(tmp_path / "missing.csv"), "--responses", str(resp)],
        "wrong-bench": ["score", "--bench", "gpqa", "--data", str(data["math500"]), "--responses", str(resp)],
        "bad-id": ["score", "--bench", "gpqa", "--data", str(data["gpqa"]), "--responses", str(resp)],
        "bad-json": ["score", "--bench", "gpqa", "--data", str(data["gpqa"]), "--responses", str(resp)],
        "no-model": ["run", "--bench", "gpqa", "--data", str(data["gpqa"]), "--model", str(tmp_path / "none")],
    }[case]
    out = tmp_path / ("afile" if case == "out-is-a-file" else "o")
    if case == "out-is-a-file":
        resp.write_text(json.dumps({"id": "recA", "output": "x"}) + "\n")
    assert main(["eval", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("r1v: error: ") and len(err.splitlines()) == 1, err


def test_leakage_catches_short_questions_copied_inside_longer_rows(data, tmp_path):
    """MATH-500's example file as its own training data: every item is flagged, the short ones by
    containment in their row (problem + solution + answer)."""
    train = tmp_path / "train.jsonl"
    train.write_text(data["math500"].read_text())
    out = tmp_path / "leak.json"
    assert main(["eval", "leakage", "--train", str(train), "--bench", "math500", "--data", str(data["math500"]),
                 "--out", str(out)]) == 0
    flagged = json.loads(out.read_text())["flagged"]
    assert len(flagged) == len(MATH500_ROWS) and all(f["match"] == "contained" for f in flagged)
    # A row that is a JSON array holds several examples; a question not in them is not flagged.
    rows = [[{"text": "Intro. " + MATH500_ROWS[0]["problem"] + " Then more words follow."}, {"text": "unrelated"}]]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "leakage", "--train", str(train), "--bench", "math500", "--data", str(data["math500"]),
                 "--out", str(out)]) == 0
    flagged = json.loads(out.read_text())["flagged"]
    assert [f["id"] for f in flagged] == [MATH500_ROWS[0]["unique_id"]] and flagged[0]["train_line"] == 1


def test_pope_reads_both_splits_scores_officially_and_reports_its_metrics(data, tmp_path, capsys):
    from r1v.evaluate.tasks.pope import pope_answer

    task = get_task("pope")
    items = task.read(data["pope"])
    assert len(items) == 8 and {it.groups["split"] for it in items} == {"random", "adversarial"}
    assert all(it.images for it in items) and items[0].answer == "yes" and items[1].answer == "no"
    # POPE's evaluate.py: first sentence, commas dropped, "No" / "not" / "no" as a word -> no
    assert pope_answer("No, there is no dog.") == "no" and pope_answer("Yes. It is not a cat.") == "yes"
    assert pope_answer("There is not a dog") == "no" and pope_answer("Not at all") == "yes"  # official pitfall
    assert pope_answer("Nope") == "yes" and pope_answer("no") == "no"
    # the reasoning is never read: only what follows </think>
    assert task.score(items[1], "I do not see a dog... wait</think>\\boxed{yes}").extracted == "yes"
    assert task.hallucinated(items[1], "x</think>Yes.") is True      # yes to an absent object
    assert task.hallucinated(items[1], "x</think>No.") is False
    assert task.hallucinated(items[0], "x</think>No.") is False      # a miss is not a hallucination
    outs = ["x</think>Yes.", "x</think>Yes.", "x</think>Yes.", "x</think>No."] * 2  # one false yes per split
    resp = tmp_path / "resp.jsonl"
    resp.write_text("".join(json.dumps({"id": it.id, "output": o}) + "\n" for it, o in zip(items, outs)))
    assert main(["eval", "score", "--bench", "pope", "--data", str(data["pope"]), "--responses", str(resp),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    m = summary["metrics"]["all"]
    # per split: tp 2, fp 1, tn 1, fn 0 -> accuracy 75, precision 66.67, recall 100, f1 80, yes-ratio 75
    assert m == {"n": 8, "accuracy": 75.0, "precision": 66.67, "recall": 100.0, "f1": 80.0, "yes_ratio": 75.0}
    assert summary["metrics"]["random"]["n"] == 4 and summary["hallucination"] == 25.0
    assert "hallucination: 25.0%" in capsys.readouterr().out


def test_a_responses_file_with_a_mistake_leaves_no_run_behind(data, tmp_path, capsys):
    """The responses are checked before --out is claimed: the corrected file, under another name,
    scores into the same --out without --overwrite."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "test/prealgebra/1.json", "output": "</think>2"}) + "\n"
                   + json.dumps({"id": "no-such-id", "output": "</think>2"}) + "\n")
    out = tmp_path / "run"
    args = ["eval", "score", "--bench", "math500", "--data", str(data["math500"]), "--out", str(out)]
    assert main(args + ["--responses", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2: id 'no-such-id'" in err and "--limit" not in err
    assert not (out / "run.json").exists()
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text().splitlines()[0] + "\n")
    assert main(args + ["--responses", str(good)]) == 0
