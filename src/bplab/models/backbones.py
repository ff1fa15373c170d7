"""torchvision classifiers behind the bplab model API, built without downloading weights.

``weights=None`` is the default, so nothing is fetched. Code that wants ImageNet weights passes a
torchvision weights enum or name, and torchvision then downloads them into the torch cache.
"""

from __future__ import annotations

import torch
from torch import nn

from bplab.errors import BplabError
from bplab.models.registry import register_model


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet split into `forward_features` (to layer4) and `forward_head`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = net.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to layer4 feature maps (N, num_features, h, w)."""
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Average the feature maps and map them to logits (N, num_classes)."""
        return self.net.fc(torch.flatten(self.net.avgpool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def torchvision_resnet(arch: str, num_classes: int = 1000, in_chans: int = 3,
                       weights=None) -> TorchvisionResNet:
    """Build torchvision ResNet `arch` ("resnet18", "resnet50", ...) with a new classifier.

    With `weights` the ImageNet weights are loaded first. The final layer is then replaced when
    `num_classes` differs from 1000, and the first convolution when `in_chans` is not 3. Its
    pretrained filters are then summed over the RGB channels and repeated over `in_chans`.
    """
    import torchvision

    try:
        builder = getattr(torchvision.models, arch)
    except AttributeError:
        raise BplabError(f"torchvision has no model {arch!r}") from None
    net = builder(weights=weights)
    if num_classes != net.fc.out_features:
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    if in_chans != 3:
        old = net.conv1
        new = nn.Conv2d(in_chans, old.out_channels, kernel_size=old.kernel_size,
                        stride=old.stride, padding=old.padding, bias=False)
        if weights is not None:
            with torch.no_grad():
                summed = old.weight.sum(dim=1, keepdim=True)  # (64, 1, 7, 7)
                new.weight.copy_(summed.repeat(1, in_chans, 1, 1) / in_chans)
        net.conv1 = new
    return TorchvisionResNet(net)


@register_model(in_chans=3, img_size=32)
def resnet18(num_classes: int = 10, in_chans: int = 3, img_size: int = 224,
             weights=None) -> TorchvisionResNet:
    """torchvision ResNet-18 (11.7 M parameters with 1000 classes), designed for 224 px input."""
    return torchvision_resnet("resnet18", num_classes, in_chans, weights)


@register_model(in_chans=3, img_size=32)
def resnet50(num_classes: int = 10, in_chans: int = 3, img_size: int = 224,
             weights=None) -> TorchvisionResNet:
    """torchvision ResNet-50 (25.6 M parameters with 1000 classes), designed for 224 px input."""
    return torchvision_resnet("resnet50", num_classes, in_chans, weights)
