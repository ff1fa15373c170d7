"""Tests for the download helper and `bplab data download|info`, against a server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from bplab.cli import main
from bplab.data import download
from bplab.data.download import (
    Checksums,
    DownloadError,
    FileSpec,
    cache_dir,
    ensure_dataset,
    fetch,
    verify_file,
)
from bplab.data.idx import write_idx
from bplab.errors import BplabError

PAYLOAD = bytes(range(256)) * 64  # 16 KiB, several read chunks
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serve files from ``server.files`` under a route prefix that picks the behaviour.

    ``/ok/NAME`` sends the file, ``/missing/NAME`` returns 404, ``/corrupt/NAME`` sends other
    bytes of the same length, and ``/short/NAME`` announces the full Content-Length but closes
    the connection after half of the body.
    """

    def do_GET(self):
        self.server.requests.append(self.path)
        _, route, name = self.path.split("/", 2)
        body = self.server.files.get(name)
        if route == "missing" or body is None:
            self.send_error(404)
            return
        if route == "corrupt":
            body = bytes(len(body))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route == "short":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 (random port) that serves ``server.files``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"blob.bin": PAYLOAD}
    httpd.requests = []
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 whose port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _files_in(folder: Path) -> list[str]:
    """Names of all entries in a folder, hidden temporary files included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_cache_dir_from_env(tmp_path, monkeypatch):
    """cache_dir() is BPLAB_DATA_DIR when set, as an absolute path."""
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    assert cache_dir() == tmp_path.absolute()


def test_cache_dir_default_is_user_cache(monkeypatch):
    """Without BPLAB_DATA_DIR, cache_dir() is platformdirs' user cache dir for bplab."""
    import platformdirs

    monkeypatch.delenv("BPLAB_DATA_DIR", raising=False)
    assert cache_dir() == Path(platformdirs.user_cache_dir("bplab")).absolute()


def test_writable_cache_dir_prefers_env(tmp_path, monkeypatch):
    """BPLAB_CACHE_DIR wins over a writable BPLAB_DATA_DIR."""
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BPLAB_CACHE_DIR", str(tmp_path / "cache"))
    assert download.writable_cache_dir() == (tmp_path / "cache").absolute()


def test_writable_cache_dir_skips_unwritable_data_dir(tmp_path, monkeypatch):
    """A BPLAB_DATA_DIR that cannot be written falls back to the user cache dir."""
    import platformdirs

    # A folder below a regular file can be neither created nor written, even by root.
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    monkeypatch.setenv("BPLAB_DATA_DIR", str(blocker / "data"))
    monkeypatch.delenv("BPLAB_CACHE_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(tmp_path / "user"))
    assert download.writable_cache_dir() == (tmp_path / "user").absolute()


def test_writable_cache_dir_respects_read_only_mode(tmp_path, monkeypatch):
    """A BPLAB_DATA_DIR with mode 0555 is not written to, even when running as root."""
    import platformdirs

    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    monkeypatch.setenv("BPLAB_DATA_DIR", str(data))
    monkeypatch.delenv("BPLAB_CACHE_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(tmp_path / "user"))
    try:
        assert download.writable_cache_dir() == (tmp_path / "user").absolute()
        assert os.listdir(data) == []
    finally:
        data.chmod(0o755)


def test_fetch_first_mirror_404_second_serves(server, tmp_path):
    """A 404 on the first mirror falls through to the second, and the file verifies."""
    urls = [f"{server.base}/missing/blob.bin", f"{server.base}/ok/blob.bin"]
    path = fetch("blob.bin", urls, sha256=PAYLOAD_SHA256, root=tmp_path, subdir="d",
                 progress=False)
    assert path == tmp_path / "d" / "blob.bin"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/missing/blob.bin", "/ok/blob.bin"]
    assert _files_in(tmp_path / "d") == ["blob.bin"]


def test_fetch_closed_port_then_server(server, closed_port_url, tmp_path):
    """A refused connection on the first mirror falls through to the second."""
    urls = [f"{closed_port_url}/ok/blob.bin", f"{server.base}/ok/blob.bin"]
    path = fetch("blob.bin", urls, md5=PAYLOAD_MD5, root=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_fetch_returns_cached_file_without_request(server, tmp_path):
    """A present, verified file is returned without contacting any mirror."""
    (tmp_path / "blob.bin").write_bytes(PAYLOAD)
    path = fetch("blob.bin", [f"{server.base}/ok/blob.bin"], sha256=PAYLOAD_SHA256,
                 root=tmp_path, progress=False)
    assert path == tmp_path / "blob.bin"
    assert server.requests == []


def test_fetch_checksum_mismatch_leaves_nothing(server, tmp_path):
    """A download whose SHA-256 does not match is rejected and nothing stays in the cache."""
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        fetch("blob.bin", [f"{server.base}/corrupt/blob.bin"], sha256=PAYLOAD_SHA256,
              root=tmp_path, subdir="d", progress=False)
    assert PAYLOAD_SHA256 in str(info.value)
    assert _files_in(tmp_path / "d") == []


def test_fetch_checksum_mismatch_then_good_mirror(server, tmp_path):
    """A mirror that serves bad bytes is skipped in favour of the next one."""
    urls = [f"{server.base}/corrupt/blob.bin", f"{server.base}/ok/blob.bin"]
    path = fetch("blob.bin", urls, sha256=PAYLOAD_SHA256, root=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert _files_in(tmp_path) == ["blob.bin"]


def test_fetch_interrupted_transfer_leaves_nothing(server, tmp_path):
    """A body shorter than its Content-Length fails and leaves no partial file, even unverified."""
    with pytest.raises(DownloadError, match="transfer interrupted after") as info:
        fetch("blob.bin", [f"{server.base}/short/blob.bin"], root=tmp_path, subdir="d",
              progress=False)
    assert f"of {len(PAYLOAD)} bytes" in str(info.value)
    assert _files_in(tmp_path / "d") == []


def test_fetch_offline_one_message(closed_port_url, tmp_path):
    """When every mirror fails, one error names the file, its absolute path and the URLs."""
    urls = [f"{closed_port_url}/a/blob.bin", f"{closed_port_url}/b/blob.bin"]
    with pytest.raises(DownloadError) as info:
        fetch("blob.bin", urls, sha256=PAYLOAD_SHA256, root=tmp_path, subdir="d",
              progress=False)
    message = str(info.value)
    assert "could not download blob.bin" in message
    assert f"save it as {tmp_path.absolute() / 'd' / 'blob.bin'}" in message
    assert urls[0] in message
    assert urls[1] in message
    assert "\n" not in message
    assert _files_in(tmp_path / "d") == []


def test_fetch_keeps_mismatching_cached_file(server, tmp_path):
    """A present file that fails verification is reported, not silently replaced."""
    (tmp_path / "blob.bin").write_bytes(b"user data")
    with pytest.raises(BplabError, match="checksum mismatch"):
        fetch("blob.bin", [f"{server.base}/ok/blob.bin"], sha256=PAYLOAD_SHA256,
              root=tmp_path, progress=False)
    assert (tmp_path / "blob.bin").read_bytes() == b"user data"
    assert server.requests == []


def test_fetch_read_only_folder_error(server, tmp_path):
    """A read-only data folder is not written to, even by root, and no mirror is contacted."""
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(BplabError, match=r"cannot download into .*/data/d: .* is read-only"):
            fetch("blob.bin", [f"{server.base}/ok/blob.bin"], root=root, subdir="d",
                  progress=False)
        assert os.listdir(root) == []
        assert server.requests == []
    finally:
        root.chmod(0o755)


def test_verify_file_accepts_recompressed_gzip(tmp_path):
    """A .gz with another header verifies by the digest of its decompressed content."""
    content = b"idx bytes" * 100
    original = gzip.compress(content, mtime=0)
    recompressed = gzip.compress(content, compresslevel=1, mtime=12345)
    assert original != recompressed
    path = tmp_path / "x.gz"
    path.write_bytes(recompressed)
    checksums = Checksums(md5=hashlib.md5(original).hexdigest(),
                          gunzipped_sha256=hashlib.sha256(content).hexdigest())
    assert verify_file(path, checksums) == (True, "gunzipped sha256")

    path.write_bytes(original)
    assert verify_file(path, checksums) == (True, "md5")


def test_verify_file_rejects_non_gzip(tmp_path):
    """A plain file checked against gunzipped digests fails with a readable reason."""
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip")
    ok, detail = verify_file(path, Checksums(gunzipped_sha256="0" * 64))
    assert not ok
    assert "not a valid gzip file" in detail


# ----------------------------------------------------------------------------- datasets


def _tiny_mnist_files(n=20, seed=0):
    """IDX .gz bytes for a tiny 4-file MNIST-format dataset, keyed by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n // 2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n // 2, dtype=np.uint8),
    }
    files = {}
    for name, array in arrays.items():
        gz = gzip.compress(write_idx_bytes(array), mtime=0)
        files[name] = gz
    return files, arrays


def write_idx_bytes(array):
    """The raw IDX bytes of an array, built with write_idx in a temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return write_idx(Path(folder) / "x", array).read_bytes()


def _specs_for(files, bases):
    """FileSpecs for ``files`` served under each base URL, checked by .gz MD5."""
    return [
        FileSpec(name, tuple(f"{base}/{name}" for base in bases),
                 Checksums(md5=hashlib.md5(data).hexdigest(),
                           gunzipped_sha256=hashlib.sha256(gzip.decompress(data)).hexdigest()))
        for name, data in files.items()
    ]


def test_ensure_dataset_downloads_all_files(server, tmp_path, monkeypatch):
    """ensure_dataset fetches every missing file into <root>/<name>/ and skips present ones."""
    files, _ = _tiny_mnist_files()
    server.files = files
    monkeypatch.setitem(download.DATASETS, "tiny",
                        _specs_for(files, [f"{server.base}/missing", f"{server.base}/ok"]))
    folder = ensure_dataset("tiny", root=tmp_path, progress=False)
    assert folder == tmp_path / "tiny"
    assert _files_in(folder) == sorted(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data

    server.requests.clear()
    ensure_dataset("tiny", root=tmp_path, progress=False)
    assert server.requests == []


def test_ensure_dataset_accepts_decompressed_copy(server, tmp_path, monkeypatch):
    """A decompressed file (name without .gz) counts as present when its content verifies."""
    files, _ = _tiny_mnist_files()
    server.files = files
    monkeypatch.setitem(download.DATASETS, "tiny", _specs_for(files, [f"{server.base}/ok"]))
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(
        gzip.decompress(files["train-images-idx3-ubyte.gz"]))
    ensure_dataset("tiny", root=tmp_path, progress=False)
    assert "/ok/train-images-idx3-ubyte.gz" not in server.requests
    assert len(server.requests) == 3


def test_ensure_dataset_offline_one_message(closed_port_url, tmp_path, monkeypatch):
    """Offline, one error lists every missing file, the absolute folder and the mirrors."""
    files, _ = _tiny_mnist_files()
    monkeypatch.setitem(download.DATASETS, "tiny",
                        _specs_for(files, [f"{closed_port_url}/m1", f"{closed_port_url}/m2"]))
    attempts = []
    real_download = download._download_verified

    def counting_download(url, *args):
        attempts.append(url)
        return real_download(url, *args)

    monkeypatch.setattr(download, "_download_verified", counting_download)
    with pytest.raises(BplabError) as info:
        ensure_dataset("tiny", root=tmp_path, progress=False)
    message = str(info.value)
    for name in files:
        assert name in message
    # Once both mirrors refused the first file, the other files are not tried.
    assert len(attempts) == 2
    assert f"put them in {(tmp_path / 'tiny').absolute()}/" in message
    assert f"{closed_port_url}/m1/" in message
    assert f"{closed_port_url}/m2/" in message
    assert "connection refused" in message.lower()
    assert _files_in(tmp_path / "tiny") == []


def test_ensure_dataset_tries_every_file_after_404(server, tmp_path, monkeypatch):
    """A reachable mirror that lacks one file does not stop the others from downloading."""
    files, _ = _tiny_mnist_files()
    server.files = {name: data for name, data in files.items() if not name.startswith("t10k")}
    monkeypatch.setitem(download.DATASETS, "tiny", _specs_for(files, [f"{server.base}/ok"]))
    with pytest.raises(BplabError, match=r"no mirror delivered t10k-images-idx3-ubyte\.gz") as info:
        ensure_dataset("tiny", root=tmp_path, progress=False)
    assert "HTTP 404" in str(info.value)
    assert len(server.requests) == 4
    assert _files_in(tmp_path / "tiny") == ["train-images-idx3-ubyte.gz",
                                            "train-labels-idx1-ubyte.gz"]


def test_ensure_dataset_unknown_name():
    """An unknown dataset name lists the valid ones."""
    with pytest.raises(BplabError, match="unknown dataset 'nope'; valid choices: fashion-mnist"):
        ensure_dataset("nope")


def test_registry_specs_are_complete():
    """Every registered file has at least two mirrors and published and content digests."""
    for name in ("mnist", "fashion-mnist"):
        specs = download.DATASETS[name]
        assert len(specs) == 4
        for spec in specs:
            assert len(spec.urls) >= 2
            assert all(url.endswith("/" + spec.filename) for url in spec.urls)
            assert len(spec.checksums.md5) == 32
            assert len(spec.checksums.gunzipped_sha256) == 64


def test_registry_verifies_shared_copies():
    """The shared MNIST and Fashion-MNIST copies (recompressed .gz) verify against the registry."""
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root:
        pytest.skip("BPLAB_DATA_DIR is not set")
    for name in ("mnist", "fashion-mnist"):
        for spec in download.DATASETS[name]:
            path = Path(root) / name / spec.filename
            if not path.is_file():
                pytest.skip(f"{path} is missing")
            ok, detail = download.verify_local_copy(spec, path)
            assert ok, f"{path}: {detail}"


# ----------------------------------------------------------------------------- CLI


def test_cli_download_and_info(server, tmp_path, monkeypatch, capsys):
    """`bplab data download mnist` fetches from the mirrors and `info` then reports verified."""
    files, _ = _tiny_mnist_files()
    server.files = files
    monkeypatch.setitem(download.DATASETS, "mnist", _specs_for(files, [f"{server.base}/ok"]))
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPLAB_CACHE_DIR", str(tmp_path / "cache"))

    assert main(["data", "download", "mnist", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"mnist: all 4 files verified in {tmp_path.absolute() / 'mnist'}" in out

    assert main(["data", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data folder: {tmp_path.absolute()} (from BPLAB_DATA_DIR)"
    mnist_lines = [line for line in lines if line.startswith("mnist ")]
    assert len(mnist_lines) == 4
    assert all(" verified " in line for line in mnist_lines)
    fashion_lines = [line for line in lines if line.startswith("fashion-mnist ")]
    assert len(fashion_lines) == 4
    assert all(" missing " in line for line in fashion_lines)


def test_cli_info_reports_mismatch(tmp_path, monkeypatch, capsys):
    """`bplab data info` marks a damaged file as a checksum mismatch."""
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"junk"))
    assert main(["data", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    damaged = [line for line in lines
               if line.startswith("mnist ") and "t10k-labels-idx1-ubyte.gz" in line]
    assert len(damaged) == 1
    assert "checksum mismatch" in damaged[0]


def test_cli_download_offline_exit_2(closed_port_url, tmp_path, monkeypatch, capsys):
    """Offline, `bplab data download` exits 2 with one error line."""
    files, _ = _tiny_mnist_files()
    monkeypatch.setitem(download.DATASETS, "mnist", _specs_for(files, [closed_port_url]))
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    assert main(["data", "download", "mnist", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bplab: error: could not download mnist")


def test_cli_download_real_copy(tmp_path, monkeypatch, capsys):
    """`bplab data download mnist` on a copy of the real files verifies them without a download."""
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("BPLAB_DATA_DIR is not set or has no mnist/")
    shutil.copytree(Path(root) / "mnist", tmp_path / "mnist")
    monkeypatch.setenv("BPLAB_DATA_DIR", str(tmp_path))
    # Any download attempt would fail here: no mirror is reachable under these URLs.
    monkeypatch.setattr(download, "_stream", _fail_stream)
    assert main(["data", "download", "mnist", "--no-progress"]) == 0
    assert "mnist: all 4 files verified" in capsys.readouterr().out


def _fail_stream(url, out, name, progress):
    raise AssertionError(f"unexpected download of {url}")
