"""MNIST and Fashion-MNIST: 28x28 grayscale images in 10 classes, read from their IDX files.

The files are looked up in ``<data_dir>/<name>/`` (``data_dir`` defaults to ``cache_dir()``,
i.e. ``$BPLAB_DATA_DIR`` or the user cache dir), under their published names with or without
``.gz``, and downloaded there when missing. The validation split is carved from the training
set with a seeded permutation; the test split is kept for the final number only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bplab.data.download import cache_dir, dataset_specs, ensure_dataset, find_local_copy
from bplab.data.idx import read_idx
from bplab.errors import BplabError, unknown_name_error

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}
SPLITS = ("train", "test")
# The IDX files keep the original names: "train-*" for the training set, "t10k-*" for the test set.
_FILE_PREFIX = {"train": "train", "test": "t10k"}


def load_mnist(
    name: str = "mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST or Fashion-MNIST, downloading the files when missing.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    split : {"train", "test"}
        60,000 training or 10,000 test images.
    data_dir : str or Path, optional
        The data root holding ``<name>/``; defaults to ``cache_dir()``.

    Returns
    -------
    x : ndarray of shape (N, 28, 28), uint8
        Pixel values 0..255, white digit (or garment) on black.
    y : ndarray of shape (N,), int64
        Class indices 0..9; ``CLASS_NAMES[name][y]`` gives the names.
    """
    if name not in CLASS_NAMES:
        raise unknown_name_error("dataset", name, CLASS_NAMES)
    if split not in SPLITS:
        raise unknown_name_error("split", split, SPLITS)

    root = Path(data_dir).expanduser().absolute() if data_dir else cache_dir()
    images_path = _find_file(name, f"{_FILE_PREFIX[split]}-images-idx3-ubyte.gz", root)
    labels_path = _find_file(name, f"{_FILE_PREFIX[split]}-labels-idx1-ubyte.gz", root)

    x = read_idx(images_path, expected_ndim=3)
    y = read_idx(labels_path, expected_ndim=1)
    if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
        raise BplabError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {x.dtype} {x.shape}"
        )
    if len(x) != len(y):
        raise BplabError(
            f"{images_path} has {len(x)} images but {labels_path} has {len(y)} labels; "
            f"one of them is from another dataset or split"
        )
    if y.size and (y.min() < 0 or y.max() > 9):
        raise BplabError(f"{labels_path}: labels must be 0..9, found {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def _find_file(name: str, filename: str, root: Path) -> Path:
    """Return the path of one IDX file (``.gz`` or decompressed), downloading the set if needed."""
    spec = next(spec for spec in dataset_specs(name) if spec.filename == filename)
    folder = root / name
    local = find_local_copy(spec, folder)
    if local is None:
        ensure_dataset(name, root=root)
        local = find_local_copy(spec, folder)
    assert local is not None, "ensure_dataset returned without the file"
    return local


def train_val_split(
    x: np.ndarray,
    y: np.ndarray,
    val_size: int = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split a training set into train and validation parts with a seeded permutation.

    Parameters
    ----------
    x : ndarray of shape (N, ...)
    y : ndarray of shape (N,)
    val_size : int
        Number of validation samples, 0 < val_size < N (5,000 of MNIST's 60,000 by default).
    seed : int
        Seed of the permutation; the same seed gives the same split.

    Returns
    -------
    x_train, y_train, x_val, y_val
        ``N - val_size`` and ``val_size`` samples; each keeps the original order of its indices.
    """
    n = len(x)
    if len(y) != n:
        raise BplabError(f"x has {n} samples but y has {len(y)}")
    if not 0 < val_size < n:
        raise BplabError(f"val_size must be between 1 and {n - 1} for {n} samples, got {val_size}")

    order = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(order[:val_size])
    train_idx = np.sort(order[val_size:])
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]
