"""Losses: the batch-mean value and its gradient with respect to the logits.

``forward(logits, y)`` returns the mean loss over the batch as a Python float and caches what
``backward()`` needs. ``backward()`` returns dLoss/dlogits, which already includes the 1/N of the
mean, so the layers below it receive per-batch-averaged gradients.
"""

from __future__ import annotations

import numpy as np

from bplab.engine.activations import sigmoid
from bplab.errors import BplabError, unknown_name_error


def as_class_indices(y, n_classes: int, n_samples: int | None = None) -> np.ndarray:
    """Convert class labels to an int64 array of indices in [0, n_classes).

    Parameters
    ----------
    y : array-like
        Integer labels of shape (N,), integral floats such as [0., 1., 2.] of shape (N,),
        booleans of shape (N,), or one-hot rows of shape (N, n_classes).
    n_classes : int
        C, the number of classes.
    n_samples : int, optional
        N, when the caller knows it (the batch size of the logits).

    Returns
    -------
    ndarray of shape (N,), dtype int64

    Raises
    ------
    BplabError
        For fractional, NaN or out-of-range labels, rows that are not one-hot, or a wrong length.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise BplabError(
            f"class labels must be integers, got an array of dtype {y.dtype}; "
            "map class names to indices 0..C-1 first"
        )

    if y.ndim == 2 and y.shape[1] == n_classes and n_classes > 1:
        indices = _one_hot_to_indices(y)
    elif y.ndim == 1:
        indices = _integral_to_indices(y, n_classes)
    else:
        raise BplabError(
            f"class labels must have shape (N,) or one-hot shape (N, {n_classes}), "
            f"got {tuple(y.shape)}"
        )

    if n_samples is not None and indices.shape[0] != n_samples:
        raise BplabError(f"got {indices.shape[0]} labels for {n_samples} samples")
    return indices


def _integral_to_indices(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Convert a 1-D label array to int64, rejecting NaN, fractional and out-of-range values."""
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise BplabError(f"class label {y[bad[0]]} at position {bad[0]} is not a number")
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            raise BplabError(
                f"class label {y[bad[0]]} at position {bad[0]} is not a whole number; "
                "labels must be class indices such as 0, 1, 2"
            )
    # Checked before the cast, so huge floats cannot wrap around to valid indices.
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise BplabError(
            f"class label {y[bad[0]]} at position {bad[0]} is out of range; "
            f"expected 0..{n_classes - 1} for {n_classes} classes"
        )
    return y.astype(np.int64)


def _one_hot_to_indices(y: np.ndarray) -> np.ndarray:
    """Convert one-hot rows (N, C) to indices, rejecting rows that are not exactly one-hot."""
    is_binary = (y == 0) | (y == 1)
    bad_rows = np.flatnonzero(~is_binary.all(axis=1) | (y.sum(axis=1) != 1))
    if bad_rows.size:
        row = bad_rows[0]
        raise BplabError(
            f"label row {row} is not one-hot: {y[row].tolist()}; each row needs a single 1 "
            "and zeros elsewhere"
        )
    return y.argmax(axis=1).astype(np.int64)


def _as_float_targets(y, logits: np.ndarray, loss: str) -> np.ndarray:
    """Return targets as a float array of the logits' shape and dtype, or raise."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise BplabError(f"{loss} targets must be numbers, got an array of dtype {y.dtype}")
    # A column of outputs (N, 1) with a flat target (N,) is the common binary case.
    if y.ndim == 1 and logits.ndim == 2 and logits.shape[1] == 1 and y.shape[0] == logits.shape[0]:
        y = y.reshape(logits.shape)
    if y.shape != logits.shape:
        raise BplabError(
            f"{loss} targets have shape {tuple(y.shape)} but the outputs have shape "
            f"{tuple(logits.shape)}; they must match"
        )
    target = y.astype(logits.dtype)
    if not np.isfinite(target).all():
        raise BplabError(f"{loss} targets contain NaN or infinity")
    return target


def _as_float_logits(logits, loss: str) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.dtype.kind != "f":
        logits = logits.astype(np.float64)
    if logits.ndim == 0 or logits.shape[0] == 0:
        raise BplabError(f"{loss} needs a non-empty batch of outputs, got shape {logits.shape}")
    return logits


class Loss:
    """Base class: ``forward`` gives the batch-mean loss, ``backward`` dLoss/dlogits."""

    def __init__(self) -> None:
        self._grad = None

    def forward(self, logits: np.ndarray, y) -> float:
        """Return the mean loss over the batch and cache what backward needs."""
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        """Return dLoss/dlogits of the last forward, already divided by the batch size."""
        if self._grad is None:
            raise BplabError(f"{type(self).__name__}.backward was called before forward")
        return self._grad

    def __call__(self, logits: np.ndarray, y) -> float:
        return self.forward(logits, y)

    def get_config(self) -> dict:
        """Return a JSON-ready description of the loss."""
        return {"type": type(self).__name__}


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by the negative log-likelihood, fused through log-sum-exp.

    For logits z of shape (N, C) and class indices y:
    loss = mean_n (logsumexp(z_n) - z_n[y_n]), and dLoss/dz = (softmax(z) - onehot(y)) / N.
    Shifting each row by its max keeps every exp in (0, 1], so large logits cannot overflow.
    Labels may be indices (N,), integral floats (N,) or one-hot rows (N, C).
    """

    def forward(self, logits: np.ndarray, y) -> float:
        logits = _as_float_logits(logits, "cross-entropy")
        if logits.ndim != 2:
            raise BplabError(
                f"cross-entropy expects logits of shape (N, C), got {tuple(logits.shape)}"
            )
        n, c = logits.shape
        target = as_class_indices(y, c, n_samples=n)

        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), max 0 per row
        # Tiny probabilities may underflow to subnormals or 0 in exp and in the divisions.
        with np.errstate(under="ignore"):
            exp_shifted = np.exp(shifted)
            sum_exp = exp_shifted.sum(axis=1, keepdims=True)  # (N, 1), in [1, C]
            grad = exp_shifted / sum_exp  # softmax probabilities
            grad[np.arange(n), target] -= 1.0
            self._grad = grad / n
        log_probs = shifted - np.log(sum_exp)
        loss = -log_probs[np.arange(n), target].mean()
        return float(loss)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits, for binary or multi-label targets t in [0, 1].

    Per element: max(z, 0) - z t + log(1 + exp(-|z|)), which equals
    -(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))) without overflow or log(0).
    The loss is the mean over all elements; dLoss/dz = (sigmoid(z) - t) / (number of elements).
    """

    def forward(self, logits: np.ndarray, y) -> float:
        logits = _as_float_logits(logits, "BCE with logits")
        target = _as_float_targets(y, logits, "BCE with logits")
        if ((target < 0) | (target > 1)).any():
            raise BplabError("BCE with logits targets must lie in [0, 1]")

        with np.errstate(under="ignore"):
            softplus_tail = np.log1p(np.exp(-np.abs(logits)))
        losses = np.maximum(logits, 0.0) - logits * target + softplus_tail
        self._grad = (sigmoid(logits) - target) / logits.size
        return float(losses.mean())


class MSE(Loss):
    """Mean squared error over all elements (PyTorch's default reduction).

    loss = mean((y_hat - y)^2); dLoss/dy_hat = 2 (y_hat - y) / (number of elements).
    """

    def forward(self, logits: np.ndarray, y) -> float:
        logits = _as_float_logits(logits, "MSE")
        target = _as_float_targets(y, logits, "MSE")
        diff = logits - target
        self._grad = (2.0 / logits.size) * diff
        return float((diff * diff).mean())


LOSSES: dict[str, type] = {
    "cross_entropy": SoftmaxCrossEntropy,
    "bce_with_logits": BCEWithLogits,
    "mse": MSE,
}


def get_loss(name: str) -> Loss:
    """Build a loss by name."""
    if name not in LOSSES:
        raise unknown_name_error("loss", name, LOSSES)
    return LOSSES[name]()
