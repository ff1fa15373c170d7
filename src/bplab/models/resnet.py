"""Residual networks (He et al., 2016) for small images: 3x3 stem, stages that halve the size.

``resnet8``/``resnet14``/``resnet20`` are the CIFAR layout of the paper (depth 6n + 2, stages of
16, 32 and 64 channels, n basic blocks each); they take 28x28 and 32x32 input alike because the
features are globally averaged. ``resnet_course`` is the course's net of two residual blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from bplab.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (a 1x1 conv when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of basic blocks: stem, one stage per entry of `widths`, global pool, linear head.

    Every stage after the first starts with a stride-2 block, so a 32x32 input ends at 8x8 with
    three stages (28x28 ends at 7x7).
    """

    def __init__(self, depths: tuple[int, ...], widths: tuple[int, ...], num_classes: int = 10,
                 in_chans: int = 1, img_size: int = 28, stem_width: int | None = None,
                 drop_rate: float = 0.0):
        super().__init__()
        stem_width = stem_width or widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        channels = stem_width
        for stage, (depth, width) in enumerate(zip(depths, widths)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*blocks)
        self.num_features = channels
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            # Zero the last BN of each residual branch so every block starts as the identity
            # (Goyal et al., 2017); this helps small-batch CPU training converge early.
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to feature maps (N, num_features, h, w)."""
        return self.stages(self.stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Average the feature maps and map them to logits (N, num_classes)."""
        pooled = features.mean(dim=(2, 3))  # (N, num_features)
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cifar_resnet(n: int, num_classes: int, in_chans: int, img_size: int, **kwargs) -> ResNet:
    """Build the CIFAR ResNet of depth 6n + 2."""
    return ResNet((n, n, n), (16, 32, 64), num_classes, in_chans, img_size, **kwargs)


@register_model
def resnet8(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> ResNet:
    """CIFAR-style ResNet-8: one basic block per stage (16, 32, 64 channels)."""
    return _cifar_resnet(1, num_classes, in_chans, img_size, **kwargs)


@register_model
def resnet14(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> ResNet:
    """CIFAR-style ResNet-14: two basic blocks per stage."""
    return _cifar_resnet(2, num_classes, in_chans, img_size, **kwargs)


@register_model(in_chans=3, img_size=32)
def resnet20(num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs) -> ResNet:
    """CIFAR-style ResNet-20: three basic blocks per stage (0.27 M parameters)."""
    return _cifar_resnet(3, num_classes, in_chans, img_size, **kwargs)


@register_model
def resnet8_wide(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 **kwargs) -> ResNet:
    """ResNet-8 with twice the channels (32, 64, 128), about 4x the compute of `resnet8`."""
    return ResNet((1, 1, 1), (32, 64, 128), num_classes, in_chans, img_size, **kwargs)


@register_model
def resnet_course(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                  **kwargs) -> ResNet:
    """The course's reduced ResNet: a 3x3 stem of 32 channels and two residual blocks.

    NOTE: the course describes its net only as two residual blocks; this preset keeps both at 32
    channels without downsampling, then pools globally.
    """
    return ResNet((2,), (32,), num_classes, in_chans, img_size, **kwargs)
