"""`r1v rm score` and `r1v rm serve`: a reward model `r1v train rm` wrote, used outside the recipe.

    r1v rm score --model runs/r1v2-tiny/rm --data pairs.jsonl       # pair accuracy, every score written
    r1v rm score --model http://host:8100 --data rows.jsonl         # a served one; rows with `response`
    r1v rm serve --model runs/r1v2-tiny/rm --port 8100              # POST /score (r1v/train/rm.py's protocol)

A file of pairs ({prompt, images, chosen, rejected}) gets its pair accuracy (by `kind`, when the
rows have one); a file of single responses ({prompt, images, response}) gets a score each. Scores
go to `--out` (default: beside the data, `<name>.scores.jsonl`).

(No `from __future__ import annotations` here: FastAPI reads the endpoint's `Request` annotation,
imported inside `make_app`, at definition time.)
"""


import json
from pathlib import Path

from r1v.errors import R1VError


def add_parser(sub) -> None:
    p = sub.add_parser("rm", help="score with a reward model, or serve one over HTTP",
                       description="Use a reward model that `r1v train rm` wrote: score a JSONL file of pairs or "
                                   "responses, or serve it for MPO (mpo.reward_model=http://...) and anything else.")
    s = p.add_subparsers(dest="rm_command", metavar="ACTION")
    s.required = True
    q = s.add_parser("score", help="score pairs (pair accuracy) or responses in a JSONL file",
                     description="Score every row of a JSONL file: pairs {id, prompt, images, chosen, rejected} "
                                 "(pair accuracy, by `kind`) or responses {id, prompt, images, response}.")
    q.add_argument("--model", required=True, help="a reward model folder, or the URL of one `r1v rm serve` serves")
    q.add_argument("--data", required=True, help="JSONL of pairs or of responses; image paths relative to the file")
    q.add_argument("--out", help="where the scores go (default: <data>.scores.jsonl beside it)")
    q.add_argument("--batch-size", type=int, default=16, help="rows per scoring call (default 16)")
    q.add_argument("--template", default="r1v", choices=("r1v", "r1v3"), help="chat template (default r1v)")
    q.add_argument("--max-tiles", type=int, default=None, help="tiles per image (default: the model's saved setting)")
    q.set_defaults(func=cmd_score)
    v = s.add_parser("serve", help="serve a reward model: POST /score",
                     description="Serve a reward model over HTTP: POST /score with {prompt, images: [data URLs], "
                                 "responses: [...]} -> {scores: [...]}. Loopback only unless --host says otherwise.")
    v.add_argument("--model", required=True, help="a reward model folder (`r1v train rm` writes one)")
    v.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    v.add_argument("--template", default="r1v", choices=("r1v", "r1v3"), help="chat template (default r1v)")
    v.add_argument("--api-key", default=None, help="require this bearer token (default: $R1V_API_KEY, else none)")
    v.set_defaults(func=cmd_serve)


def open_scorer(model: str, *, template: str = "r1v", max_tiles: int | None = None):
    from r1v.train.rm import LocalReward, RemoteReward

    if model.startswith(("http://", "https://")):
        return RemoteReward(model)
    from r1v.model.reward import load_reward

    rm, tok, meta = load_reward(model)
    return LocalReward(rm, tok, template=template, max_tiles=max_tiles or meta["tiles"]["max_tiles"])


def cmd_score(a) -> int:
    from tqdm.auto import tqdm

    from r1v.io import write_jsonl
    from r1v.train.data import Rows
    from r1v.train.rm import pair_accuracy, pair_item

    if a.batch_size < 1:
        raise R1VError(f"--batch-size {a.batch_size}: must be at least 1")
    rows = Rows(a.data, need=("id", "prompt"))
    first = rows[0]
    pairs = "chosen" in first and "rejected" in first
    if not pairs and "response" not in first:
        raise R1VError(f"{a.data}: rows need `chosen` and `rejected` (pairs) or `response`")
    keys = ("chosen", "rejected") if pairs else ("response",)
    scorer = open_scorer(a.model, template=a.template, max_tiles=a.max_tiles)
    out = []
    for start in tqdm(range(0, len(rows), a.batch_size), desc="rm score", leave=False):
        batch = [(i, rows[i]) for i in range(start, min(len(rows), start + a.batch_size))]
        for i, r in batch:
            missing = [k for k in keys if not isinstance(r.get(k), str)]
            if missing:
                raise R1VError(f"{a.data}: row {r.get('id')} has no {missing[0]!r}")
        items = [pair_item(r, rows.root(i)) for i, r in batch]
        scores = scorer.score([it for it in items for _ in keys], [r["prompt"] for _, r in batch for _ in keys],
                              [r[k] for _, r in batch for k in keys])
        for j, (_, r) in enumerate(batch):
            got = scores[j * len(keys) : (j + 1) * len(keys)]
            out.append({"id": r["id"], "kind": str(r.get("kind", "all")), **dict(zip(keys, got))})
    path = Path(a.out) if a.out else Path(a.data).with_suffix(".scores.jsonl")
    write_jsonl(path, out)
    if pairs:
        acc = pair_accuracy({k: [o[k] for o in out] for k in ("chosen", "rejected", "kind")})
        print(f"pair accuracy {100 * acc['accuracy']:.1f}% (n={acc['n']}, mean margin {acc['margin']:.3f})")
        for k, v in acc["by_kind"].items():
            if len(acc["by_kind"]) > 1:
                print(f"  {k}: {100 * v['accuracy']:.1f}% (n={v['n']})")
    print(f"scores: {path}")
    return 0


def cmd_serve(a) -> int:
    import os

    import uvicorn

    app = make_app(open_scorer(a.model, template=a.template), api_key=a.api_key or os.environ.get("R1V_API_KEY"))
    print(f"reward model {a.model}: POST http://{a.host}:{a.port}/score")
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


def make_app(scorer, *, api_key: str | None = None):
    """The scoring endpoint: POST /score {prompt, images: [data URLs], responses} -> {scores}."""
    import base64

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from r1v.evaluate.tasks import Item

    app = FastAPI(title="r1v reward model")

    @app.post("/score")
    async def score(request: Request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": "a bearer token is required (--api-key)"}, status_code=401)
        try:
            body = await request.json()
            prompt, responses = body["prompt"], body["responses"]
            images = [base64.b64decode(u.split(",", 1)[1]) for u in body.get("images") or []]
            if not isinstance(prompt, str) or not isinstance(responses, list) or \
                    not all(isinstance(r, str) for r in responses):
                raise TypeError
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, json.JSONDecodeError):
            return JSONResponse({"error": "send {prompt: str, images: [data URLs], responses: [str]}"},
                                status_code=400)
        item = Item(id="request", question=prompt, answer=None, images=images)
        # one request at a time: the model runs on the server's thread (as r1v serve's worker does)
        return {"scores": scorer.score([item] * len(responses), [prompt] * len(responses), responses)}

    return app
