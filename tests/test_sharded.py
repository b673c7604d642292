"""Every stage under a sharded engine: `accelerate launch` with two CPU processes and FSDP2 (gloo)
trains align, transfer, SFT, the reward model, MPO and hybrid-reward GRPO, saving mid-stage
checkpoints at every step. Each stage's saved checkpoint is the whole model (it loads in plain
transformers) and equals the same run under DDP within floating-point tolerance; a run killed in
the middle of a stage resumes from its sharded checkpoint to the uninterrupted run's weights.

The two engines agree to the bit on this machine (gloo sums two numbers the same way in either), so
the tolerance is for other machines. FSDP on CPU processes needs `tests/sharded_cpu.py`: accelerate
itself turns `--use_fsdp` into DDP when there is no GPU; the shim turns it back on and changes
nothing else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.sharded_cpu import launch
from tests.test_train import part, same, weights

pytestmark = pytest.mark.slow

STAGES = ["align", "transfer", "sft/m0", "sft/m1", "sft/m2", "rm", "mpo/r1", "mpo/r2", "grpo"]


def settings(world: Path) -> list[str]:
    """Every stage, a few steps each; GRPO's reward mixes in this run's reward model, so its groups
    have non-zero advantages and its update is not empty."""
    return [f"data.rm_train={world}/recipe/rm-train.jsonl", f"data.rm_eval={world}/recipe/rm-eval.jsonl",
            "stages=[align,transfer,sft,rm,mpo,grpo]",
            "rm.optim.samples_per_step=8", "rm.optim.micro_batch_per_device=4", "rm.optim.epochs=0.2",
            "rm.optim.lr=1e-2", "mpo.rounds=2", "mpo.prompts_per_round=5", "mpo.samples_per_prompt=4",
            "mpo.max_completion_tokens=10", "mpo.optim.samples_per_step=4", "mpo.optim.micro_batch_per_device=2",
            "mpo.optim.lr=1e-2", "mpo.threshold=0.0001", 'grpo.reward_model=""', "grpo.steps=2",
            "grpo.prompts_per_step=2", "checkpoint.every_steps=1", "checkpoint.every_minutes=0"]


def command(engine: str, yaml_path: Path, run: Path, world: Path) -> tuple[list[str], dict]:
    head, env = launch(engine)
    return [*head, "recipe", "run", str(yaml_path), f"out={run}", *settings(world)], env


@pytest.fixture(scope="module")
def runs(recipe_run, tmp_path_factory):
    """The same recipe under DDP and under FSDP, two processes each."""
    yaml_path, _, world = recipe_run
    out = {}
    for engine in ("ddp", "fsdp"):
        run = tmp_path_factory.mktemp(engine) / "run"
        cmd, env = command(engine, yaml_path, run, world)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, (engine, done.stderr[-3000:])
        out[engine] = run
    return out


def test_every_stage_under_fsdp_equals_ddp(runs):
    from transformers import AutoModelForImageTextToText

    ddp, fsdp = runs["ddp"], runs["fsdp"]
    results = json.loads((fsdp / "results.json").read_text())
    assert {"align", "transfer", "sft", "rm", "mpo", "grpo"} <= set(results["done"])
    assert all(st["processes"] == 2 for st in results["stages"].values())
    for stage in STAGES:
        a, b = weights(fsdp / stage), weights(ddp / stage)
        assert a.keys() == b.keys(), stage  # the whole model, not this process's shard
        for k in b:
            assert a[k].shape == b[k].shape and torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), \
                (stage, k, (a[k] - b[k]).abs().max())
        AutoModelForImageTextToText.from_pretrained(fsdp / stage)  # plain transformers loads it
    head = [load_file(r / "rm" / "reward_head.safetensors") for r in (fsdp, ddp)]
    assert all(torch.allclose(head[0][k], head[1][k], rtol=1e-3, atol=1e-5) for k in head[1])
    # the comparisons are not empty: GRPO and MPO moved the projector (and only it), SFT the projector
    P, V, L = "model.multi_modal_projector.", "model.vision_tower.", "model.language_model."
    for before, after in (("sft/m2", "grpo"), ("transfer", "mpo/r2"), ("transfer", "sft/m0")):
        x, y = weights(fsdp / before), weights(fsdp / after)
        assert not same(part(x, P), part(y, P)), (before, after)
        assert same(part(x, V), part(y, V)) and same(part(x, L), part(y, L)), (before, after)
    # each process scored half of the held-out rows; the results hold them all, once
    assert all(results["stages"][s]["eval"]["visual"]["n"] == 8 for s in ("align", "sft/m2", "grpo"))


def test_a_run_killed_under_fsdp_resumes_from_its_sharded_checkpoint(runs, recipe_run, tmp_path):
    """SIGKILL in the middle of SFT's second iteration; the rerun resumes inside it from the
    sharded checkpoint (weights, optimiser, RNG of both processes) to the uninterrupted run's weights."""
    yaml_path, _, world = recipe_run
    run = tmp_path / "run"
    cmd, env = command("fsdp", yaml_path, run, world)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    found: list[Path] = []
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < 600 and not found:
            found = sorted((run / "checkpoints" / "sft").glob("step-002-0000000[2-9]"))
            time.sleep(0.01)
    finally:
        # torchrun starts its workers in sessions of their own: kill the whole tree, workers first
        import psutil

        tree = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        for p in [*tree, psutil.Process(proc.pid)] if proc.poll() is None else []:
            p.kill()
        proc.wait()
        psutil.wait_procs(tree, timeout=30)
    assert found, "no checkpoint of SFT's second iteration before the run ended"
    assert "sft" not in json.loads((run / "results.json").read_text())["done"]
    shards = {p.name for p in found[0].rglob("*")}
    assert any("__0_0.distcp" in n for n in shards) and any("__1_0.distcp" in n for n in shards), shards
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    for stage in STAGES:
        a, b = weights(run / stage), weights(runs["fsdp"] / stage)
        assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in b), stage
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").rglob("step-*"))
    shutil.rmtree(run)
