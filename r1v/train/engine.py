"""What runs under accelerate: each stage's model prepared once, every trained forward through the
engine, checkpoints saved by it.

    engine = Engine(model, parts, weight_decay=0.05, max_grad_norm=1.0)   # Accelerator + AdamW, prepared once
    out = engine(lm_forward, inputs=..., samples=...)       # fn(model, **kw) inside the engine's forward
    engine.step()                                           # clip, AdamW, zero the gradients
    state = engine.state_dict()                             # whole, gathered (ZeRO-3, FSDP), every process

Why a forward that takes a function: DDP reduces, and FSDP and ZeRO-3 gather, around the wrapped
module's forward. The projector applied to cached features, the LM loss, and GRPO's prompt-then-
completions pass (two model calls that share a KV cache) all have to happen inside it, or FSDP
sees sharded weights and DDP's reducer sees a second forward. `TrainModule.forward(fn, **kw)` runs
`fn(model, **kw)` there, so each of those is one engine forward.

Generation (rollouts, held-out scoring, E_{t-1}, MPO's reference log-probs) runs on the whole model
under the precision the trained forward runs in (accelerate's autocast: with fp32 weights under
`--mixed_precision bf16` a reference pass outside it would differ from the policy's by bf16's
rounding, and rollouts would run in fp32), with no collective in it, so processes may generate
different prompts and lengths: `generating()` uses TRL's
`unwrap_model_for_generation` for ZeRO-3 (weights gathered, DeepSpeed's hooks off), and for FSDP2
unshards every unit and keeps it unsharded until generation ends; DDP needs nothing; FSDP1 is
refused (its forward cannot run inside summon_full_params). DDP and FSDP2 are tested on two CPU
processes, every stage (tests/test_sharded.py), and so is ZeRO-3 where DeepSpeed is installed (not
in CI); ZeRO-2 was run by hand (equal to DDP on align, transfer and SFT).

`Checkpoints`: mid-stage checkpoints by accelerate's `save_state` (trainable weights, optimiser,
every process's RNG) plus `position.json` (where in the stage: pass, SFT iteration, step), written
to `step-N.partial` and renamed when whole, the last `keep_last` kept. A stage that starts finds the
newest one and resumes inside it; data order is a function of (seed, step) (`data.schedule`), so the
resumed run reads the rows the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import torch

from r1v.train.config import CheckpointConfig, Parts


def processes():
    """accelerate's view of the launched processes (`PartialState`), made the way `Accelerator` makes
    it: with ACCELERATE_USE_CPU=true, several processes on CPUs are DDP over gloo. A bare
    `PartialState()` ignores that variable, and on a machine without GPUs every process would then
    think it is alone (rank 0 of 1), each training on the whole batch and writing every file."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


class TrainModule(torch.nn.Module):
    """The R1V model as the engine wraps it: `forward(fn, **kw)` is `fn(model, **kw)`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, fn, **kw):
        return fn(self.model, **kw)

    # TRL's unwrap_model_for_generation (ZeRO-3) asks the module it unwraps about these
    @property
    def is_gradient_checkpointing(self) -> bool:
        return getattr(self.model, "is_gradient_checkpointing", False)

    def gradient_checkpointing_enable(self, **kw):
        self.model.gradient_checkpointing_enable(**kw)

    def gradient_checkpointing_disable(self):
        self.model.gradient_checkpointing_disable()


class Engine:
    def __init__(self, model, parts: Parts, *, weight_decay: float = 0.0, betas=(0.9, 0.95),
                 max_grad_norm: float = 1.0, dropout: bool = True):
        """`dropout=False` zeroes every dropout layer (TRL's DPO and reward trainers do so by default): the
        preference and RL stages compare one model's log-probs across forwards (policy against reference,
        now against sampling time), which dropout would make differ with the weights unchanged."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        from r1v.train.loop import set_parts

        self.acc = Accelerator()
        if not dropout:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
                if isinstance(getattr(m, "attention_dropout", None), float):  # transformers' attention: a float
                    m.attention_dropout = 0.0                                 # passed to the kernel in training
        if self.acc.distributed_type == DistributedType.DEEPSPEED:
            from transformers.integrations import unset_hf_deepspeed_config

            # accelerate registers its DeepSpeed config with transformers (whatever zero3_init_flag says), and
            # under ZeRO-3 transformers would then load every later `from_pretrained` partitioned (the next
            # stage's model, the reward model, the report's example: each process would hold empty shards
            # outside any engine) and make every `generate` a collective (synced_gpus). r1v loads models
            # whole, `prepare` partitions the one that trains, and generation runs on gathered weights with
            # no collective (`generating`), so transformers is told nothing.
            unset_hf_deepspeed_config()
        self.steps = 0  # optimiser steps taken (vLLM rollouts sync the weights when it moves)
        set_parts(model, parts)
        self.lora = parts.lora_rank > 0 and not parts.language
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=0.0, weight_decay=weight_decay, betas=betas)
        plugin = self.acc.state.deepspeed_plugin if self.acc.distributed_type == DistributedType.DEEPSPEED else None
        if plugin is not None and plugin.deepspeed_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            # r1v makes its own micro-batches (no DataLoader goes to prepare); DeepSpeed still wants a number
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        if plugin is not None:
            # DeepSpeed clips inside its own step, at its config's `gradient_clipping` (accelerate's
            # clip_grad_norm_ only reads the norm back), so the stage's setting goes into the config before
            # `prepare` reads it: the recipe's max_grad_norm holds under every engine, not the accelerate
            # config file's one value for all stages. 0 turns clipping off, as in `step`.
            plugin.deepspeed_config["gradient_clipping"] = float(max_grad_norm)
        self.max_grad_norm = max_grad_norm
        self.module, self.opt = self.acc.prepare(TrainModule(model), opt)
        if self.acc.num_processes > 1 and self.acc.distributed_type in (DistributedType.FSDP,
                                                                         DistributedType.DEEPSPEED):
            from r1v.train.samples import LOCKSTEP

            setattr(model, LOCKSTEP, True)  # every process runs the vision encoder in every forward
        if self.lora and self.acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            from r1v.errors import R1VError

            raise R1VError("LoRA (parts.lora_rank) is merged into the weights on save, which r1v does only "
                           "unsharded: use DDP (accelerate launch --multi_gpu) or parts.language=true")
        # A checkpoint holds what trains: a projector-only stage of a 38B model saves megabytes, not 76 GB
        # (sharded engines save their own shards, all of them).
        self.acc.register_save_state_pre_hook(self._trainable_only)

    def __call__(self, fn, **kw):
        return self.module(fn=fn, **kw)

    @property
    def model(self):
        """The R1V model itself (its weights are shards under FSDP / ZeRO-3: see `generating`)."""
        return self.acc.unwrap_model(self.module).model

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def reset_moments(self) -> None:
        """A fresh optimiser state for a new pass (the paper's passes and SFT iterations are separate
        runs). Under DeepSpeed the torch AdamW sits inside ZeRO's optimiser, on its flat partitions;
        its state is made again at the next step."""
        inner = self.opt
        while hasattr(inner, "optimizer"):  # accelerate's wrapper (-> DeepSpeed's ZeRO optimiser) -> AdamW
            inner = inner.optimizer
        if isinstance(inner, torch.optim.Optimizer):
            inner.state.clear()

    def step(self) -> None:
        if self.max_grad_norm:
            self.acc.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.steps += 1

    def no_sync(self, last: bool):
        """Gradient accumulation: DDP reduces only at a step's last micro-batch; DeepSpeed, whose
        backward also steps, steps only there."""
        from accelerate.utils import DistributedType

        if self.acc.distributed_type == DistributedType.DEEPSPEED:
            return self._deepspeed_accumulating(last)
        return contextlib.nullcontext() if last else self.acc.no_sync(self.module)

    @contextlib.contextmanager
    def _deepspeed_accumulating(self, last: bool):
        self.acc.gradient_state._set_sync_gradients(last)
        try:
            yield
        finally:
            self.acc.gradient_state._set_sync_gradients(True)

    @contextlib.contextmanager
    def generating(self):
        """The whole model, in eval mode, for `generate` and other per-process forwards (held-out
        scoring); no collective runs inside (see above). Every process enters it together."""
        from accelerate.utils import DistributedType

        model = self.model
        was = model.training
        model.eval()
        kind = self.acc.distributed_type
        with torch.no_grad(), self.acc.autocast():
            if kind == DistributedType.DEEPSPEED and self.acc.state.deepspeed_plugin.zero_stage == 3:
                try:
                    from trl.models import unwrap_model_for_generation
                except ImportError:
                    from r1v.errors import R1VError

                    raise R1VError("generation under ZeRO-3 uses TRL's unwrap_model_for_generation: pip install trl") \
                        from None
                with unwrap_model_for_generation(self.module, self.acc) as unwrapped:
                    yield unwrapped.model
            elif kind == DistributedType.FSDP:
                if getattr(self.acc.state.fsdp_plugin, "fsdp_version", 1) != 2:
                    from r1v.errors import R1VError

                    raise R1VError("r1v generates under FSDP2 only: set fsdp_version: 2 (recipes/accelerate/fsdp.yaml)")
                from torch.distributed.fsdp import FSDPModule

                # FSDP2 makes the first unit to run forward the root. A generation before any training
                # forward (GRPO's first rollouts) would make a vision layer the root and break the
                # next training step, so an empty forward through the engine settles the root first.
                self(lambda model: None)
                units = [m for m in self.module.modules() if isinstance(m, FSDPModule)]
                for m in units:
                    m.unshard()
                    m.set_reshard_after_forward(False)
                try:
                    yield model
                finally:
                    for m in units:
                        m.set_reshard_after_forward(True)
                        m.reshard()
            else:
                yield model
        model.train(was)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's weights (gathered: ZeRO-3, FSDP); every process must call it, and under
        ZeRO-3 only the main process gets them (the others: {}). LoRA is folded in (unsharded only),
        so a checkpoint is a plain R1V model."""
        state = self.acc.get_state_dict(self.module) or {}  # ZeRO-3 gathers onto the main process only
        state = {k.removeprefix("model."): v for k, v in state.items()}
        if self.lora:
            from r1v.train.loop import plain_state

            state = plain_state(self.model, state)
        return state

    def _trainable_only(self, models, weights, output_dir) -> None:
        trainable = {n for n, p in self.module.named_parameters() if p.requires_grad}
        trainable |= {n.removeprefix("module.") for n in trainable}
        for k, w in enumerate(weights):
            weights[k] = {n: t for n, t in w.items() if n in trainable or n.removeprefix("module.") in trainable}


class Checkpoints:
    """Mid-stage checkpoints of one stage under `folder` (`<run>/checkpoints/<stage>/`)."""

    def __init__(self, folder: Path, cfg: CheckpointConfig, *, setting: dict | None = None,
                 since: float | None = None):
        """`since`: when the stage's work began (`time.perf_counter()`), its set-up included; default now."""
        self.folder, self.cfg, self.state = folder, cfg, processes()
        self.setting = json.loads(json.dumps(setting or {}))  # as it reads back from position.json
        self.last = time.monotonic()
        self.started = time.perf_counter() if since is None else since
        # the seconds earlier attempts spent on the work the resumed checkpoint holds (what they spent
        # after it is done again, and counted then): a stage records them with its own
        self.earlier = 0.0

    def due(self, step: int) -> bool:
        """Every `every_steps` steps or `every_minutes` minutes (the main process's clock decides
        for all, so every process saves at the same step)."""
        by_steps = self.cfg.every_steps > 0 and step % self.cfg.every_steps == 0
        by_time = self.cfg.every_minutes > 0 and time.monotonic() - self.last >= 60 * self.cfg.every_minutes
        flag = [by_steps or by_time]
        if self.state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            flag = broadcast_object_list(flag)
        return bool(flag[0])

    def save(self, engine: Engine, step: int, position: dict, *, phase: int = 0, local: dict | None = None) -> Path:
        """`phase`: the align pass or SFT iteration, so checkpoints sort in the order they were made
        (steps restart in every pass). `local`: each process's own state (GRPO's sample buffer),
        `torch.save`d as `local-<rank>.pt`."""
        final = self.folder / f"step-{phase:03d}-{step:08d}"
        tmp = final.with_name(final.name + ".partial")
        if self.state.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.state.wait_for_everyone()
        engine.acc.save_state(str(tmp))
        if local is not None:
            torch.save(local, tmp / f"local-{self.state.process_index}.pt")
        self.state.wait_for_everyone()
        if self.state.is_main_process:
            from r1v.io import write_json

            seconds = round(self.earlier + time.perf_counter() - self.started, 1)
            write_json(tmp / "position.json", {**position, "seconds": seconds, "setting": self.setting})
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)  # the checkpoint exists whole, or not at all
            for old in self.complete()[: -self.cfg.keep_last]:
                # renamed first (atomic): a kill in the middle of the deletion leaves a `.partial`
                # folder, never a half-deleted checkpoint that `complete()` would offer to resume from
                doomed = old.with_name(old.name + ".old.partial")
                old.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        self.state.wait_for_everyone()
        self.last = time.monotonic()
        return final

    def complete(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("step-*") if p.is_dir() and not p.name.endswith(".partial")
                      and (p / "position.json").is_file())

    def peek(self) -> dict | None:
        """The newest whole checkpoint's position, if it was saved under these settings."""
        found = self.complete()
        if not found:
            return None
        position = json.loads((found[-1] / "position.json").read_text())
        if position.pop("setting", None) != self.setting:
            if self.state.is_main_process:
                print(f"{found[-1]} was saved under other settings: the stage starts afresh")
            return None
        return {**position, "path": str(found[-1])}

    def resume(self, engine: Engine) -> dict | None:
        """Load the newest whole checkpoint into the engine; its position, or None (start afresh)."""
        from accelerate.utils import DistributedType

        position = self.peek()
        if position is None:
            if self.complete():  # made under other settings: they would outrank the new ones in the rotation
                self._remove()
            return None
        # non-strict: the checkpoint holds the trainable weights only (DeepSpeed loads its own shards)
        strict = {} if engine.acc.distributed_type == DistributedType.DEEPSPEED else {"strict": False}
        engine.acc.load_state(position["path"], **strict)
        local = Path(position["path"]) / f"local-{self.state.process_index}.pt"
        if local.is_file():
            position["local"] = torch.load(local, weights_only=True)
        self.earlier = position.get("seconds", 0.0)
        if self.state.is_main_process:
            print(f"resuming from {position['path']}")
        return position

    def clear(self) -> None:
        """The stage is done (its checkpoint saved, `Context.mark_done` called with `earlier`): its
        mid-stage checkpoints go, and the clock starts again for the next piece of work (an SFT
        iteration, an MPO round)."""
        self.earlier, self.started = 0.0, time.perf_counter()
        self._remove()

    def _remove(self) -> None:
        if self.state.is_main_process:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.state.wait_for_everyone()
