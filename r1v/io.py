"""The project's file and process helpers, once: atomic writes (a reader sees the old file or the
new one, never half of one, even after a kill -9), JSON lines, an append-only journal of records
that survives a crash, a content digest that stays cheap on a 60 GB checkpoint, and the process's
peak memory.

    write_atomic(path, text); write_json(path, obj); write_jsonl(path, rows); rows = read_jsonl(path)
    done = Journal(path, key=lambda r: r["id"]); done.add([record]); done.records  # {key: record}
    content_digest(folder_files("runs/tiny/align"))   # what a stage was made from (r1v/train/context.py)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to a sibling temporary file, flush it to disk, and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, obj, *, indent: int = 1) -> Path:
    return write_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class Journal:
    """A JSON-lines file of records, appended as they are made and keyed by `key(record)`.

    Each `add` is one write, flushed and fsynced, so a crash loses at most the records being
    written. Unreadable lines (a torn last line after a crash, or damage anywhere) are dropped on
    load and the file rewritten without them: those records are redone, none is duplicated."""

    def __init__(self, path: Path, key):
        self.path, self.key = Path(path), key
        self.records: dict = {}
        if not self.path.exists():
            return
        bad = 0
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    k = key(rec)
                    if not line.endswith(b"\n"):
                        raise ValueError("torn")
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                self.records.setdefault(k, rec)
        if bad:
            print(f"note: dropped {bad} unreadable line(s) from {self.path}; they will be redone", file=sys.stderr)
            write_atomic(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()))

    def add(self, records) -> None:
        new = []
        for rec in records:
            k = self.key(rec)
            if k not in self.records:
                self.records[k] = rec
                new.append(rec)
        if new:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                f.flush()
                os.fsync(f.fileno())


BLOCK, BUDGET = 16 << 10, 32 << 20
_digests: dict[tuple[str, int, int, int], bytes] = {}


def content_digest(files: Iterable[tuple[str, Path]]) -> str:
    """16 hex digits of sha256 over each `(name, path)`'s name, size and bytes. A file up to 32 KiB is
    read whole; a larger one as evenly spaced 16 KiB blocks, its first and last among them: 2 to 64
    per file, about 32 MiB over all the files, so a 60 GB checkpoint or 2,000 shards of rows cost
    little to read (and each file once per process: kept by path, size and time). A retrained model
    or regenerated data changes it; a copy or a move does not (neither paths nor times enter it).
    Not a checksum: a same-size edit that falls wholly between the blocks of a large file goes
    unseen."""
    files = list(files)
    blocks = max(2, min(64, BUDGET // BLOCK // max(1, len(files))))
    h = hashlib.sha256()
    for name, path in files:
        st = path.stat()
        h.update(f"{name}\0{st.st_size}\0".encode())
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, blocks)
        if key not in _digests:
            _digests[key] = _sampled(path, st.st_size, blocks)
        h.update(_digests[key])
    return h.hexdigest()[:16]


def _sampled(path: Path, size: int, blocks: int) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= 2 * BLOCK:
            h.update(f.read())
        else:
            for k in range(blocks):
                f.seek((size - BLOCK) * k // (blocks - 1))
                h.update(f.read(BLOCK))
    return h.digest()


def folder_files(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """Every file under `folder` (hidden ones aside) as (its path inside the folder, its path), sorted;
    a file stands for itself."""
    folder = Path(folder)
    if folder.is_file():
        return [(folder.name, folder)]
    return [(str(f.relative_to(folder)), f) for f in sorted(folder.rglob("*"))
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def docstring(module: str) -> str:
    """A module's docstring, read from its file without importing it (so --help needs no torch)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    return ast.get_docstring(ast.parse(open(spec.origin).read())) or module
