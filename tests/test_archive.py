"""Safe archive extraction: members that escape the target folder are rejected before writing."""

import io
import tarfile
import zipfile

import pytest

from bplab.data.archive import extract_archive
from bplab.errors import BplabError


def _tar(path, members):
    """Write a tar with (name, bytes) files and (name, '->', target) symlinks."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            info = tarfile.TarInfo(member[0])
            if len(member) == 3:
                info.type = tarfile.SYMTYPE
                info.linkname = member[2]
                tar.addfile(info)
            else:
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))


def _listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_good_tar_extracts(tmp_path):
    """A well-formed tar extracts its files into the target."""
    _tar(tmp_path / "ok.tar", [("VOC/a.txt", b"a"), ("VOC/sub/b.txt", b"b")])
    extract_archive(tmp_path / "ok.tar", tmp_path / "out")
    assert (tmp_path / "out" / "VOC" / "sub" / "b.txt").read_bytes() == b"b"


@pytest.mark.parametrize("members", [
    [("good.txt", b"g"), ("../evil.txt", b"x")],
    [("good.txt", b"g"), ("sub/../../evil.txt", b"x")],
    [("good.txt", b"g"), ("/tmp/evil_abs.txt", b"x")],
    [("good.txt", b"g"), ("link", "->", "../../outside")],
    [("good.txt", b"g"), ("link", "->", "/etc/passwd")],
])
def test_escaping_tar_rejected(tmp_path, members):
    """A member escaping the target rejects the archive and nothing at all is written."""
    work = tmp_path / "work"
    work.mkdir()
    _tar(tmp_path / "bad.tar", members)
    before = _listing(tmp_path)
    with pytest.raises(BplabError, match="refusing"):
        extract_archive(tmp_path / "bad.tar", work / "target")
    assert _listing(tmp_path) == before
    assert not (tmp_path / "evil.txt").exists()
    assert not (work / "target").exists()


def test_escaping_zip_rejected(tmp_path):
    """A zip with a ../ member is rejected and writes nothing outside (or inside) the target."""
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("ok.txt", "ok")
        archive.writestr("../evil.txt", "x")
    with pytest.raises(BplabError, match="escapes"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "target").exists()


def test_good_zip_extracts(tmp_path):
    """A well-formed zip extracts."""
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as archive:
        archive.writestr("d/ok.txt", "ok")
    extract_archive(tmp_path / "ok.zip", tmp_path / "target")
    assert (tmp_path / "target" / "d" / "ok.txt").read_text() == "ok"


def test_inner_symlink_allowed(tmp_path):
    """A symlink that stays inside the target is fine."""
    _tar(tmp_path / "ok.tar", [("d/a.txt", b"a"), ("d/link", "->", "a.txt")])
    extract_archive(tmp_path / "ok.tar", tmp_path / "out")
    assert (tmp_path / "out" / "d" / "link").read_bytes() == b"a"


def test_corrupt_archive_named(tmp_path):
    """A file that is not an archive, or a missing one, gives an error naming it."""
    (tmp_path / "x.tar").write_bytes(b"not an archive at all")
    with pytest.raises(BplabError, match="x.tar"):
        extract_archive(tmp_path / "x.tar", tmp_path / "out")
    with pytest.raises(BplabError, match="not found"):
        extract_archive(tmp_path / "missing.tar", tmp_path / "out")


def _serve(folder):
    """Start an HTTP server on 127.0.0.1 serving `folder`; return (server, base url)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_download_voc_verifies_and_extracts(tmp_path, monkeypatch):
    """download_voc fetches from the first working mirror, checks the MD5 and extracts."""
    import hashlib

    from bplab.data import voc_download

    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "VOCtest.tar", [("VOCdevkit/VOC2007/ImageSets/Main/test.txt", b"000001\n")])
    md5 = hashlib.md5((served / "VOCtest.tar").read_bytes()).hexdigest()
    server, url = _serve(served)
    try:
        monkeypatch.setitem(voc_download.VOC_ARCHIVES, "2007-test", (
            "VOCtest.tar", (f"{url}/missing.tar", f"{url}/VOCtest.tar"), md5, "VOC2007"))
        folder = voc_download.download_voc("2007-test", tmp_path / "data", progress=False)
        assert folder == tmp_path / "data" / "voc" / "VOCdevkit" / "VOC2007"
        assert (folder / "ImageSets" / "Main" / "test.txt").read_text() == "000001\n"

        monkeypatch.setitem(voc_download.VOC_ARCHIVES, "2007-trainval", (
            "bad.tar", (f"{url}/VOCtest.tar",), "0" * 32, "VOC2007"))
        with pytest.raises(BplabError, match="bad.tar"):
            voc_download.download_voc("2007-trainval", tmp_path / "data", progress=False)
        assert not (tmp_path / "data" / "voc" / "bad.tar").exists()
    finally:
        server.shutdown()


def test_download_voc_unknown_part():
    """An unknown archive name lists the valid ones."""
    from bplab.data.voc_download import download_voc

    with pytest.raises(BplabError, match="2007-trainval"):
        download_voc("2009")
