"""The streamed data path (`r1v/train/data.py`): rows by offset from JSONL shards, checked before
training; the step schedule as a pure function of (seed, step); each process's share; encoding in
DataLoader workers with errors as one line; the bounded feature cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from r1v.errors import R1VError
from r1v.train.data import Encoded, FeatureCache, Rows, batches, schedule


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_read_lazily_from_shards_in_order(tmp_path):
    rows = [{"id": f"r{i}", "question": "q" * i, "answer": str(i)} for i in range(25)]
    write(tmp_path / "d" / "part-0.jsonl", rows[:10])
    write(tmp_path / "d" / "sub" / "part-1.jsonl", rows[10:])
    (tmp_path / "d" / "part-0.jsonl").write_text((tmp_path / "d" / "part-0.jsonl").read_text() + "\n\n")  # blank lines
    for spec in (tmp_path / "d", str(tmp_path / "d" / "**" / "*.jsonl")):
        r = Rows(spec)
        assert len(r) == 25 and [r[i] for i in (0, 9, 10, 24)] == [rows[0], rows[9], rows[10], rows[24]]
        assert list(r) == rows
    r = Rows(tmp_path / "d")
    assert r.root(12) == tmp_path / "d" / "sub"
    assert r.column(lambda row: int(row["answer"]) % 3, dtype=np.int8).tolist() == [i % 3 for i in range(25)]
    assert r.starts.nbytes + r.lengths.nbytes + r.owners.nbytes == 14 * 25  # the whole index: 14 bytes a row


@pytest.mark.parametrize("line, msg", [
    ("{not json", "d.jsonl:2: not JSON"), ('[1, 2]', "d.jsonl:2: a row must be a JSON object"),
    ('{"id": "x"}', "d.jsonl:2: row has no response"),
    ('{"id": "x", "response": "r", "image": "gone.png"}', "d.jsonl:2: row x names image gone.png, which is missing"),
])
def test_a_bad_row_is_found_before_training_with_its_line(tmp_path, line, msg):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "a", "response": "r"}) + "\n" + line + "\n")
    with pytest.raises(R1VError, match=msg):
        Rows(path, need=("id", "response"))
    with pytest.raises(R1VError, match="no JSONL file"):
        Rows(tmp_path / "nowhere")


def test_the_schedule_is_a_function_of_seed_and_step():
    n, per = 10, 4
    it = schedule(n, per, seed=3)
    steps = [next(it) for _ in range(7)]
    flat = np.concatenate(steps)
    for e in range(2):  # every epoch is a permutation of the rows
        assert sorted(flat[e * n : (e + 1) * n].tolist()) == list(range(n))
    assert not np.array_equal(flat[:n], flat[n : 2 * n])  # reshuffled each epoch
    for k in range(7):  # resuming at step k reads what the uninterrupted run read
        assert np.array_equal(next(schedule(n, per, seed=3, start=k)), steps[k])
    assert not np.array_equal(next(schedule(n, per, seed=4)), steps[0])


class Fake:
    """An Encoded stand-in: a sample is its row index (the loader and the split are what is tested)."""

    def __init__(self, n, bad=()):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, positions):
        from r1v.train.data import Failed

        if self.bad & set(int(i) for i in positions):
            return Failed(f"row {sorted(self.bad)[0]}: image is not a picture")
        return [(os.getpid(), int(i)) for i in positions]


@pytest.mark.parametrize("workers", [0, 2])
def test_each_process_gets_its_share_of_every_step(workers):
    steps = [next(schedule(10, 5, seed=0, start=k)) for k in range(3)]
    shares = [list(batches(Fake(10), iter(steps), rank=r, world=2, chunk=2, workers=workers)) for r in (0, 1)]
    for k, step in enumerate(steps):
        got = [i for _, i in shares[0][k]] + [i for _, i in shares[1][k]]
        assert sorted(got) == sorted(step.tolist())  # the two halves make the step, nothing twice
    pids = {pid for share in shares for step in share for pid, _ in step}
    assert (os.getpid() in pids) == (workers == 0)  # encoded in the workers when there are some


def test_a_row_that_cannot_be_encoded_is_one_clear_error_from_the_workers():
    with pytest.raises(R1VError) as e:
        list(batches(Fake(10, bad=[7]), iter([np.arange(10)]), chunk=4, workers=1))
    assert str(e.value) == "row 7: image is not a picture"  # no worker traceback in the message


def test_encoded_rows_equal_the_encoder_on_the_same_rows(small_world):
    from r1v.evaluate.tasks import get_task
    from r1v.model.builder import build_r1v
    from r1v.model.tokenizer import load_tokenizer
    from r1v.train.samples import Encoder

    out, _ = small_world
    tok = load_tokenizer(str(out / "tokenizer"))
    model = build_r1v(vision=str(out / "vision"), language=str(out / "reasoning"), tokenizer=tok, seed=3)
    enc, task = Encoder(model, tok, max_tiles=1), get_task("world")
    path = out / "data" / "visual-train.jsonl"
    data = Encoded(Rows(path), task, enc, field="", subset=[5, 2])
    got = data[[1, 0]]  # positions in the subset
    ref = enc.encode_all(task, [task.read(path)[i] for i in (2, 5)])
    assert [s.index for s in got] == [2, 5] and [s.prompt for s in got] == [s.prompt for s in ref]
    assert all(torch.equal(a.pixels, b.pixels) for a, b in zip(got, ref))
    assert all(s.item.images == [] for s in got)  # the pixels carry the image from here on


def test_the_feature_cache_is_bounded_and_spills_to_disk(tmp_path):
    one = torch.randn(4, 16, 8)  # 2 KiB
    cache = FeatureCache(memory_mb=5 / 1024, disk_mb=5 / 1024, folder=tmp_path / "c")
    for i in range(6):
        cache.put(i, one + i)
    assert sorted(cache.memory) == [0, 1] and sorted(cache.on_disk) == [2, 3]  # 2 in memory, 2 on disk, then none
    assert torch.equal(cache.get(3), one + 3) and cache.get(5) is None
    assert len(list((tmp_path / "c").glob("*.pt"))) == 2
