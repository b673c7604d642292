"""Generation for evaluation: in-process (batched `Chat.ask_batch`) or an OpenAI-compatible endpoint.

Both take jobs `(key, prompt, images)` and yield `(key, Completion)` as results arrive, so
the caller can write each record the moment it exists (nothing is lost on a crash).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from r1v.evaluate.endpoint import Completion, Endpoint


@dataclass
class Sampling:
    max_new_tokens: int = 8192
    temperature: float = 0.6  # the R1V / DeepSeek-R1 evaluation setting
    top_p: float = 0.95
    seed: int = 0


class LocalGenerator:
    """A model loaded in this process; jobs run in left-padded batches of `batch_size`."""

    def __init__(self, chat, batch_size: int = 8):
        self.chat, self.batch_size = chat, max(1, batch_size)
        self.name = None

    def run(self, jobs: Iterable[tuple], sampling: Sampling) -> Iterator[tuple[object, Completion]]:
        jobs = list(jobs)
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start:start + self.batch_size]
            replies = self.chat.ask_batch([(prompt, images) for _, prompt, images in batch],
                                          max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                          top_p=sampling.top_p,
                                          seed=sampling.seed + start)
            for (key, _, _), reply in zip(batch, replies):
                yield key, Completion(reply.text, reply.stopped, reply.new_tokens)


class EndpointGenerator:
    """A served model; up to `concurrency` requests in flight."""

    def __init__(self, endpoint: Endpoint, concurrency: int = 16):
        self.endpoint, self.concurrency = endpoint, max(1, concurrency)
        self.name = endpoint.model

    def run(self, jobs: Iterable[tuple], sampling: Sampling) -> Iterator[tuple[object, Completion]]:
        def one(job, n):
            key, prompt, images = job
            return key, self.endpoint.chat(prompt, images, max_tokens=sampling.max_new_tokens,
                                           temperature=sampling.temperature, top_p=sampling.top_p,
                                           seed=sampling.seed + n)

        jobs = list(jobs)
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            pending, queue = set(), iter(enumerate(jobs))
            for n, job in queue:  # keep at most 2x concurrency submitted: memory stays flat
                pending.add(pool.submit(one, job, n))
                if len(pending) >= 2 * self.concurrency:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(one, nxt[1], nxt[0]))
        finally:  # on an error or Ctrl-C, drop queued requests instead of sending them
            pool.shutdown(wait=False, cancel_futures=True)
