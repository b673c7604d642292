"""r1v: build, train, evaluate and serve Skywork-R1V-style multimodal reasoning models.

Where things live:
    r1v/model/      builders, tokenizer, processor (tiling), chat templates, checkpoints
    r1v/chat.py     the chat API (single / multi-image, multi-turn, streaming, batched)
    r1v/evaluate/   benchmarks (readers, prompts, official scorers), eval runs, reports, leakage
    r1v/cli.py      the `r1v` command
"""

__version__ = "0.1.0"
