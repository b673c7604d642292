"""The R1V training recipe (Skywork R1V report; `../shared/docs/method.md`), one module per stage.

    r1v recipe run recipes/tiny.yaml          # every stage on the mini-world's files, then runs/tiny/report.md
    r1v train align|transfer|sft|rm|mpo|grpo|grpo-filter|grpo-probe --config RECIPE
    accelerate launch --config_file recipes/accelerate/fsdp.yaml -m r1v recipe run RECIPE

* `align.py`: Stage 0a, the projector against the frozen substitute LLM (three passes);
* `transfer.py`: Stage 0b, the projector re-assembled with the reasoning LLM and its tokenizer;
* `sft.py`: Stages 1-2, M0 and the iterations on D_rm(tau_t) u E_{t-1};
* `rm.py`, `mpo.py`: R1V2's reward model and Mixed Preference Optimization (`rm_cli.py`: `r1v rm`);
* `grpo.py`: Stage 3, GRPO with rule rewards (R1V2: plus the reward model), the prompt shared across
  its group; the offline pool filter; `ssb.py`: R1V2's Selective Sample Buffer; `critical.py`: R1V3's
  critical-token entropy and checkpoint choice;
* `data.py`: rows streamed from JSONL shards, encoded in DataLoader workers, step by step; the
  bounded feature cache;
* `engine.py`: accelerate, once per stage (prepare, forwards, gathered saves, generation) and the
  mid-stage checkpoints that `recipe run` resumes from;
* `config.py` (the recipe's typed settings), `context.py` (run folder, backbones, data files, held-out
  scoring), `samples.py` (a row tokenised and tiled, packing), `loop.py` (the supervised loop, metrics
  and trackers), `rollout.py` (batched generation), `recipe.py` (the runner), `report.py` (report.md
  and plots), `cli.py`.

Rewards are `r1v/rewards.py`'s pure functions. The package never imports the mini-world: the world
writes files (`r1v world data`) that `recipes/tiny.yaml` names.
"""
