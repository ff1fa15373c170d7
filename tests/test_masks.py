"""Image labels from segmentation masks: tiny-voc id masks and VOC palette masks."""

import numpy as np
import pytest
from PIL import Image

from bplab.data.masks import (
    labels_from_mask,
    load_tiny_voc_split,
    load_voc_segmentation_split,
    parse_class_map,
    read_mask,
    voc_colormap,
)
from bplab.errors import BplabError

TINY_MAP = {1: "person", 2: "bird", 3: "car", 4: "cat", 5: "plane"}


def _mask(values_by_region) -> np.ndarray:
    """A 12x12 mask with rows 0-3, 4-7, 8-11 set to the three given values."""
    mask = np.zeros((12, 12), dtype=np.uint8)
    for i, value in enumerate(values_by_region):
        mask[4 * i:4 * i + 4, :6] = value
    return mask


def _write_image(path):
    Image.fromarray(np.full((12, 12, 3), 120, dtype=np.uint8)).save(path)


def test_tiny_voc_labels(tmp_path):
    """tiny-voc masks give the classes whose ids appear; 0 and 255 are not classes."""
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets").mkdir()
    masks = {"a": _mask([1, 4, 255]), "b": _mask([0, 0, 0]), "c": _mask([5, 2, 3])}
    for image_id, mask in masks.items():
        Image.fromarray(mask, mode="L").save(tmp_path / "Annotations" / f"{image_id}.png")
        _write_image(tmp_path / "JPEGImages" / f"{image_id}.jpg")
    (tmp_path / "ImageSets" / "train.txt").write_text("a\nb\nc\n")
    split = load_tiny_voc_split(tmp_path, "train", TINY_MAP)
    assert split.class_names == ("person", "bird", "car", "cat", "plane")
    labels = [[n for n, t in zip(split.class_names, row, strict=True) if t == 1]
              for row in split.targets]
    assert labels == [["person", "cat"], [], ["bird", "car", "plane"]]


def test_unknown_mask_id_named(tmp_path):
    """A mask id missing from the declared map is an error naming the mask and the id."""
    with pytest.raises(BplabError, match="pixel value 7"):
        labels_from_mask(_mask([7, 0, 0]), TINY_MAP, source="x.png")


def test_min_pixels(tmp_path):
    """min_pixels drops classes covering fewer pixels."""
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[0, 0] = 1
    mask[5:, 5:] = 2
    assert labels_from_mask(mask, TINY_MAP, min_pixels=2) == ["bird"]


def test_voc_palette_masks(tmp_path):
    """VOC SegmentationClass palette PNGs give VOC class names; 255 borders are ignored."""
    voc = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    palette = voc_colormap().reshape(-1).tolist()
    # ids: 15 person, 12 dog, 1 aeroplane
    for image_id, values in {"2007_000001": [15, 255, 0], "2007_000002": [12, 1, 255]}.items():
        image = Image.fromarray(_mask(values), mode="P")
        image.putpalette(palette)
        image.save(voc / "SegmentationClass" / f"{image_id}.png")
        _write_image(voc / "JPEGImages" / f"{image_id}.jpg")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n2007_000002\n")
    split = load_voc_segmentation_split(voc, "train")
    labels = [{n for n, t in zip(split.class_names, row, strict=True) if t == 1}
              for row in split.targets]
    assert labels == [{"person"}, {"dog", "aeroplane"}]


def test_rgb_mask_mapped_through_palette(tmp_path):
    """A palette mask saved as RGB colours reads back as the same indices."""
    indices = _mask([15, 255, 3])
    rgb = voc_colormap()[indices]
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), indices)


def test_colormap_known_colours():
    """The VOC palette: 1 is dark red, 15 (person) is (192, 128, 128), 255 is (224, 224, 192)."""
    colors = voc_colormap()
    assert colors[1].tolist() == [128, 0, 0]
    assert colors[15].tolist() == [192, 128, 128]
    assert colors[255].tolist() == [224, 224, 192]


def test_parse_class_map():
    """ID=NAME lists parse; a malformed entry is rejected."""
    assert parse_class_map("1=person, 2=bird") == {1: "person", 2: "bird"}
    with pytest.raises(BplabError, match="ID=NAME"):
        parse_class_map("person")
