"""Tests of the NumPy layers and activations: gradients, numerics, dtypes and configs."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bplab.engine.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    get_activation,
    sigmoid,
)
from bplab.engine.gradcheck import gradcheck, relative_error
from bplab.engine.layers import (
    LAYERS,
    BatchNorm1d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    layer_from_config,
)
from bplab.errors import BplabError

TOLERANCE = 1e-6  # max relative error of backward against central differences, in float64


def away_from_zero(x, margin=0.05):
    """Move entries within ``margin`` of 0 away from it, so kinks (ReLU at 0) are not sampled."""
    x = x.copy()
    near = np.abs(x) < margin
    x[near] = np.where(x[near] >= 0, margin, -margin) + x[near]
    return x


def make_input(shape, seed=1):
    return away_from_zero(np.random.default_rng(seed).normal(size=shape))


# ---------------------------------------------------------------- finite differences


def assert_gradcheck(layer, x):
    errors = gradcheck(layer, x)
    expected_keys = {"input", *layer.params}
    assert set(errors) == expected_keys
    for name, error in errors.items():
        assert error < TOLERANCE, f"{type(layer).__name__} {name}: relative error {error:.2e}"


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    """Linear: dL/dx, dL/dW and dL/db match finite differences for N=7, D_in=3, D_out=5."""
    layer = Linear(3, 5, bias=bias, rng=np.random.default_rng(2))
    assert_gradcheck(layer, make_input((7, 3)))


def test_batchnorm1d_gradcheck_train_mode():
    """BatchNorm1d in train mode (batch statistics depend on x) matches finite differences."""
    layer = BatchNorm1d(4)
    rng = np.random.default_rng(3)
    layer.params["weight"] = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    layer.params["bias"] = rng.normal(size=4).astype(np.float32)
    assert_gradcheck(layer, make_input((6, 4)) * 2.0 + 1.0)


def test_batchnorm1d_gradcheck_eval_mode():
    """BatchNorm1d in eval mode (running statistics are constants) matches finite differences."""
    layer = BatchNorm1d(4)
    layer.buffers["running_mean"] = np.float32([0.1, -0.2, 0.3, 0.0])
    layer.buffers["running_var"] = np.float32([0.5, 2.0, 1.0, 0.25])
    layer.eval()
    assert_gradcheck(layer, make_input((6, 4)))


def test_dropout_gradcheck_train_and_eval():
    """Dropout matches finite differences in train mode (same mask in every evaluation) and eval."""
    layer = Dropout(0.4, rng=np.random.default_rng(4))
    assert_gradcheck(layer, make_input((6, 5)))
    assert_gradcheck(layer.eval(), make_input((6, 5)))


def test_flatten_gradcheck():
    """Flatten's backward is the inverse reshape."""
    assert_gradcheck(Flatten(), make_input((3, 2, 4)))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradcheck(name):
    """Every activation matches finite differences on a (5, 3) input."""
    assert_gradcheck(get_activation(name), make_input((5, 3)) * 2.0)


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_gradcheck_axis(axis):
    """Softmax along either axis matches finite differences."""
    assert_gradcheck(Softmax(axis=axis), make_input((4, 6)))


def test_leaky_relu_and_elu_options_gradcheck():
    """LeakyReLU and ELU with non-default options match finite differences."""
    assert_gradcheck(LeakyReLU(negative_slope=0.2), make_input((5, 3)))
    assert_gradcheck(ELU(alpha=0.7), make_input((5, 3)))


class WrongBackwardLinear(Linear):
    """A Linear whose weight gradient is off by a factor of 1.01."""

    def backward(self, grad_out):
        grad_x = super().backward(grad_out)
        self.grads["weight"] *= 1.01
        return grad_x


def test_gradcheck_detects_wrong_gradient():
    """gradcheck reports a large error for a backward that is 1% wrong."""
    errors = gradcheck(WrongBackwardLinear(3, 4), make_input((5, 3)))
    assert errors["weight"] > 1e-3
    assert errors["input"] < TOLERANCE


def test_gradcheck_leaves_layer_unchanged():
    """gradcheck works on a float64 copy: the caller's float32 layer is not modified."""
    layer = Linear(3, 4)
    weight = layer.params["weight"].copy()
    gradcheck(layer, make_input((5, 3)))
    assert layer.params["weight"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["weight"], weight)
    assert not layer.grads["weight"].any()


def test_relative_error_of_zero_gradients():
    """Two all-zero gradients have relative error 0."""
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_gradcheck_rejects_other_objects():
    """gradcheck of something that is neither a Layer nor a Loss raises BplabError."""
    with pytest.raises(BplabError, match="Layer or a Loss"):
        gradcheck(np.tanh, np.zeros((2, 2)))


# ---------------------------------------------------------------- numerics from bug reports


def test_sigmoid_extreme_inputs_without_warning():
    """sigmoid of [-1234.1234, -1000, 0, 1000, 709.8] is [0, 0, 0.5, 1, 1] with no warning."""
    z = np.array([-1234.1234, -1000.0, 0.0, 1000.0, 709.8])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = Sigmoid().forward(z)
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_sigmoid_float32_at_minus_89():
    """sigmoid(-89) in float32 is finite, positive, float32, and raises no warning."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = sigmoid(np.float32([-89.0]))
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    assert 0.0 < y[0] < 1e-38


def test_sigmoid_derivative_at_zero():
    """The sigmoid derivative at 0 is 0.25."""
    layer = Sigmoid()
    layer.forward(np.array([0.0]))
    assert layer.backward(np.array([1.0]))[0] == 0.25


def test_relu_backward_at_kink():
    """ReLU backward at z = [-1, 0, 2] with upstream ones is [0, 0, 1]."""
    layer = ReLU()
    layer.forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(layer.backward(np.ones(3)), [0.0, 0.0, 1.0])


def test_softmax_large_logits_without_warning():
    """Softmax of [0, 1000, 1000] is [0, 0.5, 0.5] thanks to the max shift."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = Softmax().forward(np.array([[0.0, 1000.0, 1000.0]]))
    np.testing.assert_array_equal(y, [[0.0, 0.5, 0.5]])


def test_elu_and_gelu_large_inputs_without_warning():
    """ELU and GELU of +-1e4 give the exact limits with no overflow warning."""
    z = np.array([-1e4, 1e4])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        elu = ELU()
        gelu = GELU()
        np.testing.assert_array_equal(elu.forward(z), [-1.0, 1e4])
        np.testing.assert_array_equal(gelu.forward(z), [-0.0, 1e4])
        np.testing.assert_array_equal(elu.backward(np.ones(2)), [0.0, 1.0])
        np.testing.assert_array_equal(gelu.backward(np.ones(2)), [0.0, 1.0])


def test_tanh_saturates():
    """Tanh of +-50 is +-1 and its derivative there is 0."""
    layer = Tanh()
    np.testing.assert_array_equal(layer.forward(np.array([-50.0, 50.0])), [-1.0, 1.0])
    np.testing.assert_array_equal(layer.backward(np.ones(2)), [0.0, 0.0])


def test_linear_bias_gradient_shape():
    """Linear with input (4, 4) and upstream ones: the bias gradient is [4, 4, 4, 4] of shape (4,)."""
    layer = Linear(4, 4)
    y = layer.forward(np.ones((4, 4), dtype=np.float32))
    layer.backward(np.ones_like(y))
    assert layer.params["bias"].shape == (4,)
    assert layer.grads["bias"].shape == (4,)
    np.testing.assert_array_equal(layer.grads["bias"], [4.0, 4.0, 4.0, 4.0])


def test_linear_weight_layout_and_output():
    """Linear's weight has shape (D_in, D_out) and y = x @ W + b."""
    layer = Linear(3, 2, dtype=np.float64)
    layer.params["bias"][:] = [0.5, -1.0]
    x = make_input((4, 3))
    assert layer.params["weight"].shape == (3, 2)
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["weight"] + [0.5, -1.0])


def test_linear_rejects_wrong_input_shape():
    """Linear raises BplabError naming the expected shape for a wrong input."""
    with pytest.raises(BplabError, match=r"\(N, 3\)"):
        Linear(3, 2).forward(np.zeros((4, 5), dtype=np.float32))


def test_backward_before_forward_raises():
    """backward before any forward raises BplabError instead of a TypeError."""
    with pytest.raises(BplabError, match="before forward"):
        Sigmoid().backward(np.ones(3))


# ---------------------------------------------------------------- gradient accumulation


def test_gradients_accumulate_until_zero_grad():
    """Two backward calls add up; zero_grad followed by one backward gives the single-pass value."""
    rng = np.random.default_rng(5)
    layer = Linear(3, 2, dtype=np.float64, rng=rng)
    x = rng.normal(size=(4, 3))
    grad_out = rng.normal(size=(4, 2))

    layer.forward(x)
    layer.backward(grad_out)
    single = {name: grad.copy() for name, grad in layer.grads.items()}
    layer.forward(x)
    layer.backward(grad_out)
    for name in single:
        np.testing.assert_allclose(layer.grads[name], 2.0 * single[name], rtol=1e-12)

    layer.zero_grad()
    assert all(not grad.any() for grad in layer.grads.values())
    layer.forward(x)
    layer.backward(grad_out)
    for name in single:
        np.testing.assert_array_equal(layer.grads[name], single[name])


def test_batchnorm_gradients_accumulate():
    """BatchNorm1d grads also accumulate across backward calls."""
    layer = BatchNorm1d(3, dtype=np.float64)
    x = make_input((5, 3))
    layer.forward(x)
    layer.backward(np.ones((5, 3)))
    first = layer.grads["bias"].copy()
    layer.forward(x)
    layer.backward(np.ones((5, 3)))
    np.testing.assert_allclose(layer.grads["bias"], 2.0 * first)


def test_layer_docstring_documents_accumulation():
    """The Layer docstring states that gradients accumulate until zero_grad."""
    assert "accumulate" in Layer.__doc__
    assert "zero_grad" in Layer.__doc__


# ---------------------------------------------------------------- dtypes


def float32_layers():
    rng = np.random.default_rng(6)
    return [Linear(3, 3, rng=rng), BatchNorm1d(3), Dropout(0.3, rng=rng), Flatten()] + [
        cls() for cls in ACTIVATIONS.values()
    ]


@pytest.mark.parametrize("layer", float32_layers(), ids=lambda layer: type(layer).__name__)
def test_float32_layer_keeps_float32(layer):
    """A float32 layer keeps float32 params, grads, outputs and input gradients for float32 input."""
    x = make_input((4, 3)).astype(np.float32)
    y = layer.forward(x)
    grad_x = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32
    assert grad_x.dtype == np.float32
    for name in layer.params:
        assert layer.params[name].dtype == np.float32
        assert layer.grads[name].dtype == np.float32
    for buffer in layer.buffers.values():
        assert buffer.dtype == np.float32


def test_astype_casts_params_grads_and_buffers():
    """astype(float64) casts params, grads and buffers in place and returns the layer."""
    layer = BatchNorm1d(3)
    assert layer.astype(np.float64) is layer
    arrays = [*layer.params.values(), *layer.grads.values(), *layer.buffers.values()]
    assert all(array.dtype == np.float64 for array in arrays)


# ---------------------------------------------------------------- Dropout and BatchNorm behaviour


def test_dropout_drops_and_rescales():
    """Dropout(0.25) zeroes about a quarter of the inputs and scales the rest by 4/3."""
    layer = Dropout(0.25, rng=np.random.default_rng(7))
    x = np.ones((200, 100))
    y = layer.forward(x)
    dropped = np.mean(y == 0.0)
    assert abs(dropped - 0.25) < 0.02
    np.testing.assert_allclose(np.unique(y), [0.0, 4.0 / 3.0])
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), y)


def test_dropout_eval_is_identity():
    """Dropout in eval mode returns its input and passes the gradient through."""
    layer = Dropout(0.5).eval()
    x = make_input((3, 4))
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_same_seed_same_mask():
    """Two Dropout layers with generators of the same seed draw the same masks."""
    x = np.ones((5, 6))
    first = Dropout(0.5, rng=np.random.default_rng(8)).forward(x)
    second = Dropout(0.5, rng=np.random.default_rng(8)).forward(x)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5"])
def test_dropout_rejects_invalid_p(p):
    """Dropout p outside [0, 1) raises BplabError."""
    with pytest.raises(BplabError, match="Dropout p"):
        Dropout(p)


def test_batchnorm_running_statistics():
    """BatchNorm1d running stats use the batch mean and the unbiased variance with momentum."""
    layer = BatchNorm1d(2, momentum=0.1, dtype=np.float64)
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    y = layer.forward(x)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1))
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5))

    layer.eval()
    expected = (x - layer.buffers["running_mean"]) / np.sqrt(layer.buffers["running_var"] + 1e-5)
    np.testing.assert_allclose(layer.forward(x), expected)


def test_batchnorm_rejects_single_sample_in_train_mode():
    """BatchNorm1d in train mode with one sample raises BplabError; eval mode accepts it."""
    layer = BatchNorm1d(3)
    with pytest.raises(BplabError, match="at least 2 samples"):
        layer.forward(np.ones((1, 3), dtype=np.float32))
    assert layer.eval().forward(np.ones((1, 3), dtype=np.float32)).shape == (1, 3)


def test_flatten_shapes():
    """Flatten turns (N, C, H, W) into (N, C*H*W) and back in backward."""
    layer = Flatten()
    x = np.zeros((2, 3, 4, 5))
    assert layer.forward(x).shape == (2, 60)
    assert layer.backward(np.zeros((2, 60))).shape == (2, 3, 4, 5)


# ---------------------------------------------------------------- registries and configs


def test_layer_registry_holds_every_layer():
    """LAYERS maps each layer and activation class name to its class."""
    expected = {"Linear", "Dropout", "Flatten", "BatchNorm1d", "Sigmoid", "Tanh", "ReLU",
                "LeakyReLU", "ELU", "GELU", "Softmax"}
    assert expected <= set(LAYERS)
    for name in expected:
        assert LAYERS[name].__name__ == name


@pytest.mark.parametrize(
    "layer",
    [Linear(3, 2, bias=False, init="xavier_uniform"), Dropout(0.3), Flatten(),
     BatchNorm1d(5, momentum=0.2, eps=1e-3, dtype=np.float64), LeakyReLU(0.3), ELU(0.5),
     Softmax(axis=0)] + [cls() for cls in ACTIVATIONS.values()],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    """layer_from_config(layer.get_config()) rebuilds a layer with the same config."""
    import json

    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    rebuilt = layer_from_config(config, rng=np.random.default_rng(0))
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == config
    for name, param in layer.params.items():
        assert rebuilt.params[name].shape == param.shape
        assert rebuilt.params[name].dtype == param.dtype


def test_layer_from_config_uses_rng():
    """layer_from_config passes rng to Linear, so equal seeds give equal weights."""
    config = Linear(4, 3).get_config()
    first = layer_from_config(config, rng=np.random.default_rng(9))
    second = layer_from_config(config, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(first.params["weight"], second.params["weight"])


def test_layer_from_config_errors():
    """Unknown layer types and bad options raise BplabError listing what is valid."""
    with pytest.raises(BplabError, match="valid choices:.*Linear"):
        layer_from_config({"type": "Dense"})
    with pytest.raises(BplabError, match="'type' key"):
        layer_from_config({"in_features": 3})
    with pytest.raises(BplabError, match="invalid config for layer Linear"):
        layer_from_config({"type": "Linear", "in_features": 3, "out_features": 2, "units": 4})


def test_get_activation_errors():
    """Unknown activation names raise BplabError listing the valid names."""
    with pytest.raises(BplabError, match="valid choices: elu, gelu, leaky_relu, relu"):
        get_activation("swish")
    with pytest.raises(BplabError, match="invalid options"):
        get_activation("relu", alpha=2.0)
    assert get_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_linear_rejects_invalid_sizes(value):
    """Linear sizes that are not positive integers raise BplabError."""
    with pytest.raises(BplabError, match="positive integer"):
        Linear(value, 3)


# ---------------------------------------------------------------- properties over random inputs


@settings(max_examples=50, deadline=None)
@given(z=arrays(np.float64, st.integers(1, 20), elements=st.floats(allow_nan=False,
                                                                    allow_infinity=False)))
def test_sigmoid_bounded_for_any_finite_input(z):
    """sigmoid of any finite float64 lies in [0, 1], is symmetric, and raises no warning."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = sigmoid(z)
        mirrored = sigmoid(-z)
    assert ((y >= 0.0) & (y <= 1.0)).all()
    np.testing.assert_allclose(y + mirrored, 1.0, rtol=1e-15, atol=0.0)


def test_relu_keeps_nan():
    """ReLU maps NaN to NaN, as PyTorch does, so diverged weights cannot hide behind it."""
    assert np.isnan(ReLU().forward(np.array([np.nan, -1.0, 2.0]))[0])


def test_softmax_tiny_probabilities_without_warning():
    """Softmax and cross-entropy of [0, 708, 708] raise no underflow error."""
    from bplab.engine.losses import SoftmaxCrossEntropy

    z = np.array([[0.0, 708.0, 708.0], [708.0, 0.0, 708.0]])
    with np.errstate(all="raise"):
        Softmax().forward(z)
        loss_fn = SoftmaxCrossEntropy()
        loss_fn.forward(z, [1, 0])
        assert np.isfinite(loss_fn.backward()).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"eps": 0}, "invalid eps 0"),
    ({"eps": float("nan")}, "invalid eps nan"),
    ({"x": np.array([[np.nan, 1.0]])}, "NaN"),
    ({"x": [["a", "b"]]}, "must be numbers"),
])
def test_gradcheck_rejects_misuse(kwargs, message):
    """gradcheck rejects a step eps <= 0 or NaN, and inputs that are NaN or not numbers."""
    options = {"x": np.ones((2, 2)), **kwargs}
    with pytest.raises(BplabError, match=message):
        gradcheck(Linear(2, 3), **options)


def test_linear_bias_shape_after_step():
    """Linear's bias keeps shape (4,) after an optimizer step on a (4, 4) input."""
    from bplab.engine.network import Sequential
    from bplab.engine.optim import SGD

    net = Sequential([Linear(4, 4)])
    net.backward(np.ones_like(net.forward(np.ones((4, 4), dtype=np.float32))))
    SGD(net.named_parameters(), lr=0.1).step()
    assert net.layers[0].params["bias"].shape == (4,)
    np.testing.assert_allclose(net.layers[0].params["bias"], [-0.4] * 4, rtol=1e-6)
