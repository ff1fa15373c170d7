"""Optimizers and learning-rate schedules chosen by name from small config dataclasses."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from bplab.errors import unknown_name_error


@dataclasses.dataclass
class OptimConfig:
    """Optimizer settings."""

    name: str = "adamw"  # sgd, adam or adamw
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum for SGD
    weight_decay: float = 0.05  # decoupled (AdamW) or L2 (SGD, Adam); not applied to biases/norms
    betas: tuple[float, ...] = (0.9, 0.999)  # Adam/AdamW moment decay rates


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule settings; the schedule is stepped after every optimizer step."""

    name: str = "cosine"  # constant, cosine, step or onecycle
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to the peak lr (not used by onecycle)
    min_lr_ratio: float = 0.0  # cosine: final lr as a fraction of the peak
    step_epochs: int = 30  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    pct_start: float = 0.25  # onecycle: fraction of the steps spent increasing the lr


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer `cfg.name` with weight decay on weight matrices and kernels only."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise unknown_name_error("optimizer", cfg.name, ["sgd", "adam", "adamw"])


def schedule_factor(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Return the lr multiplier at optimizer step `step` (0-based) for warm-up + `cfg.name`."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine
    if cfg.name == "step":
        return cfg.gamma ** (step // max(1, cfg.step_epochs * steps_per_epoch))
    raise unknown_name_error("schedule", cfg.name, ["constant", "cosine", "onecycle", "step"])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Build a per-step scheduler for `epochs` epochs of `steps_per_epoch` optimizer steps."""
    total_steps = max(1, epochs * steps_per_epoch)
    if cfg.name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr,
                                                   total_steps=total_steps,
                                                   pct_start=cfg.pct_start)
    schedule_factor(cfg, 0, total_steps, steps_per_epoch)  # rejects an unknown name now
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule_factor(cfg, step, total_steps, steps_per_epoch)
    )
