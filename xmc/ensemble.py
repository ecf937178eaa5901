"""Ensembles of top-k prediction matrices (the X-Transformer release's rules).

Every input is a CSR (N, L) matrix whose stored entries are a model's top-k list per row; a label
a model did not list counts 0 for that model. Within a model's row, labels are ranked by score
descending, ties -> lower label index (see :mod:`xmc.metrics`). No rule may rank a label higher
because fewer models listed it, so every listed value must lie above the unlisted 0 on one scale
(checked for each rule by ``tests/test_ensemble.py``). For M models, in row n:

- ``average``: score(l) = (1/M) * sum_i u_i(l), u_i the model's scores on the common scale
  (:func:`common_scale`): a model whose scores all lie in [0, 1] (sigma = sigmoid, l2-hinge,
  l3-hinge) keeps them; any other model (signed scores such as noop's) has each row mapped linearly
  onto [1/n, 1], n = the labels it lists there: u = (s - lo + d) / (hi - lo + d), with lo, hi the
  row's lowest and highest listed score and d = (hi - lo) / (n - 1), as if an unlisted label lay one
  mean gap below the lowest listed one (u = 1 for a single label or equal scores). Raw signed
  scores would count an unlisted label 0, above a listed negative score.
- ``sigmoid_average``: score(l) = (1/M) * sum_i sigmoid(s_i(l)) over the models that list l
  (PECOS's ``CsrEnsembler.sigmoid_average``).
- ``softmax_average``: score(l) = (1/M) * sum_i softmax_i(l), where softmax_i is taken over model
  i's listed labels of row n only: exp(s_i(l)) / sum over its listed l' of exp(s_i(l'))
  (PECOS's ``softmax_average``). It puts every model's row on the same scale (its list sums to 1).
- ``rank_average``: model i gives its r-th best label (r 0-based) the rank value
  v_i(l) = mm - r, where mm = the longest list length in row n over the M models; then
  score(l) = (1/M) * sum_i v_i(l).
- ``round_robin``: score(l) = max over the models i (0-based) that list l of
  v_i(l) + (M - i) / (M + 1). The bonus lies in (0, 1), so labels are taken by best rank first
  and, at equal rank, from the earlier model: the lists are interleaved model 0, 1, ..., M-1,
  each label kept at its best position.

The result keeps each row's ``top_k`` labels, as CSR float32 (N, L). Equal scores (frequent with
``rank_average``) are ordered by the mean common-scale score (1/M) * sum_i u_i(l), then by label
index; the float32 values keep that order (:func:`xmc.metrics.csr_row_top_k`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xmc.metrics import csr_row_top_k, sorted_row_ranks
from xmc.vocabulary import ENSEMBLE_METHODS

__all__ = ["ENSEMBLE_METHODS", "common_scale", "ensemble"]

_SCORE_METHODS = ("average", "softmax_average", "sigmoid_average")  # transform each score, then average


def _row_softmax(m: sp.csr_matrix) -> np.ndarray:
    """Softmax over each row's stored entries of CSR ``m``; returns the new data array."""
    counts = np.diff(m.indptr)
    if m.data.size == 0:
        return m.data.copy()
    starts = m.indptr[:-1][counts > 0]
    row_max = np.repeat(np.maximum.reduceat(m.data, starts), counts[counts > 0])
    e = np.exp(m.data - row_max)  # shifted by the row maximum: no overflow
    return e / np.repeat(np.add.reduceat(e, starts), counts[counts > 0])


def common_scale(m: sp.csr_matrix) -> np.ndarray:
    """One model's listed scores on the scale where an unlisted label's 0 lies below all of them:
    unchanged if they all lie in [0, 1]; else each row mapped linearly onto [1/n, 1] (see the
    module docstring). m : canonical CSR (N, L); returns the new data array (float64)."""
    data = m.data.astype(np.float64)
    if data.size == 0 or (data.min() >= 0.0 and data.max() <= 1.0):
        return data.copy()
    counts = np.diff(m.indptr)
    filled = counts > 0
    starts = m.indptr[:-1][filled]
    lo = np.repeat(np.minimum.reduceat(data, starts), counts[filled])
    hi = np.repeat(np.maximum.reduceat(data, starts), counts[filled])
    n = np.repeat(counts[filled], counts[filled])
    span = hi - lo
    gap = span / np.maximum(n - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (data - lo + gap) / (span + gap), 1.0)


def _transform(m: sp.csr_matrix, method: str) -> np.ndarray:
    if method == "sigmoid_average":
        return 0.5 * (1.0 + np.tanh(0.5 * m.data))  # = 1 / (1 + exp(-s)), without overflow
    if method == "softmax_average":
        return _row_softmax(m)
    return common_scale(m)


def _rank_values(mats):
    """Per model: (rows, cols, rank value mm - r) over its stored entries."""
    mm = np.max(np.stack([np.diff(m.indptr) for m in mats]), axis=0)  # (N,) longest list per row
    out = []
    for m in mats:
        rows, cols, _, ranks = sorted_row_ranks(m)
        out.append((rows, cols, (mm[rows] - ranks).astype(np.float64)))
    return out


def _mean_common_scale(mats, shape) -> sp.csr_matrix:
    """(1/M) * sum_i u_i(l) over the labels any model lists: the tie-break of the ensemble's scores."""
    rows = np.concatenate([np.repeat(np.arange(shape[0]), np.diff(m.indptr)) for m in mats])
    cols = np.concatenate([m.indices for m in mats])
    vals = np.concatenate([common_scale(m) for m in mats]) / len(mats)
    return sp.coo_matrix((vals, (rows.astype(np.int64), cols.astype(np.int64))), shape=shape).tocsr()


def ensemble(preds, method: str, top_k: int = 20) -> sp.csr_matrix:
    """Combine model predictions. preds : list of sparse (N, L); method in ``ENSEMBLE_METHODS``.

    Returns CSR float32 (N, L) with at most ``top_k`` entries per row.
    """
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"ensemble method: unknown {method!r}; accepted: {', '.join(ENSEMBLE_METHODS)}")
    preds = list(preds)
    if not preds:
        raise ValueError("preds: expected at least one prediction matrix")
    mats = []
    for i, p in enumerate(preds):
        if not sp.issparse(p):
            raise ValueError(f"preds[{i}]: expected a scipy sparse matrix, got {type(p).__name__}")
        if p.shape != preds[0].shape:
            raise ValueError(f"preds[{i}] has shape {p.shape}, expected {preds[0].shape} like preds[0]")
        m = sp.csr_matrix(p, dtype=np.float64, copy=True)
        m.sum_duplicates()
        mats.append(m)
    shape = mats[0].shape
    n_models = len(mats)

    if method in _SCORE_METHODS:
        triples = []
        for m in mats:
            rows = np.repeat(np.arange(shape[0]), np.diff(m.indptr))
            triples.append((rows, m.indices, _transform(m, method)))
    else:
        triples = _rank_values(mats)
    rows = np.concatenate([t[0] for t in triples]).astype(np.int64)
    cols = np.concatenate([t[1] for t in triples]).astype(np.int64)

    if method in _SCORE_METHODS + ("rank_average",):
        vals = np.concatenate([t[2] for t in triples]) / n_models
        # COO -> CSR sums duplicates and keeps an exact 0 as a stored entry (still a prediction).
        combined = sp.coo_matrix((vals, (rows, cols)), shape=shape).tocsr()
        if method == "average":
            return csr_row_top_k(combined, top_k)
        return csr_row_top_k(combined, top_k, tiebreak=_mean_common_scale(mats, shape))
    else:
        vals = np.concatenate(
            [t[2] + (n_models - i) / (n_models + 1) for i, t in enumerate(triples)]
        )
        keys = rows * shape[1] + cols
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], vals[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, np.int64)
        best = np.maximum.reduceat(vals, starts) if keys.size else vals
        uk = keys[starts]
        combined = sp.csr_matrix((best, (uk // shape[1], uk % shape[1])), shape=shape)
    return csr_row_top_k(combined, top_k)
