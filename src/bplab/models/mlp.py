"""A multilayer perceptron on flattened images: the PyTorch twin of the NumPy engine's MLP."""

from __future__ import annotations

import torch
from torch import nn

from bplab.models.registry import register_model


class MLP(nn.Module):
    """Fully connected layers with ReLU on the flattened image, then a linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: tuple[int, ...] = (256, 128), drop_rate: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_chans * img_size * img_size
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            width = size
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to hidden features (N, num_features)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map features (N, num_features) to logits (N, num_classes)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mlp(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, **kwargs) -> MLP:
    """MLP 784-256-128-10 with ReLU (the hidden widths are the ``hidden`` option)."""
    return MLP(num_classes, in_chans, img_size, **kwargs)
