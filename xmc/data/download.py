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

import errno
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


DEFAULT_MAX_EXTRACTED_GB = 100  # generous: EURLEX57K unpacks to 0.3 GB, Amazon-670K's text to 3 GB


def fetch(source: str, dest, sha256: str | None = None, max_extracted_gb: float | None = DEFAULT_MAX_EXTRACTED_GB,
          cap_key: str = "max_extracted_gb") -> Path:
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
    max_extracted_gb : float, optional
        Most an archive may unpack to (GB; None: no cap); ``cap_key`` is the config key that sets
        it, named in the message when an archive goes past it.

    Raises
    ------
    ValueError
        Unsupported or missing source, missing/mismatching checksum, corrupt archive, an
        archive member that would land outside ``dest`` or is a link, an archive that unpacks
        past the cap, a full disk; in a source folder, a link leaving it, a link loop, a dangling
        link or a special file (FIFO, device, socket).
    """
    dest = Path(dest)
    max_bytes = None if max_extracted_gb is None else int(float(max_extracted_gb) * 1e9)
    cap = dict(max_bytes=max_bytes, cap_key=cap_key)
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
        sha256 = sha256.lower()
    source = str(source)
    parsed = urllib.parse.urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_url(source, dest, sha256, name=PurePosixPath(parsed.path).name, **cap)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {source!r} must be absolute (file:///path), "
                             f"got host {parsed.netloc!r}")
        local = Path(urllib.request.url2pathname(parsed.path))
        if local.is_file():
            # Through urllib like an http download, so file URLs exercise the same code path.
            return _fetch_url(source, dest, sha256, name=local.name, **cap)
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
        try:
            with atomic_path(dest, is_dir=True) as tmp:
                _copy_folder(local, tmp, source)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ValueError(f"{source}: no space left on device while copying into {dest}; free some "
                                 "disk space or move results/ to a larger disk") from None
            raise
        return dest
    if not local.is_file():
        raise ValueError(f"source {source!r} does not exist (expected an archive, a folder or a URL)")
    if sha256 is not None:
        _check_digest(local, sha256, source)
    _extract(local, dest, name=local.name, label=str(local), **cap)
    return dest


def _copy_folder(src: Path, dst: Path, label: str) -> None:
    """Copy the folder ``src`` into ``dst``: regular files and folders; a link is followed only
    while its target stays inside ``src`` (a link out of it would ship outside data, e.g. into a
    bundle's vocabulary), and link loops, dangling links and special files are refused by name."""
    root = src.resolve()

    def visit(folder: Path, out: Path, chain: tuple) -> None:
        out.mkdir(exist_ok=True)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            shown = path.relative_to(src).as_posix()
            if entry.is_symlink():
                try:
                    real = Path(os.path.realpath(path, strict=True))
                except OSError as e:
                    what = "a link loop" if e.errno == errno.ELOOP else f"a dangling link (to {os.readlink(path)!r})"
                    raise ValueError(f"source folder {label}: {shown} is {what}; remove it or replace "
                                     "it with the file itself") from None
                if real != root and root not in real.parents:
                    raise ValueError(f"source folder {label}: {shown} is a link to {real}, outside the "
                                     "folder; copy the file into the folder instead") from None
            else:
                real = path.resolve()
            mode = os.stat(real).st_mode
            if stat.S_ISDIR(mode):
                if real in chain:
                    raise ValueError(f"source folder {label}: {shown} is a link loop (it points back "
                                     "to a folder that contains it)")
                visit(path, out / entry.name, chain + (real,))
            elif stat.S_ISREG(mode):
                shutil.copy2(real, out / entry.name)
            else:
                kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
                raise ValueError(f"source folder {label}: {shown} is {kind}, not a regular file")

    visit(src, dst, (root,))


def _fetch_url(url: str, dest: Path, sha256: str | None, name: str, max_bytes: int | None = None,
               cap_key: str = "max_extracted_gb") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _download(url, tmp)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ValueError(f"{url}: no space left on device while downloading into {dest.parent}; "
                                 "free some disk space or move results/ to a larger disk") from None
            raise
        if sha256 is not None:
            _check_digest(tmp, sha256, url)
        elif urllib.parse.urlparse(url).scheme.lower() in ("http", "https"):
            # Reproducibility: the user can pin exactly what was fetched this time.
            log.warning("%s was downloaded without a sha256 to check it against; its sha256 is %s: "
                        "add `sha256: %s` to the dataset's config to pin it", url, sha256_of(tmp), sha256_of(tmp))
        _extract(tmp, dest, name=name or url, label=url, max_bytes=max_bytes, cap_key=cap_key)
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


def _extract(archive: Path, dest: Path, name: str, label: str, max_bytes: int | None = None,
             cap_key: str = "max_extracted_gb") -> None:
    """Extract ``archive`` into ``dest``; ``name`` decides the format by suffix, ``label`` (the
    source as the user gave it) is what error messages name. At most ``max_bytes`` bytes are
    written (``cap_key``: the config key that sets the cap, named in the message)."""
    kind = _archive_kind(archive, name, label)
    budget = _Budget(label, max_bytes, cap_key)
    try:
        with atomic_path(dest, is_dir=True) as tmp:
            if kind == "zip":
                _extract_zip(archive, tmp, label, budget)
            else:
                _extract_tar(archive, tmp, label, budget)
    except ValueError:
        raise
    except _ARCHIVE_ERRORS as e:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise ValueError(f"{label}: no space left on device while extracting into {dest}"
                             f"{f' ({e.filename})' if getattr(e, 'filename', None) else ''}; free some "
                             "disk space or move results/ to a larger disk") from None
        if isinstance(e, OSError) and getattr(e, "filename", None):
            raise  # a file-system error on our side (permissions), not the archive's fault
        raise ValueError(f"{label}: corrupt or truncated {kind} archive ({type(e).__name__}: {e})") from e


class _Budget:
    """The bytes an extraction may still write: a small archive that expands to terabytes (an
    archive bomb) stops at the cap with one message instead of filling the disk."""

    def __init__(self, label: str, max_bytes: int | None, key: str):
        self.label, self.max_bytes, self.key, self.used = label, max_bytes, key, 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise ValueError(f"{self.label}: extracting it writes more than {_size(self.max_bytes)} "
                             f"(the cap set by {self.key}); raise {self.key} if the archive is "
                             "genuinely that large")


def _size(n: int) -> str:
    return f"{n / 1e9:g} GB" if n >= 10 ** 8 else f"{n:,} bytes"


def _inside(root: Path, path: Path, name: str, member: str) -> None:
    target = path.resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{name}: member {member!r} would be extracted outside the destination")


def _safe_member_path(root: Path, member: str, name: str) -> Path:
    """Where ``member`` lands under ``root``; ValueError if absolute or escaping ``root``."""
    if member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member):
        raise ValueError(f"{name}: member {member!r} has an absolute path")
    if "\0" in member:
        raise ValueError(f"{name}: member {member!r} has a NUL character in its name")
    target = root / member
    _inside(root, target, name, member)
    return target


def _write_member(src, root: Path, target: Path, name: str, member: str, budget: _Budget) -> None:
    """Copy the stream ``src`` to ``target`` (a new regular file, never through a link), counting
    its bytes against ``budget``; the real path is checked again once written."""
    _mkdirs(root, target.parent, name, member)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    if os.path.lexists(target) and not os.path.isfile(target) or os.path.islink(target):
        raise ValueError(f"{name}: member {member!r} would replace a folder or link of the same name")
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as f:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            budget.spend(len(chunk))
            f.write(chunk)
    _inside(root, Path(os.path.realpath(target)), name, member)


def _mkdirs(root: Path, folder: Path, name: str, member: str) -> None:
    """Create ``folder`` below ``root`` one level at a time, refusing any level that is a link."""
    rel = folder.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        if os.path.islink(current):
            raise ValueError(f"{name}: member {member!r} goes through a link; links are not unpacked")
        if not current.is_dir():
            current.mkdir()
    _inside(root, Path(os.path.realpath(folder)), name, member)


def _extract_zip(archive: Path, root: Path, name: str, budget: _Budget) -> None:
    root = root.resolve()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _safe_member_path(root, info.filename, name)
            if stat.S_ISLNK(info.external_attr >> 16):  # unpacked, it would be a file holding the link's path
                raise ValueError(f"{name}: member {info.filename!r} is a symbolic link; links are not unpacked")
        bad = zf.testzip()  # CRC check of every member: catches truncated/corrupted data
        if bad is not None:
            raise ValueError(f"{name}: corrupt zip archive (bad CRC in member {bad!r})")
        for info in infos:
            target = _safe_member_path(root, info.filename, name)
            if info.is_dir():
                _mkdirs(root, target, name, info.filename)
                continue
            with zf.open(info) as src:
                _write_member(src, root, target, name, info.filename, budget)


def _extract_tar(archive: Path, root: Path, name: str, budget: _Budget) -> None:
    """Regular files and folders only, written one by one by us (not ``extractall``): no link of
    any kind is ever created, so no later member can be written through one, whatever the Python
    version (the standard library's ``filter="data"`` exists only from 3.11.4 / 3.10.12)."""
    root = root.resolve()
    with tarfile.open(archive, mode="r:*") as tf:
        members = tf.getmembers()  # reads the whole stream: a truncated archive fails here
        for m in members:
            _safe_member_path(root, m.name, name)
            if m.issym() or m.islnk():
                kind = "symbolic" if m.issym() else "hard"
                raise ValueError(f"{name}: member {m.name!r} is a {kind} link (to {m.linkname!r}); "
                                 "links are not unpacked")
            if not (m.isfile() or m.isdir()):
                raise ValueError(f"{name}: member {m.name!r} is a device, fifo or other special file")
        folders = []
        for m in members:
            target = _safe_member_path(root, m.name, name)
            if m.isdir():
                _mkdirs(root, target, name, m.name)
                folders.append((target, m.mtime))
                continue
            src = tf.extractfile(m)
            with src:
                _write_member(src, root, target, name, m.name, budget)
            os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)  # as tarfile does: the
            # archive's times, which Snakemake compares with the archive's to decide a rerun
        for folder, mtime in reversed(folders):  # after their files, which would touch them
            os.utime(folder, (mtime, mtime), follow_symlinks=False)
