"""R1V2's preference stage: the reward model's loss and gradient by hand, the MPO terms by hand,
the pairing threshold, the hallucination measure on hand-written outputs, the mini-world's pairs,
and the `rm` and `mpo` stages on the small world (what trains, what stays bit-identical)."""

from __future__ import annotations

import json
import math
import random
import shutil

import numpy as np
import pytest
import torch

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.tasks.world import World, false_facts
from r1v.rewards import best_worst_pairs, format_reward, preference_reward
from r1v.train.config import load_recipe
from r1v.train.mpo import RunningMean, mpo_loss
from r1v.train.rm import pairwise_loss


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --------------------------------------------------------------------------- the reward model's loss
def test_pairwise_loss_and_its_gradient_by_hand():
    c = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    r = torch.tensor([-0.5, 1.0, 0.5], requires_grad=True)
    loss = pairwise_loss(c, r)
    want = [math.log(1 + math.exp(-1.5)), math.log(1 + math.exp(3.0)), math.log(2)]
    assert loss.tolist() == pytest.approx(want, rel=1e-6)
    loss.sum().backward()
    # d/dc -log sig(c - r) = -(1 - sig(c - r)) = -sig(r - c); d/dr = +sig(r - c)
    assert c.grad.tolist() == pytest.approx([-sig(-1.5), -sig(3.0), -0.5], rel=1e-6)
    assert r.grad.tolist() == pytest.approx([sig(-1.5), sig(3.0), 0.5], rel=1e-6)


def test_reward_head_gradient_is_the_hand_formula(tiny):
    """Through a real RewardModel: dL/dw = -sig(r- - r+) (h+ - h-), h the last token's state."""
    from r1v.model.reward import RewardModel

    model, tok = tiny
    rm = RewardModel.build(model, seed=0)
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    last = torch.tensor([3, 2])
    scores = rm(input_ids=ids, attention_mask=mask, last=last)
    pairwise_loss(scores[0], scores[1]).backward()
    with torch.no_grad():
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        hp, hn = h[0, 3], h[1, 2]
        rp, rn = float(rm.head(hp)), float(rm.head(hn))
    s = scores.detach()
    assert float(s[0]) == pytest.approx(rp, rel=1e-5) and float(s[1]) == pytest.approx(rn, rel=1e-5)
    want = -sig(rn - rp) * (hp - hn)
    assert torch.allclose(rm.head.weight.grad[0], want, atol=1e-6)


def test_mean_pooling_reads_the_response_tokens_only(tiny):
    from r1v.model.reward import RewardModel

    model, _ = tiny
    rm = RewardModel.build(model, seed=1, pooling="mean")
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        got = rm(input_ids=ids, attention_mask=mask, last=torch.tensor([4, 2]), first=torch.tensor([2, 1]))
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = torch.stack([rm.head(h[0, 2:5].mean(0)), rm.head(h[1, 1:3].mean(0))]).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-6)


def test_reward_model_saves_and_loads_as_one_folder(tiny, tmp_path):
    from r1v.model.reward import RewardModel, is_reward_model, load_reward, save_reward

    model, tok = tiny
    rm = RewardModel.build(model, seed=3, pooling="mean")
    out = save_reward(rm, tok, tmp_path / "rm", max_tiles=1, info={"base": "x"})
    assert is_reward_model(out) and (out / "config.json").exists()
    back, _, meta = load_reward(out)
    ids, last, first = torch.tensor([[5, 6, 7, 8]]), torch.tensor([3]), torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(rm(input_ids=ids, last=last, first=first), back(input_ids=ids, last=last, first=first))
    assert meta["base"] == "x" and meta["pooling"] == "mean" and back.pooling == "mean"
    from r1v.errors import R1VError

    with pytest.raises(R1VError, match="not a reward model"):
        load_reward(tmp_path)


# --------------------------------------------------------------------------- MPO's loss
def test_mpo_terms_by_hand():
    lc, lr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -2.0])
    n = torch.tensor([5.0, 2.0])
    beta, delta = 0.5, 0.1
    total, t = mpo_loss(lc, lr, rc, rr, n, beta=beta, delta=delta, w_dpo=0.8, w_bco=0.2, w_nll=1.0)
    for i in range(2):
        a = beta * (float(lc[i]) - float(rc[i]))  # beta * log-ratio, chosen
        b = beta * (float(lr[i]) - float(rr[i]))
        dpo = -math.log(sig(a - b))
        bco = -math.log(sig(a - delta)) - math.log(sig(-(b - delta)))
        nll = -float(lc[i]) / float(n[i])
        assert float(t["dpo"][i]) == pytest.approx(dpo, rel=1e-6)
        assert float(t["bco"][i]) == pytest.approx(bco, rel=1e-6)
        assert float(t["nll"][i]) == pytest.approx(nll, rel=1e-6)
        assert float(total[i]) == pytest.approx(0.8 * dpo + 0.2 * bco + nll, rel=1e-6)
    # with delta 0 the BCO term is TRL's `bco_pair` and the DPO term TRL's `sigmoid` (trl/trainer/dpo_trainer.py)
    _, t0 = mpo_loss(lc, lr, rc, rr, n, beta=beta, delta=0.0, w_dpo=1, w_bco=1, w_nll=1)
    a, b = beta * (lc - rc), beta * (lr - rr)
    assert torch.allclose(t0["bco"], -torch.nn.functional.logsigmoid(a) - torch.nn.functional.logsigmoid(-b))


def test_mpo_loss_gradient_pushes_chosen_up_and_rejected_down():
    lc = torch.tensor([-5.0], requires_grad=True)
    lr = torch.tensor([-5.0], requires_grad=True)
    loss, _ = mpo_loss(lc, lr, torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([4.0]), beta=0.1, delta=0.0,
                       w_dpo=0.8, w_bco=0.2, w_nll=1.0)
    loss.sum().backward()
    assert lc.grad.item() < 0 < lr.grad.item()  # descent raises log p(chosen), lowers log p(rejected)


def test_running_mean_is_the_mean_of_everything_added():
    m = RunningMean()
    m.add(3.0, 2)
    m.add(-1.0, 1)
    m.add(0.0, 0)
    assert m.mean == pytest.approx(2 / 3) and m.count == 3
    assert RunningMean(**m.state()).mean == m.mean


# --------------------------------------------------------------------------- pairs and rewards
def test_pairs_below_the_threshold_are_never_made():
    rewards = [1.0, 3.0, 2.0, 1.5,    # gap 2.0: exactly the threshold -> a pair (3.0 vs 1.0)
               0.0, 1.99, 1.0, 0.5,   # gap 1.99: none
               2.0, 2.0, 2.0, 2.0,    # all equal: none
               5.0, -1.0, 5.0, -1.0]  # ties: the earlier sample on each side
    assert best_worst_pairs(rewards, 4, 2.0) == [(1, 0), (12, 13)]
    assert best_worst_pairs([1.0, 1.0], 2, 0.0) == []  # equal rewards never pair, even at threshold 0
    # a sample the reward model could not score (NaN, an endpoint's inf) is neither chosen nor rejected
    nan, inf = float("nan"), float("inf")
    assert best_worst_pairs([nan, 3.0, 0.0, 1.0, 2.0, -inf, 0.0, inf, nan, nan, nan, 5.0], 4, 1.0) == [(1, 2), (4, 6)]
    rng = random.Random(0)
    for _ in range(300):
        g, t = rng.randint(2, 6), rng.uniform(0, 3)
        rs = [round(rng.uniform(-2, 2), 1) for _ in range(g * 5)]
        made = best_worst_pairs(rs, g, t)
        for c, r in made:
            assert c // g == r // g and rs[c] - rs[r] >= t and rs[c] == max(rs[c // g * g : c // g * g + g])
        should = [k for k in range(5) if max(rs[k * g : k * g + g]) - min(rs[k * g : k * g + g]) >= max(t, 1e-12)]
        assert [c // g for c, _ in made] == should
    with pytest.raises(ValueError):
        best_worst_pairs([1.0, 2.0, 3.0], 2, 0.0)


def test_only_an_eligible_sample_is_chosen():
    """mpo.factual_chosen: a sample that states a false fact is never the chosen one; it may still be
    the rejected one, and a group with no eligible sample, or whose best eligible one is too close
    to the worst, makes no pair."""
    rewards = [3.0, 2.5, 0.0, 1.0,    # the best is ineligible: the next (2.5) against the worst
               3.0, 1.0, 0.5, 0.0,    # only the best-but-ineligible clears the gap: none
               2.0, 1.0, 4.0, -1.0,   # none eligible: none
               1.0, 0.0, 3.0, 0.0]    # the worst is ineligible too: it is still rejected (the earlier tie)
    eligible = [False, True, True, True,
                False, True, True, True,
                False, False, False, False,
                True, False, True, True]
    assert best_worst_pairs(rewards, 4, 2.0, eligible) == [(1, 2), (14, 13)]
    assert best_worst_pairs(rewards, 4, 2.0, [True] * 16) == best_worst_pairs(rewards, 4, 2.0)
    rng = random.Random(1)
    for _ in range(300):
        g, t = rng.randint(2, 6), rng.uniform(0, 3)
        rs = [round(rng.uniform(-2, 2), 1) for _ in range(g * 5)]
        ok = [rng.random() < 0.5 for _ in rs]
        for c, r in best_worst_pairs(rs, g, t, ok):
            group = range(c // g * g, c // g * g + g)
            assert ok[c] and rs[c] == max(rs[k] for k in group if ok[k]) and rs[r] == min(rs[k] for k in group)
            assert rs[c] - rs[r] >= t
    with pytest.raises(ValueError):
        best_worst_pairs([1.0, 2.0], 2, 0.0, [True])


def test_preference_reward_adds_the_rules_to_the_reward_model():
    out = preference_reward([2.0, 2.0, -1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [False, True, None], rm_weight=0.5,
                            accuracy_weight=2.0, format_weight=1.0, fact_weight=3.0)
    assert out == [1.0 + 2.0 + 1.0, 1.0 + 0.0 + 1.0 - 3.0, -0.5 + 2.0 + 0.0]  # None: the data cannot tell, no cost
    assert preference_reward(None, [1.0], [0.0], [None]) == [1.0]
    with pytest.raises(ValueError):
        preference_reward([1.0], [1.0, 0.0], [1.0, 1.0], [None, None])


# --------------------------------------------------------------------------- hallucination, by hand
SHAPES = {"objects": [{"cell": 0, "colour": "red", "shape": "circle"}, {"cell": 1, "colour": "red", "shape": "square"},
                      {"cell": 2, "colour": "blue", "shape": "circle"}]}
BARS = {"bars": [{"colour": "red", "value": 2}, {"colour": "green", "value": 7}, {"colour": "blue", "value": 4},
                 {"colour": "yellow", "value": 5}]}


@pytest.mark.parametrize("family, scene, output, false", [
    ("shapes", SHAPES, "<think>\nred shapes 2. circles 2. 2 + 2 = 4.</think>\n\\boxed{4}", []),
    ("shapes", SHAPES, " red shapes 3. circles 2. 3 + 2 = 5.</think>\\boxed{5}", ["red shapes 3"]),
    ("shapes", SHAPES, " red circles 1. blue squares 0. green shapes 0.</think>", []),
    ("shapes", SHAPES, " blue circles 2.</think>", ["blue circles 2"]),
    ("shapes", SHAPES, " red shapes 2. circles 2. 2 + 2 = 5.</think>\\boxed{5}", []),  # bad sum: not a visual fact
    ("shapes", SHAPES, "I am not sure what the picture shows.</think>\\boxed{3}", []),  # no fact stated
    ("shapes", SHAPES, "</think>\nred shapes 9.\n\\boxed{9}", ["red shapes 9"]),  # stated after the think block
    ("bars", BARS, " tallest green 7. shortest red 2. 7 - 2 = 5.</think>", []),
    ("bars", BARS, " tallest yellow 5. shortest red 2.</think>", ["tallest yellow 5"]),  # yellow is 5, not tallest
    ("bars", BARS, " blue 4. red 3.</think>", ["red 3"]),
    ("clock", {"hour": 9}, " clock 9. 9 + 5 = 14. 14 - 12 = 2.</think>", []),
    ("clock", {"hour": 9}, " clock 8. 8 + 5 = 13.</think>", ["clock 8"]),
    ("expr", {"expression": "8+7-1"}, " 8 + 7 = 15. 15 - 1 = 14.</think>", []),
    ("expr", {"expression": "8+7-1"}, " 8 + 9 = 17. 17 - 1 = 16.</think>", ["8 + 9 = 17"]),
    ("expr", {"expression": "8+7-1"}, " 8 + 7 = 16. 16 - 1 = 15.</think>", []),  # wrong sum, digits read right
    ("expr", {"expression": "8+7-1"}, " 8 - 7 = 1.</think>", ["8 - 7 = 1"]),  # the sign misread
])
def test_false_facts_on_hand_written_outputs(family, scene, output, false):
    assert false_facts(family, scene, output) == false


def test_the_task_says_hallucinated_only_where_it_knows_the_scene():
    task = World()
    row = {"id": "x", "family": "clock", "question": "q", "answer": "2", "scene": {"hour": 9}}
    item = task.read_row(row)
    assert task.hallucinated(item, " clock 3.</think>\\boxed{2}") is True
    assert task.hallucinated(item, " clock 9.</think>\\boxed{2}") is False
    assert task.hallucinated(task.read_row({**row, "scene": None}), " clock 3.</think>") is None


def test_the_summary_breaks_the_rate_down_like_the_accuracy():
    """The rate by family counts only outputs whose scene is known, so a family without scenes
    neither dilutes nor appears in it."""
    from r1v.train.rollout import Scored

    groups = [{"family": "expr"}, {"family": "expr"}, {"family": "clock"}, {"family": "clock"}, {"family": "bars"}]
    s = Scored(accuracy=0.4, n=5, ids=list("abcde"), correct=[False, True, True, False, True], outputs=[""] * 5,
               lengths=[1] * 5, groups=groups, hallucinated=[True, False, False, False, None]).summary()
    assert s["hallucination"] == 0.25 and s["hallucination_n"] == 4
    assert s["by"]["family"] == {"bars": 1.0, "clock": 0.5, "expr": 0.5}
    assert s["hallucination_by"]["family"] == {"clock": 0.0, "expr": 0.5}
    unknown = Scored(accuracy=1.0, n=1, ids=["a"], correct=[True], outputs=[""], lengths=[1],
                     groups=[{"family": "bars"}], hallucinated=[None]).summary()
    assert "hallucination" not in unknown and "hallucination_by" not in unknown


def test_world_pairs_are_what_they_say(small_world):
    from r1v.world.pairs import KINDS, preference_pairs

    out, _ = small_world
    rows = [json.loads(x) for x in (out / "data" / "visual-train.jsonl").read_text().splitlines()][:60]
    pairs = preference_pairs(rows, random.Random(0))
    assert {p["kind"] for p in pairs} == set(KINDS)
    task = World()
    by = {r["id"]: r for r in rows}
    for p in pairs:
        item = task.read_row(by[p["id"].rsplit("-", 1)[0]])
        chosen, rejected = "<think>\n" + p["chosen"], "<think>\n" + p["rejected"]
        assert task.score(item, chosen).correct and not task.hallucinated(item, chosen)
        assert format_reward([p["chosen"]]) == [1.0]
        if p["kind"] == "false_fact":
            assert task.hallucinated(item, rejected) and format_reward([p["rejected"]]) == [1.0]
        if p["kind"] == "wrong_answer":
            assert not task.score(item, rejected).correct and not task.hallucinated(item, rejected)
        if p["kind"] == "format":
            assert format_reward([p["rejected"]]) == [0.0] and not task.hallucinated(item, rejected)


# --------------------------------------------------------------------------- the stages on the small world
@pytest.fixture(scope="module")
def r1v2_run(recipe_run, tmp_path_factory):
    """rm then mpo on a copy of the small recipe's run (its transfer stage), a few steps each."""
    yaml_path, shared, world = recipe_run
    run = tmp_path_factory.mktemp("r1v2") / "run"
    shutil.copytree(shared, run)
    settings = [f"out={run}", f"data.rm_train={world}/recipe/rm-train.jsonl", f"data.rm_eval={world}/recipe/rm-eval.jsonl",
                "rm.optim.samples_per_step=8", "rm.optim.micro_batch_per_device=4", "rm.optim.epochs=0.1",
                "rm.optim.lr=1e-2", "mpo.rounds=2", "mpo.prompts_per_round=6", "mpo.samples_per_prompt=4",
                "mpo.max_completion_tokens=10", "mpo.optim.samples_per_step=4", "mpo.optim.micro_batch_per_device=2",
                "mpo.optim.lr=1e-2", "mpo.threshold=0.0001", "stages=[align,transfer,rm,mpo]"]
    assert main(["recipe", "run", str(yaml_path), *settings]) == 0
    return run, world, settings, yaml_path


def test_rm_trains_its_head_and_llm_and_leaves_vision_bit_identical(r1v2_run):
    from tests.test_train import part, same, weights

    run, world, _, _ = r1v2_run
    transfer, rm = weights(run / "transfer"), weights(run / "rm")
    V, P, L = "model.vision_tower.", "model.multi_modal_projector.", "model.language_model."
    assert same(part(transfer, V), part(rm, V))
    assert not same(part(transfer, L), part(rm, L)) and not same(part(transfer, P), part(rm, P))
    results = json.loads((run / "results.json").read_text())
    ev = results["stages"]["rm"]["pairs_eval"]
    assert ev["n"] > 0 and set(ev["by_kind"]) == {"wrong_answer", "false_fact", "format"}
    scores = [json.loads(x) for x in (run / "outputs" / "rm-pairs.jsonl").read_text().splitlines()]
    assert len(scores) == ev["n"] and sum(s["chosen"] > s["rejected"] for s in scores) / len(scores) == pytest.approx(
        ev["accuracy"], abs=1e-4)


def test_rm_from_align_with_mean_pooling_as_the_mini_world_recipe(r1v2_run, tmp_path):
    """recipes/r1v2-tiny.yaml builds the reward model on the aligned substitute, not on the policy:
    its LLM is the substitute's, trained; vision stays align's, bit for bit."""
    from r1v.model.reward import load_reward
    from tests.test_train import part, same, weights

    run, _, settings, yaml_path = r1v2_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "rm")
    over = [s for s in settings if not s.startswith(("out=", "stages="))]
    # a small lr, so that the trained LLM stays nearer its start than the two LMs are to each other
    assert main(["train", "rm", "--config", str(yaml_path), f"out={copy}", *over, "rm.base=align",
                 "rm.pooling=mean", "rm.optim.lr=1e-4"]) == 0
    align, transfer, rm = weights(copy / "align"), weights(copy / "transfer"), weights(copy / "rm")
    V, L = "model.vision_tower.", "model.language_model."
    assert same(part(align, V), part(rm, V))
    assert not same(part(align, L), part(rm, L)) and not same(part(transfer, L), part(rm, L))

    def far(a, b):
        return sum(float((a[k].float() - b[k].float()).norm()) for k in a)

    # it started from the substitute's LLM, not the reasoning one
    assert far(part(rm, L), part(align, L)) < far(part(rm, L), part(transfer, L))
    _, _, meta = load_reward(copy / "rm")
    assert meta["base"] == "align" and meta["pooling"] == "mean"


def test_rm_phases_plan_their_pairs_steps_and_lrs():
    from r1v.train.config import RMConfig, RMPhase
    from r1v.train.rm import plan

    names = ["wrong_answer", "format", "false_fact"]
    kinds = np.array([0, 1, 0, 2, 0, 1])
    ids = np.array([0, 1, 2, 3, 5])  # row 4 is a tie
    cfg = RMConfig()
    cfg.optim.samples_per_step, cfg.optim.epochs, cfg.optim.lr = 2, 1.0, 3e-4
    (one,) = plan(kinds, names, ids, cfg)  # no phases: every pair, optim.epochs
    assert one.ids.tolist() == [0, 1, 2, 3, 5] and one.steps == 3 and one.lr == 3e-4 and one.kinds == []
    cfg.phases = [RMPhase(kinds=["wrong_answer"], epochs=3), RMPhase(kinds=[], epochs=2, lr=1e-4)]
    slips, mix = plan(kinds, names, ids, cfg)
    assert slips.ids.tolist() == [0, 2] and slips.steps == 3 and slips.lr == 3e-4  # the tie stays out
    assert mix.ids.tolist() == [0, 1, 2, 3, 5] and mix.steps == 5 and mix.lr == 1e-4
    cfg.phases = [RMPhase(kinds=["format", "false_fact"], epochs=1)]
    assert plan(kinds, names, ids, cfg)[0].ids.tolist() == [1, 3, 5]
    cfg.phases = [RMPhase(kinds=["slip"], epochs=1)]
    with pytest.raises(R1VError, match=r"kinds=\['slip'\] selects no pair.*false_fact, format, wrong_answer"):
        plan(kinds, names, ids, cfg)
    for bad, msg in (("[{epochs: 0}]", r"rm.phases\[0\].epochs=0.0"), ("[{epochs: 1}, {lr: -1}]", r"rm.phases\[1\].lr"),
                     ("[{kind: [format]}]", "unknown setting 'rm.phases\\[0\\].kind'")):
        with pytest.raises(R1VError, match=msg):
            load_recipe("recipes/r1v2-tiny.yaml", [f"rm.phases={bad}"])
    assert [p.kinds for p in load_recipe("recipes/r1v2-tiny.yaml").rm.phases] == [["wrong_answer"], []]


def test_rm_phases_run_in_order_and_resume_across_their_boundary(r1v2_run, tmp_path, monkeypatch):
    """Two phases (the slips, then every pair) log their steps in order, each over its own pairs; a
    crash in phase 2 resumes to the weights of an uninterrupted run; one phase of every pair is
    the plain stage, bit for bit."""
    from tests.test_train import crash_at_step, same, weights

    run, world, settings, yaml_path = r1v2_run
    over = [s for s in settings if not s.startswith(("out=", "stages="))] + ["checkpoint.every_steps=1"]
    phases = "rm.phases=[{kinds: [wrong_answer], epochs: 0.2}, {epochs: 0.1, lr: 5e-3}]"
    runs = {}
    for name in ("whole", "crashed", "plain", "one"):
        runs[name] = tmp_path / name
        shutil.copytree(run, runs[name])
        shutil.rmtree(runs[name] / "rm")
    assert main(["train", "rm", "--config", str(yaml_path), f"out={runs['whole']}", *over, phases]) == 0
    rows = [json.loads(x) for x in (world / "recipe" / "rm-train.jsonl").read_text().splitlines()]
    n_slips = sum(r["kind"] == "wrong_answer" for r in rows)
    s1, s2 = math.ceil(n_slips * 0.2 / 8), math.ceil(len(rows) * 0.1 / 8)
    logged = [json.loads(x) for x in (runs["whole"] / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in logged if m.get("stage") == "rm"]
    assert [(m["step"], m["phase"]) for m in logged] == [(k, int(k >= s1)) for k in range(s1 + s2)]
    assert logged[0]["lr"] == pytest.approx(1e-2) and logged[s1]["lr"] == pytest.approx(5e-3)  # fresh schedules
    done = json.loads((runs["whole"] / "results.json").read_text())["stages"]["rm"]["phases"]
    assert [(p["kinds"], p["pairs"], p["steps"]) for p in done] == [(["wrong_answer"], n_slips, s1),
                                                                     ("all", len(rows), s2)]
    assert main(["recipe", "report", str(runs["whole"])]) == 0
    assert f"In phases: wrong_answer ({n_slips} pairs, {s1} steps, lr 0.01); then all ({len(rows)} pairs, {s2} " \
        "steps, lr 0.005)." in (runs["whole"] / "report.md").read_text()
    crash_at_step(monkeypatch, s1 + 1, ["train", "rm", "--config", str(yaml_path), f"out={runs['crashed']}", *over,
                                        phases])
    assert main(["train", "rm", "--config", str(yaml_path), f"out={runs['crashed']}", *over, phases]) == 0
    assert same(weights(runs["whole"] / "rm"), weights(runs["crashed"] / "rm"))
    assert (runs["whole"] / "outputs" / "rm-pairs.jsonl").read_text() == \
        (runs["crashed"] / "outputs" / "rm-pairs.jsonl").read_text()
    assert main(["train", "rm", "--config", str(yaml_path), f"out={runs['plain']}", *over]) == 0
    assert main(["train", "rm", "--config", str(yaml_path), f"out={runs['one']}", *over,
                 "rm.phases=[{epochs: 0.1}]"]) == 0
    assert same(weights(runs["plain"] / "rm"), weights(runs["one"] / "rm"))


def test_mpo_trains_the_projector_only_and_pairs_respect_the_threshold(r1v2_run):
    from tests.test_train import part, same, weights

    run, _, settings, _ = r1v2_run
    results = json.loads((run / "results.json").read_text())
    assert "mpo" in results["done"] and {"mpo/r1", "mpo/r2"} <= set(results["stages"])
    transfer, r2 = weights(run / "transfer"), weights(run / "mpo" / "r2")
    V, P, L = "model.vision_tower.", "model.multi_modal_projector.", "model.language_model."
    assert same(part(transfer, V), part(r2, V)) and same(part(transfer, L), part(r2, L))
    assert not same(part(transfer, P), part(r2, P))
    for r in (1, 2):
        rows = [json.loads(x) for x in (run / "mpo-pairs" / f"round-{r}.jsonl").read_text().splitlines()]
        assert len(rows) == results["stages"][f"mpo/r{r}"]["sampling"]["pairs"] > 0
        assert all(x["reward_chosen"] - x["reward_rejected"] >= 0.0001 for x in rows)
        # the round's count of pairs that put a right answer over a wrong one is its pairs' own
        made = results["stages"][f"mpo/r{r}"]["sampling"]
        assert made["right_over_wrong"] == sum(x["accuracy_chosen"] > x["accuracy_rejected"] for x in rows)
        assert made["wrong_over_right"] == sum(x["accuracy_chosen"] < x["accuracy_rejected"] for x in rows)
    assert "right over wrong" in (run / "report.md").read_text()
    assert "hallucination" in results["stages"]["mpo/r2"]["eval"]["visual"]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"dpo", "bco", "nll", "delta"} <= set(next(m for m in metrics if m["stage"] == "mpo/r1"))
    # each round's delta is over its own steps' implicit rewards (against its own reference): round 2
    # starts again at 0, and counts 2 rewards a pair it trained on
    steps = {r: [m for m in metrics if m["stage"] == f"mpo/r{r}"] for r in (1, 2)}
    for r in (1, 2):
        assert results["stages"][f"mpo/r{r}"]["delta"]["count"] == 2 * sum(m["pairs"] for m in steps[r])
    # a step-0 reward is a log-ratio against the round's own starting policy: 0, but for batching's float
    # noise (metrics keep 5 decimals); a delta carried over from round 1 would not be
    assert abs(steps[2][0]["delta"]) < 1e-5 < abs(steps[1][-1]["delta"])


def test_a_high_threshold_makes_no_pairs_and_says_so(r1v2_run, tmp_path, capsys):
    run, _, settings, yaml_path = r1v2_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    args = [s for s in settings if not s.startswith(("out=", "mpo.threshold"))]
    assert main(["train", "mpo", "--config", str(yaml_path), f"out={copy}", *args, "mpo.threshold=1e9"]) == 2
    assert "no pairs; lower the threshold" in capsys.readouterr().err


def test_mpo_factual_chosen_never_chooses_a_sample_that_states_a_false_fact(r1v2_run, tmp_path, monkeypatch):
    """With mpo.factual_chosen, no pair's chosen sample is one the task flags (here: every sample of
    odd length, so that half of them are), and it still makes pairs, some rejecting a flagged one."""
    run, _, settings, yaml_path = r1v2_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "mpo")
    shutil.rmtree(copy / "mpo-pairs")
    flagged = lambda self, item, text: len(text) % 2 == 1  # noqa: E731
    monkeypatch.setattr(World, "hallucinated", flagged)
    args = [s for s in settings if not s.startswith(("out=", "mpo.rounds"))]
    args += ["mpo.rounds=1", "mpo.factual_chosen=true"]
    assert main(["train", "mpo", "--config", str(yaml_path), f"out={copy}", *args]) == 0
    pairs = [json.loads(x) for x in (copy / "mpo-pairs" / "round-1.jsonl").read_text().splitlines()]
    assert pairs and not any(len(p["chosen_text"]) % 2 for p in pairs)
    assert any(len(p["rejected_text"]) % 2 for p in pairs)


def test_local_reward_scores_as_the_stage_scored(r1v2_run):
    """LocalReward (MPO's in-process scorer) gives the held-out pair scores the rm stage wrote."""
    from r1v.evaluate.tasks import Item
    from r1v.model.reward import load_reward
    from r1v.train.rm import LocalReward

    run, world, _, _ = r1v2_run
    rm, tok, _ = load_reward(run / "rm")
    scorer = LocalReward(rm, tok, max_tiles=1)
    pairs = [json.loads(x) for x in (world / "recipe" / "rm-eval.jsonl").read_text().splitlines()][:3]
    written = {json.loads(x)["id"]: json.loads(x) for x in (run / "outputs" / "rm-pairs.jsonl").read_text().splitlines()}
    root = world / "recipe"
    items = [Item(id=p["id"], question=p["prompt"], answer=None, images=[(root / p["image"]).read_bytes()])
             for p in pairs for _ in range(2)]
    got = scorer.score(items, [p["prompt"] for p in pairs for _ in range(2)],
                       [x for p in pairs for x in (p["chosen"], p["rejected"])])
    want = [x for p in pairs for x in (written[p["id"]]["chosen"], written[p["id"]]["rejected"])]
    assert got == pytest.approx(want, abs=1e-4)


def test_once_each_hands_one_score_to_every_copy():
    """Each distinct (item, prompt, response) reaches the scorer once, in first-seen order, and its
    copies get its score, even from a scorer whose score moves with the batch (as bf16's rounding can)."""
    from r1v.evaluate.tasks import Item
    from r1v.train.rm import once_each

    class Noisy:
        def __init__(self):
            self.seen = []

        @once_each
        def score(self, items, prompts, responses):
            self.seen.append([(i.id, p, r) for i, p, r in zip(items, prompts, responses)])
            return [len(r) + 0.001 * k for k, r in enumerate(responses)]  # a copy later in the batch scores higher

    a, b = Item(id="a", question="q", answer="1"), Item(id="b", question="q", answer="1")
    s = Noisy()
    got = s.score([a, a, a, a, b, b], ["p"] * 4 + ["p", "p2"], ["xx", "yyy", "xx", "xx", "xx", "xx"])
    assert s.seen == [[("a", "p", "xx"), ("a", "p", "yyy"), ("b", "p", "xx"), ("b", "p2", "xx")]]
    assert got == [2.0, 3.001, 2.0, 2.0, 2.002, 2.003]
    assert s.score([], [], []) == []


def test_local_reward_scores_copies_once_and_alike(r1v2_run, monkeypatch):
    """A group of one completion repeated (a confident policy) is scored in one forward row, across
    batches whose padding differs, and every copy gets the same score, so its group term is 0."""
    import r1v.train.rm as rm_mod
    from r1v.evaluate.tasks import Item
    from r1v.model.reward import load_reward
    from r1v.rewards import normalise_rm

    run, world, _, _ = r1v2_run
    rm, tok, _ = load_reward(run / "rm")
    scorer = rm_mod.LocalReward(rm, tok, max_tiles=1, batch_size=2)
    p = json.loads((world / "recipe" / "rm-eval.jsonl").read_text().splitlines()[0])
    item = Item(id=p["id"], question=p["prompt"], answer=None, images=[(world / "recipe" / p["image"]).read_bytes()])
    rows = []
    scores_of = rm_mod.scores_of
    monkeypatch.setattr(rm_mod, "scores_of",
                        lambda m, samples, **k: rows.append(len(samples)) or scores_of(m, samples, **k))
    responses = [p["chosen"]] * 3 + [p["rejected"]] + [p["chosen"]] * 4
    got = scorer.score([item] * 8, [p["prompt"]] * 8, responses)
    assert rows == [2]  # two distinct completions, one batch
    assert len(set(got[:3] + got[4:])) == 1 and got[3] != got[0]
    assert [got[0], got[3]] == scorer.score([item] * 2, [p["prompt"]] * 2, [p["chosen"], p["rejected"]])
    assert normalise_rm(got[:3] + got[4:6], 5) == [0.0] * 5


def test_a_served_reward_model_scores_as_the_local_one(r1v2_run):
    """RemoteReward against `r1v rm serve`'s app on a loopback port gives LocalReward's scores; a
    bad request is a 400, a missing key a 401, a dead endpoint one clear error."""
    import threading
    import urllib.error
    import urllib.request

    import uvicorn

    from r1v.errors import R1VError
    from r1v.evaluate.tasks import Item
    from r1v.train.rm import RemoteReward
    from r1v.train.rm_cli import make_app, open_scorer

    run, world, _, _ = r1v2_run
    local = open_scorer(str(run / "rm"), max_tiles=1)
    server = uvicorn.Server(uvicorn.Config(make_app(local, api_key="k"), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        p = json.loads((world / "recipe" / "rm-eval.jsonl").read_text().splitlines()[0])
        item = Item(id=p["id"], question=p["prompt"], answer=None,
                    images=[(world / "recipe" / p["image"]).read_bytes()])
        args = ([item, item], [p["prompt"]] * 2, [p["chosen"], p["rejected"]])
        assert RemoteReward(url, api_key="k").score(*args) == pytest.approx(local.score(*args), abs=1e-5)
        for body, key, code in ((b'{"prompt": 3}', "k", 400), (b'{"prompt": "q", "responses": []}', None, 401)):
            req = urllib.request.Request(url + "/score", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {key}"} if key else {})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req)
            assert e.value.code == code
        with pytest.raises(R1VError, match="failed: HTTPError"):
            RemoteReward(url).score(*args)  # no key
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.mark.parametrize("action, steps_run, alarms", [("stop", 1, 1), ("flag", 3, 2)])
def test_grpo_hallucination_ceiling_stops_or_flags(recipe_run, tmp_path, monkeypatch, action, steps_run, alarms):
    """R1V2's monitoring: every held-out scoring (grpo.eval_every) past the ceiling is an alarm; `stop`
    ends GRPO there and keeps that model, `flag` goes on. (The small world's untrained LM states no
    facts, so the task is made to call every output a hallucination.)"""
    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    monkeypatch.setattr(World, "hallucinated", lambda self, item, output: True)
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}", "grpo.steps=3", "grpo.eval_every=1",
                 "grpo.hallucination_ceiling=0.5", f"grpo.hallucination_action={action}"]) == 0
    r = json.loads((run / "results.json").read_text())["stages"]["grpo"]
    assert r["steps_run"] == steps_run and len(r["hallucination_alarms"]) == alarms
    assert r["hallucination_alarms"][0] == {"step": 1, "hallucination": 1.0, "ceiling": 0.5, "action": action}
    assert r["eval"]["visual"]["hallucination"] == 1.0
    assert [c["step"] for c in r["candidates"]] == list(range(1, steps_run + 1))  # each step probed once
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["hallucination"] for m in rows if m.get("stage") == "grpo"] == [1.0] * steps_run  # rollouts, every step


def test_mpo_resumes_inside_a_round_after_a_crash(r1v2_run, tmp_path, monkeypatch):
    """A crash while training round 2 loses no pairs: `recipe run` takes round 2's pairs file, resumes
    from the mid-round checkpoint, and ends with the weights and held-out outputs of an uninterrupted run."""
    from tests.test_train import crash_at_step, same, weights

    run, _, settings, yaml_path = r1v2_run
    args = [s for s in settings if not s.startswith("out=")] + ["checkpoint.every_steps=1", "mpo.optim.epochs=2"]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    shutil.copytree(run, whole)
    shutil.copytree(run, crashed)
    assert main(["train", "mpo", "--config", str(yaml_path), f"out={whole}", *args]) == 0
    metrics = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    first = sum(m.get("stage") == "mpo/r1" for m in metrics)
    assert sum(m.get("stage") == "mpo/r2" for m in metrics) >= 2
    # round 2's second step dies, after its first was checkpointed
    crash_at_step(monkeypatch, first + 2, ["train", "mpo", "--config", str(yaml_path), f"out={crashed}", *args])
    pairs = (crashed / "mpo-pairs" / "round-2.jsonl").read_text()
    assert any((crashed / "checkpoints" / "mpo").glob("step-002-*"))
    assert main(["recipe", "run", str(yaml_path), f"out={crashed}", *args]) == 0
    assert (crashed / "mpo-pairs" / "round-2.jsonl").read_text() == pairs  # not sampled again
    a, b = weights(whole / "mpo" / "r2"), weights(crashed / "mpo" / "r2")
    assert same(a, b)
    out = "outputs/mpo-r2-visual.jsonl"
    assert (whole / out).read_text() == (crashed / out).read_text()
