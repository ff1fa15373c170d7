"""The model registry: constructors registered by name, looked up by `create_model`.

Every registered constructor takes ``num_classes``, ``in_chans`` and ``img_size`` keywords (plus
its own options) and returns an ``nn.Module`` whose ``forward`` returns logits and which offers
``forward_features(x)`` and ``forward_head(features)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn

from bplab.errors import BplabError, unknown_name_error

log = logging.getLogger(__name__)

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULT_INPUT: dict[str, tuple[int, int]] = {}  # name -> (in_chans, img_size) it is meant for


def register_model(fn: Callable[..., nn.Module] | None = None, *, in_chans: int = 1,
                   img_size: int = 28):
    """Register a model constructor under its function name.

    ``in_chans`` and ``img_size`` record the input that the model is designed for; the registry
    sweep in the tests builds a matching random batch from them.
    """
    def decorate(func: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = func.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = func
        _DEFAULT_INPUT[name] = (in_chans, img_size)
        return func

    return decorate(fn) if fn is not None else decorate


def list_models() -> list[str]:
    """Return the registered model names, sorted."""
    _import_model_modules()
    return sorted(_MODELS)


def default_input(name: str) -> tuple[int, int]:
    """Return ``(in_chans, img_size)`` that model `name` is designed for."""
    _import_model_modules()
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    return _DEFAULT_INPUT[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name` with keyword options (``num_classes``, ``in_chans``, ...).

    An unknown name raises a BplabError listing the registered models; an option the constructor
    does not take raises a BplabError naming it.
    """
    _import_model_modules()
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as exc:
        raise BplabError(f"invalid option for model {name!r}: {exc}") from None
    log.debug("model %s: %s parameters", name, f"{count_parameters(model):,}")
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Return the number of parameters of `model` (only those that require grad if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model: nn.Module, name: str) -> str:
    """Return one line naming the model and its parameter count, e.g. for the CLI."""
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    extra = "" if trainable == total else f" ({trainable:,} trainable)"
    return f"model {name}: {total:,} parameters{extra}"


def _import_model_modules() -> None:
    """Import the modules whose decorators fill the registry."""
    from bplab.models import backbones, lenet, mlp, resnet, vgg, vit  # noqa: F401
