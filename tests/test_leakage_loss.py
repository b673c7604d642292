"""Skywork-13B's loss-based leakage test (`r1v eval leakage --method loss`) on the mini-world: a model
fine-tuned on the test split shows Δ1 = L_test - L_ref below 0 with an interval that excludes 0, the
clean model does not. Also the pieces: the bootstrap gap, the world's rule-based rewriter, and the
LLM rewriter (`make-reference`) against a loopback endpoint."""

from __future__ import annotations

import json

import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.leakage import parse_rewrite
from r1v.io import read_jsonl
from r1v.stats import ratio_gap
from tests.loopback import Loopback


# ---------------------------------------------------------------- the statistic
def test_ratio_gap_is_token_weighted_and_its_interval_is_honest():
    a = [(2.0, 1), (10.0, 9)]  # token-averaged: 12 / 10 = 1.2, not the mean of 2.0 and 1.11
    b = [(1.0, 1)] * 5
    g = ratio_gap(a, b, rounds=500)
    assert g["gap"] == pytest.approx(0.2) and g["lo"] <= g["gap"] <= g["hi"]
    same = [(float(1 + (i % 3)), 1) for i in range(60)]
    g = ratio_gap(same, list(reversed(same)), rounds=500)
    assert g["gap"] == pytest.approx(0.0) and g["lo"] < 0 < g["hi"]  # one distribution: 0 inside
    far = ratio_gap([(1.0, 1)] * 30, [(3.0, 1), (2.0, 1)] * 15, rounds=500)
    assert far["hi"] < 0  # clearly lower: the interval excludes 0
    assert ratio_gap(same, same, rounds=200, seed=3) == ratio_gap(same, same, rounds=200, seed=3)


# ---------------------------------------------------------------- the mini-world's sets
@pytest.fixture(scope="module")
def world_sets(tmp_path_factory):
    from r1v.world.data import write_split
    from r1v.world.leak import write_reference

    d = tmp_path_factory.mktemp("leak")
    train = write_split(d, "train", visual=24, text=0, seed=0)["visual"]
    test = write_split(d, "test", visual=24, text=0, seed=0)["visual"]
    ref = write_reference(test, d / "reference.jsonl")
    model = d / "model"
    assert main(["build", "--out", str(model)]) == 0
    return d, train, test, ref, model


def test_world_rewrites_are_new_problems_of_the_same_kind(world_sets):
    from r1v.world.data import from_row, split_of

    d, _, test, ref, _ = world_sets
    tests, refs = read_jsonl(test), read_jsonl(ref)
    assert [r["rewrites"] for r in refs] == [r["id"] for r in tests]
    keys = {json.dumps(from_row(r).key(), sort_keys=True) for r in tests}
    for t, r in zip(tests, refs):
        assert (r["family"], r["level"], bool(r["choices"])) == (t["family"], t["level"], bool(t["choices"]))
        assert split_of(from_row(r)) == r["split"] in ("test", "val")  # a share no training split holds
        assert json.dumps(from_row(r).key(), sort_keys=True) not in keys
        assert (d / r["image"]).is_file()
    assert len({json.dumps(from_row(r).key(), sort_keys=True) for r in refs}) == len(refs)  # no repeats


def _loss(world_sets, model, out, capsys):
    d, train, test, ref, _ = world_sets
    assert main(["eval", "leakage", "--method", "loss", "--model", str(model), "--bench", "world", "--data",
                 str(test), "--train-split", str(train), "--reference", str(ref), "--out", str(out),
                 "--device", "cpu", "--rounds", "1000"]) == 0
    printed = capsys.readouterr().out
    return json.loads(out.read_text()), printed


def test_a_leaked_model_shows_delta1_below_zero_and_the_clean_one_does_not(world_sets, tmp_path, capsys):
    """Clean: the tiny model fine-tuned on the train split (it learns the world's format there, as any
    model trained on a benchmark's kind of data would). Leaked: the clean one, then fine-tuned on the
    test split. Only the leaked model finds the test items easier than their rewrites."""
    from r1v.world.leak import leak

    d, train, test, ref, model = world_sets
    clean_model = leak(model, train, tmp_path / "clean", epochs=4, lr=3e-3, log=lambda s: None)
    clean, said = _loss(world_sets, clean_model, tmp_path / "clean.json", capsys)
    assert not clean["test_leaked"] and (clean["delta1"]["lo"] <= 0 <= clean["delta1"]["hi"]
                                          or clean["delta1"]["gap"] > 0)
    assert "no sign that the test set leaked" in said
    assert clean["items"] == {"train": 24, "test": 24, "reference": 24}
    leaked_model = leak(clean_model, test, tmp_path / "leaked", epochs=10, lr=3e-3, log=lambda s: None)
    leaked, said = _loss(world_sets, leaked_model, tmp_path / "leaked.json", capsys)
    assert leaked["delta1"]["hi"] < 0 and leaked["test_leaked"], leaked["delta1"]
    assert "below 0: the test set looks leaked" in said
    assert leaked["delta1"]["gap"] < clean["delta1"]["gap"] - 0.1
    assert len(leaked["per_item"]["test"]) == 24


def test_loss_method_checks_its_inputs_first(world_sets, tmp_path, capsys):
    d, train, test, ref, model = world_sets
    assert main(["eval", "leakage", "--method", "loss", "--bench", "world", "--data", str(test)]) == 2
    assert "needs --model, --train-split, --reference" in capsys.readouterr().err
    assert main(["eval", "leakage", "--method", "loss", "--model", str(tmp_path / "nope"), "--bench", "world",
                 "--data", str(test), "--train-split", str(train), "--reference", str(ref)]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["eval", "leakage", "--method", "loss", "--model", str(model), "--bench", "world",
                 "--data", str(test), "--train-split", str(tmp_path / "none.jsonl"), "--reference", str(ref)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["world", "reference", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert main(["world", "reference", "--data", str(test), "--out", str(test)]) == 2  # never over the split
    assert "is the --data file" in capsys.readouterr().err and len(read_jsonl(test)) == 24
    other = tmp_path / "math.jsonl"
    other.write_text(json.dumps({"problem": "1+1", "answer": "2", "unique_id": "a"}) + "\n")
    assert main(["world", "reference", "--data", str(other), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "is not a mini-world row" in capsys.readouterr().err


# ---------------------------------------------------------------- the LLM rewriter
ORIGINAL = {"question": "What is 2 + 3?", "choices": None, "answer": "5"}


@pytest.mark.parametrize("reply, why", [
    ("Sure, here it is: no JSON", "no JSON"),
    ('{"question": "", "answer": "4"}', "non-empty question"),
    ('{"question": "What is 2 + 3?", "answer": "5"}', "original question"),
    ('{"question": "Pick one", "choices": ["1", "2"], "answer": "C"}', "option letters"),
    ('{"question": "Pick one", "choices": ["1", "2"], "answer": "A"}', "changed the form"),
    ('{"question": "What is 4 + 4?", "answer": ["8"]}', "non-empty question and answer"),
])
def test_rewrites_that_are_not_new_items_are_refused(reply, why):
    with pytest.raises(R1VError, match=why):
        parse_rewrite(reply, ORIGINAL)


def test_a_rewrite_is_read_through_think_and_fences():
    row = parse_rewrite('<think>hmm</think>```json\n{"question": "What is 4 + 1?", "answer": 5, '
                        '"solution": "4 + 1 = 5."}\n```', ORIGINAL)
    assert row == {"question": "What is 4 + 1?", "choices": None, "answer": "5", "solution": "4 + 1 = 5."}


class Rewriter(Loopback):
    """A loopback rewriter: prefixes the question with "Rewritten: "; junk for the `junk` questions."""

    def __init__(self, junk=()):
        self.junk = set(junk)
        super().__init__(self.rewrite, model="writer")

    def rewrite(self, body) -> str:
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        item = json.loads(text)
        if item["question"] in self.junk:
            return "I cannot do that."
        return json.dumps({"question": "Rewritten: " + item["question"], "choices": item.get("choices"),
                           "answer": item["answer"], "solution": "by the same steps"})


def test_make_reference_writes_both_sets_and_a_rerun_finishes_the_failures(tmp_path, capsys):
    from r1v.evaluate.examples import MATHVISTA_ROWS, write_mathvista

    data = tmp_path / "MathVista"
    write_mathvista(data)
    out = tmp_path / "leak"
    writer = Rewriter(junk={MATHVISTA_ROWS[1]["question"]})
    args = ["eval", "leakage", "make-reference", "--bench", "mathvista", "--data", str(data), "--rewriter",
            writer.url, "--out", str(out), "--concurrency", "2"]
    assert main(args) == 0
    assert "3 of 4 items rewritten (1 failed" in capsys.readouterr().out
    refs, tests = read_jsonl(out / "reference.jsonl"), read_jsonl(out / "test.jsonl")
    assert len(refs) == len(tests) == 3 and read_jsonl(out / "failed.jsonl")[0]["id"] == "2"
    first = next(r for r in refs if r["rewrites"] == "1")
    assert first["choices"] == ["red", "blue", "green"] and first["answer"] == "B"  # MC stays MC, as a letter
    assert (out / first["images"][0]).is_file()
    assert sum(p["type"] == "image_url" for p in writer.requests[0]["messages"][-1]["content"]) == 1
    n = len(writer.requests)
    writer.junk.clear()
    assert main(args) == 0  # only the failed item is asked again
    assert len(writer.requests) == n + 1 and len(read_jsonl(out / "reference.jsonl")) == 4
    writer.junk = {r["question"] for r in MATHVISTA_ROWS}
    assert main([*args[:-4], "--out", str(tmp_path / "none"), "--concurrency", "2"]) == 2  # nothing rewritten
    assert "no item was rewritten (4 failed)" in capsys.readouterr().err
    writer.httpd.shutdown()
    # the two files read as one format, side by side
    assert main(["eval", "score", "--bench", "jsonl", "--data", str(out / "reference.jsonl"), "--responses",
                 str(_responses(tmp_path, out / "reference.jsonl")), "--out", str(tmp_path / "s")]) == 0


def _responses(tmp_path, path):
    rows = read_jsonl(path)
    f = tmp_path / "resp.jsonl"
    f.write_text("".join(json.dumps({"id": r["id"], "output": f"</think>\\boxed{{{r['answer']}}}"}) + "\n"
                         for r in rows))
    return f
