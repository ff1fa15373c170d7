"""`fit`: mini-batch training of a `Sequential` network, with validation and early stopping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from bplab.engine.losses import Loss, as_class_indices, get_loss
from bplab.engine.network import Sequential
from bplab.engine.optim import Optimizer, get_optimizer
from bplab.engine.schedules import Schedule
from bplab.errors import BplabError

logger = logging.getLogger(__name__)

# A callback receives the epoch's record and the network after every epoch.
Callback = Callable[[dict, Sequential], None]


@dataclass
class History:
    """Training record of `fit`: one dict per epoch, and the epoch whose weights were kept."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # epoch whose weights were restored, if early stopping kept one
    stopped_early: bool = False
    seconds: float = 0.0


def as_float_array(x, dtype=np.float32) -> np.ndarray:
    """Return `x` as a floating array of `dtype` (a copy for integer input); reject NaN and inf."""
    try:
        x = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise BplabError(f"invalid input: {exc}") from None
    if x.dtype.kind not in "biuf":
        raise BplabError(f"invalid input of dtype {x.dtype}: expected numbers")
    if x.dtype.kind == "f" and not _all_finite(x):
        raise BplabError("input contains NaN or infinite values")
    # Only a cast from a wider float can overflow: integers up to int64 fit in float32.
    narrowing = x.dtype.kind == "f" and x.dtype.itemsize > np.dtype(dtype).itemsize
    with np.errstate(over="ignore"):
        x = x.astype(dtype, copy=x.dtype != dtype)
    if narrowing and not _all_finite(x):
        raise BplabError(f"input contains values too large for {np.dtype(dtype)}")
    return x


def _all_finite(x: np.ndarray) -> bool:
    """Return whether `x` has no NaN or infinity, from its min and max (NaN propagates in both)."""
    if x.size == 0:
        return True
    return bool(np.isfinite(x.min()) and np.isfinite(x.max()))


def check_float_dtype(dtype) -> np.dtype:
    """Return `dtype` as a NumPy dtype, accepting only float32 and float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype not in (np.float32, np.float64):
        raise BplabError(f"invalid dtype {dtype!r}: expected float32 or float64")
    return dtype


def check_int(value, name: str, low: int) -> int:
    """Return `value` as an int, or raise naming `name` unless it is an integer >= `low`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BplabError(f"invalid {name} {value!r}: expected an integer >= {low}")
    return int(value)


def prepare_targets(y, loss: Loss, n_outputs: int, n_samples: int) -> np.ndarray:
    """Check targets against the loss: class indices for cross-entropy, floats otherwise."""
    y = np.asarray(y)
    if y.ndim == 0:
        raise BplabError(f"targets must be an array of {n_samples} values, got the scalar {y!r}")
    if len(y) != n_samples:
        raise BplabError(f"got {n_samples} samples but {len(y)} targets")
    if loss.__class__.__name__ == "SoftmaxCrossEntropy":
        return as_class_indices(y, n_outputs)
    y = as_float_array(y, np.float64)
    return y.reshape(n_samples, -1) if y.ndim == 1 else y


def batch_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Return the number of correct predictions (not the fraction) for class-index targets."""
    if y.ndim != 1:
        return np.nan
    return float(np.sum(np.argmax(logits, axis=1) == y))


def evaluate(net: Sequential, loss: Loss, x: np.ndarray, y: np.ndarray,
             batch_size: int = 1024) -> tuple[float, float]:
    """Return the mean loss and the accuracy of `net` on ``(x, y)`` in evaluation mode."""
    was_training = net.training
    net.eval()
    total_loss, correct = 0.0, 0.0
    for start in range(0, len(x), batch_size):
        logits = net.forward(x[start:start + batch_size])
        target = y[start:start + batch_size]
        total_loss += loss.forward(logits, target) * len(target)
        correct += batch_accuracy(logits, target)
    net.train(was_training)
    return total_loss / len(x), correct / len(x)


def l2_penalty(net: Sequential, l2: float, add_grad: bool) -> float:
    """Return ``l2 / 2 * sum(W ** 2)`` over weights (not biases); optionally add ``l2 * W`` to grads."""
    if not l2:
        return 0.0
    penalty = 0.0
    for name, param, grad in net.named_parameters():
        if name.endswith("weight") and param.ndim > 1:  # BatchNorm scales are 1-D: not decayed
            penalty += float(np.sum(np.square(param, dtype=np.float64)))
            if add_grad:
                grad += l2 * param
    return 0.5 * l2 * penalty


# Overflow in a diverging run is reported once, by the non-finite loss or parameter check,
# instead of as a stream of NumPy RuntimeWarnings.
@np.errstate(over="ignore", invalid="ignore")
def fit(
    net: Sequential,
    x,
    y,
    *,
    loss: str | Loss = "cross_entropy",
    optimizer: str | Optimizer = "adam",
    lr: float | None = None,
    optimizer_options: dict | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    l2: float = 0.0,
    val_data: tuple | None = None,
    val_fraction: float = 0.0,
    patience: int | None = None,
    monitor: str = "val_loss",
    schedule: Schedule | None = None,
    seed: int = 0,
    dtype=np.float32,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> History:
    """Train `net` on ``(x, y)`` with mini-batches and return the `History`.

    Parameters
    ----------
    net : Sequential
        The network; it is cast to `dtype` before the optimizer is created.
    x : array of shape (n_samples, ...)
        Inputs; integer arrays are copied to `dtype`, the caller's array is never changed.
    y : array of shape (n_samples,) or (n_samples, n_outputs)
        Class indices (ints or integral floats) or one-hot rows for cross-entropy; real targets
        for the other losses.
    batch_size : int
        Samples per step; the last batch of an epoch may be smaller, and its loss is averaged over
        its true size. A batch size above the number of samples is clipped to it.
    l2 : float
        Coefficient of ``l2 / 2 * sum(W ** 2)``, which is part of the reported training loss.
    val_data, val_fraction
        Validation set, given or carved from the shuffled training data (seeded).
    patience : int or None
        Stop after this many epochs without improvement of `monitor` (``val_loss`` or
        ``val_accuracy``) and restore the best weights.
    seed : int or None
        Seeds the generator used for shuffling and for the validation split; the global NumPy
        state is never used.
    dtype : {float32, float64}
        Floating-point type of the network and the computation.

    Raises
    ------
    BplabError
        When the training loss or a parameter becomes NaN or infinite: the message names the
        epoch and step, and no update is made with a non-finite loss.
    """
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch size", 1)
    if patience is not None:
        patience = check_int(patience, "patience", 0)
    if seed is not None:
        seed = check_int(seed, "seed", 0)
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(seed)
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    if net.dtype != np.dtype(dtype):
        if isinstance(optimizer, Optimizer):
            raise BplabError(f"the network is {net.dtype} but training asks for {np.dtype(dtype)}; "
                             "cast the network before creating the optimizer")
        net.astype(dtype)
    x = as_float_array(x, dtype)
    if len(x) == 0:
        raise BplabError("no training samples")
    n_outputs = _output_size(net, x)
    y = prepare_targets(y, loss_fn, n_outputs, len(x))
    x, y, x_val, y_val = _split_validation(x, y, val_data, val_fraction, rng, loss_fn, n_outputs,
                                           dtype)
    if isinstance(optimizer, str):
        options = dict(optimizer_options or {})
        if lr is not None:
            options["lr"] = lr
        optimizer = get_optimizer(optimizer, net.named_parameters(), **options)
    elif not _updates_network(optimizer, net):
        raise BplabError("the optimizer was built for other parameters than this network's; "
                         "create it from net.named_parameters()")
    if monitor not in ("val_loss", "val_accuracy"):
        raise BplabError(f"invalid monitor {monitor!r}; valid choices: val_loss, val_accuracy")
    if patience is not None and x_val is None:
        raise BplabError("early stopping needs validation data: set val_fraction or val_data")
    batch_size = _check_batch_size(batch_size, len(x))
    steps_per_epoch = -(-len(x) // batch_size)

    history = History()
    stopper = _EarlyStopping(patience, monitor)
    start_time = time.perf_counter()
    net.train()
    net.zero_grad()
    # disable=None lets tqdm hide the bar when stderr is not a terminal (logs, CI).
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=None if progress else True,
               leave=False)
    for epoch in bar:
        epoch_start = time.perf_counter()
        order = rng.permutation(len(x))
        loss_sum, correct = 0.0, 0.0
        for step in range(steps_per_epoch):
            # batch -> forward -> loss -> backward -> step -> zero grads
            idx = order[step * batch_size:(step + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if schedule is not None:
                optimizer.lr = schedule.lr_at(epoch - 1 + step / steps_per_epoch)
            logits = net.forward(xb)
            batch_loss = loss_fn.forward(logits, yb) + l2_penalty(net, l2, add_grad=False)
            if not np.isfinite(batch_loss):
                raise BplabError(
                    f"training diverged: the loss is {batch_loss} at epoch {epoch}, step {step + 1}"
                    f" (learning rate {optimizer.lr:g}); lower the learning rate"
                )
            net.backward_params(loss_fn.backward())
            l2_penalty(net, l2, add_grad=True)
            optimizer.step()
            net.zero_grad()
            loss_sum += batch_loss * len(idx)
            correct += batch_accuracy(logits, yb)
        # The next batch's loss catches non-finite weights, except after an epoch's last step.
        _check_finite_parameters(net, epoch, steps_per_epoch, optimizer.lr)

        # bookkeeping -> eval -> callbacks -> stop check
        record = {"epoch": epoch, "loss": loss_sum / len(x), "train_accuracy": correct / len(x),
                  "lr": optimizer.lr}
        if x_val is not None:
            record["val_loss"], record["val_accuracy"] = evaluate(net, loss_fn, x_val, y_val)
        record["seconds"] = time.perf_counter() - epoch_start
        history.records.append(record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("loss", "val_accuracy")},
                        refresh=False)
        for callback in callbacks:
            callback(record, net)
        if stopper.update(record, net):
            history.stopped_early = True
            break
    bar.close()
    if stopper.best_state is not None:
        net.load_state_dict(stopper.best_state)
        history.best_epoch = stopper.best_epoch
    net.eval()
    history.seconds = time.perf_counter() - start_time
    return history


def _output_size(net: Sequential, x: np.ndarray) -> int:
    """Return the network's output width from one sample, in evaluation mode."""
    was_training = net.training
    net.eval()
    try:
        out = net.forward(x[:1])
    except ValueError as exc:
        raise BplabError(f"input of shape {x.shape[1:]} does not fit the network: {exc}") from None
    finally:
        net.train(was_training)
    return int(out.shape[-1])


def _updates_network(optimizer: Optimizer, net: Sequential) -> bool:
    """Return True when `optimizer` updates exactly the parameter arrays of `net`."""
    own = [id(param) for _, param, _ in net.named_parameters()]
    return sorted(own) == sorted(id(param) for _, param, _ in optimizer.params)


def _check_finite_parameters(net: Sequential, epoch: int, step: int, lr: float) -> None:
    """Raise the divergence error when a step has left a parameter NaN or infinite."""
    for name, param, _ in net.named_parameters():
        if not np.all(np.isfinite(param)):
            raise BplabError(
                f"training diverged: parameter {name} became NaN or infinite at epoch {epoch}, "
                f"step {step} (learning rate {lr:g}); lower the learning rate"
            )


def _check_batch_size(batch_size: int, n_samples: int) -> int:
    """Return `batch_size` clipped to the number of samples."""
    if batch_size > n_samples:
        logger.info("batch size %d is larger than the %d training samples; using %d",
                    batch_size, n_samples, n_samples)
    return min(batch_size, n_samples)


def _split_validation(x, y, val_data, val_fraction, rng, loss_fn, n_outputs, dtype):
    """Return ``x, y, x_val, y_val``: the given validation set or a seeded slice of the training set."""
    if val_data is not None:
        x_val = as_float_array(val_data[0], dtype)
        if x_val.ndim == 0 or len(x_val) == 0:
            raise BplabError("val_data is empty; pass val_data=None to train without validation")
        y_val = prepare_targets(val_data[1], loss_fn, n_outputs, len(x_val))
        return x, y, x_val, y_val
    if not val_fraction:
        return x, y, None, None
    if not 0 < val_fraction < 1:
        raise BplabError(f"invalid val_fraction {val_fraction}: expected 0 < fraction < 1")
    n_val = max(1, int(round(len(x) * val_fraction)))
    if n_val >= len(x):
        raise BplabError(f"val_fraction {val_fraction} leaves no training samples")
    order = rng.permutation(len(x))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


class _EarlyStopping:
    """Track the best value of the monitored metric and a copy of the weights at that epoch."""

    def __init__(self, patience: int | None, monitor: str):
        self.patience = patience
        self.monitor = monitor
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict | None = None
        self.bad_epochs = 0

    def update(self, record: dict, net: Sequential) -> bool:
        """Record this epoch; return True when training should stop."""
        if self.patience is None or self.monitor not in record:
            return False
        value = record[self.monitor]
        sign = -1 if self.monitor == "val_accuracy" else 1  # higher accuracy, lower loss is better
        if self.best_value is None or sign * value < sign * self.best_value:
            self.best_value, self.best_epoch = value, record["epoch"]
            self.best_state = net.state_dict()
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience
