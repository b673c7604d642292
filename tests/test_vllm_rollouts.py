"""Generation on vLLM (`r1v/train/vllm.py`) through TRL's own `VLLMGeneration`, against a stand-in for
vLLM's `LLM` (no GPU here). The stand-in does what vLLM does with what it is handed: it reads the
token prompt and the PIL pictures (tiling them with the model's processor, and refusing a prompt
whose image-token runs do not match its pictures), samples with the SamplingParams it gets, and
loads pushed weights by name. What is checked is r1v's side: the prompts, pictures, stop token,
sampling settings and group shape it hands over, the weights it pushes (all of them, after every
optimiser step, never twice), and that GRPO, SFT's E_{t-1} and held-out scoring run on it."""

from __future__ import annotations

import json
import shutil
import types
from dataclasses import dataclass, field

import pytest
import torch

from r1v.cli import main


@dataclass
class SamplingParams:
    n: int = 1
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 16
    logprobs: int | None = None
    stop_token_ids: list = field(default_factory=list)
    min_tokens: int = 0


class StandInLLM:
    """vLLM's `LLM`, generating with the transformers model of the folder it was started on."""

    made: list = []

    def __init__(self, model: str, **kwargs):
        from r1v.model.checkpoint import load_model
        from r1v.model.processor import processor_for_model

        self.kwargs = kwargs
        self.model, self.tok, _ = load_model(model)
        self.model.eval()
        self.processor = processor_for_model(self.model, self.tok, max_tiles=1)
        self.context_id = self.tok.convert_tokens_to_ids(self.processor.image_token)
        self.calls, self.loaded, self.resets = [], [], 0
        runner = types.SimpleNamespace(model=types.SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = types.SimpleNamespace(
            model_executor=types.SimpleNamespace(driver_worker=types.SimpleNamespace(model_runner=runner)))
        StandInLLM.made.append(self)

    def _load_weights(self, weights):
        state = self.model.state_dict()
        for name, tensor in weights:
            assert name in state, f"vLLM has no weight {name}"
            state[name].copy_(tensor)
            self.loaded.append(name)

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, sampling_params, use_tqdm=False):
        from r1v.train.rollout import generate
        from r1v.train.samples import Sample

        self.calls.append((prompts, sampling_params))
        out = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            images = (p.get("multi_modal_data") or {}).get("image")
            images = [] if images is None else images if isinstance(images, list) else [images]
            runs = sum(1 for k, t in enumerate(ids) if t == self.context_id and (k == 0 or ids[k - 1] != t))
            assert runs == len(images), "one run of image tokens per picture, or vLLM refuses the prompt"
            pixels = None
            if images:
                pixels = torch.as_tensor(self.processor.image_processor(images=images)["pixel_values"])
            sample = Sample("x", list(ids), pixels=pixels)
            sp = sampling_params
            with torch.no_grad():
                [[completion]] = generate(self.model, [sample], stop_id=sp.stop_token_ids[0],
                                          pad_id=self.tok.pad_token_id, temperature=sp.temperature, top_p=sp.top_p,
                                          max_new_tokens=sp.max_tokens, min_new_tokens=sp.min_tokens)
            out.append(types.SimpleNamespace(prompt_token_ids=list(ids), outputs=[
                types.SimpleNamespace(token_ids=completion, logprobs=None)]))
        return out


@pytest.fixture
def vllm_stand_in(monkeypatch):
    """TRL's VLLMGeneration with the stand-in as vLLM; the process environment it sets is restored."""
    import trl.generation.vllm_generation as vg

    import r1v.train.vllm as rv

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)  # restored after the test, whatever TRL sets
    monkeypatch.setattr(vg, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vg, "LLM", StandInLLM, raising=False)
    monkeypatch.setattr(vg, "SamplingParams", SamplingParams, raising=False)
    monkeypatch.setattr(rv, "available", lambda: None)
    StandInLLM.made = []
    return StandInLLM


def test_vllm_rollouts_hand_over_prompts_pictures_and_push_every_update(recipe_run, vllm_stand_in):
    from r1v.evaluate.tasks import get_task
    from r1v.model.checkpoint import load_model
    from r1v.train.config import Parts, RolloutConfig
    from r1v.train.engine import Engine
    from r1v.train.rollout import generate
    from r1v.train.samples import Encoder
    from r1v.train.vllm import VLLMRollouts

    _, run, world = recipe_run
    model, tok, _ = load_model(str(run / "transfer"))
    task = get_task("world")
    items = task.read(world / "data" / "visual-test.jsonl")[:3]
    enc = Encoder(model, tok, max_tiles=1)
    samples = enc.encode_all(task, items)
    engine = Engine(model, Parts())
    rollouts = VLLMRollouts(engine, tok, RolloutConfig(engine="vllm"), stop_id=enc.stop_id)
    llm = vllm_stand_in.made[-1]
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher"  # TRL's colocate engine

    def hf(n=1, temperature=0.0):
        with engine.generating() as m:
            return generate(m, samples, stop_id=enc.stop_id, pad_id=tok.pad_token_id, n=n, temperature=temperature,
                            max_new_tokens=12)

    got = rollouts.generate(samples, [it.images for it in items], max_new_tokens=12)
    assert got == hf()  # greedy: the same completions as the HF path, through the stop token
    names = set(llm.loaded)
    assert names == set(model.state_dict()) and len(llm.loaded) == len(names)  # every weight, once
    prompts, sp = llm.calls[-1]
    assert sp.temperature == 0.0 and sp.max_tokens == 12 and sp.stop_token_ids == [enc.stop_id] and sp.n == 1
    assert sp.repetition_penalty == 1.0 and sp.top_k == 0  # nothing of the checkpoint's generation_config
    assert [p["prompt_token_ids"] for p in prompts] == [s.prompt for s in samples]
    # no step, no push; a group is n copies of its prompt, sampled at the temperature asked
    got = rollouts.generate(samples, [it.images for it in items], n=4, temperature=1.0, max_new_tokens=12)
    assert len(llm.loaded) == len(names) and [len(g) for g in got] == [4, 4, 4]
    prompts, sp = llm.calls[-1]
    assert len(prompts) == 12 and sp.temperature == 1.0
    assert all(prompts[4 * b + k]["prompt_token_ids"] == samples[b].prompt for b in range(3) for k in range(4))
    # an update moves the weights: the next generation pushes them first, and reads the new policy
    with torch.no_grad():
        engine.model.model.multi_modal_projector.linear_2.bias.add_(0.5)
    engine.steps += 1
    after = rollouts.generate(samples, [it.images for it in items], max_new_tokens=12)
    assert len(llm.loaded) == 2 * len(names) and llm.resets == 2
    assert after == hf()
    for name, w in engine.model.state_dict().items():
        assert torch.equal(llm.model.state_dict()[name], w), name


def test_grpo_sft_and_scoring_generate_on_vllm(recipe_run, vllm_stand_in, tmp_path):
    """`rollout.engine=vllm`: GRPO's rollouts (G copies a prompt, its temperature), SFT's E_{t-1} and
    the held-out scoring (greedy) all go through vLLM; the run ends as on the HF path."""
    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    assert main(["train", "sft", "--config", str(yaml_path), f"out={run}", "rollout.engine=vllm",
                 "sft.taus=[2]", "sft.lrs=[1e-3]"]) == 0
    sft_llm = vllm_stand_in.made[-1]
    assert sft_llm.calls and all(sp.temperature == 0.0 for _, sp in sft_llm.calls)  # E_0 and scoring: greedy
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}", "rollout.engine=vllm", "sft.taus=[2]",
                 "sft.lrs=[1e-3]", "grpo.steps=2"]) == 0
    llm = vllm_stand_in.made[-1]
    sampled = [(p, sp) for p, sp in llm.calls if sp.temperature > 0]
    assert len(sampled) == 2 and all(len(p) == 2 * 4 and sp.temperature == 1.0 for p, sp in sampled)
    assert any(sp.temperature == 0.0 for _, sp in llm.calls)  # the held-out scoring
    n_weights = len(llm.model.state_dict())
    # pushed before step 1's rollouts, after step 1 (step 2's rollouts), after step 2 (the final scoring)
    assert len(llm.loaded) == 3 * n_weights
    r = json.loads((run / "results.json").read_text())["stages"]["grpo"]
    assert r["eval"]["visual"]["n"] == 8


def test_vllm_settings_are_checked_before_any_work(recipe_run, tmp_path, capsys):
    yaml_path, _, _ = recipe_run
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={tmp_path}", "rollout.engine=vlm"]) == 2
    assert "rollout.engine" in capsys.readouterr().err
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={tmp_path}", "rollout.engine=vllm",
                 "rollout.vllm_mode=server"]) == 2
    assert "server_url" in capsys.readouterr().err
    # no vLLM on this machine: one line saying what to install, before the stage starts
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={tmp_path}", "rollout.engine=vllm"]) == 2
    err = capsys.readouterr().err
    assert "r1v[vllm]" in err and "Traceback" not in err
    assert not (tmp_path / "grpo").exists()
