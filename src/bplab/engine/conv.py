"""Convolution, pooling and 2-D batch normalisation for images of shape (N, C, H, W).

Every layer follows the engine's Layer contract: ``forward`` caches what ``backward`` needs,
``backward`` adds into ``grads`` and returns dLoss/dx. Convolution is an im2col matrix product:
``sliding_window_view`` exposes each receptive field as a view, one copy lays the windows out as
the columns of a matrix, and one matmul does the work. The backward pass scatters the column gradients
back with one strided add per kernel offset (kH * kW adds), never a loop over pixels.

Importing this module registers Conv2d, MaxPool2d, AvgPool2d and BatchNorm2d in
``bplab.engine.layers.LAYERS`` so that ``layer_from_config`` rebuilds them.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bplab.engine.init import get_initializer
from bplab.engine.layers import LAYERS, Layer
from bplab.errors import BplabError


def _pair(value, name: str) -> tuple[int, int]:
    """Return `value` as a pair of positive ints (an int is used for both dimensions)."""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise BplabError(f"invalid {name} {value!r}: expected an int or a pair of ints")
    return pair


def _check_images(x: np.ndarray, channels: int | None, layer: str) -> None:
    """Raise a BplabError unless `x` has shape (N, C, H, W) with the expected C."""
    if x.ndim != 4:
        raise BplabError(f"{layer} expects input of shape (N, C, H, W), got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise BplabError(f"{layer} expects {channels} input channels, got shape {x.shape}")


def _output_size(size: int, kernel: int, stride: int, padding: int, layer: str) -> int:
    """Return the output length of a window sweep, or raise when the input is too small."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise BplabError(
            f"{layer}: input size {size} with padding {padding} is smaller than "
            f"kernel size {kernel}"
        )
    return out


def _pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an (N, C, H, W) array."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Return a read-only view of shape (N, C, OH, OW, kH, kW) of every receptive field of `x`."""
    view = sliding_window_view(x, kernel, axis=(2, 3))  # (N, C, H-kH+1, W-kW+1, kH, kW)
    return view[:, :, :: stride[0], :: stride[1]]


def _offset_slices(kernel, stride, out_size):
    """Yield (i, j, index) where x[index] of shape (N, C, OH, OW) is element (i, j) of every window.

    Walking the kH * kW kernel offsets in row-major order touches each window element once,
    with whole-array operations, so no loop runs over pixels.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_size
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(None), slice(i, i + sh * oh, sh),
                         slice(j, j + sw * ow, sw))


def _unpad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Drop the padding of the two spatial axes of an (N, C, H, W) array."""
    ph, pw = padding
    return x[:, :, ph : x.shape[2] - ph, pw : x.shape[3] - pw]


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in PyTorch) over inputs of shape (N, C, H, W).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels C of the input and O of the output.
    kernel_size, stride, padding : int or (int, int)
        Window size, step between windows and zero padding on each side of H and W.
    bias : bool
        Whether to add a learned bias per output channel (initialised to zero).
    init : str
        Initializer name from ``bplab.engine.init`` for the weight, with fan_in = C * kH * kW
        and fan_out = O * kH * kW.
    rng : numpy.random.Generator, optional
        Source of the initial weights; ``np.random.default_rng(0)`` when None.

    The weight has shape (O, C, kH, kW) as in PyTorch, the bias shape (O,). The output has shape
    (N, O, OH, OW) with OH = (H + 2 * padding - kH) // stride + 1, and likewise OW.
    Gradients accumulate across backward calls until ``zero_grad()``.

    Set ``input_grad = False`` on a first layer whose input is the data: ``backward`` then
    computes only the parameter gradients and returns None, which saves the col2im pass.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, init: str = "he_normal", rng: np.random.Generator | None = None,
                 dtype=np.float32):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise BplabError(
                f"invalid Conv2d sizes: kernel_size {kernel_size!r} and stride {stride!r} must be "
                f">= 1, padding {padding!r} must be >= 0"
            )
        self.use_bias = bool(bias)
        self.init = init
        rng = np.random.default_rng(0) if rng is None else rng
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        fan_in = self.in_channels * kh * kw
        fan_out = self.out_channels * kh * kw
        weight = get_initializer(init)(shape, fan_in, fan_out, rng, dtype)
        self.params = {"weight": np.asarray(weight, dtype=dtype)}
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.input_grad = True  # False: backward skips dLoss/dx and returns None
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_images(x, self.in_channels, "Conv2d")
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        oh = _output_size(h, kh, self.stride[0], self.padding[0], "Conv2d")
        ow = _output_size(w, kw, self.stride[1], self.padding[1], "Conv2d")
        x_padded = _pad(x, self.padding)
        windows = _windows(x_padded, self.kernel_size, self.stride)  # (N, C, OH, OW, kH, kW)
        # One row per weight position and one column per output pixel. This layout copies
        # faster than one row per output pixel, because each row is a block of whole images.
        cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)
        weight_matrix = self.params["weight"].reshape(self.out_channels, c * kh * kw)
        out = weight_matrix @ cols  # (O, N*OH*OW)
        if self.use_bias:
            out += self.params["bias"][:, None]
        self._cache = (cols, x_padded.shape, (n, oh, ow))
        out = out.reshape(self.out_channels, n, oh, ow).transpose(1, 0, 2, 3)  # (N, O, OH, OW)
        return np.ascontiguousarray(out)

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        # out = W @ cols + b, so dW = grad @ cols^T, db = row sums of grad, dcols = W^T @ grad
        cols, padded_shape, (n, oh, ow) = self._cache
        c = self.in_channels
        kh, kw = self.kernel_size
        grad_rows = grad_out.transpose(1, 0, 2, 3).reshape(self.out_channels, n * oh * ow)
        weight_matrix = self.params["weight"].reshape(self.out_channels, c * kh * kw)
        self.grads["weight"] += (grad_rows @ cols.T).reshape(self.params["weight"].shape)
        if self.use_bias:
            self.grads["bias"] += grad_rows.sum(axis=1)
        if not self.input_grad:
            return None
        grad_cols = (weight_matrix.T @ grad_rows).reshape(c, kh, kw, n, oh, ow)

        # col2im: add each kernel offset's column block back onto the input pixels it came from,
        # so overlapping windows accumulate. The sum is laid out (C, N, H, W) like grad_cols.
        grad_padded = np.zeros((c, n) + tuple(padded_shape[2:]), dtype=grad_cols.dtype)
        for i, j, index in _offset_slices(self.kernel_size, self.stride, (oh, ow)):
            grad_padded[index] += grad_cols[:, i, j]
        return _unpad(grad_padded, self.padding).transpose(1, 0, 2, 3)  # (N, C, H, W)

    def get_config(self) -> dict:
        return {
            "type": "Conv2d",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.use_bias,
            "init": self.init,
        }


class MaxPool2d(Layer):
    """Max pooling over windows of shape (kH, kW) of an (N, C, H, W) input.

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows); there is no padding.
    Tie convention: when several elements of a window share the maximum, the whole gradient goes
    to the first of them in row-major order within the window (top row first, then left to
    right). PyTorch's CPU kernel picks the same element (checked against torch 2.14 in tests).
    With overlapping windows, an element that is the maximum of several windows receives the sum
    of their gradients.
    NOTE: a NaN input propagates to the output but receives no gradient.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise BplabError(
                f"invalid MaxPool2d sizes: kernel_size {kernel_size!r} and stride {stride!r} "
                "must be >= 1"
            )
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_images(x, None, "MaxPool2d")
        _, _, h, w = x.shape
        oh = _output_size(h, self.kernel_size[0], self.stride[0], 0, "MaxPool2d")
        ow = _output_size(w, self.kernel_size[1], self.stride[1], 0, "MaxPool2d")
        out = None
        for _, _, index in _offset_slices(self.kernel_size, self.stride, (oh, ow)):
            out = x[index].copy() if out is None else np.maximum(out, x[index], out=out)
        self._cache = (x, out)
        return out  # (N, C, OH, OW)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # d max / d x_k is 1 for the chosen element of the window and 0 for the others. The
        # offsets are visited in row-major order, and `taken` keeps later ties from matching.
        x, out = self._cache
        grad_x = np.zeros(x.shape, dtype=grad_out.dtype)
        taken = np.zeros(out.shape, dtype=bool)
        for _, _, index in _offset_slices(self.kernel_size, self.stride, out.shape[2:]):
            chosen = (x[index] == out) & ~taken
            taken |= chosen
            grad_x[index] += np.where(chosen, grad_out, 0)
        return grad_x

    def get_config(self) -> dict:
        return {"type": "MaxPool2d", "kernel_size": list(self.kernel_size),
                "stride": list(self.stride)}


class AvgPool2d(Layer):
    """Average pooling over windows of shape (kH, kW) of an (N, C, H, W) input.

    ``stride`` defaults to ``kernel_size``. Zero ``padding`` is counted in the average, as with
    PyTorch's default ``count_include_pad=True``.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise BplabError(
                f"invalid AvgPool2d sizes: kernel_size {kernel_size!r} and stride {stride!r} "
                f"must be >= 1, padding {padding!r} must be >= 0"
            )
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_images(x, None, "AvgPool2d")
        _, _, h, w = x.shape
        _output_size(h, self.kernel_size[0], self.stride[0], self.padding[0], "AvgPool2d")
        _output_size(w, self.kernel_size[1], self.stride[1], self.padding[1], "AvgPool2d")
        x_padded = _pad(x, self.padding)
        self._cache = x_padded.shape
        return _windows(x_padded, self.kernel_size, self.stride).mean(axis=(-2, -1))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # every element of a window gets 1 / (kH * kW) of the window's gradient
        kh, kw = self.kernel_size
        share = grad_out / (kh * kw)
        grad_padded = np.zeros(self._cache, dtype=share.dtype)
        for _, _, index in _offset_slices(self.kernel_size, self.stride, share.shape[2:]):
            grad_padded[index] += share
        return _unpad(grad_padded, self.padding)

    def get_config(self) -> dict:
        return {"type": "AvgPool2d", "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding)}


class BatchNorm2d(Layer):
    """Batch normalisation per channel over (N, H, W), with PyTorch's semantics.

    Training normalises with the batch mean and the biased batch variance. It also updates the
    running estimates as ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased variance. Evaluation normalises with the running estimates. Params "weight" (gamma,
    ones) and "bias" (beta, zeros) have shape (C,); buffers "running_mean" and "running_var" too.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype=np.float32):
        super().__init__()
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.params = {"weight": np.ones(self.num_features, dtype=dtype),
                       "bias": np.zeros(self.num_features, dtype=dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.buffers = {"running_mean": np.zeros(self.num_features, dtype=dtype),
                        "running_var": np.ones(self.num_features, dtype=dtype)}
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_images(x, self.num_features, "BatchNorm2d")
        n, c, h, w = x.shape
        gamma = self.params["weight"].reshape(1, c, 1, 1)
        beta = self.params["bias"].reshape(1, c, 1, 1)
        if not self.training:
            mean = self.buffers["running_mean"].reshape(1, c, 1, 1)
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"].reshape(1, c, 1, 1) + self.eps)
            x_hat = (x - mean) * inv_std
            self._cache = (x_hat, inv_std, False)
            return x_hat * gamma + beta

        count = n * h * w
        if count < 2:
            raise BplabError(
                "BatchNorm2d needs more than one value per channel in training, "
                f"got shape {x.shape}"
            )
        mean = x.mean(axis=(0, 2, 3), keepdims=True)  # (1, C, 1, 1)
        centered = x - mean
        var = (centered**2).mean(axis=(0, 2, 3), keepdims=True)  # biased, used to normalise
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = centered * inv_std
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1 - m
        running_mean += (m * mean.ravel()).astype(running_mean.dtype)
        running_var *= 1 - m
        running_var += (m * var.ravel() * count / (count - 1)).astype(running_var.dtype)
        self._cache = (x_hat, inv_std, True)
        return x_hat * gamma + beta

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # with g = dL/dx_hat, training: dL/dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)),
        # means over (N, H, W) per channel, because the batch statistics depend on x.
        # Evaluation uses fixed running statistics, so dL/dx = inv_std * g.
        x_hat, inv_std, batch_statistics = self._cache
        c = self.num_features
        self.grads["weight"] += (grad_out * x_hat).sum(axis=(0, 2, 3))
        self.grads["bias"] += grad_out.sum(axis=(0, 2, 3))
        grad_x_hat = grad_out * self.params["weight"].reshape(1, c, 1, 1)
        if not batch_statistics:
            return grad_x_hat * inv_std
        mean_grad = grad_x_hat.mean(axis=(0, 2, 3), keepdims=True)
        mean_grad_x_hat = (grad_x_hat * x_hat).mean(axis=(0, 2, 3), keepdims=True)
        return inv_std * (grad_x_hat - mean_grad - x_hat * mean_grad_x_hat)

    def get_config(self) -> dict:
        return {"type": "BatchNorm2d", "num_features": self.num_features,
                "momentum": self.momentum, "eps": self.eps}


for _layer in (Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d):
    LAYERS[_layer.__name__] = _layer
