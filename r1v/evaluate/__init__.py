"""Evaluation: MMMU, MathVista, MATH-500, AIME 2024 and GPQA, scored as their authors score them.

    tasks/       one module per benchmark: reader, prompt, official scorer (the RL reward reuses it)
    answers.py   the think rules and `\\boxed{}` extraction, shared by every scorer
    verify.py    math-verify under a hard time bound (worker processes)
    run.py       `r1v eval run` / `r1v eval score`: records, resumption, summary
    generate.py  batched in-process generation, or an OpenAI-compatible endpoint (endpoint.py)
    judge.py     optional LLM-judge answer extraction
    report.py    `r1v eval report`: the papers' table and a bar chart
    leakage.py   `r1v eval leakage`: benchmark questions found in training data
    examples.py  made-up rows in every published format (`r1v eval examples`)
    cli.py       the `r1v eval` command
"""
