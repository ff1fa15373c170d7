"""VGG networks built from channel plans: 3x3 convolutions, "M" for 2x2 max pooling.

``vgg_course`` is the reduced VGG of the course (conv 64, 64, pool, 128, 128, pool, FC 1024, 1024);
``vgg11``/``vgg16`` follow Simonyan & Zisserman (2015), configurations A and D, with a small
classifier (512-512-classes) on globally pooled features as is usual for 32x32 input.
"""

from __future__ import annotations

import torch
from torch import nn

from bplab.errors import BplabError
from bplab.models.registry import register_model

PLANS: dict[str, list[int | str]] = {
    "course": [64, 64, "M", 128, 128, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


def make_layers(plan: list[int | str], in_chans: int, batch_norm: bool) -> nn.Sequential:
    """Build the convolution stack of a channel plan."""
    layers: list[nn.Module] = []
    channels = in_chans
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(channels, item, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG: the convolution stack of `plan`, then fully connected layers of widths `fc`.

    With ``global_pool`` the feature maps are averaged to (N, C) before the classifier; without it
    they are flattened, as in the course's net (128 x 7 x 7 = 6272 inputs for 28x28 images).
    """

    def __init__(self, plan: list[int | str], num_classes: int = 10, in_chans: int = 1,
                 img_size: int = 28, fc: tuple[int, ...] = (1024, 1024), batch_norm: bool = False,
                 global_pool: bool = False, drop_rate: float = 0.5):
        super().__init__()
        pools = plan.count("M")
        if img_size // 2**pools < 1:
            raise BplabError(
                f"a VGG with {pools} pooling stages needs images of at least {2**pools}x{2**pools}, "
                f"got img_size={img_size}"
            )
        self.features = make_layers(plan, in_chans, batch_norm)
        channels = [c for c in plan if c != "M"][-1]
        side = img_size // 2**pools
        self.global_pool = global_pool
        self.num_features = channels if global_pool else channels * side * side
        layers: list[nn.Module] = [nn.Flatten()]
        width = self.num_features
        for size in fc:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to feature maps (N, channels, h, w)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map feature maps (N, channels, h, w) to logits (N, num_classes)."""
        if self.global_pool:
            features = features.mean(dim=(2, 3))  # (N, channels)
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def vgg_course(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> VGG:
    """The course's reduced VGG: conv 64, 64, pool, 128, 128, pool, FC 1024, 1024."""
    return VGG(PLANS["course"], num_classes, in_chans, img_size, **kwargs)


@register_model
def vgg_course_bn(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> VGG:
    """`vgg_course` with BatchNorm after every convolution."""
    return VGG(PLANS["course"], num_classes, in_chans, img_size, batch_norm=True, **kwargs)


@register_model(in_chans=3, img_size=32)
def vgg11(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs) -> VGG:
    """VGG-11 (configuration A) for images of 32x32 and larger."""
    kwargs.setdefault("fc", (512, 512))
    return VGG(PLANS["vgg11"], num_classes, in_chans, img_size, global_pool=True, **kwargs)


@register_model(in_chans=3, img_size=32)
def vgg11_bn(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs) -> VGG:
    """VGG-11 with BatchNorm."""
    kwargs.setdefault("fc", (512, 512))
    return VGG(PLANS["vgg11"], num_classes, in_chans, img_size, batch_norm=True,
               global_pool=True, **kwargs)


@register_model(in_chans=3, img_size=32)
def vgg16(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs) -> VGG:
    """VGG-16 (configuration D) for images of 32x32 and larger."""
    kwargs.setdefault("fc", (512, 512))
    return VGG(PLANS["vgg16"], num_classes, in_chans, img_size, global_pool=True, **kwargs)


@register_model(in_chans=3, img_size=32)
def vgg16_bn(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs) -> VGG:
    """VGG-16 with BatchNorm."""
    kwargs.setdefault("fc", (512, 512))
    return VGG(PLANS["vgg16"], num_classes, in_chans, img_size, batch_norm=True,
               global_pool=True, **kwargs)
