import numpy as np
import pytest
import scipy.sparse as sp

from xmc.features import ranker_features
from xmc.indexing import BalancedKMeans, IndexerParams, cluster_targets
from xmc.io import load_csr
from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams
from xmc.metrics import precision_recall_at_k, top_k_indices
from xmc.ranker import (
    COMBINE_METHODS,
    Ranker,
    RankerParams,
    RankerPredParams,
    candidate_matrix,
    combine_scores,
    shard_clusters,
)


def _random_01(n, m, density, rng):
    return sp.csr_matrix((rng.random((n, m)) < density).astype(np.float32))


def test_cluster_targets_binarised():
    Y = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    C = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32))
    M = cluster_targets(Y, C)
    np.testing.assert_array_equal(M.toarray(), [[1, 0], [0, 1], [0, 0]])
    with pytest.raises(ValueError, match="labels"):
        cluster_targets(Y, C[:3])


@pytest.mark.parametrize("seed", range(5))
def test_candidate_matrix_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = 30, 7
    M_true = _random_01(n, k, 0.25, rng)
    scores = rng.standard_normal((n, k))
    top = np.argsort(-scores, axis=1)[:, :3]
    rows = np.repeat(np.arange(n), 3)
    vals = scores[rows, top.ravel()]
    vals[0] = 0.0  # an explicit 0 score is still a selected cluster
    M_pred = sp.csr_matrix((vals, (rows, top.ravel())), shape=(n, k))
    assert M_pred.nnz == 3 * n
    Mt = M_true.toarray()
    ref = {
        "tfn": {(i, c) for i in range(n) for c in range(k) if Mt[i, c] != 0},
        "man": {(i, c) for i in range(n) for c in top[i]},
    }
    ref["tfn+man"] = ref["tfn"] | ref["man"]
    for neg, expected in ref.items():
        got = candidate_matrix(M_true, M_pred, neg)
        assert got.dtype == bool and got.shape == (n, k)
        assert set(zip(*got.nonzero())) == expected, neg


def test_candidate_matrix_errors():
    M = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="needs M_pred"):
        candidate_matrix(M, None, "man")
    with pytest.raises(ValueError, match="accepted"):
        candidate_matrix(M, M, "hard")
    with pytest.raises(ValueError, match="shape"):
        candidate_matrix(M, M[:2], "tfn+man")


def test_combine_scores_hand_values():
    g, h = np.array([0.0, 2.0]), np.array([1.0, -1.0])
    np.testing.assert_allclose(combine_scores(g, h, "noop"), [1.0, -1.0])
    sig = lambda v: 1 / (1 + np.exp(-v))
    np.testing.assert_allclose(combine_scores(g, h, "sigmoid"), [0.5 * sig(1.0), sig(2.0) * sig(-1.0)])
    # l2: g=0 -> exp(-1); h=1 -> exp(0) ; g=2 -> 1 ; h=-1 -> exp(-4)
    np.testing.assert_allclose(combine_scores(g, h, "l2-hinge"), [np.exp(-1.0), np.exp(-4.0)])
    np.testing.assert_allclose(combine_scores(g, h, "l3-hinge"), [np.exp(-1.0), np.exp(-8.0)])
    assert combine_scores(1.0, np.zeros((2, 3)), "noop").shape == (2, 3)
    assert set(COMBINE_METHODS) == {"noop", "sigmoid", "l2-hinge", "l3-hinge"}
    with pytest.raises(ValueError, match="noop, sigmoid"):
        combine_scores(g, h, "softmax")


def test_ranker_features():
    X = sp.csr_matrix(np.array([[3.0, 4.0], [0.0, 0.0]]))
    emb = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    assert (ranker_features(X) != X).nnz == 0
    F = ranker_features(X, emb)
    assert sp.isspmatrix_csr(F) and F.dtype == np.float32 and F.shape == (2, 5)
    np.testing.assert_allclose(F.toarray(), [[0.6, 0.8, 0, 1, 0], [0, 0, 1, 0, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match="emb"):
        ranker_features(X, emb[:1])
    # phi_pre: the embeddings alone, l2-normalised, as CSR
    P = ranker_features(None, np.array([[3.0, 0.0, 4.0], [0.0, 2.0, 0.0]]))
    assert sp.isspmatrix_csr(P) and P.dtype == np.float32
    np.testing.assert_allclose(P.toarray(), [[0.6, 0, 0.8], [0, 1, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match="got none"):
        ranker_features(None, None)
    # phi_char alone as is; beside phi_tfidf each block on the unit sphere
    Xc = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [0.6, 0.0, 0.8]], dtype=np.float32))
    assert (ranker_features(None, X_char=Xc) != Xc).nnz == 0
    F = ranker_features(X, X_char=Xc)
    assert sp.isspmatrix_csr(F) and F.dtype == np.float32 and F.shape == (2, 5)
    np.testing.assert_allclose(F.toarray(), [[0.6, 0.8, 0, 1, 0], [0, 0, 0.6, 0, 0.8]], rtol=1e-6)
    with pytest.raises(ValueError, match="X_tfidf 2, X_char 1"):
        ranker_features(X, X_char=Xc[:1])
    with pytest.raises(ValueError, match="X_char: expected a 2-d sparse"):
        ranker_features(X, X_char=Xc.toarray())


def _synthetic(n=400, n_labels=32, d=200, seed=0):
    """Each label owns 6 features; an instance has 1-2 labels and their features plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols, yr, yc = [], [], [], []
    for i in range(n):
        labels = rng.choice(n_labels, size=rng.integers(1, 3), replace=False)
        for l in labels:
            yr.append(i)
            yc.append(l)
            feats = l * 6 + rng.choice(6, size=4, replace=False)
            rows += [i] * 4
            cols += list(feats)
        noise = rng.integers(n_labels * 6, d, size=5)
        rows += [i] * 5
        cols += list(noise)
    X = sp.csr_matrix((rng.random(len(rows)) + 0.5, (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(axis=1))))
    Y = sp.csr_matrix((np.ones(len(yr), np.float32), (yr, yc)), shape=(n, n_labels))
    return X, Y


@pytest.fixture(scope="module")
def fitted():
    X, Y = _synthetic()
    C = BalancedKMeans.train(sp.csr_matrix(Y.T @ X), IndexerParams(n_clusters=8, seed=0)).C_
    M = cluster_targets(Y, C)
    Mp = LinearMatcher.train(X, M, pred_params=LinearMatcherPredParams(top_b=3)).predict(X)
    ranker = Ranker.train(X, Y, C, Mp, RankerParams(negatives="tfn+man"), progress=False)
    return X, Y, C, Mp, ranker


def test_ranker_fits_separable_problem(fitted):
    X, Y, C, Mp, ranker = fitted
    assert ranker.W_.shape == (Y.shape[1], X.shape[1] + 1) and ranker.W_.dtype == np.float32
    assert ranker.n_clusters_ == 8
    for combine in COMBINE_METHODS:
        P = ranker.predict(X, Mp, combine=combine, top_k=5)
        m = precision_recall_at_k(P, Y, ks=(1,))
        assert m["P@1"] > 95.0, (combine, m)


def test_ranker_scores_only_selected_clusters(fitted):
    X, Y, C, Mp, ranker = fitted
    P = ranker.predict(X, Mp, top_k=100)
    label_cluster = np.asarray(C.argmax(axis=1)).ravel()
    Pc = P.tocoo()
    allowed = Mp.toarray() != 0
    assert np.all(allowed[Pc.row, label_cluster[Pc.col]])
    # every label of a selected cluster is scored (top_k larger than 3 clusters x 4 labels)
    assert np.all(np.diff(P.indptr) == 3 * 4)
    # h equals the direct linear score [x, 1] . w_l
    d = X.shape[1]
    direct = (X @ ranker.W_[:, :d].T).toarray() + ranker.W_[:, d].toarray().ravel()
    np.testing.assert_allclose(Pc.data, direct[Pc.row, Pc.col], rtol=1e-4, atol=1e-5)
    # top_k keeps the best scores per row
    P2 = ranker.predict(X, Mp, top_k=2)
    assert np.all(np.diff(P2.indptr) == 2)
    full = P.toarray()
    for i in range(0, X.shape[0], 37):
        best = np.sort(full[i][P[i].indices])[::-1][:2]
        np.testing.assert_allclose(np.sort(P2[i].data)[::-1], best)


def test_kept_blocks_predict_the_same(fitted):
    """keep_blocks (a served bundle) caches the transposed weights; scores are identical, and
    the cache follows new weights."""
    import copy

    X, Y, C, Mp, ranker = fitted
    lazy = ranker.predict(X, Mp, top_k=5)
    kept = copy.deepcopy(ranker)
    kept.keep_blocks = True
    first = kept.predict(X, Mp, top_k=5)
    assert kept._blocks is not None
    np.testing.assert_array_equal(first.toarray(), lazy.toarray())
    np.testing.assert_array_equal(kept.predict(X, Mp, top_k=5).toarray(), lazy.toarray())
    kept.W_ = sp.csr_matrix(kept.W_ * 2.0, dtype=np.float32)
    np.testing.assert_allclose(kept.predict(X, Mp, top_k=5).toarray(), 2 * lazy.toarray(), rtol=1e-6)
    assert ranker._blocks is None  # the default keeps nothing


def test_tfn_trains_on_fewer_rows_than_man_union(fitted):
    X, Y, C, Mp, _ = fitted
    n_tfn = candidate_matrix(cluster_targets(Y, C), Mp, "tfn").nnz
    n_union = candidate_matrix(cluster_targets(Y, C), Mp, "tfn+man").nnz
    assert n_tfn < n_union
    r = Ranker.train(X, Y, C, None, RankerParams(negatives="tfn"), progress=False)  # TFN needs no matcher output
    assert r.W_.shape == (Y.shape[1], X.shape[1] + 1)


def test_save_load_roundtrip(tmp_path, fitted):
    X, Y, C, Mp, ranker = fitted
    path = tmp_path / "model.npz"
    ranker.save(path)
    r2 = Ranker.load(path)
    assert (r2.W_ != ranker.W_).nnz == 0
    assert r2.params == ranker.params and r2.n_jobs == ranker.n_jobs
    np.testing.assert_array_equal(r2.assignment_, ranker.assignment_)
    P1 = ranker.predict(X, Mp, combine="sigmoid")
    P2 = r2.predict(X, Mp, combine="sigmoid")
    assert (P1 != P2).nnz == 0
    assert load_csr(path).shape == ranker.W_.shape


def test_linear_matcher_topb_and_roundtrip(tmp_path, fitted):
    X, Y, C, Mp, _ = fitted
    assert np.all(np.diff(Mp.indptr) == 3) and Mp.dtype == np.float32
    M = LinearMatcher.train(X, cluster_targets(Y, C), pred_params=LinearMatcherPredParams(top_b=3))
    from xmc.linear import decision_function

    scores = decision_function(X, M.W_)
    for i in range(0, X.shape[0], 50):
        order = np.argsort(-scores[i], kind="stable")[:3]
        assert set(Mp[i].indices) == set(order)
    M.save(tmp_path / "linear.npz")
    M2 = LinearMatcher.load(tmp_path / "linear.npz")
    assert (M2.predict(X, top_b=2) != M.predict(X, top_b=2)).nnz == 0
    # ties -> lower index
    from xmc.matcher.linear import top_b_dense

    T = top_b_dense(np.array([[1.0, 2.0, 2.0, 0.0]]), 2)
    assert T.indices.tolist() == [1, 2]
    T = top_b_dense(np.array([[0.0, 0.0, 0.0]]), 2)
    assert T.indices.tolist() == [0, 1] and T.nnz == 2  # zero scores stay stored


def test_ranker_errors(fitted):
    X, Y, C, Mp, ranker = fitted
    with pytest.raises(ValueError, match="needs M_pred"):
        Ranker.train(X, Y, C, None, RankerParams(negatives="man"), progress=False)
    C_bad = sp.lil_matrix(C, copy=True)
    C_bad[0, 0] = 1.0
    C_bad[0, 1] = 1.0
    C_bad = C_bad.tocsr()
    with pytest.raises(ValueError, match="exactly one cluster"):
        Ranker.train(X, Y, C_bad, Mp, progress=False)
    with pytest.raises(ValueError, match="features"):
        ranker.predict(X[:, :10], Mp)
    with pytest.raises(ValueError, match="M_pred"):
        ranker.predict(X, Mp[:, :4])
    with pytest.raises(ValueError, match="accepted"):
        ranker.predict(X, Mp, combine="max")
    with pytest.raises(ValueError, match="top_k"):
        ranker.predict(X, Mp, RankerPredParams(top_k=0))
    with pytest.raises(ValueError, match="negatives"):
        RankerParams.from_dict({"negatives": "all"})


def test_prediction_params_and_their_keyword_overrides(fitted):
    X, Y, C, Mp, ranker = fitted
    pp = RankerPredParams(combine="l3-hinge", top_k=4, batch_size=7)
    P = ranker.predict(X, Mp, pp)
    assert np.all(np.diff(P.indptr) <= 4)
    assert (ranker.predict(X, Mp, combine="l3-hinge", top_k=4) != P).nnz == 0
    assert (ranker.predict(X, Mp, RankerPredParams(top_k=4, batch_size=7), combine="l3-hinge") != P).nnz == 0


def test_parallel_fit_equals_serial_fit(fitted):
    X, Y, C, Mp, ranker = fitted
    parallel = Ranker.train(X, Y, C, Mp, RankerParams(negatives="tfn+man"), progress=False, n_jobs=2)
    assert (parallel.W_ != ranker.W_).nnz == 0


@pytest.mark.parametrize("n_shards", [2, 3, 8])
def test_sharded_fit_merged_equals_one_fit(fitted, tmp_path, n_shards):
    X, Y, C, Mp, ranker = fitted
    parts = []
    for s in range(n_shards):
        part = Ranker.train(X, Y, C, Mp, RankerParams(negatives="tfn+man"), progress=False,
                            clusters=shard_clusters(8, n_shards, s))
        part.save(tmp_path / f"shard{s}.npz")  # the workflow merges saved shards
        parts.append(Ranker.load(tmp_path / f"shard{s}.npz"))
    # a shard scores only its own clusters' labels
    own = np.isin(ranker.assignment_, parts[0].clusters_)
    assert set(parts[0].predict(X, Mp, top_k=5).indices) <= set(np.flatnonzero(own))
    assert parts[0].W_[~own].nnz == 0 and parts[0].W_[own].nnz > 0
    merged = Ranker.merge(parts[::-1])
    assert merged.W_.shape == ranker.W_.shape and (merged.W_ != ranker.W_).nnz == 0
    np.testing.assert_array_equal(merged.clusters_, np.arange(8))
    for combine in ("noop", "l3-hinge"):
        a, b = merged.predict(X, Mp, combine=combine, top_k=5), ranker.predict(X, Mp, combine=combine, top_k=5)
        assert (a != b).nnz == 0


def test_shard_and_merge_errors(fitted):
    X, Y, C, Mp, ranker = fitted
    assert [list(shard_clusters(5, 2, s)) for s in range(2)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError, match="must not exceed the number of clusters"):
        shard_clusters(4, 5, 0)
    with pytest.raises(ValueError, match="shard must be in"):
        shard_clusters(4, 2, 2)
    half = Ranker.train(X, Y, C, Mp, RankerParams(negatives="tfn+man"), progress=False,
                        clusters=shard_clusters(8, 2, 0))
    with pytest.raises(ValueError, match="in no shard"):
        Ranker.merge([half])
    with pytest.raises(ValueError, match="overlap"):
        Ranker.merge([half, half])
    other = Ranker.train(X, Y, C, Mp, RankerParams(negatives="tfn+man", C=2.0), progress=False,
                         clusters=shard_clusters(8, 2, 1))
    with pytest.raises(ValueError, match="C=2.0"):
        Ranker.merge([half, other])


def _bomb_problem(n_bomb_labels=5000, per_cluster=100, seed=0):
    """4 topics x 40 training documents, each with one of its topic's 2 labels and its topic's features;
    plus ONE training document carrying ``n_bomb_labels`` labels of its own, which the indexer put
    in clusters of their own (``per_cluster`` labels each). Test documents: 10 per topic."""
    rng = np.random.default_rng(seed)
    n_topics, per_topic, d = 4, 40, 40

    def docs(n, topic):
        X = np.zeros((n, d), dtype=np.float32)
        cols = topic * 10 + rng.integers(0, 10, size=(n, 4))
        for i in range(n):
            X[i, cols[i]] = 1.0
        X[:, 35:] = rng.random((n, 5)) < 0.3  # shared noise features
        return X

    X = np.vstack([docs(per_topic, t) for t in range(n_topics)] + [rng.random((1, d)).astype(np.float32)])
    n = X.shape[0]
    L = 2 * n_topics + n_bomb_labels
    Y = sp.lil_matrix((n, L), dtype=np.float32)
    for t in range(n_topics):  # a topic's documents carry one of its two labels, alternately
        Y[t * per_topic:(t + 1) * per_topic:2, 2 * t] = 1
        Y[t * per_topic + 1:(t + 1) * per_topic:2, 2 * t + 1] = 1
    Y[n - 1, 2 * n_topics:] = 1
    n_bomb_clusters = n_bomb_labels // per_cluster
    assign = np.concatenate([np.repeat(np.arange(n_topics), 2),
                             n_topics + np.arange(n_bomb_labels) // per_cluster])
    C = sp.csr_matrix((np.ones(L, dtype=np.float32), (np.arange(L), assign)), shape=(L, n_topics + n_bomb_clusters))
    X_test = np.vstack([docs(10, t) for t in range(n_topics)])
    truth = np.repeat(np.arange(n_topics), 10)
    # the matcher's shortlist of a test text: its topic's cluster and two bomb clusters, equally scored
    rows = np.repeat(np.arange(len(truth)), 3)
    cols = np.stack([truth, n_topics + truth, n_topics + n_bomb_clusters - 1 - truth], axis=1).ravel()
    M_test = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(len(truth), C.shape[1]))
    Y_test = sp.csr_matrix((np.ones(2 * len(truth), dtype=np.float32),
                            (np.repeat(np.arange(len(truth)), 2), np.stack([2 * truth, 2 * truth + 1], 1).ravel())),
                           shape=(len(truth), L))
    return sp.csr_matrix(X), sp.csr_matrix(Y), C, sp.csr_matrix(X_test), M_test, Y_test


@pytest.mark.parametrize("negatives", ["tfn", "tfn+man"])
def test_one_document_with_5000_labels_does_not_make_every_prediction_1(negatives, caplog):
    """Without negatives, the 50 clusters of the 5,000-label document learn "always yes" and their
    labels take the top of every shortlist they are in (P@1 0); with random negatives they score
    low, the topic labels mostly come first, and the run warns naming the clusters."""
    X, Y, C, X_test, M_test, Y_test = _bomb_problem()
    M_train = cluster_targets(Y, C)  # a matcher that is right on the training texts
    with caplog.at_level("WARNING", logger="xmc.ranker"):
        ranker = Ranker.train(X, Y, C, M_train if "man" in negatives else None, RankerParams(negatives=negatives),
                              progress=False)
    assert "50 cluster(s) had no negative document" in caplog.text and "cluster 4 (documents [160])" in caplog.text
    for combine in ("noop", "l3-hinge"):
        S = ranker.predict(X_test, M_test, combine=combine, top_k=5)
        p1 = precision_recall_at_k(Y_test, S, ks=(1,))["P@1"]
        assert p1 >= 75.0, (combine, p1)  # 2.5 without the negatives: a bomb label came first
        bomb = S[:, 8:].toarray()
        assert bomb.max() < 0.5  # not 1.0 for every text


def _one_cluster_ranker(weights):
    """A ranker over one cluster of len(weights) labels and one feature: h_l = weights[l] * x."""
    r = Ranker(RankerParams(bias=1.0))
    r.W_ = sp.csr_matrix(np.array([[w, 0.0] for w in weights], dtype=np.float32))
    r.assignment_ = np.zeros(len(weights), dtype=np.int64)
    r.n_clusters_ = 1
    return r


@pytest.mark.parametrize("combine", ["l3-hinge", "l2-hinge", "sigmoid"])
def test_saturated_scores_are_ordered_by_the_ranker_score(combine):
    # h = 1.5, 20, 40: exp(-max(0, 1 - h)^p) is exactly 1 for all three (sigmoid(g) sigmoid(h) is
    # one float32 value for the last two), so the label index used to order them; h orders them now.
    r = _one_cluster_ranker([1.5, 20.0, 40.0])
    X = sp.csr_matrix(np.array([[1.0]]))
    M = sp.csr_matrix(np.array([[40.0]]))  # matcher score g saturated too
    P = r.predict(X, M, combine=combine, top_k=3)
    assert top_k_indices(P, 3)[0].tolist() == [2, 1, 0]
    assert precision_recall_at_k(P, sp.csr_matrix(np.array([[0.0, 0.0, 1.0]])), ks=(1,))["P@1"] == 100.0
