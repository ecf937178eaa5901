"""Self-contained model bundles: export a trained model or ensemble, load it, tag new texts.

A bundle is a folder holding everything prediction needs, and nothing outside it:

model bundle (one ``indexer.matcher.input.negatives.combine`` model)::

    manifest.json          format + version, library versions, model settings, config, metrics,
                           files and each file's sha256 (checked on load)
    label_names.txt        one label name per line, row order = column of the score matrix
    label_text.txt         each label's text (EUROVOC descriptor, ...), same order
    tfidf/vectorizer.npz   the fitted TF-IDF vectorizer (phi_tfidf) as data: options, vocabulary, idf
    indexer/C.npz          CSR (L, K) 0/1 cluster assignment
    matcher/               transformer matcher folder (encoder + tokenizer + head.pt + matcher.json)
    matcher.npz            or: the linear matcher's weights (phi_tfidf + linear baseline)
    ranker/model.npz       ranker weights (L, D + 1) and settings
    knn/memory.npy         with a nearest-neighbour shortlist (``matcher.knn``): the training
    knn/clusters.npz       documents' fine-tuned embeddings (n, d) and their clusters M = YC (n, K)
    knn/pretrained.npy     with ``matcher.knn.pretrained_weight`` > 0 also their pretrained
    knn/encoder/           embeddings (phi_pre, (n, d')) and that encoder (weights as safetensors)

ensemble bundle::

    manifest.json, label_names.txt, label_text.txt
    members/<model>/       one model bundle per member

Bundles beside each other share identical files: a file whose sha256 equals one of a sibling
bundle's (the fine-tuned encoder of a model exported under two combine rules, the members of an
ensemble) is a hard link to it, not a copy (``share=False``: copies, or copy-on-write clones where
the file system makes them). Never links into ``results/``: editing a bundle cannot change the
workflow's data. The trade-off: an in-place edit of a shared file reaches every bundle sharing it,
and each of them then refuses to load (the file no longer matches its sha256) instead of predicting
differently; copying or shipping a bundle (``cp -r``, ``tar``) copies the bytes.

Prediction reuses the workflow's code paths (:func:`xmc.features.transform_tfidf`,
:class:`~xmc.matcher.transformer.TransformerMatcher`, :class:`~xmc.matcher.linear.LinearMatcher`,
:class:`~xmc.ranker.Ranker`, :func:`xmc.ensemble.ensemble`), so a loaded bundle reproduces the
workflow's ``predictions/{model}.npz`` for the same texts.

A bundle may come from someone else, so loading one runs no code from it: no pickle (the
vectorizer is rebuilt from data, :mod:`xmc.vectorizer_store`; torch files are read with
``weights_only``), every file must match the sha256 in the manifest, no file outside the manifest
is accepted, and an ensemble's member names must be plain folder names under ``members/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from xmc.io import atomic_path, load_csr, read_lines, save_csr
from xmc.vocabulary import RANKER_INPUTS

__all__ = ["FORMAT", "FORMAT_VERSION", "Bundle", "BundleError", "export_bundle", "export_ensemble", "load"]

FORMAT = "xmc-bundle"
FORMAT_VERSION = 3  # the newest this xmc reads and writes; each bundle records the oldest that reads it
KNN_FORMAT_VERSION = 3  # 3: the nearest-neighbour shortlist (knn/): a version-2 reader would ignore it
READABLE_VERSIONS = (2, 3)  # 2: vectorizer as data (no pickle), sha256 of every file
MANIFEST = "manifest.json"
LABELS = "label_names.txt"
LABEL_TEXTS = "label_text.txt"
VECTORIZER = "tfidf/vectorizer.npz"
LEGACY_VECTORIZER = "tfidf/vectorizer.pkl"  # format 1: a pickle, never loaded
REEXPORT = ("export it again with this version (the workflow's `export` rule, e.g. snakemake "
            "results/<dataset>/models/<model>, or xmc.bundle.export_bundle)")
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]*$")
ASSIGNMENT = "indexer/C.npz"
TRANSFORMER_DIR = "matcher"
LINEAR_FILE = "matcher.npz"
RANKER = "ranker/model.npz"
KNN_MEMORY = "knn/memory.npy"
KNN_CLUSTERS = "knn/clusters.npz"
KNN_PRETRAINED = "knn/pretrained.npy"
KNN_ENCODER = "knn/encoder"
# the pretrained encoder's files a bundle keeps: its config, safetensors weights and tokenizer (never a pickle)
ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                 "spiece.model")
MEMBERS = "members"


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or of another format version."""


# ---- export ---------------------------------------------------------------------------------
_FICLONE = 0x40049409  # Linux ioctl: a copy-on-write clone of a whole file


def _copy(src, dst) -> None:
    """A copy of ``src`` that shares nothing writable with it: a copy-on-write clone where the file
    system makes one (no extra disk until either side changes), else a plain copy."""
    try:
        import fcntl

        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        shutil.copystat(src, dst)
    except (ImportError, OSError):
        shutil.copy2(src, dst)


def _place(src, dst: Path) -> None:
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"export: {src} does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        # Snakemake marks its directory outputs with a timestamp file; it is not part of a bundle.
        shutil.copytree(src, dst, copy_function=_copy,
                        ignore=shutil.ignore_patterns(".snakemake_timestamp"))
    else:
        _copy(src, dst)


def _place_vectorizer(vectorizer, dst: Path) -> None:
    from xmc.vectorizer_store import load_vectorizer, save_vectorizer

    if isinstance(vectorizer, (str, Path)):
        src = Path(vectorizer)
        if not src.is_file():
            raise FileNotFoundError(f"export: {src} does not exist")
        if src.suffix == ".pkl":  # a caller's own file (older runs of the tfidf rule wrote pickles)
            with open(src, "rb") as f:
                vectorizer = pickle.load(f)
        else:
            load_vectorizer(src)  # checks that it is a stored vectorizer
            dst.parent.mkdir(parents=True, exist_ok=True)
            _copy(src, dst)  # the same bytes in every bundle of a run, so they can share one file
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_vectorizer(vectorizer, dst)


def _versions() -> dict:
    import sklearn
    import torch
    import transformers

    import xmc

    return {"xmc": xmc.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": __import__("scipy").__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__}


def _file_list(folder: Path) -> list[str]:
    # Snakemake's marker of a directory output is written after export: not part of the bundle.
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if (p.is_file() or p.is_symlink()) and p.name != ".snakemake_timestamp")
    return sorted(f for f in files if f != MANIFEST)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(folder: Path, manifest: dict, version: int = 2) -> dict:
    """Write manifest.json; returns the sha256 of each file (relative path -> hex digest).
    ``version``: the oldest format version whose readers predict with this bundle as written (a
    bundle without the newer parts stays readable by an older xmc)."""
    files = _file_list(folder)
    digests = {f: _sha256(folder / f) for f in files}
    manifest = {"format": FORMAT, "format_version": version, **manifest,
                "versions": _versions(), "files": files, "sha256": digests}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return digests


def _share_files(tmp: Path, dest: Path, digests: dict) -> int:
    """Replace each file of the bundle being written (``tmp``) by a hard link to an identical file
    (same sha256, checked again on the other file's bytes) of a bundle beside ``dest`` or earlier in
    this one: the fine-tuned encoder of a model is exported once per combine rule and once more in
    each ensemble holding it. Returns the bytes saved. A file system without hard links keeps the
    copies."""
    known: dict[str, Path] = {}
    for sibling in sorted(dest.parent.iterdir()) if dest.parent.is_dir() else []:
        if sibling.name.startswith(".") or not (sibling / MANIFEST).is_file():
            continue  # temporaries (this one too) and folders that are not bundles
        try:
            theirs = json.loads((sibling / MANIFEST).read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError):
            continue
        if isinstance(theirs, dict):
            for f, digest in theirs.items():
                known.setdefault(digest, sibling / f)
    saved, verified = 0, set()
    for f in sorted(digests):
        path, digest = tmp / f, digests[f]
        other = known.get(digest)
        if other is None:
            known[digest] = path
            continue
        try:
            if other not in verified:  # the other file may have been edited since its export
                if other.is_symlink() or other.stat().st_size != path.stat().st_size or _sha256(other) != digest:
                    known[digest] = path
                    continue
                verified.add(other)
            link = path.with_name(path.name + ".link.tmp")
            os.link(other, link)
            os.replace(link, path)
            saved += path.stat().st_size
        except OSError:  # no hard links here (another file system, FAT, ...): keep the copy
            known[digest] = path
    return saved


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _pretrained_settings(settings: dict) -> dict:
    """The manifest's ``knn_pretrained`` (how the training documents' phi_pre was computed), checked:
    max_length a positive integer, precision one of PREDICT_PRECISIONS."""
    from xmc.vocabulary import PREDICT_PRECISIONS

    if settings["precision"] not in PREDICT_PRECISIONS:
        raise ValueError(f"knn_pretrained precision: expected one of {PREDICT_PRECISIONS}, "
                         f"got {settings['precision']!r}")
    return {"max_length": _positive_int(settings["max_length"], "knn_pretrained max_length"),
            "precision": settings["precision"]}


def _knn_pretrained_files(knn: dict, knn_pretrained: dict | None, n_memory: int) -> list:
    """(source, bundle path) of the pretrained encoder and its memory a vote with pretrained_weight
    > 0 needs (none without), checked."""
    if not knn.get("pretrained_weight", 0):
        return []
    keys = {"encoder", "memory", "max_length", "precision"}
    if not isinstance(knn_pretrained, dict) or set(knn_pretrained) != keys:
        raise ValueError(f"knn: pretrained_weight > 0 needs knn_pretrained with the keys {sorted(keys)}, "
                         f"got {knn_pretrained!r}")
    _pretrained_settings(knn_pretrained)
    encoder, memory = Path(knn_pretrained["encoder"]), knn_pretrained["memory"]
    files = [(encoder / f, f"{KNN_ENCODER}/{f}") for f in ENCODER_FILES if (encoder / f).is_file()]
    if not {"config.json", "model.safetensors"} <= {Path(dst).name for _, dst in files}:
        raise ValueError(f"knn_pretrained encoder: {encoder} needs config.json and model.safetensors "
                         "(a bundle keeps no pickled weights)")
    shape = np.load(memory, mmap_mode="r", allow_pickle=False).shape
    if len(shape) != 2 or shape[0] != n_memory:
        raise ValueError(f"knn_pretrained memory: {memory} has shape {shape}; expected one row per training "
                         f"document ({n_memory})")
    return files + [(memory, KNN_PRETRAINED)]


def export_bundle(dest, *, name: str, vectorizer, assignment, matcher, ranker, label_names,
                  ranker_input: str, combine: str, top_b: int, top_k: int, max_length: int | None = None,
                  dataset: str | None = None, config: dict | None = None,
                  metrics: dict | None = None, label_texts=None, knn: dict | None = None,
                  knn_memory=None, knn_targets=None, knn_pretrained: dict | None = None,
                  share: bool = True) -> Path:
    """Write the bundle of one model to the folder ``dest`` (replaced if present; atomic).

    vectorizer : the fitted TF-IDF vectorizer: a vectorizer object, a ``.npz`` written by
    :func:`xmc.vectorizer_store.save_vectorizer`, or the workflow's own ``vectorizer.pkl`` (written
    by its ``tfidf`` rule: trusted, and stored in the bundle as data, not as a pickle); assignment : path of C.npz (L, K);
    matcher : a transformer matcher folder (then ``max_length``, the token length it was trained
    with, is required) or a linear matcher ``.npz``; ranker : path of the ranker ``model.npz``;
    label_names : path of label_names.txt (L lines); label_texts : path of label_text.txt (L
    lines, the labels' texts; optional); ranker_input : "tfidf" or "tfidf+neural";
    combine : sigma(g, h) method; top_b : clusters kept per text; top_k : labels kept per text.
    config / metrics : JSON-able records of the run, kept in the manifest.
    knn : the nearest-neighbour shortlist's settings (``matcher.knn``: k, power, head_weight) or
    None (the head's top-b); with it, knn_memory : ``.npy`` of the training documents' fine-tuned
    embeddings (the workflow's ``emb.train.npy``) and knn_targets : their labels Y (N, L) ``.npz``;
    with ``knn["pretrained_weight"]`` > 0, knn_pretrained : ``{"encoder": the pretrained encoder's
    folder, "memory": .npy of its embeddings of the training documents (phi_pre), "max_length",
    "precision": as they were computed (rule embed_pretrained)}``.
    share : hard-link files identical to those of the bundles beside ``dest`` (see the module doc).
    """
    from xmc.ranker import COMBINE_METHODS

    matcher = Path(matcher)
    transformer = matcher.is_dir()
    if ranker_input not in RANKER_INPUTS:
        raise ValueError(f"ranker_input: expected one of {RANKER_INPUTS}, got {ranker_input!r}")
    if combine not in COMBINE_METHODS:
        raise ValueError(f"combine: expected one of {COMBINE_METHODS}, got {combine!r}")
    if ranker_input == "tfidf+neural" and not transformer:
        raise ValueError("ranker_input 'tfidf+neural' needs a transformer matcher folder, "
                         f"got the file {matcher}")
    if transformer:
        max_length = _positive_int(max_length, "max_length")
    if knn is not None:
        from xmc.indexing import cluster_targets
        from xmc.matcher.knn import check_knn

        check_knn(knn)
        if not transformer:
            raise ValueError("knn: the nearest-neighbour shortlist needs a transformer matcher folder, "
                             f"got the file {matcher}")
        if knn_memory is None or knn_targets is None:
            raise ValueError("knn: knn_memory (the training embeddings) and knn_targets (their labels) "
                             "are required")
        memory = np.load(knn_memory, mmap_mode="r", allow_pickle=False)
        memory_clusters = cluster_targets(load_csr(knn_targets), load_csr(assignment))
        if memory.ndim != 2 or memory.shape[0] != memory_clusters.shape[0]:
            raise ValueError(f"knn_memory: {knn_memory} has shape {memory.shape}; expected one row per "
                             f"training document of {knn_targets} ({memory_clusters.shape[0]})")
        pretrained_files = _knn_pretrained_files(knn, knn_pretrained, memory.shape[0])
    n_labels = len(read_lines(label_names))
    if label_texts is not None and len(read_lines(label_texts)) != n_labels:
        raise ValueError(f"label_texts: {label_texts} has {len(read_lines(label_texts))} lines, "
                         f"{label_names} {n_labels}")
    with atomic_path(dest, is_dir=True) as tmp:
        _place(label_names, tmp / LABELS)
        if label_texts is not None:
            _place(label_texts, tmp / LABEL_TEXTS)
        _place_vectorizer(vectorizer, tmp / VECTORIZER)
        _place(assignment, tmp / ASSIGNMENT)
        _place(matcher, tmp / (TRANSFORMER_DIR if transformer else LINEAR_FILE))
        _place(ranker, tmp / RANKER)
        if knn is not None:
            _place(knn_memory, tmp / KNN_MEMORY)
            save_csr(tmp / KNN_CLUSTERS, memory_clusters)
            for src, dst in pretrained_files:
                _place(src, tmp / dst)
        digests = _write_manifest(tmp, {
            "kind": "model", "name": name, "dataset": dataset, "n_labels": n_labels,
            "matcher": "transformer" if transformer else "linear", "ranker_input": ranker_input,
            "combine": combine, "top_b": _positive_int(top_b, "top_b"),
            "top_k": _positive_int(top_k, "top_k"), "max_length": max_length, "knn": knn,
            **({"knn_pretrained": _pretrained_settings(knn_pretrained)}
               if knn is not None and knn.get("pretrained_weight", 0) else {}),
            "config": config or {}, "metrics": metrics or {},
        }, version=2 if knn is None else KNN_FORMAT_VERSION)
        if share:
            _share_files(tmp, Path(dest), digests)
    return Path(dest)


def export_ensemble(dest, *, name: str, members: Sequence, method: str, top_k: int,
                    dataset: str | None = None, config: dict | None = None,
                    metrics: dict | None = None, share: bool = True) -> Path:
    """Write an ensemble bundle to ``dest``: the member bundles (folders written by
    :func:`export_bundle`) go to ``members/<their name>/``; ``method`` is an
    :data:`xmc.ensemble.ENSEMBLE_METHODS` rule, ``top_k`` the labels it keeps per text."""
    from xmc.ensemble import ENSEMBLE_METHODS

    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"method: expected one of {ENSEMBLE_METHODS}, got {method!r}")
    members = [Path(m) for m in members]
    if not members:
        raise ValueError("members: expected at least one member bundle")
    manifests = [_read_manifest(m) for m in members]
    names = [m["name"] for m in manifests]
    for path, member in zip(members, names):
        _check_member_name(member, path)
    if len(set(names)) != len(names):
        raise ValueError(f"members: the same model appears twice in {names}")
    for path, m in zip(members, manifests):
        if m["kind"] != "model":
            raise ValueError(f"members: {path} is an ensemble bundle; members must be model bundles")
        if m["n_labels"] != manifests[0]["n_labels"]:
            raise ValueError(f"members: {path} has {m['n_labels']} labels, {members[0]} has "
                             f"{manifests[0]['n_labels']}")
    with atomic_path(dest, is_dir=True) as tmp:
        _place(members[0] / LABELS, tmp / LABELS)
        if (members[0] / LABEL_TEXTS).is_file():
            _place(members[0] / LABEL_TEXTS, tmp / LABEL_TEXTS)
        for path, member in zip(members, names):
            _place(path, tmp / MEMBERS / member)
        digests = _write_manifest(tmp, {
            "kind": "ensemble", "name": name, "dataset": dataset, "n_labels": manifests[0]["n_labels"],
            "method": method, "members": names, "top_k": _positive_int(top_k, "top_k"),
            "config": config or {}, "metrics": metrics or {},
        }, version=max(m["format_version"] for m in manifests))
        if share:
            _share_files(tmp, Path(dest), digests)
    return Path(dest)


# ---- load -----------------------------------------------------------------------------------
def _check_member_name(member, where) -> None:
    """An ensemble member is a folder directly under ``members/``: a plain name, never a path."""
    if not isinstance(member, str) or not _MEMBER_NAME.match(member) or ".." in member:
        raise BundleError(f"bundle {where}: member name {member!r} is not a plain folder name under "
                          f"{MEMBERS}/; refusing to load a bundle from outside the ensemble")


def _read_manifest(path, verify: bool = True) -> dict:
    folder = Path(path)
    if not folder.exists():
        raise BundleError(f"bundle {folder} does not exist")
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} is not a folder (expected a folder written by xmc export)")
    if not (folder / MANIFEST).is_file():
        inside = sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())
        if inside:  # results/{dataset}/models/: the folder of the bundles, not one of them
            shown = ", ".join(inside[:20]) + (f" and {len(inside) - 20} more" if len(inside) > 20 else "")
            raise BundleError(f"{folder} is a folder of {len(inside)} bundles, not a bundle; name one of "
                              f"them, e.g. {folder / inside[0]}. Bundles: {shown}")
        raise BundleError(f"incomplete bundle {folder}: {MANIFEST} is missing")
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"bundle {folder}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {folder}: {MANIFEST} is not an {FORMAT} manifest")
    if manifest.get("format_version") == 1 or (folder / LEGACY_VECTORIZER).exists():
        raise BundleError(f"bundle {folder} was written by an older xmc (format version 1: its TF-IDF "
                          f"vectorizer is a pickle, which can run code when loaded, and its files have no "
                          f"sha256): it is not loaded; {REEXPORT}")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise BundleError(f"bundle {folder} has format version {manifest.get('format_version')!r}; this "
                          f"xmc ({_versions()['xmc']}) reads versions {', '.join(map(str, READABLE_VERSIONS))}: "
                          "export it again with this version")
    files = manifest.get("files", [])
    digests = manifest.get("sha256")
    if not isinstance(files, list) or not isinstance(digests, dict) or set(digests) != set(files):
        raise BundleError(f"bundle {folder}: {MANIFEST} lacks the sha256 of its files; {REEXPORT}")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BundleError(f"incomplete bundle {folder}: missing {shown}")
    if verify:
        root = folder.resolve()
        for f in files:
            path = folder / f
            real = path.resolve()
            if root not in real.parents or path.is_symlink():
                raise BundleError(f"bundle {folder}: {f} is a link or lies outside the bundle")
            if _sha256(path) != digests[f]:
                raise BundleError(f"bundle file {path} does not match the sha256 in {MANIFEST} (changed "
                                  f"or damaged since export); {REEXPORT}")
        extra = sorted(set(_file_list(folder)) - set(files))
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise BundleError(f"bundle {folder} holds files its {MANIFEST} does not list: {shown}; "
                              "remove them or export the bundle again")
    return manifest


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts: expected a sequence of strings, got a single string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty; every text needs at least one non-blank character")
    return texts


class _damaged:
    """Reading ``folder / name``: a truncated or corrupted file becomes one BundleError naming it,
    not the loader's traceback."""

    def __init__(self, folder: Path, name: str):
        self.path = folder / name

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, (zipfile.BadZipFile, EOFError, OSError, KeyError,
                              RuntimeError)) or (kind is ValueError and not isinstance(error, BundleError)):
            raise BundleError(f"bundle file {self.path} is damaged ({type(error).__name__}: {error}); "
                              "export the bundle again") from error
        return False


def _device_name(device: str) -> str:
    from xmc.matcher.transformer import resolve_device

    return str(resolve_device(device))


class _Model:
    """Prediction state of one model bundle."""

    def __init__(self, folder: Path, manifest: dict, device: str):
        from xmc.matcher.linear import LinearMatcher
        from xmc.matcher.transformer import TransformerMatcher
        from xmc.ranker import Ranker

        self.manifest = manifest
        self.pretrained = None  # the pretrained encoder of a vote with knn.pretrained_weight > 0
        from xmc.vectorizer_store import load_vectorizer

        with _damaged(folder, VECTORIZER):
            self.vectorizer = load_vectorizer(folder / VECTORIZER)
        if manifest["matcher"] == "transformer":
            with _damaged(folder, TRANSFORMER_DIR):
                self.matcher = TransformerMatcher.load(folder / TRANSFORMER_DIR, device=device)
        else:
            with _damaged(folder, LINEAR_FILE):
                self.matcher = LinearMatcher.load(folder / LINEAR_FILE)
        with _damaged(folder, RANKER):
            self.ranker = Ranker.load(folder / RANKER)
        self.ranker.keep_blocks = True  # served queries are small: keep the transposed weights
        with _damaged(folder, ASSIGNMENT):
            C = load_csr(folder / ASSIGNMENT)
        n_labels = manifest["n_labels"]
        if self.ranker.W_.shape[0] != n_labels or C.shape[0] != n_labels:
            raise BundleError(f"bundle {folder}: {n_labels} label names but the ranker has "
                              f"{self.ranker.W_.shape[0]} labels and C {C.shape[0]}")
        if not np.array_equal(C.tocsr().indices, self.ranker.assignment_):
            raise BundleError(f"bundle {folder}: the ranker's clusters differ from {ASSIGNMENT}")
        self.knn = manifest.get("knn")
        if self.knn is not None:
            self._load_knn(folder, C.shape[1], device)

    def _load_knn(self, folder: Path, n_clusters: int, device: str) -> None:
        """The nearest-neighbour shortlist's memory, checked against the manifest and the clusters."""
        from xmc.matcher.knn import check_knn

        try:
            check_knn(self.knn)
        except ValueError as e:
            raise BundleError(f"bundle {folder}: {MANIFEST}: {e}") from None
        if self.manifest["matcher"] != "transformer":
            raise BundleError(f"bundle {folder}: a nearest-neighbour shortlist needs a transformer matcher")
        for name in (KNN_MEMORY, KNN_CLUSTERS):
            if name not in self.manifest["files"]:
                raise BundleError(f"incomplete bundle {folder}: its {MANIFEST} sets knn but lists no {name}")
        with _damaged(folder, KNN_MEMORY):
            self.memory = np.load(folder / KNN_MEMORY, allow_pickle=False)
        with _damaged(folder, KNN_CLUSTERS):
            self.memory_clusters = load_csr(folder / KNN_CLUSTERS)
        width = self.matcher.net.head.in_features  # the embedding the matcher computes
        if (self.memory.ndim != 2 or self.memory.dtype.kind != "f" or self.memory.shape[1] != width
                or self.memory_clusters.shape != (self.memory.shape[0], n_clusters)):
            raise BundleError(f"bundle {folder}: {KNN_MEMORY} {self.memory.shape} ({self.memory.dtype}) and "
                              f"{KNN_CLUSTERS} {self.memory_clusters.shape} do not fit each other, the "
                              f"matcher's {width}-wide embedding or the {n_clusters} clusters of {ASSIGNMENT}")
        weight = self.knn.get("pretrained_weight", 0)
        if weight:
            self._load_knn_pretrained(folder, weight, device)

    def _load_knn_pretrained(self, folder: Path, weight: float, device: str) -> None:
        """The pretrained encoder and its memory a vote with pretrained_weight > 0 also reads."""
        from xmc.label_repr import load_text_encoder
        from xmc.matcher.knn import knn_embedding

        settings = self.manifest.get("knn_pretrained")
        if not isinstance(settings, dict) or set(settings) != {"max_length", "precision"}:
            raise BundleError(f"bundle {folder}: {MANIFEST}: knn.pretrained_weight > 0 needs knn_pretrained "
                              f"{{max_length, precision}}, got {settings!r}")
        try:
            settings = _pretrained_settings(settings)
        except ValueError as e:
            raise BundleError(f"bundle {folder}: {MANIFEST}: {e}") from None
        files = self.manifest["files"]
        encoder_files = {f.removeprefix(KNN_ENCODER + "/") for f in files if f.startswith(KNN_ENCODER + "/")}
        for name in (KNN_PRETRAINED, f"{KNN_ENCODER}/config.json", f"{KNN_ENCODER}/model.safetensors"):
            if name not in files:
                raise BundleError(f"incomplete bundle {folder}: its {MANIFEST} sets knn.pretrained_weight but "
                                  f"lists no {name}")
        if not encoder_files <= set(ENCODER_FILES):
            raise BundleError(f"bundle {folder}: {KNN_ENCODER} holds {sorted(encoder_files - set(ENCODER_FILES))}; "
                              f"a bundle's encoder is only {', '.join(ENCODER_FILES)} (no pickled weights)")
        with _damaged(folder, KNN_PRETRAINED):
            pretrained = np.load(folder / KNN_PRETRAINED, allow_pickle=False)
        with _damaged(folder, f"{KNN_ENCODER}/config.json"):
            hidden = json.loads((folder / KNN_ENCODER / "config.json").read_text(encoding="utf-8"))["hidden_size"]
        if pretrained.ndim != 2 or pretrained.dtype.kind != "f" or pretrained.shape != (self.memory.shape[0], hidden):
            raise BundleError(f"bundle {folder}: {KNN_PRETRAINED} {pretrained.shape} ({pretrained.dtype}) does not "
                              f"fit {KNN_MEMORY}'s {self.memory.shape[0]} documents or the {hidden}-wide encoder "
                              f"of {KNN_ENCODER}")
        with _damaged(folder, KNN_ENCODER):  # loaded once: each prediction embeds its queries with it
            self.pretrained = load_text_encoder(folder / KNN_ENCODER, _device_name(device), settings["precision"])
        self.pretrained_max_length = settings["max_length"]
        self.memory = knn_embedding(self.memory, pretrained, weight)  # the space the neighbours are sought in

    def to(self, device: str) -> None:
        if self.pretrained is not None:
            self.pretrained.device = _device_name(device)
            self.pretrained.model.to(self.pretrained.device)
        if self.manifest["matcher"] == "transformer":
            from xmc.matcher.transformer import resolve_device

            self.matcher.to(resolve_device(device))

    def tokens(self, texts: list[str]):
        """Token ids exactly as :func:`xmc.features.tokenize` makes them (padded to max_length), with
        the tokenizer kept in memory instead of re-read per call."""
        enc = self.matcher.tokenizer(texts, padding="max_length", truncation=True,
                                     max_length=self.manifest["max_length"], return_attention_mask=True,
                                     return_token_type_ids=False, return_tensors="np")
        return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)

    def scores(self, texts: list[str], top_k: int, batch_size: int) -> sp.csr_matrix:
        from xmc.features import ranker_features, transform_tfidf
        from xmc.ranker import RankerPredParams

        m = self.manifest
        X = transform_tfidf(self.vectorizer, texts)
        if m["matcher"] == "transformer":
            ids, mask = self.tokens(texts)
            topb, emb = self.matcher.predict(ids, mask, top_b=m["top_b"], batch_size=batch_size)
            if self.knn is not None:  # as rule knn_shortlist: the nearest training documents' vote
                from xmc.matcher.knn import knn_embedding, knn_shortlist

                queries = emb
                if self.pretrained is not None:  # as rule embed_pretrained, then the joint space
                    from xmc.label_repr import embed_texts

                    phi_pre = embed_texts(texts, self.pretrained, self.pretrained_max_length, batch_size)
                    queries = knn_embedding(emb, phi_pre, self.knn["pretrained_weight"])
                topb = knn_shortlist(queries, self.memory, self.memory_clusters, m["top_b"], head=topb,
                                     k=self.knn["k"], power=self.knn["power"], head_weight=self.knn["head_weight"])
        else:
            topb, emb = self.matcher.predict(X, top_b=m["top_b"]), None
        features = ranker_features(X, emb if m["ranker_input"] == "tfidf+neural" else None)
        return self.ranker.predict(features, topb, RankerPredParams(combine=m["combine"], top_k=top_k))


class Bundle:
    """A loaded bundle. Build it with :func:`load`.

    Attributes: ``path``, ``manifest`` (dict), ``name``, ``kind`` ("model" or "ensemble"),
    ``label_names`` (list of L str), ``label_texts`` (list of L str, or None for a bundle without
    them), ``top_k`` (labels per text the workflow kept).
    """

    def __init__(self, path, device: str = "auto"):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.name, self.kind = self.manifest["name"], self.manifest["kind"]
        self.top_k = self.manifest["top_k"]
        self.label_names = read_lines(self.path / LABELS)
        if len(self.label_names) != self.manifest["n_labels"]:
            raise BundleError(f"bundle {self.path}: {LABELS} has {len(self.label_names)} lines, the "
                              f"manifest says {self.manifest['n_labels']} labels")
        self.label_texts = None
        if (self.path / LABEL_TEXTS).is_file():
            self.label_texts = read_lines(self.path / LABEL_TEXTS)
            if len(self.label_texts) != len(self.label_names):
                raise BundleError(f"bundle {self.path}: {LABEL_TEXTS} has {len(self.label_texts)} lines, "
                                  f"{LABELS} {len(self.label_names)}")
        if self.kind == "model":
            self._models = [_Model(self.path, self.manifest, device)]
        else:
            self._models = []
            members = self.manifest.get("members")
            if not isinstance(members, list) or not members:
                raise BundleError(f"bundle {self.path}: {MANIFEST} lists no members")
            for member in members:
                _check_member_name(member, self.path)
                folder = self.path / MEMBERS / member
                # the ensemble's manifest already checked every member file's sha256
                self._models.append(_Model(folder, _read_manifest(folder, verify=False), device))
        self._device = device

    def __repr__(self) -> str:
        return f"Bundle({self.name!r}, kind={self.kind!r}, labels={len(self.label_names)})"

    def to(self, device: str) -> "Bundle":
        """Move the transformer matchers to ``device`` ("cpu", "cuda", "cuda:N", "auto")."""
        for model in self._models:
            model.to(device)
        self._device = device
        return self

    def predict_scores(self, texts: Sequence[str], top_k: int | None = None,
                       batch_size: int = 64) -> sp.csr_matrix:
        """Scores of each text's ``top_k`` best labels: CSR float32 (N, L), the workflow's
        ``predictions/{model}.npz`` format. ``top_k`` defaults to the workflow's (``self.top_k``);
        ensemble members keep at least the workflow's top-k before they are combined, as in the
        workflow. ``batch_size``: texts per encoder forward pass."""
        texts = _check_texts(texts)
        top_k = self.top_k if top_k is None else _positive_int(top_k, "top_k")
        batch_size = _positive_int(batch_size, "batch_size")
        n_labels = len(self.label_names)
        if not texts:
            return sp.csr_matrix((0, n_labels), dtype=np.float32)
        if self.kind == "model":
            return self._models[0].scores(texts, top_k, batch_size)
        from xmc.ensemble import ensemble

        preds = [m.scores(texts, max(top_k, m.manifest["top_k"]), batch_size) for m in self._models]
        return ensemble(preds, self.manifest["method"], top_k=top_k)

    def ranked(self, texts: Sequence[str], top_k: int = 10, batch_size: int = 64,
               device: str | None = None) -> list[list[tuple[int, float]]]:
        """Per text, its ``top_k`` labels as ``(label index, score)``, best first (ties: lower
        label index first). ``device`` moves the model first (see :meth:`to`)."""
        if device is not None and device != self._device:
            self.to(device)
        S = self.predict_scores(texts, top_k=top_k, batch_size=batch_size)
        out = []
        for i in range(S.shape[0]):
            lo, hi = S.indptr[i], S.indptr[i + 1]
            cols, vals = S.indices[lo:hi], S.data[lo:hi]
            order = np.lexsort((cols, -vals.astype(np.float64)))
            out.append([(int(cols[j]), float(vals[j])) for j in order])
        return out

    def predict(self, texts: Sequence[str], top_k: int = 10, batch_size: int = 64,
                device: str | None = None) -> list[list[tuple[str, float]]]:
        """Per text, its ``top_k`` labels as ``(label_name, score)``, best first (see :meth:`ranked`)."""
        return [[(self.label_names[j], score) for j, score in row]
                for row in self.ranked(texts, top_k, batch_size, device)]


def load(path, device: str = "auto") -> Bundle:
    """Load a bundle folder written by :func:`export_bundle` or :func:`export_ensemble`.

    Raises :class:`BundleError` (a ValueError) for a missing folder, a missing file, or a
    manifest of another format version. ``device`` places the transformer matchers.
    """
    return Bundle(path, device=device)

