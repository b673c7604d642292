"""`r1v serve` on loopback with the tiny model, through the real `openai` client (sync, async,
streaming): replies equal in-process generation, reasoning apart from the answer, the thinking
budget and switch, every bad request answered with its 4xx, the bounded queue, disconnects, and
`r1v eval run --model http://...` through it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from PIL import Image

from r1v.chat import Chat
from r1v.cli import main
from r1v.model.checkpoint import save_model
from r1v.model.templates import THINK_CLOSE, split_reasoning
from r1v.serve.app import build_app, running
from r1v.serve.config import ServeConfig
from r1v.serve.engines import HFEngine

KEY = "sk-test"


def data_url(path_or_image) -> str:
    if isinstance(path_or_image, Image.Image):
        buf = io.BytesIO()
        path_or_image.save(buf, "PNG")
        data = buf.getvalue()
    else:
        data = Path(path_or_image).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def user(text, *images) -> dict:
    return {"role": "user", "content": [*({"type": "image_url", "image_url": {"url": data_url(i)}} for i in images),
                                        {"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "tiny"
    save_model(*tiny, out, max_tiles=2)
    return out


@pytest.fixture(scope="module")
def local(model_dir):
    return Chat.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def server(model_dir):
    cfg = ServeConfig(api_key=KEY, max_images=3, max_image_pixels=1000 * 1000, max_request_mb=4, max_tokens=256)
    engine = HFEngine.load(str(model_dir), cfg)
    with running(build_app(engine, cfg, "tiny")) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def ask(client, messages, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 12)
    extra = {k: kw.pop(k) for k in ("max_reasoning_tokens", "chat_template_kwargs", "repetition_penalty") if k in kw}
    return client.chat.completions.create(model="tiny", messages=messages, extra_body=extra or None, **kw)


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == ["tiny"]
    with urllib.request.urlopen(server + "/health") as r:  # no key needed
        assert json.loads(r.read()) == {"status": "ok", "engine": "transformers"}


def test_images_reply_as_in_process(client, local, images):
    """Image parts land at the prompt's <image> places: the served greedy reply is the local one."""
    r = ask(client, [user("What is shown?", images[0], images[1])], max_tokens=16)
    mine = local.ask("What is shown?", images=images[:2], max_new_tokens=16, temperature=0)
    msg = r.choices[0].message
    assert (msg.reasoning_content, msg.content) == (split_reasoning(mine.text).reasoning or None,
                                                    split_reasoning(mine.text).answer)
    text_only = ask(client, [user("What is shown?")], max_tokens=1)
    tiles = r.usage.prompt_tokens - text_only.usage.prompt_tokens
    assert tiles >= 2 * 256  # every image's tiles are in the prompt (256 tokens a tile)
    assert r.usage.completion_tokens == mine.new_tokens + (1 if mine.stopped else 0)
    assert r.choices[0].finish_reason == ("stop" if mine.stopped else "length")


def test_multi_turn_as_a_local_conversation(client, local, images):
    conv = local.conversation()
    first = conv.ask("Describe it.", images=[images[2]], max_new_tokens=8, temperature=0)
    second = conv.ask("And the colours?", max_new_tokens=8, temperature=0)
    r1 = ask(client, [user("Describe it.", images[2])], max_tokens=8)
    assert (r1.choices[0].message.content or "") == (first.answer or "")
    r2 = ask(client, [user("Describe it.", images[2]), {"role": "assistant", "content": r1.choices[0].message.content},
                      user("And the colours?")], max_tokens=8)
    assert r2.choices[0].message.reasoning_content == (split_reasoning(second.text).reasoning or None)


def test_thinking_budget_forces_the_answer(client, images):
    free = ask(client, [user("Count the shapes.", images[0])], max_tokens=40)
    assert free.choices[0].message.content is None  # the random model never closes its reasoning
    assert free.usage.completion_tokens_details.reasoning_tokens == 40
    r = ask(client, [user("Count the shapes.", images[0])], max_tokens=40, max_reasoning_tokens=5)
    assert r.usage.completion_tokens_details.reasoning_tokens == 5
    assert r.choices[0].message.content is not None  # `</think>` forced, the answer followed
    assert r.usage.completion_tokens == 40
    # The forced reasoning is the free one's first 5 tokens (greedy): only the close was forced.
    assert free.choices[0].message.reasoning_content.startswith(r.choices[0].message.reasoning_content[:3])


def test_thinking_off_is_an_empty_think_block(client, local, images):
    on = ask(client, [user("Which colour?", images[1])], max_tokens=6)
    off = ask(client, [user("Which colour?", images[1])], max_tokens=6,
              chat_template_kwargs={"enable_thinking": False})
    zero = ask(client, [user("Which colour?", images[1])], max_tokens=6, max_reasoning_tokens=0)
    closed = local.tokenizer(THINK_CLOSE + "\n\n", add_special_tokens=False)["input_ids"]
    assert off.usage.prompt_tokens == on.usage.prompt_tokens + len(closed)
    assert off.choices[0].message.reasoning_content is None and off.choices[0].message.content
    assert off.usage.completion_tokens_details.reasoning_tokens == 0
    assert zero.choices[0].message.content == off.choices[0].message.content


def test_streaming_gives_the_whole_reply_in_pieces(client, images):
    whole = ask(client, [user("Explain.", images[0])], max_tokens=20, max_reasoning_tokens=8)
    stream = ask(client, [user("Explain.", images[0])], max_tokens=20, max_reasoning_tokens=8, stream=True,
                 stream_options={"include_usage": True})
    reasoning, content, finish, usage, roles = [], [], None, None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            roles.append(c.delta.role)
            reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
            content.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert roles[0] == "assistant"
    assert "".join(reasoning).strip() == whole.choices[0].message.reasoning_content
    assert "".join(content).strip() == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason and usage.total_tokens == whole.usage.total_tokens


def test_async_clients_batched_equal_one_at_a_time(server, client, images):
    questions = [("What is it?", images[:1]), ("Two images?", images[:2]), ("No image at all.", []),
                 ("Three now.", images), ("Small one.", images[2:])]
    alone = [ask(client, [user(q, *i)], max_tokens=10).choices[0].message.reasoning_content for q, i in questions]

    async def together():
        aclient = openai.AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
        replies = await asyncio.gather(*[aclient.chat.completions.create(
            model="tiny", messages=[user(q, *i)], max_tokens=10, temperature=0) for q, i in questions])
        await aclient.close()
        return [r.choices[0].message.reasoning_content for r in replies]

    assert asyncio.run(together()) == alone


def test_sampled_requests_share_a_batch_and_keep_their_seed(server, client, images):
    """A seed gives the same reply alone and in a batch of other seeds and temperatures (each row
    draws from its own generator), and other seeds give other replies."""
    def body(seed, temperature=1.0):
        return dict(model="tiny", messages=[user("Describe it.", images[0])], max_tokens=12, temperature=temperature,
                    top_p=0.9, seed=seed)

    alone = client.chat.completions.create(**body(7)).choices[0].message.reasoning_content
    assert client.chat.completions.create(**body(7)).choices[0].message.reasoning_content == alone

    async def together():
        aclient = openai.AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
        replies = await asyncio.gather(*[aclient.chat.completions.create(**b) for b in
                                         (body(1), body(7), body(2, 0.5), body(3), body(4, 0))])
        await aclient.close()
        return [r.choices[0].message.reasoning_content for r in replies]

    batched = asyncio.run(together())
    assert batched[1] == alone
    assert len({batched[0], batched[1], batched[3]}) > 1  # other seeds, other draws
    greedy = ask(client, [user("Describe it.", images[0])], max_tokens=12).choices[0].message.reasoning_content
    assert batched[4] == greedy  # a greedy row in a sampling batch stays greedy


# ---------------------------------------------------------------- bad requests
def post(server, body: bytes | dict, key: str | None = KEY, headers: dict | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(server + "/v1/chat/completions", data, h)) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def good(**kw) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **kw}


BAD = {
    "malformed JSON": (b'{"messages": [', 400),
    "not an image": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"nope").decode()}},
        {"type": "text", "text": "What?"}]}]), 400),
    "broken base64": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]), 400),
    "a local path": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]), 400),
    "a file URL": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]), 400),
    "a remote URL (not allowed)": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}]), 400),
    "too many pixels": (good(messages=[user("big", Image.new("RGB", (1200, 1000)))]), 400),
    "empty messages": (good(messages=[]), 400),
    "no user turn last": (good(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}]),
                          400),
    "a bad role": (good(messages=[{"role": "robot", "content": "Hi"}]), 400),
    "reserved token in text": (good(messages=[{"role": "user", "content": "<IMG_CONTEXT> hi"}]), 400),
    "a literal <image> with no image": (good(messages=[{"role": "user", "content": "<image> what?"}]), 400),
    "max_tokens over the limit": (good(max_tokens=100000), 400),
    "max_tokens not a number": (good(max_tokens="ten"), 400),
    "temperature out of range": (good(temperature=7), 400),
    "n > 1": (good(n=2), 400),
    "stop strings": (good(stop=["\n"]), 400),
    "another model": (good(model="gpt-4o"), 404),
    "a negative budget": (good(max_reasoning_tokens=-2), 400),
    "a body that is a list": (b"[1, 2]", 400),
    "JSON nested 100,000 deep": (b'{"messages": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400),
    "a lone surrogate": (b'{"messages": [{"role": "user", "content": "\\ud800 hi"}]}', 400),
    "a placeholder split over two parts": (good(messages=[{"role": "user", "content": [
        {"type": "text", "text": "<ima"}, {"type": "text", "text": "ge> hi"}]}]), 400),
    "an image token split over two parts": (good(messages=[{"role": "user", "content": [
        {"type": "text", "text": "<IMG_CON"}, {"type": "text", "text": "TEXT> hi"}]}]), 400),
    "a corrupt PPM header": (good(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/x-portable-pixmap;base64,"
                                            + base64.b64encode(b"P6\n1 1\n25x\n").decode()}}]}]), 400),
    "n = 0": (good(n=0), 400),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_their_4xx(server, case):
    body, status = BAD[case]
    got, reply, _ = post(server, body)
    assert got == status, reply
    assert set(reply["error"]) >= {"message", "type"} and "Traceback" not in reply["error"]["message"]


def test_not_json_and_foreign_hosts_are_refused(server):
    """A cross-site form or text/plain POST (no CORS preflight) and a rebound DNS name cannot drive it."""
    status, reply, _ = post(server, good(), headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in reply["error"]["message"]
    req = urllib.request.Request(server + "/v1/models", headers={"Host": "evil.example",
                                                                 "Authorization": f"Bearer {KEY}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400


def test_too_many_images(server, images):
    status, reply, _ = post(server, good(messages=[user("four", *images, images[0])]))
    assert status == 400 and reply["error"]["code"] == "too_many_images"


def test_keys_and_sizes(server, client):
    assert post(server, good(), key=None)[0] == 401
    assert post(server, good(), key="wrong")[0] == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    big = good(messages=[{"role": "user", "content": "x" * (5 * 2**20)}])
    status, reply, _ = post(server, big)
    assert status == 413 and "MB" in reply["error"]["message"]
    status, reply, _ = post(server, good(messages=[{"role": "user", "content": "tell me " * 20000}], max_tokens=2))
    assert status == 400 and reply["error"]["code"] == "context_length_exceeded"


def test_unknown_route_is_a_json_404(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/v2/nothing")
    assert e.value.code == 404 and "error" in json.loads(e.value.read())


# ---------------------------------------------------------------- load
def test_full_queue_429_and_a_gone_client_frees_its_place(model_dir):
    # 8000 tokens take the tiny model ~9 s on one core: freed sooner means the row was cancelled.
    cfg = ServeConfig(max_queue=1, max_tokens=8000)
    engine = HFEngine.load(str(model_dir), cfg)
    app = build_app(engine, cfg, "tiny")
    with running(app) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        stream = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Go on"}],
                                           max_tokens=8000, stream=True)
        next(iter(stream))  # the only place is taken, by a long reply
        status, reply, headers = post(url, good(), key=None)
        assert status == 429 and headers.get("Retry-After") == "1" and reply["error"]["type"] == "rate_limit_error"
        t = time.monotonic()
        stream.close()  # the client leaves: its place and its batch row are freed
        while app.state.admitted and time.monotonic() - t < 10:
            time.sleep(0.02)
        assert app.state.admitted == 0
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert r.choices[0].finish_reason == "length"
        assert time.monotonic() - t < 3  # not after the 8000 tokens the first client asked for
    engine.close()


def test_a_waiting_non_streaming_client_that_leaves_is_dropped(model_dir, caplog):
    cfg = ServeConfig(max_queue=4, max_tokens=8000, max_batch=1)
    engine = HFEngine.load(str(model_dir), cfg)
    app = build_app(engine, cfg, "tiny")
    with running(app) as url:
        body = json.dumps(good(max_tokens=8000)).encode()

        def leave_early():
            try:
                urllib.request.urlopen(urllib.request.Request(url + "/v1/chat/completions", body,
                                                              {"Content-Type": "application/json"}), timeout=0.5)
            except (TimeoutError, urllib.error.URLError):
                pass

        threads = [threading.Thread(target=leave_early) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t = time.monotonic()
        while app.state.admitted and time.monotonic() - t < 10:
            time.sleep(0.05)
        assert app.state.admitted == 0 and time.monotonic() - t < 3  # two 8000-token replies would take ~18 s
    engine.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a gone client is no server error


# ---------------------------------------------------------------- r1v's own client
def test_eval_run_through_the_server_equals_in_process(server, model_dir, tmp_path, monkeypatch):
    from r1v.evaluate.examples import write_examples

    data = write_examples(tmp_path / "data")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    common = ["--bench", "mmmu", "--data", str(data["mmmu"]), "--temperature", "0", "--max-new-tokens", "8"]
    assert main(["eval", "run", "--model", server + "/v1", "--out", str(tmp_path / "served"), *common]) == 0
    assert main(["eval", "run", "--model", str(model_dir), "--out", str(tmp_path / "local"), *common]) == 0
    read = lambda d: sorted((json.loads(x)["id"], json.loads(x)["output"])
                            for x in (tmp_path / d / "items.jsonl").read_text().splitlines())
    served, local = read("served"), read("local")
    assert len(served) == 4 and served == local


# ---------------------------------------------------------------- remote images, the command line
def test_remote_images_only_when_allowed(model_dir, images, tmp_path):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "pic.png").write_bytes(images[2].read_bytes())
    files = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=tmp_path))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{files.server_address[1]}/pic.png"
    body = good(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": remote}},
                                                       {"type": "text", "text": "What?"}]}])
    cfg = ServeConfig(allow_remote_images=True, allow_private_image_hosts=True)
    engine = HFEngine.load(str(model_dir), cfg)
    try:
        public_only = ServeConfig(allow_remote_images=True)
        with running(build_app(engine, public_only, "tiny")) as url:
            status, reply, _ = post(url, body, key=None)  # the file server is on loopback: not fetched
            assert status == 400 and "private, loopback" in reply["error"]["message"]
        with running(build_app(engine, cfg, "tiny")) as url:
            status, reply, _ = post(url, body, key=None)
            assert status == 200 and reply["usage"]["prompt_tokens"] > 256
            missing = good(messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": remote + ".gone"}}]}])
            status, reply, _ = post(url, missing, key=None)
            assert status == 400 and reply["error"]["message"].endswith("HTTP 404")
    finally:
        engine.close()
        files.shutdown()


@pytest.mark.parametrize("args,message", [
    (["--model", "/no/such/model"], "no such folder"),
    (["--model", ".", "--max-batch", "0"], "--max-batch must be positive"),
    (["--model", ".", "--engine", "tgi"], "--engine must be auto, vllm or hf"),
    (["--model", ".", "--port", "70000"], "--port must be 0..65535"),
])
def test_serve_command_refuses_bad_settings_before_loading(args, message, capsys):
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serve_command_starts_answers_and_stops(model_dir, tmp_path):
    import signal
    import subprocess
    import sys

    # stderr to a file, not a pipe nobody reads (a full pipe would block the server); faulthandler on, so
    # that a server that does not stop can be made to print every thread's stack (SIGABRT, below)
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "r1v", "serve", "--model", str(model_dir), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=f, text=True,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        line = proc.stdout.readline()  # "r1v serve: tiny on transformers; chat page http://127.0.0.1:PORT/ ..."
        assert "chat page http://127.0.0.1:" in line, err.read_text()
        base = line.split("chat page ")[1].split(" ")[0].rstrip("/")
        with openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0) as c:
            assert [m.id for m in c.models.list()] == [model_dir.name]
        with urllib.request.urlopen(base + "/") as r:
            assert b"r1v chat" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)  # about 1 s idle, 2.5 s with the cores busy three times over
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            pytest.fail(f"r1v serve did not stop within 60 s of Ctrl-C; its threads then:\n{err.read_text()}")
    assert code == 0, err.read_text()  # Ctrl-C is a normal stop
