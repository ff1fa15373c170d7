"""Multi-label metrics: AP variants, difficult policies, CP/CR/CF1, OP/OR/OF1, thresholds."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from bplab.errors import BplabError
from bplab.training.multilabel import (
    average_precision,
    classification_report,
    evaluate_multilabel,
    format_classification_report,
    mean_average_precision,
    per_class_ap,
    pos_weight_threshold,
    thresholded_metrics,
    tune_thresholds,
)

# Five images ranked by score; positives at ranks 1, 4, 5.
# precision/recall points: (1, 1/3) (1/2, 1/3) (1/3, 1/3) (1/2, 2/3) (3/5, 1)
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5]
LABELS = [1, 0, 0, 1, 1]


def test_ap_noninterpolated_by_hand():
    """Non-interpolated AP is the mean precision at the positives: (1 + 1/2 + 3/5) / 3."""
    assert average_precision(SCORES, LABELS, "noninterp") == pytest.approx(0.7)


def test_ap_allpoint_by_hand():
    """All-point AP uses the envelope, which lifts precision 1/2 at recall 2/3 to 3/5."""
    assert average_precision(SCORES, LABELS, "voc_allpoint") == pytest.approx((1 + 0.6 + 0.6) / 3)


def test_ap_11point_by_hand():
    """11-point AP: precision 1 at recall levels 0-0.3, 3/5 at the seven levels 0.4-1."""
    assert average_precision(SCORES, LABELS, "voc07_11point") == pytest.approx((4 + 7 * 0.6) / 11)


def test_ap_noninterp_equals_sklearn():
    """Non-interpolated AP equals sklearn's average_precision_score, ties included."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, size=40)
        labels[0] = 1
        scores = np.round(rng.random(40), 1)  # rounding makes ties
        expected = average_precision_score(labels, scores)
        assert average_precision(scores, labels, "noninterp") == pytest.approx(expected)


def test_ap_variants_order():
    """The envelope never lowers precision, so all-point AP >= non-interpolated AP."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.integers(0, 2, size=30)
        labels[0] = 1
        scores = rng.random(30)
        assert (average_precision(scores, labels, "voc_allpoint")
                >= average_precision(scores, labels, "noninterp") - 1e-12)


def test_ap_perfect_ranking_is_one():
    """Every variant gives AP 1 when all positives outrank all negatives."""
    for variant in ("voc07_11point", "voc_allpoint", "noninterp"):
        assert average_precision([0.9, 0.8, 0.1], [1, 1, 0], variant) == pytest.approx(1.0)


def test_difficult_policies_differ():
    """Difficult 0.9, positive 0.1, negative 0.5: ignore 1/2, positive 5/6, negative 1/3."""
    scores = [0.9, 0.1, 0.5]
    targets = [-1, 1, 0]
    assert average_precision(scores, targets, "noninterp", "ignore") == pytest.approx(1 / 2)
    assert average_precision(scores, targets, "noninterp", "positive") == pytest.approx(5 / 6)
    assert average_precision(scores, targets, "noninterp", "negative") == pytest.approx(1 / 3)


def test_difficult_default_is_ignore():
    """Without a policy argument the difficult image is left out, in AP and in mAP."""
    scores = np.array([[0.9], [0.1], [0.5]])
    targets = np.array([[-1], [1], [0]])
    for variant in ("voc07_11point", "voc_allpoint", "noninterp"):
        ignored = average_precision(scores[[1, 2], 0], targets[[1, 2], 0], variant)
        assert average_precision(scores[:, 0], targets[:, 0], variant) == pytest.approx(ignored)
        assert mean_average_precision(scores, targets, variant) == pytest.approx(ignored)


def test_difficult_positive_outranking_gives_one():
    """Positive 0.9, negative 0.1, difficult 0.5: the positive is first, so AP is 1 under every
    policy; the difficult image only matters when it outranks a positive."""
    scores = [0.9, 0.1, 0.5]
    targets = [1, 0, -1]
    for policy in ("ignore", "positive", "negative"):
        assert average_precision(scores, targets, "noninterp", policy) == pytest.approx(1.0)


def test_unknown_variant_and_policy():
    """An unknown AP variant or difficult policy lists the valid names."""
    with pytest.raises(BplabError, match="voc07_11point"):
        average_precision([0.5], [1], "area")
    with pytest.raises(BplabError, match="ignore"):
        average_precision([0.5], [1], "noninterp", "drop")


def test_ap_without_positives_rejected():
    """AP of a class with no positives is an error; per_class_ap marks it NaN and mAP skips it."""
    with pytest.raises(BplabError, match="no positives"):
        average_precision([0.5, 0.2], [0, 0])
    ap = per_class_ap(np.array([[0.5, 0.9], [0.2, 0.1]]), np.array([[0, 1], [0, 0]]))
    assert np.isnan(ap[0])
    assert ap[1] == pytest.approx(1.0)


def test_bad_targets_and_nan_rejected():
    """Targets other than 1/0/-1, NaN scores and shape mismatches raise BplabError."""
    with pytest.raises(BplabError, match="targets"):
        average_precision([0.5, 0.2], [2, 0])
    with pytest.raises(BplabError, match="NaN"):
        average_precision([np.nan, 0.2], [1, 0])
    with pytest.raises(BplabError, match="shape"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))


# Two classes, four images; threshold 0.5.
# class 0: predictions 1 1 0 0, truth 1 0 1 0 -> tp 1, fp 1, fn 1 -> P 1/2, R 1/2
# class 1: predictions 1 1 0 0, truth 1 1 0 1 -> tp 2, fp 0, fn 1 -> P 1, R 2/3
PROBS = np.array([[0.9, 0.8], [0.6, 0.7], [0.4, 0.3], [0.2, 0.1]])
TARGETS = np.array([[1, 1], [0, 1], [1, 0], [0, 1]])


def test_cp_cr_cf1_by_hand():
    """CP, CR average per-class precision/recall; CF1 is their harmonic mean."""
    m = thresholded_metrics(PROBS, TARGETS, 0.5)
    assert m["CP"] == pytest.approx(0.75)
    assert m["CR"] == pytest.approx(7 / 12)
    assert m["CF1"] == pytest.approx(21 / 32)


def test_op_or_of1_by_hand():
    """OP, OR pool the counts: tp 3, fp 1, fn 2."""
    m = thresholded_metrics(PROBS, TARGETS, 0.5)
    assert m["OP"] == pytest.approx(3 / 4)
    assert m["OR"] == pytest.approx(3 / 5)
    assert m["OF1"] == pytest.approx(2 / 3)


def test_thresholded_difficult_ignored():
    """A difficult entry counts neither as a false positive nor as a false negative."""
    targets = TARGETS.copy()
    targets[1, 0] = -1  # was a false positive for class 0
    m = thresholded_metrics(PROBS, targets, 0.5)
    assert m["precision"][0] == pytest.approx(1.0)
    assert m["support"][0] == 2


def test_per_class_thresholds():
    """A threshold per class is applied column by column."""
    m = thresholded_metrics(PROBS, TARGETS, [0.3, 0.05])
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["recall"][1] == pytest.approx(1.0)
    assert m["precision"][1] == pytest.approx(3 / 4)


def test_report_equals_sklearn():
    """Per-class rows and the micro/macro/weighted/samples averages equal scikit-learn's."""
    rng = np.random.default_rng(3)
    probs = rng.random((60, 5))
    targets = (rng.random((60, 5)) < 0.4).astype(int)
    names = [f"c{i}" for i in range(5)]
    report = classification_report(probs, targets, names, 0.5)
    pred = (probs >= 0.5).astype(int)
    p, r, f, s = precision_recall_fscore_support(targets, pred, zero_division=0)
    for i, name in enumerate(names):
        assert report[name]["precision"] == pytest.approx(p[i])
        assert report[name]["recall"] == pytest.approx(r[i])
        assert report[name]["f1"] == pytest.approx(f[i])
        assert report[name]["support"] == s[i]
    for average in ("micro", "macro", "weighted", "samples"):
        p, r, f, _ = precision_recall_fscore_support(targets, pred, average=average,
                                                     zero_division=0)
        row = report[f"{average} avg"]
        assert row["precision"] == pytest.approx(p), average
        assert row["recall"] == pytest.approx(r), average
        assert row["f1"] == pytest.approx(f), average


def test_report_text_has_every_row():
    """The text report has a row per class and per average."""
    names = ["cat", "dog"]
    text = format_classification_report(classification_report(PROBS, TARGETS, names))
    for row in ("cat", "dog", "micro avg", "macro avg", "weighted avg", "samples avg"):
        assert row in text


def test_tuned_thresholds_maximize_f1():
    """Tuned thresholds give each class a validation F1 no lower than any single candidate's."""
    rng = np.random.default_rng(4)
    targets = (rng.random((80, 3)) < 0.3).astype(int)
    probs = np.clip(targets * 0.3 + rng.random((80, 3)) * 0.7, 0, 1)
    tuned = tune_thresholds(probs, targets)
    best = thresholded_metrics(probs, targets, tuned)["f1"]
    for t in np.linspace(0.05, 0.95, 19):
        f1 = thresholded_metrics(probs, targets, t)["f1"]
        assert np.all(best >= f1 - 1e-12)


def test_tuned_threshold_by_hand():
    """Scores 0.9 (pos), 0.7 (neg), 0.6 (pos), 0.2 (neg): best F1 keeps both positives, and the
    threshold sits halfway between 0.6 and the next lower score 0.2."""
    probs = np.array([[0.9], [0.7], [0.6], [0.2]])
    targets = np.array([[1], [0], [1], [0]])
    assert tune_thresholds(probs, targets)[0] == pytest.approx(0.4)


def test_tuned_threshold_no_positive_keeps_default():
    """A class without validation positives keeps the default threshold."""
    assert tune_thresholds(np.array([[0.3], [0.2]]), np.array([[0], [0]]), default=0.5)[0] == 0.5
    probs = np.array([[0.3, 0.9], [0.2, 0.1]])
    targets = np.array([[0, 1], [0, 0]])
    tuned = tune_thresholds(probs, targets, default=[0.75, 0.6])
    assert tuned[0] == 0.75
    assert tuned[1] == pytest.approx(0.5)  # halfway between 0.9 and 0.1


def test_pos_weight_threshold():
    """pos_weight w moves threshold 0.5 to w/(w+1); w = 1 leaves it unchanged."""
    assert pos_weight_threshold(0.5, 3.0) == pytest.approx(0.75)
    assert pos_weight_threshold(0.3, 1.0) == pytest.approx(0.3)


def test_evaluate_names_every_variant():
    """evaluate_multilabel reports mAP under each named variant and the C/O summaries."""
    result = evaluate_multilabel(PROBS, TARGETS, ["a", "b"])
    assert set(result["mAP"]) == {"voc07_11point", "voc_allpoint", "noninterp"}
    assert result["mAP"]["noninterp"] == pytest.approx(
        np.mean([average_precision_score(TARGETS[:, c], PROBS[:, c]) for c in range(2)]))
    assert result["CF1"] == pytest.approx(21 / 32)
    assert result["difficult_policy"] == "ignore"
