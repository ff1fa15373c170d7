"""Image-level labels read from segmentation masks: the classes present in each mask.

Two layouts:

- tiny-voc (the course's VOC subset): ``ROOT/JPEGImages/<id>.jpg``, ``ROOT/Annotations/<id>.png``
  single-channel masks whose pixel values are class ids, ``ROOT/ImageSets/<split>.txt``, and a
  declared id -> class map (the ids are not VOC's, so the map must be given).
- VOC SegmentationClass: ``ROOT/SegmentationClass/<id>.png`` palette PNGs whose indices are
  1..20 in VOC class order, 0 background and 255 the "void" border around objects; split files in
  ``ROOT/ImageSets/Segmentation``. Masks saved as RGB colours are mapped back through the VOC
  colour map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bplab.data.image_io import IMAGE_SUFFIXES
from bplab.data.voc import VOC_CLASSES, VOCSplit, read_id_list
from bplab.errors import BplabError

BACKGROUND, BORDER = 0, 255
VOC_ID_TO_CLASS = {i + 1: name for i, name in enumerate(VOC_CLASSES)}


def voc_colormap(n: int = 256) -> np.ndarray:
    """Return the VOC palette of shape (n, 3), uint8.

    Colour of index i: bits 0, 1, 2 of i go to the top bit of R, G, B; bits 3, 4, 5 to the next
    bit down, and so on (index 1 is (128, 0, 0), 255 is (224, 224, 192)).
    """
    colors = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        value = index
        r = g = b = 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors[index] = (r, g, b)
    return colors


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG as class indices of shape (H, W).

    Palette and grayscale PNGs give their indices directly; an RGB mask is mapped through the
    VOC colour map, and a colour not in it raises a BplabError.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "L"):
                return np.asarray(image, dtype=np.uint8)
            if image.mode in ("I", "I;16"):
                return np.asarray(image).astype(np.int64)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise BplabError(f"mask {path} not found") from None
    except OSError as exc:
        raise BplabError(f"mask {path} is corrupt or not an image: {exc}") from None
    palette = voc_colormap()
    codes = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    pixel_codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lookup = dict(zip(codes.tolist(), range(len(codes)), strict=True))
    unique = np.unique(pixel_codes)
    unknown = [c for c in unique.tolist() if c not in lookup]
    if unknown:
        c = unknown[0]
        raise BplabError(f"mask {path} has colour {(c >> 16, (c >> 8) & 255, c & 255)} that is "
                         "not in the VOC palette")
    indices = np.zeros(pixel_codes.shape, dtype=np.int64)
    for code in unique.tolist():
        indices[pixel_codes == code] = lookup[code]
    return indices


def labels_from_mask(mask: np.ndarray, id_to_class: dict[int, str], min_pixels: int = 1,
                     ignore=(BACKGROUND, BORDER), source: str = "mask") -> list[str]:
    """Return the class names present in `mask` (H, W) with at least `min_pixels` pixels.

    Values in `ignore` (background and border) are skipped; any other value missing from
    `id_to_class` raises a BplabError naming `source`.
    """
    values, counts = np.unique(np.asarray(mask), return_counts=True)
    names = []
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if value in ignore:
            continue
        if value not in id_to_class:
            raise BplabError(f"{source}: pixel value {value} is not in the class map "
                             f"(declared ids: {sorted(id_to_class)})")
        if count >= min_pixels:
            names.append(id_to_class[value])
    return sorted(set(names), key=list(id_to_class.values()).index)


def parse_class_map(text: str) -> dict[int, str]:
    """Parse ``"1=person,2=bird"`` into {1: 'person', 2: 'bird'}."""
    result = {}
    for item in text.split(","):
        key, sep, name = item.partition("=")
        try:
            result[int(key)] = name.strip()
        except ValueError:
            raise BplabError(f"invalid class map entry {item!r}: expected ID=NAME, e.g. 1=person")\
                from None
        if not sep or not name.strip():
            raise BplabError(f"invalid class map entry {item!r}: expected ID=NAME, e.g. 1=person")
    return result


def _find_image(folder: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{image_id}{suffix}").is_file():
            return folder / f"{image_id}{suffix}"
    raise BplabError(f"no image for id {image_id} in {folder}")


def _split_from_masks(root: Path, ids: list[str], mask_dir: Path, id_to_class: dict[int, str],
                      split: str, min_pixels: int) -> VOCSplit:
    class_names = tuple(dict.fromkeys(id_to_class.values()))
    index = {name: i for i, name in enumerate(class_names)}
    targets = np.zeros((len(ids), len(class_names)), dtype=np.int8)
    paths = []
    for i, image_id in enumerate(ids):
        mask_path = mask_dir / f"{image_id}.png"
        mask = read_mask(mask_path)
        for name in labels_from_mask(mask, id_to_class, min_pixels, source=str(mask_path)):
            targets[i, index[name]] = 1
        paths.append(_find_image(root / "JPEGImages", image_id))
    return VOCSplit(root, split, class_names, list(ids), paths, targets)


def load_tiny_voc_split(root: str | Path, split: str, id_to_class: dict[int, str],
                        min_pixels: int = 1) -> VOCSplit:
    """Load the tiny-voc layout (masks in Annotations/*.png, splits in ImageSets/<split>.txt)."""
    root = Path(root)
    ids = read_id_list(root / "ImageSets" / f"{split}.txt")
    return _split_from_masks(root, ids, root / "Annotations", id_to_class, split, min_pixels)


def load_voc_segmentation_split(root: str | Path, split: str, min_pixels: int = 1) -> VOCSplit:
    """Load VOC SegmentationClass masks (ids 1..20 in VOC order, 255 border) for one split."""
    root = Path(root)
    ids = read_id_list(root / "ImageSets" / "Segmentation" / f"{split}.txt")
    return _split_from_masks(root, ids, root / "SegmentationClass", VOC_ID_TO_CLASS, split,
                             min_pixels)
