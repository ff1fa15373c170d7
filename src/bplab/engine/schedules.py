"""Learning-rate schedules as functions of the (fractional) epoch.

`lr_at(epoch)` returns the rate for a position in training, where ``epoch`` is
``step / steps_per_epoch``; the trainer sets ``optimizer.lr`` from it before every step.
"""

from __future__ import annotations

import math

from bplab.errors import BplabError, unknown_name_error


class Schedule:
    """Constant learning rate; the base of the other schedules."""

    def __init__(self, base_lr: float):
        self.base_lr = float(base_lr)

    def lr_at(self, epoch: float) -> float:
        """Return the learning rate at fractional `epoch` (0 at the start of training)."""
        return self.base_lr


class StepSchedule(Schedule):
    """Multiply the rate by `gamma` every `step_size` epochs."""

    def __init__(self, base_lr: float, step_size: int = 10, gamma: float = 0.1):
        super().__init__(base_lr)
        if step_size <= 0:
            raise BplabError(f"invalid step_size {step_size}: expected a positive number of epochs")
        self.step_size = step_size
        self.gamma = gamma

    def lr_at(self, epoch: float) -> float:
        return self.base_lr * self.gamma ** math.floor(epoch / self.step_size)


class ExponentialSchedule(Schedule):
    """Multiply the rate by `gamma` per epoch, smoothly: ``lr * gamma ** epoch``."""

    def __init__(self, base_lr: float, gamma: float = 0.95):
        super().__init__(base_lr)
        self.gamma = gamma

    def lr_at(self, epoch: float) -> float:
        return self.base_lr * self.gamma**epoch


class CosineSchedule(Schedule):
    """Cosine decay from the base rate to `min_lr` over `total_epochs` (Loshchilov and Hutter, 2017)."""

    def __init__(self, base_lr: float, total_epochs: float, min_lr: float = 0.0):
        super().__init__(base_lr)
        if total_epochs <= 0:
            raise BplabError(f"invalid total_epochs {total_epochs}: expected > 0")
        self.total_epochs = total_epochs
        self.min_lr = min_lr

    def lr_at(self, epoch: float) -> float:
        progress = min(epoch / self.total_epochs, 1.0)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))


class WarmupSchedule(Schedule):
    """Linear warm-up from 0 to the inner schedule's rate over `warmup_epochs`, then the inner one."""

    def __init__(self, inner: Schedule, warmup_epochs: float):
        super().__init__(inner.base_lr)
        if warmup_epochs < 0:
            raise BplabError(f"invalid warmup_epochs {warmup_epochs}: expected >= 0")
        self.inner = inner
        self.warmup_epochs = warmup_epochs

    def lr_at(self, epoch: float) -> float:
        lr = self.inner.lr_at(epoch)
        if epoch < self.warmup_epochs:
            return lr * epoch / self.warmup_epochs
        return lr


SCHEDULES = {
    "constant": Schedule,
    "step": StepSchedule,
    "exponential": ExponentialSchedule,
    "cosine": CosineSchedule,
}


def get_schedule(name: str, base_lr: float, total_epochs: float, warmup_epochs: float = 0.0,
                 **kwargs) -> Schedule:
    """Create a schedule by name, optionally wrapped in a linear warm-up."""
    key = name.lower()
    if key not in SCHEDULES:
        raise unknown_name_error("learning-rate schedule", name, SCHEDULES)
    if key == "cosine":
        kwargs.setdefault("total_epochs", total_epochs)
    try:
        schedule = SCHEDULES[key](base_lr, **kwargs)
    except TypeError as exc:
        raise BplabError(f"invalid option for schedule {name!r}: {exc}") from None
    return WarmupSchedule(schedule, warmup_epochs) if warmup_epochs else schedule
