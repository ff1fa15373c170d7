"""NumPy layers with explicit forward and backward passes.

Every layer follows one contract, so a network is just a list of them:

- ``params`` and ``grads`` are dicts with the same keys and shapes ({} for a layer without weights).
  ``buffers`` contains non-trainable state saved with the model (BatchNorm's running statistics).
- ``forward(x)`` caches only what ``backward`` needs.
- ``backward(grad_out)`` takes dLoss/dy, ADDS dLoss/dparam into ``grads`` and returns dLoss/dx.
  Gradients accumulate across backward calls until ``zero_grad()``; nothing resets them silently.
- ``training`` switches Dropout and BatchNorm between their train and eval behaviour.
- ``get_config()`` returns a JSON-ready description and ``layer_from_config`` rebuilds the layer.

The local derivative of each operation is written as a comment next to its backward code.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from bplab.engine.init import get_initializer
from bplab.errors import BplabError, unknown_name_error

LAYERS: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Add a layer class to ``LAYERS`` under its class name (a class decorator)."""
    LAYERS[cls.__name__] = cls
    return cls


class Layer:
    """Base class of every NumPy layer.

    Gradients accumulate: each ``backward`` call adds into ``grads``, so two backward calls without
    ``zero_grad()`` in between give the sum of both gradients. Call ``zero_grad()`` before each
    optimizer step's backward pass.

    Attributes
    ----------
    params : dict[str, ndarray]
        Trainable arrays, e.g. {"weight": (D_in, D_out), "bias": (D_out,)}.
    grads : dict[str, ndarray]
        dLoss/dparam, same keys and shapes as ``params``.
    buffers : dict[str, ndarray]
        Non-trainable state saved with the model.
    training : bool
        True (the default) in train mode, False after ``eval()``.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output for input ``x`` and cache what backward needs."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Add dLoss/dparam into ``grads`` and return dLoss/dx, given dLoss/dy."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for grad in self.grads.values():
            grad.fill(0)

    def train(self, mode: bool = True) -> Layer:
        """Switch to train mode (or eval mode with ``mode=False``); return self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Switch to eval mode; return self."""
        return self.train(False)

    def get_config(self) -> dict:
        """Return a JSON-ready description from which ``layer_from_config`` rebuilds the layer."""
        return {"type": type(self).__name__}

    def astype(self, dtype) -> Layer:
        """Cast params, grads and buffers to ``dtype`` in place; return self.

        The arrays are replaced, so an optimizer built before the cast must be rebuilt.
        """
        for arrays in (self.params, self.grads, self.buffers):
            for key in arrays:
                arrays[key] = arrays[key].astype(dtype)
        return self

    def _cached(self, value):
        """Return a value cached by forward, or raise if backward came first."""
        if value is None:
            raise BplabError(f"{type(self).__name__}.backward was called before forward")
        return value

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({options})"


def _check_positive_int(value, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BplabError(f"{layer} {name} must be a positive integer, got {value!r}")
    return int(value)


def _check_input(x: np.ndarray, layer: str, features: int) -> None:
    """Raise unless ``x`` is a (N, features) array."""
    if x.ndim != 2 or x.shape[1] != features:
        raise BplabError(
            f"{layer} expects input of shape (N, {features}), got {tuple(x.shape)}"
        )


@register_layer
class Linear(Layer):
    """Fully connected layer y = x @ weight + bias.

    Parameters
    ----------
    in_features, out_features : int
        D_in and D_out; ``weight`` has shape (D_in, D_out) and ``bias`` shape (D_out,).
    bias : bool
        Whether to add a bias (initialised to zeros).
    init : str
        Name of the weight initializer (see ``bplab.engine.init.INITIALIZERS``).
    rng : numpy.random.Generator, optional
        Source of the initial weights; ``np.random.default_rng(0)`` when None.
    dtype : numpy dtype
        float32 by default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "he_normal", rng: np.random.Generator | None = None,
                 dtype=np.float32) -> None:
        super().__init__()
        self.in_features = _check_positive_int(in_features, "in_features", "Linear")
        self.out_features = _check_positive_int(out_features, "out_features", "Linear")
        self.init = init
        rng = np.random.default_rng(0) if rng is None else rng
        initializer = get_initializer(init)

        shape = (self.in_features, self.out_features)
        self.params["weight"] = initializer(shape, self.in_features, self.out_features, rng, dtype)
        self.grads["weight"] = np.zeros(shape, dtype=dtype)
        if bias:
            self.params["bias"] = np.zeros(self.out_features, dtype=dtype)
            self.grads["bias"] = np.zeros(self.out_features, dtype=dtype)
        self._x = None
        # When False, backward skips dL/dx and returns None. Sequential.backward_params sets it
        # for a network's first trainable layer, whose input (the data) needs no gradient.
        self.input_grad = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_input(x, "Linear", self.in_features)
        self._x = x  # (N, D_in)
        y = x @ self.params["weight"]  # (N, D_out)
        if "bias" in self.params:
            y += self.params["bias"]  # y is a new array, so adding in place is safe
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        x = self._cached(self._x)
        # y = x W + b:  dL/dW = x^T g,  dL/db = sum over the batch of g,  dL/dx = g W^T
        self.grads["weight"] += x.T @ grad_out
        if "bias" in self.params:
            self.grads["bias"] += grad_out.sum(axis=0)
        if not self.input_grad:
            return None
        return grad_out @ self.params["weight"].T

    def get_config(self) -> dict:
        return {
            "type": "Linear",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": "bias" in self.params,
            "init": self.init,
            "dtype": self.params["weight"].dtype.name,
        }


@register_layer
class Dropout(Layer):
    """Inverted dropout: in train mode zero each input with probability ``p`` and scale the rest
    by 1 / (1 - p), so eval mode is the identity.

    Parameters
    ----------
    p : float
        Drop probability, 0 <= p < 1.
    rng : numpy.random.Generator, optional
        Source of the masks; ``np.random.default_rng(0)`` when None.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise BplabError(f"Dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(0) if rng is None else rng
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.p
        self._mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self._mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # y = x * mask:  dL/dx = g * mask (the identity when no mask was drawn)
        if self._mask is None:
            return grad_out
        return grad_out * self._mask

    def get_config(self) -> dict:
        return {"type": "Dropout", "p": self.p}


@register_layer
class Flatten(Layer):
    """Reshape (N, d1, d2, ...) to (N, d1 * d2 * ...)."""

    def __init__(self) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, D)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self._cached(self._shape))


@register_layer
class BatchNorm1d(Layer):
    """Batch normalisation of (N, D) features, with PyTorch's semantics.

    Train mode normalises with the batch mean and biased variance and updates the running
    estimates with the unbiased variance: ``running = (1 - momentum) * running + momentum * batch``.
    Eval mode normalises with the running estimates.

    Parameters
    ----------
    num_features : int
        D.
    momentum : float
        Weight of the current batch in the running estimates.
    eps : float
        Added to the variance before the square root.
    dtype : numpy dtype
        float32 by default.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype=np.float32) -> None:
        super().__init__()
        self.num_features = _check_positive_int(num_features, "num_features", "BatchNorm1d")
        if not 0.0 <= momentum <= 1.0:
            raise BplabError(f"BatchNorm1d momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0.0:
            raise BplabError(f"BatchNorm1d eps must be > 0, got {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)

        d = self.num_features
        self.params["weight"] = np.ones(d, dtype=dtype)  # gamma
        self.params["bias"] = np.zeros(d, dtype=dtype)  # beta
        self.grads["weight"] = np.zeros(d, dtype=dtype)
        self.grads["bias"] = np.zeros(d, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(d, dtype=dtype)
        self.buffers["running_var"] = np.ones(d, dtype=dtype)
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_input(x, "BatchNorm1d", self.num_features)
        n = x.shape[0]
        if self.training:
            if n < 2:
                raise BplabError(
                    "BatchNorm1d needs at least 2 samples per batch in train mode, got 1; "
                    "use a larger batch or call eval()"
                )
            mean = x.mean(axis=0)  # (D,)
            var = x.var(axis=0)  # (D,), biased: divides by N
            m = self.momentum
            self.buffers["running_mean"] *= 1.0 - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= 1.0 - m
            self.buffers["running_var"] += m * var * (n / (n - 1))
        else:
            mean = self.buffers["running_mean"]
            var = self.buffers["running_var"]

        inv_std = 1.0 / np.sqrt(var + self.eps)  # (D,)
        x_hat = (x - mean) * inv_std  # (N, D)
        self._cache = (x_hat, inv_std, self.training)
        return self.params["weight"] * x_hat + self.params["bias"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std, batch_stats = self._cached(self._cache)
        # y = gamma * x_hat + beta:  dL/dgamma = sum_n g * x_hat,  dL/dbeta = sum_n g
        self.grads["weight"] += (grad_out * x_hat).sum(axis=0)
        self.grads["bias"] += grad_out.sum(axis=0)
        grad_x_hat = grad_out * self.params["weight"]  # (N, D)
        if not batch_stats:
            # The running statistics are constants: dL/dx = dL/dx_hat / sqrt(var + eps)
            return grad_x_hat * inv_std
        # With the batch mean and variance depending on x (summing over n):
        # dL/dx = inv_std / N * (N dL/dx_hat - sum dL/dx_hat - x_hat * sum(dL/dx_hat * x_hat))
        n = grad_out.shape[0]
        total = grad_x_hat.sum(axis=0)
        projection = (grad_x_hat * x_hat).sum(axis=0)
        return (inv_std / n) * (n * grad_x_hat - total - x_hat * projection)

    def get_config(self) -> dict:
        return {
            "type": "BatchNorm1d",
            "num_features": self.num_features,
            "momentum": self.momentum,
            "eps": self.eps,
            "dtype": self.params["weight"].dtype.name,
        }


def layer_from_config(cfg: dict, rng: np.random.Generator | None = None) -> Layer:
    """Build a layer from a ``get_config()`` dict.

    Parameters
    ----------
    cfg : dict
        Has a "type" key naming a class in ``LAYERS`` plus that class's constructor arguments.
    rng : numpy.random.Generator, optional
        Passed to layers that draw random numbers (Linear, Dropout, conv layers).

    Returns
    -------
    Layer
        A new layer; its weights are freshly initialised, not loaded.
    """
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        raise BplabError(f"layer config must be a dict with a 'type' key naming a layer, got {cfg!r}")
    options = dict(cfg)
    name = options.pop("type")
    if name not in LAYERS:
        # Conv layers register themselves when their module is imported.
        try:
            importlib.import_module("bplab.engine.conv")
        except ModuleNotFoundError as exc:
            if exc.name != "bplab.engine.conv":
                raise
    if name not in LAYERS:
        raise unknown_name_error("layer type", str(name), LAYERS)
    cls = LAYERS[name]

    if "rng" in inspect.signature(cls).parameters:
        options["rng"] = rng
    try:
        return cls(**options)
    except TypeError as exc:
        raise BplabError(f"invalid config for layer {name}: {exc}") from exc


# Activations are layers too; importing them here registers them in LAYERS.
from bplab.engine import activations as _activations  # noqa: E402, F401
