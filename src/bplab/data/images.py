"""Class-per-folder image datasets, from a folder tree or straight from a tar archive.

The layout is ``<root>/<split>/<class>/<image>.png|jpg|jpeg``: each subfolder is a class, and
labels are the indices of the class names in sorted order. CIFAR-10 ships in this layout as
``cifar10-jpeg/{train,test}.tar.gz`` (members ``<split>/<class>/NNNN.jpg``); ``load_cifar10``
reads the archive without extracting it and keeps the decoded arrays as a ``.npz`` cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from bplab.data.download import cache_dir, make_readable, writable_cache_dir
from bplab.errors import BplabError, unknown_name_error

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# PIL modes that hold one channel; images in these modes are loaded as grayscale.
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SPLITS = ("train", "test")
CIFAR10_FOLDER = "cifar10-jpeg"
# Bump when the decoding changes, so that old .npz caches are not reused.
_CACHE_VERSION = 1


def load_image_folder(
    root: str | Path,
    split: str | None = None,
    size: int | tuple[int, int] | None = None,
    mode: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load every image of a class-per-folder tree into arrays.

    Parameters
    ----------
    root : str or Path
        The dataset folder.
    split : str, optional
        A subfolder such as ``"train"``; the classes are then ``<root>/<split>/<class>/``.
    size : int or (height, width), optional
        Resize every image to this size (bilinear). Without it all images must have one size.
    mode : {"RGB", "L"}, optional
        Colour or grayscale. By default grayscale when every image is single-channel, else RGB.

    Returns
    -------
    x : ndarray of shape (N, H, W, 3) for RGB or (N, H, W) for grayscale, uint8
    y : ndarray of shape (N,), int64
        Index of each image's class in ``class_names``.
    class_names : list of str
        The class folder names, sorted.

    Raises
    ------
    BplabError
        If the folder is missing or contains no class folders or no images, an image cannot be
        decoded (the message names it), or the images differ in size and ``size`` is not given.
    """
    if mode not in (None, "RGB", "L"):
        raise unknown_name_error("image mode", str(mode), ("RGB", "L"))
    folder = Path(root) / split if split else Path(root)
    if not folder.is_dir():
        raise BplabError(f"{folder}: image folder not found")

    class_names = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if not class_names:
        raise BplabError(f"{folder}: no class subfolders; expected <class>/<image>.png|jpg")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(
            path for path in (folder / name).iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            logger.warning("%s: no .png/.jpg/.jpeg images in class folder", folder / name)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise BplabError(f"{folder}: no .png/.jpg/.jpeg images in its class folders")

    x = _decode_all([(str(path), path.read_bytes) for path in paths], size, mode)
    return x, np.asarray(labels, dtype=np.int64), class_names


def load_cifar10(
    split: str = "train",
    data_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-10 from ``<data_dir>/cifar10-jpeg/<split>.tar.gz``.

    The first call decodes the JPEGs from the archive and saves the arrays as a ``.npz`` in
    ``writable_cache_dir()``, keyed by the archive's SHA-256; later calls read that file.

    Parameters
    ----------
    split : {"train", "test"}
        50,000 training or 10,000 test images.
    data_dir : str or Path, optional
        The data root holding ``cifar10-jpeg/``; defaults to ``cache_dir()``.
    use_cache : bool
        Read and write the ``.npz`` cache.

    Returns
    -------
    x : ndarray of shape (N, 32, 32, 3), uint8
    y : ndarray of shape (N,), int64
        Index into ``CIFAR10_CLASSES``.
    """
    if split not in CIFAR10_SPLITS:
        raise unknown_name_error("split", split, CIFAR10_SPLITS)
    root = Path(data_dir).expanduser().absolute() if data_dir else cache_dir()
    archive = root / CIFAR10_FOLDER / f"{split}.tar.gz"
    if not archive.is_file():
        raise BplabError(
            f"CIFAR-10 archive not found: {archive}; put train.tar.gz and test.tar.gz "
            f"(members <split>/<class>/NNNN.jpg) in {archive.parent}/ or set BPLAB_DATA_DIR"
        )

    cache_path = None
    if use_cache:
        digest = _sha256(archive)[:16]
        cache_path = (writable_cache_dir() / "arrays"
                      / f"cifar10-{split}-{digest}-v{_CACHE_VERSION}.npz")
        if cache_path.is_file():
            with np.load(cache_path) as arrays:
                logger.debug("%s: loaded decoded arrays from %s", archive, cache_path)
                return arrays["x"], arrays["y"]

    x, y, names = load_image_tar(archive, split, mode="RGB")
    unknown = set(names) - set(CIFAR10_CLASSES)
    if unknown:
        raise BplabError(
            f"{archive}: unknown CIFAR-10 class folder(s) {', '.join(sorted(unknown))}; "
            f"valid classes: {', '.join(CIFAR10_CLASSES)}"
        )
    if x.shape[1:] != (32, 32, 3):
        raise BplabError(f"{archive}: expected 32x32 RGB images, got shape {x.shape[1:]}")
    # Map the labels from the sorted names found to indices into the full class list.
    y = np.asarray([CIFAR10_CLASSES.index(name) for name in names], dtype=np.int64)[y]

    if cache_path is not None:
        _save_npz_atomically(cache_path, x=x, y=y)
        logger.info("cached decoded %s split at %s", split, cache_path)
    return x, y


def load_image_tar(
    archive: str | Path,
    split: str | None = None,
    size: int | tuple[int, int] | None = None,
    mode: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a class-per-folder tree straight from a tar archive (``.tar``, ``.tar.gz``, ...).

    Members must be ``[<split>/]<class>/<image>.png|jpg|jpeg``; other members are ignored.
    Arguments and return values are those of ``load_image_folder``.
    """
    archive = Path(archive)
    if mode not in (None, "RGB", "L"):
        raise unknown_name_error("image mode", str(mode), ("RGB", "L"))
    depth = 3 if split else 2
    entries: list[tuple[str, str, bytes]] = []  # (class, member name, file bytes)
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if (not member.isfile() or len(parts) != depth
                        or (split and parts[0] != split)
                        or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES):
                    continue
                data = tar.extractfile(member).read()
                entries.append((parts[-2], member.name, data))
    except FileNotFoundError:
        raise BplabError(f"{archive}: archive not found") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BplabError(f"{archive}: cannot read tar archive ({exc}); the file is corrupt "
                         f"or truncated") from None
    if not entries:
        prefix = f"{split}/" if split else ""
        raise BplabError(f"{archive}: no members {prefix}<class>/<image>.png|jpg found")

    entries.sort(key=lambda entry: (entry[0], entry[1]))
    class_names = sorted({entry[0] for entry in entries})
    label_of = {name: label for label, name in enumerate(class_names)}
    sources = [(f"{archive}:{member}", _constant(data)) for _, member, data in entries]
    x = _decode_all(sources, size, mode)
    y = np.asarray([label_of[entry[0]] for entry in entries], dtype=np.int64)
    return x, y, class_names


def _decode_all(sources: list[tuple[str, Callable[[], bytes]]], size, mode: str | None
                ) -> np.ndarray:
    """Decode images, convert them to one mode and size, and fill one uint8 array.

    ``sources`` contains (name for messages, function returning the file bytes) pairs. Images are
    decoded one at a time into a preallocated array, so memory peaks at about the output size.
    """
    if mode is None:
        # Opening an image reads only its header, which is enough to learn its mode.
        modes = {_open(read_bytes, name, load=False).mode for name, read_bytes in sources}
        mode = "L" if modes <= GRAYSCALE_MODES else "RGB"
    if isinstance(size, int):
        size = (size, size)

    x = None
    first_name = sources[0][0]
    for index, (name, read_bytes) in enumerate(tqdm(sources, desc="decoding images", unit="img",
                                                    disable=None, leave=False)):
        image = _open(read_bytes, name, load=True).convert(mode)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        if x is None:
            x = np.empty((len(sources), *array.shape), dtype=np.uint8)
        elif array.shape != x.shape[1:]:
            raise BplabError(
                f"{name}: image is {array.shape[1]}x{array.shape[0]} but {first_name} is "
                f"{x.shape[2]}x{x.shape[1]}; pass size to resize them all"
            )
        x[index] = array
    return x


def _open(read_bytes: Callable[[], bytes], name: str, load: bool) -> Image.Image:
    """Open one image (and decode it fully when ``load``); raise BplabError naming a bad one."""
    try:
        image = Image.open(io.BytesIO(read_bytes()))
        if load:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BplabError(f"{name}: cannot decode image ({exc})") from None
    return image


def _constant(data: bytes) -> Callable[[], bytes]:
    """Return a function that returns ``data`` (the file bytes of a tar member read earlier)."""
    return lambda: data


def _sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` through a temporary file, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
        make_readable(Path(tmp_name))
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
