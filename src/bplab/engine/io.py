"""Save and load a network as ``NAME.npz`` (weights) plus ``NAME.json`` (architecture), no pickle."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from bplab.engine.network import Sequential
from bplab.errors import BplabError

FORMAT_VERSION = 1


def _paths(path: str | Path) -> tuple[Path, Path]:
    """Return the .npz and .json paths for `path`, given with or without either suffix."""
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


def save_network(net: Sequential, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the weights to ``path.npz`` and the architecture to ``path.json``; return the npz path.

    Both files are written to temporary names first and then renamed, so an interrupted save
    leaves any earlier files intact.
    """
    npz_path, json_path = _paths(path)
    try:
        npz_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BplabError(f"cannot create folder {npz_path.parent}: {exc.strerror or exc}") from None
    description = {
        "format_version": FORMAT_VERSION,
        "dtype": str(net.dtype),
        "network": net.get_config(),
        "metadata": metadata or {},
    }
    tmp_npz = npz_path.with_name(npz_path.name + ".tmp.npz")
    tmp_json = json_path.with_name(json_path.name + ".tmp")
    np.savez(tmp_npz, **net.state_dict())
    tmp_json.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_npz, npz_path)
    os.replace(tmp_json, json_path)
    return npz_path


def load_network(path: str | Path) -> tuple[Sequential, dict]:
    """Rebuild a network saved by `save_network`; return it and its metadata dict.

    Raises BplabError naming the file when either file is missing, unreadable or inconsistent.
    """
    npz_path, json_path = _paths(path)
    for p in (npz_path, json_path):
        if not p.exists():
            raise BplabError(f"{p} not found; a saved network needs both {npz_path.name} and "
                             f"{json_path.name}")
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BplabError(f"{json_path} is not a valid network description: {exc}") from None
    if not isinstance(description, dict) or "network" not in description:
        raise BplabError(f"{json_path} is not a valid network description: no 'network' key")
    if description.get("format_version") != FORMAT_VERSION:
        raise BplabError(f"{json_path} has format version {description.get('format_version')}; "
                         f"this bplab reads version {FORMAT_VERSION}")
    dtype = description.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise BplabError(f"{json_path} has dtype {dtype!r}; expected float32 or float64")
    try:
        net = Sequential.from_config(description["network"])
    except MemoryError:
        raise BplabError(f"{json_path} describes a network too large for memory") from None
    net.astype(np.dtype(dtype))
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            state = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BplabError(f"{npz_path} is not a readable weights file: {exc}") from None
    try:
        net.load_state_dict(state)
    except BplabError as exc:
        raise BplabError(f"{npz_path} does not match {json_path.name}: {exc}") from None
    return net, description.get("metadata", {})
