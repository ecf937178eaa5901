"""Instance features: sparse TF-IDF over words (phi_tfidf) or character n-grams (phi_char), and token
ids for the transformer encoders."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from xmc.char_tfidf import CharNgramTfidf
from xmc.indexing import l2_normalize_rows as normalize  # not sklearn's: its import is 0.8 s of every ranker job
from xmc.io import load_csr, load_npy
from xmc.params import FromDict

from xmc.vocabulary import ANALYZERS


@dataclass
class TfidfParams(FromDict):
    """Options of :class:`sklearn.feature_extraction.text.TfidfVectorizer` used for phi_tfidf
    (``analyzer: word``) and phi_char (``char_wb``: character n-grams inside word boundaries, or
    ``char``).

    ``min_df``/``max_df``: an int is a document count, a float in (0, 1] a proportion (sklearn).
    ``max_features``: keep the most frequent n-grams; None keeps all.
    """

    config_section = "tfidf"

    ngram_range: tuple = (1, 2)
    max_features: int | None = 200000
    min_df: int | float = 2
    max_df: int | float = 1.0
    sublinear_tf: bool = True
    lowercase: bool = True
    analyzer: str = "word"
    dtype: str = "float32"

    def __post_init__(self):
        ngram = tuple(self.ngram_range) if isinstance(self.ngram_range, (list, tuple)) else None
        if (ngram is None or len(ngram) != 2 or not all(isinstance(n, int) for n in ngram)
                or not 1 <= ngram[0] <= ngram[1]):
            raise ValueError(f"tfidf ngram_range must be [min_n, max_n] with 1 <= min_n <= max_n, "
                             f"got {self.ngram_range!r}")
        self.ngram_range = ngram
        if self.max_features is not None and (not isinstance(self.max_features, int)
                                              or self.max_features < 1):
            raise ValueError(f"tfidf max_features must be a positive int or null, "
                             f"got {self.max_features!r}")
        for name in ("min_df", "max_df"):
            value = getattr(self, name)
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or (
                isinstance(value, float) and 0.0 < value <= 1.0)
            if not ok:
                raise ValueError(f"tfidf {name} must be an int >= 1 (documents) or a float in "
                                 f"(0, 1] (proportion), got {value!r}")
        for name in ("sublinear_tf", "lowercase"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"tfidf {name} must be true or false, got {getattr(self, name)!r}")
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"tfidf analyzer must be one of {', '.join(ANALYZERS)}, got {self.analyzer!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"tfidf dtype must be 'float32' or 'float64', got {self.dtype!r}")


def _check_texts(texts, name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty; expected at least one text")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"{name}[{bad}] is {type(texts[bad]).__name__}, expected str")
    return texts


# Scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Myanmar,
# Khmer, Tibetan): a word tokenizer sees a whole sentence as one token.
_NO_SPACE_SCRIPTS = re.compile("[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff"
                               "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
CHAR_HINT = ("set tfidf.analyzer: char_wb with tfidf.ngram_range: [1, 3] (character n-grams, which "
             "need no spaces; docs/configuration.md, 'Text in any language')")


def tokenization_warning(texts: Sequence[str], params: TfidfParams | None = None,
                         sample: int = 2000) -> str | None:
    """A warning when the word analyzer suits the texts badly, else None: fewer than two word tokens
    per 100 characters on average, or most letters in scripts written without spaces (Chinese,
    Japanese, Thai...), where each sentence becomes one feature and a new text matches none.
    Looks at up to ``sample`` texts spread over the corpus."""
    params = params or TfidfParams()
    if params.analyzer != "word" or not texts:
        return None
    step = max(1, len(texts) // sample)
    picked = texts[::step][:sample]
    chars = sum(len(t) for t in picked)
    tokens = sum(len(_WORD_TOKEN.findall(t)) for t in picked)
    letters = sum(sum(c.isalpha() for c in t) for t in picked)
    no_space = sum(len(_NO_SPACE_SCRIPTS.findall(t)) for t in picked)
    per_100 = 100.0 * tokens / max(chars, 1)
    share = no_space / max(letters, 1)
    if per_100 >= 2.0 and share < 0.5:
        return None
    return (f"tfidf: the texts average {per_100:.1f} word tokens per 100 characters and "
            f"{100 * share:.0f}% of their letters are in scripts written without spaces (Chinese, "
            f"Japanese, Thai...): the word tokenizer (tokens of 2+ letters between spaces and "
            f"punctuation) makes whole sentences single features, so new texts share few of them; "
            f"{CHAR_HINT}")


def fit_tfidf(texts: Sequence[str], params: TfidfParams | None = None):
    """Fit a TF-IDF vectorizer on ``texts``.

    Returns ``(vectorizer, X)`` with X a CSR matrix of shape (n_texts, n_features), dtype float32
    (or params.dtype), each non-empty row l2-normalised.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    params = params or TfidfParams()
    texts = _check_texts(texts)
    if params.analyzer == "char_wb":  # the same features as scikit-learn's, counted per distinct word
        vectorizer = CharNgramTfidf(
            ngram_range=params.ngram_range, max_features=params.max_features, min_df=params.min_df,
            max_df=params.max_df, sublinear_tf=params.sublinear_tf, lowercase=params.lowercase,
            dtype=params.dtype)
    else:
        vectorizer = TfidfVectorizer(
            ngram_range=params.ngram_range, max_features=params.max_features,
            min_df=params.min_df, max_df=params.max_df, sublinear_tf=params.sublinear_tf,
            lowercase=params.lowercase, analyzer=params.analyzer, dtype=np.dtype(params.dtype), norm="l2",
        )
    try:
        X = vectorizer.fit_transform(texts)
    except ValueError as e:  # e.g. "After pruning, no terms remain": say which settings caused it
        hint = ""
        if "empty vocabulary" in str(e) and params.analyzer == "word":
            hint = ("; the word tokenizer keeps only tokens of two or more letters or digits (not "
                    f"one-letter words, nor text without spaces between words): {CHAR_HINT}")
        raise ValueError(f"TF-IDF fit on {len(texts)} texts failed with {params}: {e}{hint}") from e
    return vectorizer, sp.csr_matrix(X, dtype=np.dtype(params.dtype))


def transform_tfidf(vectorizer, texts: Sequence[str]) -> sp.csr_matrix:
    """TF-IDF of new texts with a fitted vectorizer: CSR (n_texts, n_features), rows l2-normalised."""
    X = vectorizer.transform(_check_texts(texts))
    return sp.csr_matrix(X, dtype=vectorizer.dtype)


def tokenize(texts: Sequence[str], encoder_dir: str, max_length: int = 128,
             batch_size: int = 1000) -> dict:
    """Token ids for an encoder, padded and truncated to ``max_length``.

    Returns ``{"input_ids": int32 (N, max_length), "attention_mask": int32 (N, max_length)}``.
    The tokenizer's own padding side is kept (XLNet pads on the left, BERT/RoBERTa on the right).
    """
    from transformers import AutoTokenizer

    texts = _check_texts(texts)
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(f"encoder {encoder_dir}: no fast tokenizer (tokenizer.json) available")
    n = len(texts)
    input_ids = np.zeros((n, max_length), dtype=np.int32)
    attention_mask = np.zeros((n, max_length), dtype=np.int32)
    for start in tqdm(range(0, n, batch_size), desc="tokenize", unit="batch", mininterval=2.0):
        enc = tokenizer(texts[start:start + batch_size], padding="max_length", truncation=True,
                        max_length=max_length, return_attention_mask=True,
                        return_token_type_ids=False, return_tensors="np")
        input_ids[start:start + batch_size] = enc["input_ids"]
        attention_mask[start:start + batch_size] = enc["attention_mask"]
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def ranker_features(X_tfidf, emb=None, X_char=None) -> sp.csr_matrix:
    """Ranker (and linear matcher) input from TF-IDF, character n-gram TF-IDF and/or dense embeddings:

    - ``tfidf`` / ``char``: that sparse block as is;
    - ``tfidf+neural`` / ``tfidf+fnt``: hstack([l2norm(X_tfidf), l2norm(emb)]);
    - ``tfidf+char``: hstack([l2norm(X_tfidf), l2norm(X_char)]);
    - ``pre`` (embeddings alone): l2norm(emb) as CSR.

    X_tfidf, X_char : sparse (N, D), (N, D_char) or None; emb : dense (N, d) or None (at least one given).
    Returns CSR float32 with the given blocks side by side in the order tfidf, char, emb.
    """
    blocks = {}
    for name, X in (("X_tfidf", X_tfidf), ("X_char", X_char)):
        if X is not None:
            if not sp.issparse(X) or X.ndim != 2:
                raise ValueError(f"{name}: expected a 2-d sparse matrix, got {type(X).__name__}")
            blocks[name] = sp.csr_matrix(X, dtype=np.float32)
    if emb is not None:
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2:
            raise ValueError(f"emb: expected a 2-d array (N, d), got shape {emb.shape}")
        blocks["emb"] = emb
    if not blocks:
        raise ValueError("ranker_features: expected X_tfidf, X_char, emb or a combination, got none")
    rows = {name: b.shape[0] for name, b in blocks.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"ranker_features: the blocks have different row counts: "
                         f"{', '.join(f'{k} {v}' for k, v in rows.items())}")
    blocks = list(blocks.values())
    if len(blocks) == 1 and sp.issparse(blocks[0]):  # a sparse block is already l2-normalised
        return blocks[0]
    # each block on the unit sphere, so that neither dominates the linear models by its scale
    return _joined_rows([normalize(b) if sp.issparse(b) else b for b in blocks])


def _joined_rows(blocks: list, chunk_entries: int = 2**18) -> sp.csr_matrix:
    """CSR float32 of the blocks side by side (sparse blocks as given, dense ones l2-normalised by
    row, their zeros dropped): the same matrix as ``sp.hstack`` of the blocks, written straight into
    its final arrays a chunk of rows at a time. hstack (and CSR from a dense array) went through
    float64 copies and COO row/column arrays: 12x the dense block at its peak, 81 GiB on Wiki-500K's
    embeddings; here the output (8 bytes an entry with int32 indices) and a chunk of about
    ``chunk_entries`` dense values."""
    n = blocks[0].shape[0]
    chunk_rows = max(1, chunk_entries // max([1] + [b.shape[1] for b in blocks if not sp.issparse(b)]))
    offsets = np.concatenate([[0], np.cumsum([b.shape[1] for b in blocks])]).astype(np.int64)
    chunks = [(lo, min(n, lo + chunk_rows)) for lo in range(0, n, chunk_rows)]
    counts = []  # entries of each block in each row
    for b in blocks:
        if sp.issparse(b):
            counts.append(np.diff(b.indptr).astype(np.int64))
        else:
            c = np.empty(n, dtype=np.int64)
            for lo, hi in chunks:
                c[lo:hi] = np.count_nonzero(normalize(b[lo:hi]), axis=1)
            counts.append(c)
    per_row = np.sum(counts, axis=0, dtype=np.int64)
    nnz = int(per_row.sum())
    index = np.int32 if max(nnz, int(offsets[-1])) < 2**31 else np.int64
    indptr = np.zeros(n + 1, dtype=index)
    np.cumsum(per_row, out=indptr[1:])
    data, indices = np.empty(nnz, dtype=np.float32), np.empty(nnz, dtype=index)
    start = indptr[:-1].astype(np.int64)  # where each row's next block goes
    for b, c, offset in zip(blocks, counts, offsets):
        for lo, hi in chunks:
            rows = c[lo:hi]
            first = np.cumsum(rows) - rows  # within the chunk
            if sp.issparse(b):
                segment = slice(int(b.indptr[lo]), int(b.indptr[hi]))
                values, columns = b.data[segment], b.indices[segment]
            else:
                Z = normalize(b[lo:hi])
                r, columns = np.nonzero(Z)
                values = Z[r, columns]
            position = np.repeat(start[lo:hi] - first, rows) + np.arange(int(rows.sum()))
            data[position] = values
            indices[position] = columns + offset
        start += c
    return sp.csr_matrix((data, indices, indptr), shape=(n, int(offsets[-1])))


def load_ranker_features(files, split: str):
    """The ranker (and linear matcher) input of ``split`` from the files :func:`xmc.plan.feature_files`
    names (``X_{split}``: TF-IDF, ``Xc_{split}``: character n-gram TF-IDF, ``emb_{split}``:
    embeddings; a Snakemake ``input`` or a dict), as :func:`ranker_features` joins them."""
    keys = set(files.keys())

    def get(kind, loader):
        key = f"{kind}_{split}"
        return loader(files[key]) if key in keys else None

    return ranker_features(get("X", load_csr), get("emb", load_npy), get("Xc", load_csr))
