"""The HTTP side of `r1v serve`: FastAPI routes on uvicorn, in front of an engine (engines.py).

    GET  /                     the chat page (page.html)
    GET  /health               200 while the engine runs, else 503 (no key needed)
    GET  /v1/models            the served model
    POST /v1/chat/completions  OpenAI chat completions, streamed (SSE) or whole (protocol.py)

What it adds around the engine: the API key (`Authorization: Bearer`), a bounded number of
requests admitted at once (past it 429 with Retry-After, before any image is decoded), request
size limits, and errors as OpenAI's JSON `{"error": {...}}` with a 4xx for anything a client
can fix: a 500 only for a bug, and never a traceback in a response. A client that goes away,
streaming or not, cancels its request and frees its place.

    with running(build_app(engine, cfg, "tiny")) as url:   # a server on a free loopback port
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from r1v.errors import R1VError
from r1v.model.templates import ReasoningSplitter
from r1v.serve import protocol as P
from r1v.serve.config import ServeConfig
from r1v.serve.protocol import APIError

log = logging.getLogger("r1v.serve")


def build_app(engine, cfg: ServeConfig, model_name: str) -> FastAPI:
    app = FastAPI(title="r1v serve", docs_url=None, redoc_url=None)
    app.state.admitted = 0  # requests admitted and not finished (one event loop: no lock needed)
    page = files("r1v.serve").joinpath("page.html").read_text()
    created = int(time.time())

    @app.exception_handler(APIError)
    async def api_error(_request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def bug(_request: Request, e: Exception):
        log.exception("unexpected error")
        return JSONResponse(APIError(500, f"internal error ({type(e).__name__}); see the server's log").body(),
                            status_code=500)

    def authorize(request: Request) -> None:
        if cfg.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if not header:
            raise APIError(401, "this server needs an API key: send `Authorization: Bearer KEY`",
                           code="missing_api_key")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), cfg.api_key.encode()):
            raise APIError(401, "the API key is not valid", code="invalid_api_key")

    @app.get("/", response_class=HTMLResponse)
    async def chat_page():
        return HTMLResponse(page)

    @app.get("/health")
    async def health():
        ok = engine.healthy()
        return JSONResponse({"status": "ok" if ok else "unhealthy", "engine": engine.name},
                            status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "r1v"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        if app.state.admitted >= cfg.max_queue:
            raise APIError(429, f"the server is busy ({app.state.admitted} requests in flight); retry shortly",
                           headers={"Retry-After": "1"}, code="server_busy")
        app.state.admitted += 1
        released = handed_over = False

        def release() -> None:
            nonlocal released
            if not released:
                released, app.state.admitted = True, app.state.admitted - 1

        try:
            with engine.arriving():
                body = await _read_json(request, int(cfg.max_request_mb * 2**20))
                req = await run_in_threadpool(P.parse_chat, body, cfg, fetch=lambda url: _fetch(url, cfg))
                if req.model not in (None, model_name):
                    raise APIError(404, f"this server serves {model_name!r}, not {req.model!r}", param="model",
                                   code="model_not_found")
                job = await run_in_threadpool(engine.prepare, req)
            if not req.stream:
                return await _whole(engine, job, req, model_name, request)
            events = _sse(engine, job, req, model_name, release)
            # Started here, so that its `finally` (which frees the slot) runs even if the client is gone
            # before the response begins: a started generator is closed when dropped.
            first = await events.__anext__()
            handed_over = True
            return StreamingResponse(_prepend(first, events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finally:
            if not handed_over:
                release()

    return app


async def _prepend(first: str, rest):
    yield first
    async for item in rest:
        yield item


async def _read_json(request: Request, limit: int):
    """The JSON body, or 413 past `limit` bytes. An oversized body is read on (and dropped) up to
    4x the limit, so that the client gets the 413 instead of a reset connection mid-upload."""
    chunks, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size <= limit:
            chunks.append(piece)
        elif size > 4 * limit:
            break
    if size > limit:
        raise APIError(413, f"the request is over this server's {limit / 2**20:.0f} MB; send fewer or smaller "
                            "images", code="request_too_large")
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise APIError(400, f"the body is not valid JSON ({e})", code="invalid_json") from None


def _fetch(url: str, cfg: ServeConfig) -> bytes:
    """A remote image, bounded in size and time (only with --allow-remote-images)."""
    limit = int(cfg.max_request_mb * 2**20)
    try:
        with urllib.request.urlopen(url, timeout=cfg.remote_image_timeout) as r:
            data = r.read(limit + 1)
    except (OSError, ValueError) as e:
        raise R1VError(f"cannot fetch {url}: {e}") from None
    if len(data) > limit:
        raise R1VError(f"the image at {url} is over {limit / 2**20:.0f} MB")
    return data


async def _whole(engine, job, req: P.ChatRequest, model: str, request: Request) -> dict:
    """A whole reply; stops generating if the client disconnects while it waits."""
    text, done = [], None
    stream = engine.generate(job)

    async def consume():
        nonlocal done
        async for event in stream:
            if event.kind == "text":
                text.append(event.text)
            elif event.kind == "error":
                raise RuntimeError(event.text)
            else:
                done = event

    task = asyncio.ensure_future(consume())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                return Response(status_code=499)  # nobody reads it: nginx's "client closed request"
        task.result()
    finally:
        task.cancel()
        await stream.aclose()
    use = P.usage(done.prompt_tokens, done.completion_tokens, done.reasoning_tokens)
    return P.completion(P.new_id(), model, "".join(text), req.thinking, done.finish, use)


async def _sse(engine, job, req: P.ChatRequest, model: str, release):
    """Server-sent events: reasoning_content and content deltas, the finish reason, usage, [DONE]."""
    cid, created = P.new_id(), int(time.time())
    splitter = ReasoningSplitter(thinking=req.thinking)
    stream = engine.generate(job)

    def event(delta: dict, finish=None, use=None) -> str:
        return f"data: {json.dumps(P.chunk(cid, model, created, delta, finish, use))}\n\n"

    def pieces(text: str, final: bool = False):
        for kind, piece in splitter.feed(text, final):
            yield event({"reasoning_content": piece} if kind == "reasoning" else {"content": piece})

    try:
        yield event({"role": "assistant"})
        async for e in stream:
            if e.kind == "text":
                for line in pieces(e.text):
                    yield line
            elif e.kind == "error":
                yield f"data: {json.dumps(APIError(500, e.text).body())}\n\n"
                break
            else:
                for line in pieces("", final=True):
                    yield line
                yield event({}, e.finish)
                if req.include_usage:
                    yield event({}, use=P.usage(e.prompt_tokens, e.completion_tokens, e.reasoning_tokens))
        yield "data: [DONE]\n\n"
    except APIError as e:  # refused by the engine after the stream began (vLLM's own checks)
        yield f"data: {json.dumps(e.body())}\n\n"
    finally:
        await stream.aclose()  # a client gone mid-stream lands here too: its request is cancelled
        release()


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
    """uvicorn serving `app` on a thread; yields the base URL. For tests, benches and notebooks."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise R1VError(f"the server did not start on {host}:{port} (is the port taken?)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
