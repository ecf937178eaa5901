"""Ranking metrics (P@k, R@k) and the row-wise top-k helpers shared by the ranker and ensembles.

Conventions (used everywhere a score matrix is ranked):
- a prediction matrix is CSR of shape (N, L); the *stored* entries of a row are the labels it
  predicts (an explicitly stored 0.0 still counts as a prediction, an absent label does not);
- within a row, labels are ordered by score descending, ties broken by the lower label index.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.sparse as sp

from xmc.indexing import sparse_pattern

__all__ = ["csr_row_top_k", "top_k_indices", "precision_recall_at_k", "shortlist_recall", "sorted_row_ranks"]


def _as_csr(matrix, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        arr = np.asarray(matrix)
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D matrix of shape (N, L), got shape {arr.shape}")
        matrix = sp.csr_matrix(arr)
    m = sp.csr_matrix(matrix)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    return m


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: expected a positive integer, got {k!r}")
    return int(k)


def sorted_row_ranks(matrix: sp.csr_matrix):
    """Order the stored entries of each row by (score desc, label index asc).

    Returns ``(rows, cols, scores, ranks)``: 1-D arrays over all stored entries, grouped by row in
    the new order; ``ranks`` is the 0-based position of the entry within its row.
    """
    m = _as_csr(matrix, "matrix")
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    # lexsort: last key is primary -> row, then score descending, then column ascending.
    order = np.lexsort((m.indices, -m.data.astype(np.float64), rows))
    rows = rows[order]
    ranks = np.arange(m.nnz, dtype=np.int64) - m.indptr[rows]
    return rows, m.indices[order].astype(np.int64), m.data[order], ranks


def csr_row_top_k(matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` best stored entries of each row (ties -> lower label index).

    matrix : sparse (N, L). Returns CSR float32 (N, L) with at most ``k`` entries per row.
    """
    k = _check_k(k)
    m = _as_csr(matrix, "matrix")
    rows, cols, scores, ranks = sorted_row_ranks(m)
    keep = ranks < k
    out = sp.csr_matrix(
        (scores[keep].astype(np.float32), (rows[keep], cols[keep])), shape=m.shape, dtype=np.float32
    )
    return out


def top_k_indices(pred, k: int) -> np.ndarray:
    """Label indices of each row's ``k`` best predictions.

    pred : sparse or dense (N, L) scores. Returns int64 (N, k), best first; rows with fewer than
    ``k`` stored predictions are padded with -1.
    """
    k = _check_k(k)
    m = _as_csr(pred, "pred")
    rows, cols, _, ranks = sorted_row_ranks(m)
    keep = ranks < k
    out = np.full((m.shape[0], k), -1, dtype=np.int64)
    out[rows[keep], ranks[keep]] = cols[keep]
    return out


def precision_recall_at_k(pred, Y, ks: Iterable[int] = (1, 3, 5)) -> dict:
    """P@k and R@k in percent, averaged over all N instances.

    pred : sparse (N, L) scores; Y : sparse (N, L) 0/1 ground truth (stored nonzeros = true labels).
    P@k = hits in top k / k (a row with fewer than k predictions still divides by k).
    R@k = hits in top k / |true labels|; an instance with no true label contributes recall 0
    (it stays in the average, like in P@k). Returns ``{"P@1": float, ..., "R@1": float, ...}``.
    """
    ks = [_check_k(k, "ks") for k in ks]
    if not ks:
        raise ValueError("ks: expected at least one k")
    P = _as_csr(pred, "pred")
    T = _as_csr(Y, "Y")
    if P.shape != T.shape:
        raise ValueError(f"pred and Y must have the same shape (N, L); got {P.shape} and {T.shape}")
    T = T.copy()
    T.eliminate_zeros()
    n, n_labels = T.shape
    top = top_k_indices(P, max(ks))
    true_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(T.indptr))
    true_keys = true_rows * n_labels + T.indices.astype(np.int64)
    pred_keys = np.arange(n, dtype=np.int64)[:, None] * n_labels + top
    hit = (top >= 0) & np.isin(pred_keys, true_keys)
    n_true = np.diff(T.indptr).astype(np.float64)
    out = {}
    for k in ks:
        hits = hit[:, :k].sum(axis=1).astype(np.float64)
        out[f"P@{k}"] = float(100.0 * np.mean(hits / k)) if n else 0.0
    for k in ks:
        hits = hit[:, :k].sum(axis=1).astype(np.float64)
        recall = np.divide(hits, n_true, out=np.zeros_like(hits), where=n_true > 0)
        out[f"R@{k}"] = float(100.0 * np.mean(recall)) if n else 0.0
    return out


def shortlist_recall(M, Y, C) -> dict:
    """How much of the truth a matcher's shortlist leaves the ranker, in percent.

    M : sparse (N, K) matcher top-b (stored entries = the clusters shortlisted for an instance);
    Y : sparse (N, L) 0/1 ground truth; C : sparse (L, K) 0/1 label-to-cluster assignment.
    Returns ``{"label_recall": share of the (instance, true label) pairs whose label's cluster is
    shortlisted, "instance_recall": share of the instances with at least one such label}``: no
    ranker over this shortlist can find the others.
    """
    M, T, Cm = _as_csr(M, "M"), _as_csr(Y, "Y"), _as_csr(C, "C")
    if T.shape[1] != Cm.shape[0] or M.shape != (T.shape[0], Cm.shape[1]):
        raise ValueError(f"shapes: M {M.shape}, Y {T.shape} and C {Cm.shape} do not fit "
                         "(expected M (N, K), Y (N, L), C (L, K))")
    T, Cm = sparse_pattern(T, "Y", True), sparse_pattern(Cm, "C", True)
    shortlisted = sparse_pattern(M, "M", False)  # an explicit 0 score still shortlists its cluster
    # (N, L): true labels in a shortlisted cluster
    reachable = T.multiply(shortlisted.astype(np.float32) @ Cm.T.astype(np.float32)).tocsr()
    reachable.eliminate_zeros()
    n_true = T.nnz
    per_row = np.diff(reachable.indptr)
    return {"label_recall": float(100.0 * reachable.nnz / n_true) if n_true else 0.0,
            "instance_recall": float(100.0 * np.mean(per_row > 0)) if T.shape[0] else 0.0}
