"""Multi-label figures: per-class PR curves, an AP bar chart, test images with their labels.

Pure functions from arrays to matplotlib Figures; save them with `bplab.report.plots.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from bplab.report.plots import plot_image_grid, plt
from bplab.training.multilabel import apply_difficult_policy, precision_recall_points


def plot_pr_curves(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                   ap: dict[str, float | None] | None = None, ncols: int = 5) -> Figure:
    """Plot one precision-recall curve per class from probs and three-state targets (N, C).

    Difficult entries (-1) are left out. `ap` (class -> AP) adds the value to each title.
    """
    n = len(class_names)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    binary, mask = apply_difficult_policy(targets, "ignore")
    for c, (ax, name) in enumerate(zip(axes.flat, class_names, strict=False)):
        labels = binary[:, c][mask[:, c]]
        title = name
        if labels.sum() > 0:
            precision, recall, _ = precision_recall_points(probs[:, c][mask[:, c]], labels)
            ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post")
            if ap and ap.get(name) is not None:
                title = f"{name} AP {ap[name]:.3f}"
        else:
            title = f"{name} (no positives)"
        ax.set_title(title, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    fig.supxlabel("recall")
    fig.supylabel("precision")
    fig.tight_layout()
    return fig


def plot_ap_bars(ap: dict[str, float | None], variant: str, mean_ap: float | None = None) -> Figure:
    """Plot a horizontal bar per class with its AP under `variant` (higher is better)."""
    names = list(ap)
    values = [np.nan if ap[name] is None else ap[name] for name in names]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1.2))
    ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    for i, value in enumerate(values):
        if np.isfinite(value):
            ax.text(min(value, 0.98), i, f" {value:.3f}", va="center", ha="right", fontsize=7,
                    color="white")
    title = f"AP per class ({variant}, higher is better)"
    if mean_ap is not None:
        title += f"\nmAP {mean_ap:.4f}"
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def label_titles(pred: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Return one "P: ... / T: ..." title per image from predictions and targets (N, C)."""
    titles = []
    for pred_row, true_row in zip(pred, targets, strict=True):
        predicted = ",".join(n for n, p in zip(class_names, pred_row, strict=True) if p) or "-"
        true = ",".join(n for n, t in zip(class_names, true_row, strict=True) if t == 1) or "-"
        titles.append(f"P: {predicted}\nT: {true}")
    return titles


def plot_prediction_grid(images: np.ndarray, pred: np.ndarray, targets: np.ndarray,
                         class_names: Sequence[str], ncols: int = 6) -> Figure:
    """Plot images (N, H, W, 3) titled with predicted (P) and true (T) labels."""
    return plot_image_grid(images, label_titles(pred, targets, class_names), ncols=ncols,
                           title="test images: P = predicted, T = true")
