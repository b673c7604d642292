"""`r1v world build|data|show|compare|probe|reference|leak|ship`: the mini-world's command line
(see `r1v world --help`).

The mini-world produces files: `build` the backbones and problems, `data` the recipe's training
files (through `r1v distill`'s code); `r1v recipe run recipes/tiny.yaml` names them. `make demo`
chains the three."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from r1v.errors import R1VError
from r1v.io import docstring

EPILOG = """examples:
  r1v world build                               # ~/.cache/r1v/world (R1V_CACHE moves it); reused when built
  r1v world build --out runs/world seed=1       # another world; key=value overrides any setting below
  r1v world data                                # the recipe's files -> ~/.cache/r1v/world/recipe/
  r1v world show --split test --n 12 --out sheet.png
  r1v world compare --config recipes/tiny.yaml  # AL-CoTD beside fixed penalties, a model trained on each

settings (key=value), default preset:
"""


def _settings_help() -> str:
    from r1v.world.build import WorldConfig

    return "\n".join(f"  {f'{f.name}={f.default}':<22} {f.metadata.get('help', '')}"
                     for f in dataclasses.fields(WorldConfig))


def add_parser(sub) -> None:
    w = sub.add_parser("world", help="the mini-world: offline visual reasoning tasks and tiny backbones",
                       description="Build and look at the mini-world: synthetic visual reasoning tasks, a tokenizer, "
                                   "base / substitute / reasoning LMs and a vision encoder, all trained here.",
                       epilog=EPILOG + _settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    wsub = w.add_subparsers(dest="world_command", metavar="ACTION")
    wsub.required = True
    p = wsub.add_parser("build", help="build (or finish, or reuse) the world and print its table",
                        description="Build (or finish, or reuse) the mini-world and print its table: each backbone's "
                                    "held-out score, build time, peak memory and hash. In the default preset, every "
                                    "backbone trained here (--train, or settings of its own) is then scored beside "
                                    "the one r1v ships (r1v/world/backbones/) on the same held-out items, paired: "
                                    "whether a rebuild reproduces the shipped backbones, or what a setting changes.",
                        epilog=EPILOG + _settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="world folder (default ~/.cache/r1v/world)")
    p.add_argument("--preset", default="default", help="default, or small (seconds; nothing is learnt)")
    p.add_argument("--rebuild", action="store_true", help="delete the folder and build from scratch")
    p.add_argument("--train", action="store_true", help="train every backbone here; without it, each shipped "
                                                        "backbone whose stage's settings match is copied instead "
                                                        "(so encoder settings alone train the encoder alone)")
    p.add_argument("--device", default="cpu", help="where backbones train and are scored, when they are trained "
                   "here (--train, or settings that differ from the shipped stage's): cpu (default), cuda, cuda:1, "
                   "... Each trained stage records it in world.json. GPU floating point differs from a CPU's, and two "
                   "GPU builds may differ slightly (torch's deterministic mode is off)")
    p.add_argument("settings", nargs="*", metavar="key=value", help="override a setting (listed below)")
    p.set_defaults(func=cmd_build)

    from r1v.config import help_lines
    from r1v.world.prepare import DataSettings

    p = wsub.add_parser("data", help="the recipe's training files, made from a built world (AL-CoTD makes D)",
                        description=docstring("r1v.world.prepare"), epilog="settings (key=value):\n" +
                        "\n".join(help_lines(DataSettings)), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default=None, help="world folder (default ~/.cache/r1v/world)")
    p.add_argument("--out", default=None, help="where the files go (default WORLD/recipe, where recipes/tiny.yaml "
                                               "looks)")
    p.add_argument("--overwrite", action="store_true", help="remake the files made with other settings")
    p.add_argument("settings", nargs="*", metavar="key=value", help="a setting (listed below)")
    p.set_defaults(func=cmd_data)

    p = wsub.add_parser("compare", help="AL-CoTD beside fixed penalties: data, and the recipe's SFT trained on each",
                        description=docstring("r1v.world.compare"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the recipe YAML (recipes/tiny.yaml): SFT's settings, held-out "
                                                   "files, run folder")
    p.add_argument("--world", default=None, help="world folder (default ~/.cache/r1v/world)")
    p.add_argument("--fixed", default="1.0,2.0", help="fixed penalties to compare, comma-separated (default 1.0,2.0)")
    p.add_argument("--iterations", type=int, default=None,
                   help="SFT iterations after M0 to train each arm through (default: all of the recipe's sft.taus; "
                        "0: M0 alone, about a third of the time)")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="recipe settings; distill.* ones set the AL-CoTD arm, as for `r1v world data`")
    p.set_defaults(func=cmd_compare)

    p = wsub.add_parser("ship", help="(maintainers) make a built world's backbones the ones r1v ships",
                        description="Copy a built world's tokenizer, LMs and vision encoder into "
                                    "r1v/world/backbones/ with their provenance (settings, hashes, times, scores, "
                                    "and each stage's code version and machine). Stages the world copied from the "
                                    "shipped backbones keep their provenance; at least one must have been trained.")
    p.add_argument("--world", required=True, help="the built world folder")
    p.set_defaults(func=cmd_ship)

    p = wsub.add_parser("probe", help="where the picture is lost: encoder, projector, LLM input, what the LLM reads",
                        description=docstring("r1v.world.probe"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an R1V checkpoint of the mini-world (e.g. runs/tiny/sft/m0)")
    p.add_argument("--images", type=int, default=800, help="fresh pictures drawn (half fit the probes; default 800)")
    p.set_defaults(func=cmd_probe)

    p = wsub.add_parser("reference", help="rewrite a split into new problems of the same kind (leakage test)",
                        description=docstring("r1v.world.leak"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a mini-world split, e.g. ~/.cache/r1v/world/data/visual-test.jsonl")
    p.add_argument("--out", required=True, help="the reference JSONL to write (pictures go in images/ beside it)")
    p.add_argument("--seed", type=int, default=0, help="which rewrites (default 0)")
    p.set_defaults(func=cmd_reference)

    p = wsub.add_parser("leak", help="fine-tune a model on a split's answers: a leaked model to test `eval leakage`",
                        description=docstring("r1v.world.leak"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an R1V checkpoint of the mini-world (e.g. runs/tiny/grpo)")
    p.add_argument("--data", required=True, help="the split it should see, e.g. .../visual-test.jsonl")
    p.add_argument("--out", required=True, help="where the leaked checkpoint goes")
    p.add_argument("--epochs", type=int, default=3, help="passes over the split (default 3)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.set_defaults(func=cmd_leak)

    p = wsub.add_parser("show", help="a contact sheet of problems: picture, question, reasoning, answer",
                        description="Draw a contact sheet of the mini-world's problems (picture, question, reference "
                                    "reasoning and answer) into one image, to see what the tasks look like. "
                                    "Reads a built world's split, or generates problems on the fly without one.")
    p.add_argument("--world", default=None, help="world folder (default ~/.cache/r1v/world); without a built "
                   "world, problems are generated on the fly")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split (default test)")
    p.add_argument("--n", type=int, default=8, help="how many problems (default 8, two per family)")
    p.add_argument("--out", default="world.png", help="the PNG to write (default world.png)")
    p.set_defaults(func=cmd_show)


def _overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise R1VError(f"settings are key=value, got {kv!r}; see `r1v world build --help`")
        k, v = kv.split("=", 1)
        out[k.strip()] = yaml.safe_load(v.strip()) if v.strip() else v  # typed as on any r1v command line
    return out


def cmd_build(a) -> int:
    from pathlib import Path

    from r1v.model.checkpoint import resolve_device
    from r1v.world.build import DEFAULT_DIR, SHIPPED, build, config_from, table

    cfg = config_from(a.preset, _overrides(a.settings))
    device = resolve_device(a.device)
    out = Path(a.out) if a.out else DEFAULT_DIR
    if out.exists() and not out.is_dir():
        raise R1VError(f"--out {out} is a file, not a folder")
    print(f"building the mini-world in {out}", file=sys.stderr)
    # The small preset's backbones (seconds, for tests) have nothing to show against the shipped ones.
    data = build(cfg, out, rebuild=a.rebuild, shipped=None if a.train else SHIPPED, device=device,
                 against=SHIPPED if a.preset == "default" else None, log=lambda s: print(s, file=sys.stderr))
    print(table(data))
    return 0


def cmd_ship(a) -> int:
    from pathlib import Path

    from r1v.world.build import PRESETS, SHIPPED, recorded, ship

    prov = ship(Path(a.world))
    if recorded(prov["config"]) != dataclasses.asdict(PRESETS["default"]):
        print("note: this world's settings are not the default ones: a default build copies only the backbones "
              "whose stage's settings match", file=sys.stderr)
    print(f"wrote {SHIPPED} ({prov['code']})")
    return 0


def cmd_probe(a) -> int:
    from r1v.world.probe import readings, table

    if a.images < 8:
        raise R1VError("--images must be at least 8")
    print(table(readings(a.model, images=a.images)))
    return 0


def cmd_reference(a) -> int:
    from r1v.world.leak import write_reference

    out = write_reference(a.data, a.out, seed=a.seed)
    print(f"written: {out}  (read it with --reference {out}; --bench world)")
    return 0


def cmd_leak(a) -> int:
    from r1v.world.leak import leak

    print(f"written: {leak(a.model, a.data, a.out, epochs=a.epochs, lr=a.lr)}")
    return 0


def cmd_show(a) -> int:
    from pathlib import Path

    from r1v.world.build import DEFAULT_DIR
    from r1v.world.show import contact_sheet

    if a.n < 1:
        raise R1VError("--n must be at least 1")
    from PIL import Image

    suffix = Path(a.out).suffix.lower()
    if suffix not in Image.registered_extensions():
        raise R1VError(f"--out {a.out}: name a picture file (.png, .jpg, ...), not {suffix or 'no extension'}")
    world = Path(a.world) if a.world else DEFAULT_DIR
    if a.world and not (world / "data").is_dir():
        raise R1VError(f"{world} holds no built world (no data/ folder); run `r1v world build --out {world}`")
    path = contact_sheet(world / "data" if (world / "data").is_dir() else None, a.split, a.n, Path(a.out))
    print(f"wrote {path}")
    return 0


def _data_settings(pairs: list[str]):
    from r1v.config import build, parse_overrides
    from r1v.world.prepare import DataSettings

    return build(DataSettings, parse_overrides(pairs))


def cmd_data(a) -> int:
    from pathlib import Path

    from r1v.world.build import DEFAULT_DIR
    from r1v.world.prepare import prepare

    world = Path(a.world) if a.world else DEFAULT_DIR
    prepare(world, Path(a.out) if a.out else world / "recipe", _data_settings(a.settings), overwrite=a.overwrite,
            log=lambda s: print(s, file=sys.stderr))
    return 0


def cmd_compare(a) -> int:
    from pathlib import Path

    from r1v.train.config import load_recipe
    from r1v.world.build import DEFAULT_DIR
    from r1v.world.compare import compare

    try:
        fixed = [float(x) for x in a.fixed.split(",") if x.strip()]
    except ValueError:
        raise R1VError(f"--fixed {a.fixed!r}: comma-separated numbers, e.g. 1.0,2.0") from None
    if any(not (p > 0) for p in fixed):  # checked now, not when its arm comes after the others
        raise R1VError(f"--fixed {a.fixed!r}: repetition penalties are positive numbers")
    data_pairs = [kv for kv in a.settings if kv.startswith("distill.")]
    cfg = load_recipe(a.config, [kv for kv in a.settings if not kv.startswith("distill.")])
    world = Path(a.world) if a.world else DEFAULT_DIR
    if not (world / "data" / "visual-train.jsonl").is_file():
        raise R1VError(f"{world} holds no built mini-world; run `r1v world build --out {world}` first")
    print(f"wrote {compare(cfg, world, _data_settings(data_pairs), fixed, a.iterations)}")
    return 0
