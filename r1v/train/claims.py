"""The paper's claims, checked on one recipe run or over several (seeds, or one seed on several machines).

    r1v recipe report runs/tiny                                 # one run: the table opens its report.md
    r1v recipe claims runs/s0 runs/s1 runs/s2 --out runs/claims # several: each run, pooled, over the runs

Each claim is measured on a run as a `Measure`: the run's figure with its 95% interval, its verdict on
that run, and the per-item scores behind it (a stage's right answers, its hallucination flags). Several
runs of one recipe combine two ways:
* **pooled over the items**: each held-out item's scores averaged over the runs that scored it, then the
  one-run statistic on those means (an item scored by three runs is one observation, not three: the
  pooling of `r1v eval compare`). It carries the items' sampling, at these seeds;
* **over the runs**: a Student t interval over the runs' figures, the runs being the observations (from
  three runs on). It carries the seeds' spread, on these items: where another seed's figure would fall on
  average. Three runs give a wide interval (t at 2 degrees of freedom: 4.30).
Every run scores the same items, so neither interval holds both kinds of noise: the verdict applies the
one-run rule to each and keeps the weaker, and says at how many runs the claim held on its own. Given runs
of one seed on several machines, "over the runs" is the spread floating point adds between them.

Verdicts: against a floor, **holds** when the whole interval is above it and "holds at the estimate" when
only the estimate is; a gain **holds** when its interval is above 0. Runs are matched item by item by id,
as `r1v eval compare` matches them; the recipe's outputs carry no gold, so equal ids are taken to be the
same items (runs of one world's files). Runs of different recipes (other stages, other `claims.*`
targets) are refused. `--out` writes claims.md (the table), claims.json (every figure; each verdict as text
and as a `status` a program can test) and claims.png (a panel per claim).
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from r1v.errors import R1VError
from r1v.stats import half_width, mean_ci, paired_interval, paired_ratio, pct, points, t_interval

GAIN = "> 0, interval above 0"


@dataclass
class Measure:
    """One claim on one run. `kind` says how runs combine: floor (an accuracy against a target), ratio
    (b / a against a target), gain (b - a above 0), below (b - a below 0: hallucination), same (b - a
    not distinguishable from 0: text reasoning), al-cotd (shorter easy chains, accuracy not below),
    share (a run-level figure against a target, no items) or note (a run's text, nothing to combine)."""

    claim: str
    paper: str
    text: str  # the run's figure as the one-run table prints it
    verdict: str  # its verdict on this run
    target: float | str | None
    kind: str = "note"
    est: dict | None = None  # {"gap", "lo", "hi"}: the run's figure (an accuracy, ratio or gap) with its interval
    a: dict | None = None  # per-item scores: floor -> the stage's; ratio, gain, below, same -> the earlier one's
    b: dict | None = None  # ... the later one's
    scale: float = 1.0  # the ceiling row: the figure is the accuracy divided by this
    extra: dict = field(default_factory=dict)  # al-cotd: the two arms' easy-item tokens
    what: str = ""  # what the figure measures ("sft/m4 - sft/m0"), for a table without the run's text


def recipe_of(run: Path) -> dict:
    """The settings a run ran with (its recipe.yaml), or {} for a run folder without one."""
    import yaml

    path = run / "recipe.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def stage_order(results: dict) -> list[str]:
    order = (["align", "transfer"]
             + sorted((s for s in results["stages"] if s.startswith("sft/")), key=lambda s: int(s.split("/m")[1]))
             + sorted((s for s in results["stages"] if s.startswith("mpo/")), key=lambda s: int(s.split("/r")[1]))
             + ["grpo"])
    return [s for s in order if "eval" in results["stages"].get(s, {})]


def outputs(run: Path, stage: str, kind: str = "visual", key: str = "correct") -> dict | None:
    """{id: 0/1} of a stage's held-out outputs: right answers (`key="correct"`), or the hallucination flags
    where the task could tell (`key="hallucinated"`); None when the run kept no such file."""
    f = run / "outputs" / f"{stage.replace('/', '-')}-{kind}.jsonl"
    if not f.exists():
        return None
    found = {}
    for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
        try:
            r = json.loads(line) if line.strip() else {}
            if r.get(key) is not None:
                found[r["id"]] = float(r[key])
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise R1VError(f"{f}:{i}: not a held-out output record ({type(e).__name__}: {e}); the recipe writes "
                           f"one JSON object a line with id and {key}: run the stage again") from None
    return found or None


def paired_gap(run: Path, a: str, b: str, kind: str = "visual") -> dict | None:
    """Accuracy of stage b minus stage a on the same held-out items, with a 95% interval (paired)."""
    ra, rb = outputs(run, a, kind), outputs(run, b, kind)
    return paired_interval(ra, rb) if ra and rb else None


def references(path: str | None) -> dict[str, dict]:
    """`data.reference_scores` as {label: {"accuracy": x, "claim": tag or None}} (plain numbers allowed)."""
    if not path or not Path(path).is_file():
        return {}
    raw = json.loads(Path(path).read_text())
    return {k: v if isinstance(v, dict) else {"accuracy": v} for k, v in raw.items()}


def _verdict_at_least(value: float, lo: float, target: float) -> str:
    """Against a floor: the whole interval above it, only the estimate above it, or neither."""
    if not target:
        return "no target set"
    if lo >= target:
        return "**holds**"
    return "holds at the estimate (interval reaches below)" if value >= target else "**does not hold**"


def _verdict_gap(g: dict) -> str:
    """A gain holds when its paired interval is above 0; the verdict says when a positive estimate
    is not distinguishable from 0, so that it reads apart from a loss."""
    if g["lo"] > 0:
        return "**holds**"
    if g["hi"] < 0:
        return "**does not hold** (a loss: the interval is below 0)"
    return "**does not hold** (a gain not distinguishable from 0)" if g["gap"] > 0 else "**does not hold**"


def _verdict_below(g: dict) -> str:
    """A fall (hallucination) holds when its paired interval is below 0."""
    return "**holds**" if g["hi"] < 0 else "**does not hold**"


def _verdict_same(g: dict) -> str:
    """Text reasoning survives when the gap's interval holds 0: "the same answers" when every item is."""
    if g["lo"] == g["hi"] == 0:
        return "**holds** (the same answers)"
    return "**holds**" if g["lo"] <= 0 <= g["hi"] else "**does not hold**"


# --------------------------------------------------------------------------- one run
def measures(run: Path, results: dict, cfg: dict) -> list[Measure]:
    """The paper's claims this run can speak to, in the table's order."""
    st = results["stages"]
    order = stage_order(results)
    targets = cfg.get("claims", {}) or {}
    rows: list[Measure] = []

    def acc(stage, kind="visual"):
        e = st.get(stage, {}).get("eval", {}).get(kind)
        return (e["accuracy"], e["n"]) if e else None

    def floor(claim, paper, stage, target, label=None, scale=1.0, text=None):
        p, n = acc(stage)
        lo, hi = max(0.0, p - half_width(p, n)), min(1.0, p + half_width(p, n))
        p, lo, hi = p / scale, lo / scale, hi / scale
        return Measure(claim, paper, text or f"{label or stage}: {pct(p)} ({pct(lo)} to {pct(hi)})",
                       _verdict_at_least(p, lo, targets.get(target, 0)), targets.get(target), "floor",
                       {"gap": p, "lo": lo, "hi": hi}, outputs(run, stage), scale=scale, what=label or stage)

    if acc("align"):
        rows.append(floor("the substitute, once aligned, is a VLM", "64.0 MMMU", "align", "aligned_visual"))
    ra, rt = outputs(run, "align"), outputs(run, "transfer")
    r = paired_ratio(ra, rt) if ra and rt else None
    if r:
        rows.append(Measure("transfer keeps most of it", "60.2 / 64.0 = 94%",
                            f"transfer / align: {pct(r['ratio'])} ({pct(r['lo'])} to {pct(r['hi'])})",
                            _verdict_at_least(r["ratio"], r["lo"], targets.get("transfer_kept", 0)),
                            targets.get("transfer_kept"), "ratio", {"gap": r["ratio"], "lo": r["lo"], "hi": r["hi"]},
                            ra, rt, what="transfer / align"))
    sft = [s for s in order if s.startswith("sft/")]
    if len(sft) >= 2:
        rows += _gain(run, "each SFT iteration adds", "62.5 -> 63.9 -> 64.7 -> 65.2 -> 65.6", sft[0], sft[-1],
                      " -> ".join(f"{100 * acc(s)[0]:.1f}" for s in sft) + "; ")
    if "grpo" in order and sft:
        rows += _gain(run, "GRPO adds", "65.6 -> 69.0", sft[-1], "grpo")
    text = [s for s in order if acc(s, "text") and s != "align"]
    if len(text) >= 2:
        a, b = outputs(run, text[0], "text"), outputs(run, text[-1], "text")
        g = paired_interval(a, b) if a and b else None
        if g:
            rows.append(Measure("text reasoning survives", "94.0 MATH-500 (R1-distilled LLM: 94.3)",
                                f"{text[0]} {pct(acc(text[0], 'text')[0])} -> {text[-1]} "
                                f"{pct(acc(text[-1], 'text')[0])}: {points(g)}", _verdict_same(g), "unchanged",
                                "same", g, a, b, what=f"{text[-1]} - {text[0]}, text-only test"))
    rows += _r1v2(run, results, cfg, order)
    if "sft" in (cfg.get("stages") or ["sft"]):
        rows.append(_al_cotd(run))
    final = order[-1] if order else None
    if final and acc(final):
        rows.append(floor("the final model", "69.0 MMMU (R1V-38B)", final, "final_visual"))
        ceiling = [v["accuracy"] for v in references(cfg.get("data", {}).get("reference_scores")).values()
                   if v.get("claim") == "ceiling"]
        if ceiling and ceiling[0] > 0:
            c = ceiling[0]
            m = floor("... of what a perfect projector allows", "-", final, "final_of_ceiling", scale=c)
            m.what = f"{final} / ceiling {pct(c)}"
            m.text = f"{m.what}: {pct(m.est['gap'])} ({pct(m.est['lo'])} to {pct(m.est['hi'])})"
            rows.append(m)
        elif ceiling:
            rows.append(Measure("... of what a perfect projector allows", "-", "the ceiling is 0%: no ratio", "-",
                                None))
    return rows


def _gain(run: Path, claim: str, paper: str, a: str, b: str, prefix: str = "", label: str | None = None
          ) -> list[Measure]:
    """Stage b's visual accuracy minus stage a's, paired over the items: holds when the interval is above 0."""
    ra, rb = outputs(run, a), outputs(run, b)
    g = paired_interval(ra, rb) if ra and rb else None
    if not g:
        return []
    return [Measure(claim, paper, f"{prefix}{label or f'{b} - {a}'}: {points(g)}", _verdict_gap(g), GAIN, "gain", g,
                    ra, rb, what=label or f"{b} - {a}")]


def _r1v2(run: Path, results: dict, cfg: dict, order: list[str]) -> list[Measure]:
    """R1V2's claims: the reward model ranks pairs, MPO adds to the transferred model, and its
    hallucination rate is at or below SFT's (here, or in `claims.against`, R1V's run on the same
    held-out files); GRPO adds to MPO; SSB keeps the effective share up; R1V3's checkpoint choice."""
    st, targets, rows = results["stages"], cfg.get("claims", {}) or {}, []
    ev = st.get("rm", {}).get("pairs_eval")
    if ev:
        p, n = ev["accuracy"], ev["n"]
        lo, hi = max(0.0, p - half_width(p, n)), min(1.0, p + half_width(p, n))
        kinds = ", ".join(f"{k} {pct(v['accuracy'])}" for k, v in ev.get("by_kind", {}).items())
        rows.append(Measure("the reward model ranks held-out pairs", "Skywork-VL Reward (no pair accuracy on R1V2's "
                            "data)", f"{pct(p)} ({pct(lo)} to {pct(hi)}; n={n}; {kinds})",
                            _verdict_at_least(p, lo, targets.get("rm_pair_accuracy", 0)),
                            targets.get("rm_pair_accuracy"), "share", {"gap": p, "lo": lo, "hi": hi},
                            what="held-out pair accuracy"))
    mpo = [s for s in order if s.startswith("mpo/")]
    if mpo and "transfer" in order:
        chain = " -> ".join(f"{100 * st[s]['eval']['visual']['accuracy']:.1f}" for s in ["transfer", *mpo])
        rows += _gain(run, "MPO adds to the transferred model", "R1V2: 73.6 MMMU (no SFT)", "transfer", mpo[-1],
                      chain + "; ")
    a, b = outputs(run, "transfer", key="hallucinated"), (outputs(run, mpo[-1], key="hallucinated") if mpo else None)
    if a and b:
        g = paired_interval(a, b)
        rows.append(Measure("MPO hallucinates less than the transferred model", "-",
                            f"transfer {pct(sum(a.values()) / len(a))} -> {mpo[-1]} {pct(sum(b.values()) / len(b))}: "
                            f"{100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f}, paired)",
                            _verdict_below(g), "below, interval below 0", "below", g, a, b,
                            what=f"{mpo[-1]} - transfer, hallucination rate"))
    if mpo:
        against = Path(targets["against"]) if targets.get("against") else run
        other = json.loads((against / "results.json").read_text()) if (against / "results.json").exists() else None
        sft = [s for s in stage_order(other) if s.startswith("sft/")] if other else []
        a = outputs(against, sft[-1], key="hallucinated") if sft else None
        b = outputs(run, mpo[-1], key="hallucinated")
        if a and b:
            g = paired_interval(a, b)
            where = "" if against == run else f" (`{against}`)"
            # `claims.against` names one run: beside a run at another seed it still reads that run's SFT,
            # which compares the two seeds as well as the two recipes. Say so where the table shows it.
            seed, its_seed = cfg.get("seed", 0), recipe_of(against).get("seed", 0)
            if against != run and seed != its_seed:
                where = f" (`{against}`, seed {its_seed}, beside this run's seed {seed})"
            verdict = "**holds**" if g["hi"] < 0 else ("holds at the estimate (interval reaches above 0)"
                                                        if g["gap"] <= 0 else "**does not hold**")
            rows.append(Measure("MPO hallucinates no more than SFT", "SFT 12.1% -> MPO 8.7% (R1V2 Table 3)",
                                f"{sft[-1]}{where} {pct(sum(a.values()) / len(a))} -> {mpo[-1]} "
                                f"{pct(sum(b.values()) / len(b))}: {100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} "
                                f"to {100 * g['hi']:+.1f}, paired, n={g['n']})", verdict, "at or below", "below",
                                g, a, b, what=f"{mpo[-1]} - {sft[-1]}{where}, hallucination rate"))
    g_st, g_cfg = st.get("grpo", {}), cfg.get("grpo", {}) or {}
    if mpo and "grpo" in order:
        rows += _gain(run, "GRPO adds to MPO", "R1V2: MPO + GRPO 73.6 MMMU", mpo[-1], "grpo")
    ssb = ("SSB keeps the effective-sample share up", "above 60% with SSB, below 40% without (R1V2)")
    if (g_cfg.get("ssb") or {}).get("enabled") and "effective_trained_last" in g_st:
        e = g_st["effective_trained_last"]
        shares = (f"groups with non-zero advantages, last fifth of steps: {pct(g_st['effective_last'])} fresh, "
                  f"{pct(e)} trained on")
        if not g_st.get("replayed"):  # the fresh groups never fell under ssb.target: the buffer did nothing
            rows.append(Measure(*ssb, f"{shares}; no group was replayed (the fresh share never fell under "
                                "grpo.ssb.target)", "not tested here", ">= 60%"))
        else:
            rows.append(Measure(*ssb, f"{shares}; {g_st['replayed']} groups replayed",
                                "**holds**" if e >= 0.6 else "**does not hold**", ">= 60%", "share",
                                {"gap": e, "lo": e, "hi": e}, extra={"target": 0.6},
                                what="groups trained on with non-zero advantages, last fifth"))
    sel = g_st.get("selected")
    choice = ("the entropy-chosen checkpoint beats the last", "R1V3 (no figure)")
    if sel and sel.get("step") != sel.get("last"):
        rows += _gain(run, *choice, f"grpo@{sel['last']}", "grpo", label=f"step {sel['step']} - step {sel['last']}")
    elif sel:
        rows.append(Measure(*choice, "the last kept: no earlier checkpoint's entropy was clearly above the last's"
                            if sel.get("test") else "the entropy chose the last checkpoint",
                            "not tested (nothing to compare)", None))
    return rows


def _al_cotd(run: Path) -> Measure:
    """AL-CoTD's claim, from `r1v world compare`'s results in this run folder (when it was run)."""
    claim, paper = "AL-CoTD: shorter chains on easy items, no loss of accuracy", "the R1V report's claim (no figure)"
    arms = {}
    for f in sorted((run / "distill-compare").glob("*/result.json")):
        arms[f.parent.name] = json.loads(f.read_text())
    base = arms.pop("al-cotd", None)
    if not base or not arms:
        return Measure(claim, paper, "not measured by the recipe: `r1v world compare` measures it", "-", None)
    name, other = min(arms.items(), key=lambda kv: kv[0])
    a = {k: float(v) for k, v in other["correct"].items()}
    b = {k: float(v) for k, v in base["correct"].items()}
    g = paired_interval(a, b)
    shorter = base["easy"]["tokens"] < other["easy"]["tokens"]
    verdict = "**holds**" if shorter and g["hi"] >= 0 else "**does not hold**"
    stop = ""
    if base.get("stop") and other.get("stop"):  # why greedy lengths do or do not move (r1v/world/compare.py)
        stop = f"; p(stop) after the short chain, easy items, {base['stop']['easy']['p']:.3f} vs " \
               f"{other['stop']['easy']['p']:.3f}"
    at = f" at {base['model']}" if base.get("model") else ""  # the arms' last SFT iteration
    return Measure(claim, paper, f"easy-item tokens{at} {base['easy']['tokens']} vs {other['easy']['tokens']} "
                   f"({name}); accuracy {points(g)}{stop}", verdict, "shorter, accuracy not below", "al-cotd", g,
                   a, b, extra={"tokens": base["easy"]["tokens"], "other_tokens": other["easy"]["tokens"],
                                "arm": name}, what=f"AL-CoTD - {name}{at}")


def claims(run: Path, results: dict, cfg: dict) -> list[str]:
    """The claims table of one run's report: each claim with the paper's figures, ours with a 95%
    interval, and a verdict (rules under the table)."""
    lines = ["## The paper's claims on this run", "",
             "| claim | paper | this run (95% interval) | target | verdict |", "|---|---|---|---|---|"]
    for m in measures(run, results, cfg):
        lines.append(f"| {m.claim} | {m.paper} | {m.text} | {_target(m.target)} | {m.verdict} |")
    lines += ["", "Verdicts: against a floor, **holds** when the whole 95% interval is above it, and \"holds at the "
              "estimate\" when only the estimate is; a gain **holds** when its paired 95% interval is above 0, and "
              "otherwise **does not hold**, with \"a gain not distinguishable from 0\" where the estimate is above 0 "
              "and \"a loss\" where the whole interval is below 0. Intervals: accuracies, normal over the held-out "
              "items; gaps, paired over the same items; the transfer ratio, a paired bootstrap (2,000 resamples, "
              "seeded). Targets are the recipe's `claims.*`.", ""]
    return lines


def _target(t) -> str:
    """A target as the table prints it: a floor as ">= 85.0%", a rule as its words, none as "-"."""
    return f">= {pct(t)}" if isinstance(t, float) and t else t if isinstance(t, str) else "-"


# --------------------------------------------------------------------------- several runs
def _number(x, what: str) -> float:
    """x, where it is a number (a JSON string or bool in its place is a broken file, not a figure)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} is {x!r}, not a number")
    return x


def _read(run: Path) -> tuple[dict, dict, list[Measure]]:
    """A run's results.json, recipe.yaml and claims, every figure the combination reads checked first."""
    import yaml

    try:
        results = json.loads((run / "results.json").read_text())
        for s in stage_order(results):
            for kind, e in results["stages"][s]["eval"].items():
                _number(e["accuracy"], f"{s}'s {kind} accuracy")
                _number(e["n"], f"{s}'s {kind} n")
                got = outputs(run, s, kind)
                if got is not None and len(got) != e["n"]:
                    raise R1VError(f"{run}/outputs/{s.replace('/', '-')}-{kind}.jsonl holds {len(got)} items where "
                                   f"results.json scored {e['n']}: the file was cut or edited; run the stage again")
        cfg = recipe_of(run)
        cfg = cfg if isinstance(cfg, dict) else {}
        ms = measures(run, results, cfg)
        for m in ms:
            for key in ("tokens", "other_tokens"):
                if key in m.extra:
                    _number(m.extra[key], f"AL-CoTD's easy-item {key}")
        return results, cfg, ms
    except R1VError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, yaml.YAMLError) as e:
        raise R1VError(f"{run}: its results.json, recipe.yaml or distill-compare/ is not a recipe run's "
                       f"({type(e).__name__}: {e}); `r1v recipe run` writes them") from None


def _item_means(dicts: list[dict]) -> dict:
    """Each item's score averaged over the runs that scored it (as `r1v eval compare` pools its pairs)."""
    sums: dict[str, list[float]] = {}
    for d in dicts:
        for k, v in d.items():
            sums.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _pooled_accuracy(dicts: list[dict]) -> dict:
    """An accuracy pooled over the items: each item's score averaged over the runs, then the mean over the items
    with its 95% interval (`mean_ci`), as a share."""
    means = _item_means(dicts)
    p, lo, hi = mean_ci(list(means.values()))
    return {"gap": p / 100, "lo": lo / 100, "hi": hi / 100, "n": len(means)}


def _pooled(kind: str, ms: list[Measure]) -> dict | None:
    """The one-run statistic on each item's scores averaged over the runs first: an item is one observation
    however many runs scored it. Gains and ratios average each item over the runs that scored it at both
    stages; None where a run kept no per-item scores, or (the ceiling row) the runs' ceilings differ."""
    if kind in ("share", "note") or any(m.a is None or (kind != "floor" and m.b is None) for m in ms):
        return None
    if kind == "floor":
        if len({m.scale for m in ms}) > 1:
            return None
        g = _pooled_accuracy([m.a for m in ms])
        return {**g, **{k: g[k] / ms[0].scale for k in ("gap", "lo", "hi")}}
    both = [[k for k in m.a if k in m.b] for m in ms]
    a = _item_means([{k: m.a[k] for k in ks} for m, ks in zip(ms, both)])
    b = _item_means([{k: m.b[k] for k in ks} for m, ks in zip(ms, both)])
    if not a:
        return None
    if kind == "ratio":
        r = paired_ratio(a, b)
        return {"gap": r["ratio"], "lo": r["lo"], "hi": r["hi"], "n": r["n"]} if r else None
    return paired_interval(a, b)


def _numeric_target(m: Measure) -> float | None:
    t = m.target if not isinstance(m.target, bool) and isinstance(m.target, (int, float)) else m.extra.get("target")
    return float(t) if t else None


def _rule(kind: str, ms: list[Measure], g: dict, tokens: dict | None) -> str:
    """The one-run rule, applied to an interval over several runs (pooled, or over the runs)."""
    if kind in ("floor", "ratio", "share"):
        return _verdict_at_least(g["gap"], g["lo"], _numeric_target(ms[0]) or 0)
    if kind == "gain":
        return _verdict_gap(g)
    if kind == "below":
        if ms[0].target == "at or below" and g["hi"] >= 0:  # R1V2 against SFT: not more, so an estimate at or below
            return "holds at the estimate (interval reaches above 0)" if g["gap"] <= 0 else "**does not hold**"
        return _verdict_below(g)
    if kind == "same":
        if all(m.est["lo"] == m.est["hi"] == 0 for m in ms):
            return "**holds** (the same answers at every run)"
        return "**holds** (not distinguishable from 0)" if g["lo"] <= 0 <= g["hi"] else "**does not hold**"
    # al-cotd: shorter easy chains (the runs' token gaps, interval below 0) and accuracy not below
    return "**holds**" if tokens and tokens["hi"] < 0 and g["hi"] >= 0 else "**does not hold**"


def _rank(verdict: str) -> int:
    return 2 if verdict.startswith("**holds**") else 1 if verdict.startswith("holds at the estimate") else 0


def _verdict(kind: str, ms: list[Measure], pooled: dict | None, over: dict | None, tokens: dict | None) -> str:
    """The weaker of the rule on the pooled interval (the items' sampling) and on the interval over the runs
    (the seeds'): every run scores the same items, so the runs' spread alone leaves the items' out."""
    if over is None:
        return "three runs or more for a verdict over the runs"
    verdict = _rule(kind, ms, over, tokens)
    if pooled is not None:
        other = _rule(kind, ms, pooled, tokens)
        if _rank(other) < _rank(verdict):
            verdict = other + " (pooled over the items)"
    return verdict


def _count(ms: list[Measure]) -> str:
    """At how many runs the claim held on its own (and at how many more only at the estimate)."""
    if all(m.verdict == "no target set" for m in ms):
        return ""
    held = sum(_rank(m.verdict) == 2 for m in ms)
    estimate = sum(_rank(m.verdict) == 1 for m in ms)
    return f"; each run alone: holds at {held} of {len(ms)}" + (f", at the estimate at {estimate} more"
                                                                 if estimate else "")


def _cell(kind: str, g: dict | None) -> str:
    """A figure with its interval: a share in %, a gap in points."""
    if not g:
        return "-"
    if kind in ("floor", "ratio", "share"):
        return pct(g["gap"]) if g["lo"] == g["hi"] == g["gap"] else \
            f"{pct(g['gap'])} ({pct(g['lo'])} to {pct(g['hi'])})"
    return points(g, unit="")


def _run_cell(kind: str, m: dict) -> str:
    """One run's figure: as `_cell`, but "the same answers" where the run answered every item as before."""
    if kind == "same" and m["est"]["lo"] == m["est"]["hi"] == 0:
        return "the same answers"
    if kind == "al-cotd":
        return f"{m['extra']['tokens']} vs {m['extra']['other_tokens']} tokens; {points(m['est'])}"
    return m["text"] if kind == "note" else _cell(kind, m["est"])


def _settings(results: dict, keep_seed: bool = False) -> dict:
    """Every stage's recorded inputs (settings, and the content of its backbones and data) but what differs
    between seeds of one recipe: the seed, and the hash of the stage it started from."""
    found = {}
    for s, r in results["stages"].items():
        for k, v in (r.get("inputs") or {}).items():
            if k != "from" and (keep_seed or k != "seed"):
                found[k if k == "seed" else f"{s}: {k}"] = v
    return found


def over_runs(runs: list[str | Path]) -> dict:
    """Every claim the runs speak to: each run's figure, pooled over the items, over the runs (t interval,
    from three runs on), the verdict and the count of runs at which it held."""
    paths = [Path(r) for r in runs]
    for p in paths:
        if not p.exists():
            raise R1VError(f"{p} does not exist: give recipe run folders (`r1v recipe run` writes them)")
        if not (p / "results.json").is_file():
            raise R1VError(f"{p} holds no results.json: give recipe run folders (`r1v recipe run` writes them)")
    seen = {}
    for raw, p in zip(runs, paths):
        if p.resolve() in seen:
            raise R1VError(f"{raw} and {seen[p.resolve()]} are the same run: each run counts once")
        seen[p.resolve()] = raw
    read = [_read(p) for p in paths]
    orders = [stage_order(results) for results, _, _ in read]
    targets = [{k: v for k, v in (cfg.get("claims") or {}).items() if k != "against"} for _, cfg, _ in read]
    for p, order, t in zip(paths[1:], orders[1:], targets[1:]):
        if order != orders[0]:  # R1V beside R1V2, or a run not finished: their claims do not pool
            raise R1VError(f"{paths[0]} has the stages {', '.join(orders[0]) or 'none'} and {p} has "
                           f"{', '.join(order) or 'none'}: give runs of one recipe, each finished (to compare two "
                           f"recipes stage by stage: r1v eval compare --baseline RUN... --candidate RUN...)")
        if t != targets[0]:
            raise R1VError(f"{paths[0]} and {p} check their claims against different targets ({targets[0]} and {t}, "
                           f"their recipe.yaml's claims.*): give runs of one recipe")
    settings = [_settings(results) for results, _, _ in read]
    for p, st in zip(paths[1:], settings[1:]):
        differ = [f"{k}: {settings[0][k]} vs {st[k]}" for k in settings[0] if k in st and st[k] != settings[0][k]]
        if differ:  # another recipe (or backbone, or data), not another seed
            raise R1VError(f"{paths[0]} and {p} ran with other settings ({'; '.join(differ[:3])}): give runs of one "
                           f"recipe that differ in their seed (to compare two recipes: r1v eval compare --baseline "
                           f"RUN... --candidate RUN...)")
    names = list(dict.fromkeys(m.claim for _, _, ms in read for m in ms))
    rows, missing = [], []
    for name in names:
        per = [next((m for m in ms if m.claim == name), None) for _, _, ms in read]
        if any(m is None for m in per):
            missing.append({"claim": name, "runs": [str(p) for p, m in zip(paths, per) if m is None]})
            continue
        kinds = {m.kind for m in per}
        kind = kinds.pop() if len(kinds) == 1 else "note"
        if kind == "al-cotd" and len({m.extra["arm"] for m in per}) > 1:  # each run against another arm
            kind = "note"
        row = {"claim": name, "what": per[0].what, "paper": per[0].paper, "target": _target(per[0].target),
               "kind": kind,
               "runs": [{"text": m.text, "verdict": m.verdict, "est": m.est, "extra": m.extra}
                        for m in per]}
        if kind != "note":
            row["pooled"] = _pooled(kind, per)
            row["over_runs"] = t_interval([m.est["gap"] for m in per]) if len(per) >= 3 else None
            row["tokens"] = (t_interval([m.extra["tokens"] - m.extra["other_tokens"] for m in per])
                             if kind == "al-cotd" and len(per) >= 3 else None)
            row["held"] = sum(_rank(m.verdict) == 2 for m in per)
            row["verdict"] = _verdict(kind, per, row["pooled"], row["over_runs"], row["tokens"]) + _count(per)
        rows.append(row)
    table, same = [], bool(orders[0])
    for s in orders[0]:
        accs = [results["stages"][s]["eval"]["visual"]["accuracy"] for results, _, _ in read
                if "visual" in results["stages"][s]["eval"]]
        if len(accs) != len(paths):
            continue
        scored, pooled = [outputs(p, s) for p in paths], None
        same = same and all(d is not None and d == scored[0] for d in scored)
        if all(d is not None for d in scored):
            pooled = _pooled_accuracy(scored)
        table.append({"stage": s, "runs": accs, "pooled": pooled,
                      "over_runs": t_interval(accs) if len(accs) >= 3 else None})
    last = [outputs(p, orders[0][-1]) for p in paths] if orders[0] else []
    seeds = [st.get("seed") for st in (_settings(results, keep_seed=True) for results, _, _ in read)]
    twins = [(str(paths[i]), str(paths[j])) for i in range(len(paths)) for j in range(i + 1, len(paths))
             if seeds[i] is not None and seeds[i] == seeds[j]]
    return {"runs": [str(p) for p in paths], "claims": rows, "missing": missing, "stages": table, "twins": twins,
            "no_outputs": [str(p) for p, d in zip(paths, last) if d is None],
            "same_items": all(set(d) == set(last[0]) for d in last if d is not None and last[0] is not None),
            "identical": same}


def _note_verdict(runs: list[dict]) -> str:
    """The verdict cell of a claim not combined over the runs (measured in some runs only, or against
    different arms): how many runs gave each verdict, "-" where no run measured it."""
    counts = Counter(x["verdict"] for x in runs)
    if set(counts) == {"-"}:
        return "-"
    return f"not combined; of {len(runs)} runs: " + ", ".join(
        f"{'not measured' if v == '-' else v} at {n}" for v, n in counts.items())


def _labels(runs: list[str]) -> list[str]:
    """Column names: the folders' names, or their paths where two share a name."""
    names = [Path(r).name for r in runs]
    return names if len(set(names)) == len(names) else [f"run {i + 1}" for i in range(len(runs))]


def render(result: dict, command: str = "") -> str:
    """The claims over the runs, then each stage's visual accuracy, as markdown."""
    runs, k = result["runs"], len(result["runs"])
    labels = _labels(runs)
    lines = [f"# The paper's claims over {k} runs", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    if labels != runs:
        lines += ["Runs: " + ", ".join(f"`{x}` = `{p}`" for x, p in zip(labels, runs)) + ".", ""]
    lines += ["| claim (what is measured) | paper | " + " | ".join(f"`{x}`" for x in labels)
              + " | pooled over the items (95%) | over the runs (95%, t) | target | verdict |",
              "|---|---|" + "---|" * k + "---|---|---|---|"]
    for r in result["claims"]:
        kind = r["kind"]
        cells = " | ".join(_run_cell(kind, x) for x in r["runs"])
        claim = f"{r['claim']} ({r['what']})" if r["what"] else r["claim"]
        if kind == "note":
            lines.append(f"| {claim} | {r['paper']} | {cells} | - | - | {r['target']} | {_note_verdict(r['runs'])} |")
            continue
        over, pooled = _cell(kind, r["over_runs"]), _cell(kind, r["pooled"])
        if kind == "same" and all(x["est"]["lo"] == x["est"]["hi"] == 0 for x in r["runs"]):
            pooled = "the same answers"  # every run answered every item as before: exact, no interval
            over = pooled if r["over_runs"] else over
        if kind == "al-cotd":
            t = r["tokens"]
            over = f"{t['gap']:+.1f} tokens ({t['lo']:+.1f} to {t['hi']:+.1f}); {over}" if t else "-"
        lines.append(f"| {claim} | {r['paper']} | {cells} | {pooled} | {over} | {r['target']} | {r['verdict']} |")
    lines += ["", "Each run's figure with its own 95% interval, as its report states it. **Pooled over the items**: "
              "each held-out item's scores averaged over the runs that scored it, then the one-run statistic (an "
              "item is one observation however many runs scored it): the items' sampling, at these seeds. **Over "
              "the runs**: the mean of the runs' figures with a Student t 95% interval (k - 1 degrees of freedom, "
              "from three runs on): the seeds' spread, on these items (for one seed on several machines, floating "
              "point's). The verdict applies the one-run rule to both intervals and keeps the weaker: against a "
              "floor, **holds** when the interval is above it, \"holds at the estimate\" when only the estimate is; "
              "a gain when the interval is above 0; text reasoning when 0 is inside it. AL-CoTD holds when the runs' "
              "easy-item token gaps (AL-CoTD minus the fixed-penalty arm, over the runs) are below 0 and the "
              "accuracy gap's interval reaches 0 or above; both of these pass more easily as an interval widens. "
              "\"Each run alone\": the runs whose own verdict is **holds** (and those that hold only at the estimate). "
              "Targets: the runs' `claims.*` (recipe.yaml). Two runs give no verdict: a t interval over two "
              "figures says little.", ""]
    if result["identical"]:
        lines += ["Every stage's held-out outputs are the same in every run (was the seed applied?): over the runs "
                  "has no width, and the verdict rests on the pooled interval.", ""]
    for a, b in result["twins"]:
        lines += [f"`{a}` and `{b}` ran at the same seed: over the runs their difference is floating point's (or "
                  "none: a copy), not a seed's, and two of them narrow the interval.", ""]
    if result["no_outputs"]:
        lines += [f"{', '.join(result['no_outputs'])}: no held-out outputs (outputs/): the claims measured item by "
                  "item (transfer, the gains, text) cannot be measured there, and nothing is pooled over the items.",
                  ""]
    elif not result["same_items"]:
        lines += ["The runs were scored on different held-out items (their ids differ): pooled averages each item "
                  "over the runs that scored it.", ""]
    if result["missing"]:
        lines += ["Not in every run, so not combined: " + "; ".join(
            f"{m['claim']} (not at {', '.join(m['runs'])})" for m in result["missing"]) + ".", ""]
    if result["stages"]:
        lines += ["## Visual test accuracy by stage", "", "| stage | " + " | ".join(f"`{x}`" for x in labels)
                  + " | pooled over the items | over the runs |", "|---|" + "---|" * k + "---|---|"]
        for s in result["stages"]:
            lines.append(f"| {s['stage']} | " + " | ".join(pct(x) for x in s["runs"])
                         + f" | {_cell('floor', s['pooled'])} | {_cell('floor', s['over_runs'])} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path | None:
    """One panel per claim with a figure: each run's point, the pooled and over-the-runs intervals, and
    the target (a floor) or 0 (a gain)."""
    rows = [r for r in result["claims"] if r["kind"] != "note"]
    if not rows:
        path.unlink(missing_ok=True)  # an earlier run's figure in the same --out would sit beside this table
        return None
    labels = _labels(result["runs"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(rows))
    nrow = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(3.4 * cols, 2.6 * nrow), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows):
        scale = 100  # percent, or percentage points
        xs = [x["est"]["gap"] * scale for x in r["runs"]]
        ax.scatter(range(len(xs)), xs, color="C0", zorder=3, label="each run")
        for x, run in enumerate(r["runs"]):
            e = run["est"]
            ax.plot([x, x], [e["lo"] * scale, e["hi"] * scale], color="C0", alpha=0.4)
        k = len(xs)
        for j, (key, color, label) in enumerate((("pooled", "C1", "pooled over items"),
                                                 ("over_runs", "C3", "over the runs"))):
            g = r.get(key)
            if g:
                x = k + j
                ax.errorbar([x], [g["gap"] * scale], yerr=[[(g["gap"] - g["lo"]) * scale],
                                                           [(g["hi"] - g["gap"]) * scale]],
                            fmt="s", color=color, capsize=3, label=label)
        target = _parse_target(r["target"]) if r["kind"] in ("floor", "ratio", "share") else 0.0
        if target is not None:
            ax.axhline(target * scale, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(k + 2), [textwrap.shorten(x, 12, placeholder="..") for x in labels] + ["pooled", "runs"],
                      fontsize=6, rotation=30)
        ax.set_title(textwrap.shorten(r["claim"], 44, placeholder="..."), fontsize=8)
        ax.set_ylabel("%" if r["kind"] in ("floor", "ratio", "share") else "points", fontsize=7)
    # below the panels, in a strip of its own: in a corner it covered the last panel's labels
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / (2.6 * nrow), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parse_target(t: str) -> float | None:
    """">= 85.0%" (as `_target` prints a floor) -> 0.85."""
    return float(t[3:-1]) / 100 if isinstance(t, str) and t.startswith(">= ") and t.endswith("%") else None


def _plain(result: dict) -> dict:
    """The result for a program to read: verdicts without markdown, and each verdict's `status` ("holds",
    "holds at the estimate", "does not hold"; none where no rule applies: a note, or too few runs)."""
    def verdict(v: str) -> dict:
        text = v.replace("**", "")
        status = ("holds", "holds at the estimate", "does not hold")[2 - _rank(v)]
        judged = v.startswith(("**", "holds at the estimate"))
        return {"verdict": text, "status": status if judged else None}

    claims = [{**r, **(verdict(r["verdict"]) if "verdict" in r else {}),
               "runs": [{**x, **verdict(x["verdict"])} for x in r["runs"]]} for r in result["claims"]]
    return {**result, "claims": claims}


def write(result: dict, out: Path, command: str = "") -> list[Path]:
    """OUT/claims.md, claims.json and claims.png."""
    from r1v.io import write_atomic, write_json

    out.mkdir(parents=True, exist_ok=True)
    made = [write_atomic(out / "claims.md", render(result, command)), write_json(out / "claims.json", _plain(result))]
    png = plot(result, out / "claims.png")
    return made + ([png] if png else [])
