"""phi_char: xmc.char_tfidf counts character n-grams per distinct word; its features must be
scikit-learn's TfidfVectorizer(analyzer="char_wb") exactly."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from xmc.char_tfidf import CharNgramTfidf, word_ngrams
from xmc.features import TfidfParams, fit_tfidf, transform_tfidf

TRAIN = ["The cat sat on the mat", "the dog sat on the log, a dog!", "A cat and a dog",
         "birds fly over the mat\tand   the  hills", "the cat chased the dog again and again",
         "aaaa aaa a", "", "Über Straße: the cat's mat", "x\ny z"]
TEST = ["the zebra sat on the cat", "Unseen wordsmith catalogue", "", "a"]


def sklearn_char_wb(**kw):
    return TfidfVectorizer(analyzer="char_wb", norm="l2", dtype=np.float32, **kw)


@pytest.mark.parametrize("kw", [
    dict(ngram_range=(3, 5)),
    dict(ngram_range=(1, 3), min_df=2),
    dict(ngram_range=(2, 4), max_features=25, sublinear_tf=True),  # cut among equal frequencies too
    dict(ngram_range=(3, 5), min_df=0.2, max_df=0.6, lowercase=False),
    dict(ngram_range=(4, 4), max_df=3, sublinear_tf=True),
])
def test_char_ngram_tfidf_equals_scikit_learns_char_wb(kw):
    ours, ref = CharNgramTfidf(**kw), sklearn_char_wb(**kw)
    X, X_ref = ours.fit_transform(TRAIN), ref.fit_transform(TRAIN)
    assert ours.vocabulary_ == ref.vocabulary_
    np.testing.assert_array_equal(ours.idf_, ref.idf_)
    for A, B in ((X, X_ref), (ours.transform(TEST), ref.transform(TEST))):
        assert sp.isspmatrix_csr(A) and A.dtype == np.float32 and A.shape == B.shape
        B = sp.csr_matrix(B)
        B.sort_indices()
        np.testing.assert_array_equal(A.indptr, B.indptr)
        np.testing.assert_array_equal(A.indices, B.indices)
        np.testing.assert_allclose(A.data, B.data, rtol=1e-6)


def test_word_ngrams_are_scikit_learns_per_word():
    analyzer = sklearn_char_wb(ngram_range=(2, 5), lowercase=False).build_analyzer()
    for word in ("a", "ab", "abc", "abcd", "aaaa", "Straße"):
        assert word_ngrams(word, 2, 5) == analyzer(word)


def test_char_ngram_tfidf_errors():
    with pytest.raises(ValueError, match="no terms remain"):
        CharNgramTfidf(min_df=2).fit_transform(["ab cd", "ef gh"])
    with pytest.raises(ValueError, match="max_df corresponds"):
        CharNgramTfidf(min_df=3, max_df=2).fit_transform(TRAIN)
    with pytest.raises(ValueError, match="fit_transform before transform"):
        CharNgramTfidf().transform(TEST)


def test_fit_tfidf_analyzers():
    """char_wb goes through CharNgramTfidf, the other analyzers through scikit-learn; both pickle
    with the workflow's vectorizer and transform new texts."""
    import pickle

    vec, X = fit_tfidf(TRAIN, TfidfParams(analyzer="char_wb", ngram_range=(3, 5), min_df=1))
    assert isinstance(vec, CharNgramTfidf) and X.dtype == np.float32
    vec = pickle.loads(pickle.dumps(vec))
    Xt = transform_tfidf(vec, TEST)
    assert Xt.shape == (len(TEST), X.shape[1]) and Xt[2].nnz == 0 and Xt[0].nnz > 0
    vec, X = fit_tfidf(TRAIN, TfidfParams(analyzer="char", ngram_range=(2, 2), min_df=1))
    assert isinstance(vec, TfidfVectorizer) and " c" in vec.vocabulary_ and "t s" not in vec.vocabulary_
    with pytest.raises(ValueError, match="analyzer"):
        TfidfParams(analyzer="chars")
