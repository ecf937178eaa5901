import numpy as np
import pytest
import scipy.sparse as sp

from xmc.indexing import BalancedKMeans, IndexerParams, default_n_clusters
from xmc.io import save_csr


def _clustered(n_per=25, n_groups=4, d=60, seed=0):
    """Labels drawn around n_groups well-separated directions (sparse, non-negative)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        base = np.zeros(d)
        base[g * (d // n_groups) : (g + 1) * (d // n_groups)] = 1.0
        rows.append(base + 0.1 * rng.random((n_per, d)))
    return sp.csr_matrix(np.vstack(rows))


def test_default_n_clusters_rule():
    # depth = floor(log2(L // 100 + 1)) + 1
    assert default_n_clusters(50) == 2
    assert default_n_clusters(100) == 4
    assert default_n_clusters(300) == 8
    assert default_n_clusters(3956) == 64  # Eurlex-4K: K = 64 as in the paper's table
    assert default_n_clusters(4300) == 64
    with pytest.raises(ValueError, match="n_labels"):
        default_n_clusters(0)


@pytest.mark.parametrize("n_labels,k", [(100, 8), (101, 8), (37, 4), (13, 8), (64, 64), (5, 1)])
def test_leaf_sizes_balanced(n_labels, k):
    rng = np.random.default_rng(n_labels)
    Z = sp.random(n_labels, 30, density=0.3, random_state=rng, format="csr")
    km = BalancedKMeans.train(Z, IndexerParams(n_clusters=k, seed=1))
    sizes = np.bincount(km.assignment_, minlength=k)
    assert sizes.sum() == n_labels and sizes.size == k
    assert sizes.max() - sizes.min() <= 1
    assert sizes.min() == n_labels // k
    assert km.assignment_.dtype == np.int64
    C = km.C_
    assert sp.isspmatrix_csr(C) and C.dtype == np.float32 and C.shape == (n_labels, k)
    assert np.all(np.diff(C.indptr) == 1)
    np.testing.assert_array_equal(C.indices, km.assignment_)


def test_recovers_separated_groups_and_dense_input():
    Z = _clustered()
    for inp in (Z, Z.toarray()):
        a = BalancedKMeans.train(inp, IndexerParams(n_clusters=4, seed=0)).assignment_
        # each group of 25 consecutive labels lands in exactly one leaf
        for g in range(4):
            assert len(set(a[g * 25 : (g + 1) * 25])) == 1
        assert len(set(a)) == 4


def test_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    Z = sp.random(200, 50, density=0.2, random_state=rng, format="csr")
    a = BalancedKMeans.train(Z, IndexerParams(n_clusters=8, seed=0))
    b = BalancedKMeans.train(Z, IndexerParams(n_clusters=8, seed=0))
    assert (a.C_ != b.C_).nnz == 0
    different = [
        not np.array_equal(a.assignment_, BalancedKMeans.train(Z, IndexerParams(n_clusters=8, seed=s)).assignment_)
        for s in (1, 2, 3)
    ]
    assert any(different)


@pytest.mark.parametrize("dense", [False, True])
def test_threads_split_the_same_tree(dense):
    """Nodes of a level split in parallel threads: the tree is the serial one."""
    rng = np.random.default_rng(3)
    Z = sp.random(300, 40, density=0.2, random_state=rng, format="csr")
    Z = Z.toarray() if dense else Z
    serial = BalancedKMeans.train(Z, IndexerParams(n_clusters=16, seed=0))
    for n_jobs in (2, -1):
        threaded = BalancedKMeans.train(Z, IndexerParams(n_clusters=16, seed=0), n_jobs=n_jobs)
        np.testing.assert_array_equal(threaded.assignment_, serial.assignment_)
        assert threaded.n_iter_ == serial.n_iter_


def test_zero_rows_do_not_crash():
    Z = sp.random(40, 20, density=0.3, random_state=0, format="lil")
    Z[5:25] = 0  # half the labels have no features
    km = BalancedKMeans.train(Z.tocsr(), IndexerParams(n_clusters=8))
    sizes = np.bincount(km.assignment_, minlength=8)
    assert sizes.max() - sizes.min() <= 1
    km0 = BalancedKMeans.train(sp.csr_matrix((6, 4)), IndexerParams(n_clusters=2))  # all zero
    assert np.bincount(km0.assignment_).tolist() == [3, 3]


@pytest.mark.parametrize("k", [3, 6, 0, -2, 2.0, 128])
def test_bad_n_clusters(k):
    Z = sp.random(100, 10, density=0.5, random_state=0, format="csr")
    with pytest.raises(ValueError, match="n_clusters"):
        BalancedKMeans.train(Z, IndexerParams(n_clusters=k))


def test_bad_inputs():
    with pytest.raises(ValueError, match="Z"):
        BalancedKMeans.train(np.array([1.0, 2.0]), IndexerParams(n_clusters=2))
    with pytest.raises(ValueError, match="NaN"):
        BalancedKMeans.train(np.array([[1.0, np.nan], [0.0, 1.0]]), IndexerParams(n_clusters=2))
    with pytest.raises(ValueError, match="max_iter"):
        BalancedKMeans.train(np.eye(4), IndexerParams(n_clusters=2, max_iter=0))
    with pytest.raises(ValueError, match="n_jobs"):
        BalancedKMeans.train(np.eye(4), IndexerParams(n_clusters=2), n_jobs=0)


def test_params_from_config_and_save_load(tmp_path):
    """IndexerParams mirror the config's indexing section (n_clusters null: the depth rule); the
    saved indexer is its C, written as save_csr writes any matrix."""
    assert IndexerParams.from_dict({"n_clusters": None, "max_iter": 5}) == IndexerParams(max_iter=5)
    with pytest.raises(ValueError, match="unknown parameter 'n_iter'"):
        IndexerParams.from_dict({"n_iter": 5})
    Z = sp.random(250, 30, density=0.2, random_state=0, format="csr")
    params = IndexerParams(max_iter=5, seed=3)
    km = BalancedKMeans.train(Z, params)
    assert km.C_.shape == (250, default_n_clusters(250))
    km.save(tmp_path / "C.npz")
    save_csr(tmp_path / "plain.npz", km.C_)
    assert (tmp_path / "C.npz").read_bytes() == (tmp_path / "plain.npz").read_bytes()
    again = BalancedKMeans.load(tmp_path / "C.npz", params)
    assert again.params is params
    np.testing.assert_array_equal(again.assignment_, km.assignment_)
    assert (again.C_ != km.C_).nnz == 0
    save_csr(tmp_path / "two.npz", sp.csr_matrix(np.ones((3, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match="exactly one cluster"):
        BalancedKMeans.load(tmp_path / "two.npz")
