"""torchvision classifiers by name with ImageNet or local weights, a new head, and freezing by stage.

`build_classifier` returns a `FineTuneNet`: the torchvision network with its last linear layer
replaced by one with `num_classes` outputs. The backbone (everything but that layer) is split into
stages (ResNet: stem, layer1..layer4; VGG: the conv blocks between max-pools; ViT: the patch
embedding, then each encoder layer), and only the last `train_stages` of them are trained.
BatchNorm layers whose parameters are frozen stay in eval mode even while the net trains, so their
running statistics do not move.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from bplab.errors import BplabError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FineTuneNet(nn.Module):
    """A torchvision classifier with a new head; frozen BatchNorm layers stay in eval mode."""

    def __init__(self, net: nn.Module, head_name: str, stages: list[nn.Module]):
        super().__init__()
        self.net = net
        self.head_name = head_name  # dotted path of the replaced classifier layer
        self.stages = stages  # backbone stages, input side first (not registered twice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> FineTuneNet:
        """Set train/eval mode, but keep every BatchNorm whose parameters are frozen in eval mode."""
        super().train(mode)
        if mode:
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self


def _last_linear(net: nn.Module) -> tuple[str, nn.Linear]:
    """Return (dotted name, module) of the last nn.Linear registered, which is the classifier."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise BplabError(f"{type(net).__name__} has no linear classifier layer to replace")
    return found


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def backbone_stages(net: nn.Module) -> list[nn.Module]:
    """Split a torchvision classifier's backbone into stages, input side first."""
    if all(hasattr(net, f"layer{i}") for i in range(1, 5)):  # ResNet, ResNeXt, Wide ResNet
        stem = nn.ModuleList([net.conv1, net.bn1])
        return [stem, net.layer1, net.layer2, net.layer3, net.layer4]
    if hasattr(net, "encoder") and hasattr(net.encoder, "layers"):  # ViT
        stem = nn.ModuleList([net.conv_proj])
        return [stem, *net.encoder.layers, net.encoder.ln]
    features = getattr(net, "features", None)
    if isinstance(features, nn.Sequential):
        if any(isinstance(m, nn.MaxPool2d) for m in features):  # VGG: blocks end at a max-pool
            stages, block = [], []
            for module in features:
                block.append(module)
                if isinstance(module, nn.MaxPool2d):
                    stages.append(nn.Sequential(*block))
                    block = []
            if block:
                stages.append(nn.Sequential(*block))
            return stages
        return list(features.children())  # EfficientNet, MobileNet, ConvNeXt, DenseNet
    head = _last_linear(net)[1]
    return [m for m in net.children() if m is not head]


def freeze_stages(model: FineTuneNet, train_stages: int) -> None:
    """Train the head and the last `train_stages` backbone stages; -1 trains everything."""
    if train_stages < 0:
        for p in model.parameters():
            p.requires_grad_(True)
        return
    for p in model.net.parameters():
        p.requires_grad_(False)
    if train_stages > len(model.stages):
        raise BplabError(f"train_stages {train_stages} exceeds the {len(model.stages)} "
                         "backbone stages of this model")
    for stage in model.stages[len(model.stages) - train_stages:]:
        for p in stage.parameters():
            p.requires_grad_(True)
    for p in model.net.get_submodule(model.head_name).parameters():
        p.requires_grad_(True)


def weights_enum(arch: str):
    """Return torchvision's default (best) ImageNet weights enum member for `arch`."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise BplabError(f"torchvision has no pretrained weights for {arch!r}; valid choices: "
                         f"{', '.join(sorted(torchvision.models.list_models()))}") from None


def expected_weights_file(weights) -> Path:
    """Return where torchvision caches `weights` (``<torch hub dir>/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_imagenet(net: nn.Module, arch: str) -> tuple[tuple, tuple]:
    """Load the ImageNet weights into `net`; return their (mean, std) normalization."""
    weights = weights_enum(arch)
    target = expected_weights_file(weights)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise BplabError(
            f"ImageNet weights for {arch} are not available ({exc.__class__.__name__}: {exc}); "
            f"expected the file {target} (download {weights.url} there), or pass "
            "--weights FILE with a local state dict") from None
    net.load_state_dict(state)
    transforms = weights.transforms()
    return tuple(transforms.mean), tuple(transforms.std)


def load_state_dict_file(net: nn.Module, path: str | Path, head_name: str) -> None:
    """Load a local state dict (plain, or under a "state_dict"/"model" key) into `net`.

    Classifier weights whose shape differs (a head trained for other classes) are skipped; any
    other missing or unexpected key is an error that names it.
    """
    path = Path(path)
    if not path.is_file():
        raise BplabError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise BplabError(f"weights file {path} could not be read: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BplabError(f"weights file {path} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    for key in [k for k in state if k.startswith(head_name + ".")]:
        if key in own and state[key].shape != own[key].shape:
            log.info("weights file %s: skipping %s of shape %s (the head is new)",
                     path, key, tuple(state[key].shape))
            del state[key]
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head_name + ".")]
    if missing or result.unexpected_keys:
        raise BplabError(f"weights file {path} does not fit this model: missing keys "
                         f"{missing[:5]}, unexpected keys {result.unexpected_keys[:5]}")


def build_classifier(arch: str, num_classes: int, weights: str = "none", train_stages: int = -1,
                     ) -> tuple[FineTuneNet, tuple, tuple]:
    """Build torchvision model `arch` with a `num_classes` head; return (model, mean, std).

    Parameters
    ----------
    arch : str
        Any torchvision classifier name, e.g. resnet18, resnet50, vgg16, vgg16_bn, vit_b_16.
    weights : str
        ``imagenet`` (torchvision's default weights, downloaded into the torch cache),
        ``none`` (random initialization) or the path of a local state dict file.
    train_stages : int
        Backbone stages to train, counted from the output side; 0 trains the head only
        (frozen backbone), -1 trains everything.

    The returned mean and std are the normalization the weights expect (ImageNet's for
    ImageNet and local weights, which are assumed to come from an ImageNet model).
    """
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        raise BplabError(f"unknown torchvision classifier {arch!r}; valid choices: "
                         f"{', '.join(sorted(known))}")
    # NOTE: torchvision ViTs are built for 224 px input; other sizes need interpolated positions.
    net = torchvision.models.get_model(arch, weights=None)
    head_name, head = _last_linear(net)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if weights == "imagenet":
        mean, std = _load_imagenet(net, arch)
    elif weights != "none":
        load_state_dict_file(net, weights, head_name)
    _set_module(net, head_name, nn.Linear(head.in_features, num_classes))
    model = FineTuneNet(net, head_name, backbone_stages(net))
    freeze_stages(model, train_stages)
    return model, mean, std
