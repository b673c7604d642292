"""`r1v recipe claims`: the paper's claims over several recipe runs, adversarially: each run's figure as its own
report states it, pooled over the items (an item once, however many runs scored it), over the runs (a t interval,
the runs as observations), the verdict from the interval over the runs, and the refusals a user mistake gets.
The pooled and over-the-runs gaps are checked against `r1v eval compare`, a separate implementation."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import yaml

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.compare import compare
from r1v.stats import t95
from r1v.train.claims import claims, over_runs, render, write

STAGES = ("align", "transfer", "sft/m0", "sft/m1", "grpo")
TARGETS = {"aligned_visual": 0.6, "transfer_kept": 0.85, "final_visual": 0.8, "final_of_ceiling": 0.9}


def make_run(path, right: dict[str, list[bool]], *, text=None, ids=None, targets=TARGETS, stages=STAGES,
             hallucinated=None, inputs=None, **recipe):
    """A finished recipe run as `r1v recipe run` leaves it: results.json, outputs/ and recipe.yaml, with
    `right[stage]` the visual items' correct flags (ids i0, i1, ...), `hallucinated[stage]` their flags (the
    wrong answers, unless given) and the same text answers everywhere."""
    (path / "outputs").mkdir(parents=True)
    text = text or [k % 3 == 0 for k in range(20)]
    hallucinated = hallucinated or {}
    st = {}
    for s in stages:
        flags_ = hallucinated.get(s) or [not ok for ok in right[s]]
        rows = [{"id": (ids or [f"i{k}" for k in range(len(right[s]))])[k], "correct": ok,
                 "hallucinated": flags_[k]} for k, ok in enumerate(right[s])]
        (path / "outputs" / f"{s.replace('/', '-')}-visual.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        (path / "outputs" / f"{s.replace('/', '-')}-text.jsonl").write_text(
            "".join(json.dumps({"id": f"t{k}", "correct": ok}) + "\n" for k, ok in enumerate(text)))
        st[s] = {"eval": {"visual": {"accuracy": sum(right[s]) / len(right[s]), "n": len(right[s])},
                          "text": {"accuracy": sum(text) / len(text), "n": len(text)}}}
    st[stages[0]]["inputs"] = inputs or {}  # what `r1v recipe run` records a stage ran with
    (path / "results.json").write_text(json.dumps({"stages": st}))
    (path / "recipe.yaml").write_text(yaml.safe_dump({"claims": targets, "stages": ["align", "transfer", "sft",
                                                                                     "grpo"], **recipe}))
    return str(path)


def flags(n: int, share: float, seed: int, base: list[bool] | None = None) -> list[bool]:
    """n flags, about `share` of them right; given `base`, a stage after it: base's right answers kept,
    more of its wrong ones turned right (so a gain pairs tightly)."""
    rng = random.Random(seed)
    if base is None:
        return [rng.random() < share for _ in range(n)]
    return [b or rng.random() < share for b in base]


def runs_with_gains(tmp_path, sft_shares, n=200, name="s"):
    """Three runs (or as many as shares) whose SFT iterations add about `share` of M0's wrong answers."""
    out = []
    for seed, share in enumerate(sft_shares):
        align = flags(n, 0.7, seed)
        transfer = [a and random.Random(seed + k).random() < 0.8 for k, a in enumerate(align)]
        m0 = flags(n, 0.4, seed + 10, transfer)
        m1 = flags(n, share, seed + 20, m0)
        out.append(make_run(tmp_path / f"{name}{seed}", {"align": align, "transfer": transfer, "sft/m0": m0,
                                                         "sft/m1": m1, "grpo": m1},
                            inputs={"seed": seed, "align.lr": 3e-3, "model.vision": "content d7ed"}))
    return out


def row(result, claim):
    return next(r for r in result["claims"] if r["claim"] == claim)


def test_each_runs_figure_is_its_own(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    r = row(over_runs(runs), "each SFT iteration adds")
    for run, cell in zip(runs, r["runs"]):
        m0 = [json.loads(x)["correct"] for x in open(f"{run}/outputs/sft-m0-visual.jsonl")]
        m1 = [json.loads(x)["correct"] for x in open(f"{run}/outputs/sft-m1-visual.jsonl")]
        assert cell["est"]["gap"] == pytest.approx((sum(m1) - sum(m0)) / len(m0))
        # the run's column says what the run's own report says
        report = "\n".join(claims(Path(run), json.loads(open(f"{run}/results.json").read()), {"claims": TARGETS}))
        assert cell["text"] in report


def test_pooled_and_over_the_runs_match_eval_compare(tmp_path):
    """Two implementations, one answer: the SFT and GRPO gains pooled and over the runs, as `r1v eval compare`
    gives them from the same outputs files."""
    runs = runs_with_gains(tmp_path, [0.1, 0.25, 0.5])
    result = over_runs(runs)
    for claim, (a, b) in {"each SFT iteration adds": ("sft-m0", "sft-m1"),
                          "GRPO adds": ("sft-m1", "grpo")}.items():
        (c,) = compare([f"{r}/outputs/{a}-visual.jsonl" for r in runs],
                       [f"{r}/outputs/{b}-visual.jsonl" for r in runs])["comparisons"]
        mine = row(result, claim)
        for key in ("gap", "lo", "hi", "n"):
            assert mine["pooled"][key] == pytest.approx(c["pooled"]["accuracy"][key])
            assert mine["over_runs"][key] == pytest.approx(c["over_runs"]["accuracy"][key])


def test_pooling_counts_an_item_once_and_the_t_interval_has_k_minus_1_degrees(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3], n=50)
    result = over_runs(runs)
    r = row(result, "the substitute, once aligned, is a VLM")
    per = [[json.loads(x)["correct"] for x in open(f"{run}/outputs/align-visual.jsonl")] for run in runs]
    means = [sum(col) / 3 for col in zip(*per)]
    m = sum(means) / 50
    se = math.sqrt(sum((x - m) ** 2 for x in means) / 49 / 50)
    assert r["pooled"]["n"] == 50  # not 150
    assert (r["pooled"]["lo"], r["pooled"]["hi"]) == pytest.approx((m - 1.959964 * se, m + 1.959964 * se))
    accs = [sum(p) / 50 for p in per]
    mean = sum(accs) / 3
    half = t95(2) * math.sqrt(sum((a - mean) ** 2 for a in accs) / 2 / 3)
    assert t95(2) == pytest.approx(4.303, abs=1e-3)
    assert (r["over_runs"]["lo"], r["over_runs"]["hi"]) == pytest.approx((mean - half, mean + half))


def test_the_verdict_is_the_one_run_rule_on_the_interval_over_the_runs(tmp_path):
    """Each run's gain above 0 with its own interval, but spread so far apart that the mean over the runs is
    not placed above 0: the claim holds at every run and not over them. Steady gains hold over them."""
    spread = over_runs(runs_with_gains(tmp_path, [0.9, 0.1, 0.02], name="spread"))
    r = row(spread, "each SFT iteration adds")
    assert r["over_runs"]["lo"] < 0 < r["pooled"]["lo"]
    assert r["held"] == sum(x["est"]["lo"] > 0 for x in r["runs"]) >= 2
    alone = f"each run alone: holds at {r['held']} of 3"
    assert r["verdict"] == f"**does not hold** (a gain not distinguishable from 0); {alone}"
    steady = row(over_runs(runs_with_gains(tmp_path, [0.5, 0.55, 0.6], name="steady")), "each SFT iteration adds")
    assert steady["over_runs"]["lo"] > 0 and steady["verdict"] == "**holds**; each run alone: holds at 3 of 3"
    # floors: align near 70% against 60% holds; the final model's mean is above 80%, its interval is not
    aligned = row(spread, "the substitute, once aligned, is a VLM")
    assert aligned["verdict"] == "**holds**; each run alone: holds at 3 of 3"
    final = row(spread, "the final model")
    assert final["over_runs"]["lo"] < 0.8 <= final["over_runs"]["gap"]
    assert final["verdict"].startswith("holds at the estimate (interval reaches below); each run alone: holds at ")
    text = row(spread, "text reasoning survives")
    assert text["verdict"] == "**holds** (the same answers at every run); each run alone: holds at 3 of 3"
    md = render(spread)
    assert f"| **does not hold** (a gain not distinguishable from 0); {alone} |" in md
    assert "| the same answers | the same answers | unchanged | **holds** (the same answers at every run)" in md


def test_the_transfer_ratio_pools_item_means_and_averages_the_runs_ratios(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    r = row(over_runs(runs), "transfer keeps most of it")
    per = [([json.loads(x)["correct"] for x in open(f"{run}/outputs/align-visual.jsonl")],
            [json.loads(x)["correct"] for x in open(f"{run}/outputs/transfer-visual.jsonl")]) for run in runs]
    ratios = [sum(t) / sum(a) for a, t in per]
    assert [x["est"]["gap"] for x in r["runs"]] == pytest.approx(ratios)
    assert r["over_runs"]["gap"] == pytest.approx(sum(ratios) / 3)
    # pooled: the ratio of the item means' sums, which weighs each run by its aligned answers
    assert r["pooled"]["gap"] == pytest.approx(sum(sum(t) for _, t in per) / sum(sum(a) for a, _ in per))
    assert r["pooled"]["lo"] < r["pooled"]["gap"] < r["pooled"]["hi"] < 0.85
    assert r["verdict"] == "**does not hold**; each run alone: holds at 0 of 3" and r["target"] == ">= 85.0%"


def test_two_runs_give_no_verdict_over_the_runs(tmp_path):
    result = over_runs(runs_with_gains(tmp_path, [0.3, 0.4]))
    r = row(result, "each SFT iteration adds")
    assert r["over_runs"] is None and r["pooled"] is not None
    assert r["verdict"] == "three runs or more for a verdict over the runs; each run alone: holds at 2 of 2"


def test_runs_on_different_items_pool_nothing(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2])
    other = {s: flags(200, 0.7, 5) for s in STAGES}
    runs.append(make_run(tmp_path / "other", other, ids=[f"x{k}" for k in range(200)]))
    result = over_runs(runs)
    assert not result["same_items"]
    # pooled as `r1v eval compare` pools: each item averaged over the runs that scored it (here 200 + 200 items)
    final = row(result, "the final model")
    assert final["pooled"]["n"] == 400 and final["over_runs"] is not None
    right = [json.loads(x)["correct"] for run in runs for x in open(f"{run}/outputs/grpo-visual.jsonl")]
    means = {}
    for run in runs:
        for x in open(f"{run}/outputs/grpo-visual.jsonl"):
            means.setdefault(json.loads(x)["id"], []).append(json.loads(x)["correct"])
    assert len(right) == 600
    assert final["pooled"]["gap"] == pytest.approx(sum(sum(v) / len(v) for v in means.values()) / 400)
    assert "different held-out items" in render(result)


def test_a_claim_one_run_lacks_is_named_not_combined(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    shutil.rmtree(f"{runs[1]}/outputs")  # results.json stays: floors over the runs still work
    result = over_runs(runs)
    assert any(m["claim"] == "each SFT iteration adds" and m["runs"] == [runs[1]] for m in result["missing"])
    assert row(result, "the final model")["pooled"] is None and result["no_outputs"] == [runs[1]]
    md = render(result)
    assert "Not in every run, so not combined: " in md and "no held-out outputs" in md


def test_refusals(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2])
    with pytest.raises(R1VError, match="holds no results.json"):
        over_runs([runs[0], str(tmp_path)])
    with pytest.raises(R1VError, match="are the same run"):
        over_runs([runs[0], runs[1], f"{runs[0]}/."])
    r1v2 = make_run(tmp_path / "r1v2", {s: flags(200, 0.5, 1) for s in ("align", "transfer", "mpo/r1", "grpo")},
                    stages=("align", "transfer", "mpo/r1", "grpo"))
    with pytest.raises(R1VError, match="give runs of one recipe"):
        over_runs([runs[0], r1v2])


def test_cli_prints_writes_and_refuses_in_one_line(tmp_path, capsys):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    assert main(["recipe", "claims", *runs, "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "# The paper's claims over 3 runs" in out and "## Visual test accuracy by stage" in out
    assert f"Made by `r1v recipe claims {' '.join(runs)} --out {tmp_path / 'c'}`" in out
    saved = json.loads((tmp_path / "c" / "claims.json").read_text())
    assert saved["runs"] == runs and (tmp_path / "c" / "claims.png").stat().st_size > 10_000
    assert (tmp_path / "c" / "claims.md").read_text().startswith("# The paper's claims over 3 runs")
    # for a program: the verdicts without markdown, each with its status
    for r in saved["claims"]:
        for v in [r, *r["runs"]]:
            assert "**" not in v.get("verdict", "") and v.get("status") in (None, "holds", "holds at the estimate",
                                                                              "does not hold")
    gain = next(r for r in saved["claims"] if r["kind"] == "gain")
    assert gain["status"] == "does not hold" and gain["verdict"].startswith("does not hold (a gain not")
    assert {x["status"] for x in gain["runs"]} == {"holds"} and gain["runs"][0]["verdict"] == "holds"
    nothing = {**over_runs(runs), "claims": []}  # no claim with a figure: no figure
    assert [p.name for p in write(nothing, tmp_path / "c")] == ["claims.md", "claims.json"]
    assert not (tmp_path / "c" / "claims.png").exists()  # the earlier one is gone, not left beside this table
    (tmp_path / "file").write_text("x")
    for args in ([*runs, "--out", str(tmp_path / "file")], [*runs, "--out", str(tmp_path / "file" / "under")],
                 [runs[0], str(tmp_path / "nope")], [runs[0], runs[0]], [runs[0]]):
        assert main(["recipe", "claims", *args]) == 2
        cap = capsys.readouterr()
        assert cap.err.count("\n") == 1 and "Traceback" not in cap.err
        assert cap.out == ""  # refused before a table was printed
    assert not (tmp_path / "file").is_dir()


def test_a_real_recipe_run_three_times_over(recipe_run, tmp_path):
    """The small recipe's own run, copied to three folders: every claim its report states is combined, each
    column is the report's figure, and the interval over three identical runs has no width."""
    _, run, _ = recipe_run
    copies = []
    for k in range(3):
        d = tmp_path / f"copy{k}"
        shutil.copytree(run / "outputs", d / "outputs")
        for f in ("results.json", "recipe.yaml"):
            shutil.copyfile(run / f, d / f)
        copies.append(str(d))
    result = over_runs(copies)
    report = (run / "report.md").read_text().split("## The paper's claims on this run")[1].split("## ")[0]
    stated = [line.split(" | ")[0].lstrip("| ") for line in report.splitlines() if line.startswith("| ")][1:]
    assert [r["claim"] for r in result["claims"]] == stated and not result["missing"]
    for r in result["claims"]:
        assert all(f"| {x['text']} |" in report for x in r["runs"])
        if r.get("over_runs"):
            assert r["over_runs"]["lo"] == pytest.approx(r["over_runs"]["hi"])
            assert r["held"] in (0, 3)
    assert result["identical"] and "was the seed applied?" in render(result)
    assert [s["stage"] for s in result["stages"]][:2] == ["align", "transfer"]


def test_identical_runs_do_not_turn_a_near_miss_into_a_hold(tmp_path):
    """Three copies of a run whose align score clears its 60% floor only at the estimate: over the runs the
    interval has no width, but the items' sampling is still there, so the verdict stays at the estimate."""
    align = [k % 50 < 31 for k in range(200)]  # 62%: 95% interval 55.3% to 68.7%
    right = {s: align for s in STAGES}
    runs = [make_run(tmp_path / f"c{k}", right) for k in range(3)]
    result = over_runs(runs)
    r = row(result, "the substitute, once aligned, is a VLM")
    assert r["over_runs"]["lo"] == pytest.approx(0.62) and r["pooled"]["lo"] < 0.6
    assert r["verdict"] == ("holds at the estimate (interval reaches below) (pooled over the items); each run alone: "
                            "holds at 0 of 3, at the estimate at 3 more")
    assert result["identical"] and "was the seed applied?" in render(result)


def test_the_ceiling_row_divides_the_final_model_by_the_ceiling(tmp_path):
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"the reasoning LLM as pictures": {"accuracy": 0.8, "claim": "ceiling"}}))
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    for run in runs:
        cfg = yaml.safe_load(open(f"{run}/recipe.yaml"))
        cfg["data"] = {"reference_scores": str(refs)}
        open(f"{run}/recipe.yaml", "w").write(yaml.safe_dump(cfg))
    result = over_runs(runs)
    final, ceiling = row(result, "the final model"), row(result, "... of what a perfect projector allows")
    for key in ("pooled", "over_runs"):
        for end in ("gap", "lo", "hi"):
            assert ceiling[key][end] == pytest.approx(final[key][end] / 0.8)
    assert ceiling["target"] == ">= 90.0%"


def r1v2_runs(tmp_path, n=200):
    """Three R1V2-shaped runs: align, transfer, two MPO rounds and GRPO; MPO answers more and hallucinates
    less than transfer."""
    stages = ("align", "transfer", "mpo/r1", "mpo/r2", "grpo")
    out = []
    for seed in range(3):
        align = flags(n, 0.7, seed)
        transfer = [a and random.Random(seed + k).random() < 0.8 for k, a in enumerate(align)]
        r1 = flags(n, 0.2, seed + 30, transfer)
        r2 = flags(n, 0.2, seed + 40, r1)
        right = {"align": align, "transfer": transfer, "mpo/r1": r1, "mpo/r2": r2, "grpo": r2}
        out.append(make_run(tmp_path / f"r1v2-{seed}", right, stages=stages,
                            targets={"aligned_visual": 0.6}, hallucinated={"transfer": [True] * n}))
    return out


def test_r1v2s_claims_combine_gains_and_falls(tmp_path):
    runs = r1v2_runs(tmp_path)
    result = over_runs(runs)
    mpo = row(result, "MPO adds to the transferred model")
    assert mpo["kind"] == "gain" and mpo["verdict"].startswith("**holds**")
    fall = row(result, "MPO hallucinates less than the transferred model")
    assert fall["kind"] == "below" and fall["over_runs"]["hi"] < 0 and fall["verdict"].startswith("**holds**")
    # the pooled fall is the mean over items of (MPO's flag - transfer's), each item averaged over the runs
    gaps = {}
    for run in runs:
        a = {json.loads(x)["id"]: json.loads(x)["hallucinated"] for x in open(f"{run}/outputs/transfer-visual.jsonl")}
        b = {json.loads(x)["id"]: json.loads(x)["hallucinated"] for x in open(f"{run}/outputs/mpo-r2-visual.jsonl")}
        for k in a:
            gaps.setdefault(k, []).append(b[k] - a[k])
    assert fall["pooled"]["gap"] == pytest.approx(sum(sum(v) / 3 for v in gaps.values()) / len(gaps))
    assert row(result, "the final model")["verdict"] == "no target set"  # no final_visual: no count either


def test_r1v2s_sft_comparison_names_a_seed_it_does_not_share(tmp_path):
    """`claims.against` names one R1V run; an R1V2 run at another seed is compared with that seed's SFT, and
    the row says so, where the same seed says nothing more."""
    from r1v.train.claims import measures

    n = 100
    sft = {"align": flags(n, 0.7, 0), "transfer": flags(n, 0.5, 1), "sft/m0": flags(n, 0.8, 2),
           "sft/m1": flags(n, 0.9, 3), "grpo": flags(n, 0.9, 4)}
    r1v = Path(make_run(tmp_path / "tiny", sft, seed=0))
    right = {"align": flags(n, 0.7, 5), "transfer": flags(n, 0.5, 6), "mpo/r1": flags(n, 0.7, 7),
             "grpo": flags(n, 0.7, 8)}
    for seed in (0, 1):
        run = Path(make_run(tmp_path / f"r1v2-{seed}", right, stages=tuple(right), seed=seed))
        cfg = {**yaml.safe_load((run / "recipe.yaml").read_text()), "claims": {"against": str(r1v)}}
        results = json.loads((run / "results.json").read_text())
        m = next(x for x in measures(run, results, cfg) if x.claim == "MPO hallucinates no more than SFT")
        assert f"(`{r1v}`" in m.text and ("seed 0, beside this run's seed 1" in m.text) == (seed == 1)


def test_al_cotd_needs_shorter_chains_over_the_runs_and_the_same_arm(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])

    def arms(run, tokens, other_tokens, other="fixed-p1"):
        for arm, tok, seed in (("al-cotd", tokens, 1), (other, other_tokens, 2)):
            d = Path(run) / "distill-compare" / arm
            d.mkdir(parents=True, exist_ok=True)
            rng = random.Random(seed)
            (d / "result.json").write_text(json.dumps({"correct": {f"i{k}": rng.random() < 0.7 for k in range(100)},
                                                       "easy": {"tokens": tok}, "hard": {"tokens": 30}}))

    for run, (t, o) in zip(runs, [(15.0, 17.0), (15.5, 17.5), (15.2, 17.1)]):
        arms(run, t, o)
    r = row(over_runs(runs), "AL-CoTD: shorter chains on easy items, no loss of accuracy")
    assert r["kind"] == "al-cotd" and r["tokens"]["hi"] < 0 and r["verdict"].startswith("**holds**")
    # one run shorter by a token, one longer: the token gap over the runs reaches above 0
    arms(runs[1], 18.0, 17.5)
    r = row(over_runs(runs), "AL-CoTD: shorter chains on easy items, no loss of accuracy")
    assert r["tokens"]["hi"] > 0 and r["verdict"].startswith("**does not hold**")
    # a run measured against another arm: shown, not combined
    shutil.rmtree(Path(runs[2]) / "distill-compare" / "fixed-p1")
    arms(runs[2], 15.2, 17.1, other="fixed-p2")
    r = row(over_runs(runs), "AL-CoTD: shorter chains on easy items, no loss of accuracy")
    assert r["kind"] == "note" and "(fixed-p2)" in render(over_runs(runs))
    # a run where `r1v world compare` did not run: not combined, and the cell counts the runs' verdicts
    shutil.rmtree(Path(runs[2]) / "distill-compare")
    line = next(x for x in render(over_runs(runs)).splitlines() if x.startswith("| AL-CoTD"))
    assert line.endswith("| not combined; of 3 runs: **holds** at 1, **does not hold** at 1, not measured at 1 |")


def test_runs_checked_against_other_targets_are_refused(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2])
    runs.append(make_run(tmp_path / "other", {s: flags(200, 0.7, 5) for s in STAGES},
                         targets={**TARGETS, "final_visual": 0.7}))
    with pytest.raises(R1VError, match="different targets"):
        over_runs(runs)


def test_runs_of_other_settings_or_cut_outputs_are_refused_and_a_repeated_seed_is_named(tmp_path):
    runs = runs_with_gains(tmp_path, [0.1, 0.2, 0.3])
    other = make_run(tmp_path / "other-encoder", {s: flags(200, 0.7, 5) for s in STAGES},
                     inputs={"seed": 7, "align.lr": 3e-3, "model.vision": "content 0b1c"})
    with pytest.raises(R1VError, match="ran with other settings .*model.vision: content d7ed vs content 0b1c"):
        over_runs([*runs, other])
    with pytest.raises(R1VError, match="does not exist"):
        over_runs([runs[0], str(tmp_path / "typo")])
    # the same seed twice (a copy, or one seed on two machines): counted, and named under the table
    twin = tmp_path / "s0-copy"
    shutil.copytree(runs[0], twin)
    result = over_runs([*runs, str(twin)])
    assert result["twins"] == [(runs[0], str(twin))] and "ran at the same seed" in render(result)
    # an outputs file one line short of what results.json scored
    f = Path(runs[1]) / "outputs" / "sft-m1-visual.jsonl"
    f.write_text("".join(f.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(R1VError, match="holds 199 items where results.json scored 200"):
        over_runs(runs)
