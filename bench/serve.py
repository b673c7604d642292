"""`r1v serve` under load: throughput at concurrency 8 beside sequential requests, latency, overload.

    python bench/serve.py [--rounds 5] [--requests 16] [--new-tokens 32] [--overload 64]

One server process (`r1v serve --engine hf`, the CPU engine) serves an R1V at the mini-world's
default sizes (ViT 96 wide, Qwen2 LM 192 wide, 4 layers; random weights: speed does not depend on
them), saved by the project's builders. Every request carries one 640x480 picture (3 tiles) and
asks for exactly `--new-tokens` greedy tokens.

* Throughput: rounds interleave sequential (one request at a time) and concurrent (8 clients)
  runs of the same requests, ABAB...; the ratio of generated tokens/s per round, its median and
  spread. Target: >= 3x.
* Latency: p50 and p99 of every request's wall time in each mode.
* Overload: `--overload` requests sent at once (loopback, no retries, 60 s bound) to a server
  admitting 16; every one must come back, as 200 or 429 (with Retry-After), nothing else.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(out: Path) -> None:
    from r1v.model.builder import build_r1v, tiny_language_config, tiny_vision_config
    from r1v.model.checkpoint import save_model
    from r1v.model.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    model = build_r1v(vision=tiny_vision_config(hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                                                intermediate_size=384),
                      language=tiny_language_config(len(tok), hidden_size=192, num_hidden_layers=4,
                                                    intermediate_size=512, num_attention_heads=4),
                      tokenizer=tok, seed=0)
    save_model(model.eval(), tok, out, max_tiles=12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_queue: int) -> subprocess.Popen:
    r1v = Path(sys.executable).parent / "r1v"
    proc = subprocess.Popen([str(r1v), "serve", "--model", str(model), "--engine", "hf", "--port", str(port),
                             "--max-queue", str(max_queue), "--max-batch", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 120 s")


def picture_url(size: int) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=16, help="requests per run")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--picture", type=int, default=448, help="side of the square picture (448: 1 tile, 896: 5)")
    ap.add_argument("--overload", type=int, default=64, help="requests sent at once in the overload run")
    a = ap.parse_args()
    import openai

    tmp = Path(tempfile.mkdtemp(prefix="r1v-bench-serve-"))
    build_model(tmp / "model")
    port = free_port()
    server = start_server(tmp / "model", port, max_queue=16)
    url = picture_url(a.picture)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)

        def one(k: int) -> tuple[float, int]:
            t = time.perf_counter()
            r = client.chat.completions.create(
                model="model", temperature=0, max_tokens=a.new_tokens,
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                       {"type": "text", "text": f"Question {k}: what is shown?"}]}])
            return time.perf_counter() - t, r.usage.completion_tokens

        one(0)  # warm-up
        ratios, lat = [], {"sequential": [], "concurrent": []}
        pool = ThreadPoolExecutor(a.concurrency)
        print(f"{a.requests} requests a run, one {a.picture}px picture + {a.new_tokens} greedy tokens each; "
              f"concurrency {a.concurrency}; {os.cpu_count()} CPUs")
        for rnd in range(a.rounds):
            rates = {}
            for mode in ("sequential", "concurrent"):
                t = time.perf_counter()
                if mode == "sequential":
                    results = [one(k) for k in range(a.requests)]
                else:
                    results = list(pool.map(one, range(a.requests)))
                wall = time.perf_counter() - t
                rates[mode] = sum(n for _, n in results) / wall
                lat[mode] += [s for s, _ in results]
            ratios.append(rates["concurrent"] / rates["sequential"])
            print(f"round {rnd + 1}: sequential {rates['sequential']:6.1f} tok/s, concurrent "
                  f"{rates['concurrent']:6.1f} tok/s, ratio {ratios[-1]:.2f}x")
        print(f"throughput at concurrency {a.concurrency} / sequential: median {statistics.median(ratios):.2f}x "
              f"(spread {min(ratios):.2f}-{max(ratios):.2f}x over {a.rounds} rounds; target >= 3x)")
        for mode, xs in lat.items():
            xs = sorted(xs)
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            print(f"latency {mode:10s}: p50 {statistics.median(xs):.2f} s, p99 {p99:.2f} s ({len(xs)} requests)")

        # Overload: more requests at once than the server admits; each must get 200 or 429.
        def status(k: int) -> str:
            try:
                one(k)
                return "200"
            except openai.RateLimitError as e:
                return "429" + ("" if e.response.headers.get("retry-after") else " without Retry-After")
            except openai.APIStatusError as e:
                return str(e.status_code)
            except openai.APIConnectionError:
                return "connection error"

        burst = ThreadPoolExecutor(a.overload)
        t = time.perf_counter()
        futures = [burst.submit(status, k) for k in range(a.overload)]
        answers = [f.result(timeout=max(1.0, 60 - (time.perf_counter() - t))) for f in futures]
        counts = {s: answers.count(s) for s in sorted(set(answers))}
        lost = a.overload - len(answers)
        ok = set(counts) <= {"200", "429"} and not lost
        print(f"overload: {a.overload} requests at once to a server admitting 16, in {time.perf_counter() - t:.1f} s: "
              f"{counts}, {lost} lost -> {'only 200 and 429' if ok else 'FAILED'}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
