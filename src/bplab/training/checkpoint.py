"""Checkpoints written atomically, and the RNG states that make a resumed run exact."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bplab.errors import BplabError


def capture_rng_state() -> dict[str, Any]:
    """Return the Python, NumPy-global, torch CPU and CUDA generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states captured by `capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save to a temporary file, then rename it over `path`.

    A crash while writing leaves the previous checkpoint intact, never a half-written one.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, or raise a BplabError naming the file.

    Checkpoints hold NumPy RNG states and config dicts, so they are read with
    ``weights_only=False``: load only checkpoints that you or bplab wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise BplabError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise BplabError(f"checkpoint {path} could not be read ({exc}); is it truncated?") from None
