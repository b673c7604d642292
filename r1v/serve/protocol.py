"""The OpenAI chat-completions protocol as `r1v serve` speaks it: requests checked and turned into
R1V prompts, replies and stream chunks built. Pure functions over dicts: no torch, no HTTP.

What a request may carry (OpenAI's names, and vLLM's where OpenAI has none):
* `messages`: system / user / assistant turns; a content is a string or a list of parts,
  `{"type": "text"}` and `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`.
  Images sit where their parts are (the `<image>` places of the R1V prompt). Remote http(s)
  URLs only when the server allows them; a local path or file: URL never.
* `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `seed`, `stream`,
  `stream_options.include_usage`, and vLLM's `repetition_penalty`. Unset sampling values take
  the model card's (temperature 0.6, top_p 0.95, repetition_penalty 1.05).
* Thinking: `chat_template_kwargs.enable_thinking: false` (vLLM / Qwen3's switch) closes the
  think block in the prompt, so the model answers at once; `max_reasoning_tokens` (or vLLM's
  `thinking_token_budget`) bounds the reasoning: past it `</think>` is forced and the answer
  follows. A budget of 0 is thinking off.

A reply carries the reasoning in `message.reasoning_content` and the answer in `content`; the
prompt opens `<think>` itself, so the split needs no `<think>` in the output. `content` is null
when the reasoning never closed (cut by `max_tokens`), as vLLM's reasoning parsers do.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass, field

from r1v.errors import R1VError
from r1v.generation import GenerationOptions
from r1v.model.templates import IMAGE_PLACEHOLDER, IMAGE_TOKENS, split_reasoning
from r1v.serve.config import ServeConfig


class APIError(Exception):
    """A request the server refuses: an HTTP status and one sentence saying what to fix."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                413: "invalid_request_error", 429: "rate_limit_error"}.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.code or str(self.status)}}


@dataclass
class ChatRequest:
    messages: list[dict]  # string contents, images as `<image>` placeholders in order
    images: list = field(default_factory=list)  # decoded PIL images, in placeholder order
    options: GenerationOptions = field(default_factory=GenerationOptions)
    thinking: bool = True
    reasoning_budget: int | None = None  # most reasoning tokens; None: unbounded
    stream: bool = False
    include_usage: bool = False
    model: str | None = None


UNSUPPORTED = {"n": "n > 1", "tools": "tools", "functions": "functions", "logprobs": "logprobs",
               "top_logprobs": "top_logprobs", "stop": "stop strings"}
ROLES = ("system", "user", "assistant")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.ASCII)


def parse_chat(body, cfg: ServeConfig, *, fetch=None) -> ChatRequest:
    """A checked request, or APIError(400) naming the field to fix. `fetch(url) -> bytes` reads a
    remote image (only called when `cfg.allow_remote_images`)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    for key, what in UNSUPPORTED.items():
        value = body.get(key)
        if key == "n":
            if value is not None and (isinstance(value, bool) or value != 1):
                raise APIError(400, f"`n` must be 1 (one reply a request), got {value!r}", param="n")
        elif value is not None and value is not False and value != [] and value != "":
            raise APIError(400, f"{what} are not supported by r1v serve; leave `{key}` out", param=key)
    req = ChatRequest(messages=[], model=body.get("model"))
    parts_seen = _messages(body.get("messages"), req, cfg, fetch)
    if parts_seen > cfg.max_images:
        raise APIError(400, f"the request has {parts_seen} images; this server takes at most {cfg.max_images}",
                       param="messages", code="too_many_images")
    req.options = _options(body, cfg)
    req.stream = _bool(body, "stream", False)
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise APIError(400, "`stream_options` must be an object", param="stream_options")
        req.include_usage = _bool(opts, "include_usage", False, "stream_options.")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise APIError(400, "`chat_template_kwargs` must be an object", param="chat_template_kwargs")
        req.thinking = _bool(kwargs, "enable_thinking", True, "chat_template_kwargs.")
    budget = None
    for key in ("max_reasoning_tokens", "thinking_token_budget"):
        if body.get(key) is not None and body.get(key) != -1:  # -1: unbounded, as vLLM reads it
            budget = _int(body, key, 0, cfg.max_tokens)
    if budget == 0:
        req.thinking = False
    req.reasoning_budget = budget if req.thinking else None
    return req


def _messages(messages, req: ChatRequest, cfg: ServeConfig, fetch) -> int:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` must be a non-empty list of {role, content} objects", param="messages")
    n_images = 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise APIError(400, f"{where} needs a role of {', '.join(ROLES)}", param=where)
        content = m.get("content")
        if content is None and m["role"] == "assistant":
            content = ""
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = content
        else:
            raise APIError(400, f"{where}.content must be a string or a list of parts", param=f"{where}.content")
        text, n_here = [], 0
        for j, part in enumerate(parts):
            pwhere = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                _check_text(part["text"], pwhere)
                text.append(part["text"])
            elif kind == "image_url":
                if m["role"] != "user":
                    raise APIError(400, f"{pwhere}: images go in user messages", param=pwhere)
                n_images, n_here = n_images + 1, n_here + 1
                if n_images <= cfg.max_images:  # past the limit: counted, not decoded
                    req.images.append(_image(part.get("image_url"), cfg, fetch, pwhere))
                text.append(IMAGE_PLACEHOLDER)
            else:
                raise APIError(400, f"{pwhere}: a part is {{type: text, text}} or {{type: image_url, image_url: "
                                    f"{{url}}}}", param=pwhere)
        content = "".join(text)
        # Parts are joined with nothing between them: check the joined text too (a "<ima" part and a
        # "ge>" part must not make an image placeholder with no image).
        if content.count(IMAGE_PLACEHOLDER) != n_here or any(t in content for t in IMAGE_TOKENS):
            raise APIError(400, f"{where}: the text holds {IMAGE_PLACEHOLDER} or an image token; send images as "
                                "image_url parts, and text without them", param=where)
        if m["role"] == "assistant" and "</think>" in content:
            content = split_reasoning(content).answer or ""  # past turns keep only their answer
        if m["role"] == "user" and not content.strip():
            raise APIError(400, f"{where} is empty; ask something", param=where)
        req.messages.append({"role": m["role"], "content": content})
    if req.messages[-1]["role"] != "user":
        raise APIError(400, "the last message must be the user's", param=f"messages[{len(messages) - 1}]")
    return n_images


def _check_text(text: str, where: str) -> None:
    from r1v.model.processor import place_images

    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, f"{where}: the text is not valid Unicode (a lone surrogate?)", param=where) from None
    try:
        place_images(text, 0)  # reserved image tokens, or a literal <image> with no image for it
    except R1VError as e:
        raise APIError(400, f"{where}: {e}; send images as image_url parts", param=where) from None


def _image(spec, cfg: ServeConfig, fetch, where: str):
    from r1v.model.processor import WEB_FORMATS, load_image

    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise APIError(400, f"{where}: image_url needs a url", param=where)
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if not m or not m.group("b64"):
            raise APIError(400, f"{where}: a data URL must be base64 (data:image/png;base64,...)", param=where)
        try:
            data = base64.b64decode(url[m.end():], validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{where}: the image's base64 is not valid", param=where) from None
    elif url.startswith(("http://", "https://")):
        if not cfg.allow_remote_images or fetch is None:
            raise APIError(400, f"{where}: this server takes images as data URLs; remote URLs need "
                                "`r1v serve --allow-remote-images`", param=where)
        try:
            data = fetch(url)
        except R1VError as e:
            raise APIError(400, f"{where}: {e}", param=where) from None
    else:
        raise APIError(400, f"{where}: images are data URLs (or http(s) with --allow-remote-images); "
                            "local paths are never read", param=where)
    try:
        return load_image(data, max_pixels=cfg.max_image_pixels, formats=WEB_FORMATS)
    except R1VError as e:
        raise APIError(400, f"{where}: {e}", param=where, code="bad_image") from None


def _options(body: dict, cfg: ServeConfig) -> GenerationOptions:
    d = GenerationOptions()
    max_tokens = d.max_new_tokens
    for key in ("max_tokens", "max_completion_tokens"):
        if body.get(key) is not None:
            max_tokens = _int(body, key, 1, cfg.max_tokens)
    seed = _int(body, "seed", -2**63, 2**63 - 1) if body.get("seed") is not None else None
    return GenerationOptions(
        max_new_tokens=max_tokens,
        temperature=_float(body, "temperature", d.temperature, 0.0, 2.0),
        top_p=_float(body, "top_p", d.top_p, 1e-6, 1.0),
        repetition_penalty=_float(body, "repetition_penalty", d.repetition_penalty, 1e-6, 10.0),
        seed=None if seed is None else seed % 2**32,
    )


def _bool(d: dict, key: str, default: bool, prefix: str = "") -> bool:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise APIError(400, f"`{prefix}{key}` must be true or false", param=prefix + key)
    return value


def _int(d: dict, key: str, lo: int, hi: int) -> int:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise APIError(400, f"`{key}` must be a whole number from {lo} to {hi}, got {value!r}", param=key)
    return value


def _float(d: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise APIError(400, f"`{key}` must be a number from {lo:g} to {hi:g}, got {value!r}", param=key)
    return float(value)


# ------------------------------------------------------------------ replies
def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt: int, completion: int, reasoning: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def completion(cid: str, model: str, text: str, thinking: bool, finish: str, use: dict) -> dict:
    """The whole reply; `text` is everything generated after the prompt's `<think>`."""
    if thinking:
        split = split_reasoning(text)
        reasoning, answer = split.reasoning, split.answer
    else:
        reasoning, answer = "", text.strip()
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": answer, "reasoning_content": reasoning or None}}],
            "usage": use}


def chunk(cid: str, model: str, created: int, delta: dict, finish: str | None = None,
          use: dict | None = None) -> dict:
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if use is not None:  # the usage chunk of stream_options.include_usage: no choices
        out["choices"], out["usage"] = [], use
    return out
