import numpy as np
import pytest
import scipy.sparse as sp

from xmc.io import load_csr
from xmc.linear import fit_ova
from xmc.matcher.linear import LinearMatcher, LinearMatcherParams, LinearMatcherPredParams, level_sizes


def _clustered(n=400, d=60, k=16, seed=0):
    """Rows drawn around one of k cluster centres (plus noise features); M marks the centre."""
    rng = np.random.default_rng(seed)
    centres = rng.random((k, d)) * (rng.random((k, d)) < 0.15)
    which = rng.integers(0, k, size=n)
    X = centres[which] + 0.3 * rng.random((n, d)) * (rng.random((n, d)) < 0.1)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    M = sp.csr_matrix((np.ones(n), (np.arange(n), which)), shape=(n, k))
    return sp.csr_matrix(X), M, which


def test_level_sizes():
    assert level_sizes(64, None) == [64]
    assert level_sizes(64, 64) == [64]
    assert level_sizes(64, 16) == [16, 64]
    assert level_sizes(256, 4) == [4, 16, 64, 256]
    with pytest.raises(ValueError, match="evenly"):
        level_sizes(64, 3)
    with pytest.raises(ValueError, match="branching"):
        level_sizes(64, 1)


def _l3(s):
    return np.exp(-np.maximum(0.0, 1.0 - s) ** 3)


def _decision(X, W):
    return np.asarray((sp.csr_matrix(X) @ W[:, :-1].T).todense()) + W[:, -1].toarray().ravel()[None, :]


def _top1(P):
    """Each row's best stored cluster (scores may be negative: not argmax over implicit zeros)."""
    return np.array([P.indices[P.indptr[i] + np.argmax(P.data[P.indptr[i]:P.indptr[i + 1]])] for i in range(P.shape[0])])


def test_tree_matcher_finds_the_true_cluster():
    X, M, which = _clustered()
    tree = LinearMatcher.train(X, M, LinearMatcherParams(branching=4), LinearMatcherPredParams(top_b=3))
    assert [W.shape[0] for W in tree.levels_] == [4, 16] and tree.W_ is tree.levels_[-1]
    P = tree.predict(X)
    assert P.shape == M.shape and np.all(np.diff(P.indptr) == 3)
    # g is the decision value whose l3-hinge transform is the path product p in (0, 1]
    assert np.all(P.data <= 1) and np.all(np.isfinite(P.data))
    levels = [_l3(_decision(X, W)) for W in tree.levels_]
    for i in range(0, X.shape[0], 17):
        for c, g in zip(P.indices[P.indptr[i]:P.indptr[i + 1]], P.data[P.indptr[i]:P.indptr[i + 1]]):
            p = levels[0][i, c // 4] * levels[1][i, c]
            assert np.exp(-max(0.0, 1.0 - g) ** 3) == pytest.approx(p, rel=1e-4)
    top1 = _top1(P)
    assert np.mean(top1 == which) > 0.9
    flat_top1 = _top1(LinearMatcher.train(X, M, pred_params=LinearMatcherPredParams(top_b=3)).predict(X))
    assert np.mean(top1 == flat_top1) > 0.9


def test_threads_give_the_serial_tree_and_beam():
    """Level-2 parents are fit by parallel threads and beam batches scored in parallel: both must
    give exactly the serial result."""
    X, M, _ = _clustered(seed=3)
    serial = LinearMatcher.train(X, M, LinearMatcherParams(branching=4), LinearMatcherPredParams(top_b=3))
    threaded = LinearMatcher.train(X, M, LinearMatcherParams(branching=4), LinearMatcherPredParams(top_b=3), n_jobs=2)
    for a, b in zip(serial.levels_, threaded.levels_):
        assert (a != b).nnz == 0
    P = serial.predict(X)
    assert (threaded.predict(X, batch_size=7) != P).nnz == 0


def test_deeper_nodes_train_on_their_parents_rows_only():
    X, M, which = _clustered(seed=1)
    tree = LinearMatcher.train(X, M, LinearMatcherParams(branching=4, threshold=0.0), LinearMatcherPredParams(top_b=2))
    rows = np.flatnonzero(which // 4 == 2)  # true clusters 8..11 share parent 2
    expected = fit_ova(X[rows], M[rows][:, 8:12], threshold=0.0)
    np.testing.assert_allclose(tree.W_[8:12].toarray(), expected.toarray(), rtol=1e-6)


def test_save_load_roundtrip(tmp_path):
    X, M, _ = _clustered(seed=2)
    tree = LinearMatcher.train(X, M, LinearMatcherParams(branching=4), LinearMatcherPredParams(top_b=2))
    tree.save(tmp_path / "tree.npz")
    again = LinearMatcher.load(tmp_path / "tree.npz")
    assert again.params == tree.params and again.pred_params == tree.pred_params and len(again.levels_) == 2
    assert (tree.predict(X) != again.predict(X)).nnz == 0
    flat = LinearMatcher.train(X, M, pred_params=LinearMatcherPredParams(top_b=2))
    flat.save(tmp_path / "flat.npz")
    assert (load_csr(tmp_path / "flat.npz") != flat.W_).nnz == 0
    assert LinearMatcher.load(tmp_path / "flat.npz").params.branching is None


def test_prediction_params_and_their_keyword_overrides():
    """predict takes one LinearMatcherPredParams (default: the model's); a keyword replaces one field."""
    X, M, _ = _clustered(seed=4)
    tree = LinearMatcher.train(X, M, LinearMatcherParams(branching=4), LinearMatcherPredParams(top_b=2))
    assert np.all(np.diff(tree.predict(X).indptr) == 2)
    wide = tree.predict(X, LinearMatcherPredParams(top_b=5, batch_size=9))
    assert np.all(np.diff(wide.indptr) == 5)
    assert (tree.predict(X, top_b=5) != wide).nnz == 0
    assert (tree.predict(X, LinearMatcherPredParams(top_b=1), top_b=5) != wide).nnz == 0
    with pytest.raises(ValueError, match="top_b"):
        tree.predict(X, top_b=0)
    with pytest.raises(ValueError, match="unknown parameter 'beam'"):
        tree.predict(X, beam=3)
    assert LinearMatcherParams.from_dict({"C": 2.0, "branching": 4}) == LinearMatcherParams(C=2.0, branching=4)
