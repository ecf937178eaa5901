import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from xmc.linear import augment_bias, decision_function, fit_ova, load_weights, save_weights
from xmc.io import load_csr


def _problem(n=120, d=15, t=4, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.4, random_state=rng, format="csr")
    W = rng.standard_normal((d, t))
    S = X @ W
    Y = sp.csr_matrix((S > np.median(S, axis=0)).astype(np.float32))
    return X, Y


def test_matches_direct_linearsvc():
    X, Y = _problem()
    W = fit_ova(X, Y, C=1.0, threshold=0.0)
    assert sp.isspmatrix_csr(W) and W.dtype == np.float32 and W.shape == (4, X.shape[1] + 1)
    Xb = augment_bias(X, 1.0)
    for t in range(Y.shape[1]):
        y = np.where(Y[:, t].toarray().ravel() > 0, 1, -1)
        ref = LinearSVC(loss="squared_hinge", dual=True, C=1.0, fit_intercept=False, tol=0.1,
                        max_iter=100, random_state=0).fit(Xb, y)
        np.testing.assert_allclose(W[t].toarray().ravel(), ref.coef_.ravel(), rtol=1e-5, atol=1e-6)
        ours = decision_function(X, W)[:, t]
        np.testing.assert_array_equal(ours > 0, ref.decision_function(Xb) > 0)


def test_threshold_sparsifies_including_bias():
    X, Y = _problem(seed=1)
    dense = fit_ova(X, Y, threshold=0.0).toarray()
    thr = 0.3
    W = fit_ova(X, Y, threshold=thr)
    expected = np.where(np.abs(dense) >= thr, dense, 0.0)
    np.testing.assert_allclose(W.toarray(), expected, rtol=1e-6)
    assert W.nnz < np.count_nonzero(dense)
    assert np.all(np.abs(W.data) >= thr)


def test_constant_columns_and_parallel_determinism():
    X, Y = _problem(t=3, seed=2)
    Y = sp.hstack([Y, np.ones((X.shape[0], 1)), np.zeros((X.shape[0], 1))], format="csr")
    W = fit_ova(X, Y, bias=2.0)
    d = X.shape[1]
    assert W[3, :d].nnz == 0 and W[3, d] == pytest.approx(0.5)
    assert W[4, :d].nnz == 0 and W[4, d] == pytest.approx(-0.5)
    np.testing.assert_allclose(decision_function(X, W, bias=2.0)[:, 3:], np.tile([1.0, -1.0], (X.shape[0], 1)))
    W2 = fit_ova(X, Y, bias=2.0, n_jobs=2)
    assert (W != W2).nnz == 0
    # no rows at all: every column is a constant negative model
    W0 = fit_ova(X[:0], Y[:0])
    assert W0.shape == (5, d + 1) and np.all(W0[:, d].toarray() == -1)


def test_bad_arguments():
    X, Y = _problem()
    with pytest.raises(ValueError, match="C"):
        fit_ova(X, Y, C=0)
    with pytest.raises(ValueError, match="threshold"):
        fit_ova(X, Y, threshold=-1)
    with pytest.raises(ValueError, match="rows"):
        fit_ova(X[:10], Y)
    W = fit_ova(X, Y)
    with pytest.raises(ValueError, match="features"):
        decision_function(X[:, :5], W)


def test_weights_roundtrip_readable_by_load_csr(tmp_path):
    X, Y = _problem()
    W = fit_ova(X, Y)
    save_weights(tmp_path / "w.npz", W, C=1.0, negatives="tfn")
    W2, meta = load_weights(tmp_path / "w.npz")
    assert (W != W2).nnz == 0 and float(meta["C"]) == 1.0 and str(meta["negatives"]) == "tfn"
    assert (load_csr(tmp_path / "w.npz") != W).nnz == 0
