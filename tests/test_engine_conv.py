"""NumPy convolution, pooling and BatchNorm2d: finite differences, PyTorch parity, ties, configs."""

import numpy as np
import pytest

from bplab.engine.conv import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from bplab.engine.layers import LAYERS, layer_from_config
from bplab.errors import BplabError

# (input shape, Conv2d keyword arguments): the first two are the required cases, stride 1 with
# padding 1 on a square input and stride 2 on an input with H != W.
CONV_CASES = [
    ((2, 3, 5, 5), dict(in_channels=3, out_channels=4, kernel_size=3, stride=1, padding=1)),
    ((2, 3, 7, 6), dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1)),
    ((1, 2, 6, 9), dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 2))),
    ((2, 1, 6, 6), dict(in_channels=1, out_channels=2, kernel_size=5, padding=2, bias=False)),
]


def numeric_gradients(layer, x, grad_out, eps=1e-6):
    """Return central-difference gradients of sum(forward(x) * grad_out) for x and each param."""

    def objective():
        return float(np.sum(layer.forward(x) * grad_out))

    numeric = {}
    for name, array in [("input", x), *layer.params.items()]:
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = objective()
            array[index] = saved - eps
            minus = objective()
            array[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        numeric[name] = grad
    return numeric


def analytic_gradients(layer, x, grad_out):
    """Return backward's gradients for x and each param after one forward/backward pass."""
    layer.zero_grad()
    layer.forward(x)
    grads = {"input": layer.backward(grad_out)}
    grads.update({name: g.copy() for name, g in layer.grads.items()})
    return grads


def relative_error(a, b):
    """Return ||a - b|| / (||a|| + ||b||), 0 when both are zero."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def check_finite_differences(layer, x, rng, tol=1e-6):
    """Assert that every analytic gradient of `layer` at `x` matches central differences."""
    grad_out = rng.standard_normal(layer.forward(x).shape)
    analytic = analytic_gradients(layer, x, grad_out)
    numeric = numeric_gradients(layer, x, grad_out)
    for name in numeric:
        err = relative_error(analytic[name], numeric[name])
        assert err < tol, f"{type(layer).__name__} gradient of {name}: relative error {err:.2e}"


@pytest.mark.parametrize("shape,kwargs", CONV_CASES)
def test_conv2d_finite_differences(shape, kwargs):
    """Conv2d gradients for input, weight and bias match central differences in float64."""
    rng = np.random.default_rng(0)
    layer = Conv2d(**kwargs, rng=rng, dtype=np.float64)
    if layer.use_bias:
        layer.params["bias"][:] = rng.standard_normal(layer.params["bias"].shape)
    check_finite_differences(layer, rng.standard_normal(shape), rng)


@pytest.mark.parametrize("layer", [
    MaxPool2d(2),
    MaxPool2d(3, stride=2),
    MaxPool2d((2, 3), stride=(1, 2)),
    AvgPool2d(2),
    AvgPool2d(3, stride=2, padding=1),
], ids=["max2", "max3s2", "max2x3", "avg2", "avg3s2p1"])
def test_pool_finite_differences(layer):
    """Pooling input gradients match central differences (inputs without ties)."""
    rng = np.random.default_rng(1)
    check_finite_differences(layer, rng.standard_normal((2, 3, 7, 6)), rng)


def test_batchnorm2d_finite_differences():
    """BatchNorm2d training-mode gradients match central differences in float64."""
    rng = np.random.default_rng(2)
    layer = BatchNorm2d(3, dtype=np.float64)
    layer.params["weight"][:] = rng.uniform(0.5, 1.5, 3)
    layer.params["bias"][:] = rng.standard_normal(3)
    check_finite_differences(layer, rng.standard_normal((4, 3, 3, 2)), rng)


def test_batchnorm2d_eval_finite_differences():
    """BatchNorm2d eval-mode gradients (running statistics fixed) match central differences."""
    rng = np.random.default_rng(3)
    layer = BatchNorm2d(2, dtype=np.float64)
    layer.buffers["running_mean"][:] = [0.5, -1.0]
    layer.buffers["running_var"][:] = [2.0, 0.5]
    layer.eval()
    check_finite_differences(layer, rng.standard_normal((3, 2, 4, 4)), rng)


def test_maxpool_tie_first_row_major():
    """On ties the whole gradient goes to the first maximal element of the window, row by row."""
    x = np.array([[[[1.0, 3.0, 2.0, 2.0],
                    [3.0, 3.0, 2.0, 2.0]]]])  # (1, 1, 2, 4): window 0 ties at three places
    layer = MaxPool2d(2)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, [[[[3.0, 2.0]]]])
    grad_x = layer.backward(np.array([[[[10.0, 20.0]]]]))
    expected = np.array([[[[0.0, 10.0, 20.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(grad_x, expected)


def test_maxpool_overlapping_windows_sum_gradients():
    """An element that is the maximum of two overlapping windows receives both gradients."""
    x = np.zeros((1, 1, 1, 5))
    x[0, 0, 0, 2] = 5.0  # the maximum of windows [0:3] and [2:5]
    layer = MaxPool2d((1, 3), stride=(1, 2))
    layer.forward(x)
    grad_x = layer.backward(np.array([[[[1.5, 2.5]]]]))
    np.testing.assert_array_equal(grad_x, [[[[0.0, 0.0, 4.0, 0.0, 0.0]]]])


def test_gradients_accumulate_until_zero_grad():
    """Two backward calls add their weight gradients; zero_grad clears them."""
    rng = np.random.default_rng(4)
    layer = Conv2d(2, 3, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 2, 5, 5))
    grad_out = rng.standard_normal((2, 3, 3, 3))
    layer.forward(x)
    layer.backward(grad_out)
    once = layer.grads["weight"].copy()
    layer.forward(x)
    layer.backward(grad_out)
    np.testing.assert_allclose(layer.grads["weight"], 2 * once)
    layer.zero_grad()
    assert not layer.grads["weight"].any()


def test_conv2d_without_input_grad():
    """With input_grad off, backward returns None and the parameter gradients are unchanged."""
    rng = np.random.default_rng(10)
    layer = Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 2, 5, 4))
    grad_out = rng.standard_normal((2, 3, 5, 4))
    expected = analytic_gradients(layer, x, grad_out)
    layer.input_grad = False
    layer.zero_grad()
    layer.forward(x)
    assert layer.backward(grad_out) is None
    np.testing.assert_array_equal(layer.grads["weight"], expected["weight"])
    np.testing.assert_array_equal(layer.grads["bias"], expected["bias"])


def test_conv2d_init_and_dtype():
    """Conv2d uses the PyTorch weight layout, He-normal scale, zero bias and the requested dtype."""
    layer = Conv2d(16, 32, 3, rng=np.random.default_rng(5))
    assert layer.params["weight"].shape == (32, 16, 3, 3)
    assert layer.params["weight"].dtype == np.float32
    assert not layer.params["bias"].any()
    expected_std = np.sqrt(2.0 / (16 * 9))
    assert abs(layer.params["weight"].std() / expected_std - 1) < 0.1
    x = np.ones((1, 16, 8, 8), dtype=np.float32)
    assert layer.forward(x).dtype == np.float32


def test_config_round_trip():
    """Every conv layer is registered and rebuilt by layer_from_config with the same config."""
    layers = [Conv2d(3, 4, (3, 2), stride=2, padding=1, bias=False), MaxPool2d(3, stride=2),
              AvgPool2d(2, padding=1), BatchNorm2d(5, momentum=0.2)]
    for layer in layers:
        cfg = layer.get_config()
        assert LAYERS[cfg["type"]] is type(layer)
        rebuilt = layer_from_config(cfg, rng=np.random.default_rng(0))
        assert type(rebuilt) is type(layer)
        assert rebuilt.get_config() == cfg


@pytest.mark.parametrize("call,match", [
    (lambda: Conv2d(3, 4, 3).forward(np.zeros((2, 2, 5, 5), np.float32)), "3 input channels"),
    (lambda: Conv2d(3, 4, 3).forward(np.zeros((3, 5, 5), np.float32)), r"\(N, C, H, W\)"),
    (lambda: Conv2d(1, 1, 5).forward(np.zeros((1, 1, 3, 3), np.float32)), "smaller than kernel"),
    (lambda: MaxPool2d(0), "must be >= 1"),
    (lambda: Conv2d(1, 1, 3, padding=-1), "must be >= 0"),
    (lambda: BatchNorm2d(2).forward(np.zeros((1, 2, 1, 1), np.float32)), "more than one value"),
], ids=["channels", "ndim", "too-small", "pool-size", "padding", "bn-single"])
def test_bad_input_raises_bplab_error(call, match):
    """Wrong shapes and sizes raise a BplabError naming the problem."""
    with pytest.raises(BplabError, match=match):
        call()


# --- PyTorch parity (float64) ---------------------------------------------------------------


def torch_gradients(torch, module, x, grad_out):
    """Run a torch module forward and backward; return (output, {input, params} gradients)."""
    x_t = torch.tensor(x, requires_grad=True)
    out = module(x_t)
    out.backward(torch.tensor(grad_out))
    grads = {"input": x_t.grad.numpy()}
    for name, param in module.named_parameters():
        grads[name] = param.grad.numpy()
    return out.detach().numpy(), grads


@pytest.mark.parametrize("shape,kwargs", CONV_CASES)
def test_conv2d_matches_torch(shape, kwargs):
    """Conv2d output and gradients equal torch.nn.Conv2d's in float64 to 1e-10."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    layer = Conv2d(**kwargs, rng=rng, dtype=np.float64)
    if layer.use_bias:
        layer.params["bias"][:] = rng.standard_normal(layer.params["bias"].shape)
    module = torch.nn.Conv2d(**kwargs).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.params["weight"]))
        if layer.use_bias:
            module.bias.copy_(torch.tensor(layer.params["bias"]))
    x = rng.standard_normal(shape)
    out = layer.forward(x)
    grad_out = rng.standard_normal(out.shape)
    grad_x = layer.backward(grad_out)
    torch_out, torch_grads = torch_gradients(torch, module, x, grad_out)
    np.testing.assert_allclose(out, torch_out, rtol=0, atol=1e-10)
    np.testing.assert_allclose(grad_x, torch_grads["input"], rtol=0, atol=1e-10)
    for name in layer.params:
        np.testing.assert_allclose(layer.grads[name], torch_grads[name], rtol=0, atol=1e-10)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_maxpool_matches_torch(kernel, stride, ties):
    """MaxPool2d output and input gradient equal torch's, including its choice on ties."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))
    if ties:
        x = np.round(x)  # many equal values inside each window
    layer = MaxPool2d(kernel, stride)
    module = torch.nn.MaxPool2d(kernel, stride)
    out = layer.forward(x)
    grad_out = rng.standard_normal(out.shape)
    torch_out, torch_grads = torch_gradients(torch, module, x, grad_out)
    np.testing.assert_allclose(out, torch_out, rtol=0, atol=1e-10)
    np.testing.assert_allclose(layer.backward(grad_out), torch_grads["input"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), 0)])
def test_avgpool_matches_torch(kernel, stride, padding):
    """AvgPool2d output and input gradient equal torch's (count_include_pad=True)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = AvgPool2d(kernel, stride, padding)
    module = torch.nn.AvgPool2d(kernel, stride, padding)
    out = layer.forward(x)
    grad_out = rng.standard_normal(out.shape)
    torch_out, torch_grads = torch_gradients(torch, module, x, grad_out)
    np.testing.assert_allclose(out, torch_out, rtol=0, atol=1e-10)
    np.testing.assert_allclose(layer.backward(grad_out), torch_grads["input"], rtol=0, atol=1e-10)


def test_batchnorm2d_matches_torch_train_and_eval():
    """BatchNorm2d equals torch's in training (output, gradients, running stats) and in eval."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    layer = BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    module = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    weight, bias = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    layer.params["weight"][:], layer.params["bias"][:] = weight, bias
    with torch.no_grad():
        module.weight.copy_(torch.tensor(weight))
        module.bias.copy_(torch.tensor(bias))

    for _ in range(2):
        layer.zero_grad()
        module.zero_grad()
        x = 2.0 + 3.0 * rng.standard_normal((4, 3, 5, 3))
        out = layer.forward(x)
        grad_out = rng.standard_normal(out.shape)
        grad_x = layer.backward(grad_out)
        torch_out, torch_grads = torch_gradients(torch, module, x, grad_out)
        np.testing.assert_allclose(out, torch_out, rtol=0, atol=1e-10)
        np.testing.assert_allclose(grad_x, torch_grads["input"], rtol=0, atol=1e-10)
        for name in ("weight", "bias"):
            np.testing.assert_allclose(layer.grads[name], torch_grads[name], rtol=0, atol=1e-10)
    np.testing.assert_allclose(layer.buffers["running_mean"], module.running_mean.numpy(),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], module.running_var.numpy(),
                               rtol=0, atol=1e-12)

    layer.eval()
    module.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    with torch.no_grad():
        torch_out = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(layer.forward(x), torch_out, rtol=0, atol=1e-10)
