"""Weight initializers, looked up by name.

Every initializer has the signature ``fn(shape, fan_in, fan_out, rng, dtype) -> ndarray``.
``fan_in`` is the number of inputs feeding one output unit and ``fan_out`` the number of outputs
one input feeds. For a Linear layer of weight shape (D_in, D_out) they are D_in and D_out.

The variance rules:

- Xavier/Glorot (Glorot and Bengio, 2010): Var[w] = 2 / (fan_in + fan_out), for tanh and sigmoid.
- He/Kaiming (He et al., 2015): Var[w] = 2 / fan_in, for ReLU.
- LeCun (LeCun et al., 1998): Var[w] = 1 / fan_in, for SELU-like or linear units.

A uniform U(-a, a) has variance a**2 / 3, so the uniform variants use a = sqrt(3 * Var[w]).
Values are drawn in float64 and then cast, so a float32 and a float64 model built from the same seed
start from the same weights up to rounding.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np

from bplab.errors import BplabError, unknown_name_error

Initializer = Callable[..., np.ndarray]


def _normal(shape, std, rng, dtype) -> np.ndarray:
    return (std * rng.standard_normal(shape)).astype(dtype)


def _uniform(shape, a, rng, dtype) -> np.ndarray:
    return rng.uniform(-a, a, size=shape).astype(dtype)


def normal(shape, fan_in, fan_out, rng, dtype, *, std: float = 0.01) -> np.ndarray:
    """Draw from N(0, std**2), ignoring the fans."""
    return _normal(shape, std, rng, dtype)


def uniform(shape, fan_in, fan_out, rng, dtype, *, a: float = 0.05) -> np.ndarray:
    """Draw from U(-a, a), ignoring the fans."""
    return _uniform(shape, a, rng, dtype)


def xavier_normal(shape, fan_in, fan_out, rng, dtype, *, gain: float = 1.0) -> np.ndarray:
    """Draw from N(0, gain**2 * 2 / (fan_in + fan_out))."""
    return _normal(shape, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def xavier_uniform(shape, fan_in, fan_out, rng, dtype, *, gain: float = 1.0) -> np.ndarray:
    """Draw from U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    return _uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def he_normal(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """Draw from N(0, 2 / fan_in)."""
    return _normal(shape, math.sqrt(2.0 / fan_in), rng, dtype)


def he_uniform(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """Draw from U(-a, a) with a = sqrt(6 / fan_in)."""
    return _uniform(shape, math.sqrt(6.0 / fan_in), rng, dtype)


def lecun_normal(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """Draw from N(0, 1 / fan_in)."""
    return _normal(shape, math.sqrt(1.0 / fan_in), rng, dtype)


def lecun_uniform(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """Draw from U(-a, a) with a = sqrt(3 / fan_in)."""
    return _uniform(shape, math.sqrt(3.0 / fan_in), rng, dtype)


def zeros(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """Return zeros (for biases; a weight matrix of zeros never breaks symmetry)."""
    return np.zeros(shape, dtype=dtype)


INITIALIZERS: dict[str, Initializer] = {
    "normal": normal,
    "uniform": uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
}


def get_initializer(name: str, **kwargs) -> Initializer:
    """Look up an initializer by name, binding keyword options such as ``std`` or ``a``.

    Parameters
    ----------
    name : str
        One of the keys of ``INITIALIZERS``.
    **kwargs
        Options of that initializer: ``std`` for "normal", ``a`` for "uniform", ``gain`` for the
        Xavier ones.

    Returns
    -------
    callable
        ``fn(shape, fan_in, fan_out, rng, dtype) -> ndarray``.
    """
    if name not in INITIALIZERS:
        raise unknown_name_error("initializer", name, INITIALIZERS)
    fn = INITIALIZERS[name]
    parameters = inspect.signature(fn).parameters.values()
    options = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    for key, value in kwargs.items():
        if key not in options:
            valid = ", ".join(options) if options else "none"
            raise BplabError(
                f"initializer {name!r} has no option {key!r}; valid options: {valid}"
            )
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BplabError(
                f"initializer {name!r} option {key}={value!r} is invalid; "
                "expected a finite number >= 0"
            )
    if not kwargs:
        return fn
    return functools.partial(fn, **kwargs)
