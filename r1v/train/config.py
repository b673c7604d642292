"""Typed configs of the recipe and its stages, read from one YAML file with `key=value` overrides.

    cfg = load_recipe("recipes/tiny.yaml", ["grpo.steps=10", "sft.taus=[2,5]"])

Every field carries its help text (`r1v recipe run --help` lists them); an unknown key, in the
YAML or on the command line, is an error naming the known ones. Values on the command line are
YAML (`sft.taus=[2,3]`, `align.cache_features=false`).

Defaults are the paper's numbers (`../shared/docs/method.md`); the mini-world's recipe
(`recipes/tiny.yaml`) overrides what a 0.6M-parameter model on two CPU cores needs, and says why.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError


def _f(default, help: str):
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _copy(x):
    import copy

    return copy.deepcopy(x)


@dataclass
class Parts:
    """Which parts train (the paper: the projector only, from Stage 0 on)."""

    vision: bool = _f(False, "train the vision encoder (off: its features are computed once and cached)")
    projector: bool = _f(True, "train the MLP projector")
    language: bool = _f(False, "train every LLM weight (full fine-tuning)")
    lora_rank: int = _f(0, "LoRA rank on the LLM's attention and MLP projections (peft); 0 = no LoRA")
    lora_alpha: int = _f(32, "LoRA alpha")


@dataclass
class Optim:
    lr: float = _f(2e-4, "peak learning rate")
    weight_decay: float = _f(0.05, "AdamW weight decay")
    warmup_ratio: float = _f(0.03, "share of steps with a linear warm-up, then cosine decay")
    samples_per_step: int = _f(512, "global batch, in samples")
    micro_batch_per_device: int = _f(8, "samples per forward pass (gradient accumulation makes up the rest)")
    epochs: float = _f(1.0, "passes over the data")
    max_grad_norm: float = _f(1.0, "gradient clipping")


@dataclass
class ModelConfig:
    vision: str = _f("world:vision", "vision encoder: a folder, an R1V checkpoint, or world:vision")
    substitute: str = _f("world:substitute", "the substitute LLM the projector is aligned against (Stage 0)")
    reasoning: str = _f("world:reasoning", "the reasoning LLM the projector is transferred onto")
    max_tiles: int = _f(12, "most tiles per image (plus a thumbnail when there are several)")
    template: str = _f("r1v", "chat template: r1v or r1v3")
    dtype: str = _f("fp32", "weights dtype: fp32, bf16 or fp16")


@dataclass
class DataConfig:
    task: str = _f("world", "the benchmark task whose prompts and scorer every stage uses (E_{t-1}, rewards)")
    world: str = _f("default", "mini-world preset to build or reuse; '' = use the files below")
    world_dir: str = _f("", "mini-world folder (default ~/.cache/r1v/world, or $R1V_CACHE/world)")
    align_full: str = _f("", "JSONL for align pass 1: rows with a `response` (world: made from the world)")
    align_filtered: str = _f("", "JSONL for align pass 2, the quality-filtered subset")
    align_cot: str = _f("", "JSONL for align pass 3, chain-of-thought rows")
    sft: str = _f("", "JSONL of the SFT data D (with `response`; `score` 0..5 when reward_model=field)")
    eval_visual: str = _f("", "held-out JSONL with images, scored after every stage")
    eval_text: str = _f("", "held-out text-only JSONL, scored after every stage (text reasoning survives?)")
    eval_limit: int = _f(400, "at most this many rows of each held-out file")
    workers: int = _f(2, "DataLoader worker processes that read, decode and tile the rows ahead of each step "
                         "(0: in the training process)")
    feature_cache_mb: float = _f(2048, "frozen vision features kept in memory for rows a stage reads more than "
                                       "once (SFT, GRPO, multi-epoch passes); 0 = none")
    feature_cache_disk_mb: float = _f(0, "past feature_cache_mb, features spilled to <run>/cache/ up to this "
                                         "size; 0 = no spill")
    filtered_share: float = _f(0.1, "mini-world: align pass 2 keeps this share of pass 1 (the paper: 200K of 2M)")
    cot_share: float = _f(0.25, "mini-world: align pass 3 takes this share of the training problems, with chains")


@dataclass
class AlignPass:
    name: str = _f("full", "pass name: full, filtered or cot")
    lr: float = _f(2e-4, "peak learning rate of this pass")
    epochs: float = _f(1.0, "passes over this pass's data")


@dataclass
class AlignConfig:
    passes: list[AlignPass] = _f([AlignPass("full", 2e-4), AlignPass("filtered", 4e-5), AlignPass("cot", 4e-5)],
                                 "the paper's three passes over full / filtered / CoT data, each with its lr")
    optim: Optim = _f(Optim(), "optimiser (lr is each pass's)")
    parts: Parts = _f(Parts(), "what trains (the paper: the projector only)")
    cache_features: bool = _f(True, "keep frozen vision features of a pass that reads its rows more than once "
                                    "(epochs > 1; bounded by data.feature_cache_mb)")
    pack: bool = _f(True, "pack samples into rows (no padding); attention stays within each sample")
    pack_length: int = _f(16384, "tokens per packed row (the paper's context)")


@dataclass
class TransferConfig:
    check_vocab: bool = _f(True, "warn when the LLMs' vocabularies differ (a hidden-size mismatch is always refused)")


@dataclass
class SFTConfig:
    optim: Optim = _f(Optim(lr=2e-4), "optimiser of M0 (iterations use `lrs`)")
    parts: Parts = _f(Parts(), "what trains: projector by default; lora_rank > 0 or language=true train the LLM")
    taus: list[int] = _f([2, 3, 4, 5], "reward-model thresholds, one per iteration: D_t = D_rm(tau_t) + E_{t-1}")
    lrs: list[float] = _f([1e-4, 2e-5, 2e-5, 2e-5], "peak learning rate of each iteration")
    iteration_epochs: float = _f(1.0, "passes over D_t in each iteration (M0's are optim.epochs)")
    reward_model: str = _f("rubric", "scores D 0..5: rubric (the mini-world's rule checks) or field (a `score` column)")
    mistake_pool: int = _f(0, "how many rows of D M_{t-1} answers to find E_{t-1}; 0 = all of D")
    max_new_tokens: int = _f(8192, "generation budget when finding E_{t-1}")
    cache_features: bool = _f(True, "as align.cache_features")
    pack: bool = _f(True, "as align.pack")
    pack_length: int = _f(16384, "as align.pack_length")


@dataclass
class GRPOConfig:
    steps: int = _f(100, "optimisation steps (one batch of fresh rollouts each)")
    prompts_per_step: int = _f(64, "prompts per step, drawn from D_rm(tau)")
    generations_per_prompt: int = _f(8, "G: completions sampled per prompt")
    tau: int = _f(5, "prompts come from D_rm(tau)")
    temperature: float = _f(1.0, "sampling temperature of the rollouts")
    max_completion_tokens: int = _f(8192, "rollout length limit; a cut-off completion has no answer")
    lr: float = _f(1e-6, "learning rate (constant after a 3% warm-up)")
    clip_eps: float = _f(0.2, "PPO clip range of the ratio")
    kl: float = _f(0.0, "KL coefficient against the policy at GRPO's start (k3 estimator); 0 = none")
    accuracy_weight: float = _f(1.0, "weight of the accuracy reward (the task's scorer; guesses earn 0)")
    format_weight: float = _f(0.5, "weight of the format reward (R1 template: reasoning, </think>, \\boxed{})")
    parts: Parts = _f(Parts(), "what trains")
    micro_groups: int = _f(8, "prompts (each with its G completions) per forward pass")
    eval_every: int = _f(0, "score the held-out visual split every N steps (0: only at the end)")


PENALTIES = ("adaptive", "fixed")
REVISIONS = ("auto", "judge", "hint", "reference", "none")
REWARDS = ("auto", "judge", "rules")


@dataclass
class DistillConfig:
    teacher: str = _f("", "the model that writes the chains: a checkpoint folder, world:NAME, an http(s):// "
                          "endpoint, or rows (the rows' own `response`; in a recipe, empty: model.reasoning)")
    judge: str = _f("", "the judge (scores, verdicts, revisions, the 0..5 reward score): as teacher; empty: the "
                        "documented rules (r1v/distill/scores.py) and the answer as a hint")
    penalty: str = _f("adaptive", "adaptive: DRLC's P per sample; fixed: fixed_penalty for every sample")
    fixed_penalty: float = _f(1.0, "the repetition penalty of every sample when penalty=fixed")
    alpha: float = _f(round(math.log(2), 6), "DRLC alpha (not reported; ln 2 makes P span exactly [1, 2])")
    beta: float = _f(1.0, "DRLC beta: the text score's weight beside the vision score's 1 (not reported)")
    gamma: float = _f(1.0, "DRLC gamma: the integration score's weight (not reported)")
    difficulty_field: str = _f("auto", "a row field holding a difficulty label for the rules (auto: difficulty, "
                                       "then level)")
    max_new_tokens: int = _f(8192, "most tokens the teacher writes per chain")
    temperature: float = _f(0.6, "the teacher's sampling temperature (0: greedy)")
    top_p: float = _f(0.95, "the teacher's nucleus mass")
    revise: str = _f("auto", "wrong chains: judge (the judge rewrites), hint (the teacher again, told the answer), "
                             "reference (the row's `reasoning`), none (dropped); auto: judge for an endpoint judge, "
                             "else hint, then reference when the row has one")
    reward: str = _f("auto", "the 0..5 reward-model score: judge, rules (format, answer, true arithmetic, facts), "
                             "auto: judge when there is one")
    judge_retries: int = _f(2, "re-asks after a malformed judge reply before it is recorded as a failure")
    chunk: int = _f(64, "samples finished and saved together (a crash loses at most one chunk's work)")
    batch_size: int = _f(16, "local models: requests per generation batch")
    concurrency: int = _f(8, "endpoints: requests in flight")
    rpm: float = _f(0.0, "endpoints: most requests a minute (0: no limit)")
    timeout: float = _f(600.0, "endpoints: seconds before a request is abandoned (and retried)")
    retries: int = _f(5, "endpoints: retries of a failed request (429, 5xx, timeouts, dropped connections), "
                         "with exponential backoff")

    def validate(self) -> None:
        checks = [(self.penalty in PENALTIES, f"distill.penalty must be one of {', '.join(PENALTIES)}"),
                  (self.revise in REVISIONS, f"distill.revise must be one of {', '.join(REVISIONS)}"),
                  (self.reward in REWARDS, f"distill.reward must be one of {', '.join(REWARDS)}"),
                  (self.fixed_penalty > 0, "distill.fixed_penalty must be positive"),
                  (min(self.alpha, self.beta, self.gamma) >= 0, "distill.alpha, beta and gamma must be >= 0"),
                  (min(self.chunk, self.batch_size, self.concurrency, self.max_new_tokens) >= 1,
                   "distill.chunk, batch_size, concurrency and max_new_tokens must be at least 1"),
                  (self.judge_retries >= 0 and self.retries >= 0, "retries must be >= 0"),
                  (self.timeout > 0 and self.rpm >= 0, "distill.timeout must be positive and rpm >= 0"),
                  (not (self.revise == "judge" and not self.judge), "distill.revise=judge needs a judge"),
                  (not (self.reward == "judge" and not self.judge), "distill.reward=judge needs a judge")]
        for ok, msg in checks:
            if not ok:
                raise R1VError(msg)


@dataclass
class CheckpointConfig:
    every_steps: int = _f(0, "save a mid-stage checkpoint every N optimiser steps (0: by time only)")
    every_minutes: float = _f(30.0, "save a mid-stage checkpoint every N minutes (0: by steps only)")
    keep_last: int = _f(2, "mid-stage checkpoints kept per stage (older ones are deleted)")


@dataclass
class EvalConfig:
    max_new_tokens: int = _f(8192, "generation budget of the held-out scoring (greedy)")
    batch_size: int = _f(64, "prompts per generation batch")


STAGES = ("align", "transfer", "sft", "grpo")


@dataclass
class RecipeConfig:
    name: str = _f("r1v", "run name; outputs go to runs/<name>")
    out: str = _f("", "output folder (default runs/<name>)")
    seed: int = _f(0, "seed of data order, sampling and initialisation")
    stages: list[str] = _f(list(STAGES), "which stages run, in order")
    model: ModelConfig = _f(ModelConfig(), "backbones")
    data: DataConfig = _f(DataConfig(), "data files (or the mini-world)")
    align: AlignConfig = _f(AlignConfig(), "Stage 0: align the projector against the substitute LLM")
    transfer: TransferConfig = _f(TransferConfig(), "Stage 0: re-assemble with the reasoning LLM")
    sft: SFTConfig = _f(SFTConfig(), "Stages 1-2: M0, then iterative SFT")
    grpo: GRPOConfig = _f(GRPOConfig(), "Stage 3: GRPO with rule rewards")
    eval: EvalConfig = _f(EvalConfig(), "held-out scoring after every stage")
    checkpoint: CheckpointConfig = _f(CheckpointConfig(), "mid-stage checkpoints: `recipe run` after a crash "
                                                          "resumes inside the stage")
    distill: DistillConfig = _f(DistillConfig(), "AL-CoTD, which distils the mini-world's SFT data D (r1v distill)")

    @property
    def run_dir(self) -> Path:
        return Path(self.out or Path("runs") / self.name)


# --------------------------------------------------------------------------- reading
def build(cls, data: dict | None, where: str = ""):
    """A `cls` instance from a (nested) dict; unknown keys and wrong types are R1VErrors."""
    data = data or {}
    if not isinstance(data, dict):
        raise R1VError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise R1VError(f"unknown setting '{where}{key}'; known: {', '.join(known)}")
        kwargs[key] = _convert(hints[key], value, f"{where}{key}")
    inst = cls()
    for k, v in kwargs.items():
        setattr(inst, k, v)
    return inst


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where + ".")
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise R1VError(f"setting {where} expects a list, got {value!r}")
        return [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)  # YAML 1.1 reads "2e-3" (no dot) as a string
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is str and isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError
    except ValueError:
        raise R1VError(f"setting {where}={value!r} is not a {getattr(tp, '__name__', tp)}") from None


def parse_overrides(pairs: list[str]) -> dict:
    """["grpo.steps=10", "sft.taus=[2,5]"] -> {"grpo": {"steps": 10}, "sft": {"taus": [2, 5]}}."""
    import yaml

    out: dict = {}
    for kv in pairs:
        if "=" not in kv:
            raise R1VError(f"overrides are key=value (e.g. grpo.steps=10), got {kv!r}")
        key, raw = kv.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, last = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise R1VError(f"override {kv!r}: {p} is a setting, not a section")
        node[last] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> RecipeConfig:
    import yaml

    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise R1VError(f"recipe {p} not found; the shipped ones are in recipes/ (e.g. recipes/tiny.yaml)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise R1VError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    cfg = build(RecipeConfig, merge(data, parse_overrides(overrides or [])))
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise R1VError(f"unknown stage {bad[0]!r} in `stages`; choose from {', '.join(STAGES)}")
    cfg.distill.validate()
    if len(cfg.sft.lrs) != len(cfg.sft.taus):
        raise R1VError(f"sft.taus has {len(cfg.sft.taus)} entries but sft.lrs {len(cfg.sft.lrs)}: one lr per iteration")
    if any(not 0 <= t <= 5 for t in cfg.sft.taus) or not 0 <= cfg.grpo.tau <= 5:
        raise R1VError("reward-model thresholds (sft.taus, grpo.tau) are scores in 0..5")
    positive = {"align.optim.samples_per_step": cfg.align.optim.samples_per_step,
                "align.optim.micro_batch_per_device": cfg.align.optim.micro_batch_per_device,
                "sft.optim.samples_per_step": cfg.sft.optim.samples_per_step,
                "sft.optim.micro_batch_per_device": cfg.sft.optim.micro_batch_per_device,
                "align.pack_length": cfg.align.pack_length, "sft.pack_length": cfg.sft.pack_length,
                "grpo.steps": cfg.grpo.steps, "grpo.prompts_per_step": cfg.grpo.prompts_per_step,
                "grpo.micro_groups": cfg.grpo.micro_groups,
                "grpo.max_completion_tokens": cfg.grpo.max_completion_tokens,
                "eval.batch_size": cfg.eval.batch_size, "eval.max_new_tokens": cfg.eval.max_new_tokens}
    positive["checkpoint.keep_last"] = cfg.checkpoint.keep_last
    for key, value in positive.items():
        if value < 1:
            raise R1VError(f"{key}={value}: must be at least 1")
    lrs = {"grpo.lr": cfg.grpo.lr, "sft.optim.lr": cfg.sft.optim.lr, "align.optim.lr": cfg.align.optim.lr,
           **{f"align.passes[{k}].lr": p.lr for k, p in enumerate(cfg.align.passes)},
           **{f"sft.lrs[{k}]": lr for k, lr in enumerate(cfg.sft.lrs)}}
    for key, value in lrs.items():
        if not (math.isfinite(value) and value > 0):
            raise R1VError(f"{key}={value}: a learning rate must be a positive number")
    nonneg = {"data.workers": cfg.data.workers, "data.feature_cache_mb": cfg.data.feature_cache_mb,
              "data.feature_cache_disk_mb": cfg.data.feature_cache_disk_mb,
              "checkpoint.every_steps": cfg.checkpoint.every_steps,
              "checkpoint.every_minutes": cfg.checkpoint.every_minutes}
    for key, value in nonneg.items():
        if not (math.isfinite(value) and value >= 0):
            raise R1VError(f"{key}={value}: must be 0 or more")
    if cfg.grpo.generations_per_prompt < 2:
        raise R1VError("grpo.generations_per_prompt must be at least 2: GRPO's advantage compares a group")
    if cfg.model.template not in ("r1v", "r1v3"):
        raise R1VError(f"model.template={cfg.model.template!r}; choose r1v or r1v3")
    return cfg


def help_lines(cls=RecipeConfig, prefix: str = "") -> list[str]:
    """`key=default  help` for every setting, nested keys dotted (for --help)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            lines.append(f"  {prefix}{f.name}.*: {f.metadata.get('help', '')}")
            lines += help_lines(type(default), f"{prefix}{f.name}.")
        else:
            shown = default if not isinstance(default, list) or len(str(default)) < 40 else "[...]"
            lines.append(f"  {f'{prefix}{f.name}={shown}':<40} {f.metadata.get('help', '')}")
    return lines
