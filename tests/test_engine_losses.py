"""Tests of the NumPy losses: gradients, stable numerics and label validation."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bplab.engine.gradcheck import gradcheck
from bplab.engine.losses import (
    LOSSES,
    MSE,
    BCEWithLogits,
    SoftmaxCrossEntropy,
    as_class_indices,
    get_loss,
)
from bplab.errors import BplabError

TOLERANCE = 1e-6  # max relative error of backward against central differences, in float64


def logits_and_labels(n=7, c=4, seed=10):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * 2.0, rng.integers(0, c, size=n)


# ---------------------------------------------------------------- finite differences


def test_cross_entropy_gradcheck_integer_labels():
    """Softmax cross-entropy with integer labels matches finite differences for N=7, C=4."""
    logits, y = logits_and_labels()
    assert gradcheck(SoftmaxCrossEntropy(), logits, y)["input"] < TOLERANCE


def test_cross_entropy_gradcheck_one_hot_labels():
    """Softmax cross-entropy with one-hot labels matches finite differences."""
    logits, y = logits_and_labels()
    one_hot = np.eye(4)[y]
    assert gradcheck(SoftmaxCrossEntropy(), logits, one_hot)["input"] < TOLERANCE


def test_bce_with_logits_gradcheck():
    """BCE with logits and multi-label 0/1 targets matches finite differences for N=6, C=3."""
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(6, 3)) * 3.0
    targets = rng.integers(0, 2, size=(6, 3))
    assert gradcheck(BCEWithLogits(), logits, targets)["input"] < TOLERANCE


def test_bce_with_logits_gradcheck_soft_targets():
    """BCE with logits and soft targets in [0, 1] matches finite differences."""
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(6, 3))
    assert gradcheck(BCEWithLogits(), logits, rng.random((6, 3)))["input"] < TOLERANCE


def test_mse_gradcheck():
    """MSE matches finite differences for N=5, D=2."""
    rng = np.random.default_rng(13)
    assert gradcheck(MSE(), rng.normal(size=(5, 2)), rng.normal(size=(5, 2)))["input"] < TOLERANCE


def test_gradcheck_of_loss_needs_labels():
    """gradcheck of a loss without labels raises BplabError."""
    with pytest.raises(BplabError, match="needs the labels"):
        gradcheck(MSE(), np.zeros((2, 2)))


# ---------------------------------------------------------------- values from bug reports


def no_warnings():
    """A context in which any NumPy floating-point warning or Python warning is an error."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("error")
    stack.enter_context(np.errstate(all="raise"))
    return stack


def test_cross_entropy_large_logit_gap():
    """Cross-entropy of logits [0, 800] with class 0 is 800.0."""
    with no_warnings():
        loss = SoftmaxCrossEntropy().forward(np.array([[0.0, 800.0]]), [0])
    assert loss == 800.0


def test_cross_entropy_value_and_gradient_far_from_zero():
    """Cross-entropy of [-431, 279, 427] with class 0 is 858.0 with gradient [-1, ~5.3e-65, 1]."""
    loss_fn = SoftmaxCrossEntropy()
    with no_warnings():
        loss = loss_fn.forward(np.array([[-431.0, 279.0, 427.0]]), np.array([0]))
        grad = loss_fn.backward()
    assert loss == 858.0
    assert grad.shape == (1, 3)
    assert grad[0, 0] == -1.0
    assert grad[0, 2] == 1.0
    np.testing.assert_allclose(grad[0, 1], np.exp(-148.0), rtol=1e-12)
    np.testing.assert_allclose(grad[0, 1], 5.3e-65, rtol=1e-2)


def test_cross_entropy_gradient_is_batch_mean():
    """Cross-entropy's gradient is (softmax - onehot) / N: the batch-mean, not the sum."""
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, [2, 0])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected_loss = -np.mean(np.log(probs[[0, 1], [2, 0]]))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-14)
    np.testing.assert_allclose(loss_fn.backward(), (probs - np.eye(3)[[2, 0]]) / 2, rtol=1e-14)


@pytest.mark.parametrize(
    "z, t, expected",
    [(40.0, 1.0, 4.248354255291589e-18), (-40.0, 0.0, 4.248354255291589e-18), (40.0, 0.0, 40.0)],
)
def test_bce_with_logits_extreme_logits(z, t, expected):
    """BCE with logits at z = +-40 is about 4.2e-18 for the right target and 40.0 for the wrong one."""
    with no_warnings():
        loss = BCEWithLogits().forward(np.array([[z]]), np.array([[t]]))
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


def test_bce_with_logits_huge_logits_without_warning():
    """BCE with logits of +-1000 gives finite losses and gradients with no warning."""
    loss_fn = BCEWithLogits()
    with no_warnings():
        loss = loss_fn.forward(np.array([[1000.0, -1000.0]]), np.array([[0.0, 0.0]]))
        grad = loss_fn.backward()
    assert loss == 500.0
    np.testing.assert_array_equal(grad, [[0.5, 0.0]])


def test_bce_with_logits_column_and_flat_targets():
    """BCE with logits of shape (N, 1) accepts flat targets of shape (N,)."""
    logits = np.array([[0.3], [-1.2], [2.0]])
    flat = BCEWithLogits().forward(logits, np.array([1, 0, 1]))
    column = BCEWithLogits().forward(logits, np.array([[1], [0], [1]]))
    assert flat == column


def test_mse_value_and_gradient():
    """MSE is the mean over all elements and its gradient 2 (y_hat - y) / size."""
    y_hat = np.array([[1.0, 2.0], [3.0, 5.0]])
    y = np.array([[1.0, 0.0], [0.0, 5.0]])
    loss_fn = MSE()
    assert loss_fn.forward(y_hat, y) == (4.0 + 9.0) / 4
    np.testing.assert_array_equal(loss_fn.backward(), 2.0 * (y_hat - y) / 4)


@pytest.mark.parametrize("loss_cls", [SoftmaxCrossEntropy, BCEWithLogits, MSE])
def test_float32_logits_give_float32_gradient(loss_cls):
    """Each loss returns a Python float and a float32 gradient for float32 logits."""
    logits = np.random.default_rng(14).normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 1]) if loss_cls is SoftmaxCrossEntropy else np.ones((4, 3))
    loss_fn = loss_cls()
    assert isinstance(loss_fn.forward(logits, y), float)
    assert loss_fn.backward().dtype == np.float32


def test_backward_before_forward_raises():
    """A loss's backward before forward raises BplabError."""
    with pytest.raises(BplabError, match="before forward"):
        MSE().backward()


# ---------------------------------------------------------------- labels


def test_integral_float_labels_accepted():
    """Labels [0., 1., 2., 1.] become int64 indices [0, 1, 2, 1]."""
    indices = as_class_indices(np.array([0.0, 1.0, 2.0, 1.0]), 3)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, [0, 1, 2, 1])


def test_integral_float_labels_give_same_loss():
    """Cross-entropy gives the same value for integer, integral-float and one-hot labels."""
    logits, y = logits_and_labels(n=4, c=3)
    losses = [SoftmaxCrossEntropy().forward(logits, labels)
              for labels in (y, y.astype(float), np.eye(3)[y])]
    assert losses[0] == losses[1] == losses[2]


def test_fractional_labels_rejected():
    """Labels [0.5, 1] are rejected with a message naming the bad value."""
    with pytest.raises(BplabError, match="0.5 at position 0 is not a whole number"):
        as_class_indices(np.array([0.5, 1.0]), 2)
    with pytest.raises(BplabError, match="not a whole number"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 2)), [0.5, 1])


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0.0, np.nan]), "is not a number"),
        (np.array([0, 3]), "3 at position 1 is out of range; expected 0..2"),
        (np.array([-1, 0]), "out of range"),
        (np.array([1e30, 0.0]), "out of range"),
        (np.array(["cat", "dog"]), "map class names to indices"),
        (np.zeros((2, 2, 2)), "must have shape"),
        (np.array([[1, 0, 0], [1, 1, 0]]), "row 1 is not one-hot"),
        (np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), "row 0 is not one-hot"),
        (np.zeros((2, 4)), r"one-hot shape \(N, 3\)"),
    ],
)
def test_invalid_labels_rejected(labels, message):
    """NaN, out-of-range, string, wrongly shaped and non-one-hot labels raise BplabError."""
    with pytest.raises(BplabError, match=message):
        as_class_indices(labels, 3)


def test_wrong_number_of_labels_rejected():
    """Cross-entropy with 3 labels for 2 samples raises BplabError."""
    with pytest.raises(BplabError, match="got 3 labels for 2 samples"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), [0, 1, 2])


def test_cross_entropy_rejects_flat_logits():
    """Cross-entropy with 1-D logits raises BplabError naming the expected shape."""
    with pytest.raises(BplabError, match=r"\(N, C\)"):
        SoftmaxCrossEntropy().forward(np.zeros(3), [0, 1, 2])


def test_targets_validated():
    """BCE and MSE reject targets of the wrong shape, NaN, and BCE targets outside [0, 1]."""
    with pytest.raises(BplabError, match="must match"):
        MSE().forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(BplabError, match="NaN"):
        MSE().forward(np.zeros((2, 1)), np.array([0.0, np.nan]))
    with pytest.raises(BplabError, match=r"\[0, 1\]"):
        BCEWithLogits().forward(np.zeros((2, 1)), np.array([0.0, 2.0]))


def test_empty_batch_rejected():
    """A loss of an empty batch raises BplabError instead of returning NaN."""
    with pytest.raises(BplabError, match="non-empty batch"):
        MSE().forward(np.zeros((0, 2)), np.zeros((0, 2)))


# ---------------------------------------------------------------- registry


def test_get_loss_by_name():
    """get_loss builds each registered loss; unknown names list the valid ones."""
    for name, cls in LOSSES.items():
        assert type(get_loss(name)) is cls
    with pytest.raises(BplabError, match="valid choices: bce_with_logits, cross_entropy, mse"):
        get_loss("hinge")


# ---------------------------------------------------------------- properties over random logits

finite_logits = arrays(
    np.float64, st.tuples(st.integers(1, 5), st.integers(2, 5)),
    elements=st.floats(-1e4, 1e4, allow_nan=False),
)


@settings(max_examples=50, deadline=None)
@given(logits=finite_logits, data=st.data())
def test_cross_entropy_properties(logits, data):
    """For any logits in [-1e4, 1e4]: cross-entropy is finite and >= 0, and each gradient row sums to 0."""
    n, c = logits.shape
    y = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    loss_fn = SoftmaxCrossEntropy()
    with no_warnings():
        loss = loss_fn.forward(logits, y)
        grad = loss_fn.backward()
    assert np.isfinite(loss)
    assert loss >= 0.0
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(logits=finite_logits, data=st.data())
def test_bce_with_logits_properties(logits, data):
    """For any logits in [-1e4, 1e4] and 0/1 targets: BCE is finite and >= 0, |gradient| <= 1/size."""
    targets = data.draw(arrays(np.float64, logits.shape, elements=st.sampled_from([0.0, 1.0])))
    loss_fn = BCEWithLogits()
    with no_warnings():
        loss = loss_fn.forward(logits, targets)
        grad = loss_fn.backward()
    assert np.isfinite(loss)
    assert loss >= 0.0
    assert (np.abs(grad) <= 1.0 / logits.size).all()
