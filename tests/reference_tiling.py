"""The R1V / InternVL tiling reference, written from formats.md with PIL + numpy only.

Independent of r1v's code: the tests compare r1v's processor with it, and bench/tiling_speed.py
runs its grid and crops with the torchvision transform of the official chat code.
"""

import numpy as np
from PIL import Image

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def reference_tiles(image: Image.Image, max_num=12, min_num=1, size=448, use_thumbnail=True) -> np.ndarray:
    """The InternVL / R1V `dynamic_preprocess` + transform, written from formats.md with PIL + numpy."""
    cols, rows = reference_grid(*image.size, max_num=max_num, min_num=min_num, size=size)
    tiles = reference_crops(image, cols, rows, size, use_thumbnail)
    out = []
    for t in tiles:
        arr = np.asarray(t.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
        out.append(((arr - MEAN) / STD).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def reference_crops(image, cols, rows, size=448, use_thumbnail=True) -> list:
    """The tiles of a (cols x rows) grid, row-major, plus the thumbnail when there are several."""
    resized = image.resize((size * cols, size * rows))
    tiles = [resized.crop(((k % cols) * size, (k // cols) * size, (k % cols + 1) * size, (k // cols + 1) * size))
             for k in range(cols * rows)]
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((size, size)))
    return tiles


def reference_grid(w: int, h: int, max_num=12, min_num=1, size=448) -> tuple[int, int]:
    """(columns, rows) the reference picks for a w x h image (formats.md, ties included)."""
    aspect = w / h
    ratios = sorted({(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                     for j in range(1, n + 1) if min_num <= i * j <= max_num}, key=lambda r: r[0] * r[1])
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and w * h > 0.5 * size * size * r[0] * r[1]:
            best = r
    return best


