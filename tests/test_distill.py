"""`r1v distill`: the endpoint client against a real HTTP server on loopback (429, 500, slow replies,
dropped connections, rate limits, concurrency), the pipeline's verdicts and revisions, resumption
after a crash, per-row repetition penalties in a local batch, and the CLI on the small mini-world."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from r1v.cli import main
from r1v.distill.models import EndpointModel, Request, RowRepetitionPenalty
from r1v.distill.run import distill
from r1v.errors import R1VError
from r1v.evaluate.endpoint import Completion, Endpoint, RateLimiter
from r1v.evaluate.tasks import get_task
from r1v.distill.config import DistillConfig


# --------------------------------------------------------------------------- a scripted server
class Server:
    """/v1/models and /v1/chat/completions on 127.0.0.1. `reply(body, n)` (n: how many times this
    prompt was seen before) returns (status, json) or "drop" (close the socket, no reply) or
    ("slow", seconds, json)."""

    def __init__(self, reply):
        self.reply, self.bodies, self.seen, self.live, self.peak = reply, [], {}, 0, 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                              "owned_by": "me"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = _text(body["messages"][-1]["content"])
                with server.lock:
                    n = server.seen.get(key, 0)
                    server.seen[key] = n + 1
                    server.bodies.append(body)
                    server.live += 1
                    server.peak = max(server.peak, server.live)
                try:
                    out = server.reply(body, n)
                    if out == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if out[0] == "slow":
                        time.sleep(out[1])
                        out = (200, out[2])
                    headers = [("retry-after-ms", "10")] if out[0] == 429 else []
                    self._send(out[0], out[1], headers)
                finally:
                    with server.lock:
                        server.live -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _text(content) -> str:
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def ok(content: str, reasoning: str | None = None) -> tuple[int, dict]:
    msg = {"role": "assistant", "content": content}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                 "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}}


def error(code: int) -> tuple[int, dict]:
    return code, {"error": {"message": f"error {code}", "type": "x"}}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    made = []

    def make(reply):
        made.append(Server(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


# --------------------------------------------------------------------------- the client
def test_endpoint_retries_429_500_slow_and_dropped_connections(server):
    def reply(body, n):
        q = _text(body["messages"][-1]["content"])
        if q.startswith("429") and n < 2:
            return error(429)
        if q.startswith("500") and n < 2:
            return error(500)
        if q.startswith("slow") and n == 0:
            return ("slow", 1.5, ok("late")[1])
        if q.startswith("drop") and n == 0:
            return "drop"
        if q.startswith("dead"):
            return error(503)
        if q.startswith("bad"):
            return error(400)
        return ok(f"answer to {q}")

    s = server(reply)
    model = EndpointModel(s.url, concurrency=4, timeout=0.5, retries=3)
    t0 = time.perf_counter()
    got = dict(model.complete([Request(k, k) for k in ("429", "500", "slow", "drop", "dead", "bad", "fine")]))
    assert time.perf_counter() - t0 < 30
    for k in ("429", "500", "slow", "drop", "fine"):
        assert got[k].error is None and got[k].text == f"answer to {k}", (k, got[k])
    assert s.seen["429"] == 3 and s.seen["500"] == 3 and s.seen["slow"] == 2 and s.seen["drop"] == 2
    # retries spent: the item fails with the server's message, the others are unaffected
    assert "503" in got["dead"].error and s.seen["dead"] == 4
    # a request the server refuses (400) is not retried
    assert "BadRequest" in got["bad"].error and s.seen["bad"] == 1


def test_endpoint_sends_the_penalty_keeps_reasoning_and_caps_concurrency(server):
    def reply(body, n):
        time.sleep(0.05)
        return ok("\\boxed{5}", reasoning="2 + 3 = 5.")

    s = server(reply)
    model = EndpointModel(s.url, concurrency=3)
    reqs = [Request(f"q{i}", f"q{i}", repetition_penalty=1.0 + i / 10, temperature=0.6) for i in range(8)]
    got = dict(model.complete(reqs + [Request("judge", "judge")]))
    assert got["q0"].text == "2 + 3 = 5.</think>\\boxed{5}"
    assert 1 < s.peak <= 3
    bodies = {_text(b["messages"][-1]["content"]): b for b in s.bodies}
    # the teacher's P goes with every request, 1.0 too (a server's default may differ); a judge's has none
    assert bodies["q0"]["repetition_penalty"] == 1.0 and bodies["q4"]["repetition_penalty"] == pytest.approx(1.4)
    assert "repetition_penalty" not in bodies["judge"]
    assert bodies["q4"]["top_p"] == 0.95 and bodies["q4"]["temperature"] == 0.6


def test_rate_limiter_spaces_requests():
    now, slept = [0.0], []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    lim = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        lim.wait()
    assert slept == [1.0, 1.0]  # the first goes at once, then one a second
    now[0] += 10  # idle time is not banked into a burst
    lim.wait()
    lim.wait()
    assert slept == [1.0, 1.0, 1.0]
    with pytest.raises(R1VError, match="positive"):
        RateLimiter(0)


def test_endpoint_rate_limit_is_applied(server, monkeypatch):
    s = server(lambda body, n: ok("x"))
    ep = Endpoint(s.url, rpm=600)
    waits = []
    monkeypatch.setattr(ep.limiter, "sleep", lambda t: waits.append(t))
    monkeypatch.setattr(ep.limiter, "clock", lambda: 0.0)
    for _ in range(3):
        ep.chat("hi")
    assert waits == [pytest.approx(0.1), pytest.approx(0.2)]


# --------------------------------------------------------------------------- the pipeline
def rows_file(tmp_path, n=6):
    from PIL import Image

    rows = []
    for i in range(n):
        img = f"img{i}.png"
        Image.new("RGB", (64, 64), (40 * i % 255, 90, 200)).save(tmp_path / img)
        rows.append({"id": f"r{i}", "image": img, "question": f"What is {i} + {i}?", "answer": str(2 * i),
                     "reasoning": f"{i} + {i} = {2 * i}.", "level": 1 + i % 3})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows, path


class Teacher:
    """Right on even ids; wrong first time on odd ones, right again when given the answer as a hint
    except for r5. Records every request; `crash_after` raises after that many requests."""
    name, sees_images, unit = "fake-teacher", True, "words"

    def __init__(self, crash_after: int | None = None):
        self.requests, self.crash_after = [], crash_after

    def count(self, text):
        return len(text.split())

    def complete(self, requests):
        for r in requests:
            if self.crash_after is not None and len(self.requests) >= self.crash_after:
                raise KeyboardInterrupt
            self.requests.append(r)
            i = int(r.key[1:])
            hinted = "correct final answer" in r.prompt
            right = i % 2 == 0 or (hinted and i != 5)
            ans = 2 * i if right else 2 * i + 1
            yield r.key, Completion(f" {i} + {i} = {ans}. {i} + {i} = {ans}.</think>\n\\boxed{{{ans}}}", True, 9)


def run(rows, path, tmp_path, teacher, **cfg):
    settings = DistillConfig(**{"temperature": 0.0, "chunk": 2, **cfg})
    return distill(rows, settings, tmp_path / "out", task=get_task("jsonl"), teacher=teacher, root=path.parent,
                   progress=False)


def records(tmp_path, name="records.jsonl"):
    return [json.loads(x) for x in (tmp_path / "out" / name).read_text().splitlines()]


def test_pipeline_keeps_revises_and_drops(tmp_path):
    rows, path = rows_file(tmp_path)
    t = Teacher()
    summary = run(rows, path, tmp_path, t, revise="hint")
    recs = {r["id"]: r for r in records(tmp_path)}
    assert [recs[f"r{i}"]["verdict"] for i in range(6)] == ["kept", "revised:hint", "kept", "revised:hint", "kept",
                                                           "dropped"]
    assert recs["r5"]["response"] is None and recs["r5"]["revisions"][0]["correct"] is False
    assert summary["verdicts"] == {"kept": 3, "revised:hint": 2, "dropped": 1}
    # every request at the sample's own penalty, P in [1, 2] and higher for easier items (level)
    pens = {r.key: r.repetition_penalty for r in t.requests}
    assert all(1.0 <= p <= 2.0 for p in pens.values())
    assert pens["r0"] > pens["r1"] > pens["r2"]  # levels 1, 2, 3 with otherwise alike questions
    data = [json.loads(x) for x in (tmp_path / "out" / "data.jsonl").read_text().splitlines()]
    assert [d["id"] for d in data] == ["r0", "r1", "r2", "r3", "r4"]  # the dropped one is left out
    assert all(0 <= d["score"] <= 5 and d["image"].startswith("/") for d in data)
    assert data[0]["response"].startswith(" 0 + 0 = 0.") and data[0]["penalty"] == recs["r0"]["penalty"]
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "penalty.png").exists()
    # revise=reference (auto, after the hint) fixes r5 from the row's own chain
    summary = distill(rows, DistillConfig(temperature=0.0), tmp_path / "out2", task=get_task("jsonl"),
                      teacher=Teacher(), root=path.parent, progress=False)
    assert summary["verdicts"] == {"kept": 3, "revised:hint": 2, "revised:reference": 1}
    # a fixed penalty is what it says
    t = Teacher()
    distill(rows, DistillConfig(penalty="fixed", fixed_penalty=1.3), tmp_path / "out3", task=get_task("jsonl"),
            teacher=t, root=path.parent, progress=False)
    assert {r.repetition_penalty for r in t.requests} == {1.3}


def test_chains_that_quote_the_hint_are_not_kept_and_bad_rows_are_one_line_errors(tmp_path):
    rows, path = rows_file(tmp_path, n=2)

    class Parrot(Teacher):
        def complete(self, requests):
            for key, c in super().complete(requests):
                yield key, Completion("The correct final answer is given. " + c.text, True, 9)

    summary = run(rows, path, tmp_path, Parrot())
    recs = {r["id"]: r for r in records(tmp_path)}
    # r1's hinted chain cites the hint: not taken; the reference chain revises it instead
    assert recs["r1"]["verdict"] == "revised:reference"
    tried = [(x["by"], x["check"]) for x in recs["r1"]["revisions"]]
    assert tried == [("hint", "cites the hint"), ("reference", "rules")]
    assert summary["verdicts"] == {"kept": 1, "revised:reference": 1}
    for bad, msg in (({"question": 3}, "`question` must be non-empty text"), ({"answer": None}, "`answer` must be"),
                     ({"image": ["a.png"]}, "several go in `images`"), ({"images": "a.png"}, "list of paths"),
                     ({"choices": "A B"}, "`choices` must be a list"), ({"reasoning": 5}, "`reasoning` must be text")):
        with pytest.raises(R1VError, match=re.escape(msg)):
            distill([{**rows[0], **bad}], DistillConfig(), tmp_path / "bad", task=get_task("jsonl"), teacher=Teacher(),
                    root=path.parent, progress=False)
    (tmp_path / "img0.png").write_bytes(b"not a png")
    with pytest.raises(R1VError, match="row r0: .*cannot"):
        distill(rows, DistillConfig(), tmp_path / "bad2", task=get_task("jsonl"), teacher=Teacher(), root=path.parent,
                progress=False)


class Judging:
    """A local judge: answers every JSON question; `down` makes one kind of question unreachable."""
    name, sees_images, unit = "fake-judge", True, "words"

    def __init__(self, down: str | None = None):
        self.down = down

    def count(self, text):
        return None

    def complete(self, requests):
        for r in requests:
            kind = ("scores" if "Rate" in r.prompt else "reward" if "Score this" in r.prompt else "other")
            if kind == self.down:
                yield r.key, Completion("", False, 0, error="APIConnectionError: connection refused")
            elif kind == "scores":
                yield r.key, Completion('{"integration": 5}' if "together" in r.prompt else
                                        '{"image_necessity": 9, "question_quality": 8, "difficulty": 3, '
                                        '"reasoning_demand": 3}', True, 5)
            else:
                yield r.key, Completion('{"score": 5}', True, 5)


def test_teacher_rows_checks_revises_and_scores_existing_chains(tmp_path, capsys):
    rows, path = rows_file(tmp_path, n=3)
    rows[0]["response"] = " 0 + 0 = 0.</think>\n\\boxed{0}"
    rows[1]["response"] = "<think>\n1 + 1 = 3.</think>\n\\boxed{3}"  # wrong, and with its <think> opener
    rows[2]["response"] = " 2 + 2 = 4.</think>\n\\boxed{4}"
    del rows[2]["reasoning"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored"
    assert main(["distill", "--data", str(path), "--teacher", "rows", "--out", str(out)]) == 0
    data = {d["id"]: d for d in map(json.loads, (out / "data.jsonl").read_text().splitlines())}
    assert data["r0"]["verdict"] == "kept" and data["r0"]["score"] == 5
    assert data["r1"]["verdict"] == "revised:reference" and data["r1"]["response"].startswith(" 1 + 1 = 2.")
    assert data["r2"]["verdict"] == "kept"
    del rows[0]["response"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["distill", "--data", str(path), "--teacher", "rows", "--out", str(tmp_path / "x")]) == 2
    assert "row r0 has none" in capsys.readouterr().err


def test_an_unreachable_judge_leaves_samples_unrecorded_for_the_rerun(tmp_path):
    rows, path = rows_file(tmp_path, n=4)

    def go(judge):
        return distill(rows, DistillConfig(temperature=0.0, chunk=2, revise="hint"), tmp_path / "out",
                       task=get_task("jsonl"), teacher=Teacher(), judge=judge, root=path.parent, progress=False)

    # scores: P needs every sample's, so the run stops before any chain, keeping nothing half done
    with pytest.raises(R1VError, match="could not be reached for 4 sample"):
        go(Judging(down="scores"))
    assert not (tmp_path / "out" / "records.jsonl").exists()
    # rewards: those samples stay unrecorded and the run says so (exit status 1 from the CLI)
    summary = go(Judging(down="reward"))
    assert summary["unfinished"] == 4 and summary["finished"] == 0
    summary = go(Judging())  # the judge is back: the rerun finishes them
    assert summary["unfinished"] == 0 and summary["verdicts"] == {"kept": 2, "revised:hint": 2}
    assert {r["score_source"] for r in records(tmp_path)} == {"judge"}


def test_an_interrupted_run_resumes_without_losing_or_repeating_samples(tmp_path):
    rows, path = rows_file(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(rows, path, tmp_path, Teacher(crash_after=3), revise="hint")  # dies in the second chunk
    first = records(tmp_path)
    assert [r["id"] for r in first] == ["r0", "r1"]  # the finished chunk, and only it
    with open(tmp_path / "out" / "records.jsonl", "a") as f:
        f.write('{"id": "r2", "verdict": "ke')  # a torn line, as a crash mid-write leaves it
    t = Teacher()
    run(rows, path, tmp_path, t, revise="hint")
    again = records(tmp_path)
    assert sorted(r["id"] for r in again) == [f"r{i}" for i in range(6)]  # all there, none twice
    assert again[:2] == first
    assert {r.key for r in t.requests} == {"r2", "r3", "r4", "r5"}  # finished samples are not asked again
    # rerunning a finished run asks nothing; another setting is refused, --overwrite starts over
    t = Teacher()
    run(rows, path, tmp_path, t, revise="hint")
    assert t.requests == []
    with pytest.raises(R1VError, match="different distillation .*alpha"):
        run(rows, path, tmp_path, Teacher(), revise="hint", alpha=0.1)
    with pytest.raises(R1VError, match="unique id"):
        run(rows + rows[:1], path, tmp_path, Teacher())


def test_pipeline_through_endpoints_with_a_flaky_judge(tmp_path, server):
    rows, path = rows_file(tmp_path, n=4)
    rows[3]["answer"] = "eight"  # a free-form gold: the rules cannot match "8", the judge decides

    def reply(body, n):
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        q = _text(body["messages"][-1]["content"])
        if not system:  # the teacher: right on r0 and r3, wrong on r1 and r2
            i = int(re.search(r"What is (\d+)", q).group(1))
            ans = 2 * i + (1 if i in (1, 2) else 0)
            return ok(f"\\boxed{{{ans}}}", reasoning=f"{i} + {i} = {ans}.")
        assert "JSON" in system or "Rewrite" in q
        if "Rate this question" in q:
            if "What is 2 + 2" in q:  # the judge never answers this one in JSON
                return ok("It is a fine question, I'd give it 7.")
            return ok('{"image_necessity": 9, "question_quality": 8, "difficulty": %d, "reasoning_demand": 3}'
                      % (2 + 2 * len(q) % 5))
        if "reasoned about together" in q:
            return ok('{"integration": 4}') if n else error(500)  # flaky, then fine
        if "agree with the reference" in q:
            return ok('{"correct": true}')
        if "Rewrite the reasoning" in q:
            gold = re.search(r"Reference answer: (\S+)", q).group(1)
            return ok(f"<think>I redo it: the sum is {gold}.</think> \\boxed{{{gold}}}")
        if "Score this solution" in q:
            return ok('{"score": 6}') if "What is 1 + 1" in q else ok('{"score": 4}')
        return error(400)

    s = server(reply)
    teacher = EndpointModel(s.url, concurrency=2)
    judge = EndpointModel(s.url, concurrency=2)
    summary = distill(rows, DistillConfig(temperature=0.0, judge_retries=1), tmp_path / "out", task=get_task("jsonl"),
                      teacher=teacher, judge=judge, root=path.parent, progress=False)
    recs = {r["id"]: r for r in records(tmp_path)}
    sc = {r["id"]: r for r in records(tmp_path, "scores.jsonl")}
    assert recs["r0"]["verdict"] == "kept" and recs["r0"]["check"] == "rules"
    assert recs["r3"]["verdict"] == "kept" and recs["r3"]["check"] == "judge"  # "8" vs "eight", by the judge
    assert recs["r1"]["verdict"] == "revised:judge" and recs["r1"]["response"].startswith("I redo it: the sum is 2.")
    assert recs["r2"]["verdict"] == "revised:judge"
    # the malformed QDAM reply was asked twice (1 retry), then recorded as a failure: its components imputed
    assert sc["r2"]["failures"]["qdam"]["reason"].startswith("malformed")
    assert sc["r2"]["components"]["difficulty"] is None and sc["r2"]["components"]["integration"] == 4
    assert s.seen[next(k for k in s.seen if "Rate this question" in k and "What is 2 + 2" in k)] == 2
    # the out-of-range reward (6 > 5) fell back to the rules, and says so
    assert recs["r1"]["score_source"].startswith("rules (judge failed") and recs["r0"]["score"] == 4
    assert summary["judge_failures"] == {"scores": 1, "verdicts": 0, "rewards": 1} and summary["unit"] == "words"
    teacher_bodies = [b for b in s.bodies if b["messages"][0]["role"] == "user"]
    assert all(any(p["type"] == "image_url" for p in b["messages"][0]["content"]) for b in teacher_bodies)


def test_a_dead_teacher_records_nothing_and_the_rerun_finishes(tmp_path, server, capsys):
    rows, path = rows_file(tmp_path, n=3)
    up = {"on": False}

    def reply(body, n):
        if not up["on"]:
            return error(503)
        i = int(re.search(r"What is (\d+)", _text(body["messages"][-1]["content"])).group(1))
        return ok(f"\\boxed{{{2 * i}}}", "x")

    s = server(reply)
    cfg = DistillConfig(temperature=0.0, retries=1)
    summary = distill(rows, cfg, tmp_path / "out", task=get_task("jsonl"), teacher=EndpointModel(s.url, retries=1),
                      root=path.parent, progress=False)
    assert summary["unfinished"] == 3 and summary["finished"] == 0
    assert "rerun the same command" in capsys.readouterr().err
    up["on"] = True
    summary = distill(rows, cfg, tmp_path / "out", task=get_task("jsonl"), teacher=EndpointModel(s.url, retries=1),
                      root=path.parent, progress=False)
    assert summary["unfinished"] == 0 and summary["verdicts"] == {"kept": 3}


# --------------------------------------------------------------------------- local generation
def test_row_penalty_matches_transformers_per_row():
    from transformers import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    ids = torch.randint(0, 50, (3, 7))
    scores = torch.randn(3, 50)
    pens = [1.0, 1.3, 2.0]
    mine = RowRepetitionPenalty(torch.tensor(pens))(ids, scores.clone())
    for i, p in enumerate(pens):
        ref = RepetitionPenaltyLogitsProcessor(p)(ids[i:i + 1], scores[i:i + 1].clone())
        assert torch.allclose(mine[i:i + 1], ref)


def test_local_batch_with_mixed_penalties_equals_one_by_one(small_world):
    from r1v.distill.models import LocalModel

    out, _ = small_world
    model = LocalModel(out / "reasoning", batch_size=8)
    assert not model.sees_images
    reqs = [Request(f"k{i}", f"How many red shapes? {i}", caption="red circle 1.", max_tokens=6,
                    repetition_penalty=p) for i, p in enumerate((1.0, 1.5, 2.0, 1.2))]
    together = dict(model.complete(reqs))
    alone = {r.key: dict(model.complete([r]))[r.key] for r in reqs}
    assert {k: c.text for k, c in together.items()} == {k: c.text for k, c in alone.items()}
    assert all(c.new_tokens <= 6 for c in together.values())


def test_cli_distils_the_small_world(small_world, tmp_path, capsys):
    from r1v.io import read_jsonl, write_jsonl
    from r1v.world.data import from_row
    from r1v.world.scenes import describe

    out, _ = small_world
    rows = [{**r, "image": str(out / "data" / r["image"]), "caption": describe(from_row(r))}
            for r in read_jsonl(out / "data" / "visual-train.jsonl")]
    data_file = str(write_jsonl(tmp_path / "rows.jsonl", rows))
    args = ["distill", "--data", data_file, "--teacher", str(out / "reasoning"), "--task", "world", "--out",
            str(tmp_path / "d"), "--limit", "12", "max_new_tokens=8", "temperature=0", "difficulty_field=steps"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "text-only model" in text and "12/12 samples" in text
    data = [json.loads(x) for x in (tmp_path / "d" / "data.jsonl").read_text().splitlines()]
    # the small world's teacher is untrained: its chains are wrong, and revised from the reference chains
    assert len(data) == 12 and all("caption" in d and d["response"] for d in data)
    assert main(args) == 0  # resumes: nothing left to do
    assert main(["distill", "report", str(tmp_path / "d")]) == 0
    base = ["distill", "--teacher", str(out / "reasoning"), "--out", str(tmp_path / "e")]
    world = ["--data", data_file]
    for extra, msg in ((["--data", "nope.jsonl"], "no such file"),
                       (world + ["penalty=wild"], "distill.penalty must be one of"),
                       (world + ["alpha=-1"], "alpha, beta and gamma"), (world + ["revise=judge"], "needs a judge"),
                       (world + ["colour=red"], "unknown setting 'colour'")):
        assert main(base + extra) == 2, extra
        assert msg in capsys.readouterr().err
    assert main(["distill", *world, "--out", str(tmp_path / "e")]) == 2
    assert "name a teacher" in capsys.readouterr().err
