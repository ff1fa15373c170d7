"""Figures of a hyperparameter study: one per factor, from aggregated results and saved curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from bplab.report.plots import plt


def plot_factor(factor: str, entries: Sequence[dict],
                curves: Mapping[str, Sequence[Sequence[dict]]]) -> Figure:
    """Plot one factor: test accuracy per level with error bars, and the learning curves.

    Parameters
    ----------
    factor : str
        The factor's name, used in the titles.
    entries : sequence of dict
        One per level, with "level", "test_accuracy_mean", "test_accuracy_std", "n" and
        "diverged" (as ``bplab.experiments.study.aggregate`` returns them).
    curves : mapping of level label to a list of runs
        Each run is its list of per-epoch records with "epoch" and "val_accuracy". The curve
        drawn is the mean over runs, with a band of one standard deviation. Diverged runs have
        no records and are left out.
    """
    fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [e["level"] for e in entries]
    means = np.array([100 * e["test_accuracy_mean"] for e in entries], dtype=float)
    stds = np.array([100 * e["test_accuracy_std"] for e in entries], dtype=float)
    positions = np.arange(len(entries))
    finite = np.isfinite(means)
    ax_bar.errorbar(positions[finite], means[finite], yerr=stds[finite], fmt="o", capsize=4)
    lowest = float(np.nanmin(means)) if finite.any() else 0.0
    for pos, entry in zip(positions, entries):
        if not entry["diverged"]:
            continue
        # A level whose every seed diverged has no mean, so its note sits at the lowest mean.
        y = means[pos] if math.isfinite(means[pos]) else lowest
        ax_bar.annotate(f"{entry['diverged']}/{entry['n']} diverged", (pos, y),
                        textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7,
                        color="tab:red")
    ax_bar.set_xticks(positions, labels, rotation=20, ha="right")
    ax_bar.set_ylabel("test accuracy % (higher is better)")
    ax_bar.set_title(f"{factor}: mean ± std over seeds")
    ax_bar.grid(alpha=0.3)

    for label, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        # The x axis is the share of the run done, so runs of 8 epochs and of 100 full-batch
        # steps fit on one axis.
        length = min(len(r) for r in runs)
        progress = [rec["epoch"] / length for rec in runs[0][:length]]
        values = 100 * np.array([[rec["val_accuracy"] for rec in r[:length]] for r in runs])
        mean = values.mean(axis=0)
        (line,) = ax_curve.plot(progress, mean, marker=".", label=label)
        if len(runs) > 1:
            std = values.std(axis=0, ddof=1)
            ax_curve.fill_between(progress, mean - std, mean + std, alpha=0.15,
                                  color=line.get_color())
    ax_curve.set_xlabel("share of the run's epochs (full-batch runs: steps)")
    ax_curve.set_ylabel("validation accuracy % (higher is better)")
    ax_curve.set_title(f"{factor}: learning curves")
    ax_curve.grid(alpha=0.3)
    if ax_curve.get_legend_handles_labels()[0]:
        ax_curve.legend(fontsize=8)
    fig.tight_layout()
    return fig
