"""xmc.vectorizer_store: a fitted vectorizer stored as data (no pickle) transforms as the original."""
from __future__ import annotations

import zipfile

import pytest

from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
from xmc.vectorizer_store import load_vectorizer, save_vectorizer

TRAIN = ["the cat sat on the mat", "a dog ate the bone", "café au lait et croissant",
         "the dog and the cat", "naïve models of text", "bone of the dog"] * 3
TEST = ["the cat ate a croissant", "unseen words only", "dog dog dog", "café"]


@pytest.mark.parametrize("params", [
    TfidfParams(min_df=1),
    TfidfParams(min_df=2, max_features=7, sublinear_tf=False, dtype="float64"),
    TfidfParams(analyzer="char_wb", ngram_range=(2, 4), min_df=1),
    TfidfParams(analyzer="char", ngram_range=(1, 3), min_df=1),
], ids=["word", "word-pruned", "char_wb", "char"])
def test_stored_vectorizer_transforms_exactly_as_the_fitted_one(tmp_path, params):
    vectorizer, _ = fit_tfidf(TRAIN, params)
    save_vectorizer(vectorizer, tmp_path / "v.npz")
    with zipfile.ZipFile(tmp_path / "v.npz") as zf:  # only plain arrays: no object array, no pickle
        assert sorted(zf.namelist()) == ["idf.npy", "meta.npy", "terms.npy"]
    loaded = load_vectorizer(tmp_path / "v.npz")
    assert type(loaded) is type(vectorizer)
    want, got = transform_tfidf(vectorizer, TEST), transform_tfidf(loaded, TEST)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert (got != want).nnz == 0
