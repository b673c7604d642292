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
import http.client
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
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
    if cfg.loopback:
        # A page on another site must not drive a loopback server through the user's browser
        # (DNS rebinding): only loopback names are taken as the Host.
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"])
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
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            # Also what stops a cross-site form or text/plain POST, which needs no CORS preflight.
            raise APIError(415, "send the request as JSON (Content-Type: application/json)", code="unsupported_media_type")
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
                try:
                    body = await asyncio.wait_for(_read_json(request, int(cfg.max_request_mb * 2**20)),
                                                  cfg.request_timeout)
                except asyncio.TimeoutError:
                    raise APIError(408, f"the request body took over {cfg.request_timeout:g} s to arrive",
                                   code="request_timeout") from None
                req = await run_in_threadpool(P.parse_chat, body, cfg, fetch=lambda url: _fetch(url, cfg))
                if req.model not in (None, model_name):
                    raise APIError(404, f"this server serves {model_name!r}, not {req.model!r}", param="model",
                                   code="model_not_found")
                job = await run_in_threadpool(_prepare, engine, req)
            if not req.stream:
                return await _whole(engine, job, req, model_name, request)
            stream, head = engine.generate(job), []
            if getattr(engine, "refuses_on_first_output", False):
                try:  # vLLM checks the prompt as it starts: its refusal is a 4xx, not an error after a 200
                    head.append(await stream.__anext__())
                except BaseException:
                    await stream.aclose()
                    raise
            events = _sse(stream, head, req, model_name, release)
            # Started here, so that its `finally` (which frees the slot) runs even if the client is gone
            # before the response begins: a started generator is closed when dropped.
            first = await events.__anext__()
            handed_over = True
            return StreamingResponse(_prepend([first], events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finally:
            if not handed_over:
                release()

    return app


def _prepare(engine, req: P.ChatRequest):
    try:
        return engine.prepare(req)
    except APIError:
        raise
    except (R1VError, ValueError) as e:  # the processor's own refusals (tokens and images that disagree)
        raise APIError(400, f"the request cannot be turned into a prompt: {e}", param="messages") from None


async def _prepend(first: list, rest):
    for item in first:
        yield item
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
    except RecursionError:
        raise APIError(400, "the body's JSON is nested too deeply", code="invalid_json") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is answered as the error it is, never followed to another host


def _fetch(url: str, cfg: ServeConfig) -> bytes:
    """A remote image (only with --allow-remote-images): public hosts only (unless
    --allow-private-image-hosts), no redirects, bounded in size and in total time. The upstream's
    own error text is not passed back, so that the server cannot be used to probe other hosts."""
    limit = int(cfg.max_request_mb * 2**20)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise R1VError(f"cannot fetch {url}: not an http(s) URL")
    if not cfg.allow_private_image_hosts:
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        except (OSError, UnicodeError):
            raise R1VError(f"cannot fetch {url}: the host does not resolve") from None
        if any(not ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in infos):
            raise R1VError(f"cannot fetch {url}: the host is a private, loopback or reserved address")
    deadline = time.monotonic() + cfg.remote_image_timeout
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(url, timeout=cfg.remote_image_timeout) as r:
            chunks, size = [], 0
            while size <= limit:
                if time.monotonic() > deadline:
                    raise R1VError(f"cannot fetch {url}: over {cfg.remote_image_timeout:g} s")
                piece = r.read(64 * 1024)
                if not piece:
                    break
                chunks.append(piece)
                size += len(piece)
    except urllib.error.HTTPError as e:
        raise R1VError(f"cannot fetch {url}: HTTP {e.code}") from None
    except (OSError, ValueError, http.client.HTTPException):
        raise R1VError(f"cannot fetch {url}") from None
    if size > limit:
        raise R1VError(f"the image at {url} is over {limit / 2**20:.0f} MB")
    return b"".join(chunks)


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
                raise APIError(500, event.text, code="generation_failed")
            else:
                done = event

    task = asyncio.ensure_future(consume())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await request.is_disconnected():
                return Response(status_code=499)  # nobody reads it: nginx's "client closed request"
        task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # out of the generator before it is closed
        await stream.aclose()
    use = P.usage(done.prompt_tokens, done.completion_tokens, done.reasoning_tokens)
    return P.completion(P.new_id(), model, "".join(text), req.thinking, done.finish, use)


async def _sse(stream, head: list, req: P.ChatRequest, model: str, release):
    """Server-sent events: reasoning_content and content deltas, the finish reason, usage, [DONE].
    `head`: engine events already read from `stream`."""
    cid, created = P.new_id(), int(time.time())
    splitter = ReasoningSplitter(thinking=req.thinking)

    def event(delta: dict, finish=None, use=None) -> str:
        return f"data: {json.dumps(P.chunk(cid, model, created, delta, finish, use))}\n\n"

    def pieces(text: str, final: bool = False):
        for kind, piece in splitter.feed(text, final):
            yield event({"reasoning_content": piece} if kind == "reasoning" else {"content": piece})

    try:
        yield event({"role": "assistant"})
        async for e in _prepend(head, stream):
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
    except Exception as e:  # the engine failed mid-stream: say so in the stream, which has sent its 200
        log.exception("generation failed mid-stream")
        yield f"data: {json.dumps(APIError(500, f'generation failed: {type(e).__name__}').body())}\n\n"
    finally:
        try:
            await stream.aclose()  # a client gone mid-stream lands here too: its request is cancelled
        finally:
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
