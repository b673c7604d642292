"""`r1v eval run|score|report|compare|leakage`: the evaluation commands (see `r1v eval --help`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import docstring

DEFAULT_CACHE = Path(os.environ.get("R1V_CACHE", Path.home() / ".cache" / "r1v")) / "judge.jsonl"

EPILOG = """examples:
  r1v eval examples --out runs/bench-examples      # made-up rows in every published format, to try things
  r1v eval run --model runs/demo/model --bench math500 --data MATH-500/test.jsonl --limit 50
  r1v eval run --model http://localhost:8000/v1 --bench mmmu --data MMMU/ --samples 4   # e.g. `vllm serve`
  r1v eval score --bench gpqa --data gpqa_diamond.csv --responses outputs.jsonl --out runs/eval/gpqa
  r1v eval report runs/eval/* --out runs/report
  r1v eval leakage --train distilled.jsonl --bench mathvista --data MathVista/
  r1v eval leakage --method loss --model runs/tiny/grpo --bench world --data visual-test.jsonl \
      --train-split visual-train.jsonl --reference reference.jsonl      # Skywork-13B's loss test
  r1v eval report runs/eval/* --table r1v3                       # R1V3's columns, published rows beside
  r1v eval compare --baseline runs/eval/a-s0 runs/eval/a-s1 --candidate runs/eval/b-s0 runs/eval/b-s1 --by family

--data is a local file or folder in the published format (nothing is downloaded):
  mmmu       MMMU/MMMU snapshot: one folder per subject, validation-*.parquet (images embedded)
  mathvista  AI4Math/MathVista testmini-*.parquet (decoded_image embedded)
  math500    HuggingFaceH4/MATH-500 test.jsonl
  aime24     HuggingFaceH4/aime_2024 (parquet or jsonl)
  gpqa       Idavidrein/gpqa gpqa_diamond.csv
  olympiadbench   Hothan/OlympiadBench <config>/ parquet (folder: OE_*_maths_en_*; image_1..5 embedded)
  mathvision      MathLLMs/MathVision data/ (folder: test-*.parquet; a testmini-*.parquet file for testmini)
  mathverse       AI4Math/MathVerse testmini.parquet (+ testmini_text_only.parquet); DIR::vision-only,...
                  picks versions
  mmmupro         MMMU/MMMU_Pro snapshot, or one config folder ("standard (10 options)/", "vision/")
  hallusionbench  tianyi-lab/HallusionBench HallusionBench.json + hallusion_bench/ figures, or
                  lmms-lab/HallusionBench data/*.parquet
  pope       RUCAIBox/POPE coco_pope_<split>.json + val2014/ images, or lmms-lab/POPE parquet
  world      a mini-world split (r1v world build): visual-test.jsonl, text-test.jsonl
  jsonl      your own JSON lines: {"id", "question", "answer", "image(s)", "choices"}

judging (--judge-url): --judge-mode extract|match, --judge-samples K, versioned prompts
(r1v/evaluate/judge_prompts/), a reply cache (--judge-cache); records keep the judge, the prompt
version and the raw replies. Reports mark judged scores with †.
"""


def add_parser(sub) -> None:
    from r1v.evaluate.tasks import names

    ev = sub.add_parser("eval", help="evaluate on the R1V papers' benchmarks (MMMU, MathVista, MathVision, "
                        "MathVerse, OlympiadBench, MMMU-Pro, HallusionBench, POPE, MATH-500, AIME, GPQA); "
                        "report; compare; leakage",
                        description="Evaluate models with the benchmarks' official scoring rules.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = ev.add_subparsers(dest="eval_command", metavar="ACTION")
    esub.required = True
    benches = names()

    def common(p):
        p.add_argument("--bench", required=True, choices=benches, help="benchmark")
        p.add_argument("--data", required=True, help="the benchmark's published file or folder")
        p.add_argument("--out", default=None, help="run directory (default runs/eval/<bench>-<model>)")
        p.add_argument("--name", default=None, help="the model's name in reports (default: from --model)")
        p.add_argument("--limit", type=int, default=None, help="only the first N items")
        p.add_argument("--no-think", action="store_true",
                       help="the model does not reason: score the whole output (default: only after </think>)")
        p.add_argument("--judge-url", default=None, help="OpenAI-compatible endpoint of an LLM judge (default: "
                       "rules only)")
        p.add_argument("--judge-model", default=None, help="model name at --judge-url (default: the only one)")
        p.add_argument("--judge-mode", default="extract", choices=["extract", "match"],
                       help="extract: the judge copies out the answer and the benchmark's rules compare it "
                            "(default); match: the judge compares the answer with the gold (R1V2's answer "
                            "matching)")
        p.add_argument("--judge-samples", type=int, default=1,
                       help="ask the judge K times and take the strict majority; agreement is reported (default 1)")
        p.add_argument("--judge-temperature", type=float, default=None,
                       help="the judge's temperature (default 0, or 0.6 with --judge-samples > 1)")
        p.add_argument("--judge-prompt", default=None,
                       help="your own judge prompt file (default: r1v/evaluate/judge_prompts/<mode>-v1.txt)")
        p.add_argument("--judge-concurrency", type=int, default=8,
                       help="outputs judged at once (default 8)")
        p.add_argument("--judge-cache", default=str(DEFAULT_CACHE),
                       help="the judge's reply cache, so a rerun asks nothing twice ('none': no cache; "
                            "default %(default)s)")
        p.add_argument("--verify-timeout", type=float, default=5.0, help="seconds per maths comparison (hard)")
        p.add_argument("--seed", type=int, default=0, help="GPQA option shuffle and sampling seed")
        p.add_argument("--overwrite", action="store_true", help="start again instead of resuming --out")

    p = esub.add_parser("run", help="generate and score (in-process or through an endpoint); resumes",
                        description="Generate answers (batched in-process, or through any OpenAI-compatible "
                                    "endpoint) and score them. Run it again to resume an interrupted run.")
    p.add_argument("--model", required=True, help="model directory (either layout) or endpoint URL (http://.../v1)")
    common(p)
    p.add_argument("--samples", type=int, default=1, help="samples per item; pass@1 is their mean (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=8192, help="default 8192")
    p.add_argument("--temperature", type=float, default=0.6, help="default 0.6, as the papers; 0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, help="default 0.95")
    p.add_argument("--repetition-penalty", type=float, default=None,
                   help="default: the model's own (in-process, the model card's 1.05; an endpoint, its server's); "
                        "1 = none, as the recipe scores its stages (`--temperature 0 --repetition-penalty 1` "
                        "gives a recipe run's held-out outputs)")
    p.add_argument("--batch-size", type=int, default=8, help="in-process batch (default 8)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight to an endpoint (default 16)")
    p.add_argument("--served-model", default=None, help="model name at the endpoint (default: the only one)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (in-process; default cuda if available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="weights dtype")
    p.add_argument("--device-map", default=None, help="'auto' to spread the model over all GPUs")
    p.add_argument("--max-tiles", type=int, default=None, help="most 448px tiles per image (default: model's)")
    p.set_defaults(func=cmd_run)

    p = esub.add_parser("score", help="score outputs produced elsewhere (JSONL of id + output)",
                        description='Score a JSONL of {"id": ..., "output": "raw model text"} lines with the '
                                    "benchmark's rules; repeated ids are further samples. The id is the "
                                    "benchmark's own: MMMU id, MathVista pid, MATH-500 unique_id, AIME id, "
                                    "GPQA Record ID (or row number).")
    p.add_argument("--responses", required=True, help="JSONL of {id, output}")
    p.add_argument("--model", default="responses", help="what produced the responses (for reports)")
    common(p)
    p.set_defaults(func=cmd_score)

    p = esub.add_parser("report", help="merge runs into the papers' tables (markdown) and a bar chart",
                        description="Merge run directories into a markdown table (rows: models; columns: "
                                    "benchmarks in the papers' order) and a bar chart. Judged scores are "
                                    "marked and the notes say by what.")
    p.add_argument("runs", nargs="+", help="run directories (or folders of them)")
    p.add_argument("--out", default="runs/report", help="where report.md and report.png go")
    p.add_argument("--table", default=None, choices=["r1v", "r1v2", "r1v3"],
                   help="one paper's table: its columns, and its published rows (marked) for reference "
                        "(default: every benchmark found, no published rows)")
    p.set_defaults(func=cmd_report)

    p = esub.add_parser("compare", help="is a change better? candidate minus baseline, item by item, with 95%% "
                        "intervals, over one pair of runs or several (seeds) pooled",
                        description=docstring("r1v.evaluate.compare"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    # "extend": `--baseline a --baseline b` is a, b (argparse's default would keep b alone, and pair it wrongly)
    p.add_argument("--baseline", nargs="+", action="extend", required=True, metavar="PATH",
                   help="the baseline's runs: `r1v eval run` folders, recipe run folders or scored JSONL files")
    p.add_argument("--candidate", nargs="+", action="extend", required=True, metavar="PATH",
                   help="the candidate's runs, as many as the baselines, in the same order (the i-th of each "
                        "are paired: the same seed, say)")
    p.add_argument("--by", default=None, metavar="GROUP",
                   help="also the accuracy gap per value of one of the items' groups (the world's family, "
                        "MMMU's subject, ...; as `r1v eval run` and the recipe's held-out outputs record them)")
    p.add_argument("--out", default=None, help="write compare.md, compare.json and compare.png here")
    p.set_defaults(func=cmd_compare)

    p = esub.add_parser("leakage", help="has a benchmark leaked into training data (n-grams) or a model (loss)?",
                        description=docstring("r1v.evaluate.leakage"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="ngram", choices=["ngram", "loss"],
                   help="ngram: questions found in a training file (default); loss: Skywork-13B's test on a model")
    p.add_argument("--bench", choices=benches, help="benchmark (its reader reads --data, and the loss "
                                                    "method's --train-split)")
    p.add_argument("--data", help="the benchmark's test split: its published file or folder")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    g = p.add_argument_group("--method ngram")
    g.add_argument("--train", help="training data: jsonl, parquet, csv or text")
    g.add_argument("--n", type=int, default=8, help="n-gram length in words (default 8)")
    g.add_argument("--threshold", type=float, default=0.5, help="flag at this share of n-grams found (default 0.5)")
    g = p.add_argument_group("--method loss")
    g.add_argument("--model", help="the model to test (a checkpoint folder, either layout)")
    g.add_argument("--train-split", help="the benchmark's train split, in the same format as --data")
    g.add_argument("--reference", help="the reference set: new items of the same kind (`make-reference`, or "
                                       "`r1v world reference` for the mini-world)")
    g.add_argument("--reference-bench", default=None, choices=benches,
                   help="the reader for --reference (default --bench; `make-reference` writes jsonl)")
    g.add_argument("--limit", type=int, default=None, help="at most N items of each set")
    g.add_argument("--rounds", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    g.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    g.add_argument("--device", default=None, help="cpu, cuda, ... (default cuda if available)")
    g.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="weights dtype")
    g.add_argument("--max-tiles", type=int, default=None, help="most 448px tiles per image (default: model's)")
    p.set_defaults(func=cmd_leakage)
    lsub = p.add_subparsers(dest="leakage_command", metavar="[make-reference]")
    q = lsub.add_parser("make-reference", help="rewrite a test split into new items of the same kind (an LLM)",
                        description="Ask an OpenAI-compatible model to rewrite each test item into a new item of the "
                                    "same kind (new numbers and wording, same topic, form and difficulty, its own "
                                    "answer and worked solution). Writes reference.jsonl and test.jsonl (the "
                                    "originals, in the same format) to --out, for `--method loss --bench jsonl`.")
    q.add_argument("--bench", required=True, choices=benches, help="benchmark")
    q.add_argument("--data", required=True, help="the benchmark's test split: its published file or folder")
    q.add_argument("--rewriter", required=True, help="OpenAI-compatible endpoint URL (http://.../v1)")
    q.add_argument("--rewriter-model", default=None, help="model name there (default: the only one served)")
    q.add_argument("--out", required=True, help="folder for reference.jsonl, test.jsonl and their images")
    q.add_argument("--limit", type=int, default=None, help="only the first N items")
    q.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    q.add_argument("--seed", type=int, default=0, help="the rewriter's sampling seed")
    q.set_defaults(func=cmd_make_reference)

    p = esub.add_parser("examples", help="write a few made-up rows in each benchmark's published format",
                        description="Write tiny example files in every benchmark's published format, to try "
                                    "the eval commands offline (they are not the benchmarks' questions).")
    p.add_argument("--out", default="runs/bench-examples", help="where to write them")
    p.set_defaults(func=cmd_examples)


# ---------------------------------------------------------------- commands
def _items(a):
    from r1v.evaluate.tasks import get_task

    task = get_task(a.bench)
    items = task.read(a.data, seed=a.seed)
    if a.limit is not None:
        if a.limit < 1:
            raise R1VError("--limit must be at least 1")
        items = items[:a.limit]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise R1VError(f"{a.data}: ids repeat; is this the {a.bench} data?")
    return task, items


def _scoring(a):
    from r1v.evaluate.verify import MathVerifier, default_workers

    if not (math.isfinite(a.verify_timeout) and a.verify_timeout > 0):
        raise R1VError("--verify-timeout must be a positive number of seconds")
    judge = None
    if a.judge_url:
        from r1v.evaluate.judge import Judge

        judge = Judge(a.judge_url, a.judge_model, mode=a.judge_mode, samples=a.judge_samples,
                      temperature=a.judge_temperature, prompt=a.judge_prompt, concurrency=a.judge_concurrency,
                      cache=None if a.judge_cache == "none" else a.judge_cache)
    elif a.judge_mode != "extract" or a.judge_samples != 1 or a.judge_prompt or a.judge_temperature is not None:
        raise R1VError("--judge-mode, --judge-samples, --judge-temperature and --judge-prompt need --judge-url")
    return MathVerifier(timeout=a.verify_timeout, workers=default_workers()), judge


def _judged(judge) -> dict:
    """The scoring settings a run records (and a resumed run must share)."""
    return {"extraction": f"judge:{judge.mode}" if judge else "rules", "judge": judge.settings() if judge else None}


def _judge_note(judge) -> None:
    if judge is not None:
        where = f" ({judge.cache.path})" if judge.cache is not None else ""
        print(f"judge: {judge.requests} request(s), {judge.cached} reply(ies) from the cache{where}")


def _settings(a, model: str, extra: dict) -> dict:
    return {"bench": a.bench, "model": model, "name": a.name, "data": str(Path(a.data).resolve()),
            "think": not a.no_think, "seed": a.seed, "limit": a.limit, **extra}


def _out(a, model: str) -> Path:
    if a.out:
        return Path(a.out)
    stem = a.name or Path(model.rstrip("/")).name or "model"
    return Path("runs/eval") / f"{a.bench}-{stem.replace(':', '_')}"


def cmd_run(a) -> int:
    from r1v.evaluate.endpoint import Endpoint, is_url
    from r1v.evaluate.generate import EndpointGenerator, LocalGenerator, Sampling
    from r1v.evaluate.run import RunDir, evaluate, print_summary

    if a.samples < 1 or a.max_new_tokens < 1 or a.batch_size < 1 or a.concurrency < 1:
        raise R1VError("--samples, --max-new-tokens, --batch-size and --concurrency must be at least 1")
    if not a.temperature >= 0 or not 0 < a.top_p <= 1:
        raise R1VError("--temperature must be >= 0 and --top-p in (0, 1]")
    if a.repetition_penalty is not None and not 0 < a.repetition_penalty <= 10:
        raise R1VError(f"--repetition-penalty must be in (0, 10] (1 = none), got {a.repetition_penalty}")
    if a.samples > 1 and a.temperature <= 0:
        print("note: --temperature 0 is greedy, so the samples will be identical", file=sys.stderr)
    task, items = _items(a)
    verifier, judge = _scoring(a)
    sampling = Sampling(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, seed=a.seed,
                        repetition_penalty=a.repetition_penalty)
    if is_url(a.model):
        generator = EndpointGenerator(Endpoint(a.model, a.served_model), a.concurrency)
        model, stem = f"{a.model}#{generator.name}", generator.name
    else:
        if not Path(a.model).exists():
            raise R1VError(f"model not found: {a.model}")
        model, stem = str(Path(a.model).resolve()), a.model
    settings = _settings(a, model, {
        "samples": a.samples, "sampling": sampling.settings(),
        "load": None if is_url(a.model) else {"dtype": a.dtype, "max_tiles": a.max_tiles}, **_judged(judge)})
    out = _out(a, stem)
    run = RunDir(out, settings, overwrite=a.overwrite)  # before loading: a clash is reported at once
    if not is_url(a.model):
        from r1v.chat import Chat
        from r1v.model.checkpoint import resolve_device

        device = resolve_device(a.device)
        chat = Chat.from_pretrained(a.model, dtype=a.dtype, device=device, device_map=a.device_map,
                                    max_tiles=a.max_tiles)
        generator = LocalGenerator(chat, a.batch_size)
    try:
        summary = evaluate(task, items, generator, sampling, run, samples=a.samples, think=not a.no_think,
                           verifier=verifier, judge=judge)
    except KeyboardInterrupt:
        verifier.close()
        if is_url(a.model):  # do not wait for the requests in flight: their records are not needed
            print(f"\ninterrupted; records so far are in {run.items_path}; the same command resumes",
                  file=sys.stderr, flush=True)
            os._exit(130)
        raise
    finally:
        verifier.close()
    print_summary(summary, out)
    _judge_note(judge)
    return 0


def cmd_score(a) -> int:
    from r1v.evaluate.run import RunDir, print_summary, read_responses, score_responses

    task, items = _items(a)
    outputs = read_responses(task, items, a.responses, limited=a.limit is not None)  # before --out is claimed
    verifier, judge = _scoring(a)
    settings = _settings(a, a.model, {"samples": None, "sampling": None,
                                      "responses": str(Path(a.responses).resolve()), **_judged(judge)})
    out = _out(a, a.model)
    run = RunDir(out, settings, overwrite=a.overwrite)
    try:
        summary = score_responses(task, items, outputs, run, think=not a.no_think, verifier=verifier,
                                  judge=judge)
    finally:
        verifier.close()
    print_summary(summary, out, resumable=False)
    _judge_note(judge)
    return 0


def cmd_report(a) -> int:
    from r1v.evaluate.report import report

    print(report(a.runs, a.out, a.table))
    print(f"written: {Path(a.out) / 'report.md'}, {Path(a.out) / 'report.png'}")
    return 0


def cmd_compare(a) -> int:
    from r1v.evaluate import compare

    if a.out and Path(a.out).exists() and not Path(a.out).is_dir():
        raise R1VError(f"--out {a.out} is a file; name a folder")
    result = compare.compare(a.baseline, a.candidate, by=a.by)
    print(compare.render(result), end="")
    if a.out:
        print("written: " + ", ".join(map(str, compare.write(result, Path(a.out)))))
    return 0


def cmd_examples(a) -> int:
    from r1v.evaluate.examples import write_examples

    for bench, path in write_examples(Path(a.out)).items():
        print(f"{bench:10s} --data {path}")
    return 0


def cmd_leakage(a) -> int:
    from r1v.evaluate import leakage
    from r1v.evaluate.tasks import get_task

    missing = [f for f, v in (("--bench", a.bench), ("--data", a.data)) if not v]
    need = {"ngram": (("--train", a.train),),
            "loss": (("--model", a.model), ("--train-split", a.train_split), ("--reference", a.reference))}
    missing += [f for f, v in need[a.method] if not v]
    if missing:
        raise R1VError(f"--method {a.method} needs {', '.join(missing)}; see `r1v eval leakage --help`")
    if a.out and Path(a.out).is_dir():
        raise R1VError(f"--out {a.out} is a directory; name a file")
    if a.method == "loss":
        return _leakage_loss(a)
    items = get_task(a.bench).read(a.data)
    texts = leakage.training_texts(a.train)
    flagged = leakage.check(items, texts, n=a.n, threshold=a.threshold)
    print(f"{len(flagged)} of {len(items)} {a.bench} items overlap {a.train} "
          f"(>= {a.threshold:.0%} of their {a.n}-grams; {len(texts)} training examples)")
    for f in flagged[:20]:
        print(f"  {f['id']}: {f['overlap']:.0%} (training line {f['train_line']}): {f['question'][:80]!r}")
    if len(flagged) > 20:
        print(f"  ... {len(flagged) - 20} more")
    if a.out:
        leakage.write(flagged, a.out, {"bench": a.bench, "data": a.data, "train": a.train, "n": a.n,
                                       "threshold": a.threshold, "items": len(items)})
        print(f"written: {a.out}")
    return 0


def _leakage_loss(a) -> int:
    from r1v.evaluate import leakage
    from r1v.evaluate.tasks import get_task

    if a.limit is not None and a.limit < 1 or a.rounds < 100:
        raise R1VError("--limit must be at least 1 and --rounds at least 100")
    if not Path(a.model).exists():
        raise R1VError(f"model not found: {a.model}")
    task, ref_task = get_task(a.bench), get_task(a.reference_bench or a.bench)
    sets = {}
    for name, flag, reader, path in (("train", "--train-split", task, a.train_split), ("test", "--data", task, a.data),
                                     ("reference", "--reference", ref_task, a.reference)):
        try:
            sets[name] = reader.read(path)
        except R1VError as e:
            raise R1VError(f"{flag}: {e}") from None
    for name, items in sets.items():  # every file is read (and checked) before the model loads
        if not items:
            raise R1VError(f"the {name} set is empty")
        sets[name] = items[:a.limit]
    from r1v.chat import Chat
    from r1v.model.checkpoint import resolve_device

    chat = Chat.from_pretrained(a.model, dtype=a.dtype, device=resolve_device(a.device), max_tiles=a.max_tiles)
    losses = {name: leakage.set_losses(chat, ref_task if name == "reference" else task, items, desc=name)
              for name, items in sets.items()}
    result = leakage.loss_test(losses["train"], losses["test"], losses["reference"], rounds=a.rounds, seed=a.seed)
    print(leakage.describe(result))
    if a.out:
        from r1v.io import write_json

        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(a.out, {"method": "loss", "model": str(Path(a.model).resolve()), "bench": a.bench,
                           "data": a.data, "train_split": a.train_split, "reference": a.reference, **result,
                           "per_item": {k: [[round(s, 4), n] for s, n in v] for k, v in losses.items()}})
        print(f"written: {a.out}")
    return 0


def cmd_make_reference(a) -> int:
    from r1v.evaluate.leakage import make_reference
    from r1v.evaluate.tasks import get_task

    if a.limit is not None and a.limit < 1 or a.concurrency < 1:
        raise R1VError("--limit and --concurrency must be at least 1")
    task = get_task(a.bench)
    items = task.read(a.data)[:a.limit]
    summary = make_reference(task, items, a.rewriter, Path(a.out), model=a.rewriter_model,
                             concurrency=a.concurrency, seed=a.seed)
    if not summary["written"]:
        raise R1VError(f"no item was rewritten ({summary['failed']} failed); the replies and reasons are in "
                       f"{Path(a.out) / 'failed.jsonl'}")
    print(f"{summary['written']} of {len(items)} items rewritten ({summary['failed']} failed: see "
          f"{Path(a.out) / 'failed.jsonl'}); for the loss test: --bench jsonl --data {Path(a.out) / 'test.jsonl'} "
          f"--reference {Path(a.out) / 'reference.jsonl'}")
    return 0
