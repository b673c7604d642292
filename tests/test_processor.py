"""Tiling against an independent implementation of the reference algorithm; image tokens;
placeholders; every kind of bad image."""

import numpy as np
import pytest
from PIL import Image

from r1v.errors import R1VError
from r1v.model.processor import build_image_processor, build_processor, load_image, place_images
from tests.reference_tiling import reference_tiles

SIZES = [(1, 1), (1, 10000), (10000, 1), (448, 448), (449, 447), (896, 448), (448, 896), (1000, 1000),
         (1920, 1080), (1080, 1920), (300, 200), (200, 300), (5000, 100), (100, 5000), (1344, 448),
         (3, 7), (2048, 1536), (640, 480), (799, 401), (1234, 567), (50, 1800), (4000, 3000)]


@pytest.mark.parametrize("w,h", SIZES)
def test_tiling_equals_reference(w, h):
    rng = np.random.default_rng(w * 10007 + h)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ours = build_image_processor()(images=[img], return_tensors="np")
    ref = reference_tiles(img)
    assert ours["pixel_values"].shape == ref.shape
    assert list(ours["num_patches"]) == [len(ref)]
    np.testing.assert_allclose(ours["pixel_values"], ref, atol=1e-5)


@pytest.mark.parametrize("max_tiles,thumb", [(1, True), (4, True), (6, False), (12, False)])
def test_tiling_options(max_tiles, thumb):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (500, 1500, 3), dtype=np.uint8))
    ours = build_image_processor(max_tiles=max_tiles, use_thumbnail=thumb)(images=[img], return_tensors="np")
    ref = reference_tiles(img, max_num=max_tiles, use_thumbnail=thumb)
    np.testing.assert_allclose(ours["pixel_values"], ref, atol=1e-5)


@pytest.mark.parametrize("w,h,mode", [(640, 480, "RGB"), (1920, 1080, "RGB"), (300, 1200, "L"), (100, 100, "RGBA"),
                                      (448, 448, "P")])
def test_tiles_are_bit_identical_to_the_model_cards_transform(w, h, mode):
    """The reference of the official chat code: crops, then torchvision's Resize, ToTensor, Normalize."""
    import torch
    import torchvision.transforms as T
    from torchvision.transforms.functional import InterpolationMode

    from tests.reference_tiling import reference_crops, reference_grid

    rng = np.random.default_rng(w + h)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    rgb = img.convert("RGB")
    transform = T.Compose([T.Resize((448, 448), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ref = torch.stack([transform(t) for t in reference_crops(rgb, *reference_grid(w, h))])
    tiler = build_image_processor()
    assert torch.equal(tiler(images=[img], return_tensors="pt")["pixel_values"], ref)
    as_array = tiler(images=[np.asarray(rgb)], return_tensors="pt")["pixel_values"]  # transformers' array path
    assert torch.equal(as_array, ref)


def test_image_tokens_are_expanded_per_tile_in_order(tiny):
    _, tok = tiny
    proc = build_processor(tok, max_tiles=4)
    small, wide = Image.new("RGB", (100, 100)), Image.new("RGB", (900, 300))
    text = f"A {tok.context_image_token} B {tok.context_image_token} C"
    enc = proc(text=[text], images=[small, wide], return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    starts = [i for i, t in enumerate(ids) if t == tok.start_image_token_id]
    ends = [i for i, t in enumerate(ids) if t == tok.end_image_token_id]
    assert [e - s - 1 for s, e in zip(starts, ends)] == [256 * 1, 256 * 4]  # 1 tile; 3x1 grid + thumbnail
    assert enc["pixel_values"].shape[0] == 5
    assert tok.decode(ids[: starts[0]]).endswith("A ")


def test_place_images():
    assert place_images("Q", 0) == "Q"
    assert place_images("Q", 1) == "<image>\nQ"
    assert place_images("Q", 2) == "Image-1: <image>\nImage-2: <image>\nQ"
    assert place_images("a <image> b <image>", 2) == "a <image> b <image>"
    with pytest.raises(R1VError, match="2 <image> placeholder"):
        place_images("a <image> b <image>", 1)
    with pytest.raises(R1VError, match="1 <image> placeholder"):
        place_images("a <image>", 0)
    with pytest.raises(R1VError, match="reserved"):
        place_images("a <IMG_CONTEXT>", 0)


def test_bad_images(tmp_path):
    with pytest.raises(R1VError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(R1VError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(R1VError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello, I am not a picture")
    with pytest.raises(R1VError, match="not an image"):
        load_image(tmp_path / "text.png")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(R1VError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    jpg = tmp_path / "good.jpg"
    Image.open(good).save(jpg)
    (tmp_path / "cut.jpg").write_bytes(jpg.read_bytes()[:1500])
    with pytest.raises(R1VError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")
    assert load_image(good).size == (300, 300)
    with pytest.raises(R1VError, match="over the 1,000 limit"):
        load_image(good, max_pixels=1000)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 8000)).save(bomb)  # 96 MP, a few KB on disk
    with pytest.raises(R1VError, match="decompression bomb"):
        load_image(bomb)
