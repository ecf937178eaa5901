"""One-vs-all L2-loss linear SVMs with sparse (thresholded) weights.

This is the solver of the original ranker (liblinear, squared hinge, dual coordinate descent,
C+ = C- = C, bias feature 1) and of the linear baseline matcher.

Bias: X is augmented with a constant column of value ``bias`` (no separate intercept). That is
exactly liblinear's ``-B bias`` (the bias weight is regularised like any other weight, as in the
original code), and it gives one uniform weight row ``[w; w_bias]`` whose last column can be
thresholded like the others.

The solver is liblinear's dual coordinate descent for the L2-loss SVM (Hsieh et al., ICML 2008;
liblinear's ``solve_l2r_l1l2_svc`` with shrinking) in C (``xmc/_dcd.c``): all targets of one call
share the CSR rows, are solved in parallel threads, and only the columns the rows use are
allocated. It solves the same problem as sklearn's ``LinearSVC(loss="squared_hinge", dual=True,
fit_intercept=False)`` on ``[X, bias]``; only the random order of the coordinates differs, so both
reach the same optimum within the tolerance (the tests compare them).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmc.parallel import check_n_jobs, n_workers, thread_map

_BUILD = "run `pip install -e .` in the project folder (it needs a C compiler, e.g. gcc)"


def check_build(source: Path, built: Path) -> None:
    """Raise ImportError when the C source is newer than its compiled module: an editable install
    does not rebuild by itself, and a stale solver would not be the code that the rules' digests
    (xmc.code_digest) say ran."""
    if source.is_file() and source.stat().st_mtime > built.stat().st_mtime:
        raise ImportError(f"{source.name} changed after {built.name} was built: {_BUILD}")


try:
    from xmc import _dcd
except ImportError as e:  # a checkout used without its install step
    raise ImportError(f"xmc._dcd, the compiled solver of xmc.linear, is not built ({e}): {_BUILD}") from e
check_build(Path(__file__).with_name("_dcd.c"), Path(_dcd.__file__))

__all__ = ["fit_ova", "fit_ova_blocks", "decision_function", "augment_bias"]

log = logging.getLogger(__name__)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def augment_bias(X, bias: float = 1.0) -> sp.csr_matrix:
    """[X, bias] as CSR float64 of shape (N, D + 1)."""
    X = sp.csr_matrix(X)
    col = sp.csr_matrix(np.full((X.shape[0], 1), bias, dtype=np.float64))
    return sp.hstack([X.astype(np.float64), col], format="csr")


def _sparsify(w, threshold):
    nz = np.flatnonzero(np.abs(w) >= threshold) if threshold > 0 else np.flatnonzero(w)
    return nz.astype(np.int32), w[nz].astype(np.float32)


def _fit_dcd(Xs, Ys, targets, C, threshold, bias, tol, max_iter, seed, workers,
             max_block_bytes=256 * 2**20):
    """The dual CD (``xmc._dcd.l2svm``) on the columns ``targets`` of Ys (CSC): per target, the
    columns and values of its thresholded weights and whether it converged.

    Only the feature columns that occur in Xs are allocated (a cluster's candidate rows use a
    fraction of the vocabulary); targets go in blocks of at most ``max_block_bytes`` of weights,
    each block's targets taken one at a time by ``workers`` threads (dynamic: targets differ a
    lot in cost, and a static split left one thread idle for about a fifth of the time).
    """
    n, d = Xs.shape
    used = np.flatnonzero(np.bincount(Xs.indices, minlength=d))
    local = np.full(d, -1, dtype=np.int32)  # int32 halves this copy of the indices
    local[used] = np.arange(used.size, dtype=np.int32)
    indices = local[Xs.indices]
    data = Xs.data if Xs.dtype in (np.float32, np.float64) else Xs.data.astype(np.float64)
    indptr = Xs.indptr.astype(np.int64)
    qd = np.empty(n)
    _dcd.diagonal(indptr, data, bias * bias + 0.5 / C, qd)
    cols = np.append(used, d)  # local column -> column of [X, bias]
    block = max(1, int(max_block_bytes // (4 * (used.size + 1))))
    out = []

    for b in range(0, len(targets), block):
        chunk = np.asarray(targets[b : b + block])
        sub = Ys[:, chunk]
        pos_ptr, pos_idx = sub.indptr.astype(np.int64), sub.indices.astype(np.int64)
        W = np.zeros((chunk.size, used.size + 1), dtype=np.float32)
        iters = np.zeros(chunk.size, dtype=np.int64)

        def solve(j):
            _dcd.l2svm(indptr, indices, data, used.size, float(bias), qd, pos_ptr[j : j + 2], pos_idx, float(C),
                       float(tol), int(max_iter), int(seed), W[j : j + 1], iters[j : j + 1])

        thread_map(solve, range(chunk.size), workers)
        for row, it in zip(W, iters):
            nz = np.flatnonzero(np.abs(row) >= threshold) if threshold > 0 else np.flatnonzero(row)
            out.append((cols[nz].astype(np.int32), row[nz], bool(it < max_iter)))
    return out


def fit_ova(
    X,
    Y,
    C: float = 1.0,
    threshold: float = 0.01,
    bias: float = 1.0,
    n_jobs: int = 1,
    tol: float = 0.1,
    max_iter: int = 100,
    seed: int = 0,
) -> sp.csr_matrix:
    """One squared-hinge linear SVM per column of Y.

    Parameters
    ----------
    X : sparse or dense (N, D) features.
    Y : sparse or dense (N, T) 0/1 targets (nonzero = positive).
    C : cost for both classes. threshold : weights with |w| < threshold become 0 (bias included).
    bias : value of the appended bias feature (> 0).
    n_jobs : threads over columns (-1: one per CPU); results do not depend on it.
    tol, max_iter : liblinear's stopping tolerance and iteration cap (PECOS defaults 0.1 / 100).
    seed : seed of the random order in which the dual CD visits the instances.

    Returns
    -------
    W : CSR float32 (T, D + 1); the last column is the bias weight, so the score is
        ``[x, bias] . w``. A column that is all positive (all negative, or has no rows) gets the
        constant model w = 0, w_bias = +1/bias (-1/bias), i.e. score +1 (-1), without a solver call.
    """
    C = _check_positive(C, "C")
    bias = _check_positive(bias, "bias")
    if isinstance(threshold, bool) or not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold: expected a non-negative number, got {threshold!r}")
    Xs = sp.csr_matrix(X)
    if Xs.dtype not in (np.float32, np.float64):
        Xs = Xs.astype(np.float64)
    Ys = sp.csc_matrix(Y)
    if Xs.shape[0] != Ys.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows; got {Xs.shape[0]} and {Ys.shape[0]}")
    check_n_jobs(n_jobs)
    n, d = Xs.shape
    n_targets = Ys.shape[1]
    Ys.eliminate_zeros()
    n_pos = np.diff(Ys.indptr)
    results: list = [None] * n_targets
    mixed = []
    for t in range(n_targets):
        if n_pos[t] == 0 or n_pos[t] == n:
            w = np.zeros(d + 1)
            w[d] = (1.0 if n_pos[t] == n and n > 0 else -1.0) / bias
            results[t] = (*_sparsify(w, threshold), True)
        else:
            mixed.append(t)
    workers = n_workers(n_jobs, len(mixed))
    if mixed:
        for t, r in zip(mixed, _fit_dcd(Xs, Ys, mixed, C, threshold, bias, tol, max_iter, seed, workers)):
            results[t] = r

    n_bad = sum(not ok for _, _, ok in results)
    if n_bad:
        log.warning("fit_ova: the solver hit max_iter=%d on %d of %d columns", max_iter, n_bad, n_targets)

    indptr = np.zeros(n_targets + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([r[0].size for r in results])
    return sp.csr_matrix(
        (
            np.concatenate([r[1] for r in results] or [np.zeros(0, np.float32)]),
            np.concatenate([r[0] for r in results] or [np.zeros(0, np.int32)]),
            indptr,
        ),
        shape=(n_targets, d + 1),
    )


def fit_ova_blocks(X, Y, row_sets, col_sets, n_jobs: int = 1, callback=None, **kw) -> list[sp.csr_matrix]:
    """:func:`fit_ova` on many sub-problems at once: problem k is ``X[row_sets[k]]`` against the
    columns ``col_sets[k]`` of ``Y[row_sets[k]]`` (a ranker's clusters, a tree level's parents).

    ``n_jobs`` threads solve different problems at the same time, largest (rows x columns) first,
    so that the small ones fill in at the end; each problem's rows are sliced by the thread that
    solves it, so at most ``n_jobs`` of them are in memory. ``callback()`` is called once per
    solved problem (progress bars). ``kw`` goes to :func:`fit_ova`. Returns each problem's
    weights (CSR float32 (|cols_k|, D + 1)), in the order of the problems; they do not depend on
    ``n_jobs``.
    """
    if len(row_sets) != len(col_sets):
        raise ValueError(f"row_sets and col_sets: {len(row_sets)} and {len(col_sets)} problems")
    check_n_jobs(n_jobs)
    X = sp.csr_matrix(X)
    Y = sp.csr_matrix(Y)

    def solve(k):
        rows = np.asarray(row_sets[k], dtype=np.int64)
        W = fit_ova(X[rows], Y[rows][:, np.asarray(col_sets[k], dtype=np.int64)], n_jobs=1, **kw)
        if callback is not None:
            callback()
        return W

    order = sorted(range(len(row_sets)), key=lambda k: -len(row_sets[k]) * len(col_sets[k]))
    out = [None] * len(row_sets)
    for k, W in zip(order, thread_map(solve, order, n_jobs)):
        out[k] = W
    return out


def decision_function(X, W, bias: float = 1.0) -> np.ndarray:
    """Scores ``[X, bias] @ W.T``.

    X : sparse or dense (N, D); W : sparse (T, D + 1) from :func:`fit_ova`.
    Returns dense float32 (N, T).
    """
    W = sp.csr_matrix(W)
    Xs = sp.csr_matrix(X)
    if Xs.shape[1] + 1 != W.shape[1]:
        raise ValueError(f"X has {Xs.shape[1]} features but W expects {W.shape[1] - 1} (+1 bias column)")
    d = Xs.shape[1]
    scores = np.asarray((Xs @ W[:, :d].T).todense(), dtype=np.float64)
    scores += bias * W[:, d].toarray().ravel()[None, :]
    return scores.astype(np.float32)


