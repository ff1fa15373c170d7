"""Parity of the NumPy engine with PyTorch autograd in float64: values and every gradient."""

import numpy as np
import pytest

from bplab.engine.activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from bplab.engine.layers import BatchNorm1d, Dropout, Flatten, Linear
from bplab.engine.losses import MSE, BCEWithLogits, SoftmaxCrossEntropy

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOLERANCE = 1e-10


def assert_close(numpy_value, torch_value, quantity):
    expected = torch_value.detach().numpy() if hasattr(torch_value, "detach") else torch_value
    np.testing.assert_allclose(numpy_value, expected, rtol=TOLERANCE, atol=TOLERANCE, err_msg=quantity)


def tensor(array, requires_grad=False):
    return torch.tensor(array, dtype=torch.float64, requires_grad=requires_grad)


def inputs(shape, seed=20):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) * 2.0, rng.normal(size=shape)


# ---------------------------------------------------------------- layers


TORCH_ACTIVATIONS = [
    (Sigmoid(), torch.sigmoid),
    (Tanh(), torch.tanh),
    (ReLU(), F.relu),
    (LeakyReLU(), lambda z: F.leaky_relu(z, negative_slope=0.01)),
    (LeakyReLU(0.2), lambda z: F.leaky_relu(z, negative_slope=0.2)),
    (ELU(), lambda z: F.elu(z, alpha=1.0)),
    (ELU(0.5), lambda z: F.elu(z, alpha=0.5)),
    (GELU(), lambda z: F.gelu(z, approximate="none")),
    (Softmax(), lambda z: F.softmax(z, dim=-1)),
    (Softmax(axis=0), lambda z: F.softmax(z, dim=0)),
]


@pytest.mark.parametrize(
    "layer, torch_fn", TORCH_ACTIVATIONS, ids=[repr(layer) for layer, _ in TORCH_ACTIVATIONS]
)
def test_activation_matches_torch(layer, torch_fn):
    """Each activation's output and input gradient equal PyTorch's for a (6, 4) input."""
    x, grad_out = inputs((6, 4))
    x_t = tensor(x, requires_grad=True)
    y_t = torch_fn(x_t)
    y_t.backward(tensor(grad_out))

    y = layer.forward(x)
    assert_close(y, y_t, "output")
    assert_close(layer.backward(grad_out), x_t.grad, "input gradient")


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias):
    """Linear's output and its input, weight and bias gradients equal PyTorch's."""
    layer = Linear(5, 3, bias=bias, rng=np.random.default_rng(21), dtype=np.float64)
    if bias:
        layer.params["bias"][:] = [0.1, -0.2, 0.3]
    x, _ = inputs((7, 5))
    grad_out = np.random.default_rng(22).normal(size=(7, 3))

    x_t = tensor(x, requires_grad=True)
    weight_t = tensor(layer.params["weight"], requires_grad=True)  # (D_in, D_out)
    bias_t = tensor(layer.params["bias"], requires_grad=True) if bias else None
    y_t = F.linear(x_t, weight_t.T, bias_t)
    y_t.backward(tensor(grad_out))

    assert_close(layer.forward(x), y_t, "output")
    assert_close(layer.backward(grad_out), x_t.grad, "input gradient")
    assert_close(layer.grads["weight"], weight_t.grad, "weight gradient")
    if bias:
        assert_close(layer.grads["bias"], bias_t.grad, "bias gradient")


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_matches_torch(training):
    """BatchNorm1d's output, gradients and running statistics equal PyTorch's (train and eval)."""
    rng = np.random.default_rng(23)
    layer = BatchNorm1d(4, momentum=0.2, eps=1e-3, dtype=np.float64)
    layer.params["weight"][:] = rng.uniform(0.5, 1.5, 4)
    layer.params["bias"][:] = rng.normal(size=4)
    layer.buffers["running_mean"][:] = rng.normal(size=4)
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, 4)
    layer.train(training)
    x = rng.normal(size=(6, 4)) * 3.0 + 1.0
    grad_out = rng.normal(size=(6, 4))

    x_t = tensor(x, requires_grad=True)
    weight_t = tensor(layer.params["weight"], requires_grad=True)
    bias_t = tensor(layer.params["bias"], requires_grad=True)
    running_mean_t = tensor(layer.buffers["running_mean"])
    running_var_t = tensor(layer.buffers["running_var"])
    y_t = F.batch_norm(x_t, running_mean_t, running_var_t, weight_t, bias_t,
                       training=training, momentum=0.2, eps=1e-3)
    y_t.backward(tensor(grad_out))

    assert_close(layer.forward(x), y_t, "output")
    assert_close(layer.backward(grad_out), x_t.grad, "input gradient")
    assert_close(layer.grads["weight"], weight_t.grad, "weight gradient")
    assert_close(layer.grads["bias"], bias_t.grad, "bias gradient")
    assert_close(layer.buffers["running_mean"], running_mean_t, "running mean")
    assert_close(layer.buffers["running_var"], running_var_t, "running variance")


def test_flatten_matches_torch():
    """Flatten's output and input gradient equal torch.flatten(start_dim=1)."""
    x, grad_out = inputs((3, 2, 5))
    x_t = tensor(x, requires_grad=True)
    y_t = torch.flatten(x_t, start_dim=1)
    y_t.backward(tensor(grad_out.reshape(3, 10)))
    layer = Flatten()
    assert_close(layer.forward(x), y_t, "output")
    assert_close(layer.backward(grad_out.reshape(3, 10)), x_t.grad, "input gradient")


class _FixedMask:
    """Stands in for a NumPy Generator: `random` returns 1 where `keep` is True, else 0."""

    def __init__(self, keep):
        self.keep = keep

    def random(self, shape):
        assert shape == self.keep.shape
        return self.keep.astype(np.float64)


def test_dropout_matches_torch():
    """With torch's own mask, Dropout's output and input gradient equal F.dropout's."""
    x, grad_out = inputs((6, 5))
    torch.manual_seed(0)
    x_t = tensor(x, requires_grad=True)
    y_t = F.dropout(x_t, p=0.4, training=True)
    y_t.backward(tensor(grad_out))
    keep = y_t.detach().numpy() != 0  # x has no zeros, so a zero output is a dropped unit
    assert keep.any()
    assert not keep.all()
    layer = Dropout(0.4, rng=_FixedMask(keep))
    assert_close(layer.forward(x), y_t, "output")
    assert_close(layer.backward(grad_out), x_t.grad, "input gradient")


# ---------------------------------------------------------------- losses


def loss_parity(loss_fn, torch_loss, logits, y):
    logits_t = tensor(logits, requires_grad=True)
    loss_t = torch_loss(logits_t)
    loss_t.backward()
    assert_close(loss_fn.forward(logits, y), loss_t, "loss")
    assert_close(loss_fn.backward(), logits_t.grad, "logits gradient")


def test_cross_entropy_integer_labels_match_torch():
    """Cross-entropy with integer labels equals F.cross_entropy in value and gradient."""
    rng = np.random.default_rng(24)
    logits, y = rng.normal(size=(7, 4)) * 3.0, rng.integers(0, 4, size=7)
    loss_parity(SoftmaxCrossEntropy(), lambda z: F.cross_entropy(z, torch.tensor(y)), logits, y)


def test_cross_entropy_one_hot_labels_match_torch():
    """Cross-entropy with one-hot labels equals F.cross_entropy with probability targets."""
    rng = np.random.default_rng(25)
    logits, y = rng.normal(size=(7, 4)) * 3.0, rng.integers(0, 4, size=7)
    one_hot = np.eye(4)[y]
    loss_parity(SoftmaxCrossEntropy(), lambda z: F.cross_entropy(z, tensor(one_hot)),
                logits, one_hot)


def test_cross_entropy_extreme_logits_match_torch():
    """Cross-entropy of [-431, 279, 427] and [0, 800] equals PyTorch's value and gradient."""
    logits = np.array([[-431.0, 279.0, 427.0], [0.0, 800.0, -5.0]])
    y = np.array([0, 0])
    loss_parity(SoftmaxCrossEntropy(), lambda z: F.cross_entropy(z, torch.tensor(y)), logits, y)


def test_bce_with_logits_matches_torch():
    """BCE with logits equals F.binary_cross_entropy_with_logits, including logits of +-40."""
    rng = np.random.default_rng(26)
    logits = rng.normal(size=(5, 3)) * 4.0
    logits[0] = [40.0, -40.0, 40.0]
    targets = rng.integers(0, 2, size=(5, 3)).astype(np.float64)
    targets[0] = [1.0, 0.0, 0.0]
    loss_parity(BCEWithLogits(),
                lambda z: F.binary_cross_entropy_with_logits(z, tensor(targets)),
                logits, targets)


def test_mse_matches_torch():
    """MSE equals F.mse_loss with its default mean reduction."""
    rng = np.random.default_rng(27)
    y_hat, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    loss_parity(MSE(), lambda z: F.mse_loss(z, tensor(y)), y_hat, y)


# ---------------------------------------------------------------- a whole network


def test_mlp_matches_torch():
    """A Linear-Tanh-Linear-ReLU-Linear MLP with cross-entropy equals PyTorch given the same weights."""
    rng = np.random.default_rng(28)
    layers = [
        Linear(5, 8, rng=rng, init="xavier_normal", dtype=np.float64), Tanh(),
        Linear(8, 6, rng=rng, dtype=np.float64), ReLU(),
        Linear(6, 3, rng=rng, init="lecun_normal", dtype=np.float64),
    ]
    for layer in layers:
        if "bias" in layer.params:
            layer.params["bias"][:] = rng.normal(size=layer.params["bias"].shape) * 0.1
    x = rng.normal(size=(9, 5))
    y = rng.integers(0, 3, size=9)

    # NumPy: forward through the layers, loss, then backward in reverse order.
    out = x
    for layer in layers:
        out = layer.forward(out)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(out, y)
    grad = loss_fn.backward()
    for layer in reversed(layers):
        grad = layer.backward(grad)

    # PyTorch: the same computation with autograd.
    x_t = tensor(x, requires_grad=True)
    torch_params = {
        (i, name): tensor(value, requires_grad=True)
        for i, layer in enumerate(layers) for name, value in layer.params.items()
    }
    h = torch.tanh(x_t @ torch_params[0, "weight"] + torch_params[0, "bias"])
    h = torch.relu(h @ torch_params[2, "weight"] + torch_params[2, "bias"])
    logits_t = h @ torch_params[4, "weight"] + torch_params[4, "bias"]
    loss_t = F.cross_entropy(logits_t, torch.tensor(y))
    loss_t.backward()

    assert_close(out, logits_t, "logits")
    assert_close(loss, loss_t, "loss")
    assert_close(grad, x_t.grad, "input gradient")
    for (i, name), param_t in torch_params.items():
        assert_close(layers[i].grads[name], param_t.grad, f"layer {i} {name} gradient")
