"""`BPClassifier`: a scikit-learn style classifier over the NumPy engine."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from bplab.engine.network import Sequential, build_mlp
from bplab.engine.trainer import History, as_float_array, check_float_dtype, check_int, fit
from bplab.errors import BplabError


class BPClassifier(ClassifierMixin, BaseEstimator):
    """A back-propagation MLP classifier with the scikit-learn API.

    Class labels may be integers or strings; they are stored in ``classes_`` and the network
    is trained on their indices with softmax cross-entropy.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer widths.
    activation, init, optimizer : str
        Names looked up in the engine's registries.
    lr, epochs, batch_size, l2, dropout, val_fraction, patience, seed
        Passed to `bplab.engine.trainer.fit`.
    dtype : {"float32", "float64"}
        Floating-point type of the weights and the computation.
    """

    def __init__(self, hidden=(64,), activation="relu", init="he_normal", optimizer="adam",
                 lr=1e-3, epochs=100, batch_size=32, l2=0.0, dropout=0.0, val_fraction=0.0,
                 patience=None, seed=0, dtype="float32"):
        self.hidden = hidden
        self.activation = activation
        self.init = init
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.patience = patience
        self.seed = seed
        self.dtype = dtype

    def fit(self, X, y, callbacks=()) -> BPClassifier:
        """Train on `X` of shape (n_samples, n_features) and labels `y` of shape (n_samples,)."""
        X = self._check_X(X, fitting=True)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise BplabError(f"labels must have shape ({len(X)},), got {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise BplabError("labels contain NaN or infinite values")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            bad = y[y != np.round(y)][:3]
            raise BplabError(f"labels must be class ids, got non-integral values such as {bad}")
        try:
            self.classes_, y_index = np.unique(y, return_inverse=True)
        except TypeError:  # an object array mixing e.g. strings and None
            raise BplabError("labels must be all numbers or all strings") from None
        if len(self.classes_) < 2:
            raise BplabError(f"need at least two classes to train, got {list(self.classes_)}")
        self.n_features_in_ = X.shape[1]
        seed = None if self.seed is None else check_int(self.seed, "seed", 0)
        rng = np.random.default_rng(seed)
        # One int is one hidden layer, as in scikit-learn's MLPClassifier.
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        self.network_ = build_mlp(
            (X.shape[1], *hidden, len(self.classes_)), activation=self.activation,
            init=self.init, dropout=self.dropout, rng=rng, dtype=np.dtype(self.dtype),
        )
        self.history_: History = fit(
            self.network_, X, y_index, optimizer=self.optimizer, lr=self.lr, epochs=self.epochs,
            batch_size=self.batch_size, l2=self.l2, val_fraction=self.val_fraction,
            patience=self.patience, seed=self.seed, dtype=np.dtype(self.dtype), callbacks=callbacks,
        )
        return self

    def decision_function(self, X) -> np.ndarray:
        """Return the logits, of shape (n_samples, n_classes)."""
        if not hasattr(self, "network_"):
            raise BplabError("this BPClassifier is not fitted yet; call fit first")
        X = self._check_X(X)
        self.network_.eval()
        return self.network_.forward(X)

    def predict_proba(self, X) -> np.ndarray:
        """Return class probabilities of shape (n_samples, n_classes), in the order of ``classes_``."""
        logits = self.decision_function(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Return the predicted class labels, of shape (n_samples,)."""
        logits = self.decision_function(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def _check_X(self, X, fitting: bool = False) -> np.ndarray:
        """Return `X` as a 2-D float array; a single sample of shape (n_features,) becomes one row."""
        X = as_float_array(X, check_float_dtype(self.dtype))
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2:
            raise BplabError(f"expected X of shape (n_samples, n_features), got {X.shape}")
        if not fitting and X.shape[1] != self.n_features_in_:
            raise BplabError(f"X has {X.shape[1]} features, but this classifier was fitted with "
                             f"{self.n_features_in_}")
        return X


def network_summary(net: Sequential) -> str:
    """Return one line per layer and the total parameter count."""
    lines = [f"{i}: {layer.get_config()}" for i, layer in enumerate(net.layers)]
    lines.append(f"parameters: {net.num_parameters()}")
    return "\n".join(lines)
