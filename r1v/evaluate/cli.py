"""`r1v eval run|score|report|leakage`: the evaluation commands (see `r1v eval --help`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from r1v.errors import R1VError

EPILOG = """examples:
  r1v eval examples --out runs/bench-examples      # made-up rows in every published format, to try things
  r1v eval run --model runs/demo/model --bench math500 --data MATH-500/test.jsonl --limit 50
  r1v eval run --model http://localhost:8000/v1 --bench mmmu --data MMMU/ --samples 4   # e.g. `vllm serve`
  r1v eval score --bench gpqa --data gpqa_diamond.csv --responses outputs.jsonl --out runs/eval/gpqa
  r1v eval report runs/eval/* --out runs/report
  r1v eval leakage --train distilled.jsonl --bench mathvista --data MathVista/

--data is a local file or folder in the published format (nothing is downloaded):
  mmmu       MMMU/MMMU snapshot: one folder per subject, validation-*.parquet (images embedded)
  mathvista  AI4Math/MathVista testmini-*.parquet (decoded_image embedded)
  math500    HuggingFaceH4/MATH-500 test.jsonl
  aime24     HuggingFaceH4/aime_2024 (parquet or jsonl)
  gpqa       Idavidrein/gpqa gpqa_diamond.csv
"""


def add_parser(sub) -> None:
    from r1v.evaluate.tasks import names

    ev = sub.add_parser("eval", help="evaluate on MMMU, MathVista, MATH-500, AIME 2024, GPQA; report; leakage",
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
        p.add_argument("--judge-url", default=None, help="OpenAI-compatible endpoint of an LLM that extracts "
                       "answers (default: rules only)")
        p.add_argument("--judge-model", default=None, help="model name at --judge-url (default: the only one)")
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

    p = esub.add_parser("report", help="merge runs into the R1V README table (markdown) and a bar chart",
                        description="Merge run directories into a markdown table (rows: models; columns: "
                                    "MATH-500, AIME 2024, GPQA, MathVista(mini), MMMU(Val)) and a bar chart.")
    p.add_argument("runs", nargs="+", help="run directories (or folders of them)")
    p.add_argument("--out", default="runs/report", help="where report.md and report.png go")
    p.set_defaults(func=cmd_report)

    p = esub.add_parser("leakage", help="find benchmark questions that appear in training data",
                        description="Flag benchmark items whose question overlaps a training file "
                                    "(normalised word n-grams).")
    p.add_argument("--train", required=True, help="training data: jsonl, parquet, csv or text")
    p.add_argument("--bench", required=True, choices=benches, help="benchmark")
    p.add_argument("--data", required=True, help="the benchmark's published file or folder")
    p.add_argument("--n", type=int, default=8, help="n-gram length in words (default 8)")
    p.add_argument("--threshold", type=float, default=0.5, help="flag at this share of n-grams found (default 0.5)")
    p.add_argument("--out", default=None, help="write the flagged items as JSON here")
    p.set_defaults(func=cmd_leakage)

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

        judge = Judge(a.judge_url, a.judge_model)
    return MathVerifier(timeout=a.verify_timeout, workers=default_workers()), judge


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
    if a.samples > 1 and a.temperature <= 0:
        print("note: --temperature 0 is greedy, so the samples will be identical", file=sys.stderr)
    task, items = _items(a)
    verifier, judge = _scoring(a)
    sampling = Sampling(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, seed=a.seed)
    if is_url(a.model):
        generator = EndpointGenerator(Endpoint(a.model, a.served_model), a.concurrency)
        model, stem = f"{a.model}#{generator.name}", generator.name
    else:
        if not Path(a.model).exists():
            raise R1VError(f"model not found: {a.model}")
        model, stem = str(Path(a.model).resolve()), a.model
    settings = _settings(a, model, {
        "samples": a.samples, "sampling": sampling.__dict__,
        "load": None if is_url(a.model) else {"dtype": a.dtype, "max_tiles": a.max_tiles},
        "extraction": f"judge:{judge.name}" if judge else "rules"})
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
    return 0


def cmd_score(a) -> int:
    from r1v.evaluate.run import RunDir, print_summary, score_responses

    task, items = _items(a)
    verifier, judge = _scoring(a)
    settings = _settings(a, a.model, {"samples": None, "sampling": None,
                                      "responses": str(Path(a.responses).resolve()),
                                      "extraction": f"judge:{judge.name}" if judge else "rules"})
    out = _out(a, a.model)
    run = RunDir(out, settings, overwrite=a.overwrite)
    try:
        summary = score_responses(task, items, a.responses, run, think=not a.no_think, verifier=verifier,
                                  judge=judge)
    finally:
        verifier.close()
    print_summary(summary, out, resumable=False)
    return 0


def cmd_report(a) -> int:
    from r1v.evaluate.report import report

    print(report(a.runs, a.out))
    print(f"written: {Path(a.out) / 'report.md'}, {Path(a.out) / 'report.png'}")
    return 0


def cmd_examples(a) -> int:
    from r1v.evaluate.examples import write_examples

    for bench, path in write_examples(Path(a.out)).items():
        print(f"{bench:10s} --data {path}")
    return 0


def cmd_leakage(a) -> int:
    from r1v.evaluate import leakage
    from r1v.evaluate.tasks import get_task

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
