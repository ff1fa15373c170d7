"""A small VOC tree for the VOC tests, with the image kinds that break naive loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "person")

# id -> (image kind, [(class, difficult)])
IMAGES = {
    "000001": ("rgb", [("cat", False), ("person", False)]),
    "000002": ("gray", [("dog", False), ("person", True)]),  # person only difficult -> -1
    "000003": ("cmyk", [("cat", True), ("cat", False)]),  # one easy cat -> positive
    "000004": ("exif", [("dog", False)]),
    "000005": ("rgba_png", [("person", False)]),
    "000006": ("truncated", [("cat", False)]),
    "000007": ("rgb", [("dog", True)]),
    "000008": ("rgb", [("person", False), ("dog", False)]),
}
SPLITS = {
    "train": ["000001", "000002", "000003", "000004", "000005", "000008"],
    "val": ["000006", "000007"],
}
SPLITS["trainval"] = SPLITS["train"] + SPLITS["val"]


def _image(seed: int, size=(24, 16)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _write_image(folder: Path, image_id: str, kind: str, seed: int) -> None:
    image = _image(seed)
    if kind == "rgb":
        image.save(folder / f"{image_id}.jpg")
    elif kind == "gray":
        image.convert("L").save(folder / f"{image_id}.jpg")
    elif kind == "cmyk":
        image.convert("CMYK").save(folder / f"{image_id}.jpg")
    elif kind == "exif":
        # stored 24 wide x 16 high; orientation 6 means "rotate 90 degrees clockwise to view"
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(folder / f"{image_id}.jpg", exif=exif)
    elif kind == "rgba_png":
        rgba = image.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(folder / f"{image_id}.png")
    elif kind == "truncated":
        path = folder / f"{image_id}.jpg"
        _image(seed, (64, 64)).save(path, quality=95)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(kind)


def _xml(image_id: str, filename: str, objects) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>"]
    for name, difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
                     "<xmax>10</xmax><ymax>10</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "".join(parts)


def expected_target(objects) -> list[int]:
    """Three-state target row worked out from the object list (1, 0, -1 difficult only)."""
    row = []
    for name in CLASSES:
        flags = [d for n, d in objects if n == name]
        if not flags:
            row.append(0)
        elif all(flags):
            row.append(-1)  # every object of the class is difficult
        else:
            row.append(1)
    return row


def make_voc_tree(root: Path, with_lists: bool = True, with_xml: bool = True) -> Path:
    """Write the VOC tree under root/VOCdevkit/VOC2007 and return that folder."""
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for seed, (image_id, (kind, objects)) in enumerate(IMAGES.items()):
        _write_image(voc / "JPEGImages", image_id, kind, seed)
        filename = f"{image_id}.png" if kind == "rgba_png" else f"{image_id}.jpg"
        if with_xml:
            (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, filename, objects))
    for split, ids in SPLITS.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if not with_lists:
            continue
        for c, name in enumerate(CLASSES):
            lines = []
            for image_id in ids:
                target = expected_target(IMAGES[image_id][1])[c]
                value = {1: 1, 0: -1, -1: 0}[target]
                lines.append(f"{image_id} {value:2d}\n")
            (main / f"{name}_{split}.txt").write_text("".join(lines))
    return voc
