"""Callbacks for `Trainer`: progress bar, epoch log line, metric files, checkpoints, early stop.

A callback overrides any of the hooks below. Callbacks with ``main_process_only = True`` (the
default) run on rank 0 only, so under torchrun one process prints and writes.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bplab.runs import MetricsLog
from bplab.training.checkpoint import save_checkpoint

log = logging.getLogger(__name__)


class Callback:
    """Base class: every hook does nothing."""

    main_process_only = True

    def on_fit_start(self, trainer) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Called before each epoch; `epoch` counts from 1."""

    def on_train_batch_end(self, trainer, batch_logs: dict[str, Any]) -> None:
        """Called after each optimizer step with the batch's loss tensor and size."""

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        """Called after each epoch's training and validation with that epoch's metrics."""

    def on_fit_end(self, trainer) -> None:
        """Called once after the last epoch."""


class ProgressBar(Callback):
    """A tqdm bar per epoch showing the running loss, the batch metric and images per second."""

    def __init__(self, refresh_every: int = 10, disable: bool | None = None):
        self.refresh_every = refresh_every
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self.bar = None

    def on_epoch_start(self, trainer, epoch: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(trainer.train_loader), desc=f"epoch {epoch}/{trainer.max_epochs}",
                        leave=False, disable=self.disable, dynamic_ncols=True)
        self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, batch_logs: dict[str, Any]) -> None:
        self.images += batch_logs["batch_size"]
        self.bar.update(1)
        if self.disable or batch_logs["batch_index"] % self.refresh_every:
            return
        postfix = {"loss": f"{batch_logs['loss'].item():.4f}"}
        name = trainer.batch_metric_name
        if name in batch_logs:
            postfix[name[:3]] = f"{batch_logs[name]:.4f}"
        rate = self.images * trainer.dist.world_size / max(1e-9, time.perf_counter() - self.start)
        postfix["img/s"] = f"{rate:.0f}"
        self.bar.set_postfix(postfix, refresh=False)

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        self.bar.close()


class EpochLogger(Callback):
    """One log line per epoch: losses (lower is better), metrics, lr and seconds."""

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        parts = [f"epoch {logs['epoch']}/{trainer.max_epochs}"]
        for key, value in logs.items():
            if key in ("epoch", "lr", "seconds", "is_best") or not isinstance(value, float):
                continue
            parts.append(f"{key} {value:.4f}")
        parts.append(f"lr {logs['lr']:.2e}")
        parts.append(f"{logs['seconds']:.1f}s")
        if logs.get("is_best"):
            parts.append(f"(best {trainer.monitor})")
        log.info("  ".join(parts))


class MetricsWriter(Callback):
    """Append each epoch's metrics to ``metrics.jsonl`` and rewrite ``metrics.csv`` from it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.jsonl = MetricsLog(self.run_dir / "metrics.jsonl")

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        self.jsonl.append(logs)
        rows = trainer.history
        fields = list(dict.fromkeys(key for row in rows for key in row))
        tmp = self.run_dir / "metrics.csv.tmp"
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.run_dir / "metrics.csv")


class TensorBoardLogger(Callback):
    """Write each epoch's scalars as TensorBoard events under ``tensorboard/`` when installed."""

    def __init__(self, run_dir: str | Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed; no event files are written")
            return
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in logs.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, logs["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class Checkpointer(Callback):
    """Write ``last.pt`` after every epoch and ``best.pt`` when the monitored metric improves.

    `extra` (config, model name and options, class names, normalization) is stored in every
    checkpoint so that eval, predict and export can rebuild the model from the file alone.
    """

    def __init__(self, run_dir: str | Path, extra: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.extra = extra or {}

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        state = {**trainer.state_dict(), **self.extra}
        save_checkpoint(self.run_dir / "last.pt", state)
        if logs.get("is_best"):
            save_checkpoint(self.run_dir / "best.pt", state)


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for `patience` epochs (0 = never).

    It runs on every rank: all ranks see the same gathered validation metrics, so they stop on
    the same epoch.
    """

    main_process_only = False

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        if self.patience > 0 and trainer.state.epochs_since_best >= self.patience:
            trainer.state.should_stop = True
            if trainer.dist.is_main:
                log.info("early stopping: %s has not improved for %d epochs (best %.4f, epoch %d)",
                         trainer.monitor, self.patience, trainer.state.best_metric,
                         trainer.state.best_epoch)
