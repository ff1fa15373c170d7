"""Tests for the IDX reader and writer."""

import gzip

import numpy as np
import pytest

from bplab.data.idx import read_idx, read_idx_header, write_idx
from bplab.errors import BplabError


def _images(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_uint8_3d_round_trip(tmp_path, name):
    """A uint8 (N, 28, 28) array survives write then read, raw and gzip."""
    x = _images()
    path = write_idx(tmp_path / name, x)
    loaded = read_idx(path, expected_ndim=3)
    assert loaded.dtype == np.uint8
    assert loaded.shape == (5, 28, 28)
    np.testing.assert_array_equal(loaded, x)
    assert loaded.flags.writeable


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_uint8_1d_round_trip(tmp_path, name):
    """A uint8 label vector survives write then read, raw and gzip."""
    y = np.array([5, 0, 4, 1, 9, 2], dtype=np.uint8)
    path = write_idx(tmp_path / name, y)
    np.testing.assert_array_equal(read_idx(path, expected_ndim=1), y)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_other_dtypes_round_trip(tmp_path, dtype):
    """Every IDX element type reads back in native byte order with its values."""
    x = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    loaded = read_idx(write_idx(tmp_path / "x.idx", x))
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, x)


def test_header_bytes_match_mnist_layout(tmp_path):
    """The header is magic 0x00000803 followed by big-endian uint32 sizes."""
    path = write_idx(tmp_path / "x", _images(n=2))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    assert len(raw) == 16 + 2 * 28 * 28


def test_gzip_detected_by_content_not_name(tmp_path):
    """A gzip file without a .gz suffix is still decompressed."""
    x = _images(n=2)
    gz = write_idx(tmp_path / "x.gz", x)
    renamed = tmp_path / "x-idx3-ubyte"
    renamed.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), x)


def test_read_header_only(tmp_path):
    """read_idx_header returns the dtype and shape without the data."""
    dtype, dims = read_idx_header(write_idx(tmp_path / "x.gz", _images(n=3)))
    assert dtype == np.dtype(">u1")
    assert dims == (3, 28, 28)


def test_truncated_data_error(tmp_path):
    """A file cut short inside its data is reported as truncated with both byte counts."""
    path = write_idx(tmp_path / "x", _images(n=3))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BplabError, match="truncated") as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "2352 data bytes" in message
    assert "only 2252" in message


def test_truncated_header_error(tmp_path):
    """A file cut inside its dimension sizes names the header as truncated."""
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big"))
    with pytest.raises(BplabError, match=r"truncated: header needs 16 bytes"):
        read_idx(path)


def test_truncated_gzip_error(tmp_path):
    """A gzip file cut short is reported as a truncated gzip stream, not an EOFError."""
    path = write_idx(tmp_path / "x.gz", _images(n=50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BplabError, match="gzip stream is truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_error(tmp_path):
    """A file with the gzip magic but garbage after it is reported as corrupt gzip data."""
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(BplabError, match="corrupt gzip data"):
        read_idx(path)


def test_wrong_magic_error(tmp_path):
    """A file that does not start with 0x0000 is rejected as not an IDX file."""
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(BplabError, match=r"not an IDX file: magic number 0x504b0304") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_unknown_type_code_error(tmp_path):
    """An unknown element type code is named together with the valid codes."""
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (4).to_bytes(4, "big") + bytes(4))
    with pytest.raises(BplabError, match=r"unknown IDX element type code 0x07; valid codes: 0x08"):
        read_idx(path)


def test_wrong_dimension_error(tmp_path):
    """A labels file read where images are expected names both dimension counts."""
    path = write_idx(tmp_path / "labels", np.zeros(10, dtype=np.uint8))
    with pytest.raises(BplabError, match=r"has 1 dimension\(s\) \(10,\), expected 3") as info:
        read_idx(path, expected_ndim=3)
    assert str(path) in str(info.value)


def test_zero_dimensions_error(tmp_path):
    """A header with 0 dimensions is rejected as corrupt."""
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x08, 0]))
    with pytest.raises(BplabError, match="0 dimensions"):
        read_idx(path)


def test_trailing_bytes_error(tmp_path):
    """Extra bytes after the data that the header describes are rejected."""
    path = write_idx(tmp_path / "x", np.zeros(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00" * 7)
    with pytest.raises(BplabError, match="has 7 bytes after the 10 data bytes"):
        read_idx(path)


def test_empty_file_error(tmp_path):
    """A 0-byte file is reported as empty."""
    path = tmp_path / "x"
    path.write_bytes(b"")
    with pytest.raises(BplabError, match=r"IDX file is empty \(0 bytes\)") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_empty_gzip_error(tmp_path):
    """A gzip file that decompresses to nothing says it is empty."""
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(BplabError, match="empty after gzip decompression"):
        read_idx(path)


def test_missing_file_error(tmp_path):
    """A missing file raises BplabError, not FileNotFoundError."""
    with pytest.raises(BplabError, match="IDX file not found"):
        read_idx(tmp_path / "nope")


def test_write_refuses_to_overwrite(tmp_path):
    """write_idx keeps an existing file unless overwrite=True."""
    path = write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint8))
    with pytest.raises(BplabError, match="already exists"):
        write_idx(path, np.ones(3, dtype=np.uint8))
    write_idx(path, np.ones(3, dtype=np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_idx(path), np.ones(3, dtype=np.uint8))


def test_write_rejects_unsupported_dtype(tmp_path):
    """int64 has no IDX type code, so writing it raises and lists the supported dtypes."""
    with pytest.raises(BplabError, match="cannot write int64 to IDX; supported dtypes: uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
