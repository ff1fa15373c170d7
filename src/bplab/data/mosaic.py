"""A multi-label set built from real single-label photos, written in the VOC layout.

Each mosaic image is a grid of cells (2x2 by default); 1 to 4 of the cells hold a photo from a
class-per-folder set such as CIFAR-10 and the rest are a flat grey. The image's labels are the
classes of its tiles, and the Annotations XML holds one box per tile, so `bplab.data.voc` reads the
result like Pascal VOC. Test mosaics are cut from the source's test photos and train/val mosaics
from its training photos, so no photo appears in both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from bplab.errors import BplabError

log = logging.getLogger(__name__)


@dataclass
class MosaicConfig:
    """Settings of `make_mosaic`."""

    n_train: int = 8000  # mosaic images in the train split
    n_val: int = 1000  # mosaic images in the val split
    n_test: int = 2000  # mosaic images in the test split
    grid: int = 2  # cells per side
    tile_size: int = 32  # pixels per cell side; the image is grid * tile_size wide
    min_tiles: int = 1  # minimum number of photos per image
    max_tiles: int = 4  # maximum number of photos per image (at most grid * grid)
    seed: int = 0  # seeds every random draw
    quality: int = 95  # JPEG quality of the written images


def load_source(source: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Load the photos to tile: {"train": (x, y, class_names), "test": (...)}.

    `source` is a folder holding ``cifar10-jpeg/`` or ``train.tar.gz`` and ``test.tar.gz``, or a
    class-per-folder tree with ``train/`` and ``test/`` subfolders. Arrays x have shape
    (N, H, W, 3), uint8.
    """
    from bplab.data import images

    source = Path(source)
    if (source / images.CIFAR10_FOLDER / "train.tar.gz").is_file():
        source = source / images.CIFAR10_FOLDER
    result = {}
    if (source / "train.tar.gz").is_file() and (source / "test.tar.gz").is_file():
        if source.name == images.CIFAR10_FOLDER:
            for split in ("train", "test"):
                x, y = images.load_cifar10(split, data_dir=source.parent)
                result[split] = (x, y, list(images.CIFAR10_CLASSES))
            return result
        for split in ("train", "test"):
            result[split] = images.load_image_tar(source / f"{split}.tar.gz", split, mode="RGB")
        return result
    if (source / "train").is_dir() and (source / "test").is_dir():
        for split in ("train", "test"):
            result[split] = images.load_image_folder(source, split, mode="RGB")
        if result["train"][2] != result["test"][2]:
            raise BplabError(f"{source}: train/ and test/ have different class folders")
        return result
    raise BplabError(f"{source}: expected cifar10-jpeg/, train.tar.gz and test.tar.gz, or "
                     "train/<class>/ and test/<class>/ folders of images")


def _tile_plan(rng: np.random.Generator, n_images: int, pool_size: int,
               cfg: MosaicConfig) -> list[list[tuple[int, int]]]:
    """Draw (cell, photo index) pairs for each image; photos are used once while the pool lasts."""
    cells = cfg.grid * cfg.grid
    counts = rng.integers(cfg.min_tiles, cfg.max_tiles + 1, size=n_images)
    needed = int(counts.sum())
    repeats = -(-needed // pool_size)
    order = np.concatenate([rng.permutation(pool_size) for _ in range(repeats)])[:needed]
    plan, start = [], 0
    for count in counts:
        chosen_cells = rng.choice(cells, size=count, replace=False)
        photos = order[start:start + count]
        start += count
        plan.append(sorted(zip(chosen_cells.tolist(), photos.tolist(), strict=True)))
    return plan


def _compose(x: np.ndarray, tiles: list[tuple[int, int]], cfg: MosaicConfig,
             background: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    size = cfg.grid * cfg.tile_size
    canvas = np.full((size, size, 3), background, dtype=np.uint8)
    boxes = []
    for cell, photo in tiles:
        row, col = divmod(cell, cfg.grid)
        top, left = row * cfg.tile_size, col * cfg.tile_size
        tile = x[photo]
        if tile.shape[:2] != (cfg.tile_size, cfg.tile_size):
            tile = np.asarray(Image.fromarray(tile).resize((cfg.tile_size, cfg.tile_size),
                                                           Image.BILINEAR))
        canvas[top:top + cfg.tile_size, left:left + cfg.tile_size] = tile
        # VOC boxes are 1-based and inclusive
        boxes.append((left + 1, top + 1, left + cfg.tile_size, top + cfg.tile_size))
    return canvas, boxes


def _annotation_xml(filename: str, size: int, objects) -> str:
    lines = ["<annotation>", "  <folder>mosaic</folder>", f"  <filename>{escape(filename)}</filename>",
             f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>"]
    for name, (xmin, ymin, xmax, ymax) in objects:
        lines += ["  <object>", f"    <name>{escape(name)}</name>", "    <truncated>0</truncated>",
                  "    <difficult>0</difficult>",
                  f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                  f"<ymax>{ymax}</ymax></bndbox>", "  </object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def make_mosaic(source_data: dict, out: str | Path, cfg: MosaicConfig) -> dict:
    """Write a mosaic set in VOC layout under `out` and return a summary dict.

    `source_data` is the output of `load_source`. `out` must not exist or be empty.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BplabError(f"output folder {out} already exists and is not empty; choose another")
    if not 1 <= cfg.min_tiles <= cfg.max_tiles <= cfg.grid * cfg.grid:
        raise BplabError(f"invalid tile counts {cfg.min_tiles}..{cfg.max_tiles}: need "
                         f"1 <= min_tiles <= max_tiles <= {cfg.grid * cfg.grid}")
    rng = np.random.default_rng(cfg.seed)
    class_names = list(source_data["train"][2])
    size = cfg.grid * cfg.tile_size
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir()
    main = out / "ImageSets" / "Main"
    main.mkdir(parents=True)

    # train and val draw from the training photos without overlap; test from the test photos
    x_train, y_train, _ = source_data["train"]
    x_test, y_test, _ = source_data["test"]
    photo_split = rng.permutation(len(x_train))
    n_val_photos = max(1, len(x_train) * cfg.n_val // max(1, cfg.n_train + cfg.n_val))
    pools = {
        "train": photo_split[n_val_photos:],
        "val": photo_split[:n_val_photos],
        "test": np.arange(len(x_test)),
    }
    counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    summary = {"classes": class_names, "image_size": size, "splits": {}}
    next_id = 1
    for split, n_images in counts.items():
        x_all, y_all = (x_test, y_test) if split == "test" else (x_train, y_train)
        pool = pools[split]
        plan = _tile_plan(rng, n_images, len(pool), cfg)
        ids, label_rows = [], []
        for tiles in plan:
            image_id = f"{next_id:06d}"
            next_id += 1
            global_tiles = [(cell, int(pool[p])) for cell, p in tiles]
            background = int(rng.integers(64, 192))
            canvas, boxes = _compose(x_all, global_tiles, cfg, background)
            Image.fromarray(canvas).save(out / "JPEGImages" / f"{image_id}.jpg",
                                         quality=cfg.quality)
            objects = [(class_names[int(y_all[photo])], box)
                       for (_, photo), box in zip(global_tiles, boxes, strict=True)]
            (out / "Annotations" / f"{image_id}.xml").write_text(
                _annotation_xml(f"{image_id}.jpg", size, objects))
            row = np.zeros(len(class_names), dtype=np.int8)
            for name, _ in objects:
                row[class_names.index(name)] = 1
            ids.append(image_id)
            label_rows.append(row)
        labels = np.array(label_rows).reshape(len(ids), len(class_names))
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c, name in enumerate(class_names):
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {1 if labels[k, c] else -1:2d}\n" for k, i in enumerate(ids)))
        summary["splits"][split] = {"images": len(ids),
                                    "positives": dict(zip(class_names, labels.sum(0).tolist(),
                                                          strict=True)),
                                    "mean_labels": float(labels.sum(1).mean()) if ids else 0.0}
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    log.info("wrote %d mosaic images of %dx%d to %s", next_id - 1, size, size, out)
    return summary
