"""`bplab data download` and `bplab data info`: fetch datasets and show what is cached where."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bplab.data.download import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DATASETS,
    cache_dir,
    dataset_specs,
    ensure_dataset,
    find_local_copy,
    verify_local_copy,
)


def register(subparsers) -> None:
    """Add the `download` and `info` actions to the `bplab data` group."""
    download = subparsers.add_parser(
        "download",
        help="download datasets into the data folder and verify their checksums",
        description="Download each named dataset's files that are missing from "
        "<data folder>/<name>/, trying its mirrors in order, and verify every file.",
    )
    download.add_argument("names", nargs="+", metavar="NAME",
                          help=f"dataset to download: {', '.join(sorted(DATASETS))}")
    download.add_argument("--data-dir", type=Path, default=None,
                          help=f"data folder (default: ${DATA_DIR_ENV}, else the user cache dir)")
    download.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    download.set_defaults(func=run_download)

    info = subparsers.add_parser(
        "info",
        help="list the dataset files in the data folder and whether they verify",
        description="Print one line per known dataset file: its status (verified, checksum "
        "mismatch or missing), its size and its path.",
    )
    info.add_argument("--data-dir", type=Path, default=None,
                      help=f"data folder (default: ${DATA_DIR_ENV}, else the user cache dir)")
    info.add_argument("--no-verify", action="store_true",
                      help="skip checksum verification (faster; only reports presence)")
    info.set_defaults(func=run_info)


def run_download(args: argparse.Namespace) -> int:
    """Download each named dataset and print its folder."""
    for name in args.names:
        dataset_specs(name)  # reject an unknown name before downloading anything
    for name in args.names:
        folder = ensure_dataset(name, root=args.data_dir, progress=not args.no_progress)
        print(f"{name}: all {len(DATASETS[name])} files verified in {folder}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the data folder and one status line per known dataset file."""
    root = args.data_dir.expanduser().absolute() if args.data_dir else cache_dir()
    source = ("--data-dir" if args.data_dir
              else DATA_DIR_ENV if os.environ.get(DATA_DIR_ENV) else "user cache dir")
    print(f"data folder: {root} (from {source})")

    for name in sorted(DATASETS):
        for spec in DATASETS[name]:
            local = find_local_copy(spec, root / name)
            if local is None:
                status, size, where = "missing", "-", str(root / name / spec.filename)
            else:
                size, where = _format_size(local.stat().st_size), str(local)
                if args.no_verify:
                    status = "present"
                else:
                    ok, detail = verify_local_copy(spec, local)
                    status = "verified" if ok else f"checksum mismatch ({detail})"
            print(f"{name:<14} {spec.filename:<28} {size:>9}  {status:<9}  {where}")

    # CIFAR-10 is read from local archives; there is no download and no published digest.
    for split in ("train", "test"):
        path = root / "cifar10-jpeg" / f"{split}.tar.gz"
        present = path.is_file()
        size = _format_size(path.stat().st_size) if present else "-"
        status = "present" if present else "missing"
        print(f"{'cifar10-jpeg':<14} {path.name:<28} {size:>9}  {status:<9}  {path}")

    for folder in _array_cache_folders(root):
        for path in sorted(folder.glob("*.npz")):
            size = _format_size(path.stat().st_size)
            print(f"{'decoded':<14} {path.name:<28} {size:>9}  {'cached':<9}  {path}")
    return 0


def _array_cache_folders(root: Path) -> list[Path]:
    """Return the existing folders where decoded arrays may be cached, without creating any."""
    import platformdirs

    candidates = [root, Path(platformdirs.user_cache_dir("bplab"))]
    if os.environ.get(CACHE_DIR_ENV):
        candidates.insert(0, Path(os.environ[CACHE_DIR_ENV]).expanduser())
    folders = dict.fromkeys(path.absolute() / "arrays" for path in candidates)
    return [folder for folder in folders if folder.is_dir()]


def _format_size(n_bytes: int) -> str:
    """Format a byte count with a binary unit, e.g. ``9.2 MiB``."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    size = n_bytes / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
