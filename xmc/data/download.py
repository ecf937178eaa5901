"""Fetch a dataset: download (or take a local file), verify its sha256, extract it atomically.

``fetch(source, dest, sha256)`` accepts
- an ``http(s)://`` URL of an archive (checked against a sha256 when given; without one the
  download goes ahead with a warning that prints its digest, so that it can be pinned in the config),
- a ``file://`` URL or a local path of an archive (sha256 optional, checked when given),
- a ``file://`` URL or a local path of a folder, which is copied.

Archives: .zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz (an unknown suffix is sniffed).
``dest`` appears only when everything succeeded (``xmc.io.atomic_path``); an existing ``dest`` is
replaced.
"""
from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from xmc.io import atomic_path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Errors the archive libraries raise on corrupt or truncated input (gzip and bz2 raise OSError).
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def sha256_of(path) -> str:
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def local_source_files(source: str) -> list[str]:
    """The local files a dataset source reads: none for an http(s) URL, the archive for a local
    archive, and every file below a local folder (a file rewritten in place inside the folder does
    not change the folder's own timestamp, so the workflow lists the files as the download's inputs
    to rerun on it). ``file://`` URLs count as local paths."""
    source = str(source)
    if re.match(r"^https?://", source):
        return []
    if source.startswith("file://"):
        source = urllib.parse.unquote(urllib.parse.urlparse(source).path)
    if not os.path.isdir(source):
        return [source]
    files = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        files.extend(os.path.join(folder, name) for name in sorted(names))
    return files


def fetch(source: str, dest, sha256: str | None = None) -> Path:
    """Make ``dest`` a folder holding the extracted contents of ``source``; return ``dest``.

    Parameters
    ----------
    source : str
        http/https/file URL or local path of an archive, or local path / file URL of a folder.
    dest : path
        Folder to create (replaced if it exists).
    sha256 : str, optional
        Expected hex digest of the archive. Without it an http/https download is not verified:
        a warning gives the digest of what was downloaded.

    Raises
    ------
    ValueError
        Unsupported or missing source, missing/mismatching checksum, corrupt archive, or an
        archive member that would land outside ``dest``.
    """
    dest = Path(dest)
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
        sha256 = sha256.lower()
    source = str(source)
    parsed = urllib.parse.urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_url(source, dest, sha256, name=PurePosixPath(parsed.path).name)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {source!r} must be absolute (file:///path), "
                             f"got host {parsed.netloc!r}")
        local = Path(urllib.request.url2pathname(parsed.path))
        if local.is_file():
            # Through urllib like an http download, so file URLs exercise the same code path.
            return _fetch_url(source, dest, sha256, name=local.name)
    elif "://" in source:
        raise ValueError(f"unsupported source scheme {scheme!r} in {source!r}; "
                         "expected http, https, file or a path")
    else:
        local = Path(source)

    if local.is_dir():
        if sha256 is not None:
            raise ValueError(f"sha256 applies to archives, but source {source!r} is a folder")
        if dest.resolve() == local.resolve() or local.resolve() in dest.resolve().parents:
            raise ValueError(f"dest {dest} must not be the source folder {local} or inside it")
        # A copy rather than a symlink: the result stays valid if the source moves or changes,
        # and workflow outputs never write through to a user's original data.
        with atomic_path(dest, is_dir=True) as tmp:
            shutil.copytree(local, tmp, symlinks=False, dirs_exist_ok=True)
        return dest
    if not local.is_file():
        raise ValueError(f"source {source!r} does not exist (expected an archive, a folder or a URL)")
    if sha256 is not None:
        _check_digest(local, sha256, source)
    _extract(local, dest, name=local.name, label=str(local))
    return dest


def _fetch_url(url: str, dest: Path, sha256: str | None, name: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(url, tmp)
        if sha256 is not None:
            _check_digest(tmp, sha256, url)
        elif urllib.parse.urlparse(url).scheme.lower() in ("http", "https"):
            # Reproducibility: the user can pin exactly what was fetched this time.
            log.warning("%s was downloaded without a sha256 to check it against; its sha256 is %s: "
                        "add `sha256: %s` to the dataset's config to pin it", url, sha256_of(tmp), sha256_of(tmp))
        _extract(tmp, dest, name=name or url, label=url)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, path: Path) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except OSError as e:
        raise ValueError(f"cannot download {url!r}: {e}") from e
    with response, open(path, "wb") as f:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  desc=f"download {PurePosixPath(urllib.parse.urlparse(url).path).name}",
                  mininterval=1.0) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                f.write(chunk)
                bar.update(len(chunk))


def _check_digest(path: Path, expected: str, source: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"sha256 mismatch for {source!r}: expected {expected}, got {actual}")


def _archive_kind(path: Path, name: str, label: str) -> str:
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    # Unknown suffix (e.g. a URL without one): sniff the content.
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except _ARCHIVE_ERRORS:
        pass
    raise ValueError(f"{label}: not a supported archive (expected .zip, {', '.join(_TAR_SUFFIXES)})")


def _extract(archive: Path, dest: Path, name: str, label: str) -> None:
    """Extract ``archive`` into ``dest``; ``name`` decides the format by suffix, ``label`` (the
    source as the user gave it) is what error messages name."""
    kind = _archive_kind(archive, name, label)
    try:
        with atomic_path(dest, is_dir=True) as tmp:
            if kind == "zip":
                _extract_zip(archive, tmp, label)
            else:
                _extract_tar(archive, tmp, label)
    except ValueError:
        raise
    except _ARCHIVE_ERRORS as e:
        if isinstance(e, OSError) and getattr(e, "filename", None):
            raise  # a file-system error on our side (permissions, disk full), not the archive's fault
        raise ValueError(f"{label}: corrupt or truncated {kind} archive ({type(e).__name__}: {e})") from e


def _inside(root: Path, path: Path, name: str, member: str) -> None:
    target = path.resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{name}: member {member!r} would be extracted outside the destination")


def _safe_member_path(root: Path, member: str, name: str) -> Path:
    """Where ``member`` lands under ``root``; ValueError if absolute or escaping ``root``."""
    if member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member):
        raise ValueError(f"{name}: member {member!r} has an absolute path")
    target = root / member
    _inside(root, target, name, member)
    return target


def _extract_zip(archive: Path, root: Path, name: str) -> None:
    root = root.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _safe_member_path(root, info.filename, name)
            if stat.S_ISLNK(info.external_attr >> 16):  # unpacked, it would be a file holding the link's path
                raise ValueError(f"{name}: member {info.filename!r} is a symbolic link; links are not unpacked")
        bad = zf.testzip()  # CRC check of every member: catches truncated/corrupted data
        if bad is not None:
            raise ValueError(f"{name}: corrupt zip archive (bad CRC in member {bad!r})")
        zf.extractall(root)


def _extract_tar(archive: Path, root: Path, name: str) -> None:
    root = root.resolve()
    with tarfile.open(archive, mode="r:*") as tf:
        members = tf.getmembers()  # reads the whole stream: a truncated archive fails here
        for m in members:
            target = _safe_member_path(root, m.name, name)
            if m.issym() or m.islnk():
                if os.path.isabs(m.linkname):
                    raise ValueError(f"{name}: link {m.name!r} points to absolute path {m.linkname!r}")
                # Symlinks resolve from their own folder, hard links from the archive root.
                _inside(root, (target.parent if m.issym() else root) / m.linkname, name, m.name)
            elif not (m.isfile() or m.isdir()):
                raise ValueError(f"{name}: member {m.name!r} is a device, fifo or other special file")
        # The "data" filter (Python >= 3.11.4) adds the standard-library checks on top of ours.
        if hasattr(tarfile, "data_filter"):
            tf.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - older Pythons
            tf.extractall(root, members=members)
