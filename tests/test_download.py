"""xmc.data.download: fetch from file:// URLs, local archives and folders; checksums; safety."""
from __future__ import annotations

import hashlib
import logging
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from xmc.data.download import fetch, sha256_of

FILES = {"ds/a.txt": b"alpha\n", "ds/sub/b.txt": os.urandom(4096), "ds/c.json": b'{"x": 1}'}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _no_leftovers(parent: Path) -> list[str]:
    """Temporary files/folders fetch may have left next to dest."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture
def archives(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return {"zip": _make_zip(src / "data.zip", FILES), "tar.gz": _make_tar(src / "data.tar.gz", FILES)}


def test_sha256_of_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    p.write_bytes(data)
    assert sha256_of(p) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_file_url_with_correct_sha256(archives, tmp_path, kind):
    archive = archives[kind]
    dest = tmp_path / "out" / "raw"
    got = fetch(archive.as_uri(), dest, sha256=sha256_of(archive).upper())  # case-insensitive
    assert got == dest
    assert _tree(dest) == FILES
    assert _no_leftovers(dest.parent) == []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_file_url_with_wrong_sha256(archives, tmp_path, kind):
    archive = archives[kind]
    dest = tmp_path / "out" / "raw"
    wrong = "0" * 64
    with pytest.raises(ValueError) as e:
        fetch(archive.as_uri(), dest, sha256=wrong)
    msg = str(e.value)
    assert wrong in msg and sha256_of(archive) in msg and archive.as_uri() in msg
    assert not dest.exists()
    assert _no_leftovers(dest.parent) == []


def test_file_url_without_sha256_is_allowed(archives, tmp_path):
    dest = fetch(archives["zip"].as_uri(), tmp_path / "raw")
    assert _tree(dest) == FILES


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63])
def test_malformed_sha256(archives, tmp_path, bad):
    with pytest.raises(ValueError, match="64 hexadecimal"):
        fetch(archives["zip"], tmp_path / "raw", sha256=bad)


def test_unsupported_scheme_and_missing_source(tmp_path):
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        fetch("ftp://example.org/x.zip", tmp_path / "raw", sha256="0" * 64)
    with pytest.raises(ValueError, match="does not exist"):
        fetch(str(tmp_path / "nope.tar.gz"), tmp_path / "raw")


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"),
                                         (".tar.xz", "w:xz")])
def test_local_tar_variants(tmp_path, suffix, mode):
    archive = _make_tar(tmp_path / f"data{suffix}", FILES, mode)
    dest = fetch(str(archive), tmp_path / "raw", sha256=sha256_of(archive))
    assert _tree(dest) == FILES


def test_unknown_suffix_is_sniffed(tmp_path):
    archive = _make_zip(tmp_path / "download", FILES)
    assert _tree(fetch(archive, tmp_path / "raw")) == FILES


def test_existing_dest_is_replaced(archives, tmp_path):
    dest = tmp_path / "raw"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "stale.txt").write_text("stale")
    fetch(archives["tar.gz"], dest)
    assert _tree(dest) == FILES


def test_local_folder_is_copied(tmp_path):
    src = tmp_path / "folder"
    for name, data in FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    dest = fetch(str(src), tmp_path / "out" / "raw")
    assert not dest.is_symlink() and _tree(dest) == FILES
    (src / "ds" / "a.txt").write_bytes(b"changed")  # a copy: later changes to the source do not leak
    assert (dest / "ds" / "a.txt").read_bytes() == b"alpha\n"
    # Also as a file:// URL; a checksum makes no sense for a folder.
    assert _tree(fetch(src.as_uri(), tmp_path / "raw2")) == _tree(src)
    with pytest.raises(ValueError, match="folder"):
        fetch(str(src), tmp_path / "raw3", sha256="0" * 64)


@pytest.mark.parametrize("name", ["junk.tar.gz", "junk.zip", "junk.tar.xz"])
def test_garbage_archive(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(ValueError, match=name):
        fetch(archive.as_uri(), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_truncated_archive(archives, tmp_path, kind):
    data = archives[kind].read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\." + kind.replace(".", r"\.")):
        fetch(str(cut), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert _no_leftovers(tmp_path) == []


@pytest.mark.parametrize("member", ["../evil.txt", "ds/../../evil.txt", "/tmp/evil-abs.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_members_escaping_dest_are_rejected(tmp_path, member, kind):
    files = {"ds/ok.txt": b"ok", member: b"evil"}
    archive = (_make_zip if kind == "zip" else _make_tar)(tmp_path / f"evil.{kind}", files)
    dest = tmp_path / "out" / "raw"
    with pytest.raises(ValueError, match="evil"):
        fetch(str(archive), dest)
    assert not dest.exists()
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_escaping_dest_is_rejected(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("ds/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tf.addfile(info)
    with pytest.raises(ValueError, match="'ds/link' is a symbolic link"):
        fetch(str(archive), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_http_download_from_local_server(archives, tmp_path, caplog):
    """The http path end to end, served from 127.0.0.1 (no outside network)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(archives["zip"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.tar.gz"
        dest = fetch(url, tmp_path / "raw", sha256=sha256_of(archives["tar.gz"]))
        assert _tree(dest) == FILES
        with pytest.raises(ValueError, match="sha256 mismatch"):
            fetch(url, tmp_path / "raw2", sha256="f" * 64)
        assert not (tmp_path / "raw2").exists()
        with pytest.raises(ValueError, match="cannot download"):
            fetch(url.replace("data.tar.gz", "missing.tar.gz"), tmp_path / "raw3", sha256="f" * 64)
        with caplog.at_level(logging.WARNING, logger="xmc.data.download"):
            dest = fetch(url, tmp_path / "raw4")  # unpinned: fetched, with the digest to pin
        assert _tree(dest) == FILES
        assert f"sha256: {sha256_of(archives['tar.gz'])}" in caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_local_source_files(tmp_path):
    from xmc.data.download import local_source_files

    (tmp_path / "ds" / "sub").mkdir(parents=True)
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        (tmp_path / "ds" / name).write_text("x")
    folder = str(tmp_path / "ds")
    want = [f"{folder}/a.txt", f"{folder}/b.txt", f"{folder}/sub/c.txt"]
    assert local_source_files(folder) == want
    assert local_source_files("file://" + folder) == want
    assert local_source_files(f"{folder}/a.txt") == [f"{folder}/a.txt"]
    assert local_source_files("https://example.org/x.tar.gz") == []
    assert local_source_files(str(tmp_path / "missing.zip")) == [str(tmp_path / "missing.zip")]  # Snakemake names it


def test_zip_members_that_are_symlinks_are_refused(tmp_path):
    import stat
    import zipfile

    from xmc.data.download import fetch

    archive = tmp_path / "ds.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ds/train_texts.txt", "a text\n")
        link = zipfile.ZipInfo("ds/test_texts.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../../etc/hostname")
    with pytest.raises(ValueError, match=r"'ds/test_texts\.txt' is a symbolic link"):
        fetch(str(archive), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-unpacked


# ---- untrusted archives: links, bombs, full disks ----------------------------------------------
def _link_tar(path: Path, links: list[tuple[str, str, bytes]], files: dict[str, bytes]) -> Path:
    """A tar holding the ``(name, target, type)`` links, then the files."""
    with tarfile.open(path, "w") as tf:
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_tar_symlink_chain_is_refused_before_anything_is_written(tmp_path):
    """``a -> .`` and ``a/b -> ..`` each point inside the folder, but together they reach its
    parent: no link is unpacked at all, whatever the Python version's tarfile filter does."""
    archive = _link_tar(tmp_path / "chain.tar", [("a", ".", tarfile.SYMTYPE), ("a/b", "..", tarfile.SYMTYPE)],
                        {"a/b/escaped.txt": b"evil"})
    dest = tmp_path / "out" / "raw"
    with pytest.raises(ValueError, match=r"chain\.tar: member 'a' is a symbolic link"):
        fetch(str(archive), dest)
    assert not dest.exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert _no_leftovers(tmp_path / "out") == []


def test_tar_long_symlink_chain_is_refused(tmp_path):
    """The path-length technique: a chain of links whose resolved path exceeds PATH_MAX."""
    step = "d" * 200
    links = []
    path = ""
    for i in range(20):
        links.append((f"{path}{step}", ".", tarfile.SYMTYPE))
        links.append((f"{path}l{i}", f"{step}/" * 1, tarfile.SYMTYPE))
        path += f"{step}/"
    links.append(("escape", "l0/" + "../" * 30, tarfile.SYMTYPE))
    archive = _link_tar(tmp_path / "long.tar", links, {"escape/owned.txt": b"evil"})
    with pytest.raises(ValueError, match=r"long\.tar: member '" + step + "' is a symbolic link"):
        fetch(str(archive), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and not list(tmp_path.rglob("owned.txt"))


def test_tar_hard_link_is_refused(tmp_path):
    archive = _link_tar(tmp_path / "hard.tar", [("ds/copy.txt", "ds/a.txt", tarfile.LNKTYPE)],
                        {"ds/a.txt": b"alpha"})
    with pytest.raises(ValueError, match=r"member 'ds/copy\.txt' is a hard link"):
        fetch(str(archive), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_bomb_stops_at_the_cap(tmp_path, kind):
    """5 MB of zeros compress to a few KB; a 1 MB cap stops the extraction with the archive, the
    cap and the key named, and leaves nothing behind."""
    files = {"ds/a.txt": b"alpha\n", "ds/zeros.bin": bytes(5_000_000)}
    archive = (_make_zip if kind == "zip" else _make_tar)(tmp_path / f"bomb.{kind}", files)
    assert archive.stat().st_size < 50_000
    dest = tmp_path / "out" / "raw"
    with pytest.raises(ValueError) as e:
        fetch(str(archive), dest, max_extracted_gb=0.001, cap_key="datasets.bomb.max_extracted_gb")
    msg = str(e.value)
    assert f"bomb.{kind}" in msg and "1,000,000 bytes" in msg and "datasets.bomb.max_extracted_gb" in msg
    assert not dest.exists() and _no_leftovers(dest.parent) == []
    # Under a cap it is large enough for, the same archive unpacks whole.
    assert _tree(fetch(str(archive), dest, max_extracted_gb=0.01)) == files


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_full_disk_says_no_space_left(archives, tmp_path, monkeypatch, kind):
    """Every file written under dest goes to /dev/full, whose writes fail with ENOSPC as on a full
    disk: the message says so, with the path, instead of blaming the archive."""
    real_open = os.open
    dest = tmp_path / "raw"

    def full_open(path, flags, mode=0o777, **kw):
        if str(path).startswith(str(tmp_path)) and flags & os.O_WRONLY:
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(ValueError) as e:
        fetch(str(archives[kind]), dest)
    msg = str(e.value)
    assert "no space left on device" in msg and str(dest) in msg and "corrupt" not in msg
    monkeypatch.undo()
    assert not dest.exists() and _no_leftovers(tmp_path) == []


def test_full_disk_while_copying_a_source_folder(tmp_path, monkeypatch):
    src = tmp_path / "folder"
    (src / "ds").mkdir(parents=True)
    (src / "ds" / "a.txt").write_text("alpha\n")
    dest = tmp_path / "out" / "raw"

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(dest / "ds" / "a.txt"))

    monkeypatch.setattr("shutil.copy2", full)
    with pytest.raises(ValueError, match=r"no space left on device while copying into .*out/raw"):
        fetch(str(src), dest)
    assert not dest.exists()


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "folder"
    (src / "ds").mkdir(parents=True)
    (src / "ds" / "a.txt").write_text("alpha\n")
    return src


def test_source_folder_link_inside_is_copied_as_a_file(tmp_path):
    src = _folder(tmp_path)
    os.symlink("a.txt", src / "ds" / "b.txt")
    dest = fetch(str(src), tmp_path / "raw")
    assert _tree(dest) == {"ds/a.txt": b"alpha\n", "ds/b.txt": b"alpha\n"}
    assert not (dest / "ds" / "b.txt").is_symlink()


@pytest.mark.parametrize("case", ["outside", "loop", "self_loop", "dangling", "fifo"])
def test_source_folder_refuses_links_out_loops_dangling_and_fifos(tmp_path, case):
    src = _folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    bad = src / "ds" / "bad"
    if case == "outside":
        os.symlink(secret, bad)
        want = r"ds/bad is a link to .*secret\.txt, outside the folder"
    elif case == "loop":
        os.symlink("..", bad)
        want = r"ds/bad is a link loop"
    elif case == "self_loop":
        os.symlink("bad", bad)
        want = r"ds/bad is a link loop"
    elif case == "dangling":
        os.symlink("missing.txt", bad)
        want = r"ds/bad is a dangling link \(to 'missing\.txt'\)"
    else:
        os.mkfifo(bad)
        want = r"ds/bad is a FIFO"
    with pytest.raises(ValueError, match=want):
        fetch(str(src), tmp_path / "out" / "raw")
    assert not (tmp_path / "out" / "raw").exists()
    assert _no_leftovers(tmp_path / "out") == []


def test_tar_member_times_are_kept(tmp_path):
    """As tarfile's extractall: Snakemake compares the unpacked files' times with the archive's."""
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tf:
        folder = tarfile.TarInfo("ds")
        folder.type, folder.mtime = tarfile.DIRTYPE, 1_000_000_000
        tf.addfile(folder)
        info = tarfile.TarInfo("ds/a.txt")
        info.size, info.mtime = 5, 1_100_000_000
        tf.addfile(info, io.BytesIO(b"alpha"))
    dest = fetch(str(archive), tmp_path / "raw")
    assert (dest / "ds" / "a.txt").stat().st_mtime == 1_100_000_000
    assert (dest / "ds").stat().st_mtime == 1_000_000_000
