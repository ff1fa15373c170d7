"""Tiny image datasets written by the PyTorch tests."""

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("bar", "column", "dot")


def make_image(label: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """Return a noisy uint8 (size, size) image of a horizontal bar, a vertical bar or a dot."""
    image = rng.integers(0, 40, size=(size, size))
    pos = int(rng.integers(3, size - 3))
    if label == 0:
        image[pos - 1:pos + 1, 2:-2] = 230
    elif label == 1:
        image[2:-2, pos - 1:pos + 1] = 230
    else:
        image[pos - 2:pos + 2, pos - 2:pos + 2] = 230
    return image.astype(np.uint8)


def make_image_folder(root: Path, per_class: dict[str, int], seed: int = 0,
                      size: int = 16) -> Path:
    """Write ``root/<split>/<class>/NNN.png`` grayscale images; return `root`."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(make_image(label, rng, size)).save(folder / f"{i:03d}.png")
    return root
