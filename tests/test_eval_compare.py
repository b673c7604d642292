"""`r1v eval compare`: candidate minus baseline, item by item, adversarially: pairing by id (never by
position), samples averaged per item, pairs pooled without merging their items, the across-runs t interval,
groups, recipe run folders, and the refusals a user mistake gets."""

from __future__ import annotations

import json
import math
import random

import pytest

from r1v.cli import main
from r1v.errors import R1VError
from r1v.evaluate.compare import compare, render
from r1v.stats import t95, t_interval

FAMILIES = ("shapes", "bars")


def scored(path, right: dict, *, samples: int = 1, gold="g", family=True, shuffle=None, **extra):
    """A scored JSONL (items.jsonl's fields): `right` maps id -> correct, or -> a list, one per sample."""
    rows = []
    for i, ok in right.items():
        oks = ok if isinstance(ok, list) else [ok] * samples
        for s, o in enumerate(oks):
            rows.append({"id": i, "sample": s, "prompt": f"q{i}", "gold": gold, "correct": o,
                         **({"groups": {"family": FAMILIES[int(i[1:]) % 2]}} if family else {}), **extra})
    if shuffle is not None:
        random.Random(shuffle).shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def ids(n):
    return [f"i{k}" for k in range(n)]


def test_a_known_gap_per_pair_with_its_accuracies(tmp_path):
    base = scored(tmp_path / "a.jsonl", {i: False for i in ids(4)})
    cand = scored(tmp_path / "b.jsonl", {i: k < 3 for k, i in enumerate(ids(4))})
    (row,) = compare([base], [cand])["comparisons"]
    g = row["pairs"][0]["accuracy"]
    assert (g["baseline"], g["candidate"], g["gap"], g["n"]) == (0.0, 0.75, 0.75, 4)
    assert g["lo"] < 0.75 < g["hi"] and "pooled" not in row  # one pair: nothing to pool


def test_items_are_paired_by_id_not_by_position(tmp_path):
    """The candidate's file in another order gives the same gaps; pairing by position would pair each
    right answer with a wrong one and report the same means with a wide interval."""
    right = {i: k % 2 == 0 for k, i in enumerate(ids(40))}
    base = scored(tmp_path / "a.jsonl", right)
    same = compare([base], [scored(tmp_path / "b.jsonl", right, shuffle=3)])["comparisons"][0]["pairs"][0]
    assert same["accuracy"]["gap"] == same["accuracy"]["lo"] == same["accuracy"]["hi"] == 0
    assert "the same on every item" in render(compare([base], [scored(tmp_path / "c.jsonl", right, shuffle=3)]))


def test_an_items_score_is_its_mean_over_samples(tmp_path):
    base = scored(tmp_path / "a.jsonl", {"i0": [False, False, False, False], "i1": [True] * 4})
    cand = scored(tmp_path / "b.jsonl", {"i0": [True, False, False, False], "i1": [True] * 4})
    g = compare([base], [cand])["comparisons"][0]["pairs"][0]["accuracy"]
    assert g["n"] == 2 and g["gap"] == pytest.approx(0.125) and g["candidate"] == pytest.approx(0.625)


def test_pooling_counts_an_item_once_and_runs_give_a_t_interval(tmp_path):
    """Three pairs over the same 20 ids: the pooled gap is the mean of every (pair, item) difference, its
    interval over the 20 items (an item's gaps at the three seeds averaged first: they are not independent),
    and over runs a t interval with 2 degrees of freedom."""
    base, cand, gaps = [], [], []
    for p, wins in enumerate((2, 4, 9)):
        base.append(scored(tmp_path / f"a{p}.jsonl", {i: False for i in ids(20)}))
        cand.append(scored(tmp_path / f"b{p}.jsonl", {i: k < wins for k, i in enumerate(ids(20))}))
        gaps.append(wins / 20)
    (row,) = compare(base, cand)["comparisons"]
    pooled = row["pooled"]["accuracy"]
    assert pooled["n"] == 20 and pooled["values"] == 60 and pooled["gap"] == pytest.approx(15 / 60)
    per_item = [sum(k < w for w in (2, 4, 9)) / 3 for k in range(20)]  # each item's mean gap over the seeds
    m = sum(per_item) / 20
    se = math.sqrt(sum((x - m) ** 2 for x in per_item) / 19 / 20)
    assert pooled["hi"] - pooled["gap"] == pytest.approx(1.959964 * se)
    t = row["over_runs"]["accuracy"]
    mean, sd = sum(gaps) / 3, math.sqrt(sum((x - sum(gaps) / 3) ** 2 for x in gaps) / 2)
    assert t["gap"] == pytest.approx(mean) and t["hi"] - mean == pytest.approx(4.303 * sd / math.sqrt(3))
    two = compare(base[:2], cand[:2])
    assert two["comparisons"][0]["over_runs"]["accuracy"] is None and "over runs" not in render(two)


def test_pooling_items_that_flip_at_every_seed_is_no_narrower_than_one_seed(tmp_path):
    """The same 10 items flip at all three seeds: as 120 independent items the interval would be narrower
    than one seed's by about sqrt(3); clustered by item it is the same as one seed's."""
    right = {i: k < 10 for k, i in enumerate(ids(40))}
    base = [scored(tmp_path / f"a{p}.jsonl", {i: False for i in ids(40)}) for p in range(3)]
    cand = [scored(tmp_path / f"b{p}.jsonl", right) for p in range(3)]
    pooled = compare(base, cand)["comparisons"][0]["pooled"]["accuracy"]
    one = compare(base[:1], cand[:1])["comparisons"][0]["pairs"][0]["accuracy"]
    assert pooled["gap"] == one["gap"] == 0.25 and pooled["hi"] - pooled["lo"] == pytest.approx(one["hi"] - one["lo"])


def test_t_quantiles():
    """Against published values (any t table), inside the table and past it (the expansion in 1/df)."""
    assert [t95(d) for d in (1, 2, 10, 30)] == [12.706, 4.303, 2.228, 2.042]
    for df, published in ((31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799), (1000, 1.9623)):
        assert t95(df) == pytest.approx(published, abs=2e-4)
    with pytest.raises(ValueError):
        t95(0)
    assert t_interval([0.1]) is None
    assert t_interval([0.2, 0.2, 0.2]) == pytest.approx({"gap": 0.2, "lo": 0.2, "hi": 0.2, "n": 3})


def test_hallucination_is_compared_over_the_items_both_sides_marked(tmp_path):
    base = scored(tmp_path / "a.jsonl", {i: True for i in ids(4)}, hallucinated=True)
    cand = scored(tmp_path / "b.jsonl", {i: True for i in ids(4)}, hallucinated=False)
    pair = compare([base], [cand])["comparisons"][0]["pairs"][0]
    assert pair["hallucination"]["gap"] == -1.0 and pair["accuracy"]["gap"] == 0
    plain = scored(tmp_path / "c.jsonl", {i: True for i in ids(4)})
    assert compare([plain], [plain])["comparisons"][0]["pairs"][0]["hallucination"] is None
    # a task that marks only some answers (HallusionBench: the yes / no ones): the items both marked, and n
    rows = [json.loads(x) for x in open(cand)]
    for r in rows[:3]:
        r["hallucinated"] = None
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = compare([base, base, base], [str(tmp_path / "d.jsonl"), cand, cand])
    g = r["comparisons"][0]["pairs"][0]["hallucination"]
    assert g["n"] == 1 and g["gap"] == -1.0 and ", n = 1 |" in render(r)
    assert r["comparisons"][0]["over_runs"]["hallucination"]["gap"] == -1.0


def test_by_group_per_pair_and_pooled(tmp_path):
    right_b = {i: False for i in ids(8)}
    right_c = {i: int(i[1:]) % 2 == 0 for i in ids(8)}       # right on every "shapes" item only
    a, b = scored(tmp_path / "a.jsonl", right_b), scored(tmp_path / "b.jsonl", right_c)
    groups = compare([a], [b], by="family")["comparisons"][0]["pairs"][0]["groups"]
    assert groups["shapes"]["gap"] == 1.0 and groups["bars"]["gap"] == 0.0 and groups["shapes"]["n"] == 4
    r = compare([a] * 3, [b] * 3, by="family")
    pooled = r["comparisons"][0]["groups"]
    assert pooled["shapes"]["n"] == 4 and pooled["shapes"]["values"] == 12 and pooled["shapes"]["gap"] == 1.0
    assert r["comparisons"][0]["groups_over_runs"]["shapes"] == pytest.approx({"gap": 1.0, "lo": 1.0, "hi": 1.0,
                                                                               "n": 3})
    md = render(r)
    assert "| family | pair 0 | pair 1 | pair 2 | pooled (items) | mean over runs (t) | items |" in md
    assert "| bars | " + "the same on every item | " * 5 + "4 |" in md
    with pytest.raises(R1VError, match=r"--by level: item i0 in .*a.jsonl has no such group \(its groups: family\)"):
        compare([a], [b], by="level")


def test_recipe_run_folders_compare_the_stage_files_every_run_holds_in_stage_order(tmp_path):
    stages = ("grpo", "grpo@20", "grpo@100", "sft-m10", "sft-m2", "mpo-r1", "align", "transfer")
    for run, wins in (("a0", 0), ("b0", 2), ("a1", 0), ("b1", 2)):
        for stage in stages:
            scored(tmp_path / run / "outputs" / f"{stage}-visual.jsonl", {i: k < wins for k, i in enumerate(ids(4))},
                   family=False)
        scored(tmp_path / run / "outputs" / "rm-pairs.jsonl", {"i0": True})  # not a held-out test: skipped
    for run in ("a0", "b0"):  # the first pair holds a file the second does not
        scored(tmp_path / run / "outputs" / "mpo-r2-visual.jsonl", {"i0": True}, family=False)
    r = compare([str(tmp_path / "a0"), str(tmp_path / "a1")], [str(tmp_path / "b0"), str(tmp_path / "b1")])
    assert [c["name"] for c in r["comparisons"]] == [
        "align-visual", "transfer-visual", "sft-m2-visual", "sft-m10-visual", "mpo-r1-visual", "grpo@20-visual",
        "grpo@100-visual", "grpo-visual"]
    assert all(len(c["pairs"]) == 2 and c["pooled"]["accuracy"]["gap"] == 0.5 for c in r["comparisons"])
    assert r["skipped"] == ["mpo-r2-visual"] and "Skipped, not in every path: mpo-r2-visual." in render(r)
    with pytest.raises(R1VError, match="recipe runs before r1v recorded them have none"):
        compare([str(tmp_path / "a0")], [str(tmp_path / "b0")], by="family")


def test_refusals(tmp_path):
    a = scored(tmp_path / "a.jsonl", {i: True for i in ids(4)})
    with pytest.raises(R1VError, match="1 baselines and 2 candidates"):
        compare([a], [a, a])
    with pytest.raises(R1VError, match="share no item ids"):
        compare([a], [scored(tmp_path / "b.jsonl", {"x0": True})])
    (tmp_path / "blank.jsonl").write_text("\n")
    with pytest.raises(R1VError, match="blank.jsonl holds no scored records"):
        compare([a], [str(tmp_path / "blank.jsonl")])
    (tmp_path / "groups.jsonl").write_text('{"id": "i0", "correct": true, "groups": "family"}\n')
    with pytest.raises(R1VError, match="groups.jsonl:1 is not a scored record"):
        compare([a], [str(tmp_path / "groups.jsonl")])
    with pytest.raises(R1VError, match="item i0 is another row"):  # the same ids, another split or world
        compare([a], [scored(tmp_path / "c.jsonl", {i: True for i in ids(4)}, gold="other")])
    (tmp_path / "bad.jsonl").write_text('{"id": "i0"}\n')
    with pytest.raises(R1VError, match="bad.jsonl:1 is not a scored record"):
        compare([a], [str(tmp_path / "bad.jsonl")])
    with pytest.raises(R1VError, match="does not exist"):
        compare([a], [str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(R1VError, match="holds no scored records"):
        compare([a], [str(tmp_path / "empty")])




def test_cli_prints_writes_and_refuses_in_one_line(tmp_path, capsys):
    """An eval run folder (items.jsonl, named by its summary's bench) against a JSONL; --out writes the
    table, the record and the plot; a user mistake exits 2 with one line, no traceback."""
    run = tmp_path / "run"
    scored(run / "items.jsonl", {i: False for i in ids(6)})
    (run / "summary.json").write_text(json.dumps({"bench": "world"}))
    cand = scored(tmp_path / "b.jsonl", {i: True for i in ids(6)})
    assert main(["eval", "compare", "--baseline", str(run), "--candidate", cand, "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| world | 0.0% -> 100.0%: +100.0 points" in out
    assert json.loads((tmp_path / "o" / "compare.json").read_text())["comparisons"][0]["name"] == "world"
    assert (tmp_path / "o" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "o" / "compare.md").read_text() == out.split("written:")[0]
    assert main(["eval", "compare", "--baseline", str(run), "--candidate", cand, cand]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 baselines and 2 candidates" in err[0]
    # a repeated option adds its paths (argparse alone would keep the last, and pair the runs wrongly)
    assert main(["eval", "compare", "--baseline", str(run), "--baseline", str(run), "--candidate", cand, cand]) == 0
    assert "(2 pairs)" in capsys.readouterr().out
    # --out that is a file is refused before anything is printed
    assert main(["eval", "compare", "--baseline", str(run), "--candidate", cand, "--out", cand]) == 2
    got = capsys.readouterr()
    assert got.out == "" and "is a file; name a folder" in got.err
    with pytest.raises(SystemExit) as e:  # the help of `eval` lists compare (its help text holds a %)
        main(["eval", "--help"])
    assert e.value.code == 0 and "compare" in capsys.readouterr().out


def test_a_gap_whose_bound_rounds_to_zero_shows_its_side():
    from r1v.stats import points

    assert points({"gap": -0.026, "lo": -0.0515, "hi": -0.0002}) == "-2.6 points (-5.15 to -0.02)"
    assert points({"gap": 0.01, "lo": -0.02, "hi": 0.04}) == "+1.0 points (-2.0 to +4.0)"


def test_a_recipe_run_records_each_items_groups_so_its_stages_compare_by_family(recipe_run):
    """The recipe's held-out outputs carry the task's groups: two recipe runs compare stage by stage, by family."""
    _, run, _ = recipe_run
    records = [json.loads(x) for x in (run / "outputs" / "grpo-visual.jsonl").read_text().splitlines()]
    assert all(r["groups"]["family"] == r["id"].split("-")[0] for r in records)  # each item's own (ids name it)
    r = compare([str(run)], [str(run)], by="family")
    names = [c["name"] for c in r["comparisons"]]
    assert names[:2] == ["align-text", "align-visual"] and names[-1] == "grpo-visual" and not r["skipped"]
    visual = r["comparisons"][-1]["pairs"][0]
    assert set(visual["groups"]) == {"shapes", "bars", "expr", "clock"} and visual["accuracy"]["gap"] == 0
    assert sum(g["n"] for g in visual["groups"].values()) == visual["n"]
    assert [c["name"] for c in compare([str(run / "outputs")], [str(run)])["comparisons"]] == names  # its outputs/
