"""Plots shared by the experiments: pure functions from saved arrays or metrics to Figures.

Nothing here trains or reads run folders; callers pass data in and save with `save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save `fig` to `path` and close it; return the path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(records: Sequence[dict], loss_keys=("loss", "val_loss"),
                acc_keys=("train_accuracy", "val_accuracy")) -> Figure:
    """Plot loss and accuracy per epoch from metrics records (one dict per epoch).

    Keys that no record has are skipped, so the same function serves every experiment.
    """
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, keys, title in ((ax_loss, loss_keys, "loss (lower is better)"),
                            (ax_acc, acc_keys, "accuracy (higher is better)")):
        for key in keys:
            values = [r.get(key) for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str],
                          title: str = "confusion matrix") -> Figure:
    """Plot a confusion matrix of shape (C, C), rows true and columns predicted, with counts."""
    cm = np.asarray(cm)
    n = len(class_names)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def plot_image_grid(images: np.ndarray, titles: Sequence[str], ncols: int = 8,
                    title: str | None = None) -> Figure:
    """Plot images of shape (N, H, W) or (N, H, W, 3) in a grid, each with a short title."""
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
