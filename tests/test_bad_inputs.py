"""Every command against every bad input that applies to it, as a new user would try them.

Each try must end with exit status 2 and one line on stderr (`r1v: error: ...`) that says what to
fix: no traceback, no `.partial` folder left behind, no input or existing file changed. The inputs
are made by the `corpus` fixture: missing paths, folders, empty, truncated, corrupt and non-UTF-8
files, decompression bombs, torn last lines, JSON arrays, scalars, rows missing fields, repeated ids,
the wrong benchmark's file, outputs that are files or sit under files, and NaN / negative / zero /
out-of-range / unknown settings. `test_the_corpus_is_large` keeps the count honest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from r1v.cli import main

MESSAGES: dict[str, str] = {}  # name -> the line it printed (R1V_SHOW_BAD_INPUTS=1 prints them all)
_PROGRESS = __import__("re").compile(r"\d+%\|.*\| *\d+/\d+ \[")


def _png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height over one tiny compressed row: a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny):
    from r1v.evaluate.examples import write_examples
    from r1v.model.checkpoint import save_model

    d = tmp_path_factory.mktemp("bad")
    c = {"dir": d, "model": save_model(*tiny, d / "model", max_tiles=1)}
    c["data"] = write_examples(d / "benchdata")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(d / "ok.png")
    c["pairs"] = d / "pairs.jsonl"
    c["pairs"].write_text(json.dumps({"id": "p1", "prompt": "Red?", "image": "ok.png", "chosen": " yes</think>\\boxed{1}",
                                      "rejected": " no</think>\\boxed{2}"}) + "\n")
    c["missing"] = d / "missing.jsonl"
    (d / "folder").mkdir()
    (d / "folder" / "inside.txt").write_text("x")
    c["folder"] = d / "folder"
    files = {
        "empty": b"",
        "non-UTF-8": b'{"problem": "caf\xe9", "answer": "1"}\n',
        "torn last line": b'{"problem": "1+1?", "answer": "2", "unique_id": "a"}\n{"problem": "2+2?", "ans',
        "JSON array": json.dumps([{"problem": "1+1?", "answer": "2"}]).encode(),
        "scalars": b"1\n2\n",
        "missing fields": b'{"unique_id": "a"}\n',
        "repeated ids": b'{"problem": "1+1?", "answer": "2", "unique_id": "a"}\n'
                        b'{"problem": "2+2?", "answer": "4", "unique_id": "a"}\n',
        "invalid YAML": b"model: [unclosed\n",
        "a YAML list": b"- 1\n- 2\n",
    }
    files["distill rows"] = b'{"id": "a", "question": "1+1?", "answer": "2"}\n'
    files["distill rows, repeated ids"] = files["distill rows"] * 2
    for name, data in files.items():
        path = d / (name.replace(" ", "-") + (".yaml" if "YAML" in name else ".jsonl"))
        path.write_bytes(data)
        c[name] = path
    ok = (d / "ok.png").read_bytes()
    images = {"truncated image": ok[: len(ok) // 2], "corrupt image": bytes(range(256)) * 8,
              "text named .png": b"not a picture", "decompression bomb": _png(100_000, 100_000)}
    for name, data in images.items():
        (d / (name.replace(" ", "-").replace(".", "") + ".png")).write_bytes(data)
        c[name] = d / (name.replace(" ", "-").replace(".", "") + ".png")
    shard = d / "truncated-shard"
    shutil.copytree(c["model"], shard)
    weights = shard / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    c["truncated shard"] = shard
    notok = d / "no-tokenizer"
    shutil.copytree(c["model"], notok)
    for f in notok.glob("tokenizer*"):
        f.unlink()
    c["missing tokenizer"] = notok
    c["a file"] = d / "afile.txt"
    c["a file"].write_text("keep me")
    c["under a file"] = d / "afile.txt" / "out"
    (d / "notes").mkdir()
    (d / "notes" / "todo.txt").write_text("keep me too")
    c["a folder that is not a model"] = d / "notes"
    assert main(["eval", "score", "--responses", str(_responses(c, d)), "--bench", "math500",
                 "--data", str(c["data"]["math500"]), "--out", str(d / "evalrun")]) == 0
    c["an eval run"] = d / "evalrun"
    c["responses"] = d / "responses.jsonl"
    line = json.dumps({"id": "a", "correct": True}) + "\n"
    good = json.dumps({"stages": {"align": {"eval": {"visual": {"accuracy": 1.0, "n": 1}}}}})
    for name, results, output in (("a recipe run", good, line), ("another recipe run", good, line), ("run: corrupt results.json", '{"stages": {', line),
                                  ("run: results.json a list", "[1, 2]", line),
                                  ("run: stages without eval figures", '{"stages": {"align": {"eval": {"visual": 1}}}}',
                                   line),
                                  ("run: a torn outputs line", good, line + '{"id": "b", "corr'),
                                  ("run: a stage without its accuracy", json.dumps({"stages": {
                                      "align": {"eval": {"visual": {"accuracy": 1.0, "n": 1}}},
                                      "transfer": {"eval": {"visual": {"n": 5}}}}}), line),
                                  ("run: an accuracy as text", good.replace("1.0", '"1.0"'), line),
                                  ("run: AL-CoTD's tokens as text", good, line),
                                  ("run: outputs without ids", good, '{"correct": true}\n')):
        run = d / "recipe-runs" / name.replace(" ", "-").replace(":", "")
        (run / "outputs").mkdir(parents=True)
        (run / "results.json").write_text(results)
        (run / "outputs" / "align-visual.jsonl").write_text(output)
        c[name] = run
    for arm, tokens in (("al-cotd", '"15"'), ("fixed-p1", "17")):  # `r1v world compare`'s files, one mangled
        f = c["run: AL-CoTD's tokens as text"] / "distill-compare" / arm / "result.json"
        f.parent.mkdir(parents=True)
        f.write_text('{"correct": {"a": true}, "easy": {"tokens": %s}}' % tokens)
    return c


def _responses(c, d: Path) -> Path:
    from r1v.evaluate.tasks import get_task

    path = d / "responses.jsonl"
    items = get_task("math500").read(c["data"]["math500"])
    path.write_text("".join(json.dumps({"id": it.id, "output": "</think>\\boxed{2}"}) + "\n" for it in items))
    return path


def tries(c) -> dict[str, list[str]]:
    """name -> argv. Outputs go to `{out}`, a fresh folder per try (filled in by the test)."""
    m, img, math = str(c["model"]), str(d_ok := c["dir"] / "ok.png"), str(c["data"]["math500"])
    gpqa, rows = str(c["data"]["gpqa"]), str(c["distill rows"])
    t: dict[str, list[str]] = {}
    # chat: the model, the images, the sampling settings
    for bad in ("missing", "folder", "truncated shard", "missing tokenizer", "a file"):
        t[f"chat --model {bad}"] = ["chat", "--model", str(c[bad]), "Q"]
    for bad in ("missing", "folder", "empty", "truncated image", "corrupt image", "text named .png",
                "decompression bomb"):
        t[f"chat --image {bad}"] = ["chat", "--model", m, "--image", str(c[bad]), "Q"]
    for flag, values in {"--temperature": ["nan", "-1", "inf"], "--top-p": ["2", "0", "nan"],
                         "--repetition-penalty": ["0", "-1"], "--max-new-tokens": ["0", "-5"],
                         "--max-tiles": ["0"]}.items():
        for v in values:
            t[f"chat {flag} {v}"] = ["chat", "--model", m, "--image", str(d_ok), flag, v, "Q"]
    t["chat with two images and one placeholder"] = ["chat", "--model", m, "--image", img, "--image", img, "<image> Q"]
    # build / convert: destinations and sizes
    for bad in ("a file", "under a file"):
        t[f"build --out {bad}"] = ["build", "--out", str(c[bad])]
        t[f"convert to {bad}"] = ["convert", m, str(c[bad]), "--to", "skywork"]
    t["build --overwrite onto a file"] = ["build", "--out", str(c["a file"]), "--overwrite"]
    t["build --overwrite onto a folder that is not a model"] = ["build", "--out", str(c["a folder that is not a model"]),
                                                                 "--overwrite"]
    t["convert --overwrite onto a file"] = ["convert", m, str(c["a file"]), "--to", "hf", "--overwrite"]
    t["convert onto itself"] = ["convert", m, m, "--to", "hf", "--overwrite"]
    for bad in ("missing", "folder", "truncated shard", "missing tokenizer"):
        t[f"convert from {bad}"] = ["convert", str(c[bad]), "{out}/x", "--to", "skywork"]
    for v in ("lots", "0", "-1"):
        t[f"convert --max-shard-size {v}"] = ["convert", m, "{out}/x", "--to", "hf", "--max-shard-size", v]
    # eval run / score: the benchmark file, the numbers, the output
    data_bad = ("missing", "folder", "empty", "non-UTF-8", "torn last line", "JSON array", "scalars",
                "missing fields", "repeated ids")
    for bad in data_bad:
        t[f"eval run --data {bad}"] = ["eval", "run", "--model", m, "--bench", "math500", "--data", str(c[bad]),
                                       "--out", "{out}/run", "--max-new-tokens", "2"]
        if bad in ("missing", "folder", "empty", "non-UTF-8", "torn last line"):  # any rows are training text
            t[f"eval leakage --train {bad}"] = ["eval", "leakage", "--train", str(c[bad]), "--bench", "math500",
                                                "--data", math, "--out", "{out}/l.json"]
        if bad != "repeated ids":  # leakage reads the questions; eval run refuses repeated ids
            t[f"eval leakage --data {bad}"] = ["eval", "leakage", "--train", math, "--bench", "math500",
                                               "--data", str(c[bad]), "--out", "{out}/l.json"]
        t[f"eval score --responses {bad}"] = ["eval", "score", "--responses", str(c[bad]), "--bench", "math500",
                                              "--data", math, "--out", "{out}/run"]
        t[f"distill --data {bad}"] = ["distill", "--data", str(c[bad if bad != "repeated ids"
                                                                 else "distill rows, repeated ids"]),
                                      "--teacher", m, "--out", "{out}/d"]
    t["eval run with the wrong benchmark's file"] = ["eval", "run", "--model", m, "--bench", "math500", "--data", gpqa,
                                                     "--out", "{out}/run"]
    for flag, values in {"--samples": ["0", "-1"], "--limit": ["0", "-3"], "--max-new-tokens": ["0"],
                         "--temperature": ["nan", "-1"], "--top-p": ["2"], "--verify-timeout": ["0", "nan"],
                         "--concurrency": ["0"], "--batch-size": ["0"]}.items():
        for v in values:
            t[f"eval run {flag} {v}"] = ["eval", "run", "--model", m, "--bench", "math500", "--data", math,
                                         "--out", "{out}/run", flag, v]
    for bad in ("a file", "under a file"):
        t[f"eval run --out {bad}"] = ["eval", "run", "--model", m, "--bench", "math500", "--data", math,
                                      "--out", str(c[bad]), "--max-new-tokens", "2"]
        t[f"eval leakage --out {bad}"] = ["eval", "leakage", "--train", math, "--bench", "math500", "--data", math,
                                          "--out", str(c[bad] if bad != "a file" else c["folder"])]
        t[f"eval report --out {bad}"] = ["eval", "report", str(c["an eval run"]), "--out", str(c[bad])]
    for bad in ("missing", "folder", "a file"):
        t[f"eval report {bad}"] = ["eval", "report", str(c[bad]), "--out", "{out}/r.md"]
    run = str(c["an eval run"])
    for bad in ("missing", "folder", "a file", "empty", "non-UTF-8", "torn last line", "JSON array", "scalars",
                "missing fields"):
        t[f"eval compare {bad}"] = ["eval", "compare", "--baseline", run, "--candidate", str(c[bad])]
    t["eval compare 1 baseline, 2 candidates"] = ["eval", "compare", "--baseline", run, "--candidate", run, run]
    t["eval compare --by an unknown group"] = ["eval", "compare", "--baseline", run, "--candidate", run,
                                               "--by", "no-such-group"]
    for bad in ("a file", "under a file"):
        t[f"eval compare --out {bad}"] = ["eval", "compare", "--baseline", run, "--candidate", run,
                                          "--out", str(c[bad])]
    good = str(c["a recipe run"])
    for bad in ("missing", "folder", "a file", "an eval run", "run: corrupt results.json", "run: results.json a list",
                "run: stages without eval figures", "run: a torn outputs line", "run: outputs without ids",
                "run: a stage without its accuracy", "run: an accuracy as text", "run: AL-CoTD's tokens as text"):
        t[f"recipe claims {bad}"] = ["recipe", "claims", good, str(c[bad])]
    t["recipe claims one run twice"] = ["recipe", "claims", good, good + "/."]
    t["recipe claims one run"] = ["recipe", "claims", good]
    for bad in ("a file", "under a file"):
        t[f"recipe claims --out {bad}"] = ["recipe", "claims", good, str(c["another recipe run"]), "--out", str(c[bad])]
    for flag, v in (("--n", "0"), ("--n", "-2"), ("--threshold", "0"), ("--threshold", "2"), ("--threshold", "nan")):
        t[f"eval leakage {flag} {v}"] = ["eval", "leakage", "--train", math, "--bench", "math500", "--data", math,
                                         "--out", "{out}/l.json", flag, v]
    t["eval run --model a bad URL"] = ["eval", "run", "--model", "http://127.0.0.1:9/v1", "--bench", "math500",
                                       "--data", math, "--out", "{out}/run"]
    # world: settings and folders
    for kv in ("vit_lr=nan", "vit_lr=-1", "lm_lr=inf", "vit_steps=-5", "seed=abc", "no_such_key=1", "lm_hidden=0"):
        t[f"world build {kv}"] = ["world", "build", "--out", "{out}/w", kv]
    t["world build --preset unknown"] = ["world", "build", "--out", "{out}/w", "--preset", "huge"]
    t["world build --out a file"] = ["world", "build", "--out", str(c["a file"])]
    for bad in ("missing", "folder", "a file"):
        t[f"world data --world {bad}"] = ["world", "data", "--world", str(c[bad]), "--out", "{out}/d"]
        t[f"world show --world {bad}"] = ["world", "show", "--world", str(c[bad]), "--out", "{out}/s.png"]
    for kv in ("cot_share=2", "filtered_share=0", "distill.alpha=nan", "no_such_key=1"):
        t[f"world data {kv}"] = ["world", "data", "--world", str(c["folder"]), "--out", "{out}/d", kv]
    for flag, v in (("--n", "0"), ("--n", "-1")):
        t[f"world show {flag} {v}"] = ["world", "show", "--out", "{out}/s.png", flag, v]
    for name in ("s.xyz", "noextension"):
        t[f"world show --out {name}"] = ["world", "show", "--out", "{out}/" + name]
    t["world show --out under a file"] = ["world", "show", "--out", str(c["a file"] / "s.png")]
    # recipes: the file, its values
    for bad in ("missing", "folder", "empty", "non-UTF-8", "invalid YAML", "a YAML list"):
        t[f"recipe run {bad}"] = ["recipe", "run", str(c[bad])]
        t[f"train sft --config {bad}"] = ["train", "sft", "--config", str(c[bad])]
    for kv in ("grpo.lr=-1", "grpo.lr=nan", "sft.optim.lr=-0.1", "no.such.key=1", "grpo.steps=0", "sft.taus=[9]",
               "stages=[fly]", "align.passes=3", "model.dtype=fp64"):
        t[f"recipe run recipes/tiny.yaml {kv}"] = ["recipe", "run", "recipes/tiny.yaml", kv, "out={out}/run"]
    t["train sft with the recipe's files not made"] = ["train", "sft", "--config", "recipes/tiny.yaml", "out={out}/run"]
    # R1V2's GRPO settings: refused before anything loads
    for kv in ("grpo.rm_norm=tanh", "grpo.rm_clip=0", "grpo.ssb.when=sometimes", "grpo.ssb.target=1.5",
               "grpo.ssb.size=0", "grpo.eval_every=0", "grpo.critical=nouns", "grpo.critical_share=0",
               "grpo.rm_weight=-1", "grpo.critical=words grpo.critical_words=[]"):
        t[f"recipe run recipes/r1v2-tiny.yaml {kv}"] = ["recipe", "run", "recipes/r1v2-tiny.yaml", *kv.split(),
                                                        "out={out}/run"]
    t["train grpo-filter with the recipe's files not made"] = ["train", "grpo-filter", "--config", "recipes/tiny.yaml",
                                                               "out={out}/run"]
    t["train grpo-probe without a GRPO run"] = ["train", "grpo-probe", "--config", "recipes/tiny.yaml", "out={out}/run"]
    t["train grpo-probe with a setting it would not use"] = ["train", "grpo-probe", "--config", "recipes/tiny.yaml",
                                                           "out={out}/run", "grpo.probe_prompts=8"]
    t["train grpo-probe --seeds x"] = ["train", "grpo-probe", "--config", "recipes/tiny.yaml", "--seeds", "0,x",
                                       "out={out}/run"]
    t["train grpo grpo.base=missing"] = ["train", "grpo", "--config", "recipes/tiny.yaml", "out={out}/run",
                                         "grpo.base=" + str(c["missing"])]
    # distill: the teacher and the settings
    for kv in ("alpha=nan", "no_such_key=1", "temperature=-1"):
        t[f"distill {kv}"] = ["distill", "--data", rows, "--teacher", m, "--out", "{out}/d", kv]
    for bad in ("missing", "folder", "truncated shard"):
        t[f"distill --teacher {bad}"] = ["distill", "--data", rows, "--teacher", str(c[bad]), "--out", "{out}/d"]
    t["distill --out a file"] = ["distill", "--data", rows, "--teacher", m, "--out", str(c["a file"])]
    # serve: settings are refused before the model loads
    for flags in (["--max-batch", "0"], ["--port", "70000"], ["--engine", "tgi"], ["--max-queue", "-1"],
                  ["--api-key", " "], ["--max-image-pixels", "0"], ["--batch-wait-ms", "-1"], ["--max-tiles", "0"]):
        t[f"serve {' '.join(flags)}"] = ["serve", "--model", m, *flags]
    for bad in ("missing", "folder", "truncated shard", "missing tokenizer"):
        t[f"serve --model {bad}"] = ["serve", "--model", str(c[bad]), "--port", "0"]
    # usage mistakes argparse finds: one line too
    t["eval run --bench unknown"] = ["eval", "run", "--model", m, "--bench", "mathverse", "--data", math]
    t["eval run without --data"] = ["eval", "run", "--model", m, "--bench", "math500"]
    t["world show --split unknown"] = ["world", "show", "--split", "dev", "--out", "{out}/s.png"]
    t["convert --to unknown"] = ["convert", m, "{out}/x", "--to", "gguf"]
    t["chat --dtype unknown"] = ["chat", "--model", m, "--dtype", "fp8", "Q"]
    t["chat --device unknown"] = ["chat", "--model", m, "--device", "tpu", "Q"]
    t["build --layout unknown"] = ["build", "--out", "{out}/m", "--layout", "onnx"]
    t["an unknown command"] = ["fly"]
    t["eval run --samples not a number"] = ["eval", "run", "--model", m, "--bench", "math500", "--data", math,
                                            "--samples", "many"]
    # eval score: the data and numbers beside good responses
    good = str(c["responses"])
    for bad in ("missing", "empty", "torn last line", "missing fields"):
        t[f"eval score --data {bad}"] = ["eval", "score", "--responses", good, "--bench", "math500",
                                         "--data", str(c[bad]), "--out", "{out}/run"]
    t["eval score with the wrong benchmark's file"] = ["eval", "score", "--responses", good, "--bench", "math500",
                                                       "--data", gpqa, "--out", "{out}/run"]
    for flag, v in (("--limit", "0"), ("--verify-timeout", "-1")):
        t[f"eval score {flag} {v}"] = ["eval", "score", "--responses", good, "--bench", "math500", "--data", math,
                                       "--out", "{out}/run", flag, v]
    t["eval score --out a file"] = ["eval", "score", "--responses", good, "--bench", "math500", "--data", math,
                                    "--out", str(c["a file"])]
    # distill: more settings and limits
    for kv in ("max_new_tokens=0", "top_p=2", "chunk=0", "batch_size=0", "concurrency=0", "penalty=sometimes",
               "revise=judge", "fixed_penalty=-1", "timeout=0", "beta=-1"):
        t[f"distill {kv}"] = ["distill", "--data", rows, "--teacher", m, "--out", "{out}/d", kv]
    for v in ("0", "-1"):
        t[f"distill --limit {v}"] = ["distill", "--data", rows, "--teacher", m, "--out", "{out}/d", "--limit", v]
    t["distill --judge missing"] = ["distill", "--data", rows, "--teacher", m, "--judge", str(c["missing"]),
                                    "--out", "{out}/d"]
    # R1V2's settings and the reward model's command
    for kv in ("mpo.samples_per_prompt=1", "mpo.beta=-1", "mpo.threshold=nan", "rm.pooling=max",
               "grpo.hallucination_action=warn", "grpo.hallucination_ceiling=2", "mpo.rounds=0", "rm.optim.lr=0",
               "mpo.dpo_weight=0 mpo.bco_weight=0 mpo.nll_weight=0"):
        t[f"recipe run recipes/r1v2-tiny.yaml {kv}"] = ["recipe", "run", "recipes/r1v2-tiny.yaml", *kv.split(),
                                                        "out={out}/run"]
    t["train mpo with no reward model and no rm stage"] = ["train", "mpo", "--config", "recipes/tiny.yaml",
                                                           "out={out}/run"]
    for bad in ("missing", "folder", "truncated shard"):
        t[f"rm score --model {bad}"] = ["rm", "score", "--model", str(c[bad]), "--data", str(c["pairs"]),
                                        "--out", "{out}/s.jsonl"]
    t["rm score --model a plain R1V model"] = ["rm", "score", "--model", m, "--data", str(c["pairs"]),
                                               "--out", "{out}/s.jsonl"]
    t["rm score --data rows that are not pairs"] = ["rm", "score", "--model", m, "--data", math]
    for bad in ("missing", "empty", "torn last line"):
        t[f"rm score --data {bad}"] = ["rm", "score", "--model", m, "--data", str(c[bad])]
    t["rm serve --model a plain R1V model"] = ["rm", "serve", "--model", m, "--port", "0"]
    # serve: the other limits
    for flags in (["--max-tokens", "0"], ["--max-request-mb", "0"], ["--request-timeout", "0"],
                  ["--remote-image-timeout", "-1"], ["--port", "-1"], ["--max-prompt-tokens", "0"],
                  ["--max-images", "0"]):
        t[f"serve {' '.join(flags)}"] = ["serve", "--model", m, *flags]
    return t


def _bounded(fn, argv, seconds: int):
    """fn(argv), failing the try if it runs `seconds`: a bad input must be refused, not worked on."""
    import signal

    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s: the bad input was not refused before work began")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return fn(argv)
    except SystemExit as e:  # argparse's own refusals (an unknown choice, a missing argument)
        return e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tries_of(corpus):
    return tries(corpus)


def test_the_corpus_is_large(tries_of):
    assert len(tries_of) >= 191  # the 191 tries, by category


@pytest.fixture(scope="module")
def before(corpus):
    yield _snapshot(corpus["dir"])
    import os

    if os.environ.get("R1V_SHOW_BAD_INPUTS"):  # each try beside what the user was told
        for name in sorted(MESSAGES):
            print(f"{name:60s} | {MESSAGES[name][12:]}")


class _AnyPath(dict):
    """Stands in for the corpus when the test names are collected: every entry is a path."""

    def __missing__(self, key):
        return {"math500": "/x", "gpqa": "/x"} if key == "data" else Path("/x")


NAMES = sorted(tries(_AnyPath()))


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_input_is_one_line_and_exit_2(name, corpus, tries_of, before, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("R1V_CACHE", str(tmp_path / "cache"))  # never the user's ~/.cache
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # recipes/tiny.yaml
    argv = [a.replace("{out}", str(tmp_path / "out")) for a in tries_of[name]]
    code = _bounded(main, argv, seconds=60)
    err = capsys.readouterr().err.strip()
    MESSAGES[name] = err.splitlines()[-1] if err else ""
    lines = [ln for ln in err.splitlines() if not _PROGRESS.search(ln)]  # a progress bar is not a message
    assert code == 2, f"{name}: exit {code}, stderr: {err[-800:]}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("r1v: error: "), f"{name}: {err[-800:]}"
    assert not list(corpus["dir"].rglob("*.partial")) and not list(tmp_path.rglob("*.partial"))
    assert _snapshot(corpus["dir"]) == before, f"{name} changed an input"
