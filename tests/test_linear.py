import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from xmc.io import load_weights, save_weights
from xmc.linear import augment_bias, decision_function, fit_ova, fit_ova_blocks
from xmc.io import load_csr


def _problem(n=120, d=15, t=4, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.4, random_state=rng, format="csr")
    W = rng.standard_normal((d, t))
    S = X @ W
    Y = sp.csr_matrix((S > np.median(S, axis=0)).astype(np.float32))
    return X, Y


def _reference(X, y, bias=1.0, C=1.0, tol=0.1, max_iter=100):
    return LinearSVC(loss="squared_hinge", dual=True, C=C, fit_intercept=False, tol=tol,
                     max_iter=max_iter, random_state=0).fit(augment_bias(X, bias), y)


@pytest.mark.parametrize("C, bias, dtype", [(1.0, 1.0, np.float64), (0.3, 2.0, np.float32), (4.0, 0.5, np.float32)])
def test_dcd_reaches_linearsvc_optimum(C, bias, dtype):
    """Converged, both solvers find the unique optimum of the same (strictly convex) problem."""
    X, Y = _problem(n=200, d=30, t=5, seed=3)
    X = X.astype(dtype)
    W = fit_ova(X, Y, C=C, bias=bias, threshold=0.0, tol=1e-7, max_iter=20000)
    assert sp.isspmatrix_csr(W) and W.dtype == np.float32 and W.shape == (5, X.shape[1] + 1)
    for t in range(Y.shape[1]):
        y = np.where(Y[:, t].toarray().ravel() > 0, 1, -1)
        ref = _reference(X.astype(np.float64), y, bias=bias, C=C, tol=1e-7, max_iter=20000)
        np.testing.assert_allclose(W[t].toarray().ravel(), ref.coef_.ravel(), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(decision_function(X, W, bias=bias)[:, t] > 0,
                                      ref.decision_function(augment_bias(X, bias)) > 0)


def test_dcd_default_tolerance_close_to_linearsvc():
    """At the PECOS defaults (tol 0.1, 100 iterations) the two solvers visit the rows in different
    random orders, so the weights differ a little, and the decisions almost never."""
    X, Y = _problem(n=400, d=50, t=6, seed=4)
    W = fit_ova(X, Y, threshold=0.0)
    agree = []
    for t in range(Y.shape[1]):
        y = np.where(Y[:, t].toarray().ravel() > 0, 1, -1)
        ref = _reference(X, y)
        w = W[t].toarray().ravel()
        assert np.linalg.norm(w - ref.coef_.ravel()) < 0.1 * np.linalg.norm(ref.coef_)
        agree.append(np.mean((decision_function(X, W)[:, t] > 0) == (ref.decision_function(augment_bias(X)) > 0)))
    assert np.mean(agree) > 0.97


def test_dcd_unused_columns_map_back():
    """Columns that no row uses get no weight; the others land on their original positions."""
    X, Y = _problem(n=150, d=12, t=3, seed=5)
    wide = sp.hstack([sp.csr_matrix((150, 7)), X, sp.csr_matrix((150, 5))], format="csr")
    W = fit_ova(wide, Y, threshold=0.0, tol=1e-6, max_iter=5000)
    W_narrow = fit_ova(X, Y, threshold=0.0, tol=1e-6, max_iter=5000)
    assert W.shape == (3, 7 + 12 + 5 + 1)
    assert W[:, :7].nnz == 0 and W[:, 19:24].nnz == 0
    np.testing.assert_allclose(W[:, 7:19].toarray(), W_narrow[:, :12].toarray(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(W[:, 24].toarray(), W_narrow[:, 12].toarray(), rtol=1e-5, atol=1e-7)


def test_target_does_not_depend_on_the_others():
    """Each target restarts the random order from the seed: solving a subset gives the same rows."""
    X, Y = _problem(n=200, d=20, t=5, seed=6)
    W = fit_ova(X, Y, threshold=0.0)
    W_sub = fit_ova(X, Y[:, [1, 3]], threshold=0.0, n_jobs=2)
    assert (W[[1, 3]] != W_sub).nnz == 0


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


def test_fit_ova_blocks_equals_one_fit_per_problem_for_any_n_jobs():
    """Problems are solved largest first by several threads; each result must still be its own
    problem's fit_ova, returned in the problems' order."""
    X, Y = _problem(n=300, d=25, t=6, seed=7)
    rng = np.random.default_rng(0)
    row_sets = [np.sort(rng.choice(300, size=s, replace=False)) for s in (40, 250, 120, 90)]
    col_sets = [[0, 1], [2, 3, 4, 5], [1], [5, 0, 3]]
    expected = [fit_ova(X[r], Y[r][:, c]) for r, c in zip(row_sets, col_sets)]
    for n_jobs in (1, 2, 3):
        done = []
        got = fit_ova_blocks(X, Y, row_sets, col_sets, n_jobs=n_jobs, callback=lambda: done.append(1))
        assert len(got) == 4 and len(done) == 4
        for W, E in zip(got, expected):
            assert W.shape == E.shape and (W != E).nnz == 0
    assert fit_ova_blocks(X, Y, [], [], n_jobs=2) == []
    with pytest.raises(ValueError, match="row_sets and col_sets"):
        fit_ova_blocks(X, Y, row_sets, col_sets[:2])
    with pytest.raises(ValueError, match="n_jobs"):
        fit_ova_blocks(X, Y, row_sets, col_sets, n_jobs=0)


def _dcd_reference(X, y, C, bias, eps, max_iter, seed):
    """liblinear's L2-loss dual CD with shrinking and xmc's seeded LCG order, in plain Python."""
    n = X.shape[0]
    rows = [(X.indices[X.indptr[i]:X.indptr[i + 1]], X.data[X.indptr[i]:X.indptr[i + 1]]) for i in range(n)]
    diag = 0.5 / C
    qd = [bias * bias + diag + sum(v * v for v in vals) for _, vals in rows]
    w, alpha, index = [0.0] * (X.shape[1] + 1), [0.0] * n, list(range(n))
    state, pg_max_old, active, it = seed & 0x7FFFFFFF, np.inf, n, 0
    while it < max_iter:
        pg_max_new, pg_min_new = -np.inf, np.inf
        for i in range(active):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            j = i + state % (active - i)
            index[i], index[j] = index[j], index[i]
        s = 0
        while s < active:
            i = index[s]
            cols, vals = rows[i]
            g = w[-1] * bias
            for c, v in zip(cols, vals):
                g += w[c] * v
            g = g * y[i] - 1.0 + alpha[i] * diag
            pg = 0.0
            if alpha[i] == 0.0:
                if g > pg_max_old:
                    active -= 1
                    index[s], index[active] = index[active], index[s]
                    continue
                if g < 0.0:
                    pg = g
            else:
                pg = g
            pg_max_new, pg_min_new = max(pg_max_new, pg), min(pg_min_new, pg)
            if abs(pg) > 1e-12:
                a_old = alpha[i]
                alpha[i] = max(a_old - g / qd[i], 0.0)
                d = (alpha[i] - a_old) * y[i]
                for c, v in zip(cols, vals):
                    w[c] += d * v
                w[-1] += d * bias
            s += 1
        it += 1
        if pg_max_new - pg_min_new <= eps:
            if active == n:
                break
            active, pg_max_old = n, np.inf
            continue
        pg_max_old = pg_max_new if pg_max_new > 0.0 else np.inf
    return np.asarray(w, dtype=np.float32)


@pytest.mark.parametrize("C, bias, tol, max_iter, seed", [(1.0, 1.0, 0.1, 100, 0), (0.5, 2.0, 1e-3, 7, 12345)])
def test_compiled_solver_is_the_reference_dual_cd(C, bias, tol, max_iter, seed):
    """xmc/_dcd.c computes exactly the steps of liblinear's dual CD (shrinking, the seeded order)."""
    X, Y = _problem(n=90, d=12, t=3, seed=7)
    W = fit_ova(X, Y, C=C, bias=bias, tol=tol, max_iter=max_iter, seed=seed, threshold=0.0)
    for t in range(Y.shape[1]):
        y = np.where(Y[:, t].toarray().ravel() > 0, 1.0, -1.0)
        np.testing.assert_array_equal(W[t].toarray().ravel(), _dcd_reference(X, y, C, bias, tol, max_iter, seed))


def test_compiled_solver_rejects_wrong_buffers():
    from xmc import _dcd

    indptr, data = np.array([0, 1, 2], dtype=np.int64), np.ones(2)
    with pytest.raises(ValueError, match="indptr: unexpected item type"):
        _dcd.diagonal(indptr.astype(np.float64), data, 0.5, np.empty(2))
    with pytest.raises(ValueError, match="out: expected a C-contiguous writable array"):
        _dcd.diagonal(indptr, data, 0.5, np.empty(4)[::2])
    with pytest.raises(ValueError, match="do not match"):
        _dcd.diagonal(indptr, data, 0.5, np.empty(3))
    args = [indptr, np.zeros(2, np.int32), data, 1, 1.0, np.ones(2), np.array([0, 1], np.int64),
            np.array([0], np.int64), 1.0, 0.1, 10, 0, np.zeros((1, 2), np.float32), np.zeros(1, np.int64)]
    bad = list(args)
    bad[1] = np.zeros(2, np.int64)  # indices must be int32
    with pytest.raises(ValueError, match="indices: unexpected item type"):
        _dcd.l2svm(*bad)
    bad = list(args)
    bad[12] = np.zeros((1, 3), np.float32)  # out_w must hold n_cols + 1 weights per target
    with pytest.raises(ValueError, match="lengths do not match"):
        _dcd.l2svm(*bad)
    _dcd.l2svm(*args)
    assert args[13][0] >= 1 and np.all(np.isfinite(args[12]))


def test_a_stale_build_of_the_solver_is_refused(tmp_path):
    """Editing xmc/_dcd.c without rebuilding must fail loudly, not run the old solver."""
    import os

    from xmc.linear import check_build

    source, built = tmp_path / "_dcd.c", tmp_path / "_dcd.so"
    source.write_text("/* v1 */")
    built.write_bytes(b"\0")
    os.utime(source, (1_000, 1_000))
    os.utime(built, (2_000, 2_000))
    check_build(source, built)  # built after its source: fine
    os.utime(source, (3_000, 3_000))
    with pytest.raises(ImportError, match=r"_dcd.c changed after _dcd.so was built: run `pip install -e .`"):
        check_build(source, built)
