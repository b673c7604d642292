"""Official layout <-> transformers layout: native loading, conversion, bad checkpoints."""

import json
import shutil

import pytest
import torch

from r1v.chat import Chat
from r1v.errors import R1VError
from r1v.model.builder import pixel_shuffle_v1
from r1v.model.checkpoint import convert, inspect, iter_tensors, load_model
from tests.conftest import write_official


def logits_with_image(model, tok, images):
    chat = Chat(model, tok, max_tiles=2)
    text, imgs = chat.prompt("What is in <image> and <image>?", images[:2])
    inputs = chat.encode([text], imgs)
    with torch.no_grad():
        return model(**inputs).logits


def tensors(path):
    return dict(iter_tensors(inspect(path).weight_files))


@pytest.mark.parametrize("which", ["tiny", "tiny_v1"])
def test_official_layout_loads_natively_with_equal_logits(which, request, tmp_path, images):
    model, tok = request.getfixturevalue(which)
    src = write_official(model, tok, tmp_path / "official", shards=2)
    loaded, _, tiles = load_model(src)
    assert loaded.config.ps_version == model.config.ps_version
    assert tiles == {"max_tiles": 12, "min_tiles": 1, "use_thumbnail": True}
    diff = (logits_with_image(loaded, tok, images) - logits_with_image(model, tok, images)).abs().max()
    assert diff <= 1e-5


def test_ps_version_v1_is_v2_with_the_token_grid_transposed():
    x = torch.randn(2, 8, 8, 5)

    class Holder:
        pass

    from transformers.models.internvl.modeling_internvl import InternVLModel

    v2 = InternVLModel.pixel_shuffle(Holder(), x, 0.5)
    v1 = pixel_shuffle_v1(Holder(), x, 0.5)
    assert v1.shape == v2.shape == (2, 4, 4, 20)
    assert torch.equal(v1, v2.transpose(1, 2))
    assert not torch.equal(v1, v2)


def test_v1_and_v2_models_give_different_logits(tiny, images, tmp_path):
    model, tok = tiny
    src = write_official(model, tok, tmp_path / "v2")
    conf = json.loads((src / "config.json").read_text())
    conf["ps_version"] = "v1"
    (src / "config.json").write_text(json.dumps(conf))
    as_v1, _, _ = load_model(src)
    assert (logits_with_image(as_v1, tok, images) - logits_with_image(model, tok, images)).abs().max() > 1e-4


def test_convert_to_hf_loads_in_plain_transformers(tiny, official_dir, tmp_path, images):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

    model, tok = tiny
    out = convert(official_dir, tmp_path / "hf", to="hf", progress=False)
    plain = AutoModelForImageTextToText.from_pretrained(out).eval()
    proc = AutoProcessor.from_pretrained(out)
    assert type(plain).__name__ == "InternVLForConditionalGeneration"
    # The exact (PIL) tiler, selected as formats.md says; then the same inputs as r1v's own.
    proc.image_processor = AutoImageProcessor.from_pretrained(out, backend="pil")
    from PIL import Image

    imgs = [Image.open(p).convert("RGB") for p in images[:2]]
    text = "<｜begin▁of▁sentence｜><｜User｜>\n<IMG_CONTEXT> and <IMG_CONTEXT>?<｜Assistant｜><think>\n"
    inputs = proc(text=[text], images=imgs, return_tensors="pt", max_patches=2)
    with torch.no_grad():
        diff = (plain(**inputs).logits - model(**inputs).logits).abs().max()
    assert diff <= 1e-5
    assert (inputs["input_ids"] == tok.context_image_token_id).sum() == 256 * 3 * 2


def test_round_trips_are_bit_identical(official_dir, tmp_path):
    hf = convert(official_dir, tmp_path / "hf", to="hf", progress=False)
    back = convert(hf, tmp_path / "sky", to="skywork", progress=False)
    again = convert(back, tmp_path / "hf2", to="hf", progress=False)
    a, b = tensors(official_dir), tensors(back)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    h1, h2 = tensors(hf), tensors(again)
    assert h1.keys() == h2.keys() and all(torch.equal(h1[k], h2[k]) for k in h1)
    assert json.loads((back / "config.json").read_text())["llm_config"]["hidden_size"] == 64


def test_skywork_export_has_what_vllm_reads(official_dir, tmp_path):
    out = convert(official_dir, tmp_path / "sky", to="skywork", progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["SkyworkR1VChatModel"] and cfg["model_type"] == "skywork_chat"
    for key in ("downsample_ratio", "select_layer", "ps_version", "force_image_size", "max_dynamic_patch",
                "min_dynamic_patch", "dynamic_image_size", "use_thumbnail", "llm_config", "vision_config"):
        assert key in cfg
    for key in ("qk_normalization", "qkv_bias", "norm_type", "hidden_size", "num_attention_heads", "patch_size"):
        assert key in cfg["vision_config"]
    names = set(tensors(out))
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in names
    assert "mlp1.1.weight" in names and "language_model.lm_head.weight" in names
    assert (out / "tokenizer.json").exists()


def test_sharding_and_dtype(official_dir, tmp_path):
    out = convert(official_dir, tmp_path / "bf16", to="hf", dtype="bf16", max_shard_size="64KB", progress=False)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    t = tensors(out)
    assert all(v.dtype == torch.bfloat16 for v in t.values())
    model, _, _ = load_model(out)
    assert model.dtype == torch.bfloat16
    fp32, _, _ = load_model(out, dtype="fp32")
    assert fp32.dtype == torch.float32


def test_pickle_weights_are_refused_unless_allowed(tiny, tmp_path):
    model, tok = tiny
    src = write_official(model, tok, tmp_path / "pkl")
    sd = tensors(src)
    (src / "model.safetensors").unlink()
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(R1VError, match="pickle"):
        load_model(src)
    with pytest.raises(R1VError, match="pickle"):
        convert(src, tmp_path / "x", to="hf", progress=False)
    loaded, _, _ = load_model(src, allow_pickle=True)
    ids = torch.tensor([[5, 6, 7]])
    assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def broken(official_dir, tmp_path, how):
    d = tmp_path / how
    shutil.copytree(official_dir, d)
    shard = sorted(d.glob("model-*.safetensors"))[1]
    if how == "missing":
        shard.unlink()
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif how == "mismatched":  # a shard of a wider model, same names
        from safetensors.torch import load_file, save_file

        save_file({k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in load_file(shard).items()}, shard)
    elif how == "no_config":
        (d / "config.json").unlink()
    elif how == "bad_index":
        (d / "model.safetensors.index.json").write_text("{not json")
    return d


@pytest.mark.parametrize("how,msg", [("missing", "missing"), ("truncated", "corrupt or truncated"),
                                     ("mismatched", "shape"), ("no_config", "config.json"),
                                     ("bad_index", "shard index")])
def test_broken_checkpoints_give_clear_errors(official_dir, tmp_path, how, msg):
    d = broken(official_dir, tmp_path, how)
    with pytest.raises(R1VError, match=msg):
        load_model(d)
    with pytest.raises(R1VError, match=msg):
        convert(d, tmp_path / "out", to="hf", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written where a model is expected


def test_incomplete_checkpoint_is_refused(tiny, tmp_path):
    model, tok = tiny
    src = write_official(model, tok, tmp_path / "short")
    from safetensors.torch import load_file, save_file

    sd = load_file(src / "model.safetensors")
    sd.pop("mlp1.3.weight")
    save_file(sd, src / "model.safetensors")
    with pytest.raises(R1VError, match="lacks"):
        load_model(src)
