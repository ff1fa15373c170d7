"""The two-moons set from scikit-learn, split into train, val and test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

from bplab.errors import BplabError


@dataclass
class Splits:
    """Arrays of one dataset split three ways; `x_val` and `y_val` are empty when val_fraction is 0."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_moons(n: int, noise: float, seed: int, val_fraction: float = 0.2,
               test_fraction: float = 0.2) -> Splits:
    """Draw `n` two-moons points and split them, stratified by class.

    Parameters
    ----------
    n : int
        Total number of points (at least 10).
    noise : float
        Standard deviation of the Gaussian noise added to the points (>= 0).
    seed : int
        Seeds both the points and the split.
    val_fraction, test_fraction : float
        Shares of `n` kept for validation and for the final test.

    Returns
    -------
    Splits
        x arrays of shape (n_split, 2) float64, y arrays of shape (n_split,) int64.
    """
    if n < 10:
        raise BplabError(f"invalid number of points {n}: need at least 10")
    if not (noise >= 0 and math.isfinite(noise)):
        raise BplabError(f"invalid noise {noise}: expected a finite number >= 0")
    # scikit-learn accepts integer seeds in [0, 2**32 - 1] only.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise BplabError(f"invalid seed {seed!r}: expected an integer from 0 to 2**32 - 1")
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise BplabError(f"invalid split fractions val={val_fraction}, test={test_fraction}: "
                         "each in [0, 1) with a sum below 1")
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    y = y.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    if val_fraction == 0:
        empty_x, empty_y = np.empty((0, 2)), np.empty((0,), dtype=np.int64)
        return Splits(x_rest, y_rest, empty_x, empty_y, x_test, y_test)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
        stratify=y_rest)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)
