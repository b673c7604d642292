"""The `r1v` command line. Every subcommand has --help.

    r1v demo                                   # a plumbing check in seconds (random weights; make demo runs the recipe)
    r1v build --preset tiny --out DIR [--layout skywork]
    r1v convert SRC DST --to hf|skywork [--dtype bf16]
    r1v chat --model DIR --image a.png [--image b.png] "question"   # no question: interactive
    r1v eval run|score|report|leakage ...     # benchmarks with their official scoring rules
    r1v world build|data|show|compare|probe|reference|leak|ship   # the mini-world: offline tasks, backbones, files
    r1v recipe run recipes/tiny.yaml           # the R1V training recipe end to end (align ... GRPO, report)
    r1v train align|transfer|sft|rm|mpo|grpo|grpo-filter|grpo-probe --config RECIPE   # one stage
    r1v distill --data ROWS --teacher MODEL_OR_URL [--judge MODEL_OR_URL] --out OUT   # AL-CoTD data
    r1v serve --model DIR [--api-key KEY]      # OpenAI-compatible API and a chat page at http://127.0.0.1:8000/

User mistakes end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from r1v.errors import R1VError



class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (exit 2), as every other mistake is; every
    subcommand's parser is one of these (argparse makes subparsers of their parent's class)."""

    def error(self, message: str):
        where = "" if self.prog == "r1v" else f"{self.prog}: "
        print(f"r1v: error: {where}{message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def _quiet_transformers() -> None:
    # Environment only: transformers reads these when (and if) a command imports it, so
    # commands that never touch a model (eval score, report) do not pay for importing it.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here ever downloads
    # transformers 5.2x swaps layers for the Hub's compiled kernels (liger, rotary) when a model is loaded or
    # switched to training on a GPU; offline that fails (seen on an H200: "Version 2 of
    # 'kernels-community/rotary' is not available in the local cache"), online it downloads code that changes
    # the numerics. r1v runs transformers' own layers unless a user sets USE_HUB_KERNELS=1.
    os.environ.setdefault("USE_HUB_KERNELS", "0")


# ------------------------------------------------------------------ chat
def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory, official Skywork or transformers layout")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="weights dtype (auto: as stored)")
    p.add_argument("--device-map", default=None, help="'auto' to spread the model over all GPUs (accelerate)")
    p.add_argument("--load-in", default=None, choices=["8bit", "4bit"], help="quantize with bitsandbytes")
    p.add_argument("--template", default=None, choices=["r1v", "r1v3"], help="chat template (default: the model's)")
    p.add_argument("--max-tiles", type=int, default=None, help="most 448px tiles per image (default: model's, 12)")
    p.add_argument("--no-thumbnail", action="store_true", help="do not add the whole-image thumbnail tile")
    p.add_argument("--allow-pickle", action="store_true", help="allow .bin (pickle) weights you trust")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    from r1v.generation import GenerationOptions

    d = GenerationOptions()
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=f"default {d.max_new_tokens}")
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy (default 0.6)")
    p.add_argument("--top-p", type=float, default=d.top_p, help="default 0.95")
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty, help="default 1.05")
    p.add_argument("--seed", type=int, default=None, help="seed for repeatable sampling")


def _gen_options(a) -> dict:
    return dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                repetition_penalty=a.repetition_penalty, seed=a.seed)


def cmd_chat(a) -> int:
    from r1v.chat import Chat
    from r1v.generation import GenerationOptions
    from r1v.model.checkpoint import resolve_device

    GenerationOptions(**_gen_options(a))  # sampling settings and images checked before the model loads
    from r1v.model.processor import load_image

    for image in a.image:
        load_image(image)
    if a.max_tiles is not None and a.max_tiles < 1:
        raise R1VError(f"--max-tiles must be at least 1, got {a.max_tiles}")
    device = resolve_device(a.device)
    chat = Chat.from_pretrained(a.model, dtype=a.dtype, device=device, device_map=a.device_map,
                                quantization=a.load_in, template=a.template, max_tiles=a.max_tiles,
                                use_thumbnail=False if a.no_thumbnail else None, allow_pickle=a.allow_pickle)
    from r1v.chat import TerminalPrinter

    printer = TerminalPrinter(show_reasoning=not a.hide_reasoning)
    opts = _gen_options(a)
    if a.question is not None:
        reply = chat.ask(a.question, images=a.image, stream=printer, **opts)
        printer.finish(reply)
        return 0
    return _interactive(chat, a.image, printer, opts)


CHAT_COMMANDS = """commands:
  /image PATH   attach an image to the next question
  /reset        start a new conversation
  /help         this list
  /quit         leave (or Ctrl-D); Ctrl-C stops an answer"""


def _interactive(chat, images, printer, opts) -> int:
    conv = chat.conversation()
    pending = list(images)
    print("r1v chat: type a question (/help lists the commands).")
    while True:
        try:
            line = input(">>> ").strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # at the prompt, Ctrl-C leaves; during an answer it stops the answer
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/help":
            print(CHAT_COMMANDS)
            continue
        if line == "/reset":
            conv, pending = chat.conversation(), []
            print("(new conversation)")
            continue
        if line.startswith("/image"):
            path = line[len("/image"):].strip()
            try:
                from r1v.model.processor import load_image

                load_image(path)
                pending.append(path)
                print(f"(attached {path}; {len(pending)} image(s) for the next question)")
            except R1VError as e:
                print(f"error: {e}")
            continue
        if line.startswith("/"):
            print(f"unknown command {line.split()[0]}; /help lists the commands (a question cannot start with /)")
            continue
        try:
            reply = conv.ask(line, images=pending, stream=printer, **opts)
            printer.finish(reply)
            pending = []
        except KeyboardInterrupt:
            printer.interrupted()
        except R1VError as e:
            print(f"error: {e}")


# ------------------------------------------------------------------ convert / build / demo
def cmd_convert(a) -> int:
    from r1v.model.checkpoint import convert

    out = convert(a.src, a.dst, to=a.to, dtype=a.dtype, max_shard_size=a.max_shard_size,
                  allow_pickle=a.allow_pickle, overwrite=a.overwrite)
    print(f"wrote {out} ({a.to} layout)")
    return 0


def cmd_build(a) -> int:
    from r1v.model.builder import preset
    from r1v.model.checkpoint import save_model

    model, tok = preset(a.preset, template=a.template, ps_version=a.ps_version, seed=a.seed)
    out = save_model(model, tok, a.out, layout=a.layout, overwrite=a.overwrite)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {a.preset} preset, {n:,} parameters, {a.layout} layout")
    return 0


def cmd_demo(a) -> int:
    from r1v.demo import run

    run(a.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="r1v", description="Build, convert and chat with Skywork-R1V-style "
                                 "multimodal reasoning models.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n")[1])
    from r1v import __version__

    ap.add_argument("--version", action="version", version=f"r1v {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("chat", help="ask a model about images (streaming; interactive without a question)",
                       description="Ask an R1V model about zero or more images. The reasoning streams dimmed, "
                                   "then the answer. Without a question: an interactive multi-turn session.")
    _add_load_args(p)
    p.add_argument("--image", action="append", default=[], help="an image file; repeat for several")
    p.add_argument("--hide-reasoning", action="store_true", help="print only the answer")
    _add_generation_args(p)
    p.add_argument("question", nargs="?", help="the question; `<image>` marks where each image goes")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("convert", help="convert between the official Skywork layout and transformers'",
                       description="Convert a checkpoint, shard by shard (never two copies in memory). "
                                   "--to hf: loads with AutoModelForImageTextToText / AutoProcessor. "
                                   "--to skywork: the official layout, servable with `vllm serve`.")
    p.add_argument("src", help="source model directory (either layout)")
    p.add_argument("dst", help="destination directory")
    p.add_argument("--to", required=True, choices=["hf", "skywork"], help="target layout")
    p.add_argument("--dtype", default="keep", choices=["keep", "bf16", "fp16", "fp32"], help="cast weights")
    p.add_argument("--max-shard-size", default="5GB", help="largest output shard (default 5GB)")
    p.add_argument("--allow-pickle", action="store_true", help="read .bin (pickle) weights you trust")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("build", help="build a model from a preset and save it",
                       description="Build an R1V model (random weights) from a preset and write it.")
    p.add_argument("--preset", default="tiny", choices=["tiny"], help="model preset")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--layout", default="hf", choices=["hf", "skywork"], help="checkpoint layout")
    p.add_argument("--template", default="r1v", choices=["r1v", "r1v3"], help="chat template")
    p.add_argument("--ps-version", default="v2", choices=["v1", "v2"], help="pixel-shuffle version")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("demo", help="a plumbing check in seconds: a random tiny R1V saved, reloaded, converted "
                                    "and asked about an image (no training; `make demo` runs the recipe)",
                       description="Build a tiny R1V with random weights, write it in the official layout, load it "
                                   "back, convert it both ways and ask it about a generated image. No training: "
                                   "`make demo` runs the R1V recipe on the mini-world.")
    p.add_argument("--out", default="runs/demo", help="where to write the model and image")
    p.set_defaults(func=cmd_demo)

    from r1v.evaluate.cli import add_parser as add_eval

    add_eval(sub)
    from r1v.world.cli import add_parser as add_world

    add_world(sub)
    from r1v.train.cli import add_parsers as add_train

    add_train(sub)
    from r1v.train.rm_cli import add_parser as add_rm

    add_rm(sub)
    from r1v.distill.cli import add_parser as add_distill

    add_distill(sub)
    from r1v.serve.cli import add_parser as add_serve

    add_serve(sub)
    return ap


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed its end (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor (a captured stdout)
        return False


def main(argv: list[str] | None = None) -> int:
    try:
        _quiet_transformers()
        from r1v.distill.cli import default_mode

        parser = build_parser()
        args, extra = parser.parse_known_args(default_mode(list(sys.argv[1:] if argv is None else argv)))
        # key=value settings after an option (`recipe run R --restart name=x`): argparse ends the
        # settings list at the option; they are settings all the same
        if extra and isinstance(getattr(args, "settings", None), list) \
                and all("=" in x and not x.startswith("-") for x in extra):
            args.settings = [*args.settings, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that went away is then handled below
        return code
    except R1VError as e:
        print(f"r1v: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError as e:
        if not _stdout_gone():  # another pipe (a socket to an endpoint, a worker): an error like any other
            print(f"r1v: error: {e.strerror or e}", file=sys.stderr)
            return 2
        # the reader went away (`r1v ... | head`): stop quietly, as a tool that SIGPIPE ends
        import os

        try:  # nothing more reaches the reader; Python's own flush of stdout at exit would raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141  # 128 + SIGPIPE, what the shell reports for such a tool
    except OSError as e:  # a path the user gave that cannot be read or written (permissions, a file in the way)
        import errno

        if e.errno in (errno.ENOTDIR, errno.EEXIST) and e.filename:
            print(f"r1v: error: a file is in the way of {e.filename}: a folder on that path is a file; "
                  f"choose another path", file=sys.stderr)
        else:
            where = f": {e.filename}" if e.filename else ""
            print(f"r1v: error: {e.strerror or e}{where}; choose a path you can read and write", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
