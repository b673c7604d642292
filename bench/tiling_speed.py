"""Tiling speed: r1v's processor beside the R1V reference, with bit-identical tensors.

    python bench/tiling_speed.py [--images 40] [--rounds 5]

The reference is the R1V / InternVL `dynamic_preprocess` (tests/reference_tiling.py) with the
torchvision transform of the official chat code (Resize bicubic, ToTensor, Normalize), tile by
tile, as the model card runs it. r1v's is `TilingImageProcessor` (r1v/model/processor.py) called
as the chat path calls it. Each image's tensors must be equal bit for bit (torch.equal).
Rounds interleave reference and r1v (ABAB...) on a mix of sizes; the median ratio of images/s
and its spread are printed. Target: >= 1.0x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1v.model.processor import IMAGENET_MEAN, IMAGENET_STD, build_image_processor
from tests.reference_tiling import reference_crops, reference_grid


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
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = [(640, 480), (1920, 1080), (448, 448), (300, 1200), (1024, 768), (100, 100), (2000, 500), (800, 800)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for w, h in (sizes[i % len(sizes)] for i in range(a.images))]
    ours = build_image_processor()

    def r1v(im):
        return ours(images=[im], return_tensors="pt")["pixel_values"]

    same = sum(torch.equal(r1v(im), reference(im)) for im in images)
    tiles = sum(reference(im).shape[0] for im in images)
    print(f"{len(images)} images, {tiles} tiles of 448 px; bit-identical tensors: {same}/{len(images)}")

    def rate(fn) -> float:
        t = time.perf_counter()
        for im in images:
            fn(im)
        return len(images) / (time.perf_counter() - t)

    ratios = []
    for k in range(a.rounds):
        ref, mine = rate(reference), rate(r1v)
        ratios.append(mine / ref)
        print(f"round {k + 1}: reference {ref:6.1f} images/s, r1v {mine:6.1f} images/s, ratio {ratios[-1]:.2f}x")
    print(f"r1v / reference: median {statistics.median(ratios):.2f}x (spread {min(ratios):.2f}-{max(ratios):.2f}x "
          f"over {a.rounds} rounds; target >= 1.0x, identical tensors)")
    if same != len(images):
        sys.exit("tensors differ from the reference")


if __name__ == "__main__":
    main()
