"""A task-agnostic training loop: the caller passes the model, loss, metric and data loaders.

The trainer has no notion of classes or labels. It runs batch -> forward -> loss -> backward
-> step -> zero grads -> bookkeeping, evaluates on the validation loader once per epoch, and
leaves printing, files, checkpoints and early stopping to callbacks (see `callbacks.py`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from bplab.errors import BplabError
from bplab.training.checkpoint import capture_rng_state, restore_rng_state
from bplab.training.distributed import DistInfo, gather_ordered, unwrap_model

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]
MetricFn = Callable[[torch.Tensor, Any], dict[str, float]]


@dataclasses.dataclass
class TrainState:
    """Progress that a checkpoint saves and a resumed run restores."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    best_metric: float | None = None  # best value of the monitored metric so far
    best_epoch: int = 0  # epoch that reached best_metric
    epochs_since_best: int = 0  # epochs without improvement, for early stopping
    should_stop: bool = False  # set by a callback to end `fit` after this epoch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a tensor, or tensors nested in tuples, lists and dicts, to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


def _map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], batch: Any) -> Any:
    """Apply `fn` to every tensor nested in `batch`."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map_tensors(fn, item) for item in batch)
    if isinstance(batch, dict):
        return {key: _map_tensors(fn, value) for key, value in batch.items()}
    return batch


def _concat(parts: list[Any]) -> Any:
    """Concatenate a list of batches (tensors or matching nested structures) along dim 0."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, (list, tuple)):
        return type(first)(_concat([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: _concat([p[key] for p in parts]) for key in first}
    raise BplabError(f"cannot concatenate targets of type {type(first).__name__}")


class Trainer:
    """Train `model` with `loss_fn` on `train_loader`; score `val_loader` with `metric_fn`.

    Parameters
    ----------
    loss_fn : callable (logits, targets) -> scalar tensor. Targets are whatever the loader yields
        after the inputs (a tensor, or a tuple such as multi-hot targets and a mask).
    metric_fn : callable (logits (N, C), targets) -> dict of floats, run on the whole validation
        split at once (so that mAP-style metrics work); keys are logged with a ``val_`` prefix.
    monitor, monitor_mode : the logged key that decides the best epoch, and "max" or "min".
    batch_metric_fn : optional callable (logits, targets) -> float averaged over the training
        batches (e.g. accuracy) and logged as ``train_<name>``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 train_loader: DataLoader, val_loader: DataLoader | None = None, *,
                 metric_fn: MetricFn | None = None, monitor: str = "val_loss",
                 monitor_mode: str = "min", scheduler=None, max_epochs: int = 10,
                 grad_clip: float = 0.0, amp: bool = False, dist_info: DistInfo | None = None,
                 callbacks: Sequence = (), batch_metric_fn=None, batch_metric_name="accuracy"):
        if monitor_mode not in ("min", "max"):
            raise BplabError(f"invalid monitor_mode {monitor_mode!r}; valid choices: max, min")
        self.dist = dist_info or DistInfo()
        self.device = self.dist.device
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.metric_fn = metric_fn
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.scheduler = scheduler
        self.max_epochs = max_epochs
        self.grad_clip = grad_clip
        self.amp = amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.callbacks = list(callbacks)
        self.batch_metric_fn = batch_metric_fn
        self.batch_metric_name = batch_metric_name
        self.state = TrainState()
        self.history: list[dict[str, float]] = []

    # --- callbacks -------------------------------------------------------------------------
    def _call(self, hook: str, *args) -> None:
        """Run `hook` on every callback that runs on this rank."""
        for callback in self.callbacks:
            if self.dist.is_main or not getattr(callback, "main_process_only", True):
                getattr(callback, hook)(self, *args)

    # --- the loop --------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        """Train from `state.epoch` to `max_epochs` (early stopping may end sooner)."""
        self._call("on_fit_start")
        while self.state.epoch < self.max_epochs and not self.state.should_stop:
            epoch = self.state.epoch + 1
            self._call("on_epoch_start", epoch)
            start = time.perf_counter()
            logs = {"epoch": epoch, **self.train_one_epoch(epoch)}
            if self.val_loader is not None:
                logs.update(self.evaluate(self.val_loader, prefix="val_")[0])
            logs["seconds"] = time.perf_counter() - start

            self.state.epoch = epoch
            self._update_best(logs)
            self.history.append(logs)
            self._call("on_epoch_end", logs)
        self._call("on_fit_end")
        return self.history

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """Run one pass over the training loader; return the mean loss and the lr at the end."""
        self.model.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), device=self.device)
        metric_sum, seen = 0.0, 0
        for batch_index, (x, target) in enumerate(self.train_loader):
            x, target = to_device(x, self.device), to_device(target, self.device)

            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.model(x)
                loss = self.loss_fn(logits, target)

            self.scaler.scale(loss).backward()
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()

            n = x.shape[0]
            loss_sum += loss.detach() * n
            seen += n
            self.state.step += 1
            batch_logs = {"loss": loss, "batch_size": n, "batch_index": batch_index}
            if self.batch_metric_fn is not None:
                value = self.batch_metric_fn(logits.detach(), target)
                metric_sum += value * n
                batch_logs[self.batch_metric_name] = value
            self._call("on_train_batch_end", batch_logs)
        logs = {"train_loss": loss_sum.item() / max(1, seen), "lr": self.current_lr()}
        if not math.isfinite(logs["train_loss"]):
            raise BplabError(f"training loss became {logs['train_loss']} in epoch {epoch}; "
                             "lower the learning rate or enable gradient clipping")
        if self.batch_metric_fn is not None:
            logs[f"train_{self.batch_metric_name}"] = metric_sum / max(1, seen)
        return logs

    @torch.no_grad()
    def predict(self, loader: DataLoader) -> tuple[torch.Tensor, Any]:
        """Return the logits (N, C) and targets of a whole loader, on the CPU, in dataset order.

        Under torchrun the loader's DistributedSampler must not shuffle; each rank scores its
        shard and the shards are gathered, so every rank gets the full result.
        """
        self.model.eval()
        all_logits, all_targets = [], []
        for x, target in loader:
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.model(to_device(x, self.device))
            all_logits.append(logits.float())
            all_targets.append(to_device(target, self.device))
        logits, targets = torch.cat(all_logits), _concat(all_targets)
        total = len(loader.dataset)
        logits = gather_ordered(logits, total, self.dist).cpu()
        targets = _map_tensors(lambda t: gather_ordered(t, total, self.dist).cpu(), targets)
        return logits, targets

    def evaluate(self, loader: DataLoader, prefix: str = "val_") -> tuple[dict, torch.Tensor, Any]:
        """Return ``({prefix}loss, {prefix}<metrics>...)``, the logits and the targets of `loader`."""
        logits, targets = self.predict(loader)
        logs = {f"{prefix}loss": self.loss_fn(logits, targets).item()}
        if self.metric_fn is not None:
            for key, value in self.metric_fn(logits, targets).items():
                logs[f"{prefix}{key}"] = value
        return logs, logits, targets

    # --- bookkeeping -----------------------------------------------------------------------
    def current_lr(self) -> float:
        """Return the learning rate of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def _update_best(self, logs: dict[str, float]) -> None:
        """Track the best value of the monitored metric; mark the epoch in `logs["is_best"]`."""
        if self.monitor not in logs:
            raise BplabError(f"monitored metric {self.monitor!r} is not logged; "
                             f"logged keys: {', '.join(sorted(logs))}")
        value = logs[self.monitor]
        best = self.state.best_metric
        better = best is None or (value > best if self.monitor_mode == "max" else value < best)
        logs["is_best"] = better
        if better:
            self.state.best_metric, self.state.best_epoch = value, self.state.epoch
            self.state.epochs_since_best = 0
        else:
            self.state.epochs_since_best += 1

    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to resume: weights, optimizer, scheduler, scaler, RNG."""
        return {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "state": dataclasses.asdict(self.state),
            "history": self.history,
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore a `state_dict`, so the next `fit` continues where the saved run stopped."""
        unwrap_model(self.model).load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState(**checkpoint["state"])
        self.state.should_stop = False
        self.history = list(checkpoint.get("history", []))
        restore_rng_state(checkpoint["rng"])
