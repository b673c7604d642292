"""The run report: `runs/<name>/report.md` with its plots, from results.json and metrics.jsonl.

    r1v recipe report runs/tiny        # (re)write the report of a run, finished or not

Sections: held-out accuracy per stage (visual and text-only, with 95% intervals), the transfer
row, the SFT iterations (D_rm, E_{t-1}), GRPO against the last SFT iteration (the paired gap and
its interval), response lengths, and the plots: loss curves, GRPO reward / accuracy / length /
effective-sample ratio, accuracy by stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from r1v.stats import half_width, paired_interval, paired_ratio


def _recipe(run: Path) -> dict:
    import yaml

    path = run / "recipe.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _distill_summary(sft: str | None) -> tuple[dict | None, Path | None]:
    """The `r1v distill` summary of D, when D came from one: its summary.json beside the file, or in
    a `distill/` folder beside it (as `r1v world data` leaves it)."""
    if not sft:
        return None, None
    for folder in (Path(sft).parent, Path(sft).parent / "distill"):
        f = folder / "summary.json"
        if f.is_file():
            summary = json.loads(f.read_text())
            if "verdicts" in summary and "penalty" in summary:
                return summary, folder
    return None, None


def stage_order(results: dict) -> list[str]:
    order = (["align", "transfer"]
             + sorted((s for s in results["stages"] if s.startswith("sft/")), key=lambda s: int(s.split("/m")[1]))
             + sorted((s for s in results["stages"] if s.startswith("mpo/")), key=lambda s: int(s.split("/r")[1]))
             + ["grpo"])
    return [s for s in order if "eval" in results["stages"].get(s, {})]


def _flags(run: Path, stage: str, kind: str = "visual") -> dict | None:
    """{id: hallucinated} of a stage's held-out outputs, where the task could tell."""
    f = run / "outputs" / f"{stage.replace('/', '-')}-{kind}.jsonl"
    if not f.exists():
        return None
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    return {r["id"]: r["hallucinated"] for r in rows if r.get("hallucinated") is not None} or None


def paired_gap(run: Path, a: str, b: str, kind: str = "visual") -> dict | None:
    """Accuracy of stage b minus stage a on the same held-out items, with a 95% interval (paired)."""
    ra, rb = _correct(run, a, kind), _correct(run, b, kind)
    return paired_interval(ra, rb) if ra and rb else None


def _correct(run: Path, stage: str, kind: str = "visual") -> dict | None:
    f = run / "outputs" / f"{stage.replace('/', '-')}-{kind}.jsonl"
    if not f.exists():
        return None
    return {r["id"]: r["correct"] for r in map(json.loads, f.read_text().splitlines())}


def references(path: str | None) -> dict[str, dict]:
    """`data.reference_scores` as {label: {"accuracy": x, "claim": tag or None}} (plain numbers allowed)."""
    if not path or not Path(path).is_file():
        return {}
    raw = json.loads(Path(path).read_text())
    return {k: v if isinstance(v, dict) else {"accuracy": v} for k, v in raw.items()}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _verdict_at_least(value: float, lo: float, target: float) -> str:
    """Against a floor: the whole interval above it, only the estimate above it, or neither."""
    if not target:
        return "no target set"
    if lo >= target:
        return "**holds**"
    return "holds at the estimate (interval reaches below)" if value >= target else "**does not hold**"


def _verdict_gap(g: dict) -> str:
    if g["lo"] > 0:
        return "**holds**"
    return "gain not distinguishable from 0" if g["gap"] > 0 else "**does not hold**"


def claims(run: Path, results: dict, cfg: dict) -> list[str]:
    """The paper's claims checked on this run: each with the paper's figures, ours with a 95%
    interval, and a verdict (rules under the table)."""
    st = results["stages"]
    order = stage_order(results)
    targets = cfg.get("claims", {}) or {}
    rows = []

    def acc(stage, kind="visual"):
        e = st.get(stage, {}).get("eval", {}).get(kind)
        return (e["accuracy"], e["n"]) if e else None

    def interval(stage, kind="visual"):
        p, n = acc(stage, kind)
        return p, max(0.0, p - half_width(p, n)), min(1.0, p + half_width(p, n))

    if acc("align"):
        p, lo, hi = interval("align")
        rows.append(("the substitute, once aligned, is a VLM", "64.0 MMMU",
                     f"align: {_pct(p)} ({_pct(lo)} to {_pct(hi)})",
                     _verdict_at_least(p, lo, targets.get("aligned_visual", 0)), targets.get("aligned_visual")))
    ra, rt = _correct(run, "align"), _correct(run, "transfer")
    if ra and rt:
        r = paired_ratio(ra, rt)
        if r:
            rows.append(("transfer keeps most of it", "60.2 / 64.0 = 94%",
                         f"transfer / align: {_pct(r['ratio'])} ({_pct(r['lo'])} to {_pct(r['hi'])})",
                         _verdict_at_least(r["ratio"], r["lo"], targets.get("transfer_kept", 0)),
                         targets.get("transfer_kept")))
    sft = [s for s in order if s.startswith("sft/")]
    if len(sft) >= 2:
        g = paired_gap(run, sft[0], sft[-1])
        chain = " -> ".join(f"{100 * acc(s)[0]:.1f}" for s in sft)
        if g:
            rows.append(("each SFT iteration adds", "62.5 -> 63.9 -> 64.7 -> 65.2 -> 65.6",
                         f"{chain}; {sft[-1]} - {sft[0]}: {100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to "
                         f"{100 * g['hi']:+.1f})", _verdict_gap(g), "> 0, interval above 0"))
    if "grpo" in order and sft:
        g = paired_gap(run, sft[-1], "grpo")
        if g:
            rows.append(("GRPO adds", "65.6 -> 69.0", f"grpo - {sft[-1]}: {100 * g['gap']:+.1f} points "
                         f"({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f})", _verdict_gap(g), "> 0, interval above 0"))
    text = [s for s in order if acc(s, "text") and s != "align"]
    if len(text) >= 2:
        g = paired_gap(run, text[0], text[-1], "text")
        if g:
            same = g["lo"] == g["hi"] == 0
            verdict = "**holds** (the same answers)" if same else (
                "**holds**" if g["lo"] <= 0 <= g["hi"] else "**does not hold**")
            rows.append(("text reasoning survives", "94.0 MATH-500 (R1-distilled LLM: 94.3)",
                         f"{text[0]} {_pct(acc(text[0], 'text')[0])} -> {text[-1]} {_pct(acc(text[-1], 'text')[0])}: "
                         f"{100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f})", verdict,
                         "unchanged"))
    rows += _r1v2_claims(run, results, cfg, order)
    if "sft" in (cfg.get("stages") or ["sft"]):
        rows.append(_al_cotd(run))
    final = order[-1] if order else None
    if final and acc(final):
        p, lo, hi = interval(final)
        rows.append(("the final model", "69.0 MMMU (R1V-38B)", f"{final}: {_pct(p)} ({_pct(lo)} to {_pct(hi)})",
                     _verdict_at_least(p, lo, targets.get("final_visual", 0)), targets.get("final_visual")))
        ceiling = [v["accuracy"] for v in references(cfg.get("data", {}).get("reference_scores")).values()
                   if v.get("claim") == "ceiling"]
        if ceiling and ceiling[0] > 0:
            c = ceiling[0]
            rows.append(("... of what a perfect projector allows", "-",
                         f"{final} / ceiling {_pct(c)}: {_pct(p / c)} ({_pct(lo / c)} to {_pct(hi / c)})",
                         _verdict_at_least(p / c, lo / c, targets.get("final_of_ceiling", 0)),
                         targets.get("final_of_ceiling")))
        elif ceiling:
            rows.append(("... of what a perfect projector allows", "-", "the ceiling is 0%: no ratio", "-", None))
    lines = ["## The paper's claims on this run", "",
             "| claim | paper | this run (95% interval) | target | verdict |", "|---|---|---|---|---|"]
    for claim, paper, ours, verdict, target in rows:
        shown = (f">= {_pct(target)}" if isinstance(target, float) and target else
                 target if isinstance(target, str) else "-")
        lines.append(f"| {claim} | {paper} | {ours} | {shown} | {verdict} |")
    lines += ["", "Verdicts: against a floor, **holds** when the whole 95% interval is above it, and \"holds at the "
              "estimate\" when only the estimate is; a gain **holds** when its paired 95% interval is above 0. "
              "Intervals: accuracies, normal over the held-out items; gaps, paired over the same items; the "
              "transfer ratio, a paired bootstrap (2,000 resamples, seeded). Targets are the recipe's `claims.*`.", ""]
    return lines


def _r1v2_claims(run: Path, results: dict, cfg: dict, order: list[str]) -> list[tuple]:
    """R1V2's claims: the reward model ranks pairs, MPO adds to the transferred model, and its
    hallucination rate is at or below SFT's (here, or in `claims.against`, R1V's run on the same
    held-out files)."""
    st, targets, rows = results["stages"], cfg.get("claims", {}) or {}, []
    ev = st.get("rm", {}).get("pairs_eval")
    if ev:
        p, n = ev["accuracy"], ev["n"]
        lo = max(0.0, p - half_width(p, n))
        kinds = ", ".join(f"{k} {_pct(v['accuracy'])}" for k, v in ev.get("by_kind", {}).items())
        rows.append(("the reward model ranks held-out pairs", "Skywork-VL Reward (no pair accuracy on R1V2's data)",
                     f"{_pct(p)} ({_pct(lo)} to {_pct(min(1.0, p + half_width(p, n)))}; n={n}; {kinds})",
                     _verdict_at_least(p, lo, targets.get("rm_pair_accuracy", 0)), targets.get("rm_pair_accuracy")))
    mpo = [s for s in order if s.startswith("mpo/")]
    if mpo and "transfer" in order:
        g = paired_gap(run, "transfer", mpo[-1])
        if g:
            chain = " -> ".join(f"{100 * st[s]['eval']['visual']['accuracy']:.1f}" for s in ["transfer", *mpo])
            rows.append(("MPO adds to the transferred model", "R1V2: 73.6 MMMU (no SFT)",
                         f"{chain}; {mpo[-1]} - transfer: {100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to "
                         f"{100 * g['hi']:+.1f})", _verdict_gap(g), "> 0, interval above 0"))
    a, b = _flags(run, "transfer"), (_flags(run, mpo[-1]) if mpo else None)
    if a and b:
        g = paired_interval({k: float(v) for k, v in a.items()}, {k: float(v) for k, v in b.items()})
        rows.append(("MPO hallucinates less than the transferred model", "-",
                     f"transfer {_pct(sum(a.values()) / len(a))} -> {mpo[-1]} {_pct(sum(b.values()) / len(b))}: "
                     f"{100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f}, paired)",
                     "**holds**" if g["hi"] < 0 else "**does not hold**", "below, interval below 0"))
    if mpo:
        against = Path(targets["against"]) if targets.get("against") else run
        other = json.loads((against / "results.json").read_text()) if (against / "results.json").exists() else None
        sft = [s for s in stage_order(other) if s.startswith("sft/")] if other else []
        a, b = (_flags(against, sft[-1]) if sft else None), _flags(run, mpo[-1])
        if a and b:
            g = paired_interval({k: float(v) for k, v in a.items()}, {k: float(v) for k, v in b.items()})
            where = "" if against == run else f" (`{against}`)"
            verdict = "**holds**" if g["hi"] < 0 else ("holds at the estimate (interval reaches above 0)"
                                                        if g["gap"] <= 0 else "**does not hold**")
            rows.append(("MPO hallucinates no more than SFT", "SFT 12.1% -> MPO 8.7% (R1V2 Table 3)",
                         f"{sft[-1]}{where} {_pct(sum(a.values()) / len(a))} -> {mpo[-1]} "
                         f"{_pct(sum(b.values()) / len(b))}: {100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to "
                         f"{100 * g['hi']:+.1f}, paired, n={g['n']})", verdict, "at or below"))
    return rows


def _al_cotd(run: Path) -> tuple:
    """AL-CoTD's claim, from `r1v world compare`'s results in this run folder (when it was run)."""
    claim, paper = "AL-CoTD: shorter chains on easy items, no loss of accuracy", "the R1V report's claim (no figure)"
    arms = {}
    for f in sorted((run / "distill-compare").glob("*/result.json")):
        arms[f.parent.name] = json.loads(f.read_text())
    base = arms.pop("al-cotd", None)
    if not base or not arms:
        return claim, paper, "not measured by the recipe: `r1v world compare` measures it", "-", None
    name, other = min(arms.items(), key=lambda kv: kv[0])
    g = paired_interval(other["correct"], base["correct"])
    shorter = base["easy"]["tokens"] < other["easy"]["tokens"]
    verdict = "**holds**" if shorter and g["hi"] >= 0 else "**does not hold**"
    return (claim, paper, f"easy-item tokens {base['easy']['tokens']} vs {other['easy']['tokens']} ({name}); "
            f"accuracy {100 * g['gap']:+.1f} points ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f})", verdict,
            "shorter, accuracy not below")


def _r1v2_sections(st: dict) -> list[str]:
    lines = []
    r = st.get("rm")
    if r and r.get("pairs_eval"):
        ev = r["pairs_eval"]
        lines += ["## Reward model", "", f"Trained on {r.get('pairs')} pairs ({r.get('ties_dropped', 0)} ties dropped); "
                  f"held-out pair accuracy **{_pct(ev['accuracy'])}** (n={ev['n']}), mean margin {ev['margin']:.2f}.",
                  "", "| rejected kind | pair accuracy | n |", "|---|---|---|"]
        lines += [f"| {k} | {_pct(v['accuracy'])} | {v['n']} |" for k, v in ev.get("by_kind", {}).items()] + [""]
    rounds = sorted((s for s in st if s.startswith("mpo/r") and "sampling" in st[s]), key=lambda s: int(s[5:]))
    if rounds:
        lines += ["## MPO rounds", "", "| round | prompts | pairs (share) | samples: reward | accuracy | format | "
                  "hallucination | loss (first -> last) |", "|---|---|---|---|---|---|---|---|"]
        for s in rounds:
            m, loss = st[s]["sampling"], st[s].get("loss") or ["-", "-"]
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            lines.append(f"| {s} | {m['prompts']} | {m['pairs']} ({_pct(m['pair_share'])}) | {fmt(m['sample_reward'])} "
                         f"| {fmt(m['sample_accuracy'])} | {fmt(m['sample_format'])} | "
                         f"{fmt(m['sample_hallucination'])} | " + " -> ".join(
                             f"{x:.3f}" if isinstance(x, float) else str(x) for x in loss) + " |")
        lines += ["", f"A pair is a prompt's best sample against its worst, when the reward gap is at least "
                  f"{st[rounds[-1]].get('threshold')} (`mpo.threshold`).", ""]
    alarms = st.get("grpo", {}).get("hallucination_alarms")
    if alarms:
        lines += ["## Hallucination alarms (GRPO)", ""] + [
            f"- step {a['step']}: {_pct(a['hallucination'])} above the ceiling {_pct(a['ceiling'])}: {a['action']}"
            for a in alarms] + [""]
    return lines


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plots(run: Path, results: dict, metrics: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run / "plots"
    out.mkdir(exist_ok=True)
    made = []
    # loss curves of every supervised run, in order
    sup = [m for m in metrics if "loss" in m and m.get("stage") != "grpo" and m.get("stage") != "rm"
           and not str(m.get("stage")).startswith("mpo/")]
    if sup:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x0 = 0
        for stage in dict.fromkeys(m["stage"] for m in sup):
            ys = [m["loss"] for m in sup if m["stage"] == stage]
            ax.plot(range(x0, x0 + len(ys)), ys, label=stage)
            x0 += len(ys)
        ax.set(xlabel="step (all supervised runs, in order)", ylabel="loss", yscale="log", title="Training loss")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=110)
        plt.close(fig)
        made.append("loss.png")
    grpo = [m for m in metrics if m.get("stage") == "grpo"]
    if grpo:
        fig, axes = plt.subplots(1, 4, figsize=(13, 3))
        steps = [m["step"] for m in grpo]
        for ax, key, title in zip(axes, ("reward", "accuracy", "length", "effective"),
                                  ("reward", "accuracy (rollouts)", "response length (tokens)",
                                   "effective-sample ratio")):
            ys = [m[key] for m in grpo]
            ax.plot(steps, ys, alpha=0.35, color="C0")
            k = max(1, len(ys) // 10)
            smooth = [sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1]) for i in range(len(ys))]
            ax.plot(steps, smooth, color="C0")
            ax.set(title=title, xlabel="GRPO step")
        fig.tight_layout()
        fig.savefig(out / "grpo.png", dpi=110)
        plt.close(fig)
        made.append("grpo.png")
    pref = [m for m in metrics if m.get("stage") == "rm" or str(m.get("stage")).startswith("mpo/")]
    if pref:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3))
        rm = [m for m in pref if m["stage"] == "rm"]
        if rm:
            axes[0].plot([m["loss"] for m in rm], label="pairwise loss")
            axes[0].plot([m["pair_accuracy"] for m in rm], label="pair accuracy (batch)")
            axes[0].set(title="Reward model", xlabel="step")
            axes[0].legend(fontsize=7)
        mpo = [m for m in pref if m["stage"] != "rm"]
        if mpo:
            for key in ("dpo", "bco", "nll", "preferred"):
                axes[1].plot([m[key] for m in mpo], label=key)
            axes[1].set(title="MPO (rounds in order)", xlabel="step")
            axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "preference.png", dpi=110)
        plt.close(fig)
        made.append("preference.png")
    order = stage_order(results)
    if order:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        bars = [("visual", "accuracy", "visual test"), ("text", "accuracy", "text test")]
        if any("hallucination" in results["stages"][s]["eval"].get("visual", {}) for s in order):
            bars.append(("visual", "hallucination", "visual: hallucination"))
        w = 0.8 / len(bars)
        for j, (kind, key, label) in enumerate(bars):
            vals = [results["stages"][s]["eval"].get(kind, {}).get(key, float("nan")) * 100 for s in order]
            ax.bar([i + (j - (len(bars) - 1) / 2) * w for i in range(len(order))], vals, width=w, label=label)
        ax.set_xticks(range(len(order)), order, rotation=30, fontsize=8)
        ax.set(ylabel="%", ylim=(0, 100), title="Held-out accuracy (and hallucination) by stage")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=110)
        plt.close(fig)
        made.append("accuracy.png")
    return made


def write(run: str | Path) -> Path:
    run = Path(run)
    results = json.loads((run / "results.json").read_text())
    metrics = read_metrics(run)
    images = plots(run, results, metrics)
    st = results["stages"]
    lines = [f"# R1V recipe report: `{run.name}`", "",
             f"Config: `{run / 'recipe.yaml'}`. Every number below comes from `results.json` and `metrics.jsonl` in "
             "this folder; held-out scores are greedy, scored by the task's own scorer.", ""]
    cfg = _recipe(run)
    lines += claims(run, results, cfg)
    lines += ["## Held-out accuracy by stage", "",
              "| stage | visual test | visual: hallucination | text-only test | visual: mean tokens | time (s) | "
              "peak RSS (MB) |", "|---|---|---|---|---|---|---|"]
    for s in stage_order(results):
        e = st[s]["eval"]
        cells = []
        for kind in ("visual", "text"):
            if kind in e:
                p, n = e[kind]["accuracy"], e[kind]["n"]
                cells.append(f"{100 * p:.1f}% ± {100 * half_width(p, n):.1f} (n={n})")
            else:
                cells.append("-")
        h = e.get("visual", {}).get("hallucination")
        hall = f"{100 * h:.1f}% ± {100 * half_width(h, e['visual']['hallucination_n']):.1f}" if h is not None else "-"
        tok = e.get("visual", {}).get("mean_tokens", "-")
        lines.append(f"| {s} | {cells[0]} | {hall} | {cells[1]} | {tok} | {st[s].get('seconds', '-')} | "
                     f"{st[s].get('peak_rss_mb', '-')} |")
    lines += ["", "± is a 95% normal interval. Hallucination: the share of outputs stating a visual fact the "
              "scene contradicts (the task's `hallucinated`; R1V2's Table 3 tracks it by stage).", ""]
    fams = sorted({f for s in stage_order(results) for f in st[s]["eval"].get("visual", {}).get("by", {})
                   .get("family", {})})
    if fams:
        lines += ["Visual test accuracy by family:", "", "| stage | " + " | ".join(fams) + " |",
                  "|---|" + "---|" * len(fams)]
        for s in stage_order(results):
            fam = st[s]["eval"].get("visual", {}).get("by", {}).get("family", {})
            lines.append(f"| {s} | " + " | ".join(f"{100 * fam[f]:.0f}%" if f in fam else "-" for f in fams) + " |")
        lines.append("")
    if "align" in st and "transfer" in st and "eval" in st["align"] and "eval" in st["transfer"]:
        a, t = st["align"]["eval"].get("visual", {}), st["transfer"]["eval"].get("visual", {})
        lines += ["## Transfer (the paper: substitute 64.0 -> re-assembled 60.2 MMMU)", "",
                  f"Substitute model after alignment: **{100 * a.get('accuracy', 0):.1f}%** on the visual test; "
                  f"re-assembled with the reasoning LLM, before any further training: "
                  f"**{100 * t.get('accuracy', 0):.1f}%**.", ""]
    sft_rows = [s for s in stage_order(results) if s.startswith("sft/m") and s != "sft/m0"]
    if sft_rows:
        lines += ["## Iterative SFT", "", "| iteration | tau | lr | D_rm(tau) | E_{t-1} (of pool) | M_{t-1} on pool | "
                  "D_t |", "|---|---|---|---|---|---|---|"]
        for s in sft_rows:
            r = st[s]
            lines.append(f"| {s} | {r.get('tau')} | {r.get('lr')} | {r.get('d_rm')} | {r.get('mistakes')} "
                         f"({r.get('pool')}) | {100 * r.get('pool_accuracy', 0):.1f}% | {r.get('size')} |")
        lines.append("")
    lines += _r1v2_sections(st)
    ref = cfg.get("data", {}).get("reference_scores")
    if references(ref):
        lines += ["## Reference points", "", f"Accuracy of reference models on the same kind of problems "
                  f"(`data.reference_scores`: `{ref}`):", "", "| reference | accuracy |", "|---|---|"]
        lines += [f"| {k} | {100 * v['accuracy']:.1f}% |" for k, v in references(ref).items()] + [""]
    if results.get("data"):
        lines += ["## Data", "", "| file | rows |", "|---|---|"]
        lines += [f"| data.{k} | {n} |" for k, n in results["data"].items()] + [""]
    dist, folder = _distill_summary(cfg.get("data", {}).get("sft"))
    if dist:
        from r1v.distill.report import table

        rel = os.path.relpath(folder, run)
        v = dist["verdicts"]
        lines += ["### D by AL-CoTD", "",
                  f"Repetition penalty P: mean {dist['penalty']['mean']} ({dist['penalty']['min']} to "
                  f"{dist['penalty']['max']}). Chains kept as the teacher wrote them: {v.get('kept', 0)}; "
                  + ", ".join(f"{k}: {n}" for k, n in v.items() if k != "kept")
                  + f". Teacher accuracy {100 * dist['teacher_accuracy']:.1f}%. Details: [{rel}/report.md]"
                    f"({rel}/report.md).", "", table(dist), "", f"![P and length]({rel}/penalty.png)", ""]
    last_sft = sft_rows[-1] if sft_rows else ("sft/m0" if "sft/m0" in st else None)
    if "grpo" in st and last_sft:
        g = paired_gap(run, last_sft, "grpo")
        r = st["grpo"]
        lines += ["## GRPO", ""]
        if g:
            verdict = "above" if g["lo"] > 0 else ("below" if g["hi"] < 0 else "not distinguishable from")
            lines.append(f"GRPO minus {last_sft} on the same {g['n']} visual test items: **{100 * g['gap']:+.1f} "
                         f"points** (95% paired interval {100 * g['lo']:+.1f} to {100 * g['hi']:+.1f}): {verdict} "
                         f"the last SFT iteration.")
        if "reward_first" in r:
            lines.append(f"Rollout reward {r['reward_first']:.3f} (first fifth of steps) -> {r['reward_last']:.3f} "
                         f"(last fifth); effective-sample ratio {r['effective_first']:.2f} -> "
                         f"{r['effective_last']:.2f}; {r.get('prompts')} prompts in D_rm(tau).")
        lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{i}](plots/{i})" for i in images] + [""]
    if results.get("example"):
        lines += ["## The final model on a test image", "", results["example"], ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
