"""The recipe's stages on the small mini-world: the real CLI end to end, what trains and what must
not, the transfer's bit-identical projector, and the equivalences the speed-ups rely on (packing
= padding, cached features = the vision encoder, a shared prompt prefix = full sequences)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1v.cli import main
from r1v.errors import R1VError
from r1v.train.config import load_recipe, parse_overrides

def weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


def part(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def crash_at_step(monkeypatch, n: int, argv: list[str]) -> None:
    """Run `r1v argv` with the engine's n-th optimiser step raising, as a crash there would."""
    from r1v.train.engine import Engine

    real, calls = Engine.step, []

    def dies(self, *a, **k):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("killed")
        return real(self, *a, **k)

    monkeypatch.setattr(Engine, "step", dies)
    with pytest.raises(RuntimeError, match="killed"):
        main(argv)
    monkeypatch.setattr(Engine, "step", real)


# --------------------------------------------------------------------------- config
def test_config_overrides_and_mistakes(tmp_path):
    assert parse_overrides(["grpo.steps=3", "sft.taus=[2,5]", "name=x"]) == {
        "grpo": {"steps": 3}, "sft": {"taus": [2, 5]}, "name": "x"}
    cfg = load_recipe("recipes/tiny.yaml", ["grpo.steps=3", "align.passes=[{name: full, lr: 2e-3}]"])
    assert cfg.grpo.steps == 3 and cfg.align.passes[0].lr == 2e-3 and len(cfg.align.passes) == 1
    assert cfg.sft.taus == [2, 3, 4, 5] and cfg.grpo.generations_per_prompt == 8
    for bad, msg in ((["grpo.stepz=3"], "unknown setting 'grpo.stepz'"), (["grpo.steps=many"], "is not a int"),
                     (["sft.taus=[2]"], "one lr per iteration"), (["stages=[align, dance]"], "unknown stage"),
                     (["sft.taus=[2,9,3,4]"], "scores in 0..5"), (["grpo"], "key=value"),
                     (["grpo.generations_per_prompt=1"], "compares a group"), (["grpo.steps=0"], "at least 1"),
                     (["grpo=5", "grpo.steps=1"], "not a section"), (["model.template=chatml"], "choose r1v")):
        with pytest.raises(R1VError, match=msg):
            load_recipe("recipes/tiny.yaml", bad)
    with pytest.raises(R1VError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    for name in ("tiny", "r1v-38b", "r1v-1.5b-1gpu"):
        load_recipe(f"recipes/{name}.yaml")  # every shipped recipe parses
    # overriding one key of a section keeps the section's own defaults (not its class's)
    from r1v.config import build, help_lines
    from r1v.world.prepare import DataSettings

    d = build(DataSettings, parse_overrides(["distill.alpha=0.1"]))
    assert (d.distill.alpha, d.distill.temperature, d.distill.max_new_tokens, d.distill.beta) == (0.1, 0.0, 96, 2.0)
    assert any("distill.max_new_tokens=96" in line for line in help_lines(DataSettings))


# --------------------------------------------------------------------------- the whole recipe, through the CLI
def test_recipe_runs_every_stage_and_reports(recipe_run):
    _, run, world = recipe_run
    results = json.loads((run / "results.json").read_text())
    for stage in ("align", "transfer", "sft/m0", "sft/m1", "sft/m2", "grpo"):
        assert stage in results["done"]
        assert (run / stage / "config.json").exists()
        ev = results["stages"][stage]["eval"]
        assert ev["visual"]["n"] == 8 and ev["text"]["n"] == 8
    assert results["stages"]["sft/m2"]["tau"] == 5
    norms = results["stages"]["align"]["token_norms"]
    assert norms["visual"] > 0 and norms["words"] > 0
    report = (run / "report.md").read_text()
    assert f"median norm of {norms['visual']:.2f}, {norms['visual'] / norms['words']:.1f} times" in report
    assert "## Held-out accuracy by stage" in report and "| grpo |" in report and "GRPO minus sft/m2" in report
    # the claims table opens the report: every claim the run can speak to, with the paper's figure
    claims = report.split("## The paper's claims on this run")[1].split("## ")[0]
    for claim in ("once aligned, is a VLM", "each SFT iteration adds", "GRPO adds", "text reasoning survives",
                  "AL-CoTD", "the final model", "of what a perfect projector allows"):
        assert claim in claims, claim
    assert "text reasoning survives | 94.0 MATH-500" in claims and "**holds** (the same answers)" in claims
    assert report.index("## The paper's claims") < report.index("## Held-out accuracy by stage")
    # by family, each stage's accuracy with that family's hallucination rate beside it
    fam = results["stages"]["grpo"]["eval"]["visual"]
    assert set(fam["hallucination_by"]["family"]) == set(fam["by"]["family"])
    row = next(x for x in report.split("Visual test accuracy by family")[1].splitlines() if x.startswith("| grpo |"))
    assert row.count("%)") == len(fam["by"]["family"])
    from PIL import Image

    for png in ("loss.png", "grpo.png", "accuracy.png", "example.png"):
        assert min(Image.open(run / "plots" / png).size) >= 112
    grpo = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"grpo"' in x]
    assert len(grpo) == 2 and {"reward", "accuracy", "length", "effective", "kl"} <= set(grpo[0])
    # D came from AL-CoTD (`r1v world data`): one record per training problem, each row with its
    # penalty and 0..5 score; the report finds r1v distill's summary beside D, and the world's ceilings
    sft = [json.loads(x) for x in (world / "recipe" / "sft.jsonl").read_text().splitlines()]
    records = (world / "recipe" / "distill" / "records.jsonl").read_text().splitlines()
    assert len(records) == len(sft) == results["data"]["sft"]
    assert all(1 <= r["penalty"] <= 2 and 0 <= r["score"] <= 5 and r["reference"] for r in sft)
    assert "### D by AL-CoTD" in report and "## Reference points" in report
    # the report reads whole from the run folder alone (moved, or shared without the cache): every
    # picture it shows lies inside the run, the distillation's plot among them
    pictures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert "plots/distill-penalty.png" in pictures
    assert all(".." not in p and (run / p).is_file() for p in pictures), pictures
    # the same numbers reach accelerate's trackers (TensorBoard by default), a tag per stage and metric
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tracking" / "small"))
    events.Reload()
    assert {"align/full/loss", "sft/m0/loss", "grpo/reward", "grpo/effective"} <= set(events.Tags()["scalars"])


def test_world_data_is_reused_and_other_settings_need_overwrite(recipe_run, capsys):
    _, _, world = recipe_run
    before = (world / "recipe" / "sft.jsonl").read_bytes()
    assert main(["world", "data", "--world", str(world)]) == 0
    assert "reused" in capsys.readouterr().err and (world / "recipe" / "sft.jsonl").read_bytes() == before
    assert main(["world", "data", "--world", str(world), "distill.alpha=0.1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["world", "data", "--world", str(world), "cot_share=2"]) == 2
    assert "shares" in capsys.readouterr().err


def test_world_data_remakes_only_the_align_files_when_only_their_settings_change(recipe_run, tmp_path, capsys):
    """`captions` (or a subset share) changes the align files alone: they are remade in seconds, and D
    (the distillation) and the preference pairs are kept byte for byte."""
    import shutil

    from r1v.io import read_jsonl

    world = tmp_path / "world"
    shutil.copytree(recipe_run[2], world)
    rec = world / "recipe"
    kept = {n: (rec / n).read_bytes() for n in ("sft.jsonl", "rm-train.jsonl")}
    plain = read_jsonl(rec / "align-full.jsonl")
    assert plain and not any(r["id"].endswith("-caption") for r in plain)  # the default: questions only
    capsys.readouterr()
    assert main(["world", "data", "--world", str(world), "captions=true"]) == 0
    assert "align files remade" in capsys.readouterr().err
    captioned = read_jsonl(rec / "align-full.jsonl")
    assert len(captioned) == 2 * len(plain) and sum(r["id"].endswith("-caption") for r in captioned) == len(plain)
    assert all((rec / n).read_bytes() == b for n, b in kept.items())
    assert main(["world", "data", "--world", str(world), "captions=true"]) == 0
    assert "reused" in capsys.readouterr().err
    assert main(["world", "data", "--world", str(world)]) == 0  # back to the default
    assert read_jsonl(rec / "align-full.jsonl") == plain


def test_world_data_is_kept_when_only_the_vision_encoder_changed(recipe_run, tmp_path, capsys):
    """The files are words and the reasoning LM's chains: a world whose encoder was rebuilt (another
    vision hash and probe) keeps them, and its reference scores take the new probe; a world whose
    reasoning LM changed needs --overwrite."""
    import shutil

    world = tmp_path / "world"
    shutil.copytree(recipe_run[2], world)
    kept = (world / "recipe" / "sft.jsonl").read_bytes()
    manifest = json.loads((world / "world.json").read_text())
    # files made before the vision hash left their settings list it: still theirs
    done = json.loads((world / "recipe" / "done.json").read_text())
    done["settings"]["world"].update(vision=manifest["stages"]["vision"]["hash"], scores=None)
    (world / "recipe" / "done.json").write_text(json.dumps(done))
    manifest["stages"]["vision"]["hash"] = "0" * 16
    manifest["scores"]["probe"] = {attr: 0.5 for attr in manifest["scores"]["probe"]}
    (world / "world.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["world", "data", "--world", str(world)]) == 0
    assert "reused" in capsys.readouterr().err and (world / "recipe" / "sft.jsonl").read_bytes() == kept
    ref = json.loads((world / "recipe" / "reference-scores.json").read_text())
    assert [v for k, v in ref.items() if "linear probe" in k] == [0.5]
    manifest["stages"]["reasoning"]["hash"] = "0" * 16
    (world / "world.json").write_text(json.dumps(manifest))
    assert main(["world", "data", "--world", str(world)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_moved_world_and_run_resume_and_report(recipe_run, tmp_path, capsys):
    """The world folder (its recipe files included) and the run folder, moved elsewhere: the files are
    reused (not distilled again), their rows find their images, and the run resumes (nothing to redo)
    and writes its report."""
    import shutil

    from r1v.evaluate.tasks import get_task

    yaml_path, run, world = recipe_run
    moved_world, moved_run = tmp_path / "elsewhere" / "world", tmp_path / "elsewhere" / "run"
    shutil.copytree(world, moved_world)
    shutil.copytree(run, moved_run)
    capsys.readouterr()
    assert main(["world", "data", "--world", str(moved_world)]) == 0
    assert "reused" in capsys.readouterr().err
    for name in ("align-full.jsonl", "sft.jsonl"):
        items = get_task("world").read(moved_world / "recipe" / name)
        assert items and all(items[0].images)  # the images, found from the moved folder
        row = json.loads((moved_world / "recipe" / name).read_text().splitlines()[0])
        assert not Path(row["image"]).is_absolute()
    recipe = yaml_path.read_text().replace(str(world), str(moved_world))
    (tmp_path / "moved.yaml").write_text(recipe)
    (moved_run / "report.md").unlink()
    assert main(["recipe", "run", str(tmp_path / "moved.yaml"), f"out={moved_run}"]) == 0
    assert (moved_run / "report.md").read_text().startswith("#")
    assert json.loads((moved_run / "results.json").read_text())["done"] == \
        json.loads((run / "results.json").read_text())["done"]  # nothing was redone


def test_a_stage_without_its_input_stops_before_any_work(recipe_run, tmp_path, capsys):
    import time

    yaml_path, _, _ = recipe_run
    t = time.monotonic()
    assert main(["train", "sft", "--config", str(yaml_path), f"out={tmp_path / 'fresh'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "starts from the transfer stage's model" in err and len(err.splitlines()) == 1
    assert time.monotonic() - t < 10 and not (tmp_path / "fresh" / "sft").exists()  # no distilling first


def test_stages_train_what_they_should_and_nothing_else(recipe_run):
    _, run, world = recipe_run
    vision = load_file(world / "vision" / "model.safetensors")
    substitute = load_file(world / "substitute" / "model.safetensors")
    reasoning = load_file(world / "reasoning" / "model.safetensors")
    align, transfer = weights(run / "align"), weights(run / "transfer")
    m0, m2, grpo = weights(run / "sft" / "m0"), weights(run / "sft" / "m2"), weights(run / "grpo")
    V, P, L = "model.vision_tower.", "model.multi_modal_projector.", "model.language_model."
    # align: projector trained; the vision encoder and the substitute LLM bit-identical
    assert same(part(align, V), vision)
    assert same(part(align, L), part(substitute, "model.")) and torch.equal(align["lm_head.weight"],
                                                                          substitute["lm_head.weight"])
    # transfer: projector and vision bit-identical, LLM (and head) swapped for the reasoning LLM's
    assert same(part(transfer, P), part(align, P)) and same(part(transfer, V), vision)
    assert same(part(transfer, L), part(reasoning, "model.")) and torch.equal(transfer["lm_head.weight"],
                                                                            reasoning["lm_head.weight"])
    # sft and grpo (projector only by default): the projector moves, nothing else does (GRPO's
    # projector is checked in test_grpo_cli_moves_the_projector: this untrained LM earns no reward)
    for before, after in ((transfer, m0), (m0, m2), (m2, grpo)):
        assert after is grpo or not same(part(before, P), part(after, P))
        assert same(part(before, V), part(after, V)) and same(part(before, L), part(after, L))
    # the tokenizer after transfer is the reasoning LLM's
    from r1v.model.tokenizer import load_tokenizer

    text = "red shapes 3. 3 + 2 = 5."
    assert load_tokenizer(str(run / "transfer"))(text)["input_ids"] == load_tokenizer(
        str(world / "reasoning"))(text)["input_ids"]


def test_train_cli_reruns_a_stage_with_lora(recipe_run, tmp_path, capsys):
    import shutil

    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)  # the other tests keep the module's run as it was
    before = weights(run / "sft" / "m0")
    assert main(["train", "sft", "--config", str(yaml_path), f"out={run}", "sft.parts.lora_rank=4",
                 "sft.taus=[5]", "sft.lrs=[1e-3]"]) == 0
    assert "sft/m0: visual" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert "grpo" not in results["done"] and "grpo" not in results["stages"]  # built on the old SFT: stale
    assert "sft/m2" not in results["stages"] and "sft" in results["done"]
    after = weights(run / "sft" / "m0")
    L, V = "model.language_model.", "model.vision_tower."
    assert not any("lora" in k for k in after)  # merged into the weights: a plain R1V checkpoint
    assert not same(part(before, L), part(after, L)) and same(part(before, V), part(after, V))
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}"]) == 2  # sft/m2 is stale now
    assert "r1v train sft" in capsys.readouterr().err
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={tmp_path / 'fresh'}"]) == 2
    assert "starts from the sft stage's model" in capsys.readouterr().err


def test_grpo_cli_moves_the_projector(recipe_run, monkeypatch):
    # The small world's LLM is untrained, so every rollout earns the same (zero) reward and no
    # group carries signal. Give the rollouts a reward that differs within groups (by length) to
    # see a real CLI run move the projector, and only the projector.
    import r1v.train.grpo as grpo_mod

    yaml_path, run, _ = recipe_run
    monkeypatch.setattr(grpo_mod, "accuracy_reward", lambda texts, **_: [float(len(t) % 2) for t in texts])
    before = weights(run / "sft" / "m2")
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}", "grpo.steps=1", "grpo.lr=1.5e-5"]) == 0
    after = weights(run / "grpo")
    P, V, L = "model.multi_modal_projector.", "model.vision_tower.", "model.language_model."
    assert not same(part(before, P), part(after, P))
    assert same(part(before, V), part(after, V)) and same(part(before, L), part(after, L))
    row = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"grpo"' in x][-1]
    assert row["effective"] > 0
    assert row["lr"] == 1.5e-5  # logged as set (one step: the warm-up is over), not rounded to 2e-05


@pytest.mark.slow
def test_recipe_under_accelerate_launch_with_two_processes(recipe_run, tmp_path):
    """`accelerate launch` (two CPU processes, DDP on gloo) runs the same recipe unchanged."""
    import subprocess

    from tests.sharded_cpu import launch

    yaml_path, _, _ = recipe_run
    head, env = launch("ddp")
    cmd = [*head, "recipe", "run", str(yaml_path), f"out={tmp_path / 'run'}", "checkpoint.every_steps=3",
           "data.workers=1"]  # the multi-process save path and the workers under accelerate, too
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"align", "transfer", "sft", "grpo"} <= set(results["done"])
    assert done.stdout.count("report:") == 1  # one process speaks
    # each process scored half of the held-out rows; the results hold all of them, once
    assert all(results["stages"][s]["eval"][k]["n"] == 8 for s in ("align", "grpo") for k in ("visual", "text"))
    assert all(results["stages"][s]["processes"] == 2 for s in ("align", "sft/m0", "grpo"))
    records = [json.loads(x) for x in (tmp_path / "run" / "outputs" / "grpo-visual.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 8
    assert all(r["groups"]["family"] == r["id"].split("-")[0] for r in records)  # gathered with their items
    # each process trained on half of every step's batch, the loss normalised over both: the same
    # update as one process, up to the order of floating-point sums
    _, one, _ = recipe_run
    for stage in ("align", "sft/m0"):
        two, ref = weights(tmp_path / "run" / stage), weights(one / stage)
        assert two.keys() == ref.keys()
        for k in ref:
            assert torch.allclose(two[k], ref[k], rtol=1e-3, atol=1e-5), (stage, k, (two[k] - ref[k]).abs().max())
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(tmp_path / "run" / "grpo")  # plain transformers loads it
    # again with another GRPO setting: the processes agree on what changed, and GRPO alone runs again
    made = {s: results["stages"][s]["made"] for s in ("align", "transfer", "sft", "grpo")}
    done = subprocess.run([*cmd, "grpo.lr=5e-3"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("grpo: grpo.lr changed since it ran") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    again = {s: results["stages"][s]["made"] for s in made}
    assert {s: again[s] == made[s] for s in made} == {"align": True, "transfer": True, "sft": True, "grpo": False}


def test_lora_trains_adapters_and_the_projector(small_model):
    import copy

    from r1v.train.config import Parts
    from r1v.train.loop import plain_state, set_parts

    model, tok, samples, _ = small_model
    plain = copy.deepcopy(model)
    model = copy.deepcopy(model)
    set_parts(model, Parts(lora_rank=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable)
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n or ("language_model" in n and "lora_" not in n) for n in trainable)
    with torch.no_grad():  # move the adapters off zero, so folding them in changes the weights
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    state = plain_state(model, model.state_dict())
    assert state.keys() == plain.state_dict().keys()  # a plain R1V checkpoint
    plain.load_state_dict(state)
    s = samples[0]
    ids = torch.tensor([s.prompt + s.response])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids, pixel_values=s.pixels).logits,
                              model(input_ids=ids, pixel_values=s.pixels).logits, atol=1e-4)


def test_cli_mistakes(tmp_path, capsys):
    assert main(["recipe", "run", str(tmp_path / "none.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {steps: [1}")
    assert main(["recipe", "run", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["recipe", "report", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["distill", "compare", "--config", "recipes/tiny.yaml"]) == 2
    assert "now `r1v world compare`" in capsys.readouterr().err
    assert main(["world", "compare", "--config", "recipes/tiny.yaml", "--fixed", "1,-1"]) == 2
    assert "positive" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["recipe", "run", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    for setting, msg in (("grpo.lr=nan", "finite number"), ("sft.optim.lr=-0.1", "positive number"),
                         ("data.workers=-2", "automatic"), ("model.vision=${NO_SUCH_VAR_R1V}/v", "is not set"),
                         ("tracking=[nope]", "unknown tracker")):
        assert main(["recipe", "run", "recipes/tiny.yaml", setting]) == 2, setting
        assert msg in capsys.readouterr().err, setting


def test_every_file_is_checked_before_the_first_stage(recipe_run, tmp_path, capsys):
    """A bad row in the SFT data, or a missing file, stops the run before align spends a minute."""
    yaml_path, _, world = recipe_run
    bad = world / "recipe" / "broken-sft.jsonl"  # beside the rows' images (their paths are relative)
    bad.write_text((world / "recipe" / "sft.jsonl").read_text() + "{broken\n")
    n = len(bad.read_text().splitlines())
    try:
        assert main(["recipe", "run", str(yaml_path), f"out={tmp_path / 'run'}", f"data.sft={bad}"]) == 2
    finally:
        bad.unlink()
    assert f"broken-sft.jsonl:{n}: not JSON" in capsys.readouterr().err
    assert not (tmp_path / "run" / "align").exists()
    assert main(["recipe", "run", str(yaml_path), f"out={tmp_path / 'run'}", f"data.sft={tmp_path / 'no.jsonl'}"]) == 2
    assert "no.jsonl does not exist" in capsys.readouterr().err


def test_grpo_with_fewer_prompts_a_step_than_processes_stops_before_the_first_stage(recipe_run, tmp_path, capsys,
                                                                                   monkeypatch):
    """Under `accelerate launch` with 4 processes (pretended: accelerate's process count), 2 prompts a
    step would leave two processes without one: refused before align, not after SFT and the pool filter."""
    from accelerate import PartialState

    from r1v.train.engine import processes

    yaml_path, _, _ = recipe_run
    processes()  # accelerate's shared state, made as a run makes it; then 4 processes in it
    monkeypatch.setitem(PartialState._shared_state, "num_processes", 4)
    assert main(["recipe", "run", str(yaml_path), f"out={tmp_path / 'run'}", "grpo.prompts_per_step=2"]) == 2
    assert "grpo.prompts_per_step=2 is fewer than the 4 processes" in capsys.readouterr().err
    assert not (tmp_path / "run" / "align").exists()


# --------------------------------------------------------------------------- the speed-ups are exact
@pytest.fixture(scope="module")
def small_model(small_world):
    from r1v.evaluate.tasks import get_task
    from r1v.model.builder import build_r1v
    from r1v.model.tokenizer import load_tokenizer
    from r1v.train.samples import Encoder
    from r1v.io import read_jsonl
    from r1v.world.data import target

    out, _ = small_world
    tok = load_tokenizer(str(out / "tokenizer"))
    model = build_r1v(vision=str(out / "vision"), language=str(out / "reasoning"), tokenizer=tok, seed=3)
    task = get_task("world")
    path = out / "data" / "visual-train.jsonl"
    rows = read_jsonl(path)[:12]
    enc = Encoder(model, tok, max_tiles=1)
    samples = enc.encode_all(task, task.read(path)[:12], [target(r, "reasoning") for r in rows])
    for k, s in enumerate(samples):
        s.index = k  # the row: the feature cache's key
    return model.eval(), tok, samples, enc


def test_packed_cached_loss_equals_padded_pixel_loss(small_model):
    from r1v.train.data import FeatureCache
    from r1v.train.samples import image_inputs, pack, packed_batch, padded_batch

    model, tok, samples, _ = small_model
    n = sum(len(s.response) for s in samples)
    padded = model(**padded_batch(samples, tok.pad_token_id), **image_inputs(model, samples, None),
                   num_items_in_batch=torch.tensor(n), use_cache=False).loss
    rows = pack(samples, 200)
    assert len(rows) < len(samples)  # several samples share a row
    flat = [s for r in rows for s in r]
    cache = FeatureCache()
    packed = model(**packed_batch(rows, tok.pad_token_id), **image_inputs(model, flat, cache),
                   num_items_in_batch=torch.tensor(n), use_cache=False).loss
    assert torch.allclose(packed, padded, atol=1e-5), (packed, padded)
    again = model(**packed_batch(rows, tok.pad_token_id), **image_inputs(model, flat, cache),  # from the cache now
                  num_items_in_batch=torch.tensor(n), use_cache=False).loss
    assert len(cache.memory) == len({s.index for s in flat}) and torch.allclose(again, padded, atol=1e-5)
    # the same model with a cache made: transformers no longer reads the packing (what the loop avoids)
    leaky = model(**packed_batch(rows, tok.pad_token_id), **image_inputs(model, flat, None),
                  num_items_in_batch=torch.tensor(n), use_cache=True).loss
    assert abs(leaky.item() - padded.item()) > 1e-4


def test_token_norms_are_the_projected_tokens_and_the_words_the_model_reads(small_model):
    """Align's record, against the model's own forward: the projector's output as transformers'
    get_image_features gives it, and the input embeddings of every token but the image placeholders."""
    from r1v.train.align import token_norms
    from r1v.train.samples import image_inputs

    model, tok, samples, _ = small_model
    proj = model.model.multi_modal_projector
    last = [m for m in proj.modules() if isinstance(m, torch.nn.Linear)][-1]
    saved = last.weight.detach().clone()
    try:
        with torch.no_grad():
            for scale in (1.0, 50.0):  # as initialised, then 50 times longer tokens
                last.weight.copy_(saved * scale)
                feats = model.model.get_image_features(pixel_values=image_inputs(model, samples, None)["pixel_values"])
                feats = getattr(feats, "pooler_output", feats)
                feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats]) if isinstance(feats, (list, tuple)) \
                    else feats.reshape(-1, feats.shape[-1])
                image_id = model.config.image_token_id
                ids = torch.tensor([t for s in samples for t in s.prompt + s.response if t != image_id])
                words = model.get_input_embeddings()(ids)
                got = token_norms(model, samples)
                assert got == {"visual": round(feats.norm(dim=-1).median().item(), 3),
                               "words": round(words.norm(dim=-1).median().item(), 3)}, scale
                ratio = got["visual"] / got["words"]
                assert (ratio > 10) if scale == 50.0 else (ratio < 10)
    finally:
        with torch.no_grad():
            last.weight.copy_(saved)
    text_only = [dataclasses.replace(s, pixels=None, tiles=0) for s in samples]
    assert token_norms(model, text_only) == {}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_and_entropy_equal_the_plain_log_softmax(dtype, temperature):
    """The loss head that keeps no float32 copy of the logits gives the plain log-softmax's values
    and gradients, whether a slice holds one position, a few, or all of them."""
    from r1v.train.grpo import token_entropy, token_logprobs

    torch.manual_seed(0)
    z = (torch.randn(3, 5, 37) * 3).to(dtype).requires_grad_()
    tokens, w = torch.randint(0, 37, (3, 5)), torch.randn(3, 5)
    plain = torch.log_softmax(z.float() / temperature, -1)
    want = plain.gather(-1, tokens[..., None])[..., 0]
    (want * w).sum().backward()
    grad, z.grad = z.grad.clone(), None
    for elements in (37, 37 * 4, 10**6):  # 1 position a slice, 4, all 15
        got = token_logprobs(z, tokens, temperature=temperature, elements=elements)
        assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-5)
        (got * w).sum().backward()
        assert z.grad.dtype == dtype and torch.allclose(z.grad.float(), grad.float(), atol=1e-5)
        z.grad = None
        ent = token_entropy(z, temperature=temperature, elements=elements)
        assert torch.allclose(ent, -(plain.exp() * plain).sum(-1), atol=1e-5)


def test_shared_prefix_logprobs_equal_full_sequences(small_model):
    from r1v.train.grpo import completion_logprobs, grpo_loss
    from r1v.train.data import FeatureCache
    from r1v.train.samples import Sample

    model, tok, samples, _ = small_model
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item, index=s.index, tiles=s.tiles) for s in samples[:2]]
    G = 3
    comps = [samples[k % 4].response[: 3 + k] for k in range(len(prompts) * G)]
    cache = FeatureCache()
    logp, mask = completion_logprobs(model, prompts=prompts, completions=comps, group=G, pad_id=tok.pad_token_id,
                                     cache=cache)
    for j, c in enumerate(comps):  # the naive way: each prompt + completion on its own, full forward
        p = prompts[j // G]
        ids = torch.tensor([p.prompt + c])
        logits = model(input_ids=ids, pixel_values=p.pixels).logits[0, len(p.prompt) - 1 : -1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None])[:, 0]
        assert torch.allclose(logp[j, : len(c)], ref, atol=1e-4)
        assert mask[j].sum() == len(c)
    # one GRPO step moves the projector only, and only when some advantage is non-zero
    from r1v.train.config import Parts
    from r1v.train.loop import set_parts

    set_parts(model, Parts())
    adv = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    model.zero_grad()
    logp, mask = completion_logprobs(model, prompts=prompts, completions=comps, group=G, pad_id=tok.pad_token_id,
                                     cache=cache)
    grpo_loss(logp, logp.detach(), adv, mask.float(), clip_eps=0.2)[0].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "multi_modal_projector" in n)
    assert all(g is None for n, g in grads.items() if "multi_modal_projector" not in n)


def test_engine_without_dropout_and_its_generation_under_the_training_precision(small_model, monkeypatch):
    """`Engine(dropout=False)` (MPO, GRPO, rm) makes two training-mode forwards equal where dropout
    would make them differ; and under `--mixed_precision bf16` with fp32 weights, `generating()` (MPO's
    reference log-probs, rollouts) computes what the trained forward computes, not the fp32 values."""
    import copy

    from accelerate.state import AcceleratorState

    from r1v.train.config import Parts
    from r1v.train.data import FeatureCache
    from r1v.train.engine import Engine
    from r1v.train.grpo import completion_logprobs
    from r1v.train.samples import Sample

    model, tok, samples, _ = small_model
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item, index=s.index, tiles=s.tiles) for s in samples[:2]]
    args = dict(prompts=prompts, completions=[samples[k].response[:6] for k in range(4)], group=2,
                pad_id=tok.pad_token_id, cache=FeatureCache())

    def noisy():
        m = copy.deepcopy(model)
        for x in m.modules():
            if isinstance(x, torch.nn.Dropout):
                x.p = 0.3
            if isinstance(getattr(x, "attention_dropout", None), float):
                x.attention_dropout = 0.3
        return m

    def twice(engine):
        engine.module.train()
        with torch.no_grad():
            return [engine(completion_logprobs, **args)[0] for _ in range(2)]

    a, b = twice(Engine(noisy(), Parts()))
    assert not torch.equal(a, b)  # dropout on: the same weights, two answers
    a, b = twice(Engine(noisy(), Parts(), dropout=False))
    assert torch.equal(a, b)

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    AcceleratorState._reset_state(True)
    try:
        engine = Engine(copy.deepcopy(model), Parts(), dropout=False)
        assert engine.acc.mixed_precision == "bf16"
        trained, _ = twice(engine)
        with engine.generating() as m:
            reference = completion_logprobs(m, **args)[0]
        fp32 = completion_logprobs(model.eval(), **args)[0]
    finally:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
        AcceleratorState._reset_state(True)
    gap = (fp32 - trained).abs().max().item()
    assert gap > 1e-4, gap  # bf16 rounding (7e-4 a token here): what an fp32 reference puts into MPO's log-ratios
    assert (reference - trained).abs().max().item() < gap / 10  # 0 here; outside autocast it is the gap


def test_generation_shares_the_prefix_and_matches_plain_generate(small_model):
    from r1v.train.rollout import generate

    model, tok, samples, enc = small_model
    prompts = samples[:3]
    ours = generate(model, prompts, stop_id=enc.stop_id, pad_id=tok.pad_token_id, max_new_tokens=8)
    for s, out in zip(prompts, ours):
        ref = model.generate(input_ids=torch.tensor([s.prompt]), pixel_values=s.pixels, max_new_tokens=8,
                             do_sample=False, repetition_penalty=1.0, pad_token_id=tok.pad_token_id,
                             eos_token_id=enc.stop_id)[0, len(s.prompt):].tolist()
        assert out[0] == ref[: len(out[0])] and len(out[0]) == len(ref)
    torch.manual_seed(0)
    many = generate(model, prompts, stop_id=enc.stop_id, pad_id=tok.pad_token_id, n=4, temperature=1.0,
                    max_new_tokens=8)
    assert [len(g) for g in many] == [4, 4, 4]


def test_sampling_draws_from_the_whole_distribution(small_model):
    """GRPO scores its rollouts under the full softmax, so it must sample from it: transformers reads
    top_k=None as unset and samples from the top 50 (`r1v.generation.UNTRUNCATED`). The untrained
    policy spreads its first token over the vocabulary, so 300 draws find far more than 50 tokens."""
    from r1v.generation import GenerationOptions
    from r1v.train.rollout import generate

    model, tok, samples, enc = small_model
    assert len(tok) > 200
    torch.manual_seed(0)
    drawn = generate(model, samples[:1], stop_id=enc.stop_id, pad_id=tok.pad_token_id, n=300, temperature=1.0,
                     max_new_tokens=1)[0]
    assert len({c[0] for c in drawn}) > 80
    # chat, serving and distillation sample through the same options
    s = samples[0]
    opts = GenerationOptions(max_new_tokens=1, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed=0)
    out = model.generate(input_ids=torch.tensor([s.prompt]), pixel_values=s.pixels, num_return_sequences=300,
                         pad_token_id=tok.pad_token_id, **opts.generate_kwargs())[:, len(s.prompt)]
    assert len(set(out.tolist())) > 80


def test_grpo_steps_raise_the_reward_they_are_given(small_model):
    """The policy gradient points the right way: a reward for completions rich in one token rises."""
    import copy

    from r1v.train.config import GRPOConfig, Parts
    from r1v.train.grpo import setup, step
    from r1v.train.samples import Sample

    from collections import Counter

    model, tok, samples, enc = small_model
    model = copy.deepcopy(model)
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item) for s in samples[:4]]
    cfg = GRPOConfig(steps=12, prompts_per_step=4, generations_per_prompt=8, max_completion_tokens=8, lr=3e-2,
                     parts=Parts(language=True), micro_groups=4)
    # The rewarded token: one the untrained policy already writes now and then (a reward it can
    # reach), found from one step of its rollouts with an all-zero reward (no advantage, no update).
    seen = Counter()

    def look(texts, items, **_):
        for t in texts:
            seen.update(tok(t, add_special_tokens=False)["input_ids"])
        return [0.0] * len(texts), {"accuracy": [0.0] * len(texts), "format": [0.0] * len(texts)}

    torch.manual_seed(0)
    step(setup(copy.deepcopy(model), cfg)[0], prompts, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=look)
    total = sum(seen.values())
    target = next((t for t, n in seen.most_common() if n / total < 0.1), seen.most_common(1)[0][0])
    engine, _ = setup(model, cfg)
    engine.set_lr(cfg.lr)

    def rewards_fn(texts, items, **_):
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        r = [sum(i == target for i in x) / max(1, len(x)) for x in ids]
        return r, {"accuracy": r, "format": [0.0] * len(r)}

    torch.manual_seed(0)
    history = [step(engine, prompts, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn)["reward"]
               for _ in range(cfg.steps)]
    assert sum(history[-3:]) / 3 > sum(history[:3]) / 3 + 0.2, history


def test_grpo_kl_against_a_reference_the_engine_placed(small_model):
    """kl > 0: the frozen starting policy, prepared by the engine, scores every completion; the KL
    is 0 before the first update and positive after it."""
    import copy

    from r1v.train.config import GRPOConfig
    from r1v.train.grpo import setup, step
    from r1v.train.samples import Sample

    model, tok, samples, enc = small_model
    cfg = GRPOConfig(steps=2, prompts_per_step=2, generations_per_prompt=4, max_completion_tokens=6, lr=5e-2, kl=0.1,
                     micro_groups=1)
    engine, ref = setup(copy.deepcopy(model), cfg)
    assert ref is not None and not any(p.requires_grad for p in ref.parameters())
    engine.set_lr(cfg.lr)
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item) for s in samples[:2]]

    def rewards_fn(texts, items, **_):
        r = [float(len(t) % 3) for t in texts]
        return r, {"accuracy": r, "format": [0.0] * len(r)}

    torch.manual_seed(0)
    first = step(engine, prompts, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn, ref=ref)
    second = step(engine, prompts, cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn, ref=ref)
    assert first["kl"] == pytest.approx(0.0, abs=1e-6) and second["kl"] > 1e-6, (first["kl"], second["kl"])


def test_world_compare_runs_the_recipes_sft_per_arm(recipe_run, tmp_path, capsys):
    """`r1v world compare` (AL-CoTD beside a fixed penalty) on the small world: each arm is distilled,
    then trained by the recipe's SFT stage (M0 and its iterations) from the run's transfer checkpoint in
    a run folder of its own, and scored; a rerun reuses the finished arms."""
    import shutil

    yaml_path, shared, world = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    args = ["world", "compare", "--config", str(yaml_path), "--world", str(world), "--fixed", "2.0", f"out={run}",
            "distill.max_new_tokens=8"]
    assert main(args) == 0
    results = json.loads((run / "distill-compare" / "results.json").read_text())
    start = results.pop("transfer (start)")["stop"]
    assert set(results) == {"AL-CoTD", "fixed P=2"} and all(r["n"] == 8 for r in results.values())
    for slug, r in (("al-cotd", results["AL-CoTD"]), ("fixed-p2", results["fixed P=2"])):
        arm = run / "distill-compare" / slug / "run"
        assert r["model"] == "sft/m2" and list(r["by_iteration"]) == ["m0", "m1", "m2"]  # the small recipe's taus
        assert (arm / "transfer").resolve() == (run / "transfer").resolve()  # every arm starts from the run's
        assert (arm / "sft" / "m2" / "config.json").exists() and (arm / "report.md").exists()
        assert json.loads((arm / "results.json").read_text())["stages"]["transfer"] == \
            json.loads((run / "results.json").read_text())["stages"]["transfer"]
        outs = [json.loads(x) for x in (arm / "outputs" / "sft-m2-visual.jsonl").read_text().splitlines()]
        assert r["accuracy"] == round(sum(o["correct"] for o in outs) / len(outs), 4)
    for stop in [start] + [r["stop"] for r in results.values()]:  # p(</think>) after the world's chain
        assert stop["easy"]["n"] + stop["hard"]["n"] <= 8 and stop["easy"]["n"] > 0
        assert 0 < stop["easy"]["p"] < 1 and 0 <= stop["easy"]["above_half"] <= 1
    assert "p(stop), easy" in (run / "distill-compare" / "report.md").read_text()
    # the run's report was rewritten with the arms (make claims runs the recipe first, then the compare)
    claims = (run / "report.md").read_text().split("## The paper's claims on this run")[1].split("## ")[0]
    assert "easy-item tokens" in claims and "(fixed-p2)" in claims and "p(stop) after the short chain" in claims
    capsys.readouterr()
    assert main(args) == 0
    assert "distil, then" not in capsys.readouterr().out  # both arms reused
    assert main(args + ["--iterations", "3"]) == 2  # the small recipe has two iterations after M0
    assert "--iterations 3" in capsys.readouterr().err


def test_stop_after_chain_is_the_models_next_token_probability(recipe_run, tmp_path):
    """`r1v world compare`'s p(stop): the probability of `</think>` right after each held-out problem's own
    chain, as one plain forward pass over prompt and chain gives it (the measure runs on a KV cache)."""
    from r1v.train.config import load_recipe
    from r1v.train.context import Context
    from r1v.train.samples import Encoder
    from r1v.world.compare import stop_after_chain

    yaml_path, shared, _ = recipe_run
    ctx = Context(load_recipe(str(yaml_path), [f"out={shared}"]))
    model, tok = ctx.load("transfer")
    model.eval()
    torch.manual_seed(0)  # the small world's LM is nearly uniform: louder weights make p depend on the position
    with torch.no_grad():
        for w in model.model.language_model.parameters():
            w.normal_(0, 0.3)
        model.lm_head.weight.normal_(0, 1.0)
        model.lm_head.weight[tok.convert_tokens_to_ids("</think>")].normal_(0, 6.0)
    got = stop_after_chain(ctx, model, tok, "steps", batch=3)  # batches of 3: padding differs row to row
    rows = ctx.rows("eval_visual")
    enc = Encoder(model, tok, template=ctx.cfg.model.template, max_tiles=ctx.cfg.model.max_tiles)
    close = tok.convert_tokens_to_ids("</think>")
    labels, ps, off = [], [], []
    with torch.no_grad():
        for i in range(ctx.cfg.data.eval_limit):
            item = ctx.task.read_row(rows[i], root=rows.root(i))
            s = enc.encode_many([item], [ctx.task.prompt(item)], [ctx.task.reference(item)])[0]
            k = len(s.prompt) + s.response.index(close)
            ids = torch.tensor([s.prompt + s.response])
            logits = model(input_ids=ids, pixel_values=s.pixels, attention_mask=torch.ones_like(ids)).logits
            ps.append(float(logits[0, k - 1].float().softmax(-1)[close]))
            off.append(float(logits[0, k - 2].float().softmax(-1)[close]))  # one token early
            labels.append(rows[i]["steps"])
    assert max(ps) - min(ps) > 0.05, ps  # the check below can tell positions apart
    easy = [p for p, lab in zip(ps, labels) if lab == min(labels)]
    early = [p for p, lab in zip(off, labels) if lab == min(labels)]
    assert sum(early) / len(early) != pytest.approx(sum(easy) / len(easy), abs=2e-4)
    assert got["easy"]["n"] == len(easy)
    assert got["easy"]["p"] == pytest.approx(sum(easy) / len(easy), abs=2e-4)
    assert got["easy"]["above_half"] == round(sum(p > 0.5 for p in easy) / len(easy), 4)


@pytest.mark.parametrize("recipe", sorted(str(p) for p in Path(__file__).resolve().parents[1].glob("recipes/*.yaml")))
def test_every_shipped_recipe_reads_and_passes_its_checks(recipe):
    """The real-scale recipes cannot run here; their settings are still read and checked."""
    cfg = load_recipe(recipe)
    assert cfg.stages and all(s in ("align", "transfer", "sft", "rm", "mpo", "grpo") for s in cfg.stages)


def test_under_a_sharded_engine_every_process_runs_the_vision_encoder(small_model):
    """FSDP / ZeRO-3 gather a layer's weights when it runs: a process whose micro-batch needs no
    encoder (cached features, or text-only rows) still runs it, on one blank tile, when the engine
    marks the model (LOCKSTEP), and only then."""
    import copy

    from r1v.train.data import FeatureCache
    from r1v.train.samples import LOCKSTEP, image_inputs

    model, tok, samples, _ = small_model
    model = copy.deepcopy(model)
    calls = {"vision": 0, "projector": 0}
    model.model.vision_tower.register_forward_hook(lambda *a: calls.__setitem__("vision", calls["vision"] + 1))
    model.model.multi_modal_projector.register_forward_hook(
        lambda *a: calls.__setitem__("projector", calls["projector"] + 1))
    cache = FeatureCache(memory_mb=64)
    with torch.no_grad():
        image_inputs(model, samples[:2], cache)  # misses: the encoder runs, the features are kept
        assert calls == {"vision": 1, "projector": 1}
        text = [dataclasses.replace(samples[0], pixels=None, tiles=0)]
        for marked in (False, True):
            if marked:
                setattr(model, LOCKSTEP, True)
            before = dict(calls)
            image_inputs(model, samples[:2], cache)  # hits: the encoder has nothing to do
            image_inputs(model, text, cache)  # text-only
            image_inputs(model, text, None)
            ran = {k: calls[k] - before[k] for k in calls}
            assert ran == ({"vision": 3, "projector": 3} if marked else {"vision": 0, "projector": 1}), (marked, ran)
