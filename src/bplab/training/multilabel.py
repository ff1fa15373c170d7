"""Multi-label metrics: average precision in three named variants, thresholded scores, thresholds.

Targets use three states, shape (N, C): 1 = positive, 0 = negative, -1 = difficult (in VOC an
image whose only objects of a class are marked difficult). The VOC protocol leaves difficult
entries out of the evaluation, and so does every function here by default.

AP variants, all computed from the same precision/recall points (one point per distinct score, so
tied scores count together and the result does not depend on the order of ties):

- ``voc07_11point``: mean over recall levels 0, 0.1, ..., 1 of the maximum precision at recall
  >= that level (the VOC2007 devkit).
- ``voc_allpoint``: area under the precision envelope (precision made non-increasing in recall),
  summed at every recall change (the VOC2010+ devkit).
- ``noninterp``: sum over thresholds of (recall change) x precision, with no envelope; this is the
  mean precision at the ranks of the positives used by the multi-label papers, and equals
  ``sklearn.metrics.average_precision_score``.
"""

from __future__ import annotations

import numpy as np

from bplab.errors import BplabError, unknown_name_error

POSITIVE, NEGATIVE, DIFFICULT = 1, 0, -1
DIFFICULT_POLICIES = ("ignore", "positive", "negative")


def _check_inputs(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    """Return scores and targets as 2-D arrays of equal shape, or raise a BplabError."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim == 1:
        scores = scores[:, None]
        targets = targets.reshape(-1, 1)
    if scores.shape != targets.shape:
        raise BplabError(
            f"scores shape {scores.shape} does not match targets shape {targets.shape}")
    if not np.all(np.isfinite(scores)):
        raise BplabError("scores contain NaN or infinite values")
    bad = ~np.isin(targets, (POSITIVE, NEGATIVE, DIFFICULT))
    if bad.any():
        raise BplabError(f"targets must be 1, 0 or -1 (difficult); found {targets[bad][0]!r}")
    return scores, targets.astype(np.int64)


def apply_difficult_policy(targets, policy: str = "ignore") -> tuple[np.ndarray, np.ndarray]:
    """Resolve difficult entries; return (binary targets, mask of entries that count).

    ``ignore`` leaves difficult entries out (mask False), ``positive`` and ``negative`` count them
    as that label.
    """
    targets = np.asarray(targets)
    if policy not in DIFFICULT_POLICIES:
        raise unknown_name_error("difficult policy", policy, DIFFICULT_POLICIES)
    difficult = targets == DIFFICULT
    binary = (targets == POSITIVE).astype(np.int64)
    mask = np.ones(targets.shape, dtype=bool)
    if policy == "ignore":
        mask = ~difficult
    elif policy == "positive":
        binary[difficult] = 1
    return binary, mask


def precision_recall_points(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (precision, recall, thresholds) at each distinct score, from the highest down.

    `scores` and binary `labels` have shape (N,). Entry k counts every item whose score is at
    least thresholds[k]. With no positives, recall is undefined and a BplabError is raised.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise BplabError("average precision is undefined for a class with no positives")
    order = np.argsort(-scores, kind="mergesort")
    scores = scores[order]
    labels = labels[order]
    # the last index of each run of equal scores closes one threshold
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return precision, recall, scores[last]


def _ap_noninterp(precision: np.ndarray, recall: np.ndarray) -> float:
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def _ap_allpoint(precision: np.ndarray, recall: np.ndarray) -> float:
    # envelope: at each recall, the maximum precision at that recall or beyond
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * envelope))


def _ap_11point(precision: np.ndarray, recall: np.ndarray) -> float:
    total = 0.0
    for level in np.linspace(0.0, 1.0, 11):
        reached = recall >= level - 1e-12
        total += precision[reached].max() if reached.any() else 0.0
    return total / 11.0


AP_VARIANTS = {
    "voc07_11point": _ap_11point,
    "voc_allpoint": _ap_allpoint,
    "noninterp": _ap_noninterp,
}


def average_precision(scores, targets, variant: str = "voc_allpoint",
                      difficult: str = "ignore") -> float:
    """Return the AP of one class.

    Parameters
    ----------
    scores : array of shape (N,)
        Higher means more likely positive (probabilities or logits).
    targets : array of shape (N,)
        1 positive, 0 negative, -1 difficult.
    variant : str
        One of ``AP_VARIANTS``: voc07_11point, voc_allpoint, noninterp.
    difficult : str
        ``ignore`` (the VOC protocol), ``positive`` or ``negative``.
    """
    if variant not in AP_VARIANTS:
        raise unknown_name_error("AP variant", variant, AP_VARIANTS)
    scores, targets = _check_inputs(scores, targets)
    binary, mask = apply_difficult_policy(targets[:, 0], difficult)
    precision, recall, _ = precision_recall_points(scores[:, 0][mask], binary[mask])
    return AP_VARIANTS[variant](precision, recall)


def per_class_ap(scores, targets, variant: str = "voc_allpoint",
                 difficult: str = "ignore") -> np.ndarray:
    """Return the AP of each class, shape (C,); NaN for a class with no positives."""
    scores, targets = _check_inputs(scores, targets)
    result = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        binary, mask = apply_difficult_policy(targets[:, c], difficult)
        if binary[mask].sum() == 0:
            continue
        result[c] = average_precision(scores[:, c], targets[:, c], variant, difficult)
    return result


def mean_average_precision(scores, targets, variant: str = "voc_allpoint",
                           difficult: str = "ignore") -> float:
    """Return mAP: the mean of `per_class_ap` over classes that have positives."""
    ap = per_class_ap(scores, targets, variant, difficult)
    if np.all(np.isnan(ap)):
        raise BplabError("mAP is undefined: no class has a positive example")
    return float(np.nanmean(ap))


def _as_thresholds(thresholds, n_classes: int) -> np.ndarray:
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n_classes,))
    return np.array(thresholds)


def _divide(num, den) -> np.ndarray:
    """Divide elementwise, with 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _f1(precision, recall) -> np.ndarray:
    return _divide(2 * precision * recall, precision + recall)


def confusion_counts(probs, targets, thresholds=0.5,
                     difficult: str = "ignore") -> dict[str, np.ndarray]:
    """Return per-class tp, fp, fn and support (each shape (C,)), predicting probs >= threshold."""
    probs, targets = _check_inputs(probs, targets)
    pred = probs >= _as_thresholds(thresholds, probs.shape[1])
    binary, mask = apply_difficult_policy(targets, difficult)
    truth = binary.astype(bool)
    return {
        "tp": np.sum(pred & truth & mask, axis=0),
        "fp": np.sum(pred & ~truth & mask, axis=0),
        "fn": np.sum(~pred & truth & mask, axis=0),
        "support": np.sum(truth & mask, axis=0),
    }


def thresholded_metrics(probs, targets, thresholds=0.5, difficult: str = "ignore") -> dict:
    """Return per-class precision/recall/F1 and the CP/CR/CF1 and OP/OR/OF1 summaries.

    CP and CR average the per-class precision and recall over classes (macro), and CF1 is their
    harmonic mean; OP, OR and OF1 pool the counts of all classes (micro). This is the convention of
    the multi-label classification papers (e.g. ML-GCN). A class with no predictions has
    precision 0.
    """
    counts = confusion_counts(probs, targets, thresholds, difficult)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = _divide(tp, tp + fp)
    recall = _divide(tp, tp + fn)
    cp, cr = float(precision.mean()), float(recall.mean())
    op = float(_divide(tp.sum(), tp.sum() + fp.sum()))
    orr = float(_divide(tp.sum(), tp.sum() + fn.sum()))
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "support": counts["support"],
        "CP": cp, "CR": cr, "CF1": float(_f1(cp, cr)),
        "OP": op, "OR": orr, "OF1": float(_f1(op, orr)),
    }


def classification_report(probs, targets, class_names, thresholds=0.5,
                          difficult: str = "ignore") -> dict:
    """Return per-class precision/recall/F1/support and micro, macro, weighted and samples averages.

    The numbers equal ``sklearn.metrics.precision_recall_fscore_support`` with zero_division=0 when
    there are no difficult entries; difficult entries are left out of every count.
    """
    probs, targets = _check_inputs(probs, targets)
    if len(class_names) != probs.shape[1]:
        raise BplabError(f"{len(class_names)} class names for {probs.shape[1]} score columns")
    metrics = thresholded_metrics(probs, targets, thresholds, difficult)
    counts = confusion_counts(probs, targets, thresholds, difficult)
    support = counts["support"]
    report = {}
    for c, name in enumerate(class_names):
        report[name] = {"precision": float(metrics["precision"][c]),
                        "recall": float(metrics["recall"][c]),
                        "f1": float(metrics["f1"][c]), "support": int(support[c])}
    total = int(support.sum())
    report["micro avg"] = {"precision": metrics["OP"], "recall": metrics["OR"],
                           "f1": metrics["OF1"], "support": total}
    report["macro avg"] = {"precision": metrics["CP"], "recall": metrics["CR"],
                           "f1": float(metrics["f1"].mean()), "support": total}
    weights = support / total if total else np.zeros_like(support, dtype=np.float64)
    report["weighted avg"] = {
        "precision": float(np.sum(weights * metrics["precision"])),
        "recall": float(np.sum(weights * metrics["recall"])),
        "f1": float(np.sum(weights * metrics["f1"])), "support": total}

    # samples average: precision/recall/F1 of each image's label set, then the mean over images
    pred = probs >= _as_thresholds(thresholds, probs.shape[1])
    binary, mask = apply_difficult_policy(targets, difficult)
    truth = binary.astype(bool)
    hits = np.sum(pred & truth & mask, axis=1)
    n_pred = np.sum(pred & mask, axis=1)
    n_true = np.sum(truth & mask, axis=1)
    report["samples avg"] = {
        "precision": float(_divide(hits, n_pred).mean()),
        "recall": float(_divide(hits, n_true).mean()),
        "f1": float(_divide(2 * hits, n_pred + n_true).mean()), "support": total}
    return report


def format_classification_report(report: dict, digits: int = 3) -> str:
    """Format a `classification_report` dict as a text table, one row per class and average."""
    width = max(len(name) for name in report) + 2
    lines = [f"{'':<{width}}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}", ""]
    for name, row in report.items():
        if name == "micro avg":
            lines.append("")
        lines.append(f"{name:<{width}}{row['precision']:>10.{digits}f}{row['recall']:>10.{digits}f}"
                     f"{row['f1']:>10.{digits}f}{row['support']:>10d}")
    return "\n".join(lines)


def tune_thresholds(probs, targets, default=0.5, difficult: str = "ignore") -> np.ndarray:
    """Choose one threshold per class maximizing that class's F1 on (validation) data.

    Candidates are the distinct scores; a threshold t predicts positive when prob >= t, and the
    returned value is the midpoint between the best candidate and the next lower score, so that
    test scores a little below the best validation positive still count. A class with no positives
    keeps its `default` (a number, or one per class). Returns an array of shape (C,).
    """
    probs, targets = _check_inputs(probs, targets)
    binary, mask = apply_difficult_policy(targets, difficult)
    thresholds = _as_thresholds(default, probs.shape[1])
    for c in range(probs.shape[1]):
        scores, labels = probs[:, c][mask[:, c]], binary[:, c][mask[:, c]]
        if labels.sum() == 0:
            continue
        precision, recall, candidates = precision_recall_points(scores, labels)
        f1 = _f1(precision, recall)
        best = int(np.argmax(f1))
        below = scores[scores < candidates[best]]
        thresholds[c] = (candidates[best] + below.max()) / 2 if below.size else candidates[best]
    return thresholds


def pos_weight_threshold(threshold, pos_weight) -> np.ndarray:
    """Return the threshold on sigmoid outputs of a model trained with BCE `pos_weight`.

    Weighting positives by w moves the loss minimum from sigmoid = p to w p / (w p + 1 - p), so a
    decision at probability t becomes a decision at w t / (w t + 1 - t). With w = 1 it is t.
    """
    t = np.asarray(threshold, dtype=np.float64)
    w = np.asarray(pos_weight, dtype=np.float64)
    return w * t / (w * t + 1.0 - t)


def evaluate_multilabel(probs, targets, class_names, thresholds=0.5,
                        difficult: str = "ignore") -> dict:
    """Return every metric in one JSON-ready dict: AP per class and mAP for each variant, and the
    thresholded metrics and classification report at `thresholds`."""
    probs, targets = _check_inputs(probs, targets)
    result: dict = {"difficult_policy": difficult, "ap": {}, "mAP": {}}
    for variant in AP_VARIANTS:
        ap = per_class_ap(probs, targets, variant, difficult)
        result["ap"][variant] = {name: (None if np.isnan(v) else float(v))
                                 for name, v in zip(class_names, ap, strict=True)}
        result["mAP"][variant] = float(np.nanmean(ap)) if not np.all(np.isnan(ap)) else None
    metrics = thresholded_metrics(probs, targets, thresholds, difficult)
    for key in ("CP", "CR", "CF1", "OP", "OR", "OF1"):
        result[key] = metrics[key]
    result["thresholds"] = _as_thresholds(thresholds, probs.shape[1]).tolist()
    result["report"] = classification_report(probs, targets, class_names, thresholds, difficult)
    return result
