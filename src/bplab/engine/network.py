"""`Sequential`: a stack of layers run forward in order and backward in reverse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from bplab.engine.activations import get_activation
from bplab.engine.layers import BatchNorm1d, Dropout, Layer, Linear, layer_from_config
from bplab.errors import BplabError


class Sequential:
    """A network made of layers applied one after another.

    Gradients accumulate in each layer's ``grads`` across `backward` calls until `zero_grad`,
    as in PyTorch; the trainer clears them after every optimizer step.
    """

    def __init__(self, layers: Iterable[Layer]):
        self.layers = list(layers)
        self.training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return the output of the last layer for a batch `x`."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Back-propagate dLoss/dOutput through every layer; return dLoss/dInput."""
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def backward_params(self, grad_out: np.ndarray) -> None:
        """Back-propagate only as far as the parameters need, and return nothing.

        Layers before the first trainable one are skipped, and that layer computes no input
        gradient when it supports ``input_grad`` (Linear, Conv2d). The parameter gradients equal
        those of `backward`; the trainer uses this because the data needs no gradient.
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        if first is None:
            return
        for layer in self.layers[:first:-1]:
            grad_out = layer.backward(grad_out)
        layer = self.layers[first]
        if not hasattr(layer, "input_grad"):
            layer.backward(grad_out)
            return
        saved = layer.input_grad
        layer.input_grad = False
        try:
            layer.backward(grad_out)
        finally:
            layer.input_grad = saved

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        for layer in self.layers:
            layer.zero_grad()

    def train(self, mode: bool = True) -> Sequential:
        """Switch Dropout and BatchNorm layers to training (or, with False, evaluation) mode."""
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        """Switch to evaluation mode."""
        return self.train(False)

    def named_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Return ``(name, param, grad)`` triples, names like ``"0.weight"``, in a fixed order."""
        return [
            (f"{i}.{key}", layer.params[key], layer.grads[key])
            for i, layer in enumerate(self.layers)
            for key in layer.params
        ]

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """Return ``(name, buffer)`` pairs of non-trainable state such as BatchNorm statistics."""
        return [
            (f"{i}.{key}", value)
            for i, layer in enumerate(self.layers)
            for key, value in getattr(layer, "buffers", {}).items()
        ]

    def num_parameters(self) -> int:
        """Return the number of trainable scalars."""
        return int(sum(p.size for _, p, _ in self.named_parameters()))

    @property
    def dtype(self) -> np.dtype:
        """The floating-point type of the parameters (float32 when there are none)."""
        params = self.named_parameters()
        return params[0][1].dtype if params else np.dtype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Return copies of every parameter and buffer, keyed by name."""
        state = {name: p.copy() for name, p, _ in self.named_parameters()}
        state.update({name: b.copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the existing parameters and buffers (in place, so optimizers keep them).

        Raises BplabError when a key is missing or unexpected, or a shape differs.
        """
        targets = {name: p for name, p, _ in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise BplabError(
                f"state does not match the network: missing {missing or 'none'}, "
                f"unexpected {unexpected or 'none'}"
            )
        for name, target in targets.items():
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise BplabError(
                    f"shape mismatch for {name}: network has {target.shape}, state has {value.shape}"
                )
            if value.dtype.kind not in "biuf":
                raise BplabError(f"{name} has dtype {value.dtype}; expected numbers")
            np.copyto(target, value, casting="same_kind")

    def astype(self, dtype) -> Sequential:
        """Cast every parameter, gradient and buffer to `dtype`; create optimizers after this."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def get_config(self) -> dict:
        """Return a JSON-ready description of the architecture (no weights)."""
        return {"type": "Sequential", "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict, rng: np.random.Generator | None = None) -> Sequential:
        """Build a network from `get_config` output, with freshly initialised weights."""
        if not isinstance(config, dict) or config.get("type") != "Sequential":
            raise BplabError("invalid network description: expected {'type': 'Sequential', ...}")
        layers = config.get("layers", [])
        if not isinstance(layers, list):
            raise BplabError(f"invalid network description: 'layers' must be a list, got {layers!r}")
        return cls(layer_from_config(layer, rng=rng) for layer in layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer.get_config()) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


def build_mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    init: str = "he_normal",
    dropout: float = 0.0,
    batchnorm: bool = False,
    rng: np.random.Generator | None = None,
    dtype=np.float32,
) -> Sequential:
    """Build a multilayer perceptron ``Linear -> [BatchNorm1d] -> activation -> [Dropout] ...``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(784, 128, 10)``; the last Linear has no
        activation, because models return logits.
    activation : str
        An activation name from ``bplab.engine.activations.ACTIVATIONS``.
    init : str
        A weight initializer name from ``bplab.engine.init.INITIALIZERS``.
    dropout : float
        Dropout probability after each hidden activation (0 disables it).
    batchnorm : bool
        Insert BatchNorm1d between each hidden Linear and its activation.
    rng : numpy.random.Generator
        Source of the initial weights and dropout masks; ``default_rng(0)`` when None.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise BplabError(f"invalid MLP sizes {sizes}: need at least two positive widths")
    if not 0.0 <= dropout < 1.0:
        raise BplabError(f"invalid dropout {dropout}: expected 0 <= p < 1")
    get_activation(activation)  # fails early, listing the valid names
    rng = np.random.default_rng(0) if rng is None else rng
    layers: list[Layer] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(d_in, d_out, init=init, rng=rng, dtype=dtype))
        if i == len(sizes) - 2:
            break
        if batchnorm:
            layers.append(BatchNorm1d(d_out).astype(dtype))
        layers.append(get_activation(activation))
        if dropout > 0:
            layers.append(Dropout(dropout, rng=rng))
    return Sequential(layers)
