"""Generation behind `r1v serve`: vLLM's async engine on a GPU, transformers' `generate` on the CPU.

Both take a checked `ChatRequest` (r1v/serve/protocol.py) and stream `Event`s: text deltas, then
one `done` with the finish reason and token counts. A stream closed early (the client went away)
cancels its request, and the slot it held is free for the next one.

* `VLLMEngine`: vLLM's `AsyncLLM`, its continuous batching and paged KV cache, on the transformers
  layout (an official-layout checkpoint is converted once, into `<model>-hf`, since vLLM would need
  the remote code for it). The thinking budget is vLLM's own `thinking_token_budget` (vLLM >= 0.20).
* `HFEngine`: transformers' `generate` on a worker thread, with the requests waiting when it
  frees up generated together as one left-padded batch, each row stopping on its own (end of
  turn, its own `max_tokens`, a cancelled client) and streamed on its own. transformers has
  continuous batching (`ContinuousBatchingManager`, `transformers serve --continuous-batching`),
  but it takes token ids only: no pixel values, so `transformers serve` falls back to one
  request at a time for image-text models (`GenerationState.use_continuous_batching`). Batching
  whole `generate` calls is the gap filled here. Each row samples with its own temperature,
  top_p and random generator (seeded by its `seed`), so requests with different settings and
  seeds share a batch and a seed gives the same reply whatever the batch (vLLM's per-request
  generators); only the repetition penalty, a batch-wide processor in transformers, is shared.
  The thinking budget is a logits processor that forces `</think>` once a row has written
  that many tokens without closing its reasoning (what vLLM's and llama.cpp's budgets do).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError
from r1v.model.templates import THINK_CLOSE
from r1v.serve.config import ServeConfig
from r1v.serve.protocol import APIError, ChatRequest

log = logging.getLogger("r1v.serve")
THINKING_OFF = THINK_CLOSE + "\n\n"  # appended to the prompt's `<think>\n`: an empty think block


@dataclass
class Event:
    kind: str  # "text" | "done" | "error"
    text: str = ""
    finish: str | None = None  # "stop" | "length" (done)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0


def prompt_limit(cfg: ServeConfig, context: int | None) -> int | None:
    limits = [n for n in (cfg.max_prompt_tokens, context - 1 if context else None) if n]
    return min(limits) if limits else None


def check_prompt(n: int, limit: int | None) -> None:
    if limit and n > limit:
        raise APIError(400, f"the prompt is {n} tokens (images included) but this server takes at most {limit}; "
                            "send fewer or smaller images, or a shorter conversation", param="messages",
                       code="context_length_exceeded")


# ------------------------------------------------------------------ transformers
@dataclass
class _Job:
    ids: list[int]
    pixel_values: object  # tensor of tiles, or None
    req: ChatRequest
    max_new: int
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None
    cancelled: bool = False
    done: bool = False
    generated: int = 0
    reasoning: int | None = None  # tokens before `</think>`, once it came
    decoder: object = None  # streaming requests: their text, step by step
    ids_out: list[int] = field(default_factory=list)
    key: tuple = field(default=())


class HFEngine:
    name = "transformers"

    def __init__(self, chat, cfg: ServeConfig):
        """`chat`: a `Chat`, or a function that makes one; it is then made on the worker thread.

        Loading and generating on one thread is faster on a CPU: torch's OpenMP thread team
        belongs to the thread that first ran a parallel op, and a second thread's team fights it
        for the cores (generate() on a fresh thread measured ~2x slower than on the loading one).
        """
        import torch

        self.cfg, self.torch = cfg, torch
        self.waiting: collections.deque[_Job] = collections.deque()
        self.cv = threading.Condition()
        self.stopped = False
        self.incoming = 0  # requests received and not yet queued (see `arriving`)
        ready, failed = threading.Event(), []

        def start():
            try:
                self._ready(chat() if callable(chat) else chat)
            except BaseException as e:  # handed to the caller: a bad checkpoint is its R1VError
                failed.append(e)
                return
            finally:
                ready.set()
            try:
                self._run()
            finally:  # stopped, or died: nobody waits for a reply that will never come
                with self.cv:
                    self.stopped = True
                    left, self.waiting = list(self.waiting), collections.deque()
                self._send_all([(job, Event("error", text="the generation engine stopped")) for job in left])

        self.worker = threading.Thread(target=start, name="r1v-generate", daemon=True)
        self.worker.start()
        ready.wait()
        if failed:
            raise failed[0]

    def _ready(self, chat) -> None:
        self.chat = chat
        self.limit = prompt_limit(self.cfg, chat.context)
        self.close_id = chat.tokenizer.convert_tokens_to_ids(THINK_CLOSE)

    @classmethod
    def load(cls, path: str, cfg: ServeConfig, **load) -> HFEngine:
        from r1v.chat import Chat

        return cls(lambda: Chat.from_pretrained(path, **load), cfg)

    # ---- request side (event loop / thread pool)
    @contextlib.contextmanager
    def arriving(self):
        """Held by the server from a request's arrival until it is queued (or refused): while any
        request is on its way in, a batch about to start waits for it (up to 10x batch_wait_ms)."""
        with self.cv:
            self.incoming += 1
        try:
            yield
        finally:
            with self.cv:
                self.incoming -= 1
                self.cv.notify_all()

    def prepare(self, req: ChatRequest) -> _Job:
        """Prompt rendered, images tiled, tokens counted (blocking: run it off the event loop)."""
        text = self.chat.render(req.messages) + ("" if req.thinking else THINKING_OFF)
        # NumPy, not torch: torch ops on this (pool) thread would start a second OpenMP team that
        # slows the worker's generate() down; the worker turns the tiles into a tensor.
        inputs = self.chat.processor(text=[text], images=req.images or None, return_tensors="np",
                                     add_special_tokens=False)
        ids = inputs["input_ids"][0].tolist()
        check_prompt(len(ids), self.limit)
        max_new = req.options.max_new_tokens
        if self.chat.context:
            max_new = min(max_new, self.chat.context - len(ids))
        # Rows sample on their own (_RowSampler); transformers' repetition penalty is one per batch.
        return _Job(ids, inputs.get("pixel_values"), req, max_new, key=(req.options.repetition_penalty,))

    async def generate(self, job: _Job) -> AsyncIterator[Event]:
        job.loop, job.events = asyncio.get_running_loop(), asyncio.Queue()
        with self.cv:
            if self.stopped or not self.worker.is_alive():
                raise APIError(503, "the generation engine has stopped; restart the server")
            self.waiting.append(job)
            self.cv.notify()
        try:
            while True:
                event = await job.events.get()
                yield event
                if event.kind != "text":
                    return
        finally:
            job.cancelled = True  # a closed stream (client gone) frees its row at the next step

    def healthy(self) -> bool:
        return self.worker.is_alive() and not self.stopped

    def close(self) -> None:
        with self.cv:
            self.stopped = True
            self.cv.notify_all()

    # ---- worker thread
    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._generate(batch)
            except Exception as e:  # a bug or an out-of-memory: fail these requests, keep serving
                log.exception("generation failed")
                self._send_all([(job, Event("error", text=f"generation failed: {type(e).__name__}: {e}"))
                                for job in batch if not job.done])
                for job in batch:
                    job.done = True

    def _take(self) -> list[_Job] | None:
        """The next batch: the oldest request and the waiting ones that sample as it does."""
        with self.cv:
            while True:
                while self.waiting and self.waiting[0].cancelled:
                    self.waiting.popleft()
                if self.stopped:
                    return None
                if self.waiting:
                    break
                self.cv.wait()
            if self.cfg.batch_wait_ms:
                # Clients that sent together arrive a little apart, and clients of a batch that just
                # ended send their next request a little after it. A batch about to start waits
                # batch_wait_ms for them, and on while some are still on their way in (read, decoded,
                # tiled), so that they share it instead of splitting into a small batch and a big one.
                wait, t0 = self.cfg.batch_wait_ms / 1000, time.monotonic()
                full = lambda: len(self.waiting) >= self.cfg.max_batch or self.stopped
                self.cv.wait_for(full, timeout=wait)
                self.cv.wait_for(lambda: full() or not self.incoming, timeout=max(0.0, t0 + 10 * wait - time.monotonic()))
            first = self.waiting.popleft()
            batch, rest = [first], collections.deque()
            for job in self.waiting:
                if job.cancelled:
                    continue
                if job.key == first.key and len(batch) < self.cfg.max_batch:
                    batch.append(job)
                else:
                    rest.append(job)
            self.waiting = rest
            return batch

    def _generate(self, batch: list[_Job]) -> None:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from r1v.chat import TokenDecoder

        torch, chat = self.torch, self.chat
        width = max(len(j.ids) for j in batch)
        pad = chat.tokenizer.pad_token_id
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, job in enumerate(batch):  # left padding, as the batched chat path
            input_ids[r, width - len(job.ids):] = torch.tensor(job.ids)
            mask[r, width - len(job.ids):] = 1
            job.decoder = TokenDecoder(chat.tokenizer)
        inputs = {"input_ids": input_ids.to(chat.model.device), "attention_mask": mask.to(chat.model.device)}
        tiles = [torch.from_numpy(j.pixel_values) for j in batch if j.pixel_values is not None]
        if tiles:
            inputs["pixel_values"] = torch.cat(tiles).to(chat.model.device, chat.model.dtype)
        # generate() runs greedy: a sampling row draws its token in _RowSampler, which leaves only that
        # token possible, so the argmax takes it; a greedy row is left as it is.
        kw = dataclasses.replace(batch[0].req.options, temperature=0).generate_kwargs()
        kw["max_new_tokens"] = max(j.max_new for j in batch)
        processors = LogitsProcessorList()
        if any(j.req.options.temperature > 0 for j in batch):
            processors.append(_RowSampler([j.req.options for j in batch], chat.model.device))
        if any(j.req.reasoning_budget is not None for j in batch):
            processors.append(_ThinkingBudget([j.req.reasoning_budget for j in batch], width, self.close_id))
        streamer = _RowStreamer(self, batch)
        with torch.inference_mode():
            chat.model.generate(**inputs, **kw, eos_token_id=chat.stop_ids, pad_token_id=pad, streamer=streamer,
                                stopping_criteria=StoppingCriteriaList([_RowsDone(batch)]),
                                logits_processor=processors)
        streamer.end()

    def _send_all(self, events: list[tuple[_Job, Event]]) -> None:
        by_loop: dict = {}
        for job, event in events:
            if job.loop is not None and not job.loop.is_closed():
                by_loop.setdefault(job.loop, []).append((job.events, event))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_deliver, items)

    def _finish(self, job: _Job, finish: str, out: list) -> None:
        job.done = True
        if job.req.stream:
            tail = job.decoder.flush()
        else:
            tail = self.chat.tokenizer.decode(job.ids_out, skip_special_tokens=True)
        if tail:
            out.append((job, Event("text", text=tail)))
        reasoning = job.generated if job.reasoning is None else job.reasoning
        out.append((job, Event("done", finish=finish, prompt_tokens=len(job.ids), completion_tokens=job.generated,
                               reasoning_tokens=reasoning if job.req.thinking else 0)))


def _deliver(items) -> None:
    for queue, event in items:
        queue.put_nowait(event)


class _RowStreamer:
    """generate()'s streamer for a batch: each row's tokens go to its own client.

    A streaming request gets its text decoded step by step; a whole one is decoded once, at its
    end. The events of one step go to the event loop in one call, not one per row.
    """

    def __init__(self, engine: HFEngine, batch: list[_Job]):
        self.engine, self.batch, self.prompt_seen = engine, batch, False
        self.stop_ids = set(engine.chat.stop_ids)
        self.out: list[tuple[_Job, Event]] = []

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        for job, tok in zip(self.batch, value.flatten().tolist()):
            if job.done:
                continue
            if job.cancelled:
                job.done = True
                continue
            job.generated += 1
            if tok in self.stop_ids:
                self.engine._finish(job, "stop", self.out)
                continue
            if tok == self.engine.close_id and job.reasoning is None:
                job.reasoning = job.generated - 1
            job.ids_out.append(tok)
            if job.req.stream:
                text = job.decoder.push([tok])
                if text:
                    self.out.append((job, Event("text", text=text)))
            if job.generated >= job.max_new:
                self.engine._finish(job, "length", self.out)
        self.flush()

    def flush(self) -> None:
        if self.out:
            self.engine._send_all(self.out)
            self.out = []

    def end(self) -> None:
        for job in self.batch:
            if not job.done:
                self.engine._finish(job, "length", self.out)
        self.flush()


class _RowsDone:
    """Rows that finished (their own max_tokens) or whose client left stop generating."""

    def __init__(self, batch: list[_Job]):
        self.batch = batch

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.tensor([j.done or j.cancelled for j in self.batch], device=input_ids.device)


class _RowSampler:
    """Per-row sampling inside a greedy generate(): each sampling row's scores go through
    transformers' own temperature and top-p warpers, a token is drawn with the row's generator
    (seeded by its request's seed, else at random), and every other token is ruled out."""

    def __init__(self, options: list, device):
        import random

        import torch
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.rows = []
        for o in options:
            if o.temperature <= 0:
                self.rows.append(None)
                continue
            gen = torch.Generator(device=device)
            gen.manual_seed(o.seed if o.seed is not None else random.SystemRandom().randrange(2**63))
            warpers = [TemperatureLogitsWarper(o.temperature)] + ([TopPLogitsWarper(o.top_p)] if o.top_p < 1 else [])
            self.rows.append((warpers, gen))

    def __call__(self, input_ids, scores):
        import torch

        for r, row in enumerate(self.rows):
            if row is None:
                continue
            warpers, gen = row
            s = scores[r:r + 1].float()
            for w in warpers:
                s = w(input_ids[r:r + 1], s)
            token = torch.multinomial(torch.softmax(s, dim=-1), 1, generator=gen).item()
            scores[r] = float("-inf")
            scores[r, token] = 0.0
        return scores


class _ThinkingBudget:
    """Forces `</think>` in a row that has written `budget` tokens without closing its reasoning."""

    def __init__(self, budgets: list[int | None], prompt_len: int, close_id: int):
        self.budgets, self.prompt_len, self.close_id = budgets, prompt_len, close_id

    def __call__(self, input_ids, scores):
        written = input_ids.shape[1] - self.prompt_len
        closed = (input_ids[:, self.prompt_len:] == self.close_id).any(dim=1).tolist()
        for r, budget in enumerate(self.budgets):
            if budget is not None and written >= budget and not closed[r]:
                scores[r] = float("-inf")
                scores[r, self.close_id] = 0.0
        return scores


# ------------------------------------------------------------------ vLLM
class VLLMEngine:
    """vLLM's AsyncLLM (continuous batching, paged attention) with r1v's template and limits.

    Written against vLLM >= 0.20's API (`AsyncLLM`, `SamplingParams.thinking_token_budget`, the
    deepseek_r1 reasoning parser that configures it); not run on a GPU in this project's CI.
    """

    name = "vllm"
    refuses_on_first_output = True  # the prompt's length is known once vLLM has processed the images
    DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

    def __init__(self, path: str, cfg: ServeConfig, *, max_tiles: int | None = None, dtype: str = "auto",
                 template: str | None = None):
        import json
        import types

        from vllm import AsyncEngineArgs, SamplingParams
        from vllm.v1.engine.async_llm import AsyncLLM

        from r1v.model import templates as T
        from r1v.model.checkpoint import inspect, template_of
        from r1v.model.tokenizer import load_tokenizer

        if "thinking_token_budget" not in getattr(SamplingParams, "__struct_fields__", ()) and \
                "thinking_token_budget" not in getattr(SamplingParams, "__annotations__", {}):
            raise R1VError("r1v serve needs vLLM >= 0.20 (SamplingParams.thinking_token_budget): "
                           "pip install -U 'vllm>=0.20', or --engine hf")
        hf_path = self._hf_layout(inspect(path))
        config = json.loads((Path(hf_path) / "config.json").read_text())
        text_cfg = config.get("text_config") or {}
        self.tokenizer = load_tokenizer(hf_path)
        self.template = T.get_template(template or template_of(config, types.SimpleNamespace(**text_cfg)))
        self.image_token = getattr(self.tokenizer, "context_image_token", "<IMG_CONTEXT>")
        self.stop_ids = sorted({i for i in (self.tokenizer.eos_token_id,
                                            self.tokenizer.convert_tokens_to_ids(self.template.stop))
                                if i is not None and i != self.tokenizer.unk_token_id})
        # vLLM tokenizes a text prompt with the tokenizer's special tokens: a BOS the tokenizer adds
        # itself is left out of the rendered text, so that it is not there twice.
        bos = self.tokenizer.bos_token
        self.drop_bos = bool(bos) and self.tokenizer("", add_special_tokens=True)["input_ids"][:1] == \
            [self.tokenizer.bos_token_id]
        self.limit = prompt_limit(cfg, text_cfg.get("max_position_embeddings"))
        self.close_id = self.tokenizer.convert_tokens_to_ids(THINK_CLOSE)
        if dtype not in self.DTYPES:
            raise R1VError(f"--dtype must be one of {', '.join(self.DTYPES)}, got {dtype!r}")
        mm = {"max_dynamic_patch": max_tiles} if max_tiles else None
        # max_model_len stays the model's context (prompt + reply); the prompt limit is checked apart.
        args = AsyncEngineArgs(model=hf_path, dtype=self.DTYPES[dtype], limit_mm_per_prompt={"image": cfg.max_images},
                               mm_processor_kwargs=mm, reasoning_parser="deepseek_r1")
        self.engine = AsyncLLM.from_engine_args(args)

    @staticmethod
    def _hf_layout(source) -> str:
        if source.layout == "hf":
            return str(source.path)
        from r1v.model.checkpoint import convert

        dst = Path(f"{source.path}-hf")
        if not (dst / "config.json").exists():
            log.warning("vLLM reads the transformers layout: converting %s once into %s", source.path, dst)
            convert(source.path, dst, to="hf")
        return str(dst)

    def arriving(self):
        return contextlib.nullcontext()  # vLLM schedules continuously: nothing to wait for

    def prepare(self, req: ChatRequest):
        from r1v.model import templates as T

        text = T.render(self.template, req.messages, bos_token="" if self.drop_bos else self.tokenizer.bos_token or "")
        text = text.replace(T.IMAGE_PLACEHOLDER, self.image_token) + ("" if req.thinking else THINKING_OFF)
        return {"text": text, "req": req}

    async def generate(self, job) -> AsyncIterator[Event]:
        import uuid

        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        req, o = job["req"], job["req"].options
        params = dict(max_tokens=o.max_new_tokens, temperature=max(o.temperature, 0.0), top_p=o.top_p,
                      repetition_penalty=o.repetition_penalty, seed=o.seed, stop_token_ids=self.stop_ids,
                      output_kind=RequestOutputKind.DELTA)
        if req.reasoning_budget is not None:
            # vLLM counts the "\n" after the prompt's `<think>` as a thinking token: one more here.
            params["thinking_token_budget"] = req.reasoning_budget + 1
        prompt = {"prompt": job["text"]}
        if req.images:
            prompt["multi_modal_data"] = {"image": req.images}
        rid, generated, reasoning, first = uuid.uuid4().hex, 0, None, True
        try:
            stream = self.engine.generate(prompt, SamplingParams(**params), rid)
            async for out in _refusals_as_400(stream):
                if first:
                    check_prompt(len(out.prompt_token_ids or []), self.limit)
                    first = False
                piece = out.outputs[0]
                ids = list(piece.token_ids)
                if reasoning is None and self.close_id in ids:
                    reasoning = generated + ids.index(self.close_id)
                generated += len(ids)
                if piece.text:
                    yield Event("text", text=piece.text)
                if out.finished:
                    yield Event("done", finish=piece.finish_reason or "stop",
                                prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=generated,
                                reasoning_tokens=(generated if reasoning is None else reasoning) if req.thinking else 0)
                    return
        finally:
            with contextlib.suppress(Exception):  # a dead engine cannot abort; the request is gone with it
                await self.engine.abort(rid)

    def healthy(self) -> bool:
        return not getattr(self.engine, "errored", False)

    def close(self) -> None:
        self.engine.shutdown()


async def _refusals_as_400(stream):
    try:
        async for out in stream:
            yield out
    except ValueError as e:  # vLLM's input checks: prompt too long, too many images...
        raise APIError(400, f"the model refused the request: {e}", param="messages") from None


def load_engine(path: str, cfg: ServeConfig, *, device: str | None = None, dtype: str = "auto",
                max_tiles: int | None = None, template: str | None = None):
    """The engine `cfg.engine` asks for (auto: vLLM with a GPU and vLLM installed, else transformers)."""
    import importlib.util

    from r1v.model.checkpoint import resolve_device

    has_vllm = importlib.util.find_spec("vllm") is not None
    device = resolve_device(device)
    if cfg.engine == "vllm" and not has_vllm:
        raise R1VError("--engine vllm needs vLLM: pip install 'r1v[serve]' (a CUDA machine)")
    if cfg.engine == "vllm" or (cfg.engine == "auto" and has_vllm and device.startswith("cuda")):
        return VLLMEngine(path, cfg, max_tiles=max_tiles, dtype=dtype, template=template)
    t0 = time.perf_counter()
    engine = HFEngine.load(path, cfg, device=device, dtype=dtype, max_tiles=max_tiles, template=template)
    log.info("loaded %s in %.1fs", path, time.perf_counter() - t0)
    return engine
