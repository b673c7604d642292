"""Generation for evaluation: in-process (batched `Chat.ask_batch`) or an OpenAI-compatible endpoint.

Both take jobs `(key, prompt, images)` and yield `(key, Completion)` as results arrive, so
the caller can write each record the moment it exists (nothing is lost on a crash).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from r1v.errors import R1VError
from r1v.evaluate.endpoint import Completion, Endpoint, Rejected, map_concurrent


@dataclass
class Sampling:
    max_new_tokens: int = 8192
    temperature: float = 0.6  # the R1V / DeepSeek-R1 evaluation setting
    top_p: float = 0.95
    seed: int = 0
    # None: the model's own (in-process: the model card's 1.05; an endpoint: the server's default).
    # 1.0 is no penalty, as the recipe's held-out scoring and GRPO's rollouts (r1v/train/rollout.py).
    repetition_penalty: float | None = None

    def settings(self) -> dict:
        """As recorded in run.json; an unset penalty is left out, so runs recorded before the
        setting existed still resume."""
        return {k: v for k, v in self.__dict__.items() if not (k == "repetition_penalty" and v is None)}


def seed_for(base: int, key) -> int:
    """A sampling seed fixed by (base seed, item id, sample): a resumed run, which sends only
    the missing samples, never repeats the seeds of samples it already has."""
    return zlib.crc32(f"{base}:{key[0]}:{key[1]}".encode())


class LocalGenerator:
    """A model loaded in this process; jobs run in left-padded batches of `batch_size`."""

    def __init__(self, chat, batch_size: int = 8):
        self.chat, self.batch_size = chat, max(1, batch_size)
        self.name = None

    def run(self, jobs: Iterable[tuple], sampling: Sampling) -> Iterator[tuple[object, Completion]]:
        jobs = list(jobs)
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start:start + self.batch_size]
            try:
                replies = self._ask(batch, sampling)
            except R1VError:  # a request in the batch cannot run (too long, bad image): find which
                replies = []
                for job in batch:
                    try:
                        replies += self._ask([job], sampling)
                    except R1VError as e:
                        replies.append(e)
            for (key, _, _), reply in zip(batch, replies):
                if isinstance(reply, R1VError):
                    yield key, Completion("", False, 0, error=str(reply))
                else:
                    yield key, Completion(reply.text, reply.stopped, reply.new_tokens)

    def _ask(self, batch, sampling: Sampling):
        # One seed per batch (generate samples a batch together), fixed by the batch's first
        # (item, sample), so a resumed run does not replay the seeds of an earlier batch.
        penalty = {} if sampling.repetition_penalty is None else {"repetition_penalty": sampling.repetition_penalty}
        return self.chat.ask_batch([(prompt, images) for _, prompt, images in batch],
                                   max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                   top_p=sampling.top_p, seed=seed_for(sampling.seed, batch[0][0]), **penalty)


class EndpointGenerator:
    """A served model; up to `concurrency` requests in flight."""

    def __init__(self, endpoint: Endpoint, concurrency: int = 16):
        self.endpoint, self.concurrency = endpoint, max(1, concurrency)
        self.name = endpoint.model

    def run(self, jobs: Iterable[tuple], sampling: Sampling) -> Iterator[tuple[object, Completion]]:
        def one(job):
            key, prompt, images = job
            extra = {} if sampling.repetition_penalty is None else \
                {"extra_body": {"repetition_penalty": sampling.repetition_penalty}}  # vLLM's field
            try:
                return key, self.endpoint.chat(prompt, images, max_tokens=sampling.max_new_tokens,
                                               temperature=sampling.temperature, top_p=sampling.top_p,
                                               seed=seed_for(sampling.seed, key), **extra)
            except Rejected as e:
                return key, Completion("", False, 0, error=str(e))

        yield from map_concurrent(one, list(jobs), self.concurrency)
