"""The one download helper for datasets and weights: mirrors, checksums, an atomic cache.

``fetch`` returns a cached file when it is present and verified. Otherwise it tries each mirror
in order, streams the response into a temporary file in the target folder, checks the checksum
and renames the file into place, so the cache never contains a partial or unverified file. When
every mirror fails (for example offline) it raises one BplabError that names the file, the
absolute path to put it at, and the URLs to get it from.

``DATASETS`` lists the files of each downloadable dataset, and ``ensure_dataset(name)`` fetches
the ones that are missing. Other modules add their own specs and call ``fetch`` directly.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from bplab.errors import BplabError, unknown_name_error

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "BPLAB_DATA_DIR"
CACHE_DIR_ENV = "BPLAB_CACHE_DIR"
TIMEOUT_S = 30.0  # seconds without progress before a mirror counts as failed
CHUNK_SIZE = 1 << 16


def cache_dir() -> Path:
    """Return the dataset folder: ``$BPLAB_DATA_DIR`` if set, else the user cache dir ``bplab``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_cache_dir("bplab")).absolute()


def writable_cache_dir() -> Path:
    """Return a writable folder for derived files such as decoded arrays.

    ``$BPLAB_CACHE_DIR`` if set, else ``cache_dir()`` if it can be written to, else the user cache
    dir ``bplab``. The fallback matters where ``BPLAB_DATA_DIR`` points at read-only data.
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        path = Path(env).expanduser().absolute()
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = cache_dir()
    if _is_writable(path):
        return path
    import platformdirs

    path = Path(platformdirs.user_cache_dir("bplab")).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_writable(path: Path) -> bool:
    """Return whether files can be created in ``path`` and its mode bits allow writing.

    The mode bits are checked too because root can write into a folder marked read-only
    (mode 0555), and such a folder is meant to stay unchanged.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.stat().st_mode & 0o222:
            return False
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def make_readable(path: Path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the usual mode, 0666 minus umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# ----------------------------------------------------------------------------- checksums


@dataclass(frozen=True)
class Checksums:
    """Expected digests of a file (hex strings); the file is verified when any one matches.

    ``gunzipped_*`` digests are of the file's gzip-decompressed content, which stays the same when
    a mirror recompresses the data with a different gzip header or level.
    """

    sha256: str | None = None
    md5: str | None = None
    gunzipped_sha256: str | None = None
    gunzipped_md5: str | None = None

    def is_empty(self) -> bool:
        """Return whether no digest is given."""
        return not (self.sha256 or self.md5 or self.gunzipped_sha256 or self.gunzipped_md5)


def verify_file(path: Path, checksums: Checksums) -> tuple[bool, str]:
    """Check a file against its expected digests.

    Returns
    -------
    (ok, detail)
        ``ok`` is true when any given digest matches; ``detail`` names the digest that matched,
        or lists the expected and actual values when none did.
    """
    mismatches = []
    file_digests = _digests(path, gunzip=False)
    for kind in ("sha256", "md5"):
        expected = getattr(checksums, kind)
        if expected:
            if file_digests[kind] == expected.lower():
                return True, kind
            mismatches.append(f"{kind} {file_digests[kind]} != expected {expected}")

    if checksums.gunzipped_sha256 or checksums.gunzipped_md5:
        try:
            content_digests = _digests(path, gunzip=True)
        except (OSError, EOFError, zlib.error) as exc:
            mismatches.append(f"not a valid gzip file ({exc})")
        else:
            for kind in ("sha256", "md5"):
                expected = getattr(checksums, f"gunzipped_{kind}")
                if expected:
                    if content_digests[kind] == expected.lower():
                        return True, f"gunzipped {kind}"
                    mismatches.append(
                        f"gunzipped {kind} {content_digests[kind]} != expected {expected}"
                    )
    return False, "; ".join(mismatches)


def _digests(path: Path, gunzip: bool) -> dict[str, str]:
    """Return the hex SHA-256 and MD5 of a file's bytes, or of its gzip-decompressed bytes."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as file:
        while chunk := file.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


# ----------------------------------------------------------------------------- fetch


class DownloadError(BplabError):
    """Raised when no mirror delivered a verified copy of a file."""

    def __init__(self, filename: str, target: Path, urls: list[str], reasons: list[str],
                 unreachable: bool = False):
        self.filename = filename
        self.target = target
        self.urls = list(urls)
        self.reasons = list(reasons)
        self.unreachable = unreachable  # no mirror accepted a connection (e.g. offline)
        tried = "; ".join(f"{url}: {reason}" for url, reason in zip(urls, reasons, strict=True))
        super().__init__(
            f"could not download {filename} ({tried or 'no URLs given'}); "
            f"download it by hand from one of those URLs and save it as {target}"
        )


def fetch(
    filename: str,
    urls: list[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    gunzipped_sha256: str | None = None,
    gunzipped_md5: str | None = None,
    subdir: str = "",
    progress: bool = True,
    root: str | Path | None = None,
) -> Path:
    """Return a verified local copy of a file, downloading it from the first mirror that works.

    Parameters
    ----------
    filename : str
        The name to store the file under.
    urls : list of str
        Mirrors, tried in order.
    sha256, md5 : str, optional
        Expected digests of the file's bytes.
    gunzipped_sha256, gunzipped_md5 : str, optional
        Expected digests of the file's gzip-decompressed content. The file is accepted when any
        one of the given digests matches; with none given, any complete download is accepted.
    subdir : str
        Folder under the cache root to store the file in, e.g. ``"mnist"``.
    progress : bool
        Show a tqdm progress bar (only when stderr is a terminal).
    root : str or Path, optional
        The cache root; defaults to ``cache_dir()``.

    Returns
    -------
    Path
        The absolute path of the verified file, ``<root>/<subdir>/<filename>``.

    Raises
    ------
    DownloadError
        If no mirror delivered a complete file with a matching digest. A cached file that fails
        verification is left in place (it may be the user's) and reported in the message.
    """
    checksums = Checksums(sha256, md5, gunzipped_sha256, gunzipped_md5)
    folder = (Path(root).expanduser().absolute() if root else cache_dir()) / subdir
    target = folder / filename

    if target.exists():
        if checksums.is_empty():
            return target
        ok, detail = verify_file(target, checksums)
        if ok:
            logger.debug("%s: verified (%s)", target, detail)
            return target
        # A present file may be the user's own copy, so it is reported, not replaced.
        raise BplabError(
            f"{target}: checksum mismatch ({detail}); delete or replace it with a good copy "
            f"from {urls[0] if urls else 'the original source'}"
        )

    _require_writable(folder)
    reasons = []
    unreachable = True
    for index, url in enumerate(urls):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _download_verified(url, target, checksums, progress)
        except _MirrorFailed as exc:
            reasons.append(str(exc))
            unreachable = unreachable and exc.unreachable
            if index + 1 < len(urls):
                logger.warning("%s: %s; trying the next mirror", url, exc)
            continue
        except OSError as exc:
            # The cache folder itself cannot be written: no other mirror would help.
            raise BplabError(
                f"cannot write to {folder}: {exc.strerror or exc}; "
                f"set {DATA_DIR_ENV} to a writable folder"
            ) from None
        logger.info("downloaded %s from %s", target, url)
        return target
    raise DownloadError(filename, target, urls, reasons, unreachable=bool(urls) and unreachable)


def _require_writable(folder: Path) -> None:
    """Raise unless ``folder``, or the nearest folder above it that exists, may be written to.

    Mode bits are checked (not only access rights) so that a read-only data folder stays
    unchanged even for root.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not (existing.is_dir() and existing.stat().st_mode & 0o222 and os.access(existing, os.W_OK)):
        raise BplabError(
            f"cannot download into {folder}: {existing} is read-only; set {DATA_DIR_ENV} "
            f"to a writable folder"
        )


class _MirrorFailed(Exception):
    """One mirror did not deliver a complete, verified file (the next one is tried)."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable  # the connection itself failed


def _download_verified(url: str, target: Path, checksums: Checksums, progress: bool) -> None:
    """Stream ``url`` into a temporary file next to ``target``, verify it, and rename it."""
    # The temporary file lives in the target's folder, so os.replace is an atomic rename.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, target.name, progress)
        if not checksums.is_empty():
            ok, detail = verify_file(tmp, checksums)
            if not ok:
                raise _MirrorFailed(f"checksum mismatch ({detail})")
        make_readable(tmp)
        os.replace(tmp, target)
    finally:
        # Runs on success too (then tmp no longer exists) and on KeyboardInterrupt.
        tmp.unlink(missing_ok=True)


def _stream(url: str, out, name: str, progress: bool) -> None:
    """Copy the response body of ``url`` into ``out``, failing on a short or broken transfer."""
    import http.client

    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "bplab"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                      disable=None if progress else True, leave=False) as bar:
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorFailed(f"cannot connect ({exc.reason})", unreachable=True) from None
    except http.client.IncompleteRead as exc:
        raise _MirrorFailed(
            f"transfer interrupted after {len(exc.partial) + received} of {total} bytes"
        ) from None
    except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise _MirrorFailed(f"transfer failed ({type(exc).__name__}: {exc})") from None
    if total is not None and received != total:
        raise _MirrorFailed(f"transfer interrupted after {received} of {total} bytes")


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: its name in the cache, its mirrors and its expected digests."""

    filename: str
    urls: tuple[str, ...]
    checksums: Checksums

    @property
    def raw_name(self) -> str | None:
        """The name of the decompressed copy a user may have instead, e.g. without ``.gz``."""
        return self.filename[:-3] if self.filename.endswith(".gz") else None


def _idx_specs(bases: list[str], digests: dict[str, tuple[str, str, str]]) -> list[FileSpec]:
    """Build the specs of the four IDX files from mirror base URLs and per-file digests."""
    specs = []
    for filename, (gz_md5, raw_sha256, raw_md5) in digests.items():
        checksums = Checksums(md5=gz_md5, gunzipped_sha256=raw_sha256, gunzipped_md5=raw_md5)
        specs.append(FileSpec(filename, tuple(base + filename for base in bases), checksums))
    return specs


# Each file is accepted when either its .gz MD5 equals the one its publisher lists, or its
# decompressed content matches (SHA-256 or MD5). Copies that were recompressed with another gzip
# header or level, such as those in Debian's dataset packages, carry the same data but a different
# .gz MD5, so only the content digests can verify them.
#
# MNIST: the .gz MD5s are those that torchvision's MNIST class lists for these mirrors. The MD5s
# of the decompressed files are the published checksums of the original uncompressed IDX files.
# The SHA-256s were computed from decompressed files whose MD5s matched those.
MNIST_DIGESTS = {
    # filename: (.gz MD5, decompressed SHA-256, decompressed MD5)
    "train-images-idx3-ubyte.gz": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    "train-labels-idx1-ubyte.gz": (
        "d53e105ee54ea40749a09fcbcd1e9432",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "a25bea736e30d166cdddb491f175f624",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "9fb629c4189551a2d022fa330f9573f3",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "2646ac647ad5339dbf082846283269ea",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ec29112dd5afa0611ce80d1b7f02629c",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "27ae3e4e09519cfbb04c329615203637",
    ),
}
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# Fashion-MNIST: the .gz MD5s are the ones in Zalando Research's fashion-mnist README, which
# publishes no digests of the decompressed files. The content digests below were computed from
# the copies in Debian's dataset-fashion-mnist package (recompressed, same data), which contain
# exactly 6,000 training and 1,000 test images per class.
# NOTE: these content digests have not been checked against Zalando's own .gz files. A download
# from the mirrors below is verified by the published .gz MD5 instead.
FASHION_MNIST_DIGESTS = {
    "train-images-idx3-ubyte.gz": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ),
    "train-labels-idx1-ubyte.gz": (
        "25c81989df183df01b3e8a0aad5dffbe",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "9018921c3c673c538a1fc5bad174d6f9",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "bef4ecab320f06d8554ea6380940ec79",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "8181f5470baa50b63fa0f6fddb340f0a",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "bb300cfdad3c16e7a12a480ee83cd310",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
}
FASHION_MNIST_MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
]

DATASETS: dict[str, list[FileSpec]] = {
    "mnist": _idx_specs(MNIST_MIRRORS, MNIST_DIGESTS),
    "fashion-mnist": _idx_specs(FASHION_MNIST_MIRRORS, FASHION_MNIST_DIGESTS),
}


def dataset_specs(name: str) -> list[FileSpec]:
    """Return the file specs of a dataset in ``DATASETS``, or raise listing the known names."""
    if name not in DATASETS:
        raise unknown_name_error("dataset", name, DATASETS)
    return DATASETS[name]


def find_local_copy(spec: FileSpec, folder: Path) -> Path | None:
    """Return the file for ``spec`` in ``folder``: the named file, else its decompressed copy."""
    for name in (spec.filename, spec.raw_name):
        if name and (folder / name).is_file():
            return folder / name
    return None


def verify_local_copy(spec: FileSpec, path: Path) -> tuple[bool, str]:
    """Verify a local file against its spec; a decompressed copy is checked by content digests."""
    if path.name == spec.filename:
        return verify_file(path, spec.checksums)
    content = Checksums(sha256=spec.checksums.gunzipped_sha256, md5=spec.checksums.gunzipped_md5)
    return verify_file(path, content)


def ensure_dataset(name: str, root: str | Path | None = None, progress: bool = True) -> Path:
    """Return the folder holding all files of a dataset, downloading the missing ones.

    Parameters
    ----------
    name : str
        A key of ``DATASETS``: ``"mnist"`` or ``"fashion-mnist"``.
    root : str or Path, optional
        The data root; defaults to ``cache_dir()``. The files go in ``<root>/<name>/``.

    Returns
    -------
    Path
        The absolute path of ``<root>/<name>``.

    Raises
    ------
    BplabError
        One message for all files that could not be downloaded, naming each file, the folder
        to put it in and the mirrors. A present file that fails verification also raises.
    """
    specs = dataset_specs(name)
    folder = (Path(root).expanduser().absolute() if root else cache_dir()) / name
    failures: list[DownloadError] = []
    skipped: list[str] = []  # not tried because the mirrors were unreachable
    for spec in specs:
        local = find_local_copy(spec, folder)
        if local is not None:
            ok, detail = verify_local_copy(spec, local)
            if not ok:
                raise BplabError(
                    f"{local}: checksum mismatch ({detail}); delete it or replace it with a good "
                    f"copy from {spec.urls[0]}"
                )
            continue
        if failures and failures[0].unreachable:
            # No mirror could even be reached, so the other files would fail the same way
            # (after a timeout each, when the network drops packets).
            skipped.append(spec.filename)
            continue
        try:
            fetch(spec.filename, list(spec.urls), md5=spec.checksums.md5,
                  gunzipped_sha256=spec.checksums.gunzipped_sha256,
                  gunzipped_md5=spec.checksums.gunzipped_md5,
                  root=folder.parent, subdir=name, progress=progress)
        except DownloadError as exc:
            failures.append(exc)

    if failures:
        missing = ", ".join([exc.filename for exc in failures] + skipped)
        mirrors = dict.fromkeys(
            url.removesuffix(exc.filename) for exc in failures for url in exc.urls
        )
        first = failures[0]
        tried = "; ".join(
            f"{url}: {reason}" for url, reason in zip(first.urls, first.reasons, strict=True)
        )
        raise BplabError(
            f"could not download {name}: no mirror delivered {first.filename} ({tried}). "
            f"Download {missing} by hand from one of {', '.join(mirrors)} and put them in "
            f"{folder}/, or set {DATA_DIR_ENV} to a folder whose {name}/ subfolder contains them"
        )
    return folder
