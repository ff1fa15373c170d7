"""Element-wise activations (and Softmax) as parameter-free layers.

Each activation caches what its derivative needs: usually its own output, since sigmoid, tanh and
softmax have derivatives written in terms of the output. Constants are Python floats, so float32
input gives float32 output.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from bplab.engine.layers import Layer, register_layer
from bplab.errors import BplabError, unknown_name_error


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Compute 1 / (1 + exp(-z)) without overflow for any z.

    exp is only taken of -|z| <= 0, so it lies in (0, 1]: for z >= 0 use 1 / (1 + e) and for z < 0
    use e / (1 + e), with e = exp(-|z|). Underflow of e to 0 for large |z| gives the exact limits.
    """
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@register_layer
class Sigmoid(Layer):
    """y = 1 / (1 + exp(-z))."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = sigmoid(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._cached(self._y)
        # dy/dz = y (1 - y)
        return grad_out * y * (1.0 - y)


@register_layer
class Tanh(Layer):
    """y = tanh(z)."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._cached(self._y)
        # dy/dz = 1 - y^2
        return grad_out * (1.0 - y * y)


@register_layer
class ReLU(Layer):
    """y = max(z, 0)."""

    def __init__(self) -> None:
        super().__init__()
        self._positive = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0
        # np.maximum keeps NaN as NaN (as PyTorch does), so a diverged network cannot hide it.
        return np.maximum(x, 0).astype(x.dtype, copy=False)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        positive = self._cached(self._positive)
        # dy/dz = 1 for z > 0, else 0 (0 at z = 0, as in PyTorch)
        return np.where(positive, grad_out, 0.0).astype(grad_out.dtype, copy=False)


@register_layer
class LeakyReLU(Layer):
    """y = z for z > 0, else negative_slope * z."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._positive = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0
        return np.where(self._positive, x, self.negative_slope * x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        positive = self._cached(self._positive)
        # dy/dz = 1 for z > 0, else negative_slope (also at z = 0, as in PyTorch)
        return np.where(positive, grad_out, self.negative_slope * grad_out)

    def get_config(self) -> dict:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


@register_layer
class ELU(Layer):
    """y = z for z > 0, else alpha * (exp(z) - 1)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        positive = x > 0
        # expm1 only of min(z, 0), so large positive z cannot overflow the unused branch
        with np.errstate(under="ignore"):
            negative_part = self.alpha * np.expm1(np.minimum(x, 0.0))
        y = np.where(positive, x, negative_part)
        self._cache = (positive, y)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        positive, y = self._cached(self._cache)
        # dy/dz = 1 for z > 0, else alpha * exp(z) = y + alpha
        return np.where(positive, grad_out, grad_out * (y + self.alpha))

    def get_config(self) -> dict:
        return {"type": "ELU", "alpha": self.alpha}


@register_layer
class GELU(Layer):
    """Exact GELU, y = z * Phi(z), with Phi the standard normal CDF (PyTorch's default form)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        cdf = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))
        self._cache = (x, cdf)
        return x * cdf

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, cdf = self._cached(self._cache)
        # dy/dz = Phi(z) + z * phi(z), phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
        with np.errstate(over="ignore", under="ignore"):
            pdf = np.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return grad_out * (cdf + x * pdf)


@register_layer
class Softmax(Layer):
    """y = exp(z) / sum(exp(z)) along ``axis``, computed as exp(z - max z) to avoid overflow."""

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = int(axis)
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        shifted = x - x.max(axis=self.axis, keepdims=True)
        with np.errstate(under="ignore"):
            e = np.exp(shifted)
            self._y = e / e.sum(axis=self.axis, keepdims=True)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._cached(self._y)
        # dy_i/dz_j = y_i (delta_ij - y_j), so dL/dz = y * (g - sum_i g_i y_i)
        dot = (grad_out * y).sum(axis=self.axis, keepdims=True)
        return y * (grad_out - dot)

    def get_config(self) -> dict:
        return {"type": "Softmax", "axis": self.axis}


ACTIVATIONS: dict[str, type] = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "gelu": GELU,
    "softmax": Softmax,
}


def get_activation(name: str, **kwargs) -> Layer:
    """Build an activation layer by name, e.g. ``get_activation("elu", alpha=0.5)``."""
    if name not in ACTIVATIONS:
        raise unknown_name_error("activation", name, ACTIVATIONS)
    try:
        return ACTIVATIONS[name](**kwargs)
    except TypeError as exc:
        raise BplabError(f"invalid options for activation {name!r}: {exc}") from exc
