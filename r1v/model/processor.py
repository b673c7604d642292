"""Images in, model inputs out: safe image loading, dynamic tiling, `<image>` expansion.

Tiling is the R1V / InternVL reference algorithm (`../shared/docs/formats.md`): transformers'
`GotOcr2ImageProcessorPil` (its grid choice, PIL resizes), with the per-tile arithmetic done once
per image (`TilingImageProcessor`), bit-identical to the reference transform and faster than it
(`bench/tiling_speed.py`). transformers' torchvision twin is not PIL-exact, so it is never used.
Token expansion is transformers' `InternVLProcessor`: every image becomes `<img>` +
`<IMG_CONTEXT>` x (256 x tiles) + `</img>`.

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
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers import BatchFeature, GotOcr2ImageProcessorPil, InternVLProcessor, InternVLVideoProcessor
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from r1v.errors import R1VError
from r1v.model.templates import IMAGE_PLACEHOLDER, IMAGE_TOKENS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL's own default bomb limit (~89.5 MP); above it a file is refused, not decoded.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

ImageLike = str | os.PathLike | bytes | Image.Image


# The formats a server decodes from requests: the common ones, none that run an outside program
# (EPS through Ghostscript) or exotic decoders.
WEB_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# What PIL raises on a malformed header, besides OSError, depending on the format's plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


def load_image(src: ImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open `src` (path, bytes or PIL image) as a fully decoded RGB image, or raise R1VError.
    `formats`: only these PIL formats are tried (e.g. WEB_FORMATS for untrusted bytes)."""
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
                img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src, formats=formats)
        except UnidentifiedImageError:
            what = f"not one of {', '.join(formats)}" if formats else "a format PIL cannot read"
            raise R1VError(f"not an image (or {what}): {name}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise R1VError(f"image is too large to decode safely (decompression bomb?): {name}") from None
        except _DECODE_ERRORS as e:
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
    except _DECODE_ERRORS as e:
        raise R1VError(f"image file is corrupt or truncated: {name} ({e})") from None


class TilingImageProcessor(GotOcr2ImageProcessorPil):
    """transformers' GotOcr2 PIL tiler (its grid choice, its options), with the per-tile work done
    once per image: the whole resized canvas is scaled and normalised in one pass, then cut into
    tiles by a reshape. The resizes are the same PIL bicubic calls, and the arithmetic is
    torchvision's (x / 255, then - mean, then / std, in float32), so the tiles are bit-identical
    to the R1V reference transform (bench/tiling_speed.py checks it); GotOcr2's own path,
    tile by tile in float64-free NumPy steps, ran at ~0.7x the reference's speed.
    NumPy, not torch: the server tiles on pool threads, where torch would start an OpenMP team
    that competes with generation. `use_thumbnail=False` is an R1V option GotOcr2 lacks.
    """

    def __init__(self, use_thumbnail: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.use_thumbnail = use_thumbnail
        # uint8 -> normalised float32 through a table per channel, filled by the reference's own
        # steps in float32 (v / 255, - mean, / std): one gather per value, the same bits.
        v = np.arange(256, dtype=np.float32)
        mean, std = np.asarray(self.image_mean, np.float32), np.asarray(self.image_std, np.float32)
        self._table = np.stack([((v / np.float32(255)) - mean[c]) / std[c] for c in range(3)])

    def to_dict(self) -> dict:
        # Saved as GotOcr2's own config, so that transformers and vLLM load it without r1v; a tiler
        # without the thumbnail keeps the name r1v reads it back by (checkpoint._saved_tiling).
        d = {k: v for k, v in super().to_dict().items() if k not in ("_table", "use_thumbnail")}
        d["image_processor_type"] = "GotOcr2ImageProcessor" if self.use_thumbnail else "_NoThumbnailImageProcessor"
        return d

    def _prepare_image_like_inputs(self, images, *args, expected_ndims: int = 3, **kwargs):
        # PIL images stay PIL images (RGB): the tiler resizes them with PIL anyway, so the
        # round trip to a channels-first array and back that transformers makes is skipped.
        flat = self._prepare_images_structure(images, expected_ndims=expected_ndims)
        if flat and all(isinstance(im, Image.Image) for im in flat):
            return [im if im.mode == "RGB" else im.convert("RGB") for im in flat]
        return super()._prepare_image_like_inputs(images, *args, expected_ndims=expected_ndims, **kwargs)

    def _preprocess(self, images, do_resize, size, resample, do_rescale, rescale_factor, do_normalize,
                    image_mean, image_std, return_tensors, crop_to_patches=False, min_patches=1, max_patches=12,
                    **kwargs):
        if not (do_resize and do_rescale and do_normalize and rescale_factor == 1 / 255
                and list(image_mean) == list(self.image_mean) and list(image_std) == list(self.image_std)):
            return super()._preprocess(images, do_resize, size, resample, do_rescale, rescale_factor, do_normalize,
                                       image_mean, image_std, return_tensors, crop_to_patches=crop_to_patches,
                                       min_patches=min_patches, max_patches=max_patches, **kwargs)
        th, tw = size.height, size.width
        plans = []  # (image, cols, rows, thumbnail?)
        for image in images:  # PIL, or uint8 channels first (transformers' working format)
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
            cols, rows = (1, 1)
            if crop_to_patches and max_patches > 1:
                cols, rows = get_optimal_tiled_canvas((image.height, image.width), (th, tw), min_patches, max_patches)
            plans.append((image, cols, rows, self.use_thumbnail and cols * rows > 1))
        counts = [cols * rows + thumb for _, cols, rows, thumb in plans]
        pixels = np.empty((sum(counts), 3, th, tw), dtype=np.float32)
        k = 0
        for image, cols, rows, thumb in plans:
            canvas = np.asarray(image.resize((tw * cols, th * rows), resample))
            for r in range(rows):
                for c in range(cols):
                    self._tile(canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw], pixels[k])
                    k += 1
            if thumb:
                self._tile(np.asarray(image.resize((tw, th), resample)), pixels[k])
                k += 1
        if return_tensors == "pt":
            import torch

            pixels = torch.from_numpy(pixels)
        return BatchFeature(data={"pixel_values": pixels, "num_patches": counts})

    def _tile(self, hwc: np.ndarray, out: np.ndarray) -> None:
        for c in range(3):
            np.take(self._table[c], hwc[:, :, c], out=out[c])


def build_image_processor(
    *, tile_size: int = 448, max_tiles: int = 12, min_tiles: int = 1, use_thumbnail: bool = True
) -> GotOcr2ImageProcessorPil:
    if not 1 <= min_tiles <= max_tiles:
        raise R1VError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    return TilingImageProcessor(
        use_thumbnail=use_thumbnail,
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


def place_images(question: str, n_images: int) -> str:
    """The question with exactly one `<image>` per image.

    No placeholder and n images: "<image>\\n" (or "Image-k: <image>\\n" for several) is put
    in front, as in the R1V chat code. Otherwise the count must match.
    """
    for tok in IMAGE_TOKENS:
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

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--max-tiles", type=int, default=12)
    args = ap.parse_args()
    im = load_image(args.image)
    cols, rows = get_optimal_tiled_canvas((im.height, im.width), (448, 448), 1, args.max_tiles)
    n = cols * rows + (cols * rows > 1)
    print(f"{im.width}x{im.height}: grid {cols}x{rows}, {n} tiles, {256 * n} image tokens")
