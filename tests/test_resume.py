"""Crashes lose nothing: a `recipe run` killed with SIGKILL in the middle of a stage resumes inside
it from its newest mid-stage checkpoint and ends with the weights of an uninterrupted run (CPU,
deterministic), and kills that land while a checkpoint is being written leave no checkpoint that
a resume would trust half-written. And nothing stale is reused: a finished stage, or a mid-stage
checkpoint, whose settings, backbones or data changed since it started runs again, with the stages
after it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_train import same, weights


def fresh_run(shared: Path, dest: Path) -> Path:
    """A copy of the recipe's run with its stages forgotten (data kept: no distillation again)."""
    shutil.copytree(shared, dest)
    for stage in ("align", "transfer", "sft", "grpo", "checkpoints"):
        shutil.rmtree(dest / stage, ignore_errors=True)
    (dest / "results.json").write_text(json.dumps({"stages": {}, "done": [], "data": {}}))
    (dest / "metrics.jsonl").unlink(missing_ok=True)
    return dest


def command(yaml_path: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "r1v", "recipe", "run", str(yaml_path), f"out={run}", "stages=[align]",
            "checkpoint.every_steps=1", "checkpoint.keep_last=2", *extra]


def steps_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count('"align/') if path.exists() else 0


def kill_after(cmd: list[str], run: Path, *, steps: int | None = None, seconds: float | None = None,
               delay: float = 0.0) -> None:
    """Start `cmd` and SIGKILL it `delay` seconds after `steps` align steps are logged, or after `seconds`."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < 300:
            if (steps is not None and steps_logged(run) >= steps) or \
                    (seconds is not None and time.monotonic() - t0 >= seconds):
                time.sleep(delay)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the DataLoader workers go too
        proc.wait()


def test_a_killed_stage_resumes_inside_itself_to_the_same_weights(recipe_run, tmp_path):
    # recipe_run (conftest): the small recipe run through once, uninterrupted
    yaml_path, shared, _ = recipe_run
    results = json.loads((shared / "results.json").read_text())
    total = sum(1 for x in (shared / "metrics.jsonl").read_text().splitlines() if '"align/' in x)
    assert total >= 4, "the small recipe's align stage is too short to kill in its middle"
    run = fresh_run(shared, tmp_path / "run")
    cmd = command(yaml_path, run)
    at = random.Random(os.getpid()).randint(2, total - 2)
    kill_after(cmd, run, steps=at)
    assert "align" not in json.loads((run / "results.json").read_text())["done"]
    found = sorted((run / "checkpoints" / "align").glob("step-*[0-9]"))
    # rotated: keep_last=2, and one more when the kill lands between a checkpoint's publication and the
    # rotation that follows it (the next save removes it)
    assert found and len(found) <= 3
    for f in found:  # the seconds the killed attempt spent: made large, so that the stage's record shows them
        position = json.loads((f / "position.json").read_text())
        assert position["seconds"] >= 0
        (f / "position.json").write_text(json.dumps({**position, "seconds": 1000.0}))
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    # the stage's seconds: the killed attempt's up to its checkpoint, and this one's
    assert 1000.0 <= json.loads((run / "results.json").read_text())["stages"]["align"]["seconds"] <= 1000.0 + wall
    assert same(weights(run / "align"), weights(shared / "align"))  # bit-identical to the uninterrupted run
    assert json.loads((run / "results.json").read_text())["stages"]["align"]["eval"] == \
        results["stages"]["align"]["eval"]
    assert not (run / "checkpoints" / "align").exists()  # the stage is done: its checkpoints are gone
    # metrics: one line per step, as if it had never stopped
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"align/' in x]
    assert len(logged) == total and len({(r["stage"], r["step"]) for r in logged}) == total


def test_a_checkpoint_from_other_settings_is_not_resumed_but_one_from_other_speeds_is(recipe_run, tmp_path):
    yaml_path, shared, _ = recipe_run
    run = fresh_run(shared, tmp_path / "run")
    kill_after(command(yaml_path, run), run, steps=2)
    done = subprocess.run(command(yaml_path, run, "align.optim.weight_decay=0.01"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "align: align.optim.weight_decay changed since it started" in done.stdout
    assert "resuming from" not in done.stdout
    # a smaller micro-batch and other packing (as after running out of memory) change no input
    run = fresh_run(shared, tmp_path / "run2")
    kill_after(command(yaml_path, run), run, steps=2)
    done = subprocess.run(command(yaml_path, run, "align.optim.micro_batch_per_device=2", "align.pack_length=200"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "changed since" not in done.stdout


def test_a_finished_stage_runs_again_when_what_it_is_made_from_changed(recipe_run, tmp_path, capsys):
    """Settings of a later stage rerun that stage alone; a backbone with other weights reruns the
    stages from the one that reads it; a moved world and speed settings rerun nothing; a stage
    made before inputs were recorded is reused, with a note."""
    from r1v.cli import main

    yaml_path, shared, world = recipe_run
    run, moved = tmp_path / "run", tmp_path / "elsewhere" / "world"
    shutil.copytree(shared, run)
    shutil.copytree(world, moved)
    recipe = tmp_path / "moved.yaml"
    recipe.write_text(yaml_path.read_text().replace(str(world), str(moved)))

    def recipe_run_(*settings) -> tuple[str, dict]:
        capsys.readouterr()
        assert main(["recipe", "run", str(recipe), f"out={run}", *settings]) == 0
        results = json.loads((run / "results.json").read_text())
        return capsys.readouterr().out, {s: results["stages"][s]["made"] for s in ("align", "transfer", "sft", "grpo")}

    _, made = recipe_run_()  # other tests may have rerun the shared run's GRPO with their settings
    out, again = recipe_run_("sft.optim.micro_batch_per_device=2", "align.pack_length=64")
    assert again == made and "changed since" not in out and out.count("done, reused") == 4
    out, again = recipe_run_("grpo.lr=5e-3")
    assert "grpo: grpo.lr changed since it ran" in out
    assert {s: again[s] == made[s] for s in made} == {"align": True, "transfer": True, "sft": True, "grpo": False}
    made = again
    # held-out scoring is not an input, save where GRPO stops on the held-out hallucination rate
    out, again = recipe_run_("grpo.lr=5e-3", "data.eval_limit=3", "eval.max_new_tokens=4")
    assert again == made and "changed since" not in out
    watch = ("grpo.lr=5e-3", "grpo.eval_every=1", "grpo.hallucination_ceiling=0.99")
    _, made = recipe_run_(*watch)
    out, again = recipe_run_(*watch, "data.eval_limit=3")
    assert "grpo: data.eval_limit changed since it ran" in out
    assert {s: again[s] == made[s] for s in made} == {"align": True, "transfer": True, "sft": True, "grpo": False}
    made = again
    # the reasoning LLM retrained (here: the substitute's weights, the same shapes, in its place)
    shutil.copy(moved / "substitute" / "model.safetensors", moved / "reasoning" / "model.safetensors")
    out, again = recipe_run_("grpo.lr=5e-3")
    assert "transfer: model.reasoning changed since it ran" in out
    assert {s: again[s] == made[s] for s in made} == {"align": True, "transfer": False, "sft": False, "grpo": False}
    made = again
    # a run made before r1v recorded inputs: reused as it is, with a note
    results = json.loads((run / "results.json").read_text())
    del results["stages"]["align"]["inputs"]
    (run / "results.json").write_text(json.dumps(results))
    out, again = recipe_run_("grpo.lr=5e-3")
    assert "align: made before r1v recorded" in out and again == made
    # ... unless a backbone it reads was written after it (an upgrade replaced the encoder)
    time.sleep(0.05)
    (moved / "vision" / "config.json").write_text((moved / "vision" / "config.json").read_text())
    out, again = recipe_run_("grpo.lr=5e-3")
    assert "align: model.vision (newer than the stage) changed since it ran" in out
    assert not any(again[s] == made[s] for s in made)
    made = again
    # a path that cannot be read forgets nothing: a finished stage is reused, with a note; one that is
    # to run for another reason is refused by the check before anything goes
    out, again = recipe_run_("grpo.lr=5e-3", f"grpo.base={tmp_path / 'typo'}")
    assert "grpo: from cannot be read now; the stage is reused" in out and again == made
    before = (run / "results.json").read_text()
    assert main(["recipe", "run", str(recipe), f"out={run}", "grpo.lr=1e-3", f"grpo.base={tmp_path / 'typo'}"]) == 2
    assert (run / "results.json").read_text() == before
    # a stage that has to run again (its folder gone) takes the stages after it along
    shutil.rmtree(run / "transfer")
    out, again = recipe_run_("grpo.lr=5e-3")
    assert "sft, grpo: made from an earlier transfer" in out
    assert {s: again[s] == made[s] for s in made} == {"align": True, "transfer": False, "sft": False, "grpo": False}


def test_a_refused_restart_leaves_the_run_as_it_was(recipe_run, tmp_path, capsys):
    """--restart with a mistyped backbone is refused before the old run goes, and the run's record
    (recipe.yaml) keeps the settings it ran with; settings may follow --restart."""
    from r1v.cli import main

    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    typo = tmp_path / "typo"
    assert main(["recipe", "run", str(yaml_path), f"out={run}", "--restart", f"model.reasoning={typo}"]) == 2
    err = capsys.readouterr().err
    assert f"model.reasoning: {typo} not found" in err and "Traceback" not in err
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before and not run.with_name("run.before-restart").exists()
    assert main(["recipe", "run", str(yaml_path), f"out={run}", "grpo.lr=1e-3", f"grpo.base={typo}"]) == 2
    assert (run / "recipe.yaml").read_bytes() == before[Path("recipe.yaml")]


def test_a_restart_starts_the_run_over(recipe_run, tmp_path, capsys):
    """--restart runs every stage from the start, in an empty run folder: nothing of the old run is
    reused or left behind (the old folder set aside is deleted), and the remade stage equals the
    first making (CPU, deterministic)."""
    from r1v.cli import main

    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    (run / "left-over.txt").write_text("from the old run")
    capsys.readouterr()
    assert main(["recipe", "run", str(yaml_path), f"out={run}", "--restart", "stages=[align]"]) == 0
    out = capsys.readouterr().out
    assert "reused" not in out
    assert not (run / "left-over.txt").exists() and not run.with_name("run.before-restart").exists()
    assert not (run / "transfer").exists() and not (run / "sft").exists()
    results = json.loads((run / "results.json").read_text())
    assert results["done"] == ["align"]
    assert same(weights(run / "align"), weights(shared / "align"))


class Killed(BaseException):
    pass


def test_a_run_killed_as_an_sft_iteration_ends_does_not_train_it_again(recipe_run, tmp_path, monkeypatch, capsys):
    """Killed after sft/m0 is recorded done but before its mid-stage checkpoints are removed: the next
    run goes on from m0 as made (not back inside it), removes those checkpoints, and records the
    stage's seconds as the sum of its iterations'."""
    from r1v.cli import main
    from r1v.train import engine

    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    args = ["recipe", "run", str(yaml_path), f"out={run}", "checkpoint.every_steps=1", "sft.optim.lr=5e-3"]
    clear = engine.Checkpoints.clear

    def killed(self):
        raise Killed

    monkeypatch.setattr(engine.Checkpoints, "clear", killed)
    with pytest.raises(Killed):
        main(args)
    made = json.loads((run / "results.json").read_text())["stages"]["sft/m0"]["made"]
    assert list((run / "checkpoints" / "sft").glob("step-000-*"))  # iteration 0's, left behind
    monkeypatch.setattr(engine.Checkpoints, "clear", clear)
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from" not in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert results["stages"]["sft/m0"]["made"] == made
    assert not (run / "checkpoints" / "sft").exists()
    iterations = [results["stages"][f"sft/m{t}"]["seconds"] for t in range(3)]
    assert results["stages"]["sft"]["seconds"] == pytest.approx(sum(iterations), abs=0.2)


@pytest.mark.slow
def test_kills_during_checkpoint_writes_leave_no_corrupt_checkpoint(recipe_run, tmp_path):
    """20 runs killed at random moments (many of them inside `save_state`): every checkpoint a
    resume would pick (a whole `step-N` folder) loads: position, weights, optimiser, RNG.

    The moment is a random step plus a random fraction of a second, not a random time since start:
    the small align stage takes about 2 s after a start-up that varies with the machine's load."""
    yaml_path, shared, _ = recipe_run
    total = sum(1 for x in (shared / "metrics.jsonl").read_text().splitlines() if '"align/' in x)
    rng = random.Random(0)
    run = fresh_run(shared, tmp_path / "run")
    cmd = command(yaml_path, run)
    checked = 0
    for k in range(20):
        # steps counted from what this run has logged so far (a resumed run appends to metrics.jsonl)
        kill_after(cmd, run, steps=steps_logged(run) + rng.randint(1, total - 1), delay=rng.uniform(0.0, 0.3))
        if "align" in json.loads((run / "results.json").read_text())["done"]:
            run = fresh_run(shared, tmp_path / f"run{k}")
            cmd = command(yaml_path, run)
            continue
        for ck in sorted((run / "checkpoints" / "align").glob("step-*")):
            if ck.name.endswith(".partial"):
                continue  # never resumed from
            json.loads((ck / "position.json").read_text())
            load_file(ck / "model.safetensors")
            torch.load(ck / "optimizer.bin", weights_only=False)
            checked += 1
    assert checked > 0
