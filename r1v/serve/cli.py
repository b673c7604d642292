"""`r1v serve`: serve an R1V checkpoint over an OpenAI-compatible API, with a chat page at `/`.

    r1v serve --model runs/tiny/grpo                       # http://127.0.0.1:8000/
    r1v serve --model ckpt --host 0.0.0.0 --api-key $KEY    # reachable from other machines
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from r1v.errors import R1VError

EXAMPLES = """examples:
  r1v serve --model runs/tiny/grpo
  r1v serve --model Skywork-R1V2-38B --engine vllm --max-images 4 --api-key "$KEY"

  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY or anything")
  r = client.chat.completions.create(model="final", messages=[{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
      {"type": "text", "text": "How many red shapes?"}]}],
      extra_body={"max_reasoning_tokens": 512})          # or {"chat_template_kwargs": {"enable_thinking": False}}
  r.choices[0].message.reasoning_content, r.choices[0].message.content

  r1v eval run --model http://127.0.0.1:8000/v1 --bench ...   # r1v's own tools are clients of it
"""


def add_parser(sub) -> None:
    from r1v.serve.config import fields

    p = sub.add_parser("serve", help="serve a model: OpenAI-compatible API and a chat page",
                       description="Serve an R1V checkpoint (official or transformers layout) on vLLM when it is "
                                   "installed and a GPU is there, else on transformers with requests batched. "
                                   "Reasoning comes apart from the answer (reasoning_content), thinking can be "
                                   "turned off or bounded per request, and a chat page is at /.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--model", required=True, help="checkpoint folder, official Skywork or transformers layout")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="weights dtype (auto: as stored)")
    p.add_argument("--template", default=None, choices=["r1v", "r1v3"], help="chat template (default: the model's)")
    p.add_argument("--max-tiles", type=int, default=None, help="most 448px tiles per image (default: model's, 12)")
    for f in fields():
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")  # the annotations are strings (PEP 563)
        if kind == "bool":
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[kind], default=None,
                           help=f.metadata["help"] + _default(f))
    p.set_defaults(func=cmd_serve)


def _default(f: dataclasses.Field) -> str:
    return "" if f.default is None or isinstance(f.default, bool) else f" (default {f.default})"


def config_from(a) -> ServeConfig:  # noqa: F821
    from r1v.serve.config import ServeConfig, fields

    given = {f.name: getattr(a, f.name) for f in fields()
             if getattr(a, f.name) is not None and getattr(a, f.name) is not False}  # 0 is a value
    given.setdefault("api_key", os.environ.get("R1V_API_KEY") or None)
    return ServeConfig(**given)


def cmd_serve(a) -> int:
    import asyncio
    import logging

    cfg = config_from(a)  # every setting checked before the model loads
    path = Path(a.model)
    if not path.exists():
        raise R1VError(f"--model {path}: no such folder")
    if a.max_tiles is not None and a.max_tiles < 1:
        raise R1VError(f"--max-tiles must be at least 1, got {a.max_tiles}")
    if not cfg.loopback and cfg.api_key is None:
        print(f"r1v serve: warning: listening on {cfg.host} with no API key; anyone who can reach this machine "
              f"can use the model (set --api-key or R1V_API_KEY)", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="r1v serve: %(message)s")
    from r1v.serve.app import build_app
    from r1v.serve.engines import load_engine

    engine = load_engine(str(path), cfg, device=a.device, dtype=a.dtype, max_tiles=a.max_tiles,
                         template=a.template)
    name = cfg.served_model_name or path.resolve().name
    app = build_app(engine, cfg, name)
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning"))

    async def announce():
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"r1v serve: {name} on {engine.name}; chat page http://{cfg.host}:{port}/ , "
              f"API http://{cfg.host}:{port}/v1 (Ctrl-C stops)", flush=True)

    async def main():
        task = asyncio.ensure_future(announce())
        await server.serve()
        task.cancel()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # uvicorn shut down gracefully, then re-raised the Ctrl-C: a normal stop
        print("r1v serve: stopped", file=sys.stderr)
    finally:
        engine.close()
    if not server.started:
        raise R1VError(f"could not listen on {cfg.host}:{cfg.port} (is the port taken? try --port 0)")
    return 0
