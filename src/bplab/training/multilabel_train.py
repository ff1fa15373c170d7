"""Multi-label training pieces for `Trainer`: image dataset, transforms, masked losses, val metric.

The dataset yields ``(x, (y, mask))``: multi-hot targets and a loss mask of shape (C,), where mask
0 marks a label left out of the loss (a difficult-only class under the ``mask`` policy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from bplab.data.image_io import read_rgb
from bplab.errors import BplabError, unknown_name_error
from bplab.training.multilabel import mean_average_precision

AUGMENTATIONS = ("none", "flip", "crop-flip", "resized-crop-flip")
LOSSES = ("bce", "asl")


class MultiLabelImageDataset(Dataset):
    """Image files with multi-hot targets (N, C) and loss masks (N, C), as normalized tensors.

    Every image is resized to img_size x img_size, then `augment` (or nothing) is applied. With
    `cache` the resized images are decoded once into memory as uint8, which removes JPEG decoding
    from every epoch after the first.
    """

    def __init__(self, paths: Sequence, y: np.ndarray, mask: np.ndarray, img_size: int,
                 augment: Callable | None, mean: Sequence[float], std: Sequence[float],
                 cache: bool = False):
        if not (len(paths) == len(y) == len(mask)):
            raise BplabError(f"{len(paths)} images but {len(y)} target rows")
        self.paths = [str(p) for p in paths]
        self.y = torch.as_tensor(y, dtype=torch.float32)
        self.mask = torch.as_tensor(mask, dtype=torch.float32)
        self.img_size = img_size
        self.augment = augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.cached = None
        if cache:
            self.cached = torch.stack([self._decode(i) for i in range(len(self.paths))])

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, index: int) -> torch.Tensor:
        """Return image `index` resized, as uint8 of shape (3, img_size, img_size)."""
        image = read_rgb(self.paths[index]).resize((self.img_size, self.img_size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def load(self, index: int) -> torch.Tensor:
        """Return image `index` resized and augmented, unnormalized, (3, H, W) in [0, 1]."""
        image = self.cached[index] if self.cached is not None else self._decode(index)
        image = image.float().div_(255)
        return self.augment(image) if self.augment is not None else image

    def __getitem__(self, index: int):
        x = (self.load(index) - self.mean) / self.std
        return x, (self.y[index], self.mask[index])


def build_augment(img_size: int, augment: str = "none") -> Callable | None:
    """Return the train-time augmentation of resized images, or None for ``none``.

    Evaluation must use ``none``, so that test images are never augmented.
    """
    from torchvision.transforms import v2

    if augment not in AUGMENTATIONS:
        raise unknown_name_error("augmentation", augment, AUGMENTATIONS)
    if augment == "none":
        return None
    if augment == "flip":
        return v2.RandomHorizontalFlip()
    if augment == "crop-flip":
        return v2.Compose([v2.RandomCrop(img_size, padding=img_size // 8, padding_mode="reflect"),
                           v2.RandomHorizontalFlip()])
    # random crops of 30-100 % of the area can cut an object out, so keep them for large images
    return v2.Compose([v2.RandomResizedCrop(img_size, scale=(0.3, 1.0), antialias=True),
                       v2.RandomHorizontalFlip()])


def masked_bce_loss(pos_weight: torch.Tensor | None = None) -> Callable:
    """Return loss_fn(logits, (y, mask)): BCE with logits averaged over unmasked labels."""

    def loss_fn(logits: torch.Tensor, target) -> torch.Tensor:
        y, mask = target
        weight = None if pos_weight is None else pos_weight.to(logits.device)
        per_label = F.binary_cross_entropy_with_logits(logits, y, reduction="none",
                                                       pos_weight=weight)  # (N, C)
        return (per_label * mask).sum() / mask.sum().clamp(min=1.0)

    return loss_fn


def asymmetric_loss(gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05) -> Callable:
    """Return the asymmetric loss (Ridnik et al., ICCV 2021) as loss_fn(logits, (y, mask)).

    Positives: -(1 - p)^gamma_pos log p. Negatives use the shifted probability
    p_m = max(p - clip, 0): -p_m^gamma_neg log(1 - p_m), which down-weights easy negatives and
    ignores very easy ones. The paper's defaults for multi-label sets are gamma_neg 4, clip 0.05.
    """

    def loss_fn(logits: torch.Tensor, target) -> torch.Tensor:
        y, mask = target
        p = torch.sigmoid(logits)
        p_shifted = (p - clip).clamp(min=0) if clip > 0 else p
        log_p = F.logsigmoid(logits)
        log_not_p = torch.log((1 - p_shifted).clamp(min=1e-8))
        loss_pos = y * (1 - p).pow(gamma_pos) * log_p
        loss_neg = (1 - y) * p_shifted.pow(gamma_neg) * log_not_p
        per_label = -(loss_pos + loss_neg)  # (N, C)
        return (per_label * mask).sum() / mask.sum().clamp(min=1.0)

    return loss_fn


def build_loss(name: str, pos_weight: torch.Tensor | None = None) -> Callable:
    """Return the loss `name`: ``bce`` (optionally with pos_weight) or ``asl``."""
    if name == "bce":
        return masked_bce_loss(pos_weight)
    if name == "asl":
        if pos_weight is not None:
            raise BplabError("pos_weight applies to the bce loss only")
        return asymmetric_loss()
    raise unknown_name_error("loss", name, LOSSES)


def auto_pos_weight(y: np.ndarray, mask: np.ndarray, max_weight: float = 10.0) -> np.ndarray:
    """Return per-class negatives/positives over unmasked labels, clipped to [1, max_weight]."""
    pos = (y * mask).sum(0)
    neg = ((1 - y) * mask).sum(0)
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, max_weight)


def three_state(y: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Return targets as 1 / 0 / -1 (masked, e.g. difficult) for the evaluation functions."""
    targets = y.numpy().astype(np.int64)
    targets[mask.numpy() == 0] = -1
    return targets


def val_map_metric(logits: torch.Tensor, target) -> dict[str, float]:
    """Trainer metric: mAP of the whole validation split under each AP variant."""
    y, mask = target
    probs = torch.sigmoid(logits.float()).numpy()
    targets = three_state(y, mask)
    result = {}
    for variant in ("voc07_11point", "voc_allpoint", "noninterp"):
        try:
            result[f"mAP_{variant}"] = mean_average_precision(probs, targets, variant)
        except BplabError:
            result[f"mAP_{variant}"] = 0.0  # no positives at all in this split
    return result
