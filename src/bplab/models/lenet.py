"""LeNet-5 (LeCun et al., 1998): two 5x5 convolutions with pooling, then 120-84-classes."""

from __future__ import annotations

import torch
from torch import nn

from bplab.models.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling (the 1998 net used scaled tanh and average pooling).

    A 28x28 input is zero-padded by 2 in the first convolution, so it sees the 32x32 field that the
    original was designed for; the second convolution's output is then 16 x 5 x 5.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 drop_rate: float = 0.0):
        super().__init__()
        padding = 2 if img_size < 32 else 0
        size = (img_size + 2 * padding - 4) // 2  # after conv1 (5x5) and 2x2 pooling
        size = (size - 4) // 2  # after conv2 (5x5) and 2x2 pooling
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.num_features = 16 * size * size
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.num_features, 120),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to feature maps (N, 16, h, w)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map feature maps (N, 16, h, w) to logits (N, num_classes)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def lenet5(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> LeNet5:
    """LeNet-5, 6-16-120-84 (61,706 parameters for 10 classes on 28x28 grayscale)."""
    return LeNet5(num_classes, in_chans, img_size, **kwargs)
