"""Generation on vLLM for the training stages, through TRL's `VLLMGeneration` (no engine of r1v's own).

    r1v recipe run recipes/r1v-38b.yaml rollout.engine=vllm                      # colocated (TRL's colocate)
    trl vllm-serve --model runs/r1v-38b/sft/m4 &                                 # or a server on other GPUs
    r1v recipe run recipes/r1v-38b.yaml rollout.engine=vllm rollout.vllm_mode=server rollout.server_url=http://...

At the recipes' 8k-16k-token completions generation is GRPO's whole cost, and every RL framework
users pick (TRL, verl, EasyR1) runs it on vLLM. `VLLMRollouts` hands TRL the policy the engine trains
(`Engine.model`): TRL starts vLLM on the policy's folder, and `sync_weights` pushes the trained
weights (gathered under ZeRO-3 and FSDP) into it; r1v calls it before the first generation and after
every optimiser step since the last one (`Engine.steps`), so the rollouts are always on-policy.

What r1v gives vLLM: its own prompt ids (the template rendered, every image's `<IMG_CONTEXT>` run
expanded by transformers' processor at `model.max_tiles`), the images as PIL pictures (vLLM's
InternVL processor computes their pixels and must find one run of image tokens per image), the stop
token, and the sampling settings of the call (greedy for scoring). Departures, all documented:
* vLLM tiles and normalises the pixels itself; the trainer's log-probs use r1v's PIL-exact pixels, so
  a rollout can be a little off-policy (TRL's GRPO has the same gap and offers an importance-sampling
  correction; r1v's GRPO recomputes old log-probs on the trainer, as its HF path does).
* A colocated engine samples with its own seed (the process index), so rollouts are not bit-for-bit
  the same after a resume, as the HF path's are.
* vLLM generates each of a group's G completions from the prompt again (its prefix cache shares the
  prompt's KV blocks), where the HF path prefills once and repeats the cache.

The HF path (`r1v/train/rollout.py`) stays the CPU path and the default. Not run on a GPU in this
project's CI: `tests/test_vllm_rollouts.py` runs TRL's own VLLMGeneration against a stand-in for
vLLM's `LLM` that generates with the transformers model, and checks what r1v hands it and makes of
its outputs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from r1v.errors import R1VError
from r1v.train.config import RolloutConfig
from r1v.train.samples import Sample


def available() -> str | None:
    """None when vLLM and TRL's VLLMGeneration can be used here, else what to install."""
    import importlib.util

    missing = [p for p in ("vllm", "trl") if importlib.util.find_spec(p) is None]
    if missing:
        return f"rollout.engine=vllm needs {' and '.join(missing)}: pip install 'r1v[vllm]' (a CUDA machine)"
    return None


class VLLMRollouts:
    """`generate(samples, images, n=, temperature=, max_new_tokens=)` on vLLM, the same shape as
    `rollout.generate`: n completions (token ids, through the stop token when it came) per sample."""

    def __init__(self, engine, tokenizer, cfg: RolloutConfig, *, stop_id: int):
        from trl.generation.vllm_generation import VLLMGeneration

        self.engine, self.stop_id = engine, stop_id
        self.gen = VLLMGeneration(
            engine.model, engine.acc, tokenizer, mode=cfg.vllm_mode, server_base_url=cfg.server_url or None,
            tensor_parallel_size=cfg.tensor_parallel_size, gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_length=cfg.max_model_len or None, enable_sleep_mode=cfg.sleep,
            # every setting explicit, as on the HF path: the checkpoint's generation_config must not leak in
            repetition_penalty=1.0, top_k=0, min_p=0.0, generation_kwargs={"stop_token_ids": [stop_id]})
        self.synced = None  # the engine step whose weights vLLM holds (None: the folder's, maybe not the policy's)

    def sync(self) -> None:
        """Push the engine's weights into vLLM if an optimiser step moved them since the last push
        (every process calls it together: the push gathers sharded weights). Call it outside
        `Engine.generating`, whose gathered weights the push must not see."""
        if self.synced != self.engine.steps:
            self.gen.sync_weights()
            self.synced = self.engine.steps

    def generate(self, samples: Sequence[Sample], images: Sequence[list], *, n: int = 1, temperature: float = 0.0,
                 top_p: float = 1.0, max_new_tokens: int = 256, min_new_tokens: int = 0) -> list[list[list[int]]]:
        self.sync()
        self.gen.temperature, self.gen.top_p, self.gen.max_completion_length = temperature, top_p, max_new_tokens
        self.gen.generation_kwargs["min_tokens"] = min_new_tokens
        # TRL's contract: every prompt repeated n times (colocate samples each copy once; server mode
        # sends each prompt once with n)
        prompts = [list(s.prompt) for s in samples for _ in range(n)]
        pictures = [_pil(ims) or None for ims in images for _ in range(n)]
        _, completions, _, _ = self.gen.generate(prompts, pictures if any(pictures) else None, n)
        if len(completions) != len(prompts):
            raise R1VError(f"vLLM returned {len(completions)} completions for {len(prompts)} prompts")
        done = [_through_stop(list(c), self.stop_id) for c in completions]
        return [done[i * n : (i + 1) * n] for i in range(len(samples))]


def _pil(images) -> list:
    from PIL import Image

    return [Image.open(io.BytesIO(b)).convert("RGB") if isinstance(b, bytes) else b for b in images or []]


def _through_stop(ids: list[int], stop_id: int) -> list[int]:
    return ids[: ids.index(stop_id) + 1] if stop_id in ids else ids


def uneven(rollouts: VLLMRollouts | None) -> VLLMRollouts | None:
    """`rollouts` where processes may generate different numbers of batches (held-out scoring,
    E_{t-1}, MPO's samples: each process its share of the rows), else None (those then run on the
    HF path). A colocated engine on one GPU has no collective in its generation; TRL's server mode
    (a gather to the main process) and tensor parallelism (a gather in the TP group) have, so they
    serve only GRPO's rollouts, which every process makes in step."""
    if rollouts is None or rollouts.gen.mode != "colocate" or rollouts.gen.tensor_parallel_size > 1:
        return None
    return rollouts


def scoring(engine, rollouts):
    """The model held-out scoring reads: on vLLM nothing is gathered (the engine's own model, for its
    config and processor); on the HF path the engine's whole model (`Engine.generating`)."""
    import contextlib

    return contextlib.nullcontext(engine.model) if rollouts is not None else engine.generating()


def open_rollouts(ctx, engine, tokenizer, encoder) -> VLLMRollouts | None:
    """The stage's vLLM rollouts when `rollout.engine=vllm`, else None (the HF path)."""
    if ctx.cfg.rollout.engine != "vllm":
        return None
    missing = available()
    if missing:
        raise R1VError(missing)
    return VLLMRollouts(engine, tokenizer, ctx.cfg.rollout, stop_id=encoder.stop_id)
