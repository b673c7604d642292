"""Tokenizers: the special tokens an R1V model needs, on any tokenizer, and a tiny one.

An R1V tokenizer carries the image tokens (`<img>`, `</img>`, `<IMG_CONTEXT>`), the chat
template's turn markers and `<think>` / `</think>`. transformers' InternVLProcessor reads
the image tokens from named attributes (`start_image_token`, `end_image_token`,
`context_image_token`, `video_token`), which `add_r1v_tokens` sets, so an official
Skywork tokenizer (which has the tokens but not the names) works unchanged.

`tiny_tokenizer()` is a byte-level BPE with no merges (256 byte symbols + the specials):
it round-trips any text, needs no training and no download, and is what the `tiny`
preset and the tests use. `train_bpe_tokenizer(texts, vocab_size=...)` learns merges on a
corpus (the mini-world's tokenizer), still byte-level, so it round-trips any text too.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from r1v.model import templates as T

IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
PAD = "<｜▁pad▁｜>"
# Specials of both templates, so one tokenizer can serve either.
TEMPLATE_TOKENS = [T.BOS, T.EOS, T.USER, T.ASSISTANT, T.IM_START, T.IM_END]
THINK_TOKENS = [T.THINK_OPEN, T.THINK_CLOSE]


def add_r1v_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the R1V tokens `tokenizer` lacks to its vocabulary; returns how many were new."""
    before = len(tokenizer)
    vocab = tokenizer.get_vocab()
    specials = [t for t in [*TEMPLATE_TOKENS, *IMAGE_TOKENS.values(), PAD] if t not in vocab]
    if specials:
        tokenizer.add_special_tokens({"extra_special_tokens": specials}, replace_extra_special_tokens=False)
    # `<think>` stays a normal token, so it survives skip_special_tokens decoding.
    tokenizer.add_tokens([t for t in THINK_TOKENS if t not in vocab])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD
    return len(tokenizer) - before


GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _declared_class(path: str) -> str | None:
    import json
    from pathlib import Path

    cfg = Path(path) / "tokenizer_config.json"
    try:
        return json.loads(cfg.read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        return None


TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",), ("vocab.txt",))


def load_tokenizer(path: str, **kwargs) -> PreTrainedTokenizerBase:
    """Load a tokenizer from `path` with the R1V tokens and their InternVLProcessor names."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from r1v.errors import R1VError

    folder = Path(path)
    if folder.is_dir() and not any(all((folder / f).is_file() for f in files) for files in TOKENIZER_FILES):
        raise R1VError(f"{folder} has no tokenizer: it needs tokenizer.json (or vocab.json + merges.txt, or "
                       f"tokenizer.model); copy the tokenizer files from the model it came from")

    # Named tokens given at load time become "model-specific special tokens" in transformers
    # v5: attributes (`tok.context_image_token`, `..._id`) that are saved with the tokenizer.
    cls = AutoTokenizer
    if _declared_class(path) in GENERIC_CLASSES:
        # transformers v5's AutoTokenizer swaps in the tokenizer class registered for the folder's
        # model type (a `qwen2` config.json gets Qwen2Tokenizer, which rebuilds the pre-tokenizer with
        # Qwen's regex), ignoring a tokenizer.json saved by the generic class. Such a file (the mini-
        # world's trained BPE) is loaded as saved.
        cls = PreTrainedTokenizerFast
    tok = cls.from_pretrained(path, **{**IMAGE_TOKENS, **kwargs})
    add_r1v_tokens(tok)
    return tok


def tiny_tokenizer(template: str = "r1v") -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (no merges) with the R1V specials, for tiny models and tests."""
    from tokenizers import pre_tokenizers

    byte_symbols = list(pre_tokenizers.ByteLevel.alphabet())
    return _wrap(_byte_level({s: i for i, s in enumerate(sorted(byte_symbols))}, [], use_regex=False), template)


def train_bpe_tokenizer(texts, *, vocab_size: int, template: str = "r1v") -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts`, with the R1V specials.

    Every byte is in the vocabulary, so any text round-trips; frequent words and numbers of
    the corpus become single tokens (GPT-2's split: a number is never merged with a word).
    Training is deterministic: the same texts give the same vocabulary and merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    return _wrap(core, template)


def _byte_level(vocab: dict, merges: list, *, use_regex: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    core.decoder = decoders.ByteLevel()
    return core


def _wrap(core, template: str) -> PreTrainedTokenizerFast:
    tmpl = T.get_template(template)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=T.BOS if template == "r1v" else None,
        eos_token=tmpl.stop,
        pad_token=PAD,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        **IMAGE_TOKENS,
    )
    add_r1v_tokens(tok)
    tok.chat_template = tmpl.jinja
    return tok
