"""Run folders: one new folder per run holding config, metrics, summary, checkpoints and figures."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from bplab.errors import BplabError


def make_run_dir(experiment: str, out: str | Path | None = None, root: str | Path = "runs") -> Path:
    """Create and return a new run folder, ``runs/<experiment>/<YYYYmmdd-HHMMSS>`` by default.

    An explicit `out` that exists and is not empty is rejected, so a run never overwrites another.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BplabError(f"run folder {path} already exists and is not empty; choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BplabError(f"cannot create run folder {path}: {exc.strerror or exc}; "
                             "choose another --out") from None
        return path
    base = Path(root) / experiment
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{stamp}-{suffix}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise BplabError(f"cannot create run folder {path}: {exc.strerror or exc}") from None
    return path


def _json_ready(value: Any) -> Any:
    """Convert NumPy scalars and arrays, tuples and paths so that json can write them."""
    if hasattr(value, "tolist"):
        return _json_ready(value.tolist())  # NumPy NaN and inf become null too
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_ready(data), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    """Read a JSON file, raising a BplabError that names the file when it is missing or invalid."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BplabError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise BplabError(f"{path} is not valid JSON: {exc}") from None


class MetricsLog:
    """Append-only ``metrics.jsonl`` writer: one JSON object per line, flushed per record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        """Write one record (e.g. one epoch's metrics) and keep it in memory."""
        record = _json_ready(record)
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """Read a ``metrics.jsonl`` file into a list of dicts."""
    path = Path(path)
    if not path.exists():
        raise BplabError(f"{path} not found")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
