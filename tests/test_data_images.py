"""Tests for class-per-folder image datasets, image tar archives and CIFAR-10."""

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bplab.data import images
from bplab.data.images import CIFAR10_CLASSES, load_cifar10, load_image_folder, load_image_tar
from bplab.errors import BplabError


def _colour(seed, size=(6, 8)):
    """A solid-colour RGB image of ``size`` (height, width); JPEG keeps flat colours closely."""
    rgb = np.random.default_rng(seed).integers(0, 256, 3, dtype=np.uint8)
    return np.broadcast_to(rgb, (*size, 3)).copy()


def _save(path: Path, array: np.ndarray, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def _image_bytes(array: np.ndarray, fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path):
    """train/{cat,dog}/ with two PNGs and one JPEG, written out of name order."""
    root = tmp_path / "pets"
    _save(root / "train" / "dog" / "b.png", _colour(1))
    _save(root / "train" / "dog" / "a.jpg", _colour(2))
    _save(root / "train" / "cat" / "z.png", _colour(3))
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_labels_and_order(tree):
    """Classes are the sorted folder names, files are sorted, PNG pixels are exact."""
    x, y, class_names = load_image_folder(tree, split="train")
    assert class_names == ["cat", "dog"]
    assert x.shape == (3, 6, 8, 3)
    assert x.dtype == np.uint8
    assert y.dtype == np.int64
    assert y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(x[0], _colour(3))  # cat/z.png
    np.testing.assert_allclose(x[1], _colour(2), atol=4)  # dog/a.jpg, lossy
    np.testing.assert_array_equal(x[2], _colour(1))  # dog/b.png


def test_folder_without_split(tree):
    """With split=None the classes sit directly under root."""
    x, y, class_names = load_image_folder(tree / "train")
    assert class_names == ["cat", "dog"]
    assert len(x) == len(y) == 3


def test_folder_grayscale_auto(tmp_path):
    """A set of single-channel images loads as (N, H, W)."""
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    _save(tmp_path / "a" / "0.png", gray)
    _save(tmp_path / "b" / "0.png", 255 - gray)
    x, y, _ = load_image_folder(tmp_path)
    assert x.shape == (2, 6, 8)
    np.testing.assert_array_equal(x[0], gray)
    assert y.tolist() == [0, 1]


def test_folder_mixed_modes_become_rgb(tmp_path):
    """One colour image makes the whole set RGB; gray images are replicated to 3 channels."""
    gray = np.full((6, 8), 77, dtype=np.uint8)
    _save(tmp_path / "a" / "0.png", gray)
    _save(tmp_path / "b" / "0.png", _colour(5))
    x, _, _ = load_image_folder(tmp_path)
    assert x.shape == (2, 6, 8, 3)
    assert (x[0] == 77).all()


def test_folder_forced_grayscale(tree):
    """mode='L' converts colour images to one channel."""
    x, _, _ = load_image_folder(tree, split="train", mode="L")
    assert x.shape == (3, 6, 8)


def test_folder_unknown_mode(tree):
    """An unknown mode lists the valid ones."""
    with pytest.raises(BplabError, match="unknown image mode 'CMYK'; valid choices: L, RGB"):
        load_image_folder(tree, split="train", mode="CMYK")


def test_folder_resize(tree):
    """size=(H, W) resizes every image; an int gives a square."""
    x, _, _ = load_image_folder(tree, split="train", size=(4, 5))
    assert x.shape == (3, 4, 5, 3)
    x, _, _ = load_image_folder(tree, split="train", size=10)
    assert x.shape == (3, 10, 10, 3)


def test_folder_size_mismatch_error(tree):
    """Images of different sizes without size= raise, naming the odd one."""
    _save(tree / "train" / "dog" / "c.png", _colour(4, size=(9, 9)))
    with pytest.raises(BplabError, match=r"c\.png: image is 9x9 but .*z\.png is 8x6; pass size"):
        load_image_folder(tree, split="train")


@pytest.mark.parametrize("name,data", [
    ("broken.jpg", b"\xff\xd8\xff\xe0 this is not really a JPEG"),
    ("broken.png", b"not a png at all"),
])
def test_folder_corrupt_image_error(tree, name, data):
    """A file that does not decode raises BplabError naming it."""
    (tree / "train" / "cat" / name).write_bytes(data)
    with pytest.raises(BplabError, match="cannot decode image") as info:
        load_image_folder(tree, split="train")
    assert str(tree / "train" / "cat" / name) in str(info.value)


def test_folder_truncated_png_error(tree):
    """A PNG cut short is caught when decoding, not only when opening."""
    data = _image_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8),
                        fmt="PNG")
    (tree / "train" / "cat" / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BplabError, match=r"cut\.png: cannot decode image"):
        load_image_folder(tree, split="train")


def test_folder_missing_and_empty_errors(tmp_path):
    """A missing folder, a folder without classes and classes without images each raise."""
    with pytest.raises(BplabError, match="image folder not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    _save(tmp_path / "flat" / "x.png", _colour(0))
    with pytest.raises(BplabError, match="no class subfolders"):
        load_image_folder(tmp_path / "flat")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(BplabError, match="no .png/.jpg/.jpeg images"):
        load_image_folder(tmp_path / "empty")


# ----------------------------------------------------------------------------- tar archives


def _write_tar(path: Path, members: dict[str, bytes]):
    """Write a tar archive (gzip when the name ends in .gz) holding ``members``."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _cifar_members(split, per_class, classes=("truck", "bird")):
    """JPEG members ``<split>/<class>/NNNN.jpg`` of 32x32 solid-colour images."""
    members = {}
    for k, name in enumerate(classes):
        for i in range(per_class):
            array = _colour(10 * k + i, size=(32, 32))
            members[f"{split}/{name}/{i:04d}.jpg"] = _image_bytes(array)
    return members


def test_tar_matches_folder(tmp_path, tree):
    """An archive of a class-per-folder tree loads the same as the extracted tree."""
    members = {
        str(path.relative_to(tree)): path.read_bytes()
        for path in sorted(tree.rglob("*")) if path.is_file()
    }
    archive = tmp_path / "pets.tar"
    _write_tar(archive, members)
    x_tar, y_tar, names_tar = load_image_tar(archive, split="train")
    x_dir, y_dir, names_dir = load_image_folder(tree, split="train")
    assert names_tar == names_dir
    np.testing.assert_array_equal(y_tar, y_dir)
    np.testing.assert_array_equal(x_tar, x_dir)


def test_tar_corrupt_member_error(tmp_path):
    """A member that does not decode is named as archive:member."""
    members = _cifar_members("test", 1)
    members["test/bird/0007.jpg"] = b"garbage"
    archive = tmp_path / "t.tar.gz"
    _write_tar(archive, members)
    with pytest.raises(BplabError, match=r"t\.tar\.gz:test/bird/0007\.jpg: cannot decode image"):
        load_image_tar(archive, split="test")


def test_tar_truncated_archive_error(tmp_path):
    """A truncated .tar.gz raises BplabError naming the archive."""
    archive = tmp_path / "t.tar.gz"
    _write_tar(archive, _cifar_members("test", 3))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BplabError, match="cannot read tar archive"):
        load_image_tar(archive, split="test")


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A data root with a tiny cifar10-jpeg/test.tar.gz and a private array cache."""
    root = tmp_path / "data"
    (root / "cifar10-jpeg").mkdir(parents=True)
    _write_tar(root / "cifar10-jpeg" / "test.tar.gz", _cifar_members("test", 3))
    monkeypatch.setenv("BPLAB_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_cifar10_tiny_archive(cifar_root):
    """Labels index CIFAR10_CLASSES, whatever subset of classes the archive holds."""
    x, y = load_cifar10("test", data_dir=cifar_root, use_cache=False)
    assert x.shape == (6, 32, 32, 3)
    assert x.dtype == np.uint8
    assert y.tolist() == [2, 2, 2, 9, 9, 9]  # bird, then truck
    np.testing.assert_allclose(x[3], _colour(0, size=(32, 32)), atol=4)


def test_cifar10_second_load_uses_cache(cifar_root, tmp_path, monkeypatch):
    """The first load writes one .npz; the second reads it without decoding the archive."""
    x, y = load_cifar10("test", data_dir=cifar_root)
    cached = list((tmp_path / "cache" / "arrays").glob("cifar10-test-*.npz"))
    assert len(cached) == 1
    assert [p.name for p in (tmp_path / "cache" / "arrays").iterdir()] == [cached[0].name]

    def fail(*args, **kwargs):
        raise AssertionError("archive decoded again")

    monkeypatch.setattr(images, "load_image_tar", fail)
    x_again, y_again = load_cifar10("test", data_dir=cifar_root)
    np.testing.assert_array_equal(x_again, x)
    np.testing.assert_array_equal(y_again, y)


def test_cifar10_cache_follows_archive_content(cifar_root, tmp_path):
    """Replacing the archive makes the next load decode the new one."""
    _, y = load_cifar10("test", data_dir=cifar_root)
    _write_tar(cifar_root / "cifar10-jpeg" / "test.tar.gz",
               _cifar_members("test", 2, classes=("cat",)))
    _, y_new = load_cifar10("test", data_dir=cifar_root)
    assert len(y) == 6
    assert y_new.tolist() == [3, 3]


def test_cifar10_unknown_class_error(cifar_root):
    """A class folder outside the ten CIFAR-10 classes is rejected, listing the valid ones."""
    _write_tar(cifar_root / "cifar10-jpeg" / "test.tar.gz",
               _cifar_members("test", 1, classes=("bird", "unicorn")))
    with pytest.raises(BplabError, match="unknown CIFAR-10 class folder.* unicorn; valid classes"):
        load_cifar10("test", data_dir=cifar_root, use_cache=False)


def test_cifar10_missing_archive_error(tmp_path):
    """A missing archive names the absolute path it was looked for at."""
    with pytest.raises(BplabError, match="CIFAR-10 archive not found") as info:
        load_cifar10("train", data_dir=tmp_path)
    assert str(tmp_path.absolute() / "cifar10-jpeg" / "train.tar.gz") in str(info.value)


def test_cifar10_unknown_split(tmp_path):
    """An unknown split lists the valid ones."""
    with pytest.raises(BplabError, match="unknown split 'val'; valid choices: test, train"):
        load_cifar10("val", data_dir=tmp_path)


def test_real_cifar10_test_split(tmp_path, monkeypatch):
    """The shared CIFAR-10 test split has 1,000 32x32 RGB images per class."""
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root or not (Path(root) / "cifar10-jpeg" / "test.tar.gz").is_file():
        pytest.skip("BPLAB_DATA_DIR is not set or has no cifar10-jpeg/test.tar.gz")
    monkeypatch.setenv("BPLAB_CACHE_DIR", str(tmp_path))
    x, y = load_cifar10("test", data_dir=root)
    assert x.shape == (10000, 32, 32, 3)
    assert np.bincount(y, minlength=10).tolist() == [1000] * len(CIFAR10_CLASSES)
    # Published CIFAR-10 test means are (0.4942, 0.4851, 0.4504); JPEG re-encoding shifts them
    # by less than 0.001.
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)) / 255, [0.4942, 0.4851, 0.4504], atol=1e-3)
