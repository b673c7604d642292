"""AL-CoTD (Adaptive-Length Chain-of-Thought Distillation, Skywork R1V) as a data tool.

    scores.py   QDAM and VTIA scores (clarity computed here; the rest by a judge or the rules), DRLC's penalty
    models.py   the teacher and the judge: a local checkpoint (batched) or an OpenAI-compatible endpoint
    judge.py    the judge's fixed prompts, strict JSON replies, verdicts, revisions, 0..5 scores
    run.py      the pipeline, resumable: scores -> penalties -> chains -> checks -> revisions -> data.jsonl
    report.py   P and reasoning length against difficulty
    compare.py  AL-CoTD beside fixed penalties on the mini-world, with models trained on each
    cli.py      `r1v distill`
"""
