"""Torch datasets over the NumPy image arrays of `bplab.data`, with augmentation and loaders.

Images stay uint8 in memory; each item is scaled to [0, 1], augmented (training split only) and
normalized with per-dataset constants. Loaders always use a DistributedSampler for training
(a world of one without torchrun), so shuffling depends only on the seed and the epoch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bplab.errors import BplabError
from bplab.training.distributed import DistInfo

log = logging.getLogger(__name__)

# Per-channel mean and std of the training images scaled to [0, 1].
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
BUILTIN_DATASETS = ("mnist", "fashion-mnist", "cifar10")
AUGMENTATIONS = ("auto", "none", "digits", "photos")


@dataclasses.dataclass
class DataConfig:
    """Dataset, split sizes, augmentation and loader settings."""

    dataset: str = "mnist"  # mnist, fashion-mnist, cifar10, or a class-per-folder image folder
    data_dir: str | None = None  # data root; default $BPLAB_DATA_DIR or the user cache
    val_size: int = 5000  # images held out of the training split for validation
    train_subset: int = 0  # use only this many training images (0 = all)
    test_subset: int = 0  # score only this many test images (0 = all)
    img_size: int = 0  # resize folder images to this size (0 = keep their size)
    augment: str = "auto"  # auto, none, digits (small affine, no flips) or photos (crop + flip)
    # auto picks digits for grayscale images (MNIST, Fashion-MNIST) and photos for RGB images
    batch_size: int = 128  # images per optimizer step and per process
    eval_batch_size: int = 512  # images per forward pass when scoring
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)


@dataclasses.dataclass
class DataBundle:
    """The three splits as datasets plus what a model and a report need to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    class_names: list[str]
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str


class ArrayDataset(Dataset):
    """Images (N, H, W) or (N, H, W, C) uint8 and labels (N,) as normalized (C, H, W) tensors."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise BplabError(f"expected uint8 images of shape (N, H, W[, C]), got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise BplabError(f"{len(x)} images but {len(y)} labels")
        self.images = np.ascontiguousarray(x)  # (N, H, W, C), kept for figures
        self.x = torch.from_numpy(self.images).permute(0, 3, 1, 2)  # (N, C, H, W) view
        self.y = torch.as_tensor(y, dtype=torch.int64)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.x[index].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return (image - self.mean) / self.std, self.y[index]


def build_transform(kind: str, img_size: int) -> Callable | None:
    """Return the training augmentation `kind` for images of `img_size` pixels, or None."""
    from torchvision.transforms import v2

    if kind == "none":
        return None
    if kind == "digits":
        # Small shifts, rotations and zooms keep a digit readable; flips would not (2 vs 5).
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
    if kind == "photos":
        return v2.Compose([
            v2.RandomCrop(img_size, padding=img_size // 8, padding_mode="reflect"),
            v2.RandomHorizontalFlip(),
        ])
    raise BplabError(f"unknown augmentation {kind!r}; valid choices: {', '.join(AUGMENTATIONS)}")


def load_split_arrays(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load `split` ("train" or "test") of `cfg.dataset` as uint8 images, labels, class names."""
    name = cfg.dataset
    if name in ("mnist", "fashion-mnist"):
        from bplab.data.mnist import CLASS_NAMES, load_mnist

        x, y = load_mnist(name, split, data_dir=cfg.data_dir)
        return x, y, list(CLASS_NAMES[name])
    if name == "cifar10":
        from bplab.data.images import CIFAR10_CLASSES, load_cifar10

        x, y = load_cifar10(split, data_dir=cfg.data_dir)
        return x, y, list(CIFAR10_CLASSES)
    root = Path(name).expanduser()
    if not root.is_dir():
        raise BplabError(
            f"unknown dataset {name!r}; valid choices: {', '.join(BUILTIN_DATASETS)}, "
            "or a folder of class subfolders (optionally split into train/ and test/)"
        )
    from bplab.data.images import load_image_folder

    size = cfg.img_size or None
    if (root / "train").is_dir():
        if split == "test" and not (root / "test").is_dir():
            raise BplabError(f"{root} has train/ but no test/ folder; add test/<class>/ images")
        return load_image_folder(root, split=split, size=size)
    # One flat class-per-folder tree: its images serve as both splits, cut apart in `build_data`.
    return load_image_folder(root, size=size)


def _subset(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator):
    """Return `n` randomly chosen samples (in their original order), or all when n is 0."""
    if n <= 0 or n >= len(y):
        return x, y
    keep = np.sort(rng.choice(len(y), size=n, replace=False))
    return x[keep], y[keep]


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Load the train/val/test splits of `cfg.dataset` as normalized ArrayDatasets."""
    from bplab.data.mnist import train_val_split

    rng = np.random.default_rng(seed)
    x_train, y_train, class_names = load_split_arrays(cfg, "train")
    flat_folder = cfg.dataset not in BUILTIN_DATASETS and not (Path(cfg.dataset) / "train").is_dir()
    if flat_folder:
        # Hold out a fifth of a flat folder for the test split, at least one image.
        test_size = max(1, len(y_train) // 5)
        x_train, y_train, x_test, y_test = train_val_split(x_train, y_train, test_size, seed + 1)
    else:
        x_test, y_test, test_names = load_split_arrays(cfg, "test")
        if test_names != class_names:
            raise BplabError(f"{cfg.dataset}: test classes {test_names} differ from the training "
                             f"classes {class_names}")
    if cfg.val_size >= len(y_train):
        raise BplabError(f"val_size {cfg.val_size} leaves no training images out of "
                         f"{len(y_train)}; lower data.val_size")
    x_train, y_train, x_val, y_val = train_val_split(x_train, y_train, cfg.val_size, seed)
    x_train, y_train = _subset(x_train, y_train, cfg.train_subset, rng)
    x_test, y_test = _subset(x_test, y_test, cfg.test_subset, rng)

    in_chans = 1 if x_train.ndim == 3 else x_train.shape[-1]
    img_size = x_train.shape[1]
    if x_train.shape[1] != x_train.shape[2]:
        raise BplabError(f"{cfg.dataset}: images are {x_train.shape[1]}x{x_train.shape[2]}; "
                         "bplab's models expect square images, set data.img_size")
    if cfg.dataset in BUILTIN_DATASETS:
        mean, std = NORMALIZATION[cfg.dataset]
    else:
        scaled = x_train.reshape(len(x_train), -1, in_chans).astype(np.float32) / 255
        mean = tuple(float(v) for v in scaled.mean(axis=(0, 1)))
        std = tuple(max(1e-3, float(v)) for v in scaled.std(axis=(0, 1)))
        log.info("normalization from the training images: mean %s, std %s",
                 np.round(mean, 4).tolist(), np.round(std, 4).tolist())

    augment = cfg.augment
    if augment == "auto":
        augment = "photos" if in_chans == 3 else "digits"
    transform = build_transform(augment, img_size)
    return DataBundle(
        train=ArrayDataset(x_train, y_train, mean, std, transform),
        val=ArrayDataset(x_val, y_val, mean, std),
        test=ArrayDataset(x_test, y_test, mean, std),
        class_names=class_names, in_chans=in_chans, img_size=img_size,
        mean=tuple(mean), std=tuple(std), augment=augment,
    )


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, dist_info: DistInfo,
                seed: int = 0, num_workers: int = 0) -> DataLoader:
    """Build a DataLoader: shuffled by (seed, epoch) for training, in order for scoring.

    Under torchrun each rank reads its own shard; scoring shards are padded to equal length and
    `Trainer.predict` reassembles them in dataset order.
    """
    sampler = None
    if train or dist_info.distributed:
        sampler = DistributedSampler(dataset, num_replicas=dist_info.world_size,
                                     rank=dist_info.rank, shuffle=train, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=dist_info.device.type == "cuda",
                      persistent_workers=num_workers > 0)
