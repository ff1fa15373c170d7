"""Single-label classification metrics on NumPy arrays or logits tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def accuracy_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Return ``{"accuracy": ...}`` for logits (N, C) and class indices (N,); higher is better."""
    if len(targets) == 0:
        return {"accuracy": float("nan")}
    correct = (logits.argmax(dim=1) == targets).sum().item()
    return {"accuracy": correct / len(targets)}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Return counts of shape (C, C): row = true class, column = predicted class."""
    index = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray,
                          class_names: Sequence[str]) -> dict:
    """Return accuracy and per-class precision, recall, F1 and support, with macro/weighted means.

    A class that is never predicted has precision 0 (and one with no samples recall 0), as in
    scikit-learn's ``zero_division=0``.
    """
    num_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    true_pos = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
    weights = support / max(1, support.sum())
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(true_pos.sum() / max(1, cm.sum())),
        "per_class": per_class,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                  "f1": float(f1.mean())},
        "weighted": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                     "f1": float(f1 @ weights)},
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict) -> str:
    """Format a `classification_report` as a text table (precision, recall, F1, support)."""
    names = list(report["per_class"])
    width = max(12, *(len(n) for n in names))
    lines = [f"{'':>{width}}  precision  recall      f1  support"]
    for name, row in report["per_class"].items():
        lines.append(f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {row['support']:7d}")
    total = sum(row["support"] for row in report["per_class"].values())
    for avg in ("macro", "weighted"):
        row = report[avg]
        lines.append(f"{avg + ' avg':>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {total:7d}")
    lines.append(f"{'accuracy':>{width}}  {report['accuracy']:.4f}")
    return "\n".join(lines)
