"""Read and write IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a header followed by the array in C order, all big-endian:

    bytes 0-1   zero
    byte  2     element type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64)
    byte  3     number of dimensions, ndim
    4 * ndim    the size of each dimension, as uint32
    the data    prod(dims) elements

For example, MNIST's training images start with 0x00000803 (uint8, 3 dimensions) and then
60000, 28, 28. The format is described on yann.lecun.com/exdb/mnist.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from bplab.errors import BplabError

# Element type code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a NumPy array.

    Compression is detected from the file's first bytes, not its name.

    Parameters
    ----------
    path : str or Path
        The IDX file.
    expected_ndim : int, optional
        Raise if the file does not hold an array of this many dimensions
        (3 for an images file, 1 for a labels file).

    Returns
    -------
    ndarray of shape ``dims`` from the header, in native byte order
        A writable array of the dtype that the header names (uint8 for MNIST).

    Raises
    ------
    BplabError
        If the file is missing, empty, not gzip-readable, has the wrong magic number, an unknown
        type code, the wrong number of dimensions, or a data length that does not match its header.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, dims = _parse_header(path, data)

    if expected_ndim is not None and len(dims) != expected_ndim:
        raise BplabError(
            f"{path}: has {len(dims)} dimension(s) {tuple(dims)}, expected {expected_ndim}"
        )

    header_size = 4 + 4 * len(dims)
    expected_bytes = math.prod(dims) * dtype.itemsize
    actual_bytes = len(data) - header_size
    if actual_bytes < expected_bytes:
        raise BplabError(
            f"{path}: truncated: the header gives shape {tuple(dims)} "
            f"({expected_bytes} data bytes) but the file has only {actual_bytes}; download it again"
        )
    if actual_bytes > expected_bytes:
        raise BplabError(
            f"{path}: has {actual_bytes - expected_bytes} bytes after the {expected_bytes} data "
            f"bytes that its header's shape {tuple(dims)} allows; the file is corrupt"
        )

    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header_size)
    # astype copies, which also makes the array writable (frombuffer on bytes is read-only).
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file and return its element dtype and shape."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            is_gzip = file.read(2) == _GZIP_MAGIC
        opener = gzip.open if is_gzip else open
        with opener(path, "rb") as file:
            head = file.read(4 + 4 * 255)
    except FileNotFoundError:
        raise BplabError(f"{path}: IDX file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BplabError(f"{path}: cannot read IDX header: {exc}") from None
    if not head:
        raise BplabError(f"{path}: IDX file is empty (0 bytes); download it again")
    return _parse_header(path, head)


def write_idx(path: str | Path, array: np.ndarray, overwrite: bool = False) -> Path:
    """Write an array as an IDX file, gzip-compressed when the name ends in ``.gz``.

    Parameters
    ----------
    path : str or Path
        Where to write. An existing file is replaced only when ``overwrite`` is true.
    array : ndarray of 1 to 255 dimensions
        Its dtype must be one that IDX supports (uint8, int8, int16, int32, float32, float64).

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise BplabError(
            f"cannot write {array.dtype} to IDX; supported dtypes: "
            f"{', '.join(str(d.newbyteorder('=')) for d in IDX_DTYPES.values())}"
        )
    if not 1 <= array.ndim <= 255:
        raise BplabError(
            f"cannot write a {array.ndim}-D array to IDX; it needs 1 to 255 dimensions"
        )
    if path.exists() and not overwrite:
        raise BplabError(f"{path}: already exists; pass overwrite=True to replace it")

    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        # mtime=0 keeps the output byte-identical across runs.
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _read_bytes(path: Path) -> bytes:
    """Return the file's contents, decompressed when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BplabError(f"{path}: IDX file not found") from None
    except OSError as exc:
        raise BplabError(f"{path}: cannot read IDX file: {exc.strerror or exc}") from None
    if not raw:
        raise BplabError(f"{path}: IDX file is empty (0 bytes); download it again")
    if not raw.startswith(_GZIP_MAGIC):
        return raw

    try:
        data = gzip.decompress(raw)
    except EOFError:
        raise BplabError(
            f"{path}: gzip stream is truncated (ends before its end marker); download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise BplabError(f"{path}: corrupt gzip data ({exc}); download it again") from None
    if not data:
        raise BplabError(f"{path}: IDX file is empty after gzip decompression; download it again")
    return data


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    """Check the magic number and return the element dtype and the dimensions."""
    if len(data) < 4:
        raise BplabError(
            f"{path}: truncated: {len(data)} byte(s), shorter than the 4-byte IDX magic number"
        )
    if data[0] != 0 or data[1] != 0:
        raise BplabError(
            f"{path}: not an IDX file: magic number 0x{data[:4].hex()} does not start with 0x0000"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise BplabError(
            f"{path}: unknown IDX element type code 0x{code:02X}; valid codes: {known}"
        )
    if ndim == 0:
        raise BplabError(f"{path}: IDX header gives 0 dimensions; the file is corrupt")

    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise BplabError(
            f"{path}: truncated: header needs {header_size} bytes for {ndim} dimension(s) "
            f"but the file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], dims
