"""Chat with an R1V model: one image, several, multi-turn, streaming, batched.

    from r1v.chat import Chat
    chat = Chat.from_pretrained("path/to/model")            # either checkpoint layout
    reply = chat.ask("How many red circles?", images=["scene.png"])
    print(reply.reasoning, reply.answer)

    conv = chat.conversation()                               # multi-turn
    conv.ask("Describe the chart.", images=["chart.png"]); conv.ask("Which bar is tallest?")

    chat.ask_batch([("Q1", ["a.png"]), ("Q2", ["b.png", "c.png"])], temperature=0)  # batched

CLI: `r1v chat --model PATH --image a.png "question"` (no question: interactive).

Generation is transformers' `generate`; this module builds prompts (template, `<image>`
placeholders, tiling), checks the inputs, streams with reasoning and answer told apart,
and splits every output into reasoning and answer. Sampling defaults are the model card's:
temperature 0.6, top_p 0.95, repetition_penalty 1.05 (temperature 0 means greedy).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers.generation.streamers import BaseStreamer

from r1v.errors import R1VError
from r1v.generation import GenerationOptions
from r1v.model import templates as T
from r1v.model.processor import ImageLike, load_image, place_images, processor_for_model


@dataclass
class Reply:
    text: str  # the raw generated text (after the prompt's opening `<think>`)
    reasoning: str
    answer: str | None  # None: the output never closed its reasoning (`</think>`)
    new_tokens: int
    stopped: bool  # True when the model ended its turn, False when max_new_tokens cut it


@dataclass
class Conversation:
    """Multi-turn state: messages (user text keeps its `<image>` placeholders) and all images."""

    chat: "Chat"
    messages: list[dict] = field(default_factory=list)
    images: list = field(default_factory=list)

    def ask(self, question: str, images: Sequence[ImageLike] = (), stream=None, **options) -> Reply:
        loaded = [load_image(i) for i in images]  # decoded once, kept for later turns
        reply = self.chat.ask(question, images=loaded, history=self, stream=stream, **options)
        # Past turns keep only their answer, as DeepSeek-R1's template drops past reasoning.
        self.messages += [{"role": "user", "content": place_images(question, len(loaded))},
                          {"role": "assistant", "content": reply.answer if reply.answer is not None else ""}]
        self.images += loaded
        return reply


class TokenDecoder:
    """Token ids in, text deltas out; the deltas concatenate to decoding all the ids at once.

    Only a short window is decoded per step (the offsets of TGI and vLLM's detokenizer), so a
    16K-token reply costs linear, not quadratic, time. A delta that would end inside an
    unfinished multi-byte character is held back until the character is complete.
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.prefix, self.read = tokenizer, [], 0, 0

    def push(self, ids: list[int]) -> str:
        self.ids += ids
        return self._delta(final=False)

    def flush(self) -> str:
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        now = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(now) <= len(before) or (not final and now.endswith("\ufffd")):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return now[len(before):]


class ReasoningStreamer(BaseStreamer):
    """Decodes tokens as they come and calls `callback(kind, text)`, kind "reasoning" / "answer"."""

    def __init__(self, tokenizer, callback: Callable[[str, str], None]):
        self.decoder, self.splitter, self.callback = TokenDecoder(tokenizer), T.ReasoningSplitter(), callback
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        self._emit(self.decoder.push(value.flatten().tolist()), final=False)

    def end(self) -> None:
        self._emit(self.decoder.flush(), final=True)

    def _emit(self, delta: str, final: bool) -> None:
        for kind, text in self.splitter.feed(delta, final):
            self.callback(kind, text)


def trim_at_stop(ids: list[int], stop_ids) -> tuple[list[int], bool]:
    """Generated ids up to the first stop token, and whether one was reached."""
    for j, tok in enumerate(ids):
        if tok in stop_ids:
            return ids[:j], True
    return ids, False


class Chat:
    """An R1V model with its tokenizer, processor and template, ready to answer."""

    def __init__(self, model, tokenizer, *, template: str | None = None, max_tiles: int = 12,
                 min_tiles: int = 1, use_thumbnail: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.template = T.get_template(template or getattr(model.config, "template", "r1v"))
        self.processor = processor_for_model(model, tokenizer, max_tiles=max_tiles, min_tiles=min_tiles,
                                             use_thumbnail=use_thumbnail)
        stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(self.template.stop)}
        self.stop_ids = sorted(i for i in stop_ids if i is not None and i != tokenizer.unk_token_id)
        text_cfg = model.config.text_config
        self.context = getattr(text_cfg, "max_position_embeddings", None)

    @classmethod
    def from_pretrained(cls, path: str, *, dtype="auto", device: str = "cpu", device_map=None,
                        quantization: str | None = None, template: str | None = None,
                        max_tiles: int | None = None, use_thumbnail: bool | None = None,
                        allow_pickle: bool = False) -> "Chat":
        from r1v.model.checkpoint import load_model

        model, tok, tiles = load_model(path, dtype=dtype, device=device, device_map=device_map,
                                       quantization=quantization, allow_pickle=allow_pickle)
        if max_tiles is not None:
            tiles["max_tiles"] = max_tiles
            tiles["min_tiles"] = min(tiles["min_tiles"], max_tiles)
        if use_thumbnail is not None:
            tiles["use_thumbnail"] = use_thumbnail
        return cls(model, tok, template=template, **tiles)

    def conversation(self) -> Conversation:
        return Conversation(self)

    # ---------------------------------------------------------------- prompts
    def prompt(self, question: str, images: Sequence = (), history: Conversation | None = None,
               system: str | None = None):
        """(prompt text with the processor's image token, decoded images) for one request."""
        if not isinstance(question, str) or not question.strip():
            raise R1VError("the prompt is empty; ask a question")
        loaded = [load_image(i) for i in images]
        messages = [{"role": "system", "content": system}] if system else []
        messages += list(history.messages) if history else []
        messages.append({"role": "user", "content": place_images(question, len(loaded))})
        all_images = (list(history.images) if history else []) + loaded
        return self.render(messages), all_images

    def render(self, messages: list[dict]) -> str:
        """The prompt text for `messages` (string contents, images as `<image>` placeholders)."""
        text = T.render(self.template, messages, bos_token=self.tokenizer.bos_token or "")
        return text.replace(T.IMAGE_PLACEHOLDER, self.processor.image_token)

    def encode(self, prompts: list[str], images: list):
        """Model inputs (left-padded batch) for prompts from `prompt()` and their images, in order."""
        inputs = self.processor(text=prompts, images=images or None, return_tensors="pt", padding=True,
                                add_special_tokens=False)
        n = inputs["input_ids"].shape[1]
        if self.context and n >= self.context:
            raise R1VError(f"the prompt is {n} tokens but the model's context holds {self.context}; "
                           f"shorten it or lower --max-tiles")
        device = self.model.device
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs.to(device)

    # ---------------------------------------------------------------- generation
    def ask(self, question: str, images: Sequence[ImageLike] = (), *, history: Conversation | None = None,
            stream: Callable[[str, str], None] | None = None, **options) -> Reply:
        """Answer one question about zero or more images; `stream(kind, text)` gets the text live."""
        text, imgs = self.prompt(question, images, history)
        return self._generate([text], imgs, GenerationOptions(**options), stream)[0]

    def ask_batch(self, requests: Sequence[tuple[str, Sequence[ImageLike]]], **options) -> list[Reply]:
        """Answer several independent requests in one batch (left-padded)."""
        if not requests:
            return []
        prompts, images = [], []
        for question, imgs in requests:
            text, loaded = self.prompt(question, imgs)
            prompts.append(text)
            images += loaded
        return self._generate(prompts, images, GenerationOptions(**options), None)

    @torch.inference_mode()
    def _generate(self, prompts: list[str], images: list, opts: GenerationOptions, stream) -> list[Reply]:
        inputs = self.encode(prompts, images)
        kw = opts.generate_kwargs()
        prompt_len = inputs["input_ids"].shape[1]
        if self.context:
            kw["max_new_tokens"] = min(kw["max_new_tokens"], self.context - prompt_len)
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
        streamer = ReasoningStreamer(self.tokenizer, stream) if stream else None
        out = self.model.generate(**inputs, **kw, eos_token_id=self.stop_ids,
                                  pad_token_id=self.tokenizer.pad_token_id, streamer=streamer)
        replies = []
        for row in out[:, prompt_len:].tolist():
            row, stopped = trim_at_stop(row, self.stop_ids)
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            split = T.split_reasoning(text)
            replies.append(Reply(text, split.reasoning, split.answer, len(row), stopped))
        return replies


BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"


class TerminalPrinter:
    """Streams a reply: reasoning dimmed under a 'thinking' header, then the answer."""

    def __init__(self, show_reasoning: bool = True, out=None):
        self.out, self.show = out or sys.stdout, show_reasoning  # sys.stdout now, not at import time
        self.color = self.out.isatty()
        self.kind = None

    def __call__(self, kind: str, text: str) -> None:
        if kind == "reasoning" and not self.show:
            return
        if kind != self.kind:
            if self.kind is not None:
                self.out.write(RESET if self.color else "")
                self.out.write("\n")
            header = "thinking" if kind == "reasoning" else "answer"
            self.out.write(f"{BOLD}[{header}]{RESET}\n" if self.color else f"[{header}]\n")
            if kind == "reasoning" and self.color:
                self.out.write(DIM)
            self.kind = kind
            text = text.lstrip("\n")
        self.out.write(text)
        self.out.flush()

    def finish(self, reply) -> None:
        if self.color:
            self.out.write(RESET)
        if reply.answer is None:
            if not reply.stopped:
                self.out.write(f"\n[no answer: the reasoning was cut off at the limit of {reply.new_tokens} tokens; "
                               f"raise --max-new-tokens]")
            else:
                self.out.write("\n[no answer: the model ended its turn without closing its reasoning (no </think>)]")
        self.out.write("\n")
        self.out.flush()
        self.kind = None

    def interrupted(self) -> None:
        """Ctrl-C during an answer: the answer stops, the conversation goes on (without that turn)."""
        if self.color:
            self.out.write(RESET)
        self.out.write("\n[stopped]\n")
        self.out.flush()
        self.kind = None
