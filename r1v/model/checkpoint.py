"""Checkpoints: the official Skywork R1V layout and transformers' InternVL layout, both ways.

Official layout (Skywork-R1V / R1V2 / R1V3, `../shared/docs/formats.md`): config.json with
`llm_config` / `vision_config`, safetensors with `vision_model.` / `mlp1.` / `language_model.`
keys and a fused `attn.qkv`. transformers layout ("hf"): an `InternVLForConditionalGeneration`
directory that `AutoModelForImageTextToText` and `AutoProcessor` load as is.

* `load_model(path)` loads either layout natively: no trust_remote_code, the official one
  converted tensor by tensor on the fly into a model built on the meta device (one copy).
* `convert(src, dst, to="hf"|"skywork")` streams shard by shard: it never holds more than
  one output shard (plus a split qkv awaiting its pieces), so a 38B model converts in a few
  GB of memory. `--to skywork` writes what vLLM's SkyworkR1VChatModel loads.

    r1v convert SRC DST --to hf|skywork [--dtype bf16] [--max-shard-size 5GB]

Decisions:
* Pickle (`.bin`) weights are refused unless `allow_pickle=True`; even then they are read
  with `torch.load(weights_only=True)`.
* ps_version "v1" is honoured by r1v (see builder.apply_ps_version) and kept in config.json;
  stock transformers only implements "v2", so a v1 model exported `--to hf` is exact under
  r1v and warned about for plain transformers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from r1v.errors import R1VError

log = logging.getLogger(__name__)

SKYWORK_TYPES = {"skywork_chat", "internvl_chat"}
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}

# ------------------------------------------------------------------- tensor names
# (official prefix, transformers prefix); the first match wins, in both directions.
_PREFIXES = [
    ("vision_model.embeddings.class_embedding", "model.vision_tower.embeddings.cls_token"),
    ("vision_model.embeddings.position_embedding", "model.vision_tower.embeddings.position_embeddings"),
    ("vision_model.embeddings.patch_embedding.", "model.vision_tower.embeddings.patch_embeddings.projection."),
    ("vision_model.encoder.layers.", "model.vision_tower.encoder.layer."),
    ("mlp1.0.", "model.multi_modal_projector.layer_norm."),
    ("mlp1.1.", "model.multi_modal_projector.linear_1."),
    ("mlp1.3.", "model.multi_modal_projector.linear_2."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
]
# Inside a vision layer ("<N>.<rest>"): (official, transformers).
_LAYER_PARTS = [
    ("attn.proj.", "attention.projection_layer."),
    ("attn.q_norm.", "attention.q_norm."),
    ("attn.k_norm.", "attention.k_norm."),
    ("ls1", "lambda_1"),
    ("ls2", "lambda_2"),
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("mlp.", "mlp."),
]
_VISION_LAYER = {"skywork": "vision_model.encoder.layers.", "hf": "model.vision_tower.encoder.layer."}
_QKV = re.compile(r"^(?P<layer>\d+)\.attn\.qkv\.(?P<kind>weight|bias)$")
_QKV_SPLIT = re.compile(r"^(?P<layer>\d+)\.attention\.(?P<which>[qkv])_proj\.(?P<kind>weight|bias)$")


def _swap(pairs, to: str):
    return pairs if to == "hf" else [(b, a) for a, b in pairs]


def rename(key: str, to: str) -> str:
    """Map one tensor name to the `to` layout ("hf" or "skywork"); fused qkv is not handled here."""
    for src, dst in _swap(_PREFIXES, to):
        if key == src or (src.endswith(".") and key.startswith(src)):
            rest = key[len(src):]
            if src in _VISION_LAYER.values():
                layer, _, part = rest.partition(".")
                for a, b in _swap(_LAYER_PARTS, to):
                    if part.startswith(a):
                        return f"{dst}{layer}.{b}{part[len(a):]}"
                raise R1VError(f"unexpected tensor in a vision layer: {key}")
            return dst + rest
    raise R1VError(f"unexpected tensor name {key!r}: not part of an R1V checkpoint")


class TensorMapper:
    """Streams (name, tensor) pairs from one layout to the other.

    To hf, a fused `attn.qkv` splits into q/k/v rows [0:d], [d:2d], [2d:3d]. To skywork, the
    three pieces are buffered until all have been seen (they may sit in different shards),
    then fused. `finish()` raises if a piece never came.
    """

    def __init__(self, to: str, dtype: torch.dtype | None = None, source: str | None = None):
        if to not in ("hf", "skywork"):
            raise R1VError(f"--to must be 'hf' or 'skywork', not {to!r}")
        self.to, self.dtype, self.pending = to, dtype, {}
        self.same = source == to  # same layout: only re-shard and cast

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if self.dtype is not None and t.is_floating_point() else t

    def feed(self, key: str, tensor: torch.Tensor):
        if self.same:
            yield key, self._cast(tensor)
            return
        src_layer = _VISION_LAYER["skywork" if self.to == "hf" else "hf"]
        rest = key[len(src_layer):] if key.startswith(src_layer) else None
        if self.to == "hf" and rest and (m := _QKV.match(rest)):
            d = tensor.shape[0] // 3
            for i, which in enumerate("qkv"):
                name = f"{_VISION_LAYER['hf']}{m['layer']}.attention.{which}_proj.{m['kind']}"
                yield name, self._cast(tensor[i * d:(i + 1) * d].clone())
            return
        if self.to == "skywork" and rest and (m := _QKV_SPLIT.match(rest)):
            slot = self.pending.setdefault((m["layer"], m["kind"]), {})
            slot[m["which"]] = tensor
            if len(slot) == 3:
                del self.pending[(m["layer"], m["kind"])]
                name = f"{_VISION_LAYER['skywork']}{m['layer']}.attn.qkv.{m['kind']}"
                yield name, self._cast(torch.cat([slot["q"], slot["k"], slot["v"]], 0))
            return
        yield rename(key, self.to), self._cast(tensor)

    def finish(self) -> None:
        if self.pending:
            (layer, kind), got = next(iter(self.pending.items()))
            raise R1VError(
                f"vision layer {layer} {kind}: found only {sorted(got)} of the q/k/v projections; "
                f"a shard is missing or the checkpoint is incomplete"
            )


# ------------------------------------------------------------------- reading a directory
@dataclass
class Source:
    path: Path
    layout: str  # "hf" | "skywork"
    config: dict
    weight_files: list[Path]


def inspect(path: str | os.PathLike, *, allow_pickle: bool = False) -> Source:
    """Identify a checkpoint directory's layout and check that every weight file is there."""
    p = Path(path)
    if not p.exists():
        raise R1VError(f"model directory not found: {p}")
    if not p.is_dir():
        raise R1VError(f"a model must be a directory (config.json + weights), not a file: {p}")
    cfg_file = p / "config.json"
    if not cfg_file.exists():
        raise R1VError(f"no config.json in {p}: not a model directory")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise R1VError(f"config.json in {p} is not valid JSON: {e}") from None
    model_type = config.get("model_type")
    if model_type in SKYWORK_TYPES or "llm_config" in config:
        layout = "skywork"
    elif model_type == "internvl":
        layout = "hf"
    else:
        raise R1VError(f"{p} holds a {model_type!r} model, not an R1V (skywork_chat) or InternVL checkpoint")
    return Source(p, layout, config, _weight_files(p, allow_pickle))


def _weight_files(p: Path, allow_pickle: bool) -> list[Path]:
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index, one = p / index_name, p / single
        if not index.exists() and not one.exists():
            continue
        if single.endswith(".bin") and not allow_pickle:
            raise R1VError(
                f"{p} holds pickle (.bin) weights, which can run code when loaded; "
                f"pass --allow-pickle if you trust it, or use a safetensors checkpoint"
            )
        if not index.exists():
            return _whole([one])
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise R1VError(f"{index} is not a valid shard index ({e})") from None
        files = sorted({p / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise R1VError(f"{p}: shard(s) listed in {index_name} are missing: {', '.join(missing[:5])}")
        return _whole(files)
    raise R1VError(f"no weights in {p} (expected model.safetensors or a shard index)")


def _whole(files: list[Path]) -> list[Path]:
    """The files, after checking that each safetensors file is as long as its header says (reading
    only the header): a truncated or damaged shard is named now, not deep inside a load."""
    for f in files:
        if f.suffix != ".safetensors":
            continue
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
        except (OSError, ValueError):
            header = None
        if not isinstance(header, dict):
            raise R1VError(f"{f} is not a safetensors file or is corrupt or truncated (its header cannot be read); "
                           f"copy or download it again")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if size != 8 + n + end:
            raise R1VError(f"{f} is corrupt or truncated: {size:,} bytes where its header says {8 + n + end:,}; "
                           f"copy or download it again")
    return files


def iter_tensors(files: list[Path]):
    """(name, tensor) over every weight file, one file open at a time."""
    from safetensors import SafetensorError, safe_open

    for f in files:
        if f.suffix == ".bin":
            try:
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:  # noqa: BLE001 - any failure here is a bad file
                raise R1VError(f"cannot read weight file {f.name}: {e}") from None
            yield from state.items()
            continue
        try:
            with safe_open(f, framework="pt") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise R1VError(f"weight file {f.name} is corrupt or truncated: {e}") from None


# ------------------------------------------------------------------- configs
_VISION_TO_HF = {"qk_normalization": "use_qk_norm", "qkv_bias": "attention_bias",
                 "initializer_factor": "layer_scale_init_value", "dropout": "hidden_dropout_prob"}
_VISION_KEEP = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                "layer_norm_eps", "norm_type", "image_size", "patch_size", "num_channels", "attention_dropout",
                "initializer_range"]


def hf_config_from_skywork(sky: dict, tokenizer) -> "InternVLConfig":  # noqa: F821
    from transformers import AutoConfig, InternVLConfig

    vision_cfg = vision_config_from_internvit(sky["vision_config"], sky.get("force_image_size"))
    llm = dict(sky["llm_config"])
    llm_type = llm.pop("model_type", "qwen2")
    text = AutoConfig.for_model(llm_type, **{k: x for k, x in llm.items() if k not in ("architectures", "auto_map")})
    image_size = vision_cfg.image_size[0]
    ratio = sky.get("downsample_ratio", 0.5)
    cfg = InternVLConfig(
        vision_config=vision_cfg.to_dict(), text_config=text.to_dict(),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=int((image_size // vision_cfg.patch_size[0]) ** 2 * ratio**2),
        downsample_ratio=ratio, vision_feature_layer=sky.get("select_layer", -1),
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )
    cfg.ps_version = sky.get("ps_version", "v1")  # the official config class defaults to v1
    cfg.template = template_of(sky, text)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if llm.get(k) is not None:
            setattr(cfg, k, llm[k])
    return cfg


def vision_config_from_internvit(v: dict, image_size: int | None = None):
    """transformers' InternVLVisionConfig from an InternViT config (OpenGVLab's `intern_vit_6b` type)."""
    from transformers import InternVLVisionConfig

    vision = {k: v[k] for k in _VISION_KEEP if k in v}
    vision.update({hf: v[k] for k, hf in _VISION_TO_HF.items() if k in v})
    if image_size:
        vision["image_size"] = image_size
    return InternVLVisionConfig(**vision, use_mean_pooling=True, use_absolute_position_embeddings=True)


def load_vision(path: str | os.PathLike, *, dtype: torch.dtype | None = None):
    """A vision encoder as transformers' model: an InternViT folder in OpenGVLab's layout
    (InternViT-300M / 6B-448px-V2_5: remote code, fused qkv), converted tensor by tensor into
    `InternVLVisionModel` with no remote code; or anything transformers' AutoModel loads."""
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import AutoModel, InternVLVisionModel

    p = Path(path)
    if not (p / "config.json").exists():
        raise R1VError(f"{p} is not a model folder (no config.json)")
    config = json.loads((p / "config.json").read_text())
    if config.get("model_type") != "intern_vit_6b":
        return AutoModel.from_pretrained(p, dtype=dtype or "auto")
    cfg = vision_config_from_internvit(config)
    with init_empty_weights():
        model = InternVLVisionModel(cfg)
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    seen, prefix = {}, "model.vision_tower."
    mapper = TensorMapper("hf", dtype)
    for key, tensor in iter_tensors(_weight_files(p, False)):
        for name, value in mapper.feed("vision_model." + key, tensor):
            name = name.removeprefix(prefix)
            if name in expected:
                seen[name] = tuple(value.shape)
                set_module_tensor_to_device(model, name, "cpu", value=value)
    mapper.finish()
    missing = [k for k in expected if k not in seen]
    bad = [k for k in seen if seen[k] != expected[k]]
    if missing or bad:
        raise R1VError(f"{p}: the InternViT weights do not match its config (e.g. {(missing or bad)[0]})")
    return model


def template_of(config: dict, text_config=None) -> str:
    """Our template name for a checkpoint: explicit, else R1V3's ChatML when its EOS is <|im_end|>."""
    name = str(config.get("template") or "")
    if name in ("r1v", "r1v3"):
        return name
    eos = getattr(text_config, "eos_token_id", None) if text_config is not None else None
    return "r1v3" if eos == 151645 or "r1v3" in name.lower() else "r1v"


def skywork_config_from_hf(cfg, *, max_tiles: int = 12, min_tiles: int = 1, use_thumbnail: bool = True,
                           dtype: torch.dtype | None = None) -> dict:
    v = cfg.vision_config
    back = {hf: k for k, hf in _VISION_TO_HF.items()}
    vision = {k: getattr(v, k) for k in _VISION_KEEP}
    vision.update({back[hf]: getattr(v, hf) for hf in back})
    vision["image_size"] = v.image_size[0]
    vision["patch_size"] = v.patch_size[0]
    vision.update(architectures=["InternVisionModel"], model_type="intern_vit_6b", drop_path_rate=0.0,
                  use_flash_attn=False)
    text = cfg.text_config.to_dict()
    text.pop("transformers_version", None)
    text["architectures"] = [cfg.text_config.architectures[0] if cfg.text_config.architectures
                             else "Qwen2ForCausalLM"]
    text["tie_word_embeddings"] = cfg.tie_word_embeddings
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(cfg, k, None) is not None:
            text[k] = getattr(cfg, k)
    out = {
        "architectures": ["SkyworkR1VChatModel"],
        "model_type": "skywork_chat",
        "downsample_ratio": cfg.downsample_ratio,
        "dynamic_image_size": True,
        "force_image_size": vision["image_size"],
        "select_layer": cfg.vision_feature_layer,
        "ps_version": getattr(cfg, "ps_version", "v2"),
        "template": getattr(cfg, "template", "r1v"),
        "max_dynamic_patch": max_tiles,
        "min_dynamic_patch": min_tiles,
        "use_thumbnail": use_thumbnail,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "llm_config": text,
        "vision_config": vision,
    }
    if dtype is not None:
        out["torch_dtype"] = DTYPE_NAMES[dtype]
    return out


# ------------------------------------------------------------------- writing shards
def parse_size(size: str | int) -> int:
    if isinstance(size, int):
        value = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", size.upper())
        if not m:
            raise R1VError(f"cannot read the size {size!r}; write it like 5GB or 500MB")
        unit = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30}[m[2]]
        value = int(float(m[1]) * unit)
    if value < 1:
        raise R1VError(f"a shard size must be positive, got {size!r}; write it like 5GB or 500MB")
    return value


class ShardWriter:
    """Writes tensors into safetensors shards of at most `max_bytes` and an index at the end."""

    def __init__(self, out: Path, max_bytes: int):
        self.out, self.max_bytes = out, max_bytes
        self.buffer: dict[str, torch.Tensor] = {}
        self.size = self.total = 0
        self.shards: list[list[str]] = []

    def add(self, key: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.buffer and self.size + nbytes > self.max_bytes:
            self._flush()
        self.buffer[key] = tensor.contiguous()
        self.size += nbytes
        self.total += nbytes

    def _flush(self) -> None:
        from safetensors.torch import save_file

        save_file(self.buffer, self.out / f"shard-{len(self.shards):05d}.tmp", metadata={"format": "pt"})
        self.shards.append(list(self.buffer))
        self.buffer, self.size = {}, 0

    def close(self) -> None:
        if self.buffer or not self.shards:
            self._flush()
        n = len(self.shards)
        if n == 1:
            (self.out / "shard-00000.tmp").rename(self.out / "model.safetensors")
            return
        weight_map = {}
        for i, keys in enumerate(self.shards):
            name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.out / f"shard-{i:05d}.tmp").rename(self.out / name)
            weight_map.update(dict.fromkeys(keys, name))
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# ------------------------------------------------------------------- convert
def _expected_hf_keys(cfg) -> dict[str, tuple]:
    """Tensor names and shapes the transformers model of `cfg` has (built on the meta device)."""
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(cfg)
    sd = model.state_dict()
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return {k: tuple(v.shape) for k, v in sd.items()}


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, dtype: str | None = None,
            max_shard_size: str | int = "5GB", allow_pickle: bool = False, overwrite: bool = False,
            progress: bool = True) -> Path:
    """Convert `src` (either layout) to the `to` layout in `dst`, streaming shard by shard.

    Written into `dst.partial` and renamed at the end: a crash never leaves a half-written
    model where a complete one is expected.
    """
    from tqdm import tqdm

    from r1v.model.tokenizer import load_tokenizer

    source = inspect(src, allow_pickle=allow_pickle)
    out = _destination(dst, overwrite)
    if out.resolve() == source.path.resolve():
        raise R1VError(f"{out} is the source itself; write the conversion somewhere else")
    if to not in ("hf", "skywork"):
        raise R1VError(f"--to must be 'hf' or 'skywork', not {to!r}")
    target_dtype = None
    if dtype not in (None, "keep", "auto"):
        if dtype not in DTYPES:
            raise R1VError(f"unknown --dtype {dtype!r}; use one of bf16, fp16, fp32")
        target_dtype = DTYPES[dtype]

    tokenizer = load_tokenizer(str(source.path))
    if source.layout == "skywork":
        hf_cfg = hf_config_from_skywork(source.config, tokenizer)
        tiles = dict(max_tiles=source.config.get("max_dynamic_patch", 12),
                     min_tiles=source.config.get("min_dynamic_patch", 1),
                     use_thumbnail=source.config.get("use_thumbnail", True))
    else:
        from transformers import InternVLConfig

        hf_cfg = InternVLConfig.from_pretrained(source.path)
        tiles = _saved_tiling(source.path)
    expected = _expected_hf_keys(hf_cfg)

    shard_size = parse_size(max_shard_size)
    with _partial(out) as tmp:
        stored_dtype = None
        seen: dict[str, tuple] = {}  # hf name -> shape, to check the checkpoint is complete
        mapper = TensorMapper(to, target_dtype, source=source.layout)
        writer = ShardWriter(tmp, shard_size)
        bar = tqdm(total=len(expected), desc=f"converting to {to}", unit="tensor", disable=not progress)
        for key, tensor in iter_tensors(source.weight_files):
            if tensor.is_floating_point():
                stored_dtype = stored_dtype or tensor.dtype
            shapes = hf_shapes(key, tensor.shape, source.layout)
            seen.update(shapes)
            for new_key, new_tensor in mapper.feed(key, tensor):
                writer.add(new_key, new_tensor)
            bar.update(len(shapes))
        bar.close()
        mapper.finish()
        _check_complete(seen, expected, source.path)
        writer.close()
        _write_metadata(tmp, to, hf_cfg, tokenizer, tiles, target_dtype or stored_dtype or torch.float32)
    return out


def save_model(model, tokenizer, out: str | os.PathLike, *, layout: str = "hf", max_tiles: int = 12,
               min_tiles: int = 1, use_thumbnail: bool = True, max_shard_size: str | int = "5GB",
               overwrite: bool = True, state_dict: dict | None = None) -> Path:
    """Write an in-memory R1V model in `layout` ("hf" or "skywork"), shard by shard. `state_dict`:
    its weights when the model's own are not whole (gathered from a sharded engine)."""
    out = _destination(out, overwrite)
    shard_size = parse_size(max_shard_size)
    with _partial(out) as tmp:
        mapper = TensorMapper(layout) if layout == "skywork" else None
        writer = ShardWriter(tmp, shard_size)
        state = dict(state_dict) if state_dict is not None else model.state_dict()
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        for key, tensor in state.items():
            for k, t in (mapper.feed(key, tensor) if mapper else [(key, tensor)]):
                writer.add(k, t.detach().cpu())
        if mapper:
            mapper.finish()
        writer.close()
        tiles = dict(max_tiles=max_tiles, min_tiles=min_tiles, use_thumbnail=use_thumbnail)
        _write_metadata(tmp, layout, model.config, tokenizer, tiles, model.dtype)
    return out


def _destination(out: str | os.PathLike, overwrite: bool) -> Path:
    """Where a model may be written: a new path, or (with overwrite) a model folder or an empty one.
    A file, or a folder that holds something other than a model, is never replaced."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise R1VError(f"{out} is a file, not a model folder; choose another destination")
        if not overwrite:
            raise R1VError(f"{out} exists; choose another destination or pass --overwrite")
        if any(out.iterdir()) and not (out / "config.json").exists():
            raise R1VError(f"{out} holds files that are not a model; it is not replaced even with --overwrite")
    return out


@contextlib.contextmanager
def _partial(out: Path):
    """A `<out>.partial` folder to write into, renamed to `out` when complete and removed on any
    failure: a crash never leaves a half-written model where a complete one is expected."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, out)


def _write_metadata(path: Path, layout: str, hf_cfg, tokenizer, tiles: dict, dtype: torch.dtype) -> None:
    """config.json, tokenizer (+ processor for hf) and generation defaults beside the weights."""
    if layout == "hf":
        hf_cfg.dtype = dtype
        hf_cfg.save_pretrained(path)
        if getattr(hf_cfg, "ps_version", "v2") == "v1":
            log.warning("this model uses ps_version v1: r1v loads it exactly, plain transformers "
                        "(which implements only v2) will order its visual tokens differently")
        from r1v.model.processor import build_processor

        proc = build_processor(tokenizer, tile_size=hf_cfg.vision_config.image_size[0],
                               tokens_per_tile=hf_cfg.image_seq_length,
                               chat_template=tokenizer.chat_template, **tiles)
        proc.save_pretrained(path)
    else:
        sky = skywork_config_from_hf(hf_cfg, dtype=dtype, **tiles)
        (path / "config.json").write_text(json.dumps(sky, indent=2) + "\n")
        tokenizer.save_pretrained(path)
    write_generation_config(path, tokenizer)


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def hf_shapes(key: str, shape: torch.Size, layout: str) -> dict[str, tuple]:
    """The transformers-layout name(s) and shape(s) of one stored tensor (qkv counts as three)."""
    if layout == "hf":
        return {key: tuple(shape)}
    layer = _VISION_LAYER["skywork"]
    if key.startswith(layer) and (m := _QKV.match(key[len(layer):])):
        piece = (shape[0] // 3, *shape[1:])
        return {f"{_VISION_LAYER['hf']}{m['layer']}.attention.{w}_proj.{m['kind']}": piece for w in "qkv"}
    return {rename(key, "hf"): tuple(shape)}


def _check_complete(seen: dict[str, tuple], expected: dict[str, tuple], src: Path) -> None:
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected) - {"lm_head.weight"})
    wrong = sorted(k for k in set(seen) & set(expected) if seen[k] != expected[k])
    if missing:
        raise R1VError(f"{src} lacks {len(missing)} tensor(s) its config needs, e.g. {missing[0]} "
                       f"(a shard is missing or belongs to another model)")
    if extra:
        raise R1VError(f"{src} has {len(extra)} tensor(s) its config does not expect, e.g. {extra[0]}")
    if wrong:
        k = wrong[0]
        raise R1VError(f"{src}: tensor {k} has shape {seen[k]} but the config implies {expected[k]} "
                       f"(shards from a different model?)")


def _saved_tiling(path: Path) -> dict:
    """max/min tiles and thumbnail saved with an hf-layout processor (defaults when absent)."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        f = path / name
        if f.exists():
            d = json.loads(f.read_text())
            d = d.get("image_processor", d)
            return dict(max_tiles=d.get("max_patches", 12), min_tiles=d.get("min_patches", 1),
                        use_thumbnail=d.get("image_processor_type") != "_NoThumbnailImageProcessor")
    return dict(max_tiles=12, min_tiles=1, use_thumbnail=True)


def write_generation_config(path: Path, tokenizer) -> None:
    """Sampling defaults of the model card, so `generate` and `vllm serve` start from them."""
    from transformers import GenerationConfig

    GenerationConfig(
        do_sample=True, temperature=0.6, top_p=0.95, repetition_penalty=1.05,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(path)


# ------------------------------------------------------------------- loading
def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None for "auto" (the checkpoint's own dtype), else a torch dtype."""
    if dtype in (None, "auto", "keep"):
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise R1VError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return DTYPES[dtype]


def resolve_device(name: str | None) -> str:
    """A checked device name: None -> cuda when there is a GPU, else cpu."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise R1VError(f"unknown device {name!r}; use cpu, cuda, cuda:1, ...") from None
    # torch names more device types than r1v runs on (meta, xpu, ...); those would fail mid-run.
    if dev.type not in ("cpu", "cuda", "mps"):
        raise R1VError(f"unsupported device {name!r}; use cpu, cuda, cuda:1, ... (or mps on a Mac)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise R1VError(f"--device {name}: no Apple GPU (MPS) is available here")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise R1VError(f"--device {name}: no CUDA GPU is available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise R1VError(f"--device {name}: there are only {torch.cuda.device_count()} GPU(s)")
    return name


def load_model(path: str | os.PathLike, *, dtype: str | torch.dtype | None = "auto", device: str = "cpu",
               device_map: str | dict | None = None, quantization: str | None = None,
               allow_pickle: bool = False):
    """Load an R1V checkpoint in either layout. Returns (model, tokenizer, tiling options).

    `device_map="auto"` spreads the model over the visible GPUs (accelerate); `quantization`
    "8bit" / "4bit" loads through bitsandbytes (transformers layout; convert an official
    checkpoint with `r1v convert --to hf` first).
    """
    from transformers import InternVLForConditionalGeneration

    from r1v.model.builder import apply_ps_version
    from r1v.model.tokenizer import load_tokenizer

    source = inspect(path, allow_pickle=allow_pickle)
    torch_dtype = resolve_dtype(dtype)
    tokenizer = load_tokenizer(str(source.path))
    if source.layout == "hf":
        kwargs = {}
        if quantization:
            kwargs["quantization_config"] = _bnb_config(quantization)
            device_map = device_map or "auto"
        model, info = InternVLForConditionalGeneration.from_pretrained(
            source.path, dtype=torch_dtype or "auto", device_map=device_map, output_loading_info=True,
            use_safetensors=source.weight_files[0].suffix == ".safetensors", **kwargs,
        )
        missing = [k for k in info["missing_keys"] if not k.endswith("lm_head.weight")
                   or not model.config.tie_word_embeddings]
        if missing or info.get("mismatched_keys"):
            bad = missing[0] if missing else info["mismatched_keys"][0]
            raise R1VError(f"{source.path}: checkpoint does not match its config (e.g. {bad}); "
                           f"a shard is missing or belongs to another model")
        if device_map is None and not quantization:
            model.to(device)
        tiles = _saved_tiling(source.path)
    else:
        if quantization:
            raise R1VError("8/4-bit loading reads the transformers layout: run "
                           f"`r1v convert {source.path} DST --to hf` once, then load DST")
        model = _load_skywork(source, tokenizer, torch_dtype, device, device_map)
        tiles = dict(max_tiles=source.config.get("max_dynamic_patch", 12),
                     min_tiles=source.config.get("min_dynamic_patch", 1),
                     use_thumbnail=source.config.get("use_thumbnail", True))
    apply_ps_version(model)
    model.eval()
    return model, tokenizer, tiles


def _load_skywork(source: Source, tokenizer, dtype, device, device_map):
    """Build the transformers model with empty weights and fill it tensor by tensor."""
    from accelerate import dispatch_model, infer_auto_device_map, init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import InternVLForConditionalGeneration

    cfg = hf_config_from_skywork(source.config, tokenizer)
    expected = _expected_hf_keys(cfg)
    with init_empty_weights():  # parameters on "meta"; buffers (rotary tables) real
        model = InternVLForConditionalGeneration(cfg)
    placement = None
    if device_map is not None:
        placement = device_map if isinstance(device_map, dict) else infer_auto_device_map(
            model, no_split_module_classes=model._no_split_modules, dtype=dtype or torch.bfloat16)

    def where(name: str):
        if placement is None:
            return device
        best = max((p for p in placement if p == "" or name == p or name.startswith(p + ".")), key=len)
        return placement[best]

    seen = {}
    mapper = TensorMapper("hf", dtype)
    for key, tensor in iter_tensors(source.weight_files):
        for name, value in mapper.feed(key, tensor):
            if name not in expected:
                continue  # reported below by _check_complete
            seen[name] = tuple(value.shape)
            if seen[name] != expected[name]:
                break
            set_module_tensor_to_device(model, name, where(name), value=value)
    mapper.finish()
    _check_complete(seen, expected, source.path)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    if placement is not None:
        return dispatch_model(model, placement)
    return model.to(device)


def _bnb_config(quantization: str):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise R1VError("8/4-bit loading needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    raise R1VError(f"unknown quantization {quantization!r}; use 8bit or 4bit")
