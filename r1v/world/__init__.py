"""The mini-world: a miniature, fully offline world where every part of the R1V method is real and small.

    r1v world build          # data + tokenizer + base / substitute / reasoning LMs + vision encoder
    r1v world data           # the recipe's training files (D distilled by AL-CoTD)
    r1v world show           # a contact sheet of problems with their reasoning
    r1v world probe          # where a checkpoint loses the picture (encoder, projector, LLM input)

* `scenes.py`: four families of visual reasoning problems drawn with PIL from a seed (shapes,
  bars, expr, clock), their chains of thought and exact answers, and the same problems in words;
* `data.py`: disjoint train / val / test splits (by a hash of the content) and the JSONL rows
  the evaluation harness reads (`r1v eval run --bench world`);
* `lm.py`: the Qwen2 base LM, and from it the substitute (an instruct model: no think block, brief
  work in its answer) and the reasoning LM (`<think>` then `\\boxed{}`), as Qwen2.5-Instruct and
  R1-Distill-Qwen share Qwen2.5;
* `vit.py`: an InternViT-architecture encoder pretrained on the scenes, and its linear probe;
* `build.py`: the staged, resumable, deterministic build and its table; the default world's
  backbones ship pretrained in `backbones/` (with their provenance) and are copied, not trained,
  each wherever its stage's settings match;
* `prepare.py`: the recipe's files; `compare.py`: AL-CoTD beside fixed penalties;
  `probe.py`, `show.py`, `cli.py`.
"""
