"""CIFAR-style mosaics: VOC layout, labels equal the tiles' classes, seeded, readable by the loader."""

import numpy as np
import pytest
from PIL import Image

from bplab.cli import main
from bplab.data.mosaic import MosaicConfig, load_source, make_mosaic
from bplab.data.voc import load_voc_split, parse_annotation
from bplab.errors import BplabError

CLASSES = ["ant", "bee", "cow"]
COLORS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cow": (0, 0, 255)}


@pytest.fixture
def source(tmp_path):
    """A class-per-folder set of 8x8 photos, one solid colour per class."""
    root = tmp_path / "photos"
    for split, count in (("train", 12), ("test", 6)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), COLORS[name]).save(folder / f"{i}.png")
    return root


def _cfg(**kw):
    return MosaicConfig(n_train=20, n_val=6, n_test=8, tile_size=8, seed=3, **kw)


def test_layout_and_labels(source, tmp_path):
    """Each image's objects match the colours in its tiles, and labels equal the XML classes."""
    out = tmp_path / "mosaic"
    make_mosaic(load_source(source), out, _cfg())
    for split, count in (("train", 20), ("val", 6), ("test", 8)):
        loaded = load_voc_split(out, split)  # cross-checks the per-class lists with the XML
        assert len(loaded) == count
        assert loaded.class_names == tuple(CLASSES)
        assert np.all(loaded.targets.sum(1) >= 1)
    image_id = load_voc_split(out, "train").ids[0]
    objects = parse_annotation(out / "Annotations" / f"{image_id}.xml")["objects"]
    assert 1 <= len(objects) <= 4
    pixels = np.asarray(Image.open(out / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
    assert pixels.shape == (16, 16, 3)
    for name, difficult, (xmin, ymin, xmax, ymax) in objects:
        assert not difficult
        tile = pixels[ymin - 1:ymax, xmin - 1:xmax].reshape(-1, 3).mean(0)
        assert np.abs(tile - COLORS[name]).max() < 40, name


def test_seeded(source, tmp_path):
    """The same seed writes the same labels; another seed writes different ones."""
    a = make_mosaic(load_source(source), tmp_path / "a", _cfg())
    b = make_mosaic(load_source(source), tmp_path / "b", _cfg())
    assert a == b
    targets_a = load_voc_split(tmp_path / "a", "train").targets
    targets_b = load_voc_split(tmp_path / "b", "train").targets
    np.testing.assert_array_equal(targets_a, targets_b)
    other = MosaicConfig(n_train=20, n_val=6, n_test=8, tile_size=8, seed=4)
    make_mosaic(load_source(source), tmp_path / "c", other)
    assert not np.array_equal(load_voc_split(tmp_path / "c", "train").targets, targets_a)


def test_existing_output_rejected(source, tmp_path):
    """A non-empty output folder is never overwritten."""
    out = tmp_path / "mosaic"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BplabError, match="not empty"):
        make_mosaic(load_source(source), out, _cfg())
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_tile_counts(source, tmp_path):
    """max_tiles above the number of cells is rejected."""
    with pytest.raises(BplabError, match="tile counts"):
        make_mosaic(load_source(source), tmp_path / "m", _cfg(max_tiles=5))


def test_make_mosaic_command(source, tmp_path, capsys):
    """`bplab data make-mosaic` writes a set the VOC loader reads."""
    out = tmp_path / "cli"
    status = main(["data", "make-mosaic", "--source", str(source), "--out", str(out),
                   "--train", "5", "--val", "2", "--test", "3", "--tile-size", "8"])
    assert status == 0
    assert len(load_voc_split(out, "test")) == 3
    assert '"images": 5' in capsys.readouterr().out
