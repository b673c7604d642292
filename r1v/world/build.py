"""Build the mini-world: data, tokenizer, base / substitute / reasoning LMs and the vision encoder.

    r1v world build [--out DIR] [--preset default|small] [key=value ...]   # prints the table
    python -m r1v.world.build --preset small --out /tmp/world               # the same

Every stage saves into its own folder under DIR and is recorded in `DIR/world.json` (its time,
the process's peak memory so far, and a hash of what it wrote). A build that stops half way
resumes at the first missing stage; a finished build is reused as is (the recipe calls
`ensure_world`). The same config and seed give the same hashes. `r1v world build` scores every
backbone it trained beside the shipped one on the same held-out items, paired (`against_shipped`):
whether a rebuild reproduces the shipped backbones (the bytes, or the scores within noise), and what a
changed setting does.

Layout:
    world.json              config, scores, hashes, timings
    data/                   visual-{train,val,test}.jsonl (+ images/), text-{train,val,test}.jsonl
    tokenizer/              byte-level BPE trained on the world's text, with R1V's special tokens
    base/ substitute/ reasoning/    Qwen2ForCausalLM (+ tokenizer); load the tokenizer with r1v's
                            `load_tokenizer` (AutoTokenizer would swap in Qwen2's pre-tokenizer)
    vision/                 InternVLVisionModel
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from r1v.errors import R1VError
from r1v.io import peak_rss_mb, read_jsonl, write_json
from r1v.stats import paired_interval, points

DEFAULT_DIR = Path(os.environ.get("R1V_CACHE", Path.home() / ".cache" / "r1v")) / "world"
STAGES = ("data", "tokenizer", "base", "substitute", "reasoning", "vision", "scores")
# The default world's backbones, pretrained once by `r1v world build` and shipped with r1v (as the
# real method starts from backbones pretrained elsewhere), with their provenance: the settings, the
# code version, each stage's hash, time and memory, and the build's scores. A default build copies
# them (checking every hash) instead of training; `--train` trains them here instead, and
# `r1v world ship` replaces them from a built world.
SHIPPED = Path(__file__).parent / "backbones"
SHIPPED_STAGES = ("tokenizer", "base", "substitute", "reasoning", "vision")
# Settings added after worlds were built, each with the value that reproduces a build made before it:
# a world (or the shipped backbones) recorded without the setting was built with that value.
ADDED_SETTINGS = {"shared_layers": -1, "base_chat_steps": 0, "vit_qk_norm": True, "finetune_lr": 0.0, "vit_heads": 0,
                  "embed_noise": 0.0}
# The settings each stage's files depend on: its own and those of the stages it starts from (the
# tokenizer reads the LM problems; the substitute and the reasoning LM start from the base). A shipped
# backbone is installed wherever its stage's settings match, so a world that changes the encoder's
# settings trains the encoder alone, and one that changes the reasoning LM's steps keeps the
# tokenizer, the base and the substitute. Every setting belongs to a stage or to the scores (tested).
_TOKENIZER = ("seed", "lm_problems", "vocab_size")
_BASE = (*_TOKENIZER, "lm_hidden", "lm_layers", "lm_intermediate", "base_steps", "base_chat_steps", "lm_batch",
         "lm_lr", "drill_share", "direct_share", "picture_share", "overthink_share")
STAGE_SETTINGS = {
    "data": ("seed", "visual_train", "visual_eval", "text_train", "text_eval"),
    "tokenizer": _TOKENIZER,
    "base": _BASE,
    "substitute": (*_BASE, "substitute_steps", "shared_layers", "finetune_lr", "embed_noise"),
    "reasoning": (*_BASE, "reasoning_steps", "shared_layers", "finetune_lr", "embed_noise"),
    "vision": ("seed", "vit_hidden", "vit_layers", "vit_heads", "vit_qk_norm", "vit_images", "vit_steps", "vit_batch",
               "vit_lr"),
}
SCORE_SETTINGS = ("probe_images",)  # read by the scores alone, which depend on every stage
UPSTREAM = {"base": ("tokenizer",), "substitute": ("base",), "reasoning": ("base",)}  # the files a stage starts from


@dataclass
class WorldConfig:
    seed: int = field(default=0, metadata={"help": "one seed for the data, the weights and the batches"})
    visual_train: int = field(default=4000, metadata={"help": "visual problems written to data/visual-train.jsonl"})
    visual_eval: int = field(default=400, metadata={"help": "visual problems in each of val and test"})
    text_train: int = field(default=4000, metadata={"help": "text-only problems written to data/text-train.jsonl"})
    text_eval: int = field(default=400, metadata={"help": "text-only problems in each of val and test"})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary (bytes + merges), before the specials"})
    lm_hidden: int = field(default=192, metadata={"help": "LM width"})
    lm_layers: int = field(default=4, metadata={"help": "LM depth"})
    lm_intermediate: int = field(default=512, metadata={"help": "LM MLP width"})
    lm_problems: int = field(default=200000, metadata={"help": "training problems the LMs are trained on"})
    base_steps: int = field(default=3000, metadata={"help": "base LM pretraining steps"})
    base_chat_steps: int = field(default=2000, metadata={
        "help": "steps that end the base's pretraining on chat examples of both styles (each problem instruct or "
                "reasoning at even odds), all weights trained at half of lm_lr, as real bases are annealed on "
                "instruction data, so the siblings start from a base that reads the chat template and the picture "
                "words (0: none, the LMs shipped before r1v's gently fine-tuned ones)"})
    substitute_steps: int = field(default=1500, metadata={"help": "fine-tuning steps of the substitute LM"})
    reasoning_steps: int = field(default=4000, metadata={"help": "fine-tuning steps of the reasoning LM"})
    lm_batch: int = field(default=32, metadata={"help": "sequences per LM step"})
    lm_lr: float = field(default=5e-4, metadata={
        "help": "base LM peak learning rate (its chat steps: half; the siblings' too where finetune_lr is 0). At "
                "2e-3 (the LMs shipped before) the base never learned to look a value up by its key nor to count "
                "(the build's Skills line: 35% and 37%); at 5e-4 it does (100% and 88%), and the reasoning LM scores "
                "97% in words against 86% (docs/mini-world-backbones.md)"})
    finetune_lr: float = field(default=2.5e-4, metadata={
        "help": "peak learning rate of the substitute's and the reasoning LM's fine-tuning; 0: half of lm_lr (the "
                "LMs shipped before 1ffc8cf, with lm_lr=2e-3). The default moves the siblings 6-14% of each "
                "layer's weights from their base, as light fine-tunes of one base do (half of the old lm_lr 2e-3: "
                "28-52%), and transfer keeps more"})
    embed_noise: float = field(default=3.0, metadata={
        "help": "NEFTune's alpha while the substitute and the reasoning LM are fine-tuned (transformers' "
                "activate_neftune: uniform noise of alpha / sqrt(tokens x width) on every input embedding), so that "
                "both read the neighbourhood of each word alike; 0: none. On the base shipped before (lm_lr=2e-3) "
                "alpha 5 transferred 5.5 points higher than 0 over five seeds, 2 no better, and 7 and 10 weakened "
                "the LMs (docs/mini-world-r1v.md). The noise's scale is fixed, so its effect is relative to the "
                "base's embeddings: today's base (lm_lr 5e-4) has embeddings 0.61x as large, and at alpha 5 its "
                "reasoning LM never stopped thinking (17.6%); 3 is 5 scaled by that (docs/mini-world-backbones.md)"})
    drill_share: float = field(default=0.4, metadata={
        "help": "share of skill drills (arithmetic, look-up, counting: lm.drill_text) in pretraining"})
    direct_share: float = field(default=0.3, metadata={"help": "share of pretraining problems without a solution"})
    picture_share: float = field(default=0.5, metadata={
        "help": "share of LM problems stated as the picture's cell words (one token per visual token)"})
    shared_layers: int = field(default=-1, metadata={
        "help": "decoder layers the substitute and the reasoning LM keep from the base, frozen (with the input "
                "embeddings) while each is fine-tuned, so both read the projector's tokens through the same first "
                "layers; 0: the embeddings alone; -1 (default, the shipped backbones): nothing frozen"})
    overthink_share: float = field(default=0.6, metadata={
        "help": "share of the reasoning LM's training chains restated once more before </think> (overthinking: "
                "what AL-CoTD's repetition penalty curbs)"})
    vit_hidden: int = field(default=96, metadata={"help": "vision encoder width"})
    vit_layers: int = field(default=4, metadata={"help": "vision encoder depth"})
    vit_heads: int = field(default=0, metadata={
        "help": "vision encoder attention heads, a divisor of vit_hidden (0: vit_hidden // 16, the shipped encoder's "
                "6). 12 probe colour at 97.0% against the shipped encoder's 92.3%, yet the recipe's final model "
                "scores 3.3 points lower on them (three seeds; docs/mini-world-backbones.md)"})
    vit_qk_norm: bool = field(default=False, metadata={
        "help": "InternViT's q/k normalisation (InternViT-6B has it; InternViT-300M does not, nor the shipped "
                "encoder). The run that chose it probed bars' height at 90.3% without it, against 85.0% with it; "
                "on another machine type both probe 85.0-85.4% (README, 'The mini-world')"})
    vit_images: int = field(default=16000, metadata={"help": "pretraining images"})
    vit_steps: int = field(default=4000, metadata={"help": "vision pretraining steps"})
    vit_batch: int = field(default=64, metadata={"help": "images per vision step"})
    vit_lr: float = field(default=3e-3, metadata={"help": "vision peak learning rate"})
    probe_images: int = field(default=1600, metadata={"help": "images for the linear probe (half fit, half score)"})


PRESETS = {
    "default": WorldConfig(),
    # Seconds, for tests: every stage runs, nothing is expected to be learnt.
    "small": WorldConfig(
        visual_train=40, visual_eval=16, text_train=40, text_eval=16, vocab_size=300, lm_hidden=32, lm_layers=1,
        lm_intermediate=64, lm_problems=300, base_steps=4, base_chat_steps=2, substitute_steps=2, reasoning_steps=2,
        lm_batch=8, shared_layers=0, vit_hidden=16, vit_layers=1, vit_images=32, vit_steps=2, vit_batch=8,
        probe_images=32),
}


def config_from(preset: str = "default", overrides: dict | None = None) -> WorldConfig:
    if preset not in PRESETS:
        raise R1VError(f"unknown world preset {preset!r}; choose from {', '.join(PRESETS)}")
    from r1v.config import build as build_config

    # Typed like every r1v setting (finite numbers, whole numbers for counts), then ranged: every count
    # and size at least 1 (the seed 0 or more), every share in (0, 1], learning rates positive.
    cfg = build_config(WorldConfig, overrides or {}, base=PRESETS[preset])
    for f in dataclasses.fields(WorldConfig):
        v = getattr(cfg, f.name)
        if isinstance(v, bool):
            ok, rule = True, ""
        elif f.name.endswith("_share"):
            ok, rule = 0 <= v <= 1, "a share in [0, 1]"
        elif f.name == "embed_noise":
            ok, rule = v >= 0, "0 (none) or a positive NEFTune alpha"
        elif f.name == "finetune_lr":
            ok, rule = v >= 0, "0 (half of lm_lr) or a positive learning rate"
        elif f.name.endswith("_lr"):
            ok, rule = v > 0, "a positive learning rate"
        elif f.name in ("seed", "base_chat_steps"):
            ok, rule = v >= 0, "0 or more"
        elif f.name == "vit_heads":
            ok, rule = v == 0 or (v > 0 and cfg.vit_hidden % v == 0), f"0 or a divisor of vit_hidden ({cfg.vit_hidden})"
        elif f.name == "shared_layers":
            ok, rule = -1 <= v <= cfg.lm_layers, f"-1 (nothing frozen) to lm_layers ({cfg.lm_layers})"
        else:
            ok, rule = v >= 1, "at least 1"
        if not ok:
            raise R1VError(f"world setting {f.name}={v!r} must be {rule}")
    return cfg


# --------------------------------------------------------------------------- bookkeeping
def tree_hash(path: Path) -> str:
    """sha256 over every file under `path` (names and bytes), for the determinism check."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class Manifest:
    """`world.json`. A world asked for with other settings than it holds keeps every stage whose own
    settings are unchanged and drops the others, to be copied again, where they are copies of the
    shipped backbones (so a default world follows the shipped ones from one r1v version to the next);
    a stage trained here is never dropped: the build is refused instead."""

    def __init__(self, root: Path, cfg: WorldConfig):
        self.path = root / "world.json"
        self.root = root
        self.data = {"config": asdict(cfg), "stages": {}, "scores": {}}
        self.dropped: list[str] = []
        if self.path.exists():
            old = json.loads(self.path.read_text())
            was, want = recorded(old.get("config", {})), self.data["config"]
            if was != want:
                changed = [s for s in STAGE_SETTINGS if s in old["stages"]
                           and stage_settings(was, s) != stage_settings(want, s)]
                trained = [s for s in changed if not old["stages"][s].get("shipped")]
                if trained:
                    diff = ", ".join(f"{k}={was.get(k)!r} there, {want.get(k)!r} asked"
                                     for k in [*want, *(k for k in was if k not in want)]
                                     if was.get(k) != want.get(k))
                    raise R1VError(f"{root} holds a world built with other settings ({diff}), and its "
                                   f"{', '.join(trained)} would be trained again; use another --out, or --rebuild "
                                   f"to replace it")
                for s in changed:
                    shutil.rmtree(root / s, ignore_errors=True)
                    del old["stages"][s]
                old["stages"].pop("scores", None)
                old.update(config=want, scores={})
                self.dropped = changed
            self.data = old

    def done(self, stage: str) -> bool:
        return stage in self.data["stages"] and (stage == "scores" or (self.root / stage).exists())

    def record(self, stage: str, seconds: float, **extra) -> None:
        entry = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb())}
        if (self.root / stage).is_dir():
            entry["hash"] = tree_hash(self.root / stage)
        self.data["stages"][stage] = {**entry, **extra}
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def _stage_dir(root: Path, stage: str) -> Path:
    """A fresh temporary folder for `stage`; `_publish` renames it into place when complete."""
    tmp = root / f".{stage}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(root: Path, stage: str, tmp: Path) -> Path:
    final = root / stage
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    return final


# --------------------------------------------------------------------------- build
def recorded(config: dict) -> dict:
    """A world's recorded settings, with those added since it was built at the value it was built with."""
    return {**ADDED_SETTINGS, **config}


def provenance(folder: Path = SHIPPED) -> dict | None:
    """The shipped backbones' provenance (None when none are shipped)."""
    f = folder / "provenance.json"
    return json.loads(f.read_text()) if f.is_file() else None


def stage_settings(config: dict, stage: str) -> dict:
    """The settings `stage`'s files depend on, from a world's recorded config."""
    config = recorded(config)
    return {k: config.get(k) for k in STAGE_SETTINGS[stage]}


ORIGIN = ("code", "torch", "transformers", "python", "machine")  # where and with what a stage was trained


def here() -> dict:
    """This checkout's code version and this machine's torch, transformers, Python and CPU, as ORIGIN."""
    import platform
    import subprocess

    import torch
    import transformers

    try:
        code = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        code = "unknown"
    return {"code": code, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu()}"}


def cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name: two x86_64 CPUs of other makes train other bytes from the same code (the
    shipped base and encoder were trained on an AMD EPYC, the siblings on an Intel Xeon)."""
    import platform

    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU model unknown"


def _origin(prov: dict, name: str) -> dict:
    """Where and with what a shipped stage was trained (provenance written before stages kept their
    own: the provenance's)."""
    return prov["stages"][name].get("built") or {k: prov[k] for k in ORIGIN if k in prov}


def _install_shipped(man: Manifest, out: Path, prov: dict, folder: Path, log) -> None:
    """Copy each shipped backbone whose stage's settings match the world's, and whose starting files
    (`UPSTREAM`) are the shipped ones, into `out`, checked against its recorded hash. Where every
    backbone is shipped, the build's scores come from the provenance too (they were measured on
    exactly these files); otherwise the scores are measured here."""
    want_cfg = man.data["config"]

    def is_shipped(name: str) -> bool:
        return man.done(name) and man.data["stages"][name].get("hash") == prov["stages"][name]["hash"]

    for name in SHIPPED_STAGES:
        if (man.done(name) or stage_settings(prov["config"], name) != stage_settings(want_cfg, name)
                or not all(is_shipped(u) for u in UPSTREAM.get(name, ()))):
            continue
        t = time.perf_counter()
        tmp = out / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder / name, tmp)
        want = prov["stages"][name]["hash"]
        if tree_hash(tmp) != want:
            shutil.rmtree(tmp)
            raise R1VError(f"the shipped {name} backbone ({folder / name}) does not match its provenance hash {want}: "
                           f"reinstall r1v, or train it here with `r1v world build --train`")
        _publish(out, name, tmp)
        built = {k: v for k, v in prov["stages"][name].items() if k not in ("hash", "seconds", "peak_rss_mb", "built")}
        man.record(name, time.perf_counter() - t, shipped=True, built_seconds=prov["stages"][name]["seconds"],
                   built=_origin(prov, name), **built)
        log(f"  {name}: shipped (hash {want} checked)")
    if not man.done("scores") and recorded(prov["config"]) == want_cfg and all(map(is_shipped, SHIPPED_STAGES)):
        man.data["scores"] = prov["scores"]
        man.record("scores", 0.0, shipped=True)


def ship(world: Path, folder: Path = SHIPPED) -> dict:
    """Make `world`'s backbones the shipped ones: copy them into `folder` with their provenance. Stages
    the world copied from the shipped backbones (their settings matched) keep their own provenance;
    each stage records where and with what it was trained (`built`)."""
    data = json.loads((world / "world.json").read_text()) if (world / "world.json").is_file() else {}
    if not all(s in data.get("stages", {}) for s in STAGES):
        raise R1VError(f"{world} holds no finished world; run `r1v world build --out {world}` first")
    if all(data["stages"][s].get("shipped") for s in SHIPPED_STAGES):
        raise R1VError(f"{world}'s backbones were all copied from the shipped ones, not trained: build with --train")
    now = here()
    old = provenance(folder)
    stages = {}
    for name, entry in data["stages"].items():
        if not entry.get("shipped"):  # trained here (a world built before stages kept their origin: as now)
            stages[name] = {**entry, "built": entry.get("built", now)}
        elif old is None or old["stages"].get(name, {}).get("hash") != entry.get("hash"):
            raise R1VError(f"{world}'s {name} was copied from backbones that {folder} no longer holds; "
                           f"build the world again with --train")
        else:
            stages[name] = {**old["stages"][name], "built": _origin(old, name)}
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SHIPPED_STAGES:
        shutil.copytree(world / name, tmp / name)
    # The comparison with the backbones these replace does not travel: shipped, it would read as a
    # comparison with themselves.
    scores = {k: v for k, v in data["scores"].items() if k != "against_shipped"}
    prov = {"config": data["config"], **now, "stages": stages, "scores": scores,
            "table": table({**data, "stages": stages, "scores": scores})}
    write_json(tmp / "provenance.json", prov)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return prov


def build(cfg: WorldConfig, out: Path = DEFAULT_DIR, *, rebuild: bool = False, shipped: Path | None = SHIPPED,
          against: Path | None = None, device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Build (or finish, or reuse) the world at `out`; returns the manifest's data. Each shipped
    backbone whose stage's settings (`STAGE_SETTINGS`) match is copied from `shipped` instead of
    trained (None: train every one here). Backbones train and are scored on `device`; each stage records
    it, since floating point differs between devices (and a CUDA build need not repeat itself bit for
    bit: torch's deterministic algorithms are not switched on). With `against` (a shipped-backbones
    folder, normally `shipped`'s), the scores also measure each backbone trained here against that folder's
    on the same items (`against_shipped`); stages copied from `shipped` are not compared."""
    import torch
    from tqdm.auto import tqdm

    from r1v.model.tokenizer import load_tokenizer, train_bpe_tokenizer
    from r1v.world import lm, vit
    from r1v.world.data import SPLITS, stream, write_split
    from r1v.world.scenes import FAMILIES, PICTURE_WORDS, draw, make_problem

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise R1VError(f"--out {out} is a file, not a folder")
    if rebuild and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    man = Manifest(out, cfg)
    for name in man.dropped:
        log(f"  {name}: a copy of a shipped backbone built with other settings; replaced")
    seed = cfg.seed
    origin = here()
    device_name = f"{device} ({torch.cuda.get_device_name(device)})" if torch.device(device).type == "cuda" else device

    def stage(name: str):
        if man.done(name):
            if not man.data["stages"][name].get("shipped"):
                log(f"  {name}: reused")
            return None
        return time.perf_counter()

    def bar(desc: str, total: int):
        return tqdm(total=total, desc=f"  {desc}", unit="step", leave=False, dynamic_ncols=True)

    # ---- data
    if (t := stage("data")) is not None:
        tmp = _stage_dir(out, "data")
        for split in SPLITS:
            n_vis = cfg.visual_train if split == "train" else cfg.visual_eval
            n_txt = cfg.text_train if split == "train" else cfg.text_eval
            write_split(tmp, split, visual=n_vis, text=n_txt, seed=seed)
        _publish(out, "data", tmp)
        man.record("data", time.perf_counter() - t)
        log(f"  data: {time.perf_counter() - t:.1f} s")

    cache: dict[str, list] = {}

    def lm_problems() -> list:  # drawn only when a stage needs them (a finished world needs none)
        if "p" not in cache:
            cache["p"] = list(islice(stream("train", seed=f"lm:{seed}"), cfg.lm_problems))
        return cache["p"]

    prov = provenance(shipped) if shipped else None
    if prov:
        _install_shipped(man, out, prov, shipped, log)

    # ---- tokenizer
    if (t := stage("tokenizer")) is not None:
        from r1v.world.data import target

        corpus = [f"{p.prompt(text_only=True)}\nSolution: {p.reasoning}\nThe answer is {p.answer}.\n"
                  f"{target(p, 'reasoning')}" for p in lm_problems()[:5000]]
        tok = train_bpe_tokenizer(corpus, vocab_size=cfg.vocab_size)
        tok.add_tokens(list(PICTURE_WORDS))  # one token per cell word (scenes.picture)
        tmp = _stage_dir(out, "tokenizer")
        tok.save_pretrained(tmp)
        _publish(out, "tokenizer", tmp)
        man.record("tokenizer", time.perf_counter() - t, tokens=len(tok))
        log(f"  tokenizer: {len(tok)} tokens")
    tok = load_tokenizer(str(out / "tokenizer"))
    vocab = len(tok) + (-len(tok)) % 64  # a multiple of 64 rows, as real vocabularies are padded
    size = lm.LMSize(cfg.lm_hidden, cfg.lm_layers, max(1, cfg.lm_hidden // 32), max(1, cfg.lm_hidden // 64),
                     cfg.lm_intermediate)

    def save_model(model, name: str, t0: float, losses: list[float], tokenizer=None) -> None:
        tmp = _stage_dir(out, name)
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "losses.json").write_text(json.dumps([round(x, 4) for x in losses]))
        _publish(out, name, tmp)
        man.record(name, time.perf_counter() - t0, final_loss=round(sum(losses[-20:]) / len(losses[-20:]), 4),
                   params=sum(p.numel() for p in model.parameters()), device=device_name, built=origin)
        log(f"  {name}: loss {losses[-1]:.3f}, {time.perf_counter() - t0:.0f} s")

    def train_with_bar(model, examples, steps, lr, desc, seed_):
        with bar(desc, steps) as b:
            def tick(step, loss):
                b.update(1)
                if step % 10 == 0:
                    b.set_postfix(loss=f"{loss:.3f}")
            return lm.train(model, examples, steps=steps, batch_size=cfg.lm_batch, lr=lr,
                            pad_id=tok.pad_token_id, seed=seed_, progress=tick)

    # ---- base LM
    if (t := stage("base")) is not None:
        rng = random.Random(f"base:{seed}")
        probs = lm_problems()
        examples = lm.base_examples(tok, probs, worked=[rng.random() >= cfg.direct_share for _ in probs],
                                    pictured=[rng.random() < cfg.picture_share for _ in probs])
        n_drills = int(cfg.drill_share * len(examples) / max(1e-9, 1 - cfg.drill_share))
        examples += lm.documents(tok, [lm.drill_text(rng) for _ in range(n_drills)])
        model = lm.new_lm(vocab, size, seed=seed).to(device)
        losses = train_with_bar(model, examples, cfg.base_steps, cfg.lm_lr, "base LM", seed)
        if cfg.base_chat_steps:
            rng = random.Random(f"mid:{seed}")
            probs = lm_problems()[: cfg.base_chat_steps * cfg.lm_batch]
            examples = lm.mixed_chat_examples(tok, probs, rng, picture_share=cfg.picture_share,
                                              overthink_share=cfg.overthink_share)
            losses += train_with_bar(model, examples, cfg.base_chat_steps, cfg.lm_lr / 2, "base LM: chat", seed + 2)
        save_model(model, "base", t, losses, tok)

    # ---- substitute and reasoning LMs, both from the base
    from transformers import AutoModelForCausalLM
    from transformers.integrations.neftune import activate_neftune

    for name, style in (("substitute", "instruct"), ("reasoning", "reasoning")):
        if (t := stage(name)) is not None:
            model = AutoModelForCausalLM.from_pretrained(out / "base").to(device)
            lm.freeze_bottom(model, cfg.shared_layers)
            # As many examples as the steps see (the problems are already in random order).
            steps = getattr(cfg, f"{name}_steps")
            probs = lm_problems()[: steps * cfg.lm_batch]
            rng = random.Random(f"{name}:{seed}")
            pictured = [rng.random() < cfg.picture_share for _ in probs]
            rechecked = [style == "reasoning" and rng.random() < cfg.overthink_share for _ in probs]
            examples = lm.chat_examples(tok, probs, style, pictured, rechecked)
            noise = activate_neftune(model, cfg.embed_noise) if cfg.embed_noise else None
            losses = train_with_bar(model, examples, steps, cfg.finetune_lr or cfg.lm_lr / 2, f"{name} LM", seed + 1)
            if noise is not None:
                noise.remove()
            save_model(model, name, t, losses, tok)

    # ---- vision encoder
    def render(n: int, tag: str):
        probs = [make_problem(FAMILIES[i % len(FAMILIES)], f"vit:{tag}:{seed}:{i}") for i in range(n)]
        return probs, vit.as_uint8([draw(p) for p in probs])

    if (t := stage("vision")) is not None:
        probs, images = render(cfg.vit_images, "train")
        heads = cfg.vit_heads or max(1, cfg.vit_hidden // 16)
        model = vit.new_vit(vit.ViTSize(cfg.vit_hidden, cfg.vit_layers, heads, 2 * cfg.vit_hidden, cfg.vit_qk_norm),
                            seed=seed).to(device)
        with bar("vision encoder", cfg.vit_steps) as b:
            losses = vit.pretrain(model, probs, images, steps=cfg.vit_steps, batch_size=cfg.vit_batch,
                                  lr=cfg.vit_lr, seed=seed, progress=lambda s, loss: b.update(1))
        save_model(model, "vision", t, losses)

    # ---- held-out scores
    if (t := stage("scores")) is not None:
        from transformers import InternVLVisionModel

        scores = {}
        text_test = [r for r in read_jsonl(out / "data" / "text-test.jsonl") if r["steps"] >= 2]
        visual_test = read_jsonl(out / "data" / "visual-test.jsonl")
        # The base model has no chat template: it is judged through its two children, and by its skills.
        visual_train = read_jsonl(out / "data" / "visual-train.jsonl")
        right: dict[str, dict] = {}  # per problem id, right or not: what `against_shipped` pairs
        for name in ("base", "substitute", "reasoning"):
            model = AutoModelForCausalLM.from_pretrained(out / name).to(device).eval()
            scores[f"{name}_skills"] = lm.skills(model, tok)
            if name == "base":
                continue
            for form, as_picture in (("text", False), ("picture", True)):
                scores[f"{name}_{form}"], scored = lm.accuracy(model, tok, text_test, as_picture=as_picture)
                right[f"{name}_{form}"] = by_id(text_test, scored)
            scores[f"{name}_blind"], blind = lm.accuracy(model, tok, visual_test)
            scores[f"{name}_blind_by_family"] = by_family(visual_test, [s.correct for _, s in blind])
        scores["majority_blind"] = majority_baseline(visual_train, visual_test)
        scores["majority_blind_by_family"] = {
            f: majority_baseline(visual_train, [r for r in visual_test if r["family"] == f])
            for f in sorted({r["family"] for r in visual_test})}
        encoder = InternVLVisionModel.from_pretrained(out / "vision").to(device).eval()
        half = cfg.probe_images // 2
        fit, test = render(half, "probe-fit"), render(cfg.probe_images - half, "probe-test")
        probed = vit.probe_predictions(encoder, fit, test)
        scores["probe"] = vit.accuracy(probed)
        scores["text_items"], scores["visual_items"] = len(text_test), len(visual_test)
        if against is not None:
            t_against = time.perf_counter()
            if compared := against_shipped(man.data, against, lm_right=right, probed=probed, text_test=text_test,
                                           probe_images=(fit, test), device=device):
                scores["against_shipped"] = {**compared, "seconds": round(time.perf_counter() - t_against, 1)}
        man.data["scores"] = scores
        man.record("scores", time.perf_counter() - t, device=device_name)
    return man.data


def against_shipped(data: dict, folder: Path, *, lm_right: dict[str, dict], probed: dict, text_test: list[dict],
                    probe_images: tuple, device: str) -> dict | None:
    """Each backbone this world trained beside `folder`'s (the shipped ones) on the same held-out items:
    both scores and the paired gap, this world's minus the shipped one's, with its 95% interval. The LMs
    on the text test, in words and as pictures (an item is a problem, paired by id); the encoder by its
    linear probe, fitted afresh on the same pictures for both (an item is a picture, scored by the share
    of its tokens read right: a picture's 16 tokens are not independent). A backbone with the shipped
    one's bytes is said so and not scored again (the tokenizer and the base are only compared so). The
    record names the code the shipped backbones were recorded at, so a world kept across r1v versions
    says what it was compared with. None when the world trained none of them or `folder` ships nothing.

    This is how a rebuild shows it reproduces the shipped backbones: on another machine's floating point
    the bytes differ, and each gap should then be within noise."""
    from transformers import AutoModelForCausalLM, InternVLVisionModel

    from r1v.model.tokenizer import load_tokenizer
    from r1v.world import lm, vit

    prov = provenance(folder)
    mine = {name: entry for name, entry in data["stages"].items()
            if name in SHIPPED_STAGES and not entry.get("shipped") and name in (prov or {}).get("stages", {})}
    if not mine:
        return None
    stages = {}
    for name, entry in mine.items():
        ours, theirs = stage_settings(data["config"], name), stage_settings(prov["config"], name)
        rec = {"settings": {k: [v, theirs[k]] for k, v in ours.items() if v != theirs[k]},
               "same_bytes": entry.get("hash") == prov["stages"][name]["hash"], "hash": prov["stages"][name]["hash"]}
        if rec["same_bytes"] or name in ("tokenizer", "base"):  # the base is judged through its two children
            pass
        elif name == "vision":
            encoder = InternVLVisionModel.from_pretrained(folder / name).to(device).eval()
            read = vit.probe_predictions(encoder, *probe_images)
            rec["scores"] = {a: _paired(dict(enumerate(vit.by_picture(read[a]))),
                                        dict(enumerate(vit.by_picture(probed[a])))) for a in read}
        else:
            model = AutoModelForCausalLM.from_pretrained(folder / name).to(device).eval()
            tok = load_tokenizer(str(folder / name))  # its own: a world of other settings may have another
            rec["scores"] = {}
            for form, as_picture in (("text", False), ("picture", True)):
                _, scored = lm.accuracy(model, tok, text_test, as_picture=as_picture)
                rec["scores"][form] = _paired(by_id(text_test, scored), lm_right[f"{name}_{form}"])
        stages[name] = rec
    return {"code": prov["code"], "stages": stages}


def by_id(rows: list[dict], scored: list) -> dict[str, float]:
    """Right (1.0) or not, per row id, from `lm.accuracy`'s scored outputs (in the rows' order)."""
    return {r["id"]: float(s.correct) for r, (_, s) in zip(rows, scored, strict=True)}


def _paired(shipped: dict, mine: dict) -> dict | None:
    """Both means and mine minus shipped, paired over the items both scored (None: no items)."""
    gap = paired_interval(shipped, mine)
    if gap is None:
        return None
    return {"mine": sum(mine.values()) / len(mine), "shipped": sum(shipped.values()) / len(shipped), **gap}


def by_family(rows: list[dict], correct: list[bool]) -> dict[str, float]:
    """Accuracy per family of rows scored in order."""
    fams: dict[str, list[bool]] = {}
    for r, ok in zip(rows, correct):
        fams.setdefault(r["family"], []).append(bool(ok))
    return {f: sum(v) / len(v) for f, v in sorted(fams.items())}


def majority_baseline(train_rows: list[dict], test_rows: list[dict]) -> float:
    """Accuracy of always giving the commonest training answer of the same question (the best a
    model that never looks at the picture can do, question by question)."""
    from collections import Counter

    by_q: dict[str, Counter] = {}
    for r in train_rows:
        by_q.setdefault((r["question"], bool(r["choices"])), Counter())[r["answer"]] += 1
    overall = Counter(r["answer"] for r in train_rows)
    hits = 0
    for r in test_rows:
        guess = (by_q.get((r["question"], bool(r["choices"]))) or overall).most_common(1)[0][0]
        hits += guess == r["answer"]
    return hits / max(1, len(test_rows))


def table(data: dict) -> str:
    """The build's summary: each backbone's held-out score, build time and peak memory."""
    st, sc = data["stages"], data.get("scores", {})
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    probe = sc.get("probe", {})
    cfg = data["config"]
    rows = [
        ("data", f"{cfg['visual_eval']} visual + {cfg['text_eval']} text problems per eval split", "data"),
        ("tokenizer", f"{st.get('tokenizer', {}).get('tokens', '?')} tokens, byte-level (round-trips any text)",
         "tokenizer"),
        ("base LM", (f"loss {st.get('base', {}).get('final_loss', '?')} at the end of its {cfg['base_chat_steps']} "
                     "chat steps" if cfg.get("base_chat_steps") else
                     f"pretraining loss {st.get('base', {}).get('final_loss', '?')}"), "base"),
        ("substitute LM", f"text accuracy {pct(sc['substitute_text'])}, as pictures "
                          f"{pct(sc.get('substitute_picture', 0))} (no think block; works briefly in its answer)" if sc else "", "substitute"),
        ("reasoning LM", f"text accuracy {pct(sc['reasoning_text'])}, as pictures "
                         f"{pct(sc.get('reasoning_picture', 0))} (<think>, then \\boxed{{}})" if sc else "",
         "reasoning"),
        ("vision encoder", "linear probe " + ", ".join(f"{a} {pct(v)}" for a, v in probe.items()), "vision"),
    ]
    lines = ["| backbone | held-out score | build s | peak RSS MB | hash |", "|---|---|---|---|---|"]
    for name, score, key in rows:
        s = st.get(key, {})
        seconds = f"shipped (built in {s['built_seconds']:.0f})" if s.get("shipped") else s.get("seconds", "")
        cells = [name, score, seconds, s.get("peak_rss_mb", ""), s.get("hash", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    total = sum(s["seconds"] for s in st.values())
    lines.append(f"| **total** | | {total:.0f} | {max((s['peak_rss_mb'] for s in st.values()), default=0)} | |")
    if sc:
        lines.append("")
        lines.append(
            f"Text accuracy: greedy, on {sc['text_items']} held-out text-only problems that need two steps or more; "
            f"'as pictures': the same problems with the scene stated as the picture's cell words (one per visual "
            f"token), the most a projector can hand the LM. "
            f"Ignoring the image: the reasoning LM answers the {sc['visual_items']} visual test questions without "
            f"their pictures {pct(sc['reasoning_blind'])} of the time (substitute {pct(sc['substitute_blind'])}; "
            f"the commonest training answer per question: {pct(sc['majority_blind'])}).")
        if "base_skills" in sc:
            lms = ("base", "substitute", "reasoning")
            lines.append("")
            lines.append("Skills, each LM read as a plain LM (greedy next token in the drills' format, 300 items; "
                         "base / substitute / reasoning): " + "; ".join(
                             f"{k} " + " / ".join(pct(sc[f"{m}_skills"][k]) for m in lms) for k in sc["base_skills"])
                         + " (look-up: a value by its key, keys asked in random order; a guess among the four listed "
                         "values is right about 34%).")
        if "reasoning_blind_by_family" in sc:
            lines.append("")
            lines.append("Without the picture, by family (reasoning LM / commonest answer): " + ", ".join(
                f"{f} {pct(v)} / {pct(sc['majority_blind_by_family'][f])}"
                for f, v in sc["reasoning_blind_by_family"].items()) + ".")
    if vs := sc.get("against_shipped"):
        lines += ["", f"Against the shipped backbones (recorded at {vs['code']}; scored here on this world's items, "
                      "paired; with the same settings each interval should include 0, about 1 row in 20 missing "
                      "it by chance; another machine's floating point trains other bytes):", "",
                  "| backbone | measure | n | this world | shipped | this world - shipped |",
                  "|---|---|---|---|---|---|"]
        label = {"tokenizer": "tokenizer", "base": "base LM", "substitute": "substitute LM",
                 "reasoning": "reasoning LM", "vision": "vision encoder"}
        measure = {"text": ("text accuracy", "problems"), "picture": ("as pictures", "problems")}
        for name, rec in vs["stages"].items():
            who = label[name] + "".join(f", {k} {a} (shipped {b})" for k, (a, b) in rec["settings"].items())
            if rec["same_bytes"]:
                lines.append(f"| {who} | files | | the shipped ones (hash {rec['hash']}) | | identical |")
            elif "scores" not in rec:
                lines.append(f"| {who} | files | | other bytes | hash {rec['hash']} | judged through the LMs |")
            for what, g in rec.get("scores", {}).items():
                name_, unit = measure.get(what, (f"probe {what}", "pictures"))
                cells = [pct(g["mine"]), pct(g["shipped"]), points(g)] if g else ["", "", ""]
                lines.append(f"| {who} | {name_} | {g['n'] if g else 0} {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ensure_world(out: Path = DEFAULT_DIR, cfg: WorldConfig | None = None, **kwargs) -> Path:
    """The world at `out`, built first if it is missing or unfinished."""
    data = build(cfg or WorldConfig(), out, **kwargs)
    assert all(s in data["stages"] for s in STAGES)
    return Path(out)


if __name__ == "__main__":
    from r1v.world.cli import main

    main(["build", *__import__("sys").argv[1:]])
