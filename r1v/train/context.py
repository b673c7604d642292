"""What every stage shares: the run folder, the backbones, the data, held-out scoring, checkpoints.

    ctx = Context(load_recipe("recipes/tiny.yaml"))
    model = ctx.assemble(ctx.cfg.model.substitute)        # vision + fresh projector + LLM
    data = ctx.data("align_full", encoder)                # streamed rows (r1v/train/data.py)
    ctx.save(model, "align", tok, state=engine.state_dict())   # runs/<name>/align/
    ctx.evaluate(model, tok, "align")                     # held-out scores into results.json

Run folder (`runs/<name>/`):
    recipe.yaml          the resolved config (overrides applied)
    <stage>/             a checkpoint per stage (transformers layout, `r1v chat --model` loads it)
    checkpoints/<stage>/ mid-stage checkpoints (r1v/train/engine.py), deleted when the stage is done
    metrics.jsonl        one line per logged training step, every stage
    results.json         held-out scores per stage, stage timings, which stages are done
    report.md, plots/    `r1v recipe report`
A stage whose checkpoint and results entry exist is done; `r1v recipe run` skips it, and a stage
that starts resumes from its newest mid-stage checkpoint, so a crashed run loses at most
`checkpoint.every_minutes` of work. Both hold only while the stage's inputs (`Context.inputs`: its
settings, the content of the backbones and files it reads, the model it starts from) are those it
was started with; otherwise it runs again, and so does every stage after it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import torch

from r1v.errors import R1VError
from r1v.io import content_digest, folder_files, write_json, write_jsonl
from r1v.train.config import STAGES, RecipeConfig
from r1v.train.loop import Metrics, _flat

# Settings that change how fast a stage runs or how much memory it takes, not what it is trained
# to do: the same loss up to the order of float sums (micro-batches, packing, the feature cache), or
# samples drawn in other chunks, alike in distribution (GRPO's micro_groups in the pool filter, MPO's
# micro_prompts). A run resumed with another value, a smaller micro-batch after running out of
# memory, keeps its finished stages and resumes its mid-stage checkpoint.
SPEED_ONLY = frozenset({"micro_batch_per_device", "micro_groups", "micro_prompts", "eval_batch_pairs",
                        "cache_features", "pack", "pack_length"})


class Context:
    def __init__(self, cfg: RecipeConfig):
        from r1v.train.engine import processes

        self.cfg = cfg
        self.dir = cfg.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        # Under `accelerate launch` every process runs the recipe; only the main one writes files.
        self.state = processes()
        self.main = self.state.is_main_process
        self.metrics = Metrics(self.dir / "metrics.jsonl" if self.main else None, tracking=cfg.tracking,
                               name=cfg.name, config=dataclasses.asdict(cfg))
        self.results_path = self.dir / "results.json"
        self.results = json.loads(self.results_path.read_text()) if self.results_path.exists() else \
            {"stages": {}, "done": [], "data": {}}
        self._tokenizers: dict[str, object] = {}
        self._rows: dict[Path, tuple] = {}  # path -> (Rows, the fields checked)
        self._task = None
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.model.dtype)
        if self.dtype is None:
            raise R1VError(f"model.dtype={cfg.model.dtype!r}; choose fp32, bf16 or fp16")

    def write_config(self) -> None:
        """`recipe.yaml`: the settings the run goes on with (the report reads it). Written once the
        inputs are checked, so a command refused for a bad setting leaves the run's record as it was."""
        import yaml

        if self.main:
            (self.dir / "recipe.yaml").write_text(yaml.safe_dump(dataclasses.asdict(self.cfg), sort_keys=False))

    # ------------------------------------------------------------------ bookkeeping
    def done(self, stage: str) -> bool:
        if stage == "sft":  # done only if its last iteration (for the current sft.taus) is
            return "sft" in self.results["done"] and self.done(f"sft/m{len(self.cfg.sft.taus)}")
        if stage == "mpo":  # likewise its last round
            return "mpo" in self.results["done"] and self.done(f"mpo/r{self.cfg.mpo.rounds}")
        return stage in self.results["done"] and (self.dir / stage).exists()

    def policy_before(self, stage: str) -> str:
        """The model a policy stage starts from: the last of transfer, SFT, MPO that this recipe runs
        before it (R1V: GRPO after SFT; R1V2: MPO after transfer, GRPO after MPO)."""
        before = [s for s in ("transfer", "sft", "mpo") if STAGES.index(s) < STAGES.index(stage)
                  and (s in self.cfg.stages or self.done(s))]
        last = before[-1] if before else "transfer"
        return {"sft": f"sft/m{len(self.cfg.sft.taus)}", "mpo": f"mpo/r{self.cfg.mpo.rounds}"}.get(last, last)

    def forget(self, stage: str, *, itself: bool = True) -> None:
        """Mark `stage` and every stage after it as not done (they were built on what it replaces);
        `itself=False`: only the stages after it (it resumes; they start from its new making)."""
        later = STAGES[STAGES.index(stage) + (0 if itself else 1):]
        if self.main:
            for s in later:
                import shutil

                shutil.rmtree(self.dir / "checkpoints" / s, ignore_errors=True)
                self.metrics.forget(s)
        self.state.wait_for_everyone()
        gone = [s for s in self.results["done"] if s.split("/")[0].split("@")[0] in later]
        self.results["done"] = [s for s in self.results["done"] if s not in gone]
        for s in list(self.results["stages"]):
            if s.split("/")[0].split("@")[0] in later:
                del self.results["stages"][s]
        self.save_results()

    def mark_done(self, stage: str, seconds: float, **extra) -> None:
        import uuid

        from r1v.io import peak_rss_mb

        # this making of the stage (or SFT iteration, MPO round), which the stages that start from it
        # record: the main process's, on every process
        extra["made"] = self.everyone(uuid.uuid4().hex[:12])[0]
        self.results["stages"].setdefault(stage, {}).update(
            seconds=round(seconds, 1), peak_rss_mb=round(peak_rss_mb()), processes=self.state.num_processes,
            **extra)
        if stage not in self.results["done"]:
            self.results["done"].append(stage)
        self.save_results()

    # ------------------------------------------------------------------ what a stage is made from
    def starts_from(self, stage: str) -> str | None:
        """What `stage` starts from: a finished stage of this run (align, transfer, sft/m4, mpo/r3, ...)
        or a model folder; None for align (it assembles the backbones)."""
        base = {"rm": self.cfg.rm.base, "grpo": self.cfg.grpo.base}.get(stage)
        if base:
            return base
        return {"transfer": "align", "sft": "transfer", "mpo": self.policy_before("mpo"),
                "grpo": self.policy_before("grpo")}.get(stage)

    def reads(self, stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The backbones (`model.*` settings) and data files (`data.*`) `stage` trains from."""
        prompts = "prompts" if self.cfg.data.prompts else "sft"  # MPO's and GRPO's prompts
        passes = tuple(f"align_{p.name}" for p in self.cfg.align.passes)
        return {"align": (("vision", "substitute"), passes), "transfer": (("reasoning",), ()), "sft": ((), ("sft",)),
                "rm": ((), ("rm_train",)), "mpo": ((), (prompts,)), "grpo": ((), (prompts,))}[stage]

    def inputs(self, stage: str) -> dict:
        """What `stage` makes its model from, as flat settings: its section of the recipe (less the
        SPEED_ONLY settings), the seed, task and model settings, the content digest of every backbone,
        data file and model folder it reads (not their paths: a moved folder is the same input), and
        which making of the stage it starts from (`made`, new each time that stage is done). An input
        that cannot be read is "missing" (`check` says so, where the stage is to run). Held-out
        scoring, checkpointing and rollout engines are not inputs: they do not change what is trained,
        save where GRPO stops on the held-out hallucination rate (`grpo.hallucination_action: stop`).
        Computed by the main process (each file read once) and shared with the others."""
        return self.everyone(self._inputs(stage) if self.main else None)[0]

    def _inputs(self, stage: str) -> dict:
        c = self.cfg
        out = {"seed": c.seed, "data.task": c.data.task,
               **{f"model.{k}": getattr(c.model, k) for k in ("max_tiles", "template", "dtype")}}
        out.update({k: v for k, v in _flat(dataclasses.asdict(getattr(c, stage)), f"{stage}.").items()
                    if k.split(".")[-1] not in SPEED_ONLY})
        out.pop(f"{stage}.base", None)  # rm.base, grpo.base: a path or a stage, which `from` stands for
        if stage == "grpo" and not c.data.prompts:  # the pool is D_rm(tau), scored by SFT's reward model
            out["sft.reward_model"] = c.sft.reward_model
        if stage == "grpo" and c.grpo.eval_every and c.grpo.hallucination_ceiling \
                and c.grpo.hallucination_action == "stop":  # where it stops is read off the held-out scoring
            out.update({"data.eval_limit": c.data.eval_limit, "eval.max_new_tokens": c.eval.max_new_tokens,
                        "data.eval_visual": _digest(c.data.eval_visual, shards=True)})
        models, files = self.reads(stage)
        for m in models:
            out[f"model.{m}"] = _digest(getattr(c.model, m))
        for key in files:
            out[f"data.{key}"] = _digest(getattr(c.data, key), shards=True)
        refs = {"from": self.starts_from(stage) or ""}
        if stage in ("mpo", "grpo"):
            refs[f"{stage}.reward_model"] = getattr(c, stage).reward_model or "rm"  # empty: this run's rm stage
        for key, ref in refs.items():
            if ref.split("/")[0] in STAGES:
                out[key] = f"{ref}, made {self.results['stages'].get(ref, {}).get('made', '?')}"
            elif ref and ref != "none" and not ref.startswith(("http://", "https://")):
                out[key] = _digest(ref)
        return out

    def changed(self, stage: str) -> dict | None:
        """{input: its value now} for the inputs that differ from those `stage` was started with
        ("missing": it cannot be read now); None when it was never started, or was made before r1v
        recorded them."""
        was = self.results["stages"].get(stage, {}).get("inputs")
        if was is None:
            return None
        now = json.loads(json.dumps(self.inputs(stage)))  # as it reads back from results.json
        return {k: now.get(k) for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k)}

    def newer_inputs(self, stage: str) -> list[str]:
        """For a finished stage made before r1v recorded its inputs: the backbones and data files it
        reads that were written after it (a backbone an r1v upgrade replaced)."""
        made = [f.stat().st_mtime for _, f in folder_files(self.dir / stage)]
        if not made:
            return []
        models, files = self.reads(stage)
        paths = {f"model.{m}": getattr(self.cfg.model, m) for m in models}
        paths.update({f"data.{k}": getattr(self.cfg.data, k) for k in files})
        newer = []
        for key, path in paths.items():
            try:
                found = folder_files(path) if Path(path).is_dir() else [(p.name, p) for p in _shards(path)]
            except (R1VError, OSError):
                continue
            if any(f.stat().st_mtime > max(made) for _, f in found):
                newer.append(key)
        return newer

    def begin(self, stage: str) -> None:
        """Record what `stage` is made from, as it starts."""
        self.results["stages"].setdefault(stage, {})["inputs"] = self.inputs(stage)
        self.save_results()

    def save_results(self) -> None:
        if self.main:
            write_json(self.results_path, self.results)

    # ------------------------------------------------------------------ backbones
    def resolve(self, ref: str, setting: str = "") -> str:
        """A model setting's folder, which must exist; `setting` names it in the error."""
        if not Path(ref).exists():
            where = f"{setting}: " if setting else ""
            raise R1VError(f"{where}{ref} not found: a model folder (for recipes/tiny.yaml: r1v world build, then "
                           f"r1v world data)")
        return ref

    def tokenizer(self, language: str):
        from r1v.model.tokenizer import add_r1v_tokens, load_tokenizer

        path = self.resolve(language)
        if path not in self._tokenizers:
            tok = load_tokenizer(path)
            add_r1v_tokens(tok)
            self._tokenizers[path] = tok
        return self._tokenizers[path]

    def assemble(self, language: str, *, seed: int | None = None):
        """Vision encoder + a freshly initialised projector + `language` (Stage 0's starting point)."""
        from r1v.model.builder import build_r1v

        return build_r1v(vision=self.resolve(self.cfg.model.vision), language=self.resolve(language),
                         tokenizer=self.tokenizer(language), dtype=self.dtype,
                         seed=self.cfg.seed if seed is None else seed)

    def save(self, model, stage: str, tokenizer, *, state: dict | None = None) -> Path:
        """The stage's checkpoint; `state`: the weights gathered from the engine (`Engine.state_dict`,
        which every process calls), else the model's own."""
        from r1v.model.checkpoint import save_model

        if self.main:
            save_model(model, tokenizer, self.dir / stage, max_tiles=self.cfg.model.max_tiles, state_dict=state)
        self.state.wait_for_everyone()
        return self.dir / stage

    @property
    def workers(self) -> int:
        """DataLoader workers (`data.workers`; -1: automatic). On a CPU they compete with the trainer
        for the same cores: bench/scale.py on 2 cores, streamed samples/s against encoding everything
        up front: 1.13x with 0 workers, 0.91x with 1, 0.83x with 2."""
        if self.cfg.data.workers >= 0:
            return self.cfg.data.workers
        if self.state.device.type == "cpu":
            return 0
        import os

        return max(1, min(8, (os.cpu_count() or 2) // max(1, self.state.num_processes) - 1))

    def checkpoints(self, stage: str, *, since: float | None = None):
        """The stage's mid-stage checkpoints (`r1v/train/engine.py`); `since`: when the stage began
        (`time.perf_counter()`), so that a checkpoint's seconds include the set-up before it."""
        from r1v.train.engine import Checkpoints

        # A checkpoint made from other inputs is not resumed (`r1v train STAGE` and a stage's own code
        # reach here without `r1v recipe run`'s check).
        return Checkpoints(self.dir / "checkpoints" / stage, self.cfg.checkpoint, setting=self.inputs(stage),
                           since=since)

    def feature_cache(self, name: str):
        """A bounded cache of frozen-encoder features for one stage's rows (`data.feature_cache_*`)."""
        from r1v.train.data import FeatureCache

        d = self.cfg.data
        folder = self.dir / "cache" / f"{name.replace('/', '-')}-{self.state.process_index}"
        if d.feature_cache_disk_mb:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # a previous run's (the model may have changed)
        return FeatureCache(memory_mb=d.feature_cache_mb, disk_mb=d.feature_cache_disk_mb, folder=folder)

    def load_model(self, ref: str):
        """(model, tokenizer) of `ref`: a finished stage of this run (transfer, sft/m4, ...) or a model folder."""
        if ref.split("/")[0] in STAGES:
            return self.load(ref)
        from r1v.model.checkpoint import load_model

        model, tok, _ = load_model(self.resolve(ref), dtype=self.dtype)
        return model, tok

    def load(self, stage: str):
        """(model, tokenizer) of a finished stage's checkpoint."""
        from r1v.model.checkpoint import load_model

        if not self.done(stage):
            raise R1VError(f"{self.dir / stage} is missing or stale: run the `{stage}` stage first "
                           f"(r1v recipe run, or r1v train {stage.split('/')[0]})")
        model, tok, _ = load_model(self.dir / stage, dtype=self.dtype)
        return model, tok

    # ------------------------------------------------------------------ data
    @property
    def task(self):
        if self._task is None:
            from r1v.evaluate.tasks import get_task

            self._task = get_task(self.cfg.data.task)
        return self._task

    def data_file(self, key: str) -> Path:
        """The JSONL behind a data setting (a file, a folder of shards or a glob; checked by `rows`)."""
        path = getattr(self.cfg.data, key)
        if not path:
            raise R1VError(f"data.{key} is not set: give JSONL in the task's format (see r1v/train/samples.py)")
        if not any(c in path for c in "*?[") and not Path(path).exists():
            raise R1VError(f"data.{key}: {path} does not exist (a recipe's header says how its files are made; "
                           f"the mini-world recipes': r1v world build && r1v world data)")
        return Path(path)

    def check(self, stages, *, rerun: bool = False, reward_model: bool = True) -> None:
        """Every backbone and data file the `stages` need, read and checked before any of them runs
        (a bad row in the SFT data is found now, not after the align stage). `rerun`: the stages run
        even if done (`r1v train STAGE`), so they are checked even then; `reward_model=False`: the
        command does not use the stage's reward model (`r1v train grpo-filter`)."""
        if self.cfg.rollout.engine == "vllm" and {"sft", "mpo", "grpo"} & set(stages):
            from r1v.train.vllm import available

            missing = available()
            if missing:
                raise R1VError(missing)
        for stage in stages:
            if self.done(stage) and not rerun:
                continue
            if stage == "rm":
                if self.cfg.data.rm_eval:
                    self.rows("rm_eval", need=("id", "prompt", "chosen", "rejected"))
            if stage in ("mpo", "grpo") and reward_model:
                self._check_reward_model(stages, f"{stage}.reward_model")
            if stage == "grpo" and self.cfg.grpo.prompts_per_step < self.state.num_processes:
                raise R1VError(f"grpo.prompts_per_step={self.cfg.grpo.prompts_per_step} is fewer than the "
                               f"{self.state.num_processes} processes: give each at least one prompt")
            prev = self.starts_from(stage)
            top = (prev or "").split("/")[0]
            if prev and top not in STAGES:  # a model folder: it must exist, and no stage of this run need run first
                if not Path(prev).exists():
                    raise R1VError(f"{stage}.base={prev} not found: name a finished stage of this run (transfer, "
                                   f"mpo/r4, ...) or an R1V model folder")
            elif prev and top not in stages and not self.done(prev):
                raise R1VError(f"the {stage} stage starts from the {top} stage's model, and {self.dir / prev} does "
                               f"not hold it yet; run `r1v train {top}` with this recipe first, or `r1v recipe run`")
            models, files = self.reads(stage)
            for m in models:
                self.resolve(getattr(self.cfg.model, m), f"model.{m}")
            for key in files:
                need = {"rm_train": ("id", "prompt", "chosen", "rejected"), "prompts": ("id",)}.get(key)
                self.rows(key, need=need or (("id",) if stage == "mpo" else ("id", "response")))
        for key in ("eval_visual", "eval_text"):
            if getattr(self.cfg.data, key):
                self.rows(key)

    def _check_reward_model(self, stages, setting: str) -> None:
        ref = getattr(getattr(self.cfg, setting.split(".")[0]), "reward_model")
        if ref == "" and "rm" not in stages and not self.done("rm"):
            raise R1VError(f"{setting} is empty, which means this run's `rm` stage, and it has not run: run `r1v "
                           f"train rm` with this recipe first (or `r1v recipe run`, with rm in `stages`), name a "
                           f"reward model folder or URL, or set {setting}=none")
        if ref.startswith(("http://", "https://")):
            from r1v.train.rm import RemoteReward

            RemoteReward(ref, timeout=30).ping(setting)
        elif ref and ref != "none":
            from r1v.model.reward import is_reward_model

            if not is_reward_model(self.resolve(ref)):
                raise R1VError(f"{setting}={ref}: not a reward model folder (`r1v train rm` writes one)")

    def rows(self, key: str, *, need: tuple[str, ...] = ("id",)):
        """The rows of a data file, read lazily (`r1v/train/data.py`'s Rows: an offset index, no rows
        held); every row is checked for the fields in `need` once, before any training."""
        from r1v.train.data import Rows

        path = self.data_file(key)
        if not key.startswith("rm_"):  # the task's reader needs its fields too (pairs are not task rows)
            need = tuple(need) + tuple(getattr(self.task, "columns", ()))
        have = self._rows.get(path)
        if have is None or not set(need) <= set(have[1]):
            need = tuple(sorted(set(need) | set(have[1] if have else ())))
            self._rows[path] = (Rows(path, need=need), need)
            if self.results["data"].get(key) != len(self._rows[path][0]):
                self.results["data"][key] = len(self._rows[path][0])
                self.save_results()
        return self._rows[path][0]

    def data(self, key: str, encoder, *, field: str = "response", revised=(), subset=None):
        """A data file (or the rows `subset` of it) as Samples, encoded on demand (in DataLoader
        workers: `data.workers`)."""
        from r1v.train.data import Encoded

        rows = self.rows(key, need=("id", field) if field else ("id",))
        return Encoded(rows, self.task, encoder, field=field, revised=revised, subset=subset)

    def images(self, key: str, samples) -> list[list[bytes]]:
        """Each sample's images, read again from its row of the data file `key` (streamed samples keep
        pixels, not the pictures; vLLM takes the pictures)."""
        rows = self.rows(key)
        return [self.task.read_row(rows[s.index], root=rows.root(s.index)).images for s in samples]

    def stream(self, data, indices, batch_size: int):
        """Encoded chunks of `data` at `indices`, in order, made ahead by the workers."""
        from r1v.train.data import chunked, loader

        return loader(data, chunked(indices, batch_size), workers=self.workers, seed=self.cfg.seed)

    def from_main(self, value):
        """The main process's `value`, on every process (one process: `value`): a decision made once."""
        if self.state.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def everyone(self, value) -> list:
        """`value` from every process, in rank order (one process: `[value]`)."""
        if self.state.num_processes == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    # ------------------------------------------------------------------ held-out scoring
    def evaluate(self, model, tokenizer, stage: str, *, rollouts=None) -> dict:
        """Greedy accuracy on the held-out visual and text-only files (the first `data.eval_limit`
        rows, streamed); stored under the stage. `model`: whole (see `Engine.generating`);
        `rollouts`: vLLM's (`r1v/train/vllm.py`) in its place."""
        from r1v.train.rollout import score
        from r1v.train.samples import Encoder

        t0 = time.perf_counter()
        enc = Encoder(model, tokenizer, template=self.cfg.model.template, max_tiles=self.cfg.model.max_tiles)
        out = {}
        for kind in ("visual", "text"):
            key = f"eval_{kind}"
            if not getattr(self.cfg.data, key):
                continue  # this held-out file is not configured
            data = self.data(key, enc, field="")
            n = min(len(data), self.cfg.data.eval_limit) if self.cfg.data.eval_limit else len(data)
            mine = range(self.state.process_index, n, self.state.num_processes)  # each process scores its share
            scored = score(self.task, model, tokenizer, self.stream(data, mine, self.cfg.eval.batch_size),
                           n=len(mine), stop_id=enc.stop_id, max_new_tokens=self.cfg.eval.max_new_tokens,
                           desc=f"{stage}: {kind} test", rollouts=rollouts,
                           images=lambda chunk, key=key: self.images(key, chunk))
            if self.state.num_processes > 1:
                scored = _gathered(scored)
            out[kind] = scored.summary()
            self._write_outputs(stage, kind, scored)
        self.results["stages"].setdefault(stage, {})["eval"] = out
        self.results["stages"][stage]["eval_seconds"] = round(time.perf_counter() - t0, 1)
        self.save_results()
        return out

    def _write_outputs(self, stage: str, kind: str, scored) -> None:
        if not self.main:
            return
        path = self.dir / "outputs" / f"{stage.replace('/', '-')}-{kind}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        false = scored.hallucinated or [None] * len(scored.ids)
        groups = scored.groups or [{}] * len(scored.ids)  # the task's breakdown (`r1v eval compare --by`)
        write_jsonl(path, ({"id": i, "correct": ok, "hallucinated": h, "groups": g, "output": out}
                           for i, out, ok, h, g in zip(scored.ids, scored.outputs, scored.correct, false, groups)))


def _gathered(scored):
    """Every process's share of a scoring, as one (the same on every process)."""
    import dataclasses as dc

    from accelerate.utils import gather_object

    from r1v.train.rollout import Scored

    parts = gather_object([dc.asdict(scored)])
    keys = ("ids", "correct", "outputs", "lengths", "groups", "hallucinated")
    merged = {k: [x for part in parts for x in part[k] or []] for k in keys}
    n = len(merged["correct"])
    return Scored(accuracy=sum(merged["correct"]) / max(1, n), n=n, **merged)


def _shards(path: str) -> list[Path]:
    from r1v.train.data import shard_files

    return shard_files(path)


def _digest(path: str, *, shards: bool = False) -> str:
    """"content <digest>" of a model folder (`shards`: of the JSONL behind a data setting), or
    "missing"."""
    try:
        if shards:
            return "content " + content_digest((f.name, f) for f in _shards(path))
        if Path(path).exists():
            return "content " + content_digest(folder_files(path))
    except (R1VError, OSError):
        pass
    return "missing"


def check_pair(substitute_cfg, reasoning_cfg, *, warn_vocab: bool = True) -> None:
    """The transfer premise: both LLMs descend from one base (method.md)."""
    if substitute_cfg.hidden_size != reasoning_cfg.hidden_size:
        raise R1VError(f"the substitute LLM is {substitute_cfg.hidden_size} wide but the reasoning LLM "
                       f"{reasoning_cfg.hidden_size}: the projector cannot transfer; pick a substitute with the "
                       f"reasoning LLM's base (see ../shared/docs/method.md)")
    if warn_vocab and substitute_cfg.vocab_size != reasoning_cfg.vocab_size:
        warnings.warn(f"the substitute and reasoning LLMs have different vocabularies ({substitute_cfg.vocab_size} "
                      f"vs {reasoning_cfg.vocab_size}); are they from the same base?", stacklevel=2)
