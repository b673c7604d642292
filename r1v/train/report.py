"""The run report: `runs/<name>/report.md` with its plots, from results.json and metrics.jsonl.

    r1v recipe report runs/tiny        # (re)write the report of a run, finished or not

Sections: the paper's claims checked on the run (`r1v/train/claims.py`, which also combines several runs:
`r1v recipe claims`), held-out accuracy per stage (visual and text-only, with 95% intervals), the transfer
row, the SFT iterations (D_rm, E_{t-1}), GRPO against the last SFT iteration (the paired gap and
its interval), response lengths, and the plots: loss curves, GRPO reward / accuracy / length /
effective-sample ratio, accuracy by stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from r1v.stats import half_width, paired_interval, pct, points
from r1v.train.claims import claims, outputs, paired_gap, recipe_of, references, stage_order


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


def _r1v2_sections(st: dict) -> list[str]:
    lines = []
    r = st.get("rm")
    if r and r.get("pairs_eval"):
        ev = r["pairs_eval"]
        lines += ["## Reward model", "", f"Trained on {r.get('pairs')} pairs ({r.get('ties_dropped', 0)} ties dropped); "
                  f"held-out pair accuracy **{pct(ev['accuracy'])}** (n={ev['n']}), mean margin {ev['margin']:.2f}."]
        phases = r.get("phases") or []
        if len(phases) > 1:  # rm.phases: say what each trained on
            kinds = lambda k: k if isinstance(k, str) else ", ".join(k)  # noqa: E731
            lines[-1] += " In phases: " + "; then ".join(
                f"{kinds(p['kinds'])} ({p['pairs']} pairs, {p['steps']} steps, lr {p['lr']:g})" for p in phases) + "."
        lines += ["", "| rejected kind | pair accuracy | n |", "|---|---|---|"]
        lines += [f"| {k} | {pct(v['accuracy'])} | {v['n']} |" for k, v in ev.get("by_kind", {}).items()] + [""]
    rounds = sorted((s for s in st if s.startswith("mpo/r") and "sampling" in st[s]), key=lambda s: int(s[5:]))
    if rounds:
        lines += ["## MPO rounds", "", "| round | prompts | pairs (share) | right over wrong / wrong over right | "
                  "samples: reward | accuracy | format | hallucination | loss (first -> last) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in rounds:
            m, loss = st[s]["sampling"], st[s].get("loss") or ["-", "-"]
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            sides = (f"{m['right_over_wrong']} / {m['wrong_over_right']}" if "right_over_wrong" in m else "-")
            lines.append(f"| {s} | {m['prompts']} | {m['pairs']} ({pct(m['pair_share'])}) | {sides} | "
                         f"{fmt(m['sample_reward'])} "
                         f"| {fmt(m['sample_accuracy'])} | {fmt(m['sample_format'])} | "
                         f"{fmt(m['sample_hallucination'])} | " + " -> ".join(
                             f"{x:.3f}" if isinstance(x, float) else str(x) for x in loss) + " |")
        lines += ["", f"A pair is a prompt's best sample against its worst, when the reward gap is at least "
                  f"{st[rounds[-1]].get('threshold')} (`mpo.threshold`). Right over wrong: pairs whose chosen sample "
                  "the task's scorer marks right and the rejected one wrong; the other pairs were ranked between two "
                  "answers equally right or wrong (by the reward model, format and facts).", ""]
    alarms = st.get("grpo", {}).get("hallucination_alarms")
    if alarms:
        lines += ["## Hallucination alarms (GRPO)", ""] + [
            f"- step {a['step']}: {pct(a['hallucination'])} above the ceiling {pct(a['ceiling'])}: {a['action']}"
            for a in alarms] + [""]
    return lines


def _grpo_section(run: Path, st: dict, cfg: dict, *, before: str) -> list[str]:
    """GRPO against the policy it started from; its effective shares, pool filter and, with
    eval_every, R1V3's candidates and the one chosen."""
    r, g_cfg, lines = st["grpo"], cfg.get("grpo", {}) or {}, ["## GRPO", ""]
    reward = ("rules only (accuracy + format)" if g_cfg.get("reward_model", "none") == "none" else
              f"hybrid: rules + {g_cfg.get('rm_weight')} x reward model ({g_cfg.get('rm_norm')}-normalised)")
    ssb = g_cfg.get("ssb", {}) or {}
    lines.append(f"Reward: {reward}. Selective Sample Buffer: " + (
        f"on ({ssb.get('when')}, target {ssb.get('target')}, at most {ssb.get('max_share')} of a step, "
        f"{ssb.get('size')} groups, {ssb.get('max_age')} steps old at most)." if ssb.get("enabled") else "off."))
    lines.append("")
    g = paired_gap(run, before, "grpo")
    if g:
        verdict = "above" if g["lo"] > 0 else ("below" if g["hi"] < 0 else "not distinguishable from")
        lines.append(f"GRPO minus {before} on the same {g['n']} visual test items: **{100 * g['gap']:+.1f} "
                     f"points** (95% paired interval {100 * g['lo']:+.1f} to {100 * g['hi']:+.1f}): {verdict} "
                     f"the model it started from.")
    if "reward_first" in r:
        trained = (f"; trained on after replay {r['effective_trained_first']:.2f} -> {r['effective_trained_last']:.2f}"
                   if "effective_trained_first" in r and ssb.get("enabled") else "")  # without SSB: the same
        lines.append(f"Rollout reward {r['reward_first']:.3f} (first fifth of steps) -> {r['reward_last']:.3f} "
                     f"(last fifth); effective-sample share of the fresh groups {r['effective_first']:.2f} -> "
                     f"{r['effective_last']:.2f}{trained}; {r.get('prompts')} prompts in the pool.")
    if r.get("filter"):
        f = r["filter"]
        lines.append(f"Pool filter (R1V2, offline): {f['kept']} of {f['filtered']} prompts kept ({f['all_wrong']} "
                     f"answered all wrong, {f['all_right']} all right, by the starting policy's G rollouts).")
    lines.append("")
    if r.get("candidates"):
        sel = r.get("selected", {})
        levels = {c["vs_last"]["level"] for c in r["candidates"] if c.get("vs_last", {}).get("level")}
        level = f"{100 * levels.pop():.1f}%" if len(levels) == 1 else "1 - 0.05/k for k earlier checkpoints"
        lines += ["### Checkpoint choice (R1V3: critical-token entropy)", "",
                  f"Critical tokens: `{g_cfg.get('critical')}`"
                  + (f" (the top {g_cfg.get('critical_share')} of reasoning tokens by entropy)"
                     if g_cfg.get("critical") == "forks" else "")
                  + f", on {r.get('probe_prompts')} probe prompts held out of the pool ({r.get('probe_rollouts', 4)} "
                  "rollouts each). "
                  + ("The last checkpoint is kept unless an earlier one's entropy is above it with the paired "
                     f"interval of the gap (probe prompts resampled) above 0. Each interval is at {level} (1 - 0.05/k "
                     "for k earlier checkpoints, Bonferroni), so noise moves the choice off the last at most 2.5% of "
                     "the time (one-sided). `r1v train grpo-probe` redraws the probe at other seeds." if sel.get("test")
                     else
                     "The highest entropy was chosen (the rule before its noise test: this run records none)."), "",
                  "| step | critical-token entropy (nats) | minus the last's (interval) | probe accuracy "
                  "| visual test | hallucination | |", "|---|---|---|---|---|---|---|"]
        for c in r["candidates"]:
            mark = "chosen" if c["step"] == sel.get("step") else ("last" if c is r["candidates"][-1] else "")
            fmt = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
            ent = "-" if c["critical_entropy"] is None else f"{c['critical_entropy']:.4f}"
            v = c.get("vs_last")
            gap = f"{v['gap']:+.4f} ({v['lo']:+.4f} to {v['hi']:+.4f})" if v else "-"
            lines.append(f"| {c['step']} | {ent} | {gap} | {fmt(c.get('probe_accuracy'))} | {fmt(c.get('accuracy'))} "
                         f"| {fmt(c.get('hallucination'))} | {mark} |")
        if sel and sel.get("step") != sel.get("last"):
            g = paired_gap(run, f"grpo@{sel['last']}", "grpo")
            if g:
                lines += ["", f"Chosen (step {sel['step']}) minus last (step {sel['last']}): {100 * g['gap']:+.1f} "
                          f"points ({100 * g['lo']:+.1f} to {100 * g['hi']:+.1f}, paired, n={g['n']})."]
        lines.append("")
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
        panels = [("reward", "reward"), ("accuracy", "accuracy (rollouts)"), ("length", "response length (tokens)"),
                  ("effective", "effective-sample share")]
        if any("critical_entropy" in m for m in grpo):
            panels.append(("critical_entropy", "critical-token entropy (nats)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3))
        for ax, (key, title) in zip(axes, panels):
            series = [(key, "C0", "fresh groups" if key == "effective" else None)]
            if key == "effective" and any(m.get("replayed") for m in grpo):
                series.append(("effective_trained", "C1", "after SSB's replay"))
            for k_, color, label in series:
                pts = [(m["step"], m[k_]) for m in grpo if m.get(k_) is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, alpha=0.35, color=color)
                k = max(1, len(ys) // 10)
                smooth = [sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1])
                          for i in range(len(ys))]
                ax.plot(xs, smooth, color=color, label=label)
            if len(series) > 1:
                ax.legend(fontsize=7)
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
             "Config: `recipe.yaml`. Every number below comes from `results.json` and `metrics.jsonl` in "
             "this folder (the report's pictures are in `plots/`: the folder can be moved whole); held-out scores "
             "are greedy, scored by the task's own scorer.", ""]
    cfg = recipe_of(run)
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
        lines += ["Visual test accuracy by family (in brackets: the family's hallucination rate, where known):", "",
                  "| stage | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
        for s in stage_order(results):
            v = st[s]["eval"].get("visual", {})
            fam, hal = v.get("by", {}).get("family", {}), v.get("hallucination_by", {}).get("family", {})
            lines.append(f"| {s} | " + " | ".join(
                (f"{100 * fam[f]:.0f}%" + (f" ({100 * hal[f]:.0f}%)" if f in hal else "")) if f in fam else "-"
                for f in fams) + " |")
        lines.append("")
    if "align" in st and "transfer" in st and "eval" in st["align"] and "eval" in st["transfer"]:
        a, t = st["align"]["eval"].get("visual", {}), st["transfer"]["eval"].get("visual", {})
        lines += ["## Transfer (the paper: substitute 64.0 -> re-assembled 60.2 MMMU)", "",
                  f"Substitute model after alignment: **{100 * a.get('accuracy', 0):.1f}%** on the visual test; "
                  f"re-assembled with the reasoning LLM, before any further training: "
                  f"**{100 * t.get('accuracy', 0):.1f}%**.", ""]
        norms = st["align"].get("token_norms") or {}
        if norms.get("words"):
            ratio = norms["visual"] / norms["words"]
            lines += [f"The aligned projector's visual tokens have a median norm of {norms['visual']:.2f}, "
                      f"{ratio:.1f} times the words' input embeddings ({norms['words']:.2f}): a pre-norm LLM "
                      f"barely changes tokens much longer than its words from layer to layer (arXiv 2512.08374).",
                      ""]
    sft_rows = [s for s in stage_order(results) if s.startswith("sft/m") and s != "sft/m0"]
    if sft_rows:
        lines += ["## Iterative SFT", "", "| iteration | tau | lr | D_rm(tau) | E_{t-1} (of pool) | M_{t-1} on pool | "
                  "D_t |", "|---|---|---|---|---|---|---|"]
        for s in sft_rows:
            r = st[s]
            lines.append(f"| {s} | {r.get('tau')} | {r.get('lr')} | {r.get('d_rm')} | {r.get('mistakes')} "
                         f"({r.get('pool')}) | {100 * r.get('pool_accuracy', 0):.1f}% | {r.get('size')} |")
        lines += ["", "D_rm(tau): the rows of D that the reward model scores tau or more. Pool: the rows of D that "
                  "M_{t-1} answers (`sft.mistake_pool`); E_{t-1}: those it answers wrongly. D_t = D_rm(tau) together "
                  "with E_{t-1}, each row once (a mistake already in D_rm is not counted twice).", ""]
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

        # The plot is copied into the run and the details named by absolute path, so the report
        # still reads whole when the run folder is moved or shared without the cache beside it.
        plot = ""
        if (folder / "penalty.png").exists():
            (run / "plots").mkdir(exist_ok=True)
            shutil.copyfile(folder / "penalty.png", run / "plots" / "distill-penalty.png")
            plot = "![P and length](plots/distill-penalty.png)"
        v = dist["verdicts"]
        lines += ["### D by AL-CoTD", "",
                  f"Repetition penalty P: mean {dist['penalty']['mean']} ({dist['penalty']['min']} to "
                  f"{dist['penalty']['max']}). Chains kept as the teacher wrote them: {v.get('kept', 0)}; "
                  + ", ".join(f"{k}: {n}" for k, n in v.items() if k != "kept")
                  + f". Teacher accuracy {100 * dist['teacher_accuracy']:.1f}%. Details: "
                    f"`{folder.resolve() / 'report.md'}`.", "", table(dist), "", plot, ""]
    last_sft = sft_rows[-1] if sft_rows else ("sft/m0" if "sft/m0" in st else None)
    if "grpo" in st:
        lines += _grpo_section(run, st, cfg, before=last_sft or next(
            (s for s in reversed(stage_order(results)) if s.startswith("mpo/")), "transfer"))
    if images:
        lines += ["## Plots", ""] + [f"![{i}](plots/{i})" for i in images] + [""]
    if results.get("example"):
        lines += ["## The final model on a test image", "", results["example"], ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------- runs side by side
def st_of(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["stages"]


def last_outputs(run: Path, stage: str, st: dict) -> str:
    """The stage name whose outputs are the last checkpoint's: `grpo@<last>` when a rule chose an
    earlier one, else the stage itself."""
    sel = st.get(stage, {}).get("selected")
    if sel and sel.get("step") != sel.get("last") and outputs(run, f"{stage}@{sel['last']}"):
        return f"{stage}@{sel['last']}"
    return stage


def compare(runs: list[str | Path], out: str | Path) -> Path:
    """`r1v recipe compare BASELINE RUN ...`: the GRPO stage of several runs on the same held-out files
    (e.g. GRPO with and without SSB, with and without the reward model): accuracy and hallucination,
    each run minus the first as a 95% paired interval, the effective-sample shares, and the plot of
    the effective share over steps. Writes OUT/compare.md and OUT/effective.png."""
    from r1v.errors import R1VError

    runs = [Path(r) for r in runs]
    for r in runs:
        if not (r / "results.json").exists():
            raise R1VError(f"{r} holds no results.json: not a recipe run folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base, stage = runs[0], "grpo"
    base_last = last_outputs(base, stage, st_of(base))
    rows, curves = [], {}
    for r in runs:
        st = json.loads((r / "results.json").read_text())["stages"]
        if stage not in st or "eval" not in st[stage]:
            raise R1VError(f"{r} has no finished {stage} stage")
        cfg = recipe_of(r).get(stage) or {}
        ev = st[stage]["eval"].get("visual", {})
        ca, cb = outputs(base, stage), outputs(r, stage)
        g = paired_interval(ca, cb) if r != base and ca and cb else None
        fb, fr = outputs(base, stage, key="hallucinated"), outputs(r, stage, key="hallucinated")
        h = (paired_interval({k: float(v) for k, v in fb.items()}, {k: float(v) for k, v in fr.items()})
             if fb and fr and r != base else None)
        s = st[stage]
        parts = [("reward model" if cfg.get("reward_model", "none") != "none" else "rules"),
                 ("SSB" if (cfg.get("ssb") or {}).get("enabled") else "no SSB")]
        if cfg.get("filter_pool"):
            parts.append("pool filter")
        sel = s.get("selected")
        # the last checkpoint too, when a rule chose another one (its outputs were kept as grpo@<last>)
        lb = last_outputs(r, stage, st)
        gl = paired_interval(outputs(base, base_last), outputs(r, lb)) if r != base else None
        acc_last = sum(outputs(r, lb).values()) / max(1, len(outputs(r, lb)))
        rows.append((r, " + ".join(parts), ev, g, h, s, sel, acc_last, gl))
        curves[r.name] = [m for m in read_metrics(r) if m.get("stage") == stage]
    lines = [f"# {stage}: runs side by side", "",
             f"Every run minus `{base}` on the same held-out visual items (95% paired intervals). Made by "
             f"`r1v recipe compare {' '.join(str(r) for r in runs)} --out {out}`.", "",
             "| run | reward, buffer | visual test | minus the first | hallucination | minus the first | "
             "effective share, fresh (first -> last fifth) | after replay | chosen checkpoint | the last checkpoint | "
             "minus the first's last |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r, parts, ev, g, h, s, sel, acc_last, gl in rows:
        acc = (f"{100 * ev['accuracy']:.1f}% ± {100 * half_width(ev['accuracy'], ev['n']):.1f} (n={ev['n']})"
               if ev else "-")
        gap = "-" if r == base or not g else points(g, unit="")
        hal = f"{100 * ev['hallucination']:.1f}%" if ev.get("hallucination") is not None else "-"
        hgap = "-" if not h else points(h, unit="")
        eff = f"{s['effective_first']:.2f} -> {s['effective_last']:.2f}" if "effective_first" in s else "-"
        trained = (f"{s['effective_trained_first']:.2f} -> {s['effective_trained_last']:.2f}"
                   if "effective_trained_first" in s else "-")
        chosen = "-" if not sel else f"step {sel['step']} of {sel['last']}"
        glast = "-" if not gl else points(gl, unit="")
        lines.append(f"| `{r}` | {parts} | {acc} | {gap} | {hal} | {hgap} | {eff} | {trained} | {chosen} | "
                     f"{100 * acc_last:.1f}% | {glast} |")
    lines += ["", "Effective share: the groups whose rewards differ (non-zero advantages); after replay: the "
              "share of the groups trained on, buffered ones included (R1V2: below 40% without SSB, above 60% "
              "with it).", "", "![effective share](effective.png)", ""]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, (name, ms) in enumerate(curves.items()):
        for key, style in (("effective", "-"), ("effective_trained", "--")):
            pts = [(m["step"], m[key]) for m in ms if m.get(key) is not None]
            if not pts or (key == "effective_trained" and not any(m.get("replayed") for m in ms)):
                continue
            xs, ys = zip(*pts)
            w = max(1, len(ys) // 8)
            smooth = [sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1]) for i in range(len(ys))]
            ax.plot(xs, smooth, style, color=f"C{k}", label=f"{name}" + (" (after replay)" if style == "--" else ""))
    ax.axhline(0.6, color="grey", lw=0.5)
    ax.axhline(0.4, color="grey", lw=0.5, ls=":")
    ax.set(xlabel=f"{stage} step", ylabel="effective-sample share", ylim=(0, 1.02),
           title="Groups with non-zero advantages (moving mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "effective.png", dpi=110)
    plt.close(fig)
    path = out / "compare.md"
    path.write_text("\n".join(lines))
    return path
