"""Training data as a stream: rows read lazily from JSONL shards, encoded in DataLoader workers,
step by step, so memory does not grow with the number of rows.

    rows = Rows("data/sft.jsonl")                  # a file, a folder of *.jsonl shards, or a glob
    data = Encoded(rows, task, encoder)            # rows[i] -> Sample (image read, tiled; text tokenised)
    for samples in batches(data, schedule(len(rows), 512, seed=0), rank=0, world=1, workers=2): ...  # a step each

* `Rows` holds a byte-offset index, 14 bytes a row (2M rows: 28 MB), and reads a row with one
  `os.pread` when it is asked for. The index is made by one streaming scan that also parses every
  row, so a broken line is reported (file:line) before any training starts.
* `Encoded` is a map-style torch Dataset indexed by *lists* of row indices: a DataLoader worker reads,
  decodes and tiles one chunk of rows in one processor call (batched: ~10x faster than a call per row).
* `schedule` gives each step's global batch as row indices: seeded permutations, epoch after epoch.
  It is a pure function of (seed, step), so a run resumed at step k reads exactly the rows the
  uninterrupted run would have (`r1v/train/engine.py` saves k).
* `batches` hands each process its share of every step's batch (rank::world), encoded by the
  workers ahead of the step (`prefetch_factor`). A step's samples are held while it runs, as
  transformers' Trainer holds an accumulation step's batches (the loss is normalised by the
  step's target tokens, known only when all of them are there); packing works within the step.
* `FeatureCache`: frozen-encoder features kept for rows a stage reads more than once (SFT reads D
  in M0 and every iteration, GRPO draws prompts again and again), bounded in memory and, past that,
  spilled to disk up to its own bound. A one-epoch pass reads each row once and runs without one.
"""

from __future__ import annotations

import array
import dataclasses
import glob
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from r1v.errors import R1VError

# tokenizers' own threads do not survive DataLoader's fork; the workers are the parallelism here
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --------------------------------------------------------------------------- rows
def shard_files(path: str | os.PathLike) -> list[Path]:
    """The JSONL files behind a data setting: one file, every *.jsonl under a folder, or a glob."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.jsonl") if not f.name.startswith("."))
    else:
        files = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
    if not files:
        raise R1VError(f"{path}: no JSONL file there (give a file, a folder of *.jsonl shards, or a glob)")
    return files


class Rows:
    """Random access to the rows of JSONL shards by a byte-offset index; a row is read when asked for."""

    def __init__(self, path: str | os.PathLike, *, need: Sequence[str] = ("id",)):
        self.path = str(path)
        self.files = shard_files(path)
        starts, lengths, owners = array.array("q"), array.array("i"), array.array("h")
        for k, f in enumerate(self.files):
            with open(f, "rb") as fh:
                at = 0
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        _check(line, need, f, n)  # a missing image, too: found now, not hours into a stage
                        starts.append(at)
                        lengths.append(len(line))
                        owners.append(k)
                    at += len(line)
        if not starts:
            raise R1VError(f"{path}: no rows")
        self.starts = np.frombuffer(starts, dtype=np.int64)
        self.lengths = np.frombuffer(lengths, dtype=np.int32)
        self.owners = np.frombuffer(owners, dtype=np.int16)
        self._fds: dict[tuple[int, int], int] = {}  # (pid, file) -> fd: each DataLoader worker opens its own

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        k = int(self.owners[i])
        key = (os.getpid(), k)
        if key not in self._fds:
            self._fds[key] = os.open(self.files[k], os.O_RDONLY)
        return json.loads(os.pread(self._fds[key], int(self.lengths[i]), int(self.starts[i])))

    def root(self, i: int) -> Path:
        """The folder a row's relative image paths start from (its shard's)."""
        return self.files[int(self.owners[i])].parent

    def __iter__(self) -> Iterator[dict]:
        """Every row in order, read sequentially (one pass, constant memory)."""
        for f in self.files:
            with open(f, "rb") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)

    def column(self, fn, dtype=np.int64) -> np.ndarray:
        """`fn(row)` for every row, as one array (e.g. D's reward-model scores, one byte a row)."""
        return np.fromiter((fn(r) for r in self), dtype=dtype, count=len(self))

    def __del__(self):
        for (pid, _), fd in getattr(self, "_fds", {}).items():
            if pid == os.getpid():
                os.close(fd)


def _check(line: bytes, need: Sequence[str], f: Path, n: int) -> None:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise R1VError(f"{f}:{n}: not JSON: {e}") from None
    if not isinstance(row, dict):
        raise R1VError(f"{f}:{n}: a row must be a JSON object, got {type(row).__name__}")
    missing = [k for k in need if row.get(k) is None]
    if missing:
        raise R1VError(f"{f}:{n}: row has no {', '.join(missing)}")
    images = row.get("images") or ([row["image"]] if row.get("image") else [])
    for name in images if isinstance(images, list) else [images]:
        if isinstance(name, str) and not (f.parent / name).is_file():
            raise R1VError(f"{f}:{n}: row {row.get('id')} names image {name}, which is missing")


# --------------------------------------------------------------------------- encoding, in the workers
class Encoded(torch.utils.data.Dataset):
    """`data[[i, j, ...]]` -> the Samples of rows i, j, ... (prompt and image tokens, pixels, target).

    `field`: the row field trained on ("" for prompts only); `revised`: row indices trained on their
    `reference` instead (E_{t-1}'s revised chains); `subset`: the rows it holds (D_t within D), by
    default all. A Sample's `index` is its row in `rows`, whatever the subset."""

    def __init__(self, rows: Rows, task, encoder, *, field: str = "response", revised: Iterable[int] = (),
                 subset: Sequence[int] | None = None):
        self.rows, self.task, self.encoder, self.field = rows, task, encoder, field
        self.revised = frozenset(int(i) for i in revised)
        self.subset = None if subset is None else np.asarray(subset, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows) if self.subset is None else len(self.subset)

    def row_of(self, position: int) -> int:
        return int(position if self.subset is None else self.subset[position])

    def kind(self, row: int) -> str:
        """Which text a row's sample is trained on (samples of one row and kind are the same)."""
        return "revised" if row in self.revised else self.field

    def __getitem__(self, positions) -> list:
        """The Samples; a row that cannot be encoded comes back as a `Failed` (the DataLoader would
        wrap the error in a worker traceback), which `loader` raises as one clear line."""
        try:
            return self._encode(positions)
        except Exception as e:  # noqa: BLE001  (a corrupt image, a bad row: say which, in one line)
            if isinstance(e, R1VError):
                return Failed(str(e))
            for p in np.atleast_1d(positions):  # find the row
                try:
                    self._encode([p])
                except Exception as one:  # noqa: BLE001
                    row = self.rows[self.row_of(int(p))]
                    return Failed(f"{self.rows.path}: row {row.get('id')}: {type(one).__name__}: {one}")
            return Failed(f"{self.rows.path}: {type(e).__name__}: {e}")

    def _encode(self, positions) -> list:
        positions = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        indices = [int(i) for i in (positions if self.subset is None else self.subset[positions])]
        rows = [self.rows[i] for i in indices]
        items, responses = [], []
        for i, r in zip(indices, rows):
            items.append(self.task.read_row(r, root=self.rows.root(i), source=self.rows.files[self.rows.owners[i]]))
            text = None
            if self.field:
                text = r.get("reference") if i in self.revised and r.get("reference") else r.get(self.field)
                if text is None:
                    raise R1VError(f"{self.rows.path}: row {r.get('id')} has no {self.field!r}")
            responses.append(text)
        samples = self.encoder.encode_many(items, [self.task.prompt(it) for it in items], responses)
        for i, s in zip(indices, samples):
            s.index = i
            s.item = dataclasses.replace(s.item, images=[])  # the pixels carry the images from here on
        return samples


class Failed:
    """A chunk that could not be encoded, and why."""

    def __init__(self, message: str):
        self.message = message


def _same(x):
    return x


def loader(data: Encoded, chunks: Iterable[Sequence[int]], *, workers: int = 0, seed: int = 0) -> Iterator[list]:
    """Encoded chunks, in order, made by `workers` processes ahead of use (0: in this process).

    Its own generator: a DataLoader draws worker seeds from the global RNG otherwise, and a resumed
    run would then sample differently from an uninterrupted one."""
    for chunk in torch.utils.data.DataLoader(
            data, sampler=chunks, batch_size=None, collate_fn=_same, num_workers=workers,
            prefetch_factor=2 if workers else None, generator=torch.Generator().manual_seed(seed)):
        if isinstance(chunk, Failed):
            raise R1VError(chunk.message)
        yield chunk


def schedule(n: int, per_step: int, *, seed: int, start: int = 0) -> Iterator[np.ndarray]:
    """Every step's global batch (row indices) from step `start` on: seeded permutations of the n
    rows, one per epoch, read in order (a pure function of seed and step)."""
    epoch, at = divmod(start * per_step, n)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    while True:
        parts, need = [], per_step
        while need:
            take = min(need, n - at)
            parts.append(perm[at : at + take])
            at, need = at + take, need - take
            if at == n:
                epoch, at = epoch + 1, 0
                perm = np.random.default_rng([seed, epoch]).permutation(n)
        yield np.concatenate(parts)


def chunked(indices: Sequence[int], size: int) -> list[np.ndarray]:
    return [np.asarray(indices[i : i + size]) for i in range(0, len(indices), size)]


def batches(data: Encoded, steps: Iterable[np.ndarray], *, rank: int = 0, world: int = 1, chunk: int = 64,
            workers: int = 0, seed: int = 0, cache: FeatureCache | None = None) -> Iterator[list]:
    """This process's samples of each step (its share rank::world of the step's batch), in order.

    With a `cache`, a row whose features and sample it holds already is not sent to the workers (its
    pixels would go unused): SFT's later epochs and iterations, GRPO's repeated prompts."""
    from collections import deque

    plan: deque = deque()  # per step: its positions, the samples known already, its chunks to load

    def chunks():
        for batch in steps:
            # a process with no share of a small step still runs one sample (sharded engines need every
            # process in every forward), emptied of its target: it adds nothing to the loss
            empty = not len(batch[rank::world])
            mine = batch[:1] if empty else batch[rank::world]
            known = {}
            for p in mine if cache is not None else ():
                row = data.row_of(p)
                if (s := cache.sample(row, data.kind(row))) is not None:
                    known[int(p)] = s
            todo = chunked([p for p in mine if int(p) not in known], chunk)
            plan.append((mine, known, len(todo), empty))
            yield from todo

    it = iter(loader(data, chunks(), workers=workers, seed=seed))
    ready: deque = deque()  # loaded chunks, in order; a step's come before the next step's
    exhausted = False
    while True:
        while not plan and not exhausted:  # the loader's sampler plans steps as it goes
            try:
                ready.append(next(it))
            except StopIteration:
                exhausted = True
        if not plan:
            return
        mine, known, n, empty = plan.popleft()
        while len(ready) < n:
            ready.append(next(it))
        loaded = [s for _ in range(n) for s in ready.popleft()]
        got = iter(loaded)
        # (a dataset may give several Samples a position, as the reward model's pairs do; none is cached)
        samples = [known[int(p)] if int(p) in known else next(got) for p in mine] if known else loaded
        yield [dataclasses.replace(s, response=[]) for s in samples] if empty else samples
        for s in loaded if cache is not None and not empty else ():  # features computed in the step: keep it
            if s.index in cache.memory or s.index in cache.on_disk:  # (not `get`: no disk read)
                cache.remember(s, data.kind(s.index))


# --------------------------------------------------------------------------- frozen features
class FeatureCache:
    """Frozen vision features by row, computed the first time a row is seen: up to `memory_mb` in
    memory, then up to `disk_mb` on disk under `folder`; past both, rows are encoded every time.
    Beside a row's features it keeps its sample without pixels (token ids: small), so a row seen
    again needs neither the workers nor the vision encoder."""

    def __init__(self, *, memory_mb: float = 2048, disk_mb: float = 0, folder: Path | None = None):
        self.memory: dict[int, torch.Tensor] = {}
        self.on_disk: set[int] = set()
        self.samples: dict[tuple[int, str], object] = {}
        self.room = {"memory": memory_mb * 2**20, "disk": disk_mb * 2**20 if folder else 0}
        self.folder = folder
        if folder is not None and self.room["disk"]:
            folder.mkdir(parents=True, exist_ok=True)

    def get(self, i: int) -> torch.Tensor | None:
        if i in self.memory:
            return self.memory[i]
        return torch.load(self.folder / f"{i}.pt") if i in self.on_disk else None

    def sample(self, i: int, kind: str):
        return self.samples.get((i, kind))

    def remember(self, sample, kind: str) -> None:
        """Keep `sample` (its features are cached) without its pixels."""
        size = 8 * len(sample)
        if (sample.index, kind) not in self.samples and size <= self.room["memory"]:
            self.samples[(sample.index, kind)] = dataclasses.replace(sample, pixels=None)
            self.room["memory"] -= size

    def put(self, i: int, feats: torch.Tensor) -> None:
        # a copy in host memory: not a view that would keep its whole batch alive, and not GPU memory
        feats = feats.detach().to("cpu", copy=True)
        size = feats.numel() * feats.element_size()
        if size <= self.room["memory"]:
            self.memory[i] = feats
            self.room["memory"] -= size
        elif size <= self.room["disk"]:
            tmp = self.folder / f"{i}.pt.tmp"
            torch.save(feats, tmp)
            tmp.replace(self.folder / f"{i}.pt")
            self.on_disk.add(i)
            self.room["disk"] -= size
