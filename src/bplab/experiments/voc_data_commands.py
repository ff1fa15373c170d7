"""`bplab data check` (list unreadable images) and `bplab data make-mosaic` (a multi-label set)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    """Add the `check` and `make-mosaic` actions to the `bplab data` group."""
    check = subparsers.add_parser(
        "check", help="list image files that cannot be read, without training",
        description="Decode every image under DIR (recursively) and list the unreadable ones; "
        "exit status 1 when any is found.")
    check.add_argument("folder", metavar="DIR")
    check.set_defaults(func=run_check)

    mosaic = subparsers.add_parser(
        "make-mosaic", help="tile 1-4 single-label photos into multi-label images (VOC layout)",
        description="Build a multi-label set from a class-per-folder photo set (e.g. CIFAR-10): "
        "each image is a grid of photos and grey cells, labelled with the photos' classes, "
        "written as JPEGImages, Annotations XML and ImageSets/Main lists.")
    mosaic.add_argument("--source", required=True,
                        help="folder with cifar10-jpeg/ (e.g. $BPLAB_DATA_DIR), train.tar.gz + "
                        "test.tar.gz, or train/<class>/ and test/<class>/ folders")
    mosaic.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    mosaic.add_argument("--train", type=int, default=8000, help="train images (default 8000)")
    mosaic.add_argument("--val", type=int, default=1000, help="val images (default 1000)")
    mosaic.add_argument("--test", type=int, default=2000, help="test images (default 2000)")
    mosaic.add_argument("--grid", type=int, default=2, help="cells per side (default 2)")
    mosaic.add_argument("--tile-size", type=int, default=32, help="cell size in pixels (default 32)")
    mosaic.add_argument("--min-tiles", type=int, default=1,
                        help="minimum number of photos per image (default 1)")
    mosaic.add_argument("--max-tiles", type=int, default=4,
                        help="maximum number of photos per image (default 4)")
    mosaic.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mosaic.set_defaults(func=run_make_mosaic)


def run_check(args: argparse.Namespace) -> int:
    """Print each unreadable image with its error; return 1 when any is found."""
    from bplab.data.image_io import check_images

    checked, bad = check_images(args.folder)
    for path, message in bad:
        print(f"{path}: {message}")
    print(f"{len(bad)} of {checked} images unreadable in {args.folder}")
    return 1 if bad else 0


def run_make_mosaic(args: argparse.Namespace) -> int:
    """Load the source photos, write the mosaic set and print its summary."""
    from bplab.data.mosaic import MosaicConfig, load_source, make_mosaic

    cfg = MosaicConfig(n_train=args.train, n_val=args.val, n_test=args.test, grid=args.grid,
                       tile_size=args.tile_size, min_tiles=args.min_tiles,
                       max_tiles=args.max_tiles, seed=args.seed)
    summary = make_mosaic(load_source(args.source), args.out, cfg)
    print(json.dumps(summary, indent=2))
    return 0
