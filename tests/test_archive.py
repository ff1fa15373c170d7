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
