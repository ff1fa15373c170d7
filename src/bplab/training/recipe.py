"""The single-label image classification recipe behind `bplab train`: config to run folder.

`run_training` wires `bplab.data`, `bplab.models` and the task-agnostic `Trainer` together:
cross-entropy loss, accuracy as the monitored metric, checkpoints and metric files in the run
folder, and a final report on the test split from the best checkpoint.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bplab.config import set_seed, to_dict
from bplab.errors import BplabError
from bplab.runs import write_json
from bplab.training.callbacks import (
    Checkpointer,
    EarlyStopping,
    EpochLogger,
    MetricsWriter,
    ProgressBar,
    TensorBoardLogger,
)
from bplab.training.checkpoint import load_checkpoint
from bplab.training.data import DataBundle, DataConfig, build_data, make_loader
from bplab.training.distributed import DistInfo, barrier, unwrap_model
from bplab.training.loop import Trainer
from bplab.training.metrics import accuracy_from_logits, classification_report
from bplab.training.optim import OptimConfig, ScheduleConfig, build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Everything `bplab train` needs; saved as ``config.json`` in the run folder."""

    model: str = "lenet5"  # a name from `bplab.models.list_models()`
    model_args: dict = dataclasses.field(default_factory=dict)  # extra constructor options
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    epochs: int = 10  # total epochs of the run
    stop_after: int = 0  # end this invocation after this many epochs; --resume continues (0 = off)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    grad_clip: float = 0.0  # max global gradient norm (0 = no clipping)
    early_stop: int = 0  # stop after this many epochs without a better val_accuracy (0 = off)
    seed: int = 0  # seeds weights, the split, shuffling and augmentation
    deterministic: bool = False  # deterministic kernels, so reruns give identical weights
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps
    amp: bool = True  # mixed precision (used on CUDA only)
    threads: int = 0  # CPU threads for torch ops (0 = torch's default, one per core)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from its ``config.json`` form (lists become tuples)."""
    def build(cls, values):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(fields)
        if unknown:
            raise BplabError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(fields)}")
        kwargs = {}
        for key, value in values.items():
            default = fields[key].default
            if dataclasses.is_dataclass(fields[key].default_factory if default is
                                        dataclasses.MISSING else default):
                value = build(fields[key].default_factory, value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    return build(TrainConfig, data)


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` model options; values are Python literals or else strings."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BplabError(f"invalid model option {item!r}: expected KEY=VALUE, e.g. depth=4")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


def configure_determinism(deterministic: bool) -> None:
    """Ask torch for deterministic kernels (warnings, not errors, where none exists)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def accuracy_metric(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Validation metric of the recipe: accuracy (higher is better)."""
    return accuracy_from_logits(logits, targets)


def batch_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Training-batch accuracy for the progress bar and ``train_accuracy``."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def build_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    """Create `cfg.model` for the data's classes, channels and image size."""
    from bplab.models import create_model

    return create_model(cfg.model, num_classes=len(data.class_names), in_chans=data.in_chans,
                        img_size=data.img_size, **cfg.model_args)


def checkpoint_extra(cfg: TrainConfig, data: DataBundle) -> dict[str, Any]:
    """Metadata stored in every checkpoint, so a model can be rebuilt from the file alone."""
    return {
        "config": to_dict(cfg),
        "model_name": cfg.model,
        "model_args": dict(cfg.model_args),
        "class_names": list(data.class_names),
        "data_info": {"in_chans": data.in_chans, "img_size": data.img_size,
                      "mean": list(data.mean), "std": list(data.std)},
    }


def run_training(cfg: TrainConfig, run_dir: Path, dist_info: DistInfo,
                 resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (or continue the `resume` checkpoint); return the summary.

    Every rank calls this; only rank 0 writes files.
    """
    from bplab.models import describe

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    configure_determinism(cfg.deterministic)
    data = build_data(cfg.data, seed=cfg.seed)
    model = build_model(cfg, data).to(dist_info.device)
    if dist_info.is_main:
        log.info("%s; %d train, %d val, %d test images; device %s x %d", describe(model, cfg.model),
                 len(data.train), len(data.val), len(data.test), dist_info.device,
                 dist_info.world_size)
    if dist_info.distributed:
        device_ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    loader_args = dict(dist_info=dist_info, seed=cfg.seed, num_workers=cfg.data.num_workers)
    train_loader = make_loader(data.train, cfg.data.batch_size, train=True, **loader_args)
    val_loader = make_loader(data.val, cfg.data.eval_batch_size, train=False, **loader_args)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs, len(train_loader))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    callbacks = [
        EarlyStopping(cfg.early_stop),
        ProgressBar(),
        EpochLogger(),
        MetricsWriter(run_dir),
        TensorBoardLogger(run_dir),
        Checkpointer(run_dir, checkpoint_extra(cfg, data)),
    ]
    trainer = Trainer(model, optimizer, loss_fn, train_loader, val_loader,
                      metric_fn=accuracy_metric, monitor="val_accuracy", monitor_mode="max",
                      scheduler=scheduler, max_epochs=cfg.epochs, grad_clip=cfg.grad_clip,
                      amp=cfg.amp, dist_info=dist_info, callbacks=callbacks,
                      batch_metric_fn=batch_accuracy)
    if resume is not None:
        trainer.load_state_dict(resume)
        if dist_info.is_main:
            log.info("resuming after epoch %d of %d", trainer.state.epoch, cfg.epochs)
    if cfg.stop_after > 0:
        trainer.max_epochs = min(cfg.epochs, trainer.state.epoch + cfg.stop_after)
    trainer.fit()
    completed = trainer.state.epoch >= cfg.epochs or trainer.state.should_stop
    trainer.max_epochs = cfg.epochs

    barrier(dist_info)  # rank 0 has written best.pt
    best = load_checkpoint(run_dir / "best.pt", map_location=dist_info.device)
    unwrap_model(model).load_state_dict(best["model"])
    test_loader = make_loader(data.test, cfg.data.eval_batch_size, train=False, **loader_args)
    test_logs, logits, targets = trainer.evaluate(test_loader, prefix="test_")
    summary = {}
    if dist_info.is_main:
        summary = write_test_report(run_dir, cfg, data, trainer, test_logs, logits, targets,
                                    completed)
    barrier(dist_info)
    return summary


def write_test_report(run_dir: Path, cfg: TrainConfig, data: DataBundle, trainer: Trainer,
                      test_logs: dict, logits: torch.Tensor, targets: torch.Tensor,
                      completed: bool) -> dict[str, Any]:
    """Write the classification report, figures and ``summary.json``; return the summary."""
    from bplab.models import count_parameters
    from bplab.report.plots import plot_confusion_matrix, plot_curves, save_figure

    probs = logits.softmax(dim=1).numpy()
    y_true = targets.numpy()
    y_pred = probs.argmax(axis=1)
    report = classification_report(y_true, y_pred, data.class_names)
    write_json(run_dir / "test_report.json", report)
    save_figure(plot_confusion_matrix(np.array(report["confusion_matrix"]), data.class_names,
                                      title="test confusion matrix"),
                run_dir / "confusion_matrix.png")
    save_figure(worst_mistakes_figure(data, probs, y_true), run_dir / "worst_mistakes.png")
    save_figure(plot_curves(trainer.history, loss_keys=("train_loss", "val_loss"),
                            acc_keys=("train_accuracy", "val_accuracy")),
                run_dir / "curves.png")

    seconds = [row["seconds"] for row in trainer.history]
    summary = {
        "model": cfg.model,
        "dataset": cfg.data.dataset,
        "params": count_parameters(unwrap_model(trainer.model)),
        "epochs": trainer.state.epoch,
        "completed": completed,
        "best_epoch": trainer.state.best_epoch,
        "best_val_accuracy": trainer.state.best_metric,
        "test_accuracy": report["accuracy"],
        "test_loss": test_logs["test_loss"],
        "test_macro_f1": report["macro"]["f1"],
        "test_images": len(y_true),
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "world_size": trainer.dist.world_size,
        "device": str(trainer.device),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(run_dir / "summary.json", summary)
    log.info("test accuracy %.4f (%d images) from the best epoch %d; run folder %s",
             summary["test_accuracy"], len(y_true), summary["best_epoch"], run_dir)
    return summary


def worst_mistakes_figure(data: DataBundle, probs: np.ndarray, y_true: np.ndarray,
                          count: int = 24):
    """Plot the misclassified test images with the most confident wrong predictions."""
    from bplab.report.plots import plot_image_grid

    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    order = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:count]
    images = data.test.images[order]
    if images.shape[-1] == 1:
        images = images[..., 0]
    names = data.class_names
    titles = [f"{names[y_true[i]]}->{names[y_pred[i]]} {probs[i, y_pred[i]]:.2f}" for i in order]
    if len(order) == 0:
        images, titles = data.test.images[:0, ..., 0], []
    return plot_image_grid(images, titles, ncols=8,
                           title=f"most confident mistakes ({len(wrong)} wrong)")
