"""Safe extraction of tar and zip archives: nothing is written outside the target folder.

Every member is checked before anything is extracted. A member whose path is absolute, contains
``..`` that leaves the target, or is a link (symbolic or hard) pointing outside the target rejects
the whole archive, so a malicious archive leaves the disk untouched. Device files and FIFOs are
rejected too.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from bplab.errors import BplabError

log = logging.getLogger(__name__)


def _resolve_inside(target: Path, member_name: str, archive: Path) -> Path:
    """Return the path `member_name` would be written to, or raise if it leaves `target`."""
    name = member_name.replace("\\", "/")
    if PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise BplabError(f"archive {archive}: member {member_name!r} has an absolute path; "
                         "refusing to extract it")
    normalized = posixpath.normpath(name)
    if normalized == ".." or normalized.startswith("../"):
        raise BplabError(f"archive {archive}: member {member_name!r} escapes the target folder; "
                         "refusing to extract it")
    return target / normalized


def _check_link(target: Path, member: tarfile.TarInfo, archive: Path) -> None:
    """Reject a link member whose destination lies outside `target`."""
    if member.issym():
        base = posixpath.dirname(posixpath.normpath(member.name))
        link = member.linkname
        if posixpath.isabs(link):
            raise BplabError(f"archive {archive}: symlink {member.name!r} points to the absolute "
                             f"path {link!r}; refusing to extract it")
        joined = posixpath.normpath(posixpath.join(base, link))
    else:
        joined = posixpath.normpath(member.linkname)
    if joined == ".." or joined.startswith("../") or posixpath.isabs(joined):
        raise BplabError(f"archive {archive}: link {member.name!r} -> {member.linkname!r} points "
                         "outside the target folder; refusing to extract it")


def _check_tar(path: Path, target: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    for member in members:
        _resolve_inside(target, member.name, path)
        if member.issym() or member.islnk():
            _check_link(target, member, path)
        elif not (member.isfile() or member.isdir()):
            raise BplabError(f"archive {path}: member {member.name!r} is a device or FIFO; "
                             "refusing to extract it")
    return members


def _check_zip(path: Path, target: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    for member in members:
        _resolve_inside(target, member.filename, path)
        # the high 16 bits of external_attr hold the Unix mode; 0o120000 marks a symlink
        if (member.external_attr >> 16) & 0o170000 == 0o120000:
            raise BplabError(f"archive {path}: member {member.filename!r} is a symlink; "
                             "refusing to extract it")
    return members


def extract_archive(path: str | Path, target: str | Path) -> Path:
    """Extract a .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz or .zip archive into `target`, safely.

    All members are checked first (see the module docstring); if any is unsafe a BplabError names
    it and nothing is extracted. Returns the target folder.
    """
    path = Path(path)
    target = Path(target)
    if not path.is_file():
        raise BplabError(f"archive {path} not found")
    try:
        if zipfile.is_zipfile(path):
            members = _check_zip(path, target)
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as archive:
                for member in members:
                    destination = _resolve_inside(target, member.filename, path)
                    if member.is_dir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(destination, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        elif tarfile.is_tarfile(path):
            members = _check_tar(path, target)
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(path) as tar:
                for member in members:
                    # the checks above already ran; the data filter (Python 3.12+) checks again
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, target, filter="data")
                    else:
                        tar.extract(member, target)
        else:
            raise BplabError(f"archive {path} is neither a tar nor a zip file")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        # tarfile's FilterError (Python 3.12+) is a TarError too; the checks above catch those first
        raise BplabError(f"archive {path} is corrupt, truncated or unsafe: {exc}") from None
    log.info("extracted %s into %s", path, target)
    return target


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Return whether `path` resolves to a location inside `folder`."""
    return os.path.commonpath([Path(path).resolve(), Path(folder).resolve()]) == str(
        Path(folder).resolve())
