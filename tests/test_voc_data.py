"""VOC loading: XML and per-class lists, difficult policies, RGB conversion, bad images, real lists."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bplab.cli import main
from bplab.data.image_io import ReadReport, check_images, read_rgb, read_rgb_or_skip
from bplab.data.voc import (
    VOC_CLASSES,
    discover_classes,
    find_voc_root,
    load_voc_split,
    training_targets,
)
from bplab.errors import BplabError
from voc_fixtures import CLASSES, IMAGES, SPLITS, expected_target, make_voc_tree


@pytest.fixture
def voc(tmp_path):
    return make_voc_tree(tmp_path)


def test_targets_from_xml_by_id(voc):
    """Targets come from the XML of each id: positive, negative, difficult only."""
    split = load_voc_split(voc.parent.parent, "trainval", source="xml")
    assert split.class_names == CLASSES
    assert split.ids == SPLITS["trainval"]
    for image_id, row in zip(split.ids, split.targets, strict=True):
        assert row.tolist() == expected_target(IMAGES[image_id][1]), image_id


def test_difficult_only_is_minus_one(voc):
    """An image whose only person is difficult has target -1; one easy cat among difficult is 1."""
    split = load_voc_split(voc, "train")
    row2 = split.targets[split.ids.index("000002")]
    row3 = split.targets[split.ids.index("000003")]
    assert row2[CLASSES.index("person")] == -1
    assert row3[CLASSES.index("cat")] == 1


def test_lists_agree_with_xml(voc):
    """The per-class lists alone give the same targets as the XML."""
    from_lists = load_voc_split(voc, "trainval", source="lists")
    from_xml = load_voc_split(voc, "trainval", source="xml")
    np.testing.assert_array_equal(from_lists.targets, from_xml.targets)


def test_list_xml_mismatch_names_image(voc):
    """A per-class list that disagrees with the XML is reported with the image id and class."""
    path = voc / "ImageSets" / "Main" / "dog_train.txt"
    path.write_text(path.read_text().replace("000004  1", "000004 -1"))
    with pytest.raises(BplabError, match="000004 dog"):
        load_voc_split(voc, "train")


def test_labels_matched_by_id_not_line(voc):
    """Per-class lists in a different line order still give each image its own labels."""
    main_dir = voc / "ImageSets" / "Main"
    for name in CLASSES:
        path = main_dir / f"{name}_train.txt"
        path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    split = load_voc_split(voc, "train", source="lists")
    for image_id, row in zip(split.ids, split.targets, strict=True):
        assert row.tolist() == expected_target(IMAGES[image_id][1]), image_id


def test_missing_split_lists_available(voc):
    """An unknown split names the ones that exist."""
    with pytest.raises(BplabError, match="train, trainval, val"):
        load_voc_split(voc, "test")


def test_find_root_and_classes(voc, tmp_path):
    """The root may be the year folder, VOCdevkit or its parent; classes come from the lists."""
    assert find_voc_root(tmp_path) == voc
    assert find_voc_root(voc.parent) == voc
    assert discover_classes(voc) == CLASSES
    with pytest.raises(BplabError, match="no VOC folder"):
        find_voc_root(tmp_path / "nowhere")


def test_training_policy_mask(voc):
    """Policy mask: difficult labels get mask 0; positive and negative turn them to 1 or 0."""
    targets = load_voc_split(voc, "train").targets
    difficult = targets == -1
    assert difficult.any()
    y, mask = training_targets(targets, "mask")
    assert np.all(mask[difficult] == 0)
    assert np.all(mask[~difficult] == 1)
    y, mask = training_targets(targets, "positive")
    assert np.all(y[difficult] == 1)
    assert np.all(mask == 1)
    y, mask = training_targets(targets, "negative")
    assert np.all(y[difficult] == 0)
    with pytest.raises(BplabError, match="mask"):
        training_targets(targets, "drop")


def test_read_rgb_converts_every_mode(voc):
    """Grayscale, CMYK, RGBA PNG and EXIF-rotated files all come out RGB, upright."""
    for image_id, kind in (("000002", "gray"), ("000003", "cmyk"), ("000005", "rgba_png")):
        suffix = ".png" if kind == "rgba_png" else ".jpg"
        image = read_rgb(voc / "JPEGImages" / f"{image_id}{suffix}")
        assert image.mode == "RGB", kind
        assert image.size == (24, 16), kind
    rotated = read_rgb(voc / "JPEGImages" / "000004.jpg")
    with Image.open(voc / "JPEGImages" / "000004.jpg") as raw:
        assert raw.size == (24, 16)
    assert rotated.size == (16, 24)


def test_rgba_composited_on_white(tmp_path):
    """A fully transparent pixel becomes white, not black."""
    path = tmp_path / "a.png"
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(path)
    assert np.asarray(read_rgb(path))[0, 0].tolist() == [255, 255, 255]


def test_truncated_image_named(voc):
    """A truncated JPEG raises a BplabError naming the file."""
    with pytest.raises(BplabError, match="000006.jpg"):
        read_rgb(voc / "JPEGImages" / "000006.jpg")
    with pytest.raises(BplabError, match="not found"):
        read_rgb(voc / "JPEGImages" / "nope.jpg")


def test_bad_image_skip_counted(voc):
    """With skip_bad the truncated image is dropped and counted; without it loading fails."""
    with pytest.raises(BplabError, match="000006"):
        load_voc_split(voc, "val", check_images=True)
    split = load_voc_split(voc, "val", check_images=True, skip_bad=True)
    assert split.ids == ["000007"]
    assert split.skipped.count == 1
    assert "000006" in split.skipped.skipped[0]
    report = ReadReport()
    assert read_rgb_or_skip(voc / "JPEGImages" / "000006.jpg", True, report) is None
    assert report.count == 1


def test_check_images_lists_bad(voc):
    """check_images finds exactly the truncated file."""
    checked, bad = check_images(voc / "JPEGImages")
    assert checked == len(IMAGES)
    assert [p.name for p, _ in bad] == ["000006.jpg"]


def test_data_check_command(voc, capsys):
    """`bplab data check DIR` lists the unreadable file and exits 1."""
    status = main(["data", "check", str(voc / "JPEGImages")])
    out = capsys.readouterr().out
    assert status == 1
    assert "000006.jpg" in out
    assert "1 of 8" in out


def _real_imagesets() -> Path:
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root:
        pytest.skip("BPLAB_DATA_DIR is not set")
    path = Path(root) / "voc2007-imagesets"
    if not (path / "ImageSets" / "Main" / "trainval.txt").is_file():
        pytest.skip(f"{path} has no VOC2007 ImageSets")
    return path


def test_real_voc2007_split_sizes():
    """The genuine VOC2007 lists: train 2501, val 2510, trainval 5011, test 4952."""
    root = _real_imagesets()
    sizes = {s: len(load_voc_split(root, s)) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 2501, "val": 2510, "trainval": 5011, "test": 4952}


def test_real_voc2007_positives():
    """Trainval positives per class equal the published counts, in VOC class order."""
    split = load_voc_split(_real_imagesets(), "trainval")
    assert split.class_names == VOC_CLASSES
    expected = [238, 243, 330, 181, 244, 186, 713, 337, 445, 141, 200, 421, 287, 245, 2008, 245,
                96, 229, 261, 256]
    assert list(split.positives_per_class().values()) == expected
    assert (split.targets == -1).any()
