"""The matcher's nearest-neighbour shortlist (xmc/matcher/knn.py) on small hand-made embeddings."""
import numpy as np
import pytest
import scipy.sparse as sp

from xmc.matcher.knn import check_knn, knn_embedding, knn_shortlist
from xmc.metrics import shortlist_recall


def _memory():
    # 6 training documents in 3 directions; each direction's documents share their clusters
    E = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [0, 0, 1], [0, 0.1, 0.9]], dtype=np.float32)
    MC = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0],
                                 [0, 0, 0, 1], [0, 1, 0, 1]], dtype=np.float32))
    return E, MC


def test_votes_go_to_the_clusters_of_the_nearest_documents():
    E, MC = _memory()
    Q = np.array([[2, 0.1, 0], [0, 0, 3]], dtype=np.float32)  # scale does not matter: cosine
    out = knn_shortlist(Q, E, MC, top_b=2, k=2, power=1.0)
    assert out.shape == (2, 4) and np.diff(out.indptr).tolist() == [2, 2]
    assert sorted(out[0].indices) == [0, 1] and sorted(out[1].indices) == [1, 3]
    dense = out.toarray()
    assert dense[0, 0] == pytest.approx(1.0)  # both neighbours hold cluster 0
    assert dense[1, 3] == pytest.approx(1.0) and 0 < dense[1, 1] < 1
    assert dense[0, 0] > dense[0, 1]
    # a larger power leans on the nearest neighbour: document 0's cluster 1 gains
    sharp = knn_shortlist(Q, E, MC, top_b=2, k=2, power=8.0).toarray()
    assert sharp[0, 1] > dense[0, 1]


def test_training_documents_are_scored_leave_one_out():
    E, MC = _memory()
    with_self = knn_shortlist(E, E, MC, top_b=1, k=1, power=1.0)
    loo = knn_shortlist(E, E, MC, top_b=1, k=1, power=1.0, exclude_self=True)
    # each document's nearest other document is its pair's: document 0 gets document 1's cluster 0,
    # document 5 gets document 4's cluster 3
    assert with_self.indices.tolist()[2:4] == [2, 2]
    assert loo.toarray()[5, 3] == pytest.approx(1.0) and loo.toarray()[0, 0] == pytest.approx(1.0)
    assert knn_shortlist(E[:1], E, MC, top_b=1, k=1, power=1.0).toarray()[0, 0] == 1.0
    with pytest.raises(ValueError, match="the memory itself"):
        knn_shortlist(E[:2], E, MC, top_b=1, k=1, exclude_self=True)


def test_the_head_weight_mixes_in_the_heads_scores_and_breaks_ties():
    E, MC = _memory()
    Q = np.array([[1, 1, 0]], dtype=np.float32)  # as near to documents 1 and 2: clusters 0 and 2 tie
    head = sp.csr_matrix(np.array([[-1.0, -0.5, 0.8, -1.0]], dtype=np.float32))
    plain = knn_shortlist(Q, E, MC, top_b=1, k=2, power=0.0)
    assert plain.toarray()[0, [0, 2]].max() == pytest.approx(0.5)
    mixed = knn_shortlist(Q, E, MC, top_b=1, k=2, power=0.0, head=head, head_weight=0.1)
    assert mixed.indices.tolist() == [2]
    assert mixed.data[0] == pytest.approx(0.9 * 0.5 + 0.1 * 0.9)
    # all weight on the head: its own ranking (scores above 1 clipped)
    only = knn_shortlist(Q, E, MC, top_b=2, k=2, head=head * 1.5, head_weight=1.0)
    assert sorted(only.indices.tolist()) == [1, 2]


def test_the_shortlist_beats_a_random_one_on_clustered_data_and_keeps_the_callers_matrix():
    rng = np.random.default_rng(0)
    K, n, d = 20, 400, 16
    centres = rng.normal(size=(K, d))
    y = rng.integers(0, K, size=n + 100)
    X = centres[y] + 0.3 * rng.normal(size=(n + 100, d))
    MC = sp.csr_matrix((np.full(n, 2.0), (np.arange(n), y[:n])), shape=(n, K))
    before = MC.copy()
    out = knn_shortlist(X[n:], X[:n], MC, top_b=2, k=10, chunk_rows=7)  # chunks of odd size
    Y = sp.csr_matrix((np.ones(100), (np.arange(100), y[n:])), shape=(100, K))
    C = sp.identity(K, format="csr")
    assert shortlist_recall(out, Y, C)["label_recall"] >= 95.0
    assert (MC != before).nnz == 0
    assert np.all((out.data >= 0) & (out.data <= 1 + 1e-6))


@pytest.mark.parametrize("kwargs, message", [
    (dict(top_b=0), "top_b"), (dict(k=0), "k"), (dict(power=-1.0), "power"),
    (dict(head_weight=1.5), "head_weight"), (dict(head_weight=0.5), "head's scores"),
])
def test_bad_settings_are_refused(kwargs, message):
    E, MC = _memory()
    with pytest.raises(ValueError, match=message):
        knn_shortlist(E, E, MC, **{"top_b": 2, **kwargs})


def test_the_pretrained_weight_mixes_both_encoders_cosines():
    rng = np.random.default_rng(1)
    fine, pre = rng.normal(size=(5, 4)), rng.normal(size=(5, 3)) * 7  # scales do not matter
    assert knn_embedding(fine) is not None and (knn_embedding(fine) == fine.astype(np.float32)).all()
    joint = knn_embedding(fine, pre, pretrained_weight=0.3)
    assert joint.shape == (5, 7) and joint.dtype == np.float32

    def cos(A):
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        return A @ A.T

    assert joint @ joint.T == pytest.approx(0.7 * cos(fine) + 0.3 * cos(pre), abs=1e-5)
    assert knn_embedding(fine, pre, 1.0) @ knn_embedding(fine, pre, 1.0).T == pytest.approx(cos(pre), abs=1e-5)
    # the neighbours follow the mix: the query is nearest document 1 by the fine-tuned embedding
    # (cosines 0, 1, 0.8) and document 2 by the pretrained one (0, 0, 1)
    E_fine = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    E_pre = np.array([[0, 1], [0, 1], [1, 0]], dtype=np.float32)
    MC = sp.identity(3, format="csr", dtype=np.float32)
    Q_fine, Q_pre = np.array([[0, 1]], dtype=np.float32), np.array([[1, 0]], dtype=np.float32)

    def top(w):
        return knn_shortlist(knn_embedding(Q_fine, Q_pre, w), knn_embedding(E_fine, E_pre, w), MC,
                             top_b=1, k=1, power=1.0).indices.tolist()
    assert top(0.0) == [1] and top(0.1) == [1] and top(0.3) == [2]  # 0.9 > 0.82, 0.7 < 0.86
    with pytest.raises(ValueError, match="needs the pretrained"):
        knn_embedding(fine, None, 0.5)
    with pytest.raises(ValueError, match="one row per document"):
        knn_embedding(fine, pre[:4], 0.5)
    with pytest.raises(ValueError, match="knn.pretrained_weight"):
        knn_embedding(fine, pre, 1.5)


def test_check_knn_reads_a_manifests_settings():
    base = {"k": 200, "power": 8, "head_weight": 0.2}
    assert check_knn(base) is base  # pretrained_weight may be left out (configs and bundles before it)
    assert check_knn({**base, "power": np.float32(8), "pretrained_weight": 0.7})["pretrained_weight"] == 0.7
    for bad, message in (({**base, "extra": 1}, "keys"),
                         ({"k": 2, "power": 1}, "keys"), ({**base, "power": float("nan")}, "knn.power"),
                         ({**base, "head_weight": True}, "knn.head_weight"), ({**base, "k": 2.0}, "knn.k"),
                         ({**base, "pretrained_weight": -0.1}, "knn.pretrained_weight")):
        with pytest.raises(ValueError, match=message):
            check_knn(bad)


def test_mismatched_shapes_are_refused():
    E, MC = _memory()
    with pytest.raises(ValueError, match="same width"):
        knn_shortlist(E[:, :2], E, MC, top_b=2)
    with pytest.raises(ValueError, match="memory_clusters"):
        knn_shortlist(E, E, MC[:5], top_b=2)
    with pytest.raises(ValueError, match="head scores"):
        knn_shortlist(E, E, MC, top_b=2, head=sp.csr_matrix((6, 3)), head_weight=0.5)
