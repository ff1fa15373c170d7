"""Decision-boundary pictures for 2-D classifiers: a still image and an animated GIF."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from bplab.report.plots import plt


def make_grid(points: np.ndarray, resolution: int = 150, margin: float = 0.5):
    """Return ``(xx, yy, grid)``: a mesh around `points` of shape (N, 2) and its (R*R, 2) points."""
    low = points.min(axis=0) - margin
    high = points.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], resolution),
                         np.linspace(low[1], high[1], resolution))
    return xx, yy, np.column_stack([xx.ravel(), yy.ravel()])


def plot_decision_boundary(
    xx: np.ndarray, yy: np.ndarray, prob: np.ndarray,
    x_train: np.ndarray, y_train: np.ndarray, pred_train: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray, pred_test: np.ndarray,
    title: str = "",
) -> Figure:
    """Plot P(class 1) over the mesh with train (circles) and test (triangles) points.

    Misclassified points get a red ring. `prob` has the mesh's shape; `pred_*` are predicted labels.
    """
    fig, ax = plt.subplots(figsize=(6, 5))
    contour = ax.contourf(xx, yy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
    ax.contour(xx, yy, prob, levels=[0.5], colors="black", linewidths=1.2)
    fig.colorbar(contour, ax=ax, label="P(class 1)")
    colors = np.array(["#1f4e99", "#b2182b"])
    ax.scatter(x_train[:, 0], x_train[:, 1], c=colors[y_train], marker="o", s=18,
               edgecolors="white", linewidths=0.4, label="train")
    ax.scatter(x_test[:, 0], x_test[:, 1], c=colors[y_test], marker="^", s=34,
               edgecolors="black", linewidths=0.6, label="test")
    wrong = np.concatenate([x_train[pred_train != y_train], x_test[pred_test != y_test]])
    if len(wrong):
        ax.scatter(wrong[:, 0], wrong[:, 1], s=140, facecolors="none", edgecolors="red",
                   linewidths=1.5, label=f"misclassified ({len(wrong)})")
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def boundary_frame(xx: np.ndarray, yy: np.ndarray, prob: np.ndarray, x: np.ndarray,
                   y: np.ndarray, title: str) -> Figure:
    """Plot one small animation frame: P(class 1) over the mesh and the training points."""
    fig, ax = plt.subplots(figsize=(4, 3.4))
    ax.contourf(xx, yy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
    ax.contour(xx, yy, prob, levels=[0.5], colors="black", linewidths=1)
    ax.scatter(x[:, 0], x[:, 1], c=np.array(["#1f4e99", "#b2182b"])[y], s=8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def save_gif(figures: Iterable[Figure], path: str | Path, frame_ms: int = 120) -> Path:
    """Render figures (closing each one) and save them as a looping GIF whose last frame lingers."""
    frames = []
    for fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        buffer.seek(0)
        frames.append(Image.open(buffer).convert("P", palette=Image.Palette.ADAPTIVE))
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 10]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path
