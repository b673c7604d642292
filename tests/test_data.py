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


@pytest.fixture(scope="module")
def sft_rows(small_world, tmp_path_factory):
    """The small world's training problems with their reference chains as `response` (a D)."""
    from r1v.evaluate.tasks import get_task
    from r1v.io import read_jsonl
    from r1v.model.builder import build_r1v
    from r1v.model.tokenizer import load_tokenizer
    from r1v.train.samples import Encoder
    from r1v.world.data import target

    out, _ = small_world
    rows = [{**r, "image": str(out / "data" / r["image"]), "response": target(r, "reasoning")}
            for r in read_jsonl(out / "data" / "visual-train.jsonl")[:16]]
    path = write(tmp_path_factory.mktemp("d") / "d.jsonl", rows)
    tok = load_tokenizer(str(out / "tokenizer"))
    model = build_r1v(vision=str(out / "vision"), language=str(out / "reasoning"), tokenizer=tok, seed=3)
    return Encoded(Rows(path, need=("id", "response")), get_task("world"), Encoder(model, tok, max_tiles=1)), model, tok


def test_rows_seen_again_come_from_the_cache_not_the_workers(sft_rows, monkeypatch):
    data, _, _ = sft_rows
    asked = []
    real = data._encode
    monkeypatch.setattr(data, "_encode", lambda positions: asked.append(sorted(int(p) for p in positions))
                        or real(positions))
    cache = FeatureCache()
    got = []
    for samples in batches(data, iter([np.array([0, 1, 2]), np.array([2, 3, 0])]), cache=cache):
        for s in samples:  # what features_of does in a step
            if cache.get(s.index) is None:
                cache.put(s.index, torch.zeros(s.tiles, 4))
        got.append(samples)
    assert asked == [[0, 1, 2], [3]]  # rows 0 and 2 were not encoded again
    assert [s.index for s in got[1]] == [2, 3, 0]  # in the step's own order
    assert got[1][0].pixels is None and got[1][0].prompt == got[0][2].prompt and got[1][0].tiles == 1
    revised = Encoded(data.rows, data.task, data.encoder, revised=[0])  # another text for row 0: not the same sample
    again = next(batches(revised, iter([np.array([0])]), cache=cache))
    assert again[0].index == 0 and again[0].pixels is not None  # encoded anew


def test_the_cached_loop_trains_as_the_pixel_loop(sft_rows):
    """Three epochs with the cache (features and samples reused) give the losses of three epochs that
    encode every row and run the vision encoder in every step."""
    import copy

    from r1v.train.config import Optim, Parts
    from r1v.train.engine import Engine
    from r1v.train.loop import supervised

    data, model, tok = sft_rows
    optim = Optim(samples_per_step=6, micro_batch_per_device=3, epochs=3, warmup_ratio=0.0)
    runs = []
    for cache in (None, FeatureCache()):
        engine = Engine(copy.deepcopy(model), Parts())
        runs.append(supervised(engine, data, optim, lr=1e-2, pad_id=tok.pad_token_id, cache=cache, pack_length=256))
    assert len(runs[0]) == 8 and np.allclose(runs[0], runs[1], atol=1e-4), runs


def test_a_process_without_a_share_runs_a_sample_that_trains_nothing():
    from r1v.train.samples import Sample

    class One:
        def __len__(self):
            return 4

        def __getitem__(self, positions):
            return [Sample(str(int(i)), [1, 2], [3, 4], index=int(i)) for i in positions]

        def row_of(self, p):
            return int(p)

        def kind(self, row):
            return "response"

    steps = [np.array([2])]  # one row, two processes
    first = next(batches(One(), iter(steps), rank=0, world=2))
    second = next(batches(One(), iter(steps), rank=1, world=2))
    assert first[0].response == [3, 4] and second[0].index == 2 and second[0].response == []


def test_a_corrupt_image_names_its_row_in_one_line(sft_rows, tmp_path):
    data, _, _ = sft_rows
    rows = list(data.rows)[:3]
    (tmp_path / "bad.png").write_bytes(b"not a picture at all")
    rows[1] = {**rows[1], "id": "the-bad-one", "image": "bad.png"}
    broken = Encoded(Rows(write(tmp_path / "d.jsonl", rows), need=("id", "response")), data.task, data.encoder)
    with pytest.raises(R1VError) as e:
        list(batches(broken, iter([np.arange(3)]), workers=1))
    assert "row the-bad-one: UnidentifiedImageError" in str(e.value) and "Traceback" not in str(e.value)


def test_checkpoints_sort_by_pass_then_step_and_other_settings_are_cleared(tmp_path):
    from r1v.train.config import CheckpointConfig
    from r1v.train.engine import Checkpoints

    ck = Checkpoints(tmp_path / "align", CheckpointConfig(), setting={"lr": 1})
    for name in ("step-000-00000500", "step-001-00000100", "step-001-00000040.partial"):
        (tmp_path / "align" / name).mkdir(parents=True)
        (tmp_path / "align" / name / "position.json").write_text(json.dumps({"step": 1, "setting": {"lr": 1}}))
    assert [p.name for p in ck.complete()] == ["step-000-00000500", "step-001-00000100"]  # a .partial never counts
    assert ck.peek()["path"].endswith("step-001-00000100")
    other = Checkpoints(tmp_path / "align", CheckpointConfig(), setting={"lr": 2})
    assert other.peek() is None and other.resume(engine=None) is None
    assert not (tmp_path / "align").exists()  # they would have outranked the new run's checkpoints


def test_the_content_digest_follows_bytes_not_paths_and_reads_little_of_a_large_file(tmp_path, monkeypatch):
    import os
    import shutil

    import r1v.io as io
    from r1v.io import content_digest, folder_files

    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"hidden_size": 8}')
    big = a / "model.safetensors"
    with open(big, "wb") as f:
        f.truncate(64 << 20)  # 64 MiB, sparse
    (a / ".cache").mkdir()
    (a / ".cache" / "lock").write_text("x")  # hidden: not part of the model
    first = content_digest(folder_files(a))
    shutil.copytree(a, tmp_path / "moved")  # a copy elsewhere, with new times
    assert content_digest(folder_files(tmp_path / "moved")) == first
    (a / ".cache" / "lock").write_text("y")
    assert content_digest(folder_files(a)) == first
    reads = []
    real_open = open
    monkeypatch.setattr(io, "open", lambda *x, **k: _Counting(real_open(*x, **k), reads), raising=False)
    io._digests.clear()
    assert content_digest(folder_files(a)) == first
    assert sum(reads) <= (1 << 20) + 100  # 64 blocks of 16 KiB, and the small file, not 64 MiB
    assert content_digest(folder_files(a)) == first and sum(reads) <= (1 << 20) + 100  # once per process
    many = [(f"shard-{i}", big) for i in range(2000)]  # 2,000 large shards: about 32 MiB read in all
    reads.clear()
    content_digest(many)
    assert sum(reads) <= 2 * 16 << 10  # (one file here, remembered; 2 blocks each for 2,000)
    monkeypatch.undo()
    inside = ((64 << 20) - (16 << 10)) * 31 // 63 + 100  # in the 32nd of 64 sampled blocks
    for at in (0, (64 << 20) - 1, inside):  # the first byte, the last, one inside a sampled block
        with open(big, "r+b") as f:
            f.seek(at)
            f.write(b"\x01")
        io._digests.clear()  # (edits closer together than the file system's clock tick)
        changed = content_digest(folder_files(a))
        assert changed != first
        with open(big, "r+b") as f:
            f.seek(at)
            f.write(b"\x00")
    io._digests.clear()
    (a / "config.json").write_text('{"hidden_size": 9}')  # a small file is read whole
    assert content_digest(folder_files(a)) != first
    os.rename(a / "config.json", a / "config2.json")
    assert content_digest(folder_files(a)) != content_digest(folder_files(tmp_path / "moved"))
    assert folder_files(big) == [("model.safetensors", big)]


class _Counting:
    def __init__(self, f, reads):
        self.f, self.reads = f, reads

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def seek(self, at):
        return self.f.seek(at)

    def read(self, n=-1):
        out = self.f.read(n)
        self.reads.append(len(out))
        return out
