"""Optimizers that update NumPy parameters in place from their accumulated gradients.

Each optimizer takes ``Sequential.named_parameters()`` and keeps per-parameter state (velocity,
moment estimates) in arrays of the parameter's dtype. Defaults are those of the papers cited.
"""

from __future__ import annotations

import math

import numpy as np

from bplab.errors import BplabError, unknown_name_error


class Optimizer:
    """Base class of the optimizers, over ``(name, param, grad)`` triples with a learning rate `lr`."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise BplabError("optimizer got no parameters to update")
        if not (lr > 0 and math.isfinite(lr)):
            raise BplabError(f"invalid learning rate {lr}: expected a positive finite number")
        self.lr = float(lr)
        self.t = 0  # number of steps taken

    def step(self) -> None:
        """Update every parameter once from its gradient."""
        self.t += 1
        for i, (_, param, grad) in enumerate(self.params):
            self._update(i, param, grad)

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set the gradients of the optimized parameters to zero."""
        for _, _, grad in self.params:
            grad.fill(0)


def _check_eps(eps: float) -> float:
    """Return `eps`, the term that keeps a denominator away from 0, or raise unless it is > 0."""
    if not (eps > 0 and math.isfinite(eps)):
        raise BplabError(f"invalid eps {eps}: expected a small positive number such as 1e-8")
    return eps


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Momentum follows the form PyTorch uses: ``v = mu * v + g`` and ``p -= lr * v``; with Nesterov,
    ``p -= lr * (g + mu * v)`` (Sutskever et al., 2013).
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise BplabError(f"invalid momentum {momentum}: expected 0 <= momentum < 1")
        if nesterov and momentum == 0:
            raise BplabError("Nesterov momentum needs momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = [np.zeros_like(p) for _, p, _ in self.params] if momentum else []

    def _update(self, i, param, grad):
        if not self.momentum:
            param -= self.lr * grad
            return
        v = self.velocity[i]
        v *= self.momentum
        v += grad
        if self.nesterov:
            param -= self.lr * (grad + self.momentum * v)
        else:
            param -= self.lr * v


class RMSProp(Optimizer):
    """RMSProp (Tieleman and Hinton, 2012, lecture 6.5): decay 0.9, lr 1e-3.

    PyTorch's default decay (`alpha`) is 0.99; pass ``rho=0.99`` to match it.
    """

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-8):
        super().__init__(params, lr)
        if not 0.0 <= rho < 1.0:
            raise BplabError(f"invalid rho {rho}: expected 0 <= rho < 1")
        self.rho = rho
        self.eps = _check_eps(eps)
        self.square_avg = [np.zeros_like(p) for _, p, _ in self.params]

    def _update(self, i, param, grad):
        s = self.square_avg[i]
        s *= self.rho
        s += (1 - self.rho) * np.square(grad)
        param -= self.lr * grad / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): lr 1e-3, betas (0.9, 0.999), eps 1e-8, bias-corrected moments.

    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1^t)`` and
    ``v_hat = v / (1 - beta2^t)``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise BplabError(f"invalid betas {tuple(betas)}: each must be in [0, 1)")
        self.eps = _check_eps(eps)
        self.m = [np.zeros_like(p) for _, p, _ in self.params]
        self.v = [np.zeros_like(p) for _, p, _ in self.params]

    def step(self) -> None:
        """Update every parameter once; the bias corrections use the new step count."""
        self.t += 1
        self._c1 = 1 - self.beta1**self.t
        self._sqrt_c2 = math.sqrt(1 - self.beta2**self.t)
        for i, (_, param, grad) in enumerate(self.params):
            self._update(i, param, grad)

    def _update(self, i, param, grad):
        m, v = self.m[i], self.v[i]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * np.square(grad)
        # sqrt(v_hat) + eps, computed in place in a scratch array
        denom = np.sqrt(v)
        denom /= self._sqrt_c2
        denom += self.eps
        np.divide(m, denom, out=denom)
        denom *= self.lr / self._c1
        param -= denom


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay, default 1e-2.

    The decay ``p -= lr * weight_decay * p`` is applied to every parameter before the Adam step,
    as PyTorch does. It is separate from the L2 term that the trainer adds to the loss.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps)
        if not (0.0 <= weight_decay and math.isfinite(weight_decay)):
            raise BplabError(f"invalid weight_decay {weight_decay}: expected a finite number >= 0")
        self.weight_decay = weight_decay

    def _update(self, i, param, grad):
        if self.weight_decay:
            param *= 1 - self.lr * self.weight_decay
        super()._update(i, param, grad)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": SGD,
    "nesterov": SGD,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
}


def get_optimizer(name: str, params, **kwargs) -> Optimizer:
    """Create an optimizer by name; ``momentum`` and ``nesterov`` are SGD with momentum 0.9."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if key in ("momentum", "nesterov"):
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = key == "nesterov"
    try:
        return OPTIMIZERS[key](params, **kwargs)
    except TypeError as exc:
        raise BplabError(f"invalid option for optimizer {name!r}: {exc}") from None
