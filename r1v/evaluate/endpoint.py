"""An OpenAI-compatible chat endpoint (vLLM, SGLang, a hosted API) for generation and judging.

    ep = Endpoint("http://localhost:8000/v1")          # the model: --served-model, else the only one served
    out = ep.chat("What is 2+2?", images=[png_bytes], max_tokens=512, temperature=0.6)
    out.text, out.finished

The `openai` client does the HTTP work, its retries with exponential backoff and jitter (429,
408, 5xx, timeouts, dropped connections; a server's Retry-After is honoured) and timeouts; `rpm`
adds a client-side rate limit, and `map_concurrent` keeps several requests in flight.

Images go as base64 data URLs in the message's content parts, at
the places of the prompt's `<image>` placeholders (in front when it has none, labelled
"Image-k:" when there are several, as the in-process prompt is). A server that
splits reasoning off (vLLM's `--reasoning-parser`) returns it as `reasoning_content`; it is put
back as `reasoning</think>answer`, so the think rules see what the model wrote.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from r1v.errors import R1VError
from r1v.model.templates import IMAGE_PLACEHOLDER, THINK_CLOSE


@dataclass
class Completion:
    text: str
    finished: bool  # False when the server stopped it at max_tokens
    new_tokens: int | None = None
    error: str | None = None  # this item alone could not be generated (it is recorded, the run goes on)


class Rejected(R1VError):
    """The server refused this request (400/413/422: too long, bad image...): the item fails, not the run."""


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    return "image/png"


def content_parts(prompt: str, images: list[bytes]) -> list[dict] | str:
    """The prompt as OpenAI content parts, images at their `<image>` places (or in front)."""
    if not images:
        return prompt
    pieces = prompt.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(images):
        if len(pieces) > 1:
            raise R1VError(f"the prompt has {len(pieces) - 1} {IMAGE_PLACEHOLDER} placeholders for "
                           f"{len(images)} images")
        # Images in front, labelled as the in-process prompt labels them (processor.place_images).
        if len(images) == 1:
            pieces = ["", "\n" + prompt]
        else:
            pieces = ["Image-1: "] + [f"\nImage-{k + 1}: " for k in range(1, len(images))] + ["\n" + prompt]
    parts: list[dict] = []
    for i, text in enumerate(pieces):
        if text:
            parts.append({"type": "text", "text": text})
        if i < len(images):
            url = f"data:{_mime(images[i])};base64,{base64.b64encode(images[i]).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


class RateLimiter:
    """At most `per_minute` starts in any minute, spaced evenly (a request every 60/per_minute s),
    shared by all threads. `clock` and `sleep` are injectable for tests."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if per_minute <= 0:
            raise R1VError(f"a rate limit must be positive, got {per_minute} requests per minute")
        self.interval, self.clock, self.sleep = 60.0 / per_minute, clock, sleep
        self.next = None
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:  # reserve the next slot, then sleep outside the lock
            now = self.clock()
            start = now if self.next is None else max(now, self.next)
            self.next = start + self.interval
        if start > now:
            self.sleep(start - now)


def map_concurrent(fn: Callable, jobs: Iterable, concurrency: int) -> Iterator:
    """`fn(job)` for every job on `concurrency` threads, results yielded as they finish.

    At most 2x `concurrency` jobs are submitted at once, so memory stays flat on big runs; on an
    error or Ctrl-C the queued jobs are dropped, not sent."""
    jobs = iter(jobs)
    pool = ThreadPoolExecutor(max(1, concurrency))
    try:
        pending = {pool.submit(fn, job) for _, job in zip(range(2 * max(1, concurrency)), jobs)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(jobs, None)
                if nxt is not None:
                    pending.add(pool.submit(fn, nxt))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Endpoint:
    def __init__(self, url: str, model: str | None = None, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 600.0, retries: int = 5, rpm: float | None = None):
        try:
            import openai
        except ImportError:
            raise R1VError("an endpoint needs the `openai` package: pip install openai") from None
        self._openai = openai
        self.url = url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout, max_retries=retries)
        self.limiter = RateLimiter(rpm) if rpm else None
        self.model = model or self._only_model()

    def _only_model(self) -> str:
        try:
            served = [m.id for m in self.client.models.list()]
        except self._openai.OpenAIError as e:
            raise R1VError(f"cannot reach {self.url}: {e}") from None
        if len(served) != 1:
            raise R1VError(f"{self.url} serves {len(served)} models ({', '.join(served) or 'none'}); "
                           f"name one with --served-model")
        return served[0]

    def chat(self, prompt: str, images: list[bytes] = (), *, system: str | None = None, **params) -> Completion:
        """One completion; raises R1VError when the endpoint fails after its retries."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": content_parts(prompt, list(images))})
        if self.limiter:
            self.limiter.wait()
        try:
            r = self.client.chat.completions.create(model=self.model, messages=messages, **params)
        except (self._openai.BadRequestError, self._openai.UnprocessableEntityError) as e:
            raise Rejected(f"{self.url}: {type(e).__name__}: {e}") from None
        except self._openai.APIStatusError as e:
            if e.status_code == 413:
                raise Rejected(f"{self.url}: request too large: {e}") from None
            raise R1VError(f"{self.url}: {type(e).__name__}: {e}") from None
        except self._openai.OpenAIError as e:
            raise R1VError(f"{self.url}: {type(e).__name__}: {e}") from None
        except ValueError as e:  # a 200 whose body is not the JSON of a completion
            raise R1VError(f"{self.url}: an unreadable reply ({type(e).__name__}: {e})") from None
        if not r.choices:
            raise R1VError(f"{self.url}: a reply with no choices")
        choice = r.choices[0]
        msg = choice.message
        text = msg.content or ""
        reasoning = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
        if reasoning and THINK_CLOSE not in text:
            # No content at all means the reasoning never closed (vLLM's parser): no `</think>`.
            text = reasoning + (THINK_CLOSE + text if msg.content is not None else "")
        tokens = r.usage.completion_tokens if r.usage else None
        return Completion(text, choice.finish_reason != "length", tokens)
