"""The R1V training recipe (Skywork R1V report; `../shared/docs/method.md`), one module per stage.

    r1v recipe run recipes/tiny.yaml          # every stage on the mini-world, then runs/tiny/report.md
    r1v train align|transfer|sft|grpo --config RECIPE

* `align.py`: Stage 0a, the projector against the frozen substitute LLM (three passes);
* `transfer.py`: Stage 0b, the projector re-assembled with the reasoning LLM and its tokenizer;
* `sft.py`: Stages 1-2, M0 and the iterations on D_rm(tau_t) u E_{t-1};
* `grpo.py`: Stage 3, GRPO with rule rewards, the prompt shared across its group;
* `rewards.py`: rewards, the mini-world's reward-model rubric, D_rm(tau) and E_{t-1} (pure functions);
* `config.py` (typed settings, YAML, overrides), `context.py` (run folder, backbones, data, held-out
  scoring), `samples.py` (tokenised rows, cached vision features, packing), `loop.py` (the supervised
  loop), `rollout.py` (batched generation), `world_data.py` (the mini-world's stage data),
  `recipe.py` (the runner), `report.py` (report.md and plots), `cli.py`.
"""
