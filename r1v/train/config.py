"""Typed configs of the recipe and its stages, read from one YAML file with `key=value` overrides.

    cfg = load_recipe("recipes/tiny.yaml", ["grpo.steps=10", "sft.taus=[2,5]"])

Every field carries its help text (`r1v recipe run --help` lists them); reading, overrides and
checks are `r1v/config.py`'s (unknown keys are errors; `${VAR:-default}` and `~` expand in paths).

Defaults are the paper's numbers (`../shared/docs/method.md`); the mini-world's recipe
(`recipes/tiny.yaml`) overrides what a 1.8M-parameter model on two CPU cores needs, and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from r1v.config import build, help_lines, merge, parse_overrides  # noqa: F401  (re-exported for the CLI)
from r1v.config import setting as _f
from r1v.errors import R1VError


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
    vision: str = _f("", "vision encoder: an InternViT folder (OpenGVLab layout or transformers') or an R1V "
                         "checkpoint")
    substitute: str = _f("", "the substitute LLM the projector is aligned against (Stage 0): a model folder")
    reasoning: str = _f("", "the reasoning LLM the projector is transferred onto: a model folder")
    max_tiles: int = _f(12, "most tiles per image (plus a thumbnail when there are several)")
    template: str = _f("r1v", "chat template: r1v or r1v3")
    dtype: str = _f("fp32", "weights dtype: fp32, bf16 or fp16")


@dataclass
class DataConfig:
    task: str = _f("jsonl", "the task whose reader, prompts and scorer every stage uses (E_{t-1}, rewards): jsonl "
                            "(your rows), or world (the mini-world's)")
    align_full: str = _f("", "JSONL for align pass 1: rows with a `response` (a file, a folder of shards, a glob)")
    align_filtered: str = _f("", "JSONL for align pass 2, the quality-filtered subset")
    align_cot: str = _f("", "JSONL for align pass 3, chain-of-thought rows")
    sft: str = _f("", "JSONL of the SFT data D (with `response`; `score` 0..5 when reward_model=field)")
    prompts: str = _f("", "JSONL of the task's rows (no `response` needed) that MPO and GRPO sample from; empty: "
                          "the SFT data's rows (data.sft; GRPO then keeps D_rm(grpo.tau))")
    rm_train: str = _f("", "preference pairs the reward model trains on: {id, prompt, images, chosen, rejected}")
    rm_eval: str = _f("", "held-out preference pairs: the reward model's pair accuracy")
    eval_visual: str = _f("", "held-out JSONL with images, scored after every stage")
    eval_text: str = _f("", "held-out text-only JSONL, scored after every stage (text reasoning survives?)")
    eval_limit: int = _f(400, "at most this many rows of each held-out file")
    workers: int = _f(-1, "DataLoader worker processes that read, decode and tile the rows ahead of each step; "
                          "0: in the training process; -1: 0 when training on the CPU (the trainer's threads use "
                          "every core), else up to 8 per GPU process")
    feature_cache_mb: float = _f(2048, "frozen vision features kept in memory for rows a stage reads more than "
                                       "once (SFT, GRPO, multi-epoch passes); 0 = none")
    feature_cache_disk_mb: float = _f(0, "past feature_cache_mb, features spilled to <run>/cache/ up to this "
                                         "size; 0 = no spill")
    reference_scores: str = _f("", "optional JSON {label: accuracy} shown in the report beside the stages (e.g. "
                                   "what the mini-world's backbones allow); a value may be {\"accuracy\": x, "
                                   "\"claim\": \"ceiling\"}: the most a projector can reach, which the claims "
                                   "table divides the final accuracy by")


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
class SSBConfig:
    """R1V2's Selective Sample Buffer (`r1v/train/ssb.py`); R1V2 reports none of these numbers."""

    enabled: bool = _f(False, "keep groups with non-zero advantages and replay them in place of uniform groups")
    size: int = _f(256, "most groups buffered (the oldest go first)")
    when: str = _f("vanishing", "vanishing: replay only while the fresh groups' effective share is under `target`; "
                                "always: replace every uniform fresh group")
    target: float = _f(0.6, "effective share (groups with non-zero advantages) replay fills up to (R1V2: above 60% "
                            "with SSB)")
    max_share: float = _f(0.5, "at most this share of a step's groups come from the buffer (VL-Rethinker's SSR: half)")
    max_age: int = _f(8, "groups sampled more than this many steps ago are dropped (off-policy); 0 = no limit")


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
    dual_clip: float = _f(3.0, "dual-clip PPO (Ye et al. 2020; verl's clip_ratio_c): a token with a negative advantage "
                               "costs at most this many times |advantage|, however far the ratio has grown (a "
                               "replayed group's old policy is steps behind); 0 = off, else above 1")
    kl: float = _f(0.0, "KL coefficient against the policy at GRPO's start (k3 estimator); 0 = none")
    accuracy_weight: float = _f(1.0, "weight of the accuracy reward (the task's scorer; guesses earn 0)")
    format_weight: float = _f(0.5, "weight of the format reward (R1 template: reasoning, </think>, \\boxed{})")
    parts: Parts = _f(Parts(), "what trains")
    micro_groups: int = _f(8, "prompts (each with its G completions) per forward pass")
    eval_every: int = _f(0, "score the held-out visual split every N steps (0: only at the end)")
    hallucination_ceiling: float = _f(0.0, "R1V2's monitoring: when a held-out scoring (eval_every) finds more than "
                                           "this share of visual outputs stating a false fact, act "
                                           "(hallucination_action); 0 = off")
    hallucination_action: str = _f("stop", "stop: end GRPO there and keep that model; flag: note it in the report "
                                           "and go on")
    base: str = _f("", "the policy GRPO starts from: empty = the last of transfer, SFT, MPO this recipe runs; a "
                       "finished stage of this run (mpo/r2, ...) or an R1V model folder (e.g. another run's mpo/r4)")
    reward_model: str = _f("none", "R1V2's hybrid reward: none (R1V: rules only); empty = this run's `rm` stage; a "
                                   "folder `r1v train rm` wrote; or the URL of `r1v rm serve`")
    rm_weight: float = _f(0.5, "weight of the reward model's normalised term")
    rm_norm: str = _f("group", "how the raw, unbounded score is bounded (R1V2 does not say): group (z-score within the "
                               "group, clipped at rm_clip, in [-1, 1]) or sigmoid (sigmoid((r - rm_center) / "
                               "rm_scale), in [0, 1])")
    rm_clip: float = _f(2.0, "group: z-scores are clipped to +-this, then divided by it")
    rm_center: float = _f(0.0, "sigmoid: the raw score that maps to 0.5")
    rm_scale: float = _f(1.0, "sigmoid: raw-score units per unit of the sigmoid's input")
    ssb: SSBConfig = _f(SSBConfig(), "R1V2's Selective Sample Buffer against vanishing advantages")
    filter_pool: bool = _f(False, "R1V2's offline filter: before training, roll out every prompt of the pool G "
                                  "times and keep only those whose groups are not uniform (`r1v train grpo-filter`)")
    filter_limit: int = _f(0, "filter only N prompts of the pool, in a seeded order of what is left once the probe "
                              "prompts are held out (0 = the whole pool); GRPO then draws from the kept ones")
    critical: str = _f("forks", "R1V3's critical reasoning tokens, whose entropy is logged: forks (the highest-entropy "
                                "critical_share of the reasoning's tokens: where the chain branches) or words (the "
                                "tokens that begin critical_words: wait, but, so, ...)")
    critical_share: float = _f(0.2, "forks: the share of reasoning tokens counted as critical (Wang et al. 2025: 20%)")
    critical_words: list[str] = _f(["wait", "but", "however", "alternatively", "hmm", "so", "therefore", "thus",
                                    "check", "verify", "maybe", "perhaps", "actually"],
                                   "words: the reasoning connectives whose first token counts as critical")
    select: str = _f("last", "which checkpoint is GRPO's output: last, or entropy (R1V3: of the checkpoints made every "
                             "eval_every steps and the last, the one whose critical-token entropy on the probe "
                             "prompts is highest, where the probe can tell it from the last's: the paired 95% "
                             "interval of the gap, Bonferroni over the checkpoints, above 0; else the last)")
    probe_prompts: int = _f(64, "prompts of the pool (left out of training) whose rollouts measure the critical-token "
                                "entropy at each eval_every checkpoint")


@dataclass
class RMPhase:
    """One phase of the reward model's curriculum: which pairs it trains on, and for how long."""

    kinds: list[str] = _f([], "the pair kinds (the rows' `kind`) this phase trains on; empty = every pair")
    epochs: float = _f(1.0, "passes over this phase's pairs")
    lr: float = _f(0.0, "peak learning rate of this phase; 0 = rm.optim.lr")


@dataclass
class RMConfig:
    base: str = _f("transfer", "what the reward model starts from: a finished stage of this run (transfer, "
                               "sft/m4, ...) or an R1V model folder")
    optim: Optim = _f(Optim(lr=1e-5, samples_per_step=128, micro_batch_per_device=8, warmup_ratio=0.03),
                      "optimiser; samples are pairs (Skywork-VL Reward does not report its settings)")
    parts: Parts = _f(Parts(vision=False, projector=True, language=True),
                      "what trains besides the head (Skywork-VL Reward: everything but the vision encoder)")
    pooling: str = _f("last", "what the head reads: last (the final hidden state at the response's last token, "
                              "Skywork-VL Reward's) or mean (the mean over the response's tokens)")
    eval_batch_pairs: int = _f(32, "pairs per forward pass of the held-out scoring")
    phases: list[RMPhase] = _f([], "a curriculum, where the papers have none: phases run in order on one model and "
                                   "head, each {kinds: the pair rows' `kind`s it trains on (empty: all; the "
                                   "mini-world's: wrong_answer, false_fact, format), epochs (default 1), lr (0: "
                                   "optim.lr)} with its own warm-up (optim.warmup_ratio of its steps) and cosine, "
                                   "e.g. [{kinds: [wrong_answer], epochs: 3}, {epochs: 2}]; empty = one phase, every "
                                   "pair for optim.epochs")


@dataclass
class MPOConfig:
    rounds: int = _f(3, "sample -> pair -> train rounds (R1V2 runs MPO iteratively; how many is not reported)")
    prompts_per_round: int = _f(1024, "prompts sampled each round (a seeded draw without replacement)")
    samples_per_prompt: int = _f(8, "K: completions sampled per prompt, scored, and paired best against worst")
    temperature: float = _f(1.0, "sampling temperature of the K completions")
    max_completion_tokens: int = _f(8192, "completion length limit; a cut-off completion has no answer")
    reward_model: str = _f("", "the reward model: empty = this run's `rm` stage; a folder `r1v train rm` wrote; "
                               "an http(s) URL of a scoring endpoint (`r1v rm serve`); or none (rules only)")
    rm_weight: float = _f(1.0, "weight of the reward model's raw score")
    accuracy_weight: float = _f(1.0, "weight of the task's scorer (1 right, 0 wrong or guessed)")
    format_weight: float = _f(1.0, "weight of the format check (R1 template)")
    fact_weight: float = _f(1.0, "penalty for stating a fact the data contradicts (task.hallucinated), where the "
                                 "data knows its facts (R1V2's factual-consistency rule, as a penalty; see "
                                 "factual_chosen)")
    factual_chosen: bool = _f(False, "R1V2's factual-consistency rule read as a constraint, not only a penalty: a "
                                     "pair's chosen sample is the best one that states no fact the data contradicts, "
                                     "and a prompt whose samples all do makes no pair (where the data does not know "
                                     "its facts, every sample may be chosen)")
    threshold: float = _f(10.0, "R1V2's calibrated threshold: a pair is made only when the best completion's reward "
                                "beats the worst one's by at least this (its ablation: 15 / 10 / 7, on Skywork-VL "
                                "Reward's scale; on another reward model, calibrate it)")
    beta: float = _f(0.1, "beta of DPO and BCO (not reported by R1V2; InternVL's MPO: 0.1)")
    dpo_weight: float = _f(0.8, "w1, the DPO (sigmoid) term (InternVL's MPO default; R1V2 does not report its own)")
    bco_weight: float = _f(0.2, "w2, the BCO term with delta a running mean of past rewards (InternVL's default)")
    nll_weight: float = _f(1.0, "w3, the chosen response's length-normalised NLL (InternVL's default)")
    optim: Optim = _f(Optim(lr=5e-6, samples_per_step=64, micro_batch_per_device=8, warmup_ratio=0.05),
                      "optimiser; samples are pairs (InternVL's MPO: lr 5e-6, one epoch)")
    parts: Parts = _f(Parts(), "what trains (R1V2: the adapter only, better than adapter + LLM)")
    micro_prompts: int = _f(16, "prompts per generation batch while sampling")


@dataclass
class CheckpointConfig:
    every_steps: int = _f(0, "save a mid-stage checkpoint every N optimiser steps (0: by time only)")
    every_minutes: float = _f(30.0, "save a mid-stage checkpoint every N minutes (0: by steps only)")
    keep_last: int = _f(2, "mid-stage checkpoints kept per stage (older ones are deleted)")


ROLLOUT_ENGINES = ("hf", "vllm")
VLLM_MODES = ("colocate", "server")


@dataclass
class RolloutConfig:
    """Where the stages generate: GRPO's rollouts, MPO's samples, E_{t-1} and the held-out scoring
    (`r1v/train/vllm.py`). R1V2's pool filter and R1V3's entropy probe stay on transformers."""

    engine: str = _f("hf", "hf (transformers' generate on the training model, the prompt prefilled once per "
                           "group: the CPU path) or vllm (TRL's VLLMGeneration: pip install 'r1v[vllm]', a GPU)")
    vllm_mode: str = _f("colocate", "colocate (a vLLM engine inside every training process, weights synced "
                                    "after each update) or server (`trl vllm-serve --model FOLDER` on other GPUs)")
    server_url: str = _f("", "vllm_mode=server: the server's base URL (e.g. http://10.0.0.2:8000)")
    gpu_memory_utilization: float = _f(0.3, "colocate: the share of each GPU vLLM takes (weights, KV cache); the "
                                            "rest is the trainer's")
    tensor_parallel_size: int = _f(1, "colocate: GPUs one vLLM engine spans (must divide the process count)")
    max_model_len: int = _f(0, "colocate: vLLM's context (prompt + completion); 0 = the model's")
    sleep: bool = _f(False, "colocate: vLLM's sleep mode, its memory freed while the trainer steps")


@dataclass
class EvalConfig:
    max_new_tokens: int = _f(8192, "generation budget of the held-out scoring (greedy)")
    batch_size: int = _f(64, "prompts per generation batch")


@dataclass
class ClaimTargets:
    """What the report's claims table checks the run against (0: the figure is shown, with no verdict).
    The relative claims (each SFT iteration adds, GRPO adds, text reasoning survives) need no target:
    they are judged by their paired intervals."""

    aligned_visual: float = _f(0.0, "visual accuracy of the substitute after alignment, at least this (the paper's "
                                     "analogue: 64.0 MMMU)")
    transfer_kept: float = _f(0.0, "re-assembled visual accuracy over the aligned substitute's, at least this (the "
                                    "paper: 60.2 / 64.0 = 0.94)")
    final_visual: float = _f(0.0, "the final model's visual accuracy, at least this")
    final_of_ceiling: float = _f(0.0, "the final visual accuracy over the ceiling (the reference_scores entry marked "
                                       "\"claim\": \"ceiling\"), at least this")
    rm_pair_accuracy: float = _f(0.0, "the reward model's held-out pair accuracy, at least this")
    against: str = _f("", "a run of R1V's recipe on the same held-out files (e.g. runs/tiny): its last SFT stage's "
                          "hallucination rate is compared with this run's MPO (R1V2's Table 3)")


STAGES = ("align", "transfer", "sft", "rm", "mpo", "grpo")


@dataclass
class RecipeConfig:
    name: str = _f("r1v", "run name; outputs go to runs/<name>")
    out: str = _f("", "output folder (default runs/<name>)")
    seed: int = _f(0, "seed of data order, sampling and initialisation")
    stages: list[str] = _f(["align", "transfer", "sft", "grpo"], "which stages run, in order (R1V's by default; R1V2: "
                                                                  "align, transfer, rm, mpo, grpo)")
    model: ModelConfig = _f(ModelConfig(), "backbones")
    data: DataConfig = _f(DataConfig(), "data files")
    align: AlignConfig = _f(AlignConfig(), "Stage 0: align the projector against the substitute LLM")
    transfer: TransferConfig = _f(TransferConfig(), "Stage 0: re-assemble with the reasoning LLM")
    sft: SFTConfig = _f(SFTConfig(), "Stages 1-2: M0, then iterative SFT")
    rm: RMConfig = _f(RMConfig(), "R1V2: the reward model (an R1V model with a scalar head, pairwise loss)")
    mpo: MPOConfig = _f(MPOConfig(), "R1V2: Mixed Preference Optimization in rounds (sample, pair, train)")
    grpo: GRPOConfig = _f(GRPOConfig(), "Stage 3: GRPO with rule rewards (R1V2: plus a reward model, and the "
                                        "Selective Sample Buffer)")
    eval: EvalConfig = _f(EvalConfig(), "held-out scoring after every stage")
    rollout: RolloutConfig = _f(RolloutConfig(), "where generation runs: transformers (CPU, default) or vLLM")
    tracking: list[str] = _f(["tensorboard"], "experiment trackers (accelerate's) beside metrics.jsonl: tensorboard "
                                              "(<run>/tracking/), wandb, mlflow, ... when installed; [] = none")
    checkpoint: CheckpointConfig = _f(CheckpointConfig(), "mid-stage checkpoints: `recipe run` after a crash "
                                                          "resumes inside the stage")
    claims: ClaimTargets = _f(ClaimTargets(), "targets of the report's claims table (the paper's claims, checked on "
                                              "this run)")

    @property
    def run_dir(self) -> Path:
        return Path(self.out or Path("runs") / self.name)


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> RecipeConfig:
    import yaml

    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise R1VError(f"recipe {p} not found; the shipped ones are in recipes/ (e.g. recipes/tiny.yaml)")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise R1VError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
        except UnicodeDecodeError:
            raise R1VError(f"{p} is not UTF-8 text; a recipe is a YAML file") from None
        if data is not None and not isinstance(data, dict):
            raise R1VError(f"{p} holds a YAML {type(data).__name__}, not a mapping of settings; see recipes/tiny.yaml")
        if not data:
            raise R1VError(f"{p} is empty: a recipe names at least its backbones (model.*) and data files (data.*); "
                           f"see recipes/tiny.yaml")
    cfg = build(RecipeConfig, merge(data, parse_overrides(overrides or [])))
    if cfg.rollout.engine not in ROLLOUT_ENGINES:
        raise R1VError(f"rollout.engine={cfg.rollout.engine!r}; choose {' or '.join(ROLLOUT_ENGINES)}")
    if cfg.rollout.vllm_mode not in VLLM_MODES:
        raise R1VError(f"rollout.vllm_mode={cfg.rollout.vllm_mode!r}; choose {' or '.join(VLLM_MODES)}")
    if cfg.rollout.engine == "vllm" and cfg.rollout.vllm_mode == "server" and not cfg.rollout.server_url:
        raise R1VError("rollout.vllm_mode=server needs rollout.server_url (where `trl vllm-serve` listens)")
    if not 0 < cfg.rollout.gpu_memory_utilization <= 1:
        raise R1VError(f"rollout.gpu_memory_utilization={cfg.rollout.gpu_memory_utilization}; a share in (0, 1]")
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise R1VError(f"unknown stage {bad[0]!r} in `stages`; choose from {', '.join(STAGES)}")
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
                "eval.batch_size": cfg.eval.batch_size, "eval.max_new_tokens": cfg.eval.max_new_tokens,
                "rm.optim.samples_per_step": cfg.rm.optim.samples_per_step,
                "rm.optim.micro_batch_per_device": cfg.rm.optim.micro_batch_per_device,
                "rm.eval_batch_pairs": cfg.rm.eval_batch_pairs, "mpo.rounds": cfg.mpo.rounds,
                "mpo.prompts_per_round": cfg.mpo.prompts_per_round,
                "mpo.optim.samples_per_step": cfg.mpo.optim.samples_per_step,
                "mpo.optim.micro_batch_per_device": cfg.mpo.optim.micro_batch_per_device,
                "mpo.max_completion_tokens": cfg.mpo.max_completion_tokens, "mpo.micro_prompts": cfg.mpo.micro_prompts,
                "grpo.ssb.size": cfg.grpo.ssb.size,
                "rollout.tensor_parallel_size": cfg.rollout.tensor_parallel_size}
    positive["checkpoint.keep_last"] = cfg.checkpoint.keep_last
    for key, value in positive.items():
        if value < 1:
            raise R1VError(f"{key}={value}: must be at least 1")
    lrs = {"grpo.lr": cfg.grpo.lr, "sft.optim.lr": cfg.sft.optim.lr, "align.optim.lr": cfg.align.optim.lr,
           "rm.optim.lr": cfg.rm.optim.lr, "mpo.optim.lr": cfg.mpo.optim.lr,
           **{f"align.passes[{k}].lr": p.lr for k, p in enumerate(cfg.align.passes)},
           **{f"sft.lrs[{k}]": lr for k, lr in enumerate(cfg.sft.lrs)}}
    for key, value in lrs.items():
        if not (math.isfinite(value) and value > 0):
            raise R1VError(f"{key}={value}: a learning rate must be a positive number")
    if cfg.data.workers < -1:
        raise R1VError(f"data.workers={cfg.data.workers}: a number of processes, 0, or -1 (automatic)")
    nonneg = {"data.feature_cache_mb": cfg.data.feature_cache_mb,
              "data.feature_cache_disk_mb": cfg.data.feature_cache_disk_mb,
              "checkpoint.every_steps": cfg.checkpoint.every_steps,
              "checkpoint.every_minutes": cfg.checkpoint.every_minutes,
              "grpo.hallucination_ceiling": cfg.grpo.hallucination_ceiling, "mpo.beta": cfg.mpo.beta,
              "grpo.rm_weight": cfg.grpo.rm_weight, "grpo.ssb.max_age": cfg.grpo.ssb.max_age,
              "grpo.filter_limit": cfg.grpo.filter_limit, "grpo.probe_prompts": cfg.grpo.probe_prompts,
              "mpo.threshold": cfg.mpo.threshold, "mpo.temperature": cfg.mpo.temperature,
              **{f"mpo.{k}_weight": getattr(cfg.mpo, f"{k}_weight")
                 for k in ("rm", "accuracy", "format", "fact", "dpo", "bco", "nll")},
              **{f"claims.{k}": v for k, v in vars(cfg.claims).items() if k != "against"}}
    for key, value in nonneg.items():
        if not (math.isfinite(value) and value >= 0):
            raise R1VError(f"{key}={value}: must be 0 or more")
    if not cfg.mpo.temperature > 0:
        raise R1VError(f"mpo.temperature={cfg.mpo.temperature}: the K samples must differ, so it must be above 0")
    if cfg.mpo.samples_per_prompt < 2:
        raise R1VError("mpo.samples_per_prompt must be at least 2: a pair is the best and the worst of K samples")
    for k, phase in enumerate(cfg.rm.phases):
        if not (math.isfinite(phase.epochs) and phase.epochs > 0):
            raise R1VError(f"rm.phases[{k}].epochs={phase.epochs}: must be above 0")
        if not (math.isfinite(phase.lr) and phase.lr >= 0):
            raise R1VError(f"rm.phases[{k}].lr={phase.lr}: must be 0 or above (0: rm.optim.lr)")
    if cfg.rm.pooling not in ("last", "mean"):
        raise R1VError(f"rm.pooling={cfg.rm.pooling!r}; choose last or mean")
    if cfg.grpo.hallucination_action not in ("stop", "flag"):
        raise R1VError(f"grpo.hallucination_action={cfg.grpo.hallucination_action!r}; choose stop or flag")
    g = cfg.grpo
    if g.rm_norm not in ("group", "sigmoid"):
        raise R1VError(f"grpo.rm_norm={g.rm_norm!r}; choose group or sigmoid")
    if not (math.isfinite(g.rm_clip) and g.rm_clip > 0) or not (math.isfinite(g.rm_scale) and g.rm_scale > 0):
        raise R1VError("grpo.rm_clip and grpo.rm_scale must be positive numbers")
    if not (g.dual_clip == 0 or (math.isfinite(g.dual_clip) and g.dual_clip > 1)):
        raise R1VError(f"grpo.dual_clip={g.dual_clip}: 0 (off) or a bound above 1 (3 is usual)")
    if g.ssb.when not in ("vanishing", "always"):
        raise R1VError(f"grpo.ssb.when={g.ssb.when!r}; choose vanishing or always")
    for key in ("target", "max_share"):
        if not 0 <= getattr(g.ssb, key) <= 1:
            raise R1VError(f"grpo.ssb.{key}={getattr(g.ssb, key)} is a share of the step's groups, in 0..1")
    if g.critical not in ("forks", "words"):
        raise R1VError(f"grpo.critical={g.critical!r}; choose forks or words")
    if not 0 < g.critical_share <= 1:
        raise R1VError(f"grpo.critical_share={g.critical_share} is a share of the reasoning's tokens, in (0, 1]")
    if g.critical == "words" and not g.critical_words:
        raise R1VError("grpo.critical=words needs grpo.critical_words (e.g. [wait, but, so])")
    if g.select not in ("last", "entropy"):
        raise R1VError(f"grpo.select={g.select!r}; choose last or entropy")
    if g.select == "entropy" and not g.eval_every:
        raise R1VError("grpo.select=entropy chooses among the checkpoints made every grpo.eval_every steps: set "
                       "grpo.eval_every (e.g. 10)")
    if cfg.grpo.hallucination_ceiling > 1:
        raise R1VError("grpo.hallucination_ceiling is a share of outputs, in 0..1 (0: off)")
    if cfg.mpo.dpo_weight + cfg.mpo.bco_weight + cfg.mpo.nll_weight == 0:
        raise R1VError("mpo.dpo_weight, bco_weight and nll_weight are all 0: MPO would train nothing")
    if cfg.grpo.generations_per_prompt < 2:
        raise R1VError("grpo.generations_per_prompt must be at least 2: GRPO's advantage compares a group")
    _check_trackers(cfg.tracking)
    for stage, keys in (("align", ("vision", "substitute")), ("transfer", ("reasoning",))):
        for k in keys if stage in cfg.stages else ():
            if not getattr(cfg.model, k):
                raise R1VError(f"model.{k} is not set: name a model folder (recipes/r1v-1.5b-1gpu.yaml names all "
                               f"three)")
    if cfg.model.template not in ("r1v", "r1v3"):
        raise R1VError(f"model.template={cfg.model.template!r}; choose r1v or r1v3")
    return cfg


TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}


def _check_trackers(names: list[str]) -> None:
    import importlib.util

    for name in names:
        if name not in TRACKERS:
            raise R1VError(f"tracking: unknown tracker {name!r}; choose from {', '.join(TRACKERS)} (or [] for none)")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise R1VError(f"tracking: {name} is not installed; `pip install {TRACKERS[name]}`, or drop it from "
                           f"tracking")


