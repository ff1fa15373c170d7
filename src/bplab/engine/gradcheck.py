"""Check a layer's or a loss's backward pass against central finite differences.

For a layer, the scalar checked is f = sum(forward(x) * G) with a fixed random upstream gradient G,
so backward(G) must return df/dx and put df/dparam into ``grads``. For a loss, f is the loss itself
and backward() must return df/dlogits.

Each numerical derivative is (f(v + eps) - f(v - eps)) / (2 eps), computed in float64. Every
evaluation runs on a fresh copy of the layer, so a layer that draws random numbers (Dropout) uses
the same draws in every evaluation and is checked with a fixed mask.
"""

from __future__ import annotations

import copy

import numpy as np

from bplab.engine.layers import Layer
from bplab.engine.losses import Loss
from bplab.errors import BplabError


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Return max |analytic - numeric| divided by the larger of their max absolute values.

    Scaling by the tensor's largest entry, not by each entry, keeps entries whose true derivative
    is near zero from turning floating-point noise into a large relative error.
    """
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def _numeric_gradient(f, array: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar function f() with respect to ``array``, in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        f_plus = f()
        array[index] = original - eps
        f_minus = f()
        array[index] = original
        grad[index] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def _check_layer(layer: Layer, x: np.ndarray, eps: float, seed: int) -> dict[str, float]:
    base = copy.deepcopy(layer).astype(np.float64)
    base.zero_grad()
    # Seeded with (seed, 1), not seed alone, so the upstream gradient never equals test data
    # drawn from default_rng(seed): for BatchNorm, G = x makes dL/dx almost exactly zero.
    out_shape = copy.deepcopy(base).forward(x).shape
    upstream = np.random.default_rng([seed, 1]).standard_normal(out_shape)

    analytic_layer = copy.deepcopy(base)
    analytic_layer.forward(x)
    analytic_input = analytic_layer.backward(upstream)

    # The parameter arrays perturbed in place; each evaluation copies them into a fresh layer.
    params = {key: value.copy() for key, value in base.params.items()}

    def objective() -> float:
        trial = copy.deepcopy(base)
        trial.params = {key: value.copy() for key, value in params.items()}
        return float(np.sum(trial.forward(x) * upstream))

    errors = {"input": relative_error(analytic_input, _numeric_gradient(objective, x, eps))}
    for name in params:
        numeric = _numeric_gradient(objective, params[name], eps)
        errors[name] = relative_error(analytic_layer.grads[name], numeric)
    return errors


def _check_loss(loss: Loss, logits: np.ndarray, y, eps: float) -> dict[str, float]:
    if y is None:
        raise BplabError("gradcheck of a loss needs the labels y")
    loss = copy.deepcopy(loss)
    loss.forward(logits, y)
    analytic = np.array(loss.backward(), dtype=np.float64)
    numeric = _numeric_gradient(lambda: loss.forward(logits, y), logits, eps)
    return {"input": relative_error(analytic, numeric)}


def gradcheck(layer_or_loss, x: np.ndarray, y=None, eps: float = 1e-6,
              seed: int = 0) -> dict[str, float]:
    """Compare backward with central finite differences, in float64.

    Parameters
    ----------
    layer_or_loss : Layer or Loss
        Not modified: the check runs on float64 copies.
    x : ndarray
        Layer input, or the logits of a loss. Avoid points where the function has a kink
        (ReLU at 0), where no derivative exists.
    y : array-like, optional
        Labels, needed for a loss.
    eps : float
        Step of the central differences.
    seed : int
        Seed of the random upstream gradient used for layers.

    Returns
    -------
    dict[str, float]
        Relative error (see ``relative_error``) for "input" and for each parameter name.
    """
    if not (isinstance(eps, (int, float)) and 0 < eps < np.inf):
        raise BplabError(f"invalid eps {eps!r}: expected a small positive number such as 1e-6")
    try:
        x = np.array(x, dtype=np.float64)  # a copy, perturbed in place
    except (TypeError, ValueError) as exc:
        raise BplabError(f"gradcheck input must be numbers: {exc}") from None
    if not np.all(np.isfinite(x)):
        raise BplabError("gradcheck input contains NaN or infinite values")
    if isinstance(layer_or_loss, Loss):
        return _check_loss(layer_or_loss, x, y, eps)
    if isinstance(layer_or_loss, Layer):
        return _check_layer(layer_or_loss, x, eps, seed)
    raise BplabError(
        f"gradcheck expects a Layer or a Loss, got {type(layer_or_loss).__name__}"
    )
