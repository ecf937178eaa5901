"""Ranking metrics (P@k, R@k) and the row-wise top-k helpers shared by the ranker and ensembles.

Conventions (used everywhere a score matrix is ranked):
- a prediction matrix is CSR of shape (N, L); the *stored* entries of a row are the labels it
  predicts (an explicitly stored 0.0 still counts as a prediction, an absent label does not);
- within a row, labels are ordered by score descending, ties broken by the lower label index.
  Where a producer breaks ties otherwise (the ranker: by its score h under a saturated sigma), its
  :func:`csr_row_top_k` lowers the later of two equal float32 values by a float32 step or a few,
  so that this rule reads its order back.
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


def _tiebreak_data(m: sp.csr_matrix, tiebreak) -> np.ndarray | None:
    """The second sort key aligned with the stored entries of canonical CSR ``m``: ``tiebreak`` is a
    sparse matrix with the same stored pattern (None: no second key)."""
    if tiebreak is None:
        return None
    t = _as_csr(tiebreak, "tiebreak")
    if t.shape != m.shape or not (np.array_equal(t.indptr, m.indptr) and np.array_equal(t.indices, m.indices)):
        raise ValueError("tiebreak: expected a sparse matrix with the stored pattern of the scores "
                         f"(shape {m.shape}, {m.nnz} entries), got shape {t.shape} with {t.nnz}")
    return t.data.astype(np.float64)


def sorted_row_ranks(matrix: sp.csr_matrix, tiebreak=None):
    """Order the stored entries of each row by (score desc, [tiebreak desc,] label index asc).

    tiebreak : optional sparse matrix with ``matrix``'s stored pattern: a second score that orders
    equal scores (e.g. the ranker score h under a saturated l3-hinge).
    Returns ``(rows, cols, scores, ranks)``: 1-D arrays over all stored entries, grouped by row in
    the new order; ``ranks`` is the 0-based position of the entry within its row.
    """
    m = _as_csr(matrix, "matrix")
    second = _tiebreak_data(m, tiebreak)
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    # lexsort: last key is primary -> row, then score descending, [then tiebreak descending,] then column.
    keys = (m.indices,) + (() if second is None else (-second,)) + (-m.data.astype(np.float64), rows)
    order = np.lexsort(keys)
    rows = rows[order]
    ranks = np.arange(m.nnz, dtype=np.int64) - m.indptr[rows]
    return rows, m.indices[order].astype(np.int64), m.data[order], ranks


def _float32_keeping_order(rows, cols, scores) -> np.ndarray:
    """``scores`` (entries sorted by row, then rank) as float32 values that every later top-k
    (:func:`sorted_row_ranks`: score desc, label asc) reads in the same order.

    Rounding to float32 can make the scores of two entries equal (and a tie broken by a second key
    or by float64 digits is equal from the start); where the later entry has the lower label index,
    that row's values are made strictly decreasing, each lowered by as few float32 steps as that
    needs. Scores >= 0 stay >= 0 (entries that reach 0 are left in label order there)."""
    out = np.asarray(scores, dtype=np.float32).copy()
    if out.size < 2:
        return out
    same_row = rows[1:] == rows[:-1]
    wrong = same_row & (out[1:] == out[:-1]) & (cols[1:] < cols[:-1])
    if not wrong.any():
        return out
    fix = np.isin(rows, np.unique(rows[1:][wrong]))
    r, v = rows[fix], out[fix]
    # float32 -> an integer key with the same order (adjacent floats -> adjacent integers)
    bits = v.view(np.int32).astype(np.int64)
    key = np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    seg = np.cumsum(np.r_[True, r[1:] != r[:-1]]) - 1  # 0, 1, ... per fixed row
    rank = np.arange(r.size) - starts[seg]
    # strictly decreasing key[j] = min(key[j], key[j-1] - 1): a running minimum of key + rank per
    # row (rows kept apart by an offset larger than any key range)
    big = np.int64(1) << 34
    z = np.minimum.accumulate(key + rank - seg * big) + seg * big - rank
    z = np.where((key >= 0) & (z < 0), 0, z)
    new_bits = np.where(z >= 0, z, (-z) | 0x80000000).astype(np.uint32).view(np.int32)
    out[fix] = new_bits.view(np.float32)
    return out


def csr_row_top_k(matrix, k: int, tiebreak=None) -> sp.csr_matrix:
    """Keep the ``k`` best stored entries of each row (ties -> ``tiebreak`` desc, if given, then the
    lower label index).

    matrix : sparse (N, L); tiebreak : optional sparse (N, L) with ``matrix``'s stored pattern.
    Returns CSR float32 (N, L) with at most ``k`` entries per row, whose values read in that order
    (:func:`_float32_keeping_order`: a tie broken by ``tiebreak`` or lost to float32 rounding is
    kept by lowering the later value a few float32 steps).
    """
    k = _check_k(k)
    m = _as_csr(matrix, "matrix")
    rows, cols, scores, ranks = sorted_row_ranks(m, tiebreak)
    keep = ranks < k
    values = _float32_keeping_order(rows[keep], cols[keep], scores[keep].astype(np.float64))
    out = sp.csr_matrix((values, (rows[keep], cols[keep])), shape=m.shape, dtype=np.float32)
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
