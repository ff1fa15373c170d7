"""Tests for the MNIST and Fashion-MNIST loaders and the seeded train/val split."""

import os
from pathlib import Path

import numpy as np
import pytest

from bplab.data import mnist
from bplab.data.idx import write_idx
from bplab.data.mnist import CLASS_NAMES, load_mnist, train_val_split
from bplab.errors import BplabError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _write_tiny(folder: Path, suffix=".gz", n_train=30, n_test=12, seed=0):
    """Write the four IDX files of a tiny MNIST-format dataset and return its arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y)
        arrays[prefix] = (x, y)
    return arrays


def _real_root(name):
    """The BPLAB_DATA_DIR holding ``name``/, or skip the test."""
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root:
        pytest.skip("BPLAB_DATA_DIR is not set")
    if not (Path(root) / name / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"BPLAB_DATA_DIR has no {name}/ IDX files")
    return Path(root)


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_tiny_dataset(tmp_path, name, suffix):
    """Both splits load from .gz or decompressed files with uint8 images and int64 labels."""
    arrays = _write_tiny(tmp_path / name, suffix=suffix)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = load_mnist(name, split, data_dir=tmp_path)
        assert x.dtype == np.uint8
        assert x.shape == arrays[prefix][0].shape
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, arrays[prefix][0])
        np.testing.assert_array_equal(y, arrays[prefix][1])


def test_load_uses_bplab_data_dir(tmp_path, monkeypatch):
    """Without data_dir, files are read from $BPLAB_DATA_DIR/<name>/."""
    arrays = _write_tiny(tmp_path / "mnist")
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    _, y = load_mnist("mnist", "test")
    np.testing.assert_array_equal(y, arrays["t10k"][1])


def test_missing_files_trigger_download(tmp_path, monkeypatch):
    """Missing files are fetched through ensure_dataset into <data_dir>/<name>/."""
    calls = []

    def fake_ensure_dataset(name, root):
        calls.append((name, root))
        _write_tiny(root / name)
        return root / name

    monkeypatch.setattr(mnist, "ensure_dataset", fake_ensure_dataset)
    x, _ = load_mnist("fashion-mnist", "train", data_dir=tmp_path)
    assert calls == [("fashion-mnist", tmp_path.absolute())]
    assert x.shape == (30, 28, 28)


def test_unknown_name_and_split(tmp_path):
    """Unknown dataset and split names list the valid choices."""
    with pytest.raises(BplabError, match="unknown dataset 'kmnist'; valid choices: fashion-mnist"):
        load_mnist("kmnist", data_dir=tmp_path)
    with pytest.raises(BplabError, match="unknown split 'val'; valid choices: test, train"):
        load_mnist("mnist", "val", data_dir=tmp_path)


def test_count_mismatch_error(tmp_path):
    """Images and labels of different lengths are rejected, naming both files."""
    folder = tmp_path / "mnist"
    _write_tiny(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8), overwrite=True)
    with pytest.raises(BplabError, match="has 12 images but .* has 5 labels"):
        load_mnist("mnist", "test", data_dir=tmp_path)


def test_wrong_image_shape_error(tmp_path):
    """Images that are not 28x28 are rejected with the shape found."""
    folder = tmp_path / "mnist"
    _write_tiny(folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((12, 32, 32), dtype=np.uint8),
              overwrite=True)
    with pytest.raises(BplabError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_mnist("mnist", "test", data_dir=tmp_path)


def test_labels_out_of_range_error(tmp_path):
    """A label outside 0..9 is rejected."""
    folder = tmp_path / "mnist"
    _write_tiny(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(12, 10, dtype=np.uint8),
              overwrite=True)
    with pytest.raises(BplabError, match=r"labels must be 0..9, found 10..10"):
        load_mnist("mnist", "test", data_dir=tmp_path)


def test_images_file_with_labels_dimension_error(tmp_path):
    """A 1-D file in place of the images reports the wrong dimension count."""
    folder = tmp_path / "mnist"
    _write_tiny(folder)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros(30, dtype=np.uint8),
              overwrite=True)
    with pytest.raises(BplabError, match=r"has 1 dimension\(s\) \(30,\), expected 3"):
        load_mnist("mnist", "train", data_dir=tmp_path)


def test_class_names():
    """Both datasets have 10 class names; Fashion-MNIST's start with T-shirt/top."""
    assert CLASS_NAMES["mnist"] == tuple("0123456789")
    assert len(CLASS_NAMES["fashion-mnist"]) == 10
    assert CLASS_NAMES["fashion-mnist"][0] == "T-shirt/top"
    assert CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"


def test_split_sizes_disjoint_reproducible():
    """The split has the requested sizes, covers every sample once and repeats with its seed."""
    x = np.arange(100 * 4).reshape(100, 4)
    y = np.arange(100)
    x_train, y_train, x_val, y_val = train_val_split(x, y, val_size=20, seed=3)
    assert len(x_train) == len(y_train) == 80
    assert len(x_val) == len(y_val) == 20
    assert np.intersect1d(y_train, y_val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), y)
    np.testing.assert_array_equal(x_val[:, 0] // 4, y_val)  # rows stay paired with labels

    again = train_val_split(x, y, val_size=20, seed=3)
    np.testing.assert_array_equal(again[3], y_val)
    other = train_val_split(x, y, val_size=20, seed=4)
    assert not np.array_equal(other[3], y_val)


@pytest.mark.parametrize("val_size", [0, 100, -1])
def test_split_rejects_bad_val_size(val_size):
    """val_size must leave at least one sample on each side."""
    with pytest.raises(BplabError, match="val_size must be between 1 and 99"):
        train_val_split(np.zeros((100, 2)), np.zeros(100), val_size=val_size)


def test_split_rejects_length_mismatch():
    """x and y of different lengths are rejected."""
    with pytest.raises(BplabError, match="x has 10 samples but y has 9"):
        train_val_split(np.zeros((10, 2)), np.zeros(9), val_size=2)


# ----------------------------------------------------------------------------- real data


def test_real_mnist_label_counts():
    """Real MNIST has the published per-digit counts in both splits."""
    root = _real_root("mnist")
    x_train, y_train = load_mnist("mnist", "train", data_dir=root)
    x_test, y_test = load_mnist("mnist", "test", data_dir=root)
    assert x_train.shape == (60000, 28, 28)
    assert x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS


def test_real_fashion_mnist_label_counts():
    """Real Fashion-MNIST has 6,000 training and 1,000 test images per class."""
    root = _real_root("fashion-mnist")
    _, y_train = load_mnist("fashion-mnist", "train", data_dir=root)
    _, y_test = load_mnist("fashion-mnist", "test", data_dir=root)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10


def test_real_mnist_default_split():
    """The default split of MNIST's training set is 55,000 / 5,000, disjoint and reproducible."""
    root = _real_root("mnist")
    x, _ = load_mnist("mnist", "train", data_dir=root)
    index = np.arange(len(x))
    x_train, idx_train, x_val, idx_val = train_val_split(x, index)
    assert x_train.shape == (55000, 28, 28)
    assert x_val.shape == (5000, 28, 28)
    assert np.intersect1d(idx_train, idx_val).size == 0
    np.testing.assert_array_equal(x_val, x[idx_val])
    _, _, _, idx_val_again = train_val_split(x, index)
    np.testing.assert_array_equal(idx_val_again, idx_val)
