"""Images in, model inputs out: safe image loading, dynamic tiling, `<image>` expansion.

Tiling is the R1V / InternVL reference algorithm (`../shared/docs/formats.md`), done by
transformers' `GotOcr2ImageProcessorPil`, which matches the reference exactly (its
torchvision twin does not, so it is never used here). Token expansion is transformers'
`InternVLProcessor`: every image becomes `<img>` + `<IMG_CONTEXT>` x (256 x tiles) + `</img>`.

What this module adds on top:
* `load_image`: one clear `R1VError` for missing, unreadable, truncated or non-image files
  and for decompression bombs, instead of a PIL traceback;
* `place_images`: the user writes `<image>` placeholders (or none: they are added in front,
  one per image, as the R1V chat code does), and their count must equal the image count;
* `use_thumbnail=False`, which the GotOcr2 processor does not expose.

    python -m r1v.model.processor IMAGE [--max-tiles 12]   # prints the grid and tile count
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from transformers import GotOcr2ImageProcessorPil, InternVLProcessor, InternVLVideoProcessor

from r1v.errors import R1VError
from r1v.model.templates import IMAGE_PLACEHOLDER

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL's own default bomb limit (~89.5 MP); above it a file is refused, not decoded.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

ImageLike = str | os.PathLike | bytes | Image.Image


def load_image(src: ImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open `src` (path, bytes or PIL image) as a fully decoded RGB image, or raise R1VError."""
    if isinstance(src, Image.Image):
        img, name = src, "image"
    else:
        name = "image bytes" if isinstance(src, bytes) else str(src)
        if not isinstance(src, bytes):
            path = Path(src)
            if not path.exists():
                raise R1VError(f"image not found: {path}")
            if path.is_dir():
                raise R1VError(f"image path is a directory, not a file: {path}")
            if path.stat().st_size == 0:
                raise R1VError(f"image file is empty: {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
        except UnidentifiedImageError:
            raise R1VError(f"not an image (or a format PIL cannot read): {name}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise R1VError(f"image is too large to decode safely (decompression bomb?): {name}") from None
        except OSError as e:
            raise R1VError(f"cannot read image {name}: {e}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise R1VError(f"image has no pixels ({w}x{h}): {name}")
    if w * h > max_pixels:
        raise R1VError(
            f"image is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit "
            f"(decompression bomb?): {name}"
        )
    try:
        img.load()  # decode now, so a truncated file fails here and not deep in the model
        return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise R1VError(f"image file is corrupt or truncated: {name} ({e})") from None


class _NoThumbnailImageProcessor(GotOcr2ImageProcessorPil):
    """GotOcr2 tiling without the thumbnail tile (R1V checkpoints all use one; this is an option)."""

    def crop_image_to_patches(self, image, min_patches, max_patches, use_thumbnail=True, **kwargs):
        return super().crop_image_to_patches(image, min_patches, max_patches, use_thumbnail=False, **kwargs)


def build_image_processor(
    *, tile_size: int = 448, max_tiles: int = 12, min_tiles: int = 1, use_thumbnail: bool = True
) -> GotOcr2ImageProcessorPil:
    if not 1 <= min_tiles <= max_tiles:
        raise R1VError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    cls = GotOcr2ImageProcessorPil if use_thumbnail else _NoThumbnailImageProcessor
    return cls(
        size={"height": tile_size, "width": tile_size},
        crop_to_patches=True,
        min_patches=min_tiles,
        max_patches=max_tiles,
        resample=3,  # PIL bicubic, as the reference
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


def build_processor(
    tokenizer,
    *,
    tile_size: int = 448,
    tokens_per_tile: int = 256,
    max_tiles: int = 12,
    min_tiles: int = 1,
    use_thumbnail: bool = True,
    chat_template: str | None = None,
) -> InternVLProcessor:
    """transformers' InternVLProcessor around the PIL-exact tiler and `tokenizer`."""
    return InternVLProcessor(
        image_processor=build_image_processor(
            tile_size=tile_size, max_tiles=max_tiles, min_tiles=min_tiles, use_thumbnail=use_thumbnail
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=tokens_per_tile,
        chat_template=chat_template,
    )


def processor_for_model(model, tokenizer, **options) -> InternVLProcessor:
    """A processor whose tile size and tokens per tile match `model`'s config."""
    size = model.config.vision_config.image_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    return build_processor(
        tokenizer, tile_size=size, tokens_per_tile=model.config.image_seq_length,
        chat_template=getattr(tokenizer, "chat_template", None), **options,
    )


RESERVED = ("<img>", "</img>", "<IMG_CONTEXT>")


def place_images(question: str, n_images: int) -> str:
    """The question with exactly one `<image>` per image.

    No placeholder and n images: "<image>\\n" (or "Image-k: <image>\\n" for several) is put
    in front, as in the R1V chat code. Otherwise the count must match.
    """
    for tok in RESERVED:
        if tok in question:
            raise R1VError(f"the prompt contains the reserved token {tok!r}; write images as {IMAGE_PLACEHOLDER}")
    found = question.count(IMAGE_PLACEHOLDER)
    if found == 0 and n_images:
        if n_images == 1:
            return f"{IMAGE_PLACEHOLDER}\n{question}"
        return "".join(f"Image-{i + 1}: {IMAGE_PLACEHOLDER}\n" for i in range(n_images)) + question
    if found != n_images:
        raise R1VError(
            f"the prompt has {found} {IMAGE_PLACEHOLDER} placeholder(s) but {n_images} image(s) were given; "
            f"use one placeholder per image, or none to put every image in front"
        )
    return question


if __name__ == "__main__":
    import argparse

    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--max-tiles", type=int, default=12)
    args = ap.parse_args()
    im = load_image(args.image)
    cols, rows = get_optimal_tiled_canvas((im.height, im.width), (448, 448), 1, args.max_tiles)
    n = cols * rows + (cols * rows > 1)
    print(f"{im.width}x{im.height}: grid {cols}x{rows}, {n} tiles, {256 * n} image tokens")
