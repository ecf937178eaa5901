"""A fitted TF-IDF vectorizer as plain data (no pickle): its settings, vocabulary and idf in one
``.npz`` read with ``allow_pickle=False``, rebuilt on load.

A pickle runs code when it is loaded, so a shared bundle must never hold one. What a vectorizer
needs to transform new text is data: its options (JSON), its terms in column order (JSON) and its
idf weights (float64). Both vectorizers of :func:`xmc.features.fit_tfidf` are stored:
scikit-learn's ``TfidfVectorizer`` (word or char analyzer) and :class:`xmc.char_tfidf.CharNgramTfidf`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xmc.char_tfidf import CharNgramTfidf
from xmc.io import atomic_path

__all__ = ["save_vectorizer", "load_vectorizer"]

STORE_VERSION = 1
# TfidfVectorizer options that are data; the callables (tokenizer, preprocessor) and a fixed
# vocabulary are refused at save time, so nothing but these can come back on load.
_SKLEARN_OPTIONS = ("analyzer", "binary", "decode_error", "encoding", "input", "lowercase", "max_df",
                    "max_features", "min_df", "ngram_range", "norm", "smooth_idf", "stop_words",
                    "strip_accents", "sublinear_tf", "token_pattern", "use_idf")
_CHAR_OPTIONS = ("ngram_range", "max_features", "min_df", "max_df", "sublinear_tf", "lowercase")


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def save_vectorizer(vectorizer, path) -> None:
    """Write a fitted vectorizer of :func:`xmc.features.fit_tfidf` to ``path`` (an .npz; atomic)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if isinstance(vectorizer, CharNgramTfidf):
        kind = "CharNgramTfidf"
        options = {k: getattr(vectorizer, k) for k in _CHAR_OPTIONS}
    elif isinstance(vectorizer, TfidfVectorizer):
        kind = "TfidfVectorizer"
        params = vectorizer.get_params()
        for key in ("tokenizer", "preprocessor", "vocabulary"):
            if params.get(key) is not None:
                raise ValueError(f"save_vectorizer: a vectorizer with a custom {key} cannot be stored as data")
        options = {k: params[k] for k in _SKLEARN_OPTIONS}
        if isinstance(options["stop_words"], (set, frozenset)):
            options["stop_words"] = sorted(options["stop_words"])
    else:
        raise ValueError(f"save_vectorizer: unsupported vectorizer {type(vectorizer).__name__}")
    options["ngram_range"] = list(options["ngram_range"])
    options = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in options.items()}
    terms = [None] * len(vectorizer.vocabulary_)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    meta = {"store_version": STORE_VERSION, "class": kind, "options": options,
            "dtype": np.dtype(vectorizer.dtype).name}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=_json_bytes(meta), terms=_json_bytes(terms),
                            idf=np.asarray(vectorizer.idf_, dtype=np.float64))


def load_vectorizer(path):
    """Rebuild the vectorizer written by :func:`save_vectorizer`; nothing in the file is executed."""
    from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would also take a .npy or (refusing) a pickle
            raise ValueError(f"{path} is not an .npz of plain arrays (a pickle or another file); "
                             "refusing to load it")
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes().decode("utf-8"))
        terms = json.loads(f["terms"].tobytes().decode("utf-8"))
        idf = np.asarray(f["idf"], dtype=np.float64)
    if not isinstance(meta, dict) or meta.get("store_version") != STORE_VERSION:
        raise ValueError(f"{path}: not a stored vectorizer of version {STORE_VERSION}")
    if not isinstance(terms, list) or len(terms) != len(idf) or not all(isinstance(t, str) for t in terms):
        raise ValueError(f"{path}: {len(idf)} idf weights but a vocabulary of another size or kind")
    options = dict(meta["options"])
    options["ngram_range"] = tuple(options["ngram_range"])
    dtype = np.dtype(meta["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{path}: unsupported dtype {meta['dtype']!r}")
    vocabulary = {t: i for i, t in enumerate(terms)}
    classes = {"CharNgramTfidf": (CharNgramTfidf, _CHAR_OPTIONS), "TfidfVectorizer": (TfidfVectorizer, _SKLEARN_OPTIONS)}
    if meta["class"] not in classes:
        raise ValueError(f"{path}: unknown vectorizer class {meta['class']!r}")
    cls, allowed = classes[meta["class"]]
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"{path}: unknown options {sorted(unknown)}")
    vectorizer = cls(**options, dtype=dtype)
    vectorizer.vocabulary_ = vocabulary
    vectorizer.idf_ = idf
    if cls is CharNgramTfidf:
        vectorizer._tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True,
                                             sublinear_tf=vectorizer.sublinear_tf)
        vectorizer._tfidf.idf_ = idf
    else:
        vectorizer.fixed_vocabulary_ = False
    return vectorizer
