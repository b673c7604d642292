"""The teacher and the judge: a model in this process (batched) or an OpenAI-compatible endpoint.

    model = open_model("runs/tiny/sft/m0")                      # an R1V checkpoint: sees the images
    model = open_model("~/.cache/r1v/world/reasoning")           # a text LM: reads `caption` instead
    model = open_model("http://localhost:8000/v1", concurrency=32, rpm=600)   # vLLM, SGLang, an API
    for key, completion in model.complete([Request("a", "2+2?", repetition_penalty=1.4)]): ...

Both take `Request`s and yield `(key, Completion)` as results arrive; an item that cannot run
comes back with `Completion.error` set, never as an exception, so a long run records it and goes on.

* Local: requests are grouped by sampling settings and run in left-padded batches. Each row of a
  batch has its own repetition penalty (DRLC gives every sample its own): `RowRepetitionPenalty`
  is transformers' repetition penalty with one value per row. Prompts use the R1V template, which
  opens `<think>\\n`; an R1V checkpoint gets the images, a text-only LM gets the row's `caption`
  (the picture in words) in front of the question.
* Endpoint: `r1v.evaluate.endpoint.Endpoint` (retries with backoff, timeouts, a rate limit) on
  `concurrency` threads. The teacher's penalty goes as `repetition_penalty` in the request body,
  always (at 1.0 too: a server's default may differ), which vLLM and SGLang accept; OpenAI's own
  API does not, and a server that rejects it fails the item with its message. Judge requests
  carry no penalty. The rate limit paces first attempts; the client's retries back off on their
  own, and a teacher and a judge at one URL have a limit each.
* A local batch shares one sampling seed (its first request's): with temperature > 0, a resumed
  run samples its batches differently from an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.endpoint import Completion, Endpoint, is_url, map_concurrent
from r1v.generation import UNTRUNCATED
from r1v.model import templates as T


@dataclass
class Request:
    key: str
    prompt: str
    images: list = field(default_factory=list)  # encoded image bytes, in prompt order
    caption: str | None = None  # the images in words, for a model that cannot see them
    system: str | None = None
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 0.95
    repetition_penalty: float | None = None  # None: the server's default (judges: hosted APIs reject the field)
    seed: int = 0


def strip_think_open(text: str) -> str:
    """The completion as the template continues it: what follows the opening `<think>\\n`."""
    body = text.lstrip()
    return body[len(T.THINK_OPEN):].lstrip("\n") if body.startswith(T.THINK_OPEN) else text


class RowRepetitionPenalty:
    """transformers' repetition penalty (CTRL: a seen token's logit divided by P when positive,
    multiplied when negative; prompt tokens count as seen, as in transformers and vLLM), with one
    P per batch row. `penalties`: shape (batch,)."""

    def __init__(self, penalties):
        self.penalties = penalties[:, None]

    def __call__(self, input_ids, scores):
        import torch

        seen = torch.gather(scores, 1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalties, seen / self.penalties)
        return scores.scatter(1, input_ids, seen)


class LocalModel:
    """A checkpoint loaded here: an R1V (InternVL) model, or a text-only causal LM."""

    def __init__(self, path: str | Path, *, batch_size: int = 16, device: str | None = None):
        import torch

        path = Path(path)
        if not (path / "config.json").is_file():
            raise R1VError(f"{path}: not a model folder (no config.json); give a checkpoint directory or an "
                           f"http(s):// endpoint")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kind = json.loads((path / "config.json").read_text()).get("model_type", "")
        self.batch_size, self.name = max(1, batch_size), str(path)
        if kind in ("internvl", "skywork_chat", "internvl_chat"):
            from r1v.chat import Chat

            self.chat = Chat.from_pretrained(str(path), device=device)
            self.model, self.tokenizer = self.chat.model, self.chat.tokenizer
            self.stop_ids = self.chat.stop_ids
        else:
            from transformers import AutoModelForCausalLM

            from r1v.model.tokenizer import load_tokenizer

            self.chat = None
            self.tokenizer = load_tokenizer(str(path))
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(device).eval()
            ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids(T.get_template("r1v").stop)}
            self.stop_ids = sorted(i for i in ids if i is not None and i != self.tokenizer.unk_token_id)
        self.sees_images = self.chat is not None
        self.unit = "tokens"  # what `count` counts

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[str, Completion]]:
        groups: dict[tuple, list[Request]] = {}
        for r in requests:
            groups.setdefault((r.max_tokens, r.temperature, r.top_p, r.system), []).append(r)
        for batch_of in groups.values():
            for start in range(0, len(batch_of), self.batch_size):
                batch = batch_of[start:start + self.batch_size]
                try:
                    outs = self._generate(batch)
                except (R1VError, RuntimeError):  # a request cannot run (too long, a bad image, out of memory)
                    outs = []
                    for r in batch:
                        try:
                            outs += self._generate([r])
                        except (R1VError, RuntimeError) as e:
                            outs.append(Completion("", False, 0, error=f"{type(e).__name__}: {e}"))
                yield from zip((r.key for r in batch), outs)

    def _prompt(self, r: Request) -> tuple[str, list]:
        question = r.prompt if self.sees_images or not r.caption else f"{r.caption}\n{r.prompt}"
        if self.chat is not None:
            return self.chat.prompt(question, r.images, system=r.system)
        messages = ([{"role": "system", "content": r.system}] if r.system else []) + [
            {"role": "user", "content": question.replace(T.IMAGE_PLACEHOLDER, "").strip()}]
        return T.render("r1v", messages, bos_token=self.tokenizer.bos_token or ""), []

    def _generate(self, batch: Sequence[Request]) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        from r1v.chat import trim_at_stop

        prompts, images = [], []
        for r in batch:
            text, imgs = self._prompt(r)
            prompts.append(text)
            images += imgs
        if self.chat is not None:
            inputs = self.chat.encode(prompts, images)
        else:
            self.tokenizer.padding_side = "left"
            inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = inputs.to(self.model.device)
        n = inputs["input_ids"].shape[1]
        limit = getattr(getattr(self.model.config, "text_config", self.model.config), "max_position_embeddings", None)
        if limit and n >= limit:
            raise R1VError(f"the prompt is {n} tokens but the model's context holds {limit}")
        first = batch[0]
        greedy = first.temperature <= 0
        sampling = dict(do_sample=False, temperature=None, top_p=None, top_k=None) if greedy else dict(
            do_sample=True, temperature=first.temperature, top_p=first.top_p, **UNTRUNCATED)
        penalties = torch.tensor([r.repetition_penalty or 1.0 for r in batch], dtype=torch.float32,
                                 device=self.model.device)
        torch.manual_seed(first.seed)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, **sampling, max_new_tokens=min(first.max_tokens, limit - n) if limit else first.max_tokens,
                repetition_penalty=None, logits_processor=LogitsProcessorList([RowRepetitionPenalty(penalties)]),
                eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id)
        results = []
        for row in out[:, n:].tolist():
            row, stopped = trim_at_stop(row, self.stop_ids)
            results.append(Completion(self.tokenizer.decode(row, skip_special_tokens=True), stopped, len(row)))
        return results


class EndpointModel:
    """A served model: up to `concurrency` requests in flight, at most `rpm` a minute."""

    def __init__(self, url: str, *, model: str | None = None, concurrency: int = 8, rpm: float | None = None,
                 timeout: float = 600.0, retries: int = 5):
        self.endpoint = Endpoint(url, model, timeout=timeout, retries=retries, rpm=rpm)
        self.concurrency, self.name = max(1, concurrency), f"{url} ({self.endpoint.model})"
        self.sees_images = True  # a text-only server rejects images: the item fails with its message
        self.unit = "words"  # no tokenizer here: lengths are counted in words

    def count(self, text: str) -> None:
        return None

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[str, Completion]]:
        def one(r: Request) -> tuple[str, Completion]:
            params = dict(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed)
            if r.temperature > 0:
                params["top_p"] = r.top_p
            if r.repetition_penalty is not None:  # sent even at 1.0: the server's default may differ (R1V: 1.05)
                params["extra_body"] = {"repetition_penalty": r.repetition_penalty}
            try:
                c = self.endpoint.chat(r.prompt, r.images, system=r.system, **params)
            except R1VError as e:  # retries are spent (or the server refused it): this item fails
                return r.key, Completion("", False, 0, error=str(e))
            return r.key, Completion(strip_think_open(c.text), c.finished, c.new_tokens)

        yield from map_concurrent(one, list(requests), self.concurrency)


class RowResponses:
    """`--teacher rows`: the chains the rows already hold (`response`), checked, revised and scored
    0..5 like generated ones, with nothing generated (the penalties are computed but unused)."""
    name, sees_images, generates, unit = "rows", True, False, "words"

    def __init__(self, rows):
        missing = [r.get("id") for r in rows if not isinstance(r.get("response"), str)]
        if missing:
            raise R1VError(f"--teacher rows reads each row's `response` (what follows <think>), but row {missing[0]} "
                           f"has none")
        self.responses = {str(r["id"]): r["response"] for r in rows}

    def count(self, text: str) -> None:
        return None

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[str, Completion]]:
        for r in requests:
            yield r.key, Completion(strip_think_open(self.responses[r.key]), True, None)


def open_model(spec: str, *, batch_size: int = 16, concurrency: int = 8, rpm: float | None = None,
               timeout: float = 600.0, retries: int = 5, served_model: str | None = None):
    """A URL gives an EndpointModel; anything else is a local checkpoint folder."""
    if is_url(spec):
        return EndpointModel(spec, model=served_model, concurrency=concurrency, rpm=rpm, timeout=timeout,
                             retries=retries)
    return LocalModel(spec, batch_size=batch_size)
