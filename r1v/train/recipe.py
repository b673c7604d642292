"""The whole R1V recipe, by config: align -> transfer -> SFT (M0 + iterations) -> GRPO -> report.

    r1v recipe run recipes/tiny.yaml            # the mini-world, every stage, on a laptop CPU
    r1v recipe run recipes/tiny.yaml grpo.steps=20 --restart
    r1v recipe report runs/tiny

A finished stage is skipped, so an interrupted run resumes where it stopped (`--restart` starts
over), unless what it is made from changed since it started (`Context.inputs`: its settings, the
content of its backbones and data, the stage before it): then it runs again, as does every stage
after it, and the run says why. The run ends with the report (`runs/<name>/report.md`) and the
final model answering a held-out test image, its reasoning shown.
"""

from __future__ import annotations

import shutil
import time

from r1v.train.config import RecipeConfig
from r1v.train.context import Context

DIM, BOLD, RESET = "\033[2m", "\033[1m", "\033[0m"


def stage_module(name: str):
    from r1v.train import align, grpo, mpo, rm, sft, transfer

    return {"align": align, "transfer": transfer, "sft": sft, "rm": rm, "mpo": mpo, "grpo": grpo}[name]


def run(cfg: RecipeConfig, *, restart: bool = False, log=print) -> Context:
    from r1v.train.engine import processes

    state = processes()
    # --restart: the old run is moved aside, and deleted only once the new run's inputs pass their
    # checks; a mistyped path gives the run back as it was
    old = cfg.run_dir.with_name(cfg.run_dir.name + ".before-restart")
    moved = restart and state.is_main_process and cfg.run_dir.exists()
    if moved:
        shutil.rmtree(old, ignore_errors=True)
        cfg.run_dir.rename(old)
    state.wait_for_everyone()
    t0 = time.perf_counter()
    try:
        ctx = Context(cfg)
        if not ctx.main:  # under `accelerate launch`, one process speaks and writes the report
            log = lambda *a, **k: None  # noqa: E731
        notes = refresh(ctx, cfg.stages)
        ctx.check(cfg.stages)
    except BaseException:
        if moved:
            shutil.rmtree(cfg.run_dir, ignore_errors=True)
            old.rename(cfg.run_dir)
        raise
    if moved:
        shutil.rmtree(old)
    ctx.write_config()
    for note in notes:
        log(note)
    for stage in cfg.stages:
        if ctx.done(stage):
            log(f"{stage}: done, reused ({ctx.dir / stage})")
            if ctx.main:  # left when a run was killed between the stage's end and their removal
                shutil.rmtree(ctx.dir / "checkpoints" / stage, ignore_errors=True)
            continue
        log(f"{BOLD}{stage}{RESET} ...")
        ctx.begin(stage)
        stage_module(stage).run(ctx)
        log(progress_line(ctx))
    ctx.results["total_seconds"] = round(time.perf_counter() - t0, 1)
    ctx.save_results()
    ctx.metrics.close()
    if not ctx.main:
        return ctx
    ctx.results["example"] = answer_example(ctx)
    ctx.save_results()
    from r1v.train.report import write

    path = write(ctx.dir)
    log(summary_table(ctx))
    log(f"\nreport: {path}")
    return ctx


def refresh(ctx: Context, stages) -> list[str]:
    """Forget each of `stages` whose inputs changed since it started, so that it runs again rather than
    being reused or resumed, and every stage after the first that is to run (they would start from
    an older making of it). A finished stage made before r1v recorded its inputs is reused as it is,
    unless a backbone or data file it reads was written after it. The stages that are to run are
    checked (`Context.check`) before anything is forgotten.

    Returns what it found, stage by stage, for the caller to print once the run's inputs pass their
    checks (a file that cannot be read now, for a stage reused as it is, may be one a later stage
    needs, and then the run is refused with that file's error alone)."""
    notes = []
    for i, stage in enumerate(stages):
        diff = ctx.changed(stage)
        if diff is None:
            changed = [f"{k} (newer than the stage)" for k in ctx.newer_inputs(stage)] if ctx.done(stage) else []
            if ctx.done(stage) and not changed:
                notes.append(f"{stage}: made before r1v recorded what a stage is made from; reused as it is "
                             f"(--restart runs it again)")
        else:
            changed = [k for k, v in diff.items() if v != "missing"]
            missing = [k for k, v in diff.items() if v == "missing"]
            if missing and not changed and ctx.done(stage):  # deleted since (data cleaned up), or a typo
                notes.append(f"{stage}: {', '.join(missing)} cannot be read now; the stage is reused as it was made")
            elif missing:
                changed += missing  # the stage is to run: the check below names what is missing
        if changed:
            ctx.check(stages[i:], rerun=True)
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            after = ", and so does every stage after it" if stage != stages[-1] else ""
            notes.append(f"{stage}: {shown} changed since it {'ran' if ctx.done(stage) else 'started'}; it runs "
                         f"again from the start{after}")
            ctx.forget(stage)
            return notes
        if not ctx.done(stage):
            later = [s for s in stages[i + 1:] if ctx.done(s) or "inputs" in ctx.results["stages"].get(s, {})]
            if later:
                ctx.check(stages[i:], rerun=True)
                notes.append(f"{', '.join(later)}: made from an earlier {stage}, which runs first; they run again "
                             f"after it")
                ctx.forget(stage, itself=False)
            return notes
    return notes


def progress_line(ctx: Context) -> str:
    parts = []
    for s, r in ctx.results["stages"].items():
        if "eval" in r:
            e = r["eval"]
            parts.append(f"{s} " + " / ".join(f"{k} {100 * v['accuracy']:.1f}%" for k, v in e.items()))
    return f"{DIM}  " + "; ".join(parts[-3:]) + RESET


def summary_table(ctx: Context) -> str:
    from r1v.train.claims import stage_order

    rows = [f"\n{'stage':<10} {'visual':>8} {'text':>8} {'tokens':>7} {'seconds':>8}"]
    for s in stage_order(ctx.results):
        r = ctx.results["stages"][s]
        e = r["eval"]
        cell = [f"{100 * e[k]['accuracy']:.1f}%" if k in e else "-" for k in ("visual", "text")]
        rows.append(f"{s:<10} {cell[0]:>8} {cell[1]:>8} {e.get('visual', {}).get('mean_tokens', '-'):>7} "
                    f"{r.get('seconds', '-'):>8}")
    rows.append(f"total {ctx.results.get('total_seconds', '-')} s")
    return "\n".join(rows)


def answer_example(ctx: Context) -> str | None:
    """The last stage's model answers the first held-out test image; markdown for the report."""
    from r1v.train.claims import stage_order

    order = stage_order(ctx.results)
    if not order or not ctx.cfg.data.eval_visual:
        return None
    stage = order[-1]
    model, tok = ctx.load(stage)
    rows = ctx.rows("eval_visual")
    from r1v.chat import Chat

    chat = Chat(model, tok, max_tiles=ctx.cfg.model.max_tiles)
    row = rows[0]
    item = ctx.task.read_row(row, root=rows.root(0), source=rows.files[0])
    if not item.images:
        return None
    reply = chat.ask(ctx.task.prompt(item), images=[_image(item)], temperature=0, repetition_penalty=1.0,
                     max_new_tokens=ctx.cfg.eval.max_new_tokens)
    img = ctx.dir / "plots" / "example.png"
    img.parent.mkdir(exist_ok=True)
    _image(item).save(img)
    ok = ctx.task.score(item, reply.text).correct
    print(f"\n{BOLD}{stage} answers a test image{RESET} ({row['image']})\n{ctx.task.prompt(item)}\n"
          f"{DIM}{reply.reasoning}{RESET}\n{reply.answer}   (gold {item.answer}: {'right' if ok else 'wrong'})")
    return (f"![test image](plots/example.png)\n\n**{ctx.task.prompt(item)}**\n\n"
            f"Reasoning: *{reply.reasoning}*\n\nAnswer: `{reply.answer}` (gold `{item.answer}`, "
            f"{'right' if ok else 'wrong'}; model: `{stage}`, greedy)")


def _image(item):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(item.images[0])).convert("RGB")
