"""Config dataclasses: dotted overrides with type checks, and one seeding helper."""

from __future__ import annotations

import dataclasses
import random
import types
import typing
from typing import Any

import numpy as np

from bplab.errors import BplabError


def set_seed(seed: int) -> np.random.Generator:
    """Seed Python's and (when installed) PyTorch's generators; return a new NumPy generator.

    bplab code never draws from NumPy's global state: it uses the returned generator.
    """
    random.seed(seed)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a CLI string or TOML value to the field's type, or raise a BplabError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except BplabError:
                continue
        raise BplabError(f"invalid value {value!r} for {key}: expected {annotation}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        item_type = args[0] if args else str
        items = [_coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise BplabError(f"invalid value {value!r} for {key}: expected true or false")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if annotation in (int, float) and isinstance(value, bool):  # TOML true is not 1
                raise ValueError
            return annotation(value)
        except (TypeError, ValueError):
            raise BplabError(
                f"invalid value {value!r} for {key}: expected {annotation.__name__}"
            ) from None
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Return a copy of dataclass `cfg` with dotted keys (``optim.lr``) replaced.

    Values are converted to each field's annotated type; an unknown key raises a BplabError
    that lists the valid keys at that level.
    """
    cfg = dataclasses.replace(cfg)
    for dotted, value in overrides.items():
        target = cfg
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            hints = typing.get_type_hints(type(target))
            names = [f.name for f in dataclasses.fields(target)]
            if part not in names:
                prefix = ".".join(parts[:i])
                where = f" in {prefix}" if prefix else ""
                raise BplabError(
                    f"unknown config key {dotted!r}{where}; valid keys: {', '.join(names)}"
                )
            if i == len(parts) - 1:
                setattr(target, part, _coerce(value, hints[part], dotted))
            else:
                child = dataclasses.replace(getattr(target, part))
                setattr(target, part, child)
                target = child
    return cfg


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse ``--set key=value`` options into a dict of dotted keys."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BplabError(f"invalid override {item!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
        result[key.strip()] = value.strip()
    return result


def to_dict(cfg: Any) -> dict:
    """Return a JSON-ready dict of a dataclass config (tuples become lists)."""
    return dataclasses.asdict(cfg)
