"""Tests of the weight initializers: shapes, dtypes and variance rules."""

import math

import numpy as np
import pytest

from bplab.engine.init import INITIALIZERS, get_initializer
from bplab.engine.layers import Linear
from bplab.errors import BplabError

FAN_IN, FAN_OUT = 300, 500
# 150,000 draws: the sample std has a relative standard error of about 1 / sqrt(2 * 150,000),
# or 0.18%, so the rtol of 1% below is a margin of more than 5 standard errors.
SHAPE = (FAN_IN, FAN_OUT)

# name -> (expected std, expected bound of |w| or None for unbounded draws)
EXPECTED = {
    "normal": (0.01, None),
    "uniform": (0.05 / math.sqrt(3.0), 0.05),
    "xavier_normal": (math.sqrt(2.0 / (FAN_IN + FAN_OUT)), None),
    "xavier_uniform": (math.sqrt(2.0 / (FAN_IN + FAN_OUT)), math.sqrt(6.0 / (FAN_IN + FAN_OUT))),
    "he_normal": (math.sqrt(2.0 / FAN_IN), None),
    "he_uniform": (math.sqrt(2.0 / FAN_IN), math.sqrt(6.0 / FAN_IN)),
    "lecun_normal": (math.sqrt(1.0 / FAN_IN), None),
    "lecun_uniform": (math.sqrt(1.0 / FAN_IN), math.sqrt(3.0 / FAN_IN)),
    "zeros": (0.0, 0.0),
}


def test_every_initializer_is_tested():
    """The table of expected variances covers every registered initializer."""
    assert set(EXPECTED) == set(INITIALIZERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initializer_shape_dtype_and_variance(name, dtype):
    """Each initializer gives the requested shape and dtype, mean 0 and its rule's std."""
    std, bound = EXPECTED[name]
    w = get_initializer(name)(SHAPE, FAN_IN, FAN_OUT, np.random.default_rng(0), dtype)
    assert w.shape == SHAPE
    assert w.dtype == dtype
    assert abs(w.mean()) <= 0.01 * std + 1e-12
    np.testing.assert_allclose(w.std(), std, rtol=0.01)
    if bound is not None:
        assert np.abs(w).max() <= bound


def test_initializer_options():
    """normal takes std, uniform takes a, the Xavier ones take gain."""
    rng = np.random.default_rng(1)
    w = get_initializer("normal", std=0.2)(SHAPE, FAN_IN, FAN_OUT, rng, np.float64)
    np.testing.assert_allclose(w.std(), 0.2, rtol=0.01)
    w = get_initializer("uniform", a=0.3)(SHAPE, FAN_IN, FAN_OUT, rng, np.float64)
    assert np.abs(w).max() <= 0.3
    np.testing.assert_allclose(w.std(), 0.3 / math.sqrt(3.0), rtol=0.01)
    w = get_initializer("xavier_normal", gain=2.0)(SHAPE, FAN_IN, FAN_OUT, rng, np.float64)
    np.testing.assert_allclose(w.std(), 2.0 * EXPECTED["xavier_normal"][0], rtol=0.01)


def test_initializer_is_seeded():
    """The same generator seed gives the same weights, a different seed different ones."""
    init = get_initializer("he_normal")
    first = init((4, 3), 4, 3, np.random.default_rng(5), np.float32)
    second = init((4, 3), 4, 3, np.random.default_rng(5), np.float32)
    third = init((4, 3), 4, 3, np.random.default_rng(6), np.float32)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


def test_unknown_initializer_lists_valid_names():
    """An unknown initializer name raises BplabError listing every valid name."""
    with pytest.raises(BplabError) as info:
        get_initializer("glorot")
    message = str(info.value)
    assert "'glorot'" in message
    for name in INITIALIZERS:
        assert name in message


def test_invalid_initializer_options():
    """Unknown or negative initializer options raise BplabError."""
    with pytest.raises(BplabError, match="no option 'std'; valid options: a"):
        get_initializer("uniform", std=0.1)
    with pytest.raises(BplabError, match="valid options: none"):
        get_initializer("he_normal", gain=2.0)
    with pytest.raises(BplabError, match="finite number >= 0"):
        get_initializer("normal", std=-1.0)


def test_linear_uses_named_initializer():
    """Linear draws its weight with the named initializer and starts with a zero bias."""
    layer = Linear(400, 300, init="he_normal", rng=np.random.default_rng(2))
    np.testing.assert_allclose(layer.params["weight"].std(), math.sqrt(2.0 / 400), rtol=0.01)
    assert not layer.params["bias"].any()
    with pytest.raises(BplabError, match="unknown initializer"):
        Linear(3, 2, init="kaiming")


def test_linear_default_rng_is_not_global_state():
    """Linear without rng draws from default_rng(0), unaffected by the global NumPy generator."""
    np.random.seed(123)
    first = Linear(3, 2).params["weight"]
    np.random.rand(10)
    second = Linear(3, 2).params["weight"]
    np.testing.assert_array_equal(first, second)
