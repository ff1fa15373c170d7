"""Image reading that always returns RGB and names the file when it cannot.

Grayscale, CMYK, RGBA, palette and 16-bit files are converted to 8-bit RGB; the EXIF orientation
tag is applied, so a photo taken sideways comes out upright. A truncated or corrupt file raises a
BplabError naming it; `read_rgb_many` can skip such files and count them instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bplab.errors import BplabError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits before the conversion, which would clip otherwise
        array = np.asarray(image, dtype=np.float64)
        top = max(array.max(), 1.0)
        image = Image.fromarray((array * (255.0 / (65535.0 if top > 255 else 255.0))).astype(np.uint8))
    return image.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """Read an image file as an upright 8-bit RGB PIL image.

    Raises
    ------
    BplabError
        If the file is missing, not an image, truncated or otherwise unreadable; the message names it.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decodes the whole file, so truncation is found here
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise BplabError(f"image {path} not found") from None
    except UnidentifiedImageError:
        raise BplabError(f"image {path} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BplabError(f"image {path} is corrupt or truncated: {exc}") from None


@dataclass
class ReadReport:
    """Images that could not be read while loading a set, for the run summary."""

    skipped: list[str] = field(default_factory=list)  # paths of unreadable files
    reasons: list[str] = field(default_factory=list)  # one error message per skipped file

    @property
    def count(self) -> int:
        """Return the number of skipped files."""
        return len(self.skipped)


def read_rgb_or_skip(path: str | Path, skip_bad: bool, report: ReadReport) -> Image.Image | None:
    """Read `path` as RGB; with `skip_bad`, record an unreadable file in `report` and return None."""
    try:
        return read_rgb(path)
    except BplabError as exc:
        if not skip_bad:
            raise
        log.warning("skipping %s", exc)
        report.skipped.append(str(path))
        report.reasons.append(str(exc))
        return None


def find_images(root: str | Path) -> list[Path]:
    """Return every image file under `root` (recursively, by suffix), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise BplabError(f"folder {root} not found")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_images(root: str | Path) -> tuple[int, list[tuple[Path, str]]]:
    """Try to read every image under `root`; return (number checked, [(path, error), ...])."""
    bad = []
    paths = find_images(root)
    for path in paths:
        try:
            read_rgb(path)
        except BplabError as exc:
            bad.append((path, str(exc)))
    return len(paths), bad
