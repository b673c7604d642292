"""R1V2's RL and R1V3's checkpoint choice: the hybrid reward's normalisation on adversarial values,
reward hacking, the Selective Sample Buffer (proportions, bounds, replay counts, off-policy ratios
by hand), the pool filter, the critical-token entropy, and the GRPO stage on the small world with
all of them on, through a crash."""

from __future__ import annotations

import json
import math
import shutil
import zlib

import numpy as np
import pytest
import torch

from r1v.cli import main
from r1v.rewards import format_reward, hybrid_reward, informative_groups, normalise_rm
from r1v.train.critical import choose, critical_entropy, critical_value, reasoning_mask
from r1v.train.grpo import grpo_loss, old_logprobs
from r1v.train.ssb import Group, SelectiveSampleBuffer, replay_count
from tests.test_train import small_model  # noqa: F401  (the fixture)

INF, NAN = float("inf"), float("nan")


# --------------------------------------------------------------------------- the hybrid reward
def test_group_normalisation_by_hand_and_its_bounds():
    got = normalise_rm([1.0, 3.0, 5.0, 100.0], 4, clip=2.0)
    mean = 27.25
    std = math.sqrt(sum((x - mean) ** 2 for x in [1, 3, 5, 100]) / 4)
    want = [max(-2, min(2, (x - mean) / std)) / 2 for x in [1, 3, 5, 100]]
    assert got == pytest.approx(want)
    assert all(-1 <= t <= 1 for t in normalise_rm([-1e300, 1e300, 0.0, 5.0], 4))
    # offset and scale of the reward model do not matter
    assert normalise_rm([10 * x - 7 for x in [1.0, 3.0, 5.0, 100.0]], 4) == pytest.approx(got)


@pytest.mark.parametrize("scheme, floor", [("group", -1.0), ("sigmoid", 0.0)])
def test_nan_and_infinite_scores_are_never_rewarded(scheme, floor):
    scores = [NAN, INF, -INF, 2.0, 1.0, 0.0]
    got = normalise_rm(scores, 6, scheme=scheme)
    assert got[:3] == [floor] * 3 and all(math.isfinite(t) for t in got)
    assert all(t >= floor for t in got[3:]) and got[3] > got[5]
    # the +inf completion earns less than any finite one, whatever the rules say about both
    total = hybrid_reward([1, 1, 1, 1, 1, 1], [1] * 6, got, rm_weight=1.0)
    assert total[1] <= min(total[3:])


def test_uniform_groups_and_groups_of_one_get_no_reward_model_signal():
    assert normalise_rm([4.2, 4.2, 4.2], 3) == [0.0, 0.0, 0.0]
    assert normalise_rm([4.2, -3.0, 9.9], 1) == [0.0, 0.0, 0.0]  # groups of one
    assert normalise_rm([NAN, 5.0, NAN], 3) == [-1.0, 0.0, -1.0]  # one finite value: no spread
    assert normalise_rm([NAN, NAN], 2) == [-1.0, -1.0]
    assert normalise_rm([1e308, -1e308, 0.0, 0.0], 4)[0] > 0  # the std overflows: no NaN comes out
    assert all(math.isfinite(t) for t in normalise_rm([1e308, -1e308, 0.0, 0.0], 4))
    assert normalise_rm([-1e308, 1e308], 2, scheme="sigmoid") == [0.0, 1.0]
    with pytest.raises(ValueError, match="groups of 3"):
        normalise_rm([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="unknown"):
        normalise_rm([1.0, 2.0], 2, scheme="tanh")


def test_reward_hacking_empty_or_format_only_answers_earn_nothing():
    """The reward model loves the empty and the template-only answers; they still earn no reward."""
    texts = ["", "<think>\n</think>\n\\boxed{}", "</think>\\boxed{}", "<think>\nx\n</think>\n\\boxed{ }",
             "<think>\n3 + 4 = 7.\n</think>\n\\boxed{7}"]
    fmt = format_reward(texts)
    assert fmt == [0, 0, 0, 0, 1]
    accuracy = [0, 0, 0, 0, 0]  # wrong or no answer (the task's scorer)
    for scheme in ("group", "sigmoid"):
        term = normalise_rm([100.0, 90.0, 95.0, 80.0, -50.0], 5, scheme=scheme)
        total = hybrid_reward(accuracy, fmt, term, accuracy_weight=1.0, format_weight=0.5, rm_weight=1.0)
        assert total[:4] == [0.0] * 4, (scheme, total)  # the reward model's credit is not paid out
        # the same reward model's credit is paid to a well-formed answer
        liked = hybrid_reward([0, 0], [0, 1], normalise_rm([100.0, 100.0 + 1e-3], 2, scheme=scheme), rm_weight=1.0)
        assert liked[0] <= 0 < liked[1]
    # a penalty from the reward model stays
    assert hybrid_reward([0], [0], [-0.8], rm_weight=0.5) == [-0.4]


# --------------------------------------------------------------------------- the Selective Sample Buffer
def group(weight: float, step: int = 0, position: int = 0) -> Group:
    return Group.of(position, [[1, 2], [3]], [weight, -weight], [[-0.1, -0.2], [-0.3]], step)


def test_buffer_draws_in_proportion_to_mean_absolute_advantage():
    """A seeded statistical test: 20,000 single draws from groups weighted 1:2:3:4 land within 4
    standard errors of 10/20/30/40%, and a chi-square test does not reject the proportions."""
    weights = [1.0, 2.0, 3.0, 4.0]
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    buf = SelectiveSampleBuffer(8)
    n = 20_000
    for _ in range(n):
        buf.groups.clear()
        buf.add([group(w, position=k) for k, w in enumerate(weights)])
        counts[buf.draw(1, rng)[0].position] += 1
    p = np.array(weights) / sum(weights)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) < 4 * se), counts / n
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 16.27, chi2  # the 0.999 quantile of chi-square with 3 degrees of freedom
    # uniform draws would fail it
    assert float(((np.full(4, n / 4) - n * p) ** 2 / (n * p)).sum()) > 16.27


def test_buffer_bounds_age_and_what_it_keeps():
    buf = SelectiveSampleBuffer(3, max_age=2)
    assert buf.add([group(0.0)]) == 0  # all advantages 0: nothing to learn, not kept
    assert buf.add([Group.of(0, [[1]], [NAN], [[-1.0]], 0)]) == 0  # a NaN advantage is never kept
    assert buf.add([group(1.0, step=s, position=s) for s in range(5)]) == 5
    assert len(buf) == 3 and [g.position for g in buf.groups] == [2, 3, 4]  # the oldest went
    buf.expire(6)  # step 6: groups from steps < 4 are too old
    assert [g.position for g in buf.groups] == [4]
    drawn = buf.draw(5, np.random.default_rng(0))
    assert [g.position for g in drawn] == [4] and len(buf) == 0  # replayed once, then gone
    assert buf.draw(2, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        SelectiveSampleBuffer(0)


def test_buffer_state_survives_torch_save_as_a_checkpoint_does(tmp_path):
    buf = SelectiveSampleBuffer(4, max_age=3)
    buf.add([group(0.5, step=1, position=7), group(2.0, step=2, position=9)])
    torch.save(buf.state_dict(), tmp_path / "local-0.pt")
    back = SelectiveSampleBuffer(1)
    back.load_state_dict(torch.load(tmp_path / "local-0.pt", weights_only=True))
    assert (back.size, back.max_age, len(back)) == (4, 3, 2)
    for a, b in zip(buf.groups, back.groups):
        assert (a.position, a.advantages, a.step) == (b.position, b.advantages, b.step)
        assert all(torch.equal(x, y) for x, y in zip(a.completions + a.logprobs, b.completions + b.logprobs))


@pytest.mark.parametrize("useful, available, when, target, share, want", [
    ([1, 0, 0, 0, 0, 0, 0, 0], 10, "vanishing", 0.6, 0.5, 4),   # 1 + 4 = 5 of 8 (target 4.8 -> 5)
    ([1, 1, 1, 1, 1, 0, 0, 0], 10, "vanishing", 0.6, 0.5, 0),   # 5 of 8 already reach 60%
    ([1, 0, 0, 0, 0, 0, 0, 0], 2, "vanishing", 0.6, 0.5, 2),    # the buffer holds two
    ([0, 0, 0, 0, 0, 0, 0, 0], 10, "vanishing", 1.0, 0.5, 4),   # never more than half the batch
    ([1, 1, 1, 1, 1, 1, 1, 0], 10, "always", 0.0, 0.5, 1),      # only in place of uniform groups
    ([1, 0, 0, 0, 0, 0, 0, 0], 10, "always", 0.0, 1.0, 7),
    ([0, 0, 0, 0], 0, "always", 0.6, 0.5, 0),
])
def test_replay_count(useful, available, when, target, share, want):
    assert replay_count([bool(u) for u in useful], available=available, when=when, target=target,
                        max_share=share) == want


def test_off_policy_ratio_of_a_replayed_group_by_hand():
    """A replayed completion sampled at p = 0.25, now at 0.5: ratio 2, clipped at 1.2 for a positive
    advantage (no gradient through the clip), unclipped for a negative one; a fresh row has ratio 1."""
    logp = torch.tensor([[math.log(0.5), math.log(0.5)], [math.log(0.5), math.log(0.5)],
                         [math.log(0.4), math.log(0.4)]], requires_grad=True)
    stored = [torch.tensor([math.log(0.25), math.log(0.25)]), torch.tensor([math.log(0.25)]), None]
    old = old_logprobs(logp, stored)
    assert old[0].tolist() == pytest.approx([math.log(0.25)] * 2)
    assert old[1].tolist() == pytest.approx([math.log(0.25), math.log(0.5)])  # its length; the rest is padding
    assert old[2].tolist() == pytest.approx([math.log(0.4)] * 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    adv = torch.tensor([1.5, -1.0, 0.5])
    loss, stats = grpo_loss(logp, old, adv, mask, clip_eps=0.2, n_tokens=5)
    assert stats == {"kl": 0.0, "clipped": 2}  # row 0's two tokens
    # row 0: ratio 2 -> -min(2 * 1.5, 1.2 * 1.5) = -1.8 per token; row 1: -min(2 * -1, 1.2 * -1) = 2;
    # row 2: ratio 1 -> -0.5 per token
    want = (2 * -1.8 + 2.0 + 2 * -0.5) / 5
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert logp.grad[0].tolist() == [0.0, 0.0]  # clipped: no gradient
    assert logp.grad[1, 0].item() == pytest.approx(-(-1.0) * -2.0 / 5 * -1, rel=1e-6)  # d(-r * A)/dlogp = -r * A
    assert logp.grad[2].tolist() == pytest.approx([-0.5 / 5] * 2, rel=1e-6)


def test_dual_clip_bounds_a_stale_negative_advantage():
    """A replayed completion sampled at p = 0.1, now at 0.5 (ratio 5), with advantage -1: PPO's clip
    leaves it -r * A = 5 a token, with a gradient that grows with r; dual clip c = 3 caps it at 3 with
    no gradient. Below the cap (ratio 2) and for positive advantages, nothing changes."""
    logp = torch.tensor([[math.log(0.5)], [math.log(0.5)], [math.log(0.5)]], requires_grad=True)
    old = torch.tensor([[math.log(0.1)], [math.log(0.25)], [math.log(0.1)]])
    adv, mask = torch.tensor([-1.0, -1.0, 2.0]), torch.ones(3, 1)
    for c, want_row0 in ((0.0, 5.0), (3.0, 3.0)):
        logp.grad = None
        loss, stats = grpo_loss(logp, old, adv, mask, clip_eps=0.2, n_tokens=3, dual_clip=c)
        assert stats["clipped"] == 1 and stats.get("dual_clipped", 0) == int(bool(c))  # row 2; row 0 once capped
        # row 1: ratio 2, -min(-2, -1.2) = 2; row 2: ratio 5, positive advantage, clipped: -1.2 * 2
        assert loss.item() == pytest.approx((want_row0 + 2.0 - 2.4) / 3, rel=1e-6)
        loss.backward()
        assert (logp.grad[0].item() == 0.0) == bool(c)  # capped: no gradient
        assert logp.grad[1].item() == pytest.approx(2.0 / 3, rel=1e-6) and logp.grad[2].item() == 0.0


@pytest.mark.parametrize("value", ["1.0", "0.5", "-3", "inf"])
def test_dual_clip_must_be_off_or_above_1(value):
    from r1v.errors import R1VError
    from r1v.train.config import load_recipe

    with pytest.raises(R1VError, match="grpo.dual_clip"):
        load_recipe("recipes/tiny.yaml", [f"grpo.dual_clip={value}"])


# --------------------------------------------------------------------------- the pool filter
def test_the_filter_keeps_exactly_the_groups_that_differ():
    rewards = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0]
    assert informative_groups(rewards, 4) == [False, False, True, True]
    assert informative_groups([0.5, 0.5000001], 2) == [True]
    with pytest.raises(ValueError):
        informative_groups([1, 0, 1], 2)


# --------------------------------------------------------------------------- R1V3's critical tokens
def test_critical_entropy_forks_words_and_the_answer_left_out():
    close = 9
    comp = torch.tensor([[5, 6, 7, close, 8, 8], [5, 5, 6, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    reasoning = reasoning_mask(comp, mask, close)
    assert reasoning.tolist() == [[True, True, True, False, False, False], [True, True, True, True, True, False]]
    ent = torch.tensor([[0.1, 2.0, 0.3, 9.0, 9.0, 9.0], [0.2, 1.0, 0.4, 3.0, 0.5, 9.0]])
    # 8 reasoning tokens; the top 25% are 3.0 and 2.0 (the answer's 9.0s and the padding do not count)
    assert critical_entropy(ent, reasoning, share=0.25) == pytest.approx(2.5)
    assert critical_entropy(ent, reasoning, share=1.0) == pytest.approx((0.1 + 2 + 0.3 + 0.2 + 1 + 0.4 + 3 + 0.5) / 8)
    words = torch.zeros(10, dtype=torch.bool)
    words[6] = True  # token 6 begins "wait"
    got = critical_entropy(ent, reasoning, mode="words", tokens=comp, word_ids=words)
    assert got == pytest.approx((2.0 + 0.4 + 3.0) / 3)  # token 6 at three reasoning positions
    assert math.isnan(critical_entropy(ent, torch.zeros_like(reasoning), share=0.2))


def test_critical_token_ids_find_connectives(tiny):
    from r1v.train.critical import critical_token_ids

    _, tok = tiny
    word = next(w for i in range(len(tok)) if (w := tok.decode([i]).strip()).isalpha())
    mask = critical_token_ids(tok, [word.upper()])
    hits = [tok.decode([i]) for i in mask.nonzero().flatten().tolist()]
    assert hits and all(h.strip().lower().strip(".,") == word.lower() for h in hits)
    assert not critical_token_ids(tok, ["no-such-word-here"]).any()


def test_choose_leaves_the_last_checkpoint_only_for_an_entropy_the_probe_can_see():
    """R1V3's rule with its noise guard: an earlier checkpoint whose critical entropy is a little higher
    on every probe prompt is chosen; one whose entropy is higher still, but not prompt by prompt, is not."""
    g = torch.Generator().manual_seed(0)
    base = [torch.rand(30, generator=g) for _ in range(40)]  # 40 prompts' counted entropies
    last = [b.clone() for b in base]
    clear = [b + 0.005 for b in base]  # higher on every prompt
    noisy = [base[(i + 1) % 40] + 0.01 for i in range(40)]  # twice as much higher overall, prompt by prompt noise
    value = lambda ps: critical_value(ps, share=0.2)  # noqa: E731
    cands = [{"step": 10, "critical_entropy": value(noisy)}, {"step": 20, "critical_entropy": value(clear)},
             {"step": 30, "critical_entropy": value(last)}]
    assert cands[0]["critical_entropy"] > cands[1]["critical_entropy"] > cands[2]["critical_entropy"]
    chosen, gaps = choose(cands, {10: noisy, 20: clear, 30: last})
    assert chosen["step"] == 20 and gaps[20]["lo"] > 0 and gaps[10]["lo"] < 0 < gaps[10]["gap"]
    assert choose(cands, {10: noisy, 30: last})[0]["step"] == 30  # the clear one unprobed: nothing to test it by
    assert choose(cands)[0]["step"] == 30  # no probe at all: the last
    # two earlier ones both clearly above: the higher; a tie goes to the later
    higher = [b + 0.2 for b in base]
    both = [*cands[1:2], {"step": 25, "critical_entropy": value(higher)}, cands[2]]
    assert choose(both, {20: clear, 25: higher, 30: last})[0]["step"] == 25
    tie = [{"step": 20, "critical_entropy": value(clear)}, {"step": 25, "critical_entropy": value(clear)}, cands[2]]
    assert choose(tie, {20: clear, 25: clear, 30: last})[0]["step"] == 25
    # Bonferroni: with three earlier checkpoints each is tested at 1 - 0.05/3, so its interval is wider
    assert gaps[20]["level"] == pytest.approx(1 - 0.05 / 2)
    _, one = choose([cands[1], cands[2]], {20: clear, 30: last})
    assert one[20]["level"] == pytest.approx(0.95)


@pytest.mark.parametrize("mode", ["forks", "words"])
@pytest.mark.parametrize("share", [0.01, 0.2, 0.5, 1.0])
def test_the_resampler_is_the_critical_value_of_the_joined_resample(mode, share):
    """`resampler` weighs sorted tokens instead of joining them: the same number on any resample, with ties,
    empty prompts, and a resample made only of the probe's low prompts (its top share lies below the
    probe's top 2.5 x share, where the resampler first looks)."""
    import random

    from r1v.train.critical import resampler

    g = torch.Generator().manual_seed(0)
    prompts = [torch.rand(int(torch.randint(0, 40, (1,), generator=g)), generator=g) * (0.1 if i % 2 else 1.0)
               for i in range(30)]
    prompts[4], prompts[6] = torch.tensor([0.5, 0.5, 0.5]), torch.zeros(0)
    stat, rng = resampler(prompts, mode=mode, share=share), random.Random(1)
    draws = [[1] * 30, [2 if i % 2 else 0 for i in range(30)], [0] * 6 + [1] + [0] * 23]
    for _ in range(100):
        counts = [0] * 30
        for _ in range(30):
            counts[rng.randrange(30)] += 1
        draws.append(counts)
    for counts in draws:
        joined = [p for p, c in zip(prompts, counts) for _ in range(c)]
        want, got = critical_value(joined, mode=mode, share=share), stat(counts)
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-6)


def test_choose_never_takes_a_nan_unless_all_are():
    c = [{"step": 10, "critical_entropy": 0.8}, {"step": 20, "critical_entropy": NAN}]
    assert choose(c)[0]["step"] == 10  # the last has none to test against: the highest finite one
    assert choose([*c, {"step": 30, "critical_entropy": 1.3}])[0]["step"] == 30
    assert choose([{"step": 5, "critical_entropy": NAN}, {"step": 6, "critical_entropy": NAN}])[0]["step"] == 6
    with pytest.raises(ValueError):
        choose([])


# --------------------------------------------------------------------------- one step, replaying
def test_a_step_replays_buffered_groups_with_their_stored_logprobs(small_model, monkeypatch):
    """Step 1's groups differ and go to the buffer; step 2's are uniform, so the buffer replaces them:
    the step trains on them, with ratios against the log-probs they were sampled with."""
    import copy

    import r1v.train.grpo as grpo
    from r1v.train.config import GRPOConfig, Parts, SSBConfig
    from r1v.train.samples import Sample

    model, tok, samples, enc = small_model
    cfg = GRPOConfig(prompts_per_step=2, generations_per_prompt=4, max_completion_tokens=6, lr=5e-2, micro_groups=2,
                     parts=Parts(language=True), ssb=SSBConfig(enabled=True, when="always", max_share=1.0))
    engine, _ = grpo.setup(copy.deepcopy(model), cfg)
    engine.set_lr(cfg.lr)
    prompts = [Sample(s.id, s.prompt, [], s.pixels, s.item, index=k) for k, s in enumerate(samples[:2])]
    buffer = SelectiveSampleBuffer(8)
    calls = []

    def rewards_fn(texts, items, **_):
        calls.append(1)
        r = [float(zlib.crc32(t.encode()) % 2) for t in texts] if len(calls) == 1 else [0.0] * len(texts)
        return r, {"accuracy": r, "format": [0.0] * len(r)}

    seen = []
    real = grpo.grpo_loss

    def spy(logp, old, *a, **k):
        seen.append((logp.detach().clone(), old.clone()))
        return real(logp, old, *a, **k)

    monkeypatch.setattr(grpo, "grpo_loss", spy)
    kw = dict(cfg=cfg, tok=tok, stop_id=enc.stop_id, rewards_fn=rewards_fn, buffer=buffer, seed=0,
              replay_samples=lambda pos: [prompts[p] for p in pos])
    torch.manual_seed(0)
    first = grpo.step(engine, prompts, step_no=0, **kw)
    assert first["replayed"] == 0 and first["effective"] > 0 and len(buffer) == round(2 * first["effective"])
    assert first["clipped"] == first["dual_clipped"] == 0.0  # fresh groups only: every ratio is 1
    n_kept = len(buffer)
    drawn = []
    real_draw = buffer.draw
    monkeypatch.setattr(buffer, "draw", lambda n, rng: drawn.extend(real_draw(n, rng)) or drawn)
    seen.clear()
    second = grpo.step(engine, prompts, step_no=1, **kw)
    assert second["effective"] == 0 and second["replayed"] == n_kept == len(drawn)
    assert second["effective_trained"] == pytest.approx(n_kept / 2) and len(buffer) == 0
    assert 0.0 <= second["dual_clipped"] <= second["clipped"] + second["dual_clipped"] <= 1.0
    logp, old = seen[0]
    for j, g in enumerate(drawn):  # in the order they replaced the uniform groups
        for i, lp in enumerate(g.logprobs):
            row = j * 4 + i
            assert torch.allclose(old[row, : len(lp)], lp)  # the stored log-probs, not the current ones
            assert not torch.allclose(logp[row, : len(lp)], lp, atol=1e-4)  # the policy moved since


# --------------------------------------------------------------------------- the stage on the small world
@pytest.fixture(scope="module")
def hybrid_run(recipe_run, tmp_path_factory):
    """A reward model trained on a copy of the small recipe's run (a few steps)."""
    yaml_path, shared, world = recipe_run
    run = tmp_path_factory.mktemp("hybrid") / "run"
    shutil.copytree(shared, run)
    settings = [f"out={run}", f"data.rm_train={world}/recipe/rm-train.jsonl", "rm.optim.samples_per_step=8",
                "rm.optim.micro_batch_per_device=4", "rm.optim.epochs=0.05", "rm.optim.lr=1e-2"]
    assert main(["train", "rm", "--config", str(yaml_path), *settings]) == 0
    return yaml_path, run, settings


R1V2_GRPO = ['grpo.reward_model=""', "grpo.ssb.enabled=true", "grpo.ssb.when=always", "grpo.eval_every=1",
             "grpo.select=entropy", "grpo.probe_prompts=2", "grpo.steps=3", "grpo.filter_pool=true",
             "grpo.filter_limit=8", "grpo.prompts_per_step=3", "grpo.micro_groups=2"]


def coin(texts, *, items, task):
    """A stand-in for the task's scorer that the small world's untrained LM can pass: a CRC's parity."""
    return [float(zlib.crc32(t.encode()) % 3 == 0) for t in texts]


def test_r1v2_grpo_filter_hybrid_reward_ssb_and_entropy_choice(recipe_run, hybrid_run, tmp_path, monkeypatch):
    import r1v.train.grpo as grpo

    yaml_path, shared, settings = hybrid_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    monkeypatch.setattr(grpo, "accuracy_reward", coin)
    assert main(["train", "grpo", "--config", str(yaml_path), *settings[1:], f"out={run}", *R1V2_GRPO]) == 0
    r = json.loads((run / "results.json").read_text())["stages"]["grpo"]
    # the filter: the kept prompts are exactly those whose rollouts differ
    rolled = [json.loads(x) for x in (run / "grpo-filter" / "rollouts-0.jsonl").read_text().splitlines()]
    assert len(rolled) == 8 == r["filter"]["filtered"]
    mixed = {x["row"] for x in rolled if len(set(x["correct"])) > 1}
    assert 0 < len(mixed) < 8 and r["filter"]["kept"] == len(mixed) == r["prompts"]
    assert r["filter"]["all_right"] + r["filter"]["all_wrong"] == 8 - len(mixed)
    # every step logs both effective shares, the reward model's score and the critical-token entropy
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [m for m in rows if m.get("stage") == "grpo"]
    assert len(rows) == 3
    for m in rows:
        assert {"effective", "effective_trained", "replayed", "buffer", "rm_score", "critical_entropy"} <= set(m)
        assert m["effective_trained"] >= m["effective"]
    # R1V3: a candidate per eval point, the chosen one is GRPO's output
    steps = [c["step"] for c in r["candidates"]]
    assert steps == [1, 2, 3] and all(c["critical_entropy"] is not None for c in r["candidates"])
    assert all(0 <= c["probe_accuracy"] <= 1 for c in r["candidates"])
    # the choice, made again from the probes kept on disk (2 prompts each), and each earlier one's gap to the last
    kept = {c["step"]: json.loads((run / "grpo-probe" / f"step-{c['step']}.json").read_text()) for c in r["candidates"]}
    assert [len(k["prompts"]) for k in kept.values()] == [2, 2, 2]
    assert all(k["critical_entropy"] == pytest.approx(c["critical_entropy"], abs=1e-5)
               for k, c in zip(kept.values(), r["candidates"]))
    best, gaps = choose(r["candidates"], {s: [torch.tensor(p) for p in k["prompts"]] for s, k in kept.items()},
                        share=0.2)
    assert r["selected"] == {"rule": "entropy", "test": grpo.TEST, "step": best["step"], "last": 3}
    assert [c["vs_last"]["gap"] for c in r["candidates"][:2]] == pytest.approx([gaps[1]["gap"], gaps[2]["gap"]],
                                                                               abs=1e-5)
    # `r1v train grpo-probe` (with the run's own settings): its seed reproduces the run's probe and choice;
    # another seed draws anew
    assert main(["train", "grpo-probe", "--config", str(yaml_path), f"out={run}", "--seeds", "0,1"]) == 0
    again = json.loads((run / "grpo-probe" / "seeds.json").read_text())
    assert [again["0"]["entropy"][str(c["step"])] for c in r["candidates"]] == pytest.approx(
        [c["critical_entropy"] for c in r["candidates"]], abs=1e-5)
    assert again["0"]["chosen"] == best["step"] and again["1"]["entropy"] != again["0"]["entropy"]
    assert main(["train", "grpo-probe", "--config", str(yaml_path), f"out={run}", "--seeds", "2"]) == 0
    assert set(json.loads((run / "grpo-probe" / "seeds.json").read_text())) == {"0", "1", "2"}  # added, not replaced
    plain = tmp_path / "rules-run"  # R1V's GRPO keeps no probed checkpoints (grpo.select=last): refused, one line
    plain.mkdir()
    shutil.copy(recipe_run[1] / "results.json", plain)
    assert main(["train", "grpo-probe", "--config", str(yaml_path), f"out={plain}"]) == 2
    from tests.test_train import same, weights

    if best["step"] != 3:
        assert same(weights(run / "grpo"), weights(run / f"grpo@{best['step']}"))
        assert (run / "grpo@3").is_dir() and not same(weights(run / "grpo"), weights(run / "grpo@3"))
    assert r["eval"] == json.loads((run / "results.json").read_text())["stages"][f"grpo@{best['step']}"]["eval"]
    # the report's GRPO section, and the run beside R1V's GRPO of the same recipe (`r1v recipe compare`)
    assert main(["recipe", "report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "Checkpoint choice (R1V3" in report and "Pool filter" in report and "hybrid: rules + " in report
    r1v_run = recipe_run[1]  # R1V's recipe, GRPO with rule rewards, on the same held-out files
    assert main(["recipe", "compare", str(r1v_run), str(run), "--out", str(tmp_path / "cmp")]) == 0
    table = [x for x in (tmp_path / "cmp" / "compare.md").read_text().splitlines() if x.startswith("| `")]
    assert len(table) == 2 and "rules + no SSB" in table[0] and "reward model + SSB" in table[1]
    assert "step " in table[1] and " to " in table[1]  # its chosen checkpoint, its paired interval
    assert (tmp_path / "cmp" / "effective.png").stat().st_size > 1000


def test_grpo_probe_finds_each_checkpoint_when_an_earlier_one_was_adopted(hybrid_run, tmp_path, monkeypatch):
    """The run adopts step 1 (`grpo` holds it; the last moves to grpo@3): `r1v train grpo-probe` must probe
    step 3 in grpo@3 and step 1 in grpo@1, which the run's own probe of each, redrawn at its seed, shows."""
    import r1v.train.grpo as grpo

    yaml_path, shared, settings = hybrid_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    monkeypatch.setattr(grpo, "accuracy_reward", coin)
    monkeypatch.setattr(grpo, "choose", lambda cands, probes, **kw: (cands[0], {}))  # adopt the first
    assert main(["train", "grpo", "--config", str(yaml_path), *settings[1:], f"out={run}", *R1V2_GRPO]) == 0
    r = json.loads((run / "results.json").read_text())["stages"]["grpo"]
    assert r["selected"]["step"] == 1 and (run / "grpo@3").is_dir()
    monkeypatch.undo()
    monkeypatch.setattr(grpo, "accuracy_reward", coin)
    assert main(["train", "grpo-probe", "--config", str(yaml_path), f"out={run}", "--seeds", "0"]) == 0
    again = json.loads((run / "grpo-probe" / "seeds.json").read_text())["0"]
    assert [again["entropy"][str(c["step"])] for c in r["candidates"]] == pytest.approx(
        [c["critical_entropy"] for c in r["candidates"]], abs=1e-5)
    assert [again["accuracy"][str(c["step"])] for c in r["candidates"]] == pytest.approx(
        [c["probe_accuracy"] for c in r["candidates"]], abs=1e-5)


@pytest.mark.parametrize("reward_model", ["none", '""'])
def test_grpo_with_its_buffer_resumes_after_a_crash_as_if_uninterrupted(hybrid_run, tmp_path, monkeypatch,
                                                                        reward_model):
    """A crash after step 2 of 4: the resumed run restores the buffer with the weights, and ends with
    the uninterrupted run's weights, with rules alone (the buffer replays) and with the reward model
    (loading it must not draw from the restored RNG)."""
    import r1v.train.grpo as grpo
    from tests.test_train import crash_at_step, same, weights

    yaml_path, shared, settings = hybrid_run
    # a rarer success than `coin`'s: some groups come out uniform, so the buffer has work
    monkeypatch.setattr(grpo, "accuracy_reward", lambda texts, **_: [float(zlib.crc32(t.encode()) % 6 == 0)
                                                                     for t in texts])
    args = [*settings[1:], "grpo.ssb.enabled=true", "grpo.ssb.when=always", "grpo.steps=4", "grpo.prompts_per_step=3",
            "checkpoint.every_steps=1", "checkpoint.every_minutes=0", f"grpo.reward_model={reward_model}"]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    shutil.copytree(shared, whole)
    shutil.copytree(shared, crashed)
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={whole}", *args]) == 0
    replays = [m["replayed"] for m in map(json.loads, (whole / "metrics.jsonl").read_text().splitlines())
               if m.get("stage") == "grpo"]
    crash_at_step(monkeypatch, 3, ["train", "grpo", "--config", str(yaml_path), f"out={crashed}", *args])
    assert list((crashed / "checkpoints" / "grpo").glob("step-*/local-0.pt"))
    assert main(["recipe", "run", str(yaml_path), f"out={crashed}", *args, "stages=[align,transfer,sft,grpo]"]) == 0
    assert same(weights(whole / "grpo"), weights(crashed / "grpo"))
    if reward_model == "none":
        assert any(replays), replays  # the buffer replayed something in the run being compared


def test_a_rerun_with_a_bad_setting_leaves_the_finished_stage_alone(recipe_run, tmp_path):
    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    before = (run / "results.json").read_text(), (run / "metrics.jsonl").read_text()
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for bad in (f"grpo.reward_model={tmp_path / 'no'}", f"grpo.reward_model=http://127.0.0.1:{port}"):
        assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}", bad]) == 2
        assert ((run / "results.json").read_text(), (run / "metrics.jsonl").read_text()) == before


def test_the_filter_reuses_rollouts_only_under_the_same_settings(recipe_run, tmp_path, monkeypatch):
    import r1v.train.grpo as grpo

    yaml_path, shared, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    monkeypatch.setattr(grpo, "accuracy_reward", coin)
    calls = []
    real = grpo.generate
    monkeypatch.setattr(grpo, "generate", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    def rolled():
        return [json.loads(x) for x in (run / "grpo-filter" / "rollouts-0.jsonl").read_text().splitlines()]

    argv = ["train", "grpo-filter", "--config", str(yaml_path), f"out={run}"]
    main([*argv, "grpo.filter_limit=4"])  # may keep none (exit 2): the rollouts are what is checked
    first = rolled()
    assert len(first) == 4 and sum(calls) == 4
    main([*argv, "grpo.filter_limit=6"])  # two more prompts, the four reused
    assert rolled()[:4] == first and len(rolled()) == 6 and sum(calls) == 6
    # the time the first run spent on the four, carried into the stage's seconds
    reused = json.loads((run / "results.json").read_text())["stages"]["grpo"]["filter"]["seconds_reused"]
    assert reused == pytest.approx(sum(r["seconds"] for r in first), abs=1e-3) and reused > 0
    main([*argv, "grpo.filter_limit=6", "grpo.generations_per_prompt=2"])  # other settings: afresh
    assert len(rolled()) == 6 and all(len(x["correct"]) == 2 for x in rolled()) and sum(calls) == 12
    shutil.copytree(run, tmp_path / "moved")  # the same policy and prompts elsewhere: nothing rolled out again
    main(["train", "grpo-filter", "--config", str(yaml_path), f"out={tmp_path / 'moved'}", "grpo.filter_limit=6",
          "grpo.generations_per_prompt=2"])
    assert sum(calls) == 12


def test_grpo_takes_its_prompts_from_data_prompts_when_set(recipe_run, tmp_path):
    """R1V2 has no SFT data: with `data.prompts`, GRPO's pool is that file's rows, no response needed."""
    yaml_path, shared, world = recipe_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    prompts = tmp_path / "prompts.jsonl"
    rows = [json.loads(x) for x in (world / "data" / "visual-train.jsonl").read_text().splitlines()[:5]]
    prompts.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "response"}) + "\n" for r in rows))
    for r in rows:  # the images, beside the file as the rows name them
        (tmp_path / r["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / "data" / r["image"], tmp_path / r["image"])
    assert main(["train", "grpo", "--config", str(yaml_path), f"out={run}", f"data.prompts={prompts}",
                 "grpo.steps=1"]) == 0
    assert json.loads((run / "results.json").read_text())["stages"]["grpo"]["prompts"] == 5


@pytest.mark.slow
def test_r1v2_grpo_under_accelerate_launch_with_two_processes(hybrid_run, tmp_path):
    """Two CPU processes (DDP on gloo): the hybrid reward, a buffer per process saved in every
    mid-stage checkpoint, the probe and the entropy choice, all run unchanged."""
    import subprocess

    from tests.sharded_cpu import launch

    yaml_path, shared, settings = hybrid_run
    run = tmp_path / "run"
    shutil.copytree(shared, run)
    head, env = launch("ddp")
    cmd = [*head, "train", "grpo", "--config", str(yaml_path), *settings[1:], f"out={run}", 'grpo.reward_model=""',
           "grpo.ssb.enabled=true", "grpo.eval_every=1", "grpo.select=entropy", "grpo.probe_prompts=2", "grpo.steps=3",
           "grpo.prompts_per_step=4",
           "checkpoint.every_steps=1", "checkpoint.every_minutes=0", "checkpoint.keep_last=5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((run / "results.json").read_text())["stages"]["grpo"]
    assert [c["step"] for c in r["candidates"]] == [1, 2, 3] and r["selected"]["last"] == 3
    assert r["processes"] == 2 and r["eval"]["visual"]["n"] == 8  # both processes' halves, once
    assert not (run / "checkpoints" / "grpo").exists()  # cleared when the stage finished
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rows if m.get("stage") == "grpo"] == [0, 1, 2]  # one process logs
    assert all(m["buffer"] >= 0 and "rm_score" in m for m in rows if m.get("stage") == "grpo")
