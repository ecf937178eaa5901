"""One-vs-all L2-loss linear SVMs with sparse (thresholded) weights.

This is the solver of the original ranker (liblinear, squared hinge, dual coordinate descent,
C+ = C- = C, bias feature 1) and of the linear baseline matcher.

Bias: X is augmented with a constant column of value ``bias`` and LinearSVC is fit with
``fit_intercept=False``. That is exactly liblinear's ``-B bias`` (the bias weight is regularised
like any other weight, as in the original code), and it gives one uniform weight row
``[w; w_bias]`` whose last column can be thresholded like the others. (``intercept_scaling``
would solve the same problem, but the intercept would come back separately rescaled.)
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from xmc.io import atomic_path

__all__ = ["fit_ova", "decision_function", "augment_bias", "save_weights", "load_weights"]

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


def _fit_column(Xb, y, C, tol, max_iter, seed):
    clf = LinearSVC(
        loss="squared_hinge",
        dual=True,
        C=C,
        fit_intercept=False,
        tol=tol,
        max_iter=max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(Xb, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf.coef_.ravel(), converged


def _sparsify(w, threshold):
    nz = np.flatnonzero(np.abs(w) >= threshold) if threshold > 0 else np.flatnonzero(w)
    return nz.astype(np.int32), w[nz].astype(np.float32)


def _fit_columns(Xb, Ys, targets, C, threshold, tol, max_iter, seed):
    """Solve the columns ``targets`` of Ys (CSC) on Xb.

    Returns a list of (indices, values, converged) of the thresholded weights (sparse, so that
    worker processes send back little).
    """
    n = Xb.shape[0]
    out = []
    for t in targets:
        y = -np.ones(n)
        y[Ys.indices[Ys.indptr[t] : Ys.indptr[t + 1]]] = 1.0
        w, ok = _fit_column(Xb, y, C, tol, max_iter, seed)
        out.append((*_sparsify(w, threshold), ok))
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
    n_jobs : joblib worker processes over columns (-1: one per CPU); results do not depend on it.
    tol, max_iter : liblinear's stopping tolerance and iteration cap (PECOS defaults 0.1 / 100).
    seed : liblinear's random_state (the dual CD visits instances in a seeded random order).

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
    Xs = sp.csr_matrix(X, dtype=np.float64)
    Ys = sp.csc_matrix(Y)
    if Xs.shape[0] != Ys.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows; got {Xs.shape[0]} and {Ys.shape[0]}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(f"n_jobs: expected a non-zero integer (-1 = all CPUs), got {n_jobs!r}")
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
    if mixed:
        Xb = augment_bias(Xs, bias)
        if n_jobs == 1 or len(mixed) < 2:
            chunks = [mixed]
            solved = [_fit_columns(Xb, Ys, mixed, C, threshold, tol, max_iter, seed)]
        else:
            # Processes, not threads: liblinear draws its coordinate order from one process-global
            # generator, so concurrent threads would make the weights non-deterministic. Strided
            # chunks spread frequent and rare labels over the workers.
            n_workers = min((os.cpu_count() or 1) if n_jobs < 0 else n_jobs, len(mixed))
            n_chunks = min(len(mixed), 4 * n_workers)
            chunks = [mixed[j::n_chunks] for j in range(n_chunks)]
            solved = Parallel(n_jobs=n_workers)(
                delayed(_fit_columns)(Xb, Ys, chunk, C, threshold, tol, max_iter, seed) for chunk in chunks
            )
        for chunk, res in zip(chunks, solved):
            for t, r in zip(chunk, res):
                results[t] = r

    n_bad = sum(not ok for _, _, ok in results)
    if n_bad:
        log.warning("fit_ova: liblinear hit max_iter=%d on %d of %d columns", max_iter, n_bad, n_targets)

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


def save_weights(path, W, **meta) -> None:
    """Save W (CSR) plus scalar settings in one npz that ``scipy.sparse.load_npz`` (and
    ``xmc.io.load_csr``) can also read as the plain weight matrix."""
    W = sp.csr_matrix(W)
    W.sum_duplicates()
    clash = {"data", "indices", "indptr", "format", "shape"} & set(meta)
    if clash:
        raise ValueError(f"save_weights: reserved metadata key(s) {sorted(clash)}")
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp, format=np.asarray("csr"), data=W.data, indices=W.indices, indptr=W.indptr,
            shape=np.asarray(W.shape), **{k: np.asarray(v) for k, v in meta.items()},
        )


def load_weights(path) -> tuple[sp.csr_matrix, dict]:
    """Inverse of :func:`save_weights`: (W CSR, {key: numpy value}) ."""
    with np.load(path, allow_pickle=False) as f:
        if "format" not in f or "data" not in f:
            raise ValueError(f"{path}: not a weight file written by xmc (no CSR arrays inside)")
        W = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(int(s) for s in f["shape"]))
        meta = {k: f[k] for k in f.files if k not in {"data", "indices", "indptr", "format", "shape"}}
    return W, meta
