"""Tiling speed: r1v's processor (transformers' GotOcr2ImageProcessorPil) beside the reference.

    python bench/tiling_speed.py [--images 40]

The reference is the R1V / InternVL `dynamic_preprocess` (tests/reference_tiling.py) with the
torchvision transform of the official chat code (Resize bicubic, ToTensor, Normalize), tile by tile.
Both produce the same tensors (tests/test_processor.py checks against an independent
implementation); this prints images/s for each on a mix of sizes, and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1v.model.processor import IMAGENET_MEAN, IMAGENET_STD, build_image_processor  # noqa: E402
from tests.reference_tiling import reference_crops, reference_grid  # noqa: E402


def reference(image: Image.Image, max_num: int = 12, size: int = 448) -> torch.Tensor:
    import torchvision.transforms as T
    from torchvision.transforms.functional import InterpolationMode

    transform = T.Compose([T.Resize((size, size), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    cols, rows = reference_grid(*image.size, max_num=max_num, size=size)
    tiles = reference_crops(image, cols, rows, size)
    return torch.stack([transform(t) for t in tiles])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = [(640, 480), (1920, 1080), (448, 448), (300, 1200), (1024, 768), (100, 100), (2000, 500), (800, 800)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for w, h in (sizes[i % len(sizes)] for i in range(a.images))]
    ours = build_image_processor()

    def time_it(fn) -> tuple[float, int]:
        fn(images[0])
        t, tiles = time.perf_counter(), 0
        for im in images:
            tiles += fn(im)
        return len(images) / (time.perf_counter() - t), tiles

    ref_rate, ref_tiles = time_it(lambda im: reference(im).shape[0])
    our_rate, our_tiles = time_it(lambda im: ours(images=[im], return_tensors="pt")["pixel_values"].shape[0])
    assert ref_tiles == our_tiles
    print(f"{len(images)} images, {our_tiles} tiles of 448 px")
    print(f"reference (dynamic_preprocess + torchvision): {ref_rate:7.1f} images/s")
    print(f"r1v (GotOcr2ImageProcessorPil)              : {our_rate:7.1f} images/s")
    print(f"ratio r1v / reference                       : {our_rate / ref_rate:7.2f}")


if __name__ == "__main__":
    main()
