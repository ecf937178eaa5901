"""Ranker: per-label linear one-vs-all models trained on cluster-restricted instances.

For label l in cluster c_l, the training rows are the *candidates* of c_l:
- ``tfn``: instances with a true label in c_l (M = binarised Y C);
- ``man``: instances whose matcher top-b clusters contain c_l;
- ``tfn+man``: the union (the paper's best).
At prediction only labels of each row's top-b clusters are scored, and the ranker score h is
combined with the matcher score g of the label's cluster (:func:`combine_scores`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.special import expit
from sklearn.preprocessing import normalize
from tqdm.auto import tqdm

from xmc.linear import fit_ova, load_weights, save_weights
from xmc.metrics import csr_row_top_k
from xmc.params import FromDict

__all__ = [
    "COMBINE_METHODS",
    "NEGATIVES",
    "RankerParams",
    "Ranker",
    "candidate_matrix",
    "cluster_targets",
    "combine_scores",
    "ranker_features",
]

COMBINE_METHODS = ("noop", "sigmoid", "l2-hinge", "l3-hinge")
NEGATIVES = ("tfn", "man", "tfn+man")


def combine_scores(g, h, method: str):
    """Final score sigma(g, h) from the matcher score g and the ranker score h (broadcast arrays).

    - ``noop``: h (the released X-Transformer code: the matcher only selects clusters);
    - ``sigmoid``: sigmoid(g) * sigmoid(h);
    - ``l2-hinge`` / ``l3-hinge``: exp(-max(0, 1 - g)^p) * exp(-max(0, 1 - h)^p), p = 2 / 3
      (PECOS's lp-hinge transform, multiplied with the parent's transformed score).
    """
    if method not in COMBINE_METHODS:
        raise ValueError(f"combine: unknown method {method!r}; accepted: {', '.join(COMBINE_METHODS)}")
    g = np.asarray(g, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    if method == "noop":
        return np.broadcast_to(h, np.broadcast_shapes(g.shape, h.shape)).copy()
    if method == "sigmoid":
        return expit(g) * expit(h)
    p = 2 if method == "l2-hinge" else 3
    return np.exp(-np.maximum(0.0, 1.0 - g) ** p) * np.exp(-np.maximum(0.0, 1.0 - h) ** p)


def _structure(M, name: str, nonzero_only: bool) -> sp.csr_matrix:
    """Boolean CSR of M's entries (stored entries, or only nonzero values if ``nonzero_only``)."""
    if not sp.issparse(M):
        raise ValueError(f"{name}: expected a scipy sparse matrix, got {type(M).__name__}")
    M = sp.csr_matrix(M, copy=True)
    M.sum_duplicates()
    if nonzero_only:
        M.eliminate_zeros()
    return sp.csr_matrix((np.ones(M.nnz, dtype=bool), M.indices, M.indptr), shape=M.shape)


def cluster_targets(Y, C) -> sp.csr_matrix:
    """Binarised Y C: CSR float32 (N, K), 1 where instance i has a true label in cluster k.

    Y : sparse (N, L) 0/1; C : sparse (L, K) 0/1.
    """
    if Y.shape[1] != C.shape[0]:
        raise ValueError(f"Y has {Y.shape[1]} labels but C has {C.shape[0]} rows (labels)")
    M = _structure(Y, "Y", True).astype(np.float32) @ _structure(C, "C", True).astype(np.float32)
    M = sp.csr_matrix(M)
    M.eliminate_zeros()
    M.data[:] = 1.0
    return M


def candidate_matrix(M_true, M_pred, negatives: str) -> sp.csr_matrix:
    """Training rows of each cluster: CSR bool (N, K).

    M_true : sparse (N, K) true instance->cluster matrix (nonzero values count);
    M_pred : sparse (N, K) matcher top-b scores or None; its *stored* entries are the selected
        clusters (a score of exactly 0 is still a selection).
    negatives : "tfn" -> M_true, "man" -> M_pred's pattern, "tfn+man" -> their union.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives: unknown value {negatives!r}; accepted: {', '.join(NEGATIVES)}")
    if "man" in negatives and M_pred is None:
        raise ValueError(f"negatives={negatives!r} needs M_pred (the matcher's top-b clusters)")
    if M_pred is not None and M_pred.shape != M_true.shape:
        raise ValueError(f"M_pred has shape {M_pred.shape} but M_true has {M_true.shape}")
    if negatives == "tfn":
        return _structure(M_true, "M_true", True)
    if negatives == "man":
        return _structure(M_pred, "M_pred", False)
    union = _structure(M_true, "M_true", True) + _structure(M_pred, "M_pred", False)
    return sp.csr_matrix(union, dtype=bool)


def ranker_features(X_tfidf, emb=None) -> sp.csr_matrix:
    """Ranker input: ``tfidf`` (X_tfidf as is) when emb is None, else ``tfidf+neural`` =
    hstack([l2norm(X_tfidf), l2norm(emb)]). X_tfidf : sparse (N, D); emb : dense (N, d).
    Returns CSR float32 (N, D) or (N, D + d).
    """
    X = sp.csr_matrix(X_tfidf, dtype=np.float32)
    if emb is None:
        return X
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != X.shape[0]:
        raise ValueError(f"emb: expected shape ({X.shape[0]}, d) to match X_tfidf, got {emb.shape}")
    return sp.hstack([normalize(X), sp.csr_matrix(normalize(emb))], format="csr", dtype=np.float32)


@dataclass
class RankerParams(FromDict):
    """Config mirror of :class:`Ranker`'s parameters."""

    config_section = "ranker"

    negatives: str = "tfn+man"
    C: float = 1.0
    threshold: float = 0.01
    n_jobs: int = 1
    bias: float = 1.0


def _assignment_from_C(C_assign) -> tuple[np.ndarray, int]:
    if not sp.issparse(C_assign):
        raise ValueError("C_assign: expected a sparse (L, K) 0/1 matrix")
    Cs = _structure(C_assign, "C_assign", True)
    per_label = np.diff(Cs.indptr)
    bad = np.flatnonzero(per_label != 1)
    if bad.size:
        raise ValueError(
            f"C_assign: every label needs exactly one cluster; label {bad[0]} has {per_label[bad[0]]}"
        )
    return Cs.indices.astype(np.int64), Cs.shape[1]


class Ranker:
    """Per-label squared-hinge linear SVMs trained on cluster candidates.

    Parameters: negatives ("tfn", "man", "tfn+man"), C, threshold (|w| < threshold -> 0),
    n_jobs (worker processes over the labels of a cluster), bias (value of the bias feature).

    Attributes after fit: ``W_`` CSR float32 (L, D + 1), last column = bias weight;
    ``assignment_`` int64 (L,) cluster of each label; ``n_clusters_`` K.
    """

    def __init__(self, negatives: str = "tfn+man", C: float = 1.0, threshold: float = 0.01,
                 n_jobs: int = 1, bias: float = 1.0):
        self.negatives = negatives
        self.C = C
        self.threshold = threshold
        self.n_jobs = n_jobs
        self.bias = bias

    def _cluster_labels(self):
        order = np.argsort(self.assignment_, kind="stable")
        bounds = np.searchsorted(self.assignment_[order], np.arange(self.n_clusters_ + 1))
        return [order[bounds[k] : bounds[k + 1]] for k in range(self.n_clusters_)]

    def _cluster_blocks(self):
        """Per cluster: (labels, W_k^T CSR (D, |labels|), bias weights (|labels|,)). Built once per
        set of weights and kept: rebuilding them dominated the time of one-text predictions."""
        key = getattr(self, "_blocks_key", None)  # holds the objects, so their ids cannot be reused
        if key is None or key[0] is not self.W_ or key[1] is not self.assignment_ or key[2] != self.bias:
            W = sp.csr_matrix(self.W_, dtype=np.float32)
            d = W.shape[1] - 1
            blocks = []
            for labels in self._cluster_labels():
                Wk = W[labels]
                blocks.append((labels, sp.csr_matrix(Wk[:, :d].T), self.bias * Wk[:, d].toarray().ravel()))
            self._blocks, self._blocks_key = blocks, (self.W_, self.assignment_, self.bias)
        return self._blocks

    def fit(self, X, Y, C_assign, M_pred=None, progress: bool = True) -> "Ranker":
        """X : CSR (N, D) ranker features; Y : CSR (N, L) 0/1; C_assign : CSR (L, K) 0/1 with one
        cluster per label; M_pred : CSR (N, K) matcher top-b (needed for "man" / "tfn+man").
        """
        if not sp.issparse(X) or not sp.issparse(Y):
            raise ValueError("X and Y: expected scipy sparse matrices")
        X = sp.csr_matrix(X, dtype=np.float32)
        Y = sp.csr_matrix(Y)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        assignment, k = _assignment_from_C(C_assign)
        if assignment.size != Y.shape[1]:
            raise ValueError(f"C_assign has {assignment.size} labels (rows) but Y has {Y.shape[1]}")
        cand = candidate_matrix(cluster_targets(Y, C_assign), M_pred, self.negatives).tocsc()
        self.assignment_ = assignment
        self.n_clusters_ = k
        clusters = [(c, labels) for c, labels in enumerate(self._cluster_labels()) if labels.size]

        def jobs():  # lazily, so that only a few clusters' blocks are in memory at once
            for c, labels in clusters:
                rows = cand.indices[cand.indptr[c] : cand.indptr[c + 1]]
                yield delayed(fit_ova)(X[rows], Y[rows][:, labels], C=self.C, threshold=self.threshold,
                                       bias=self.bias, n_jobs=1)

        # Workers take whole clusters: each cluster's block is sent once, and liblinear reseeds at
        # every fit, so the weights do not depend on n_jobs.
        results = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs())
        blocks = list(tqdm(results, total=len(clusters), desc="ranker fit", unit="cluster",
                           disable=not progress))
        order = np.concatenate([labels for _, labels in clusters])
        self.W_ = sp.csr_matrix(sp.vstack(blocks, format="csr")[np.argsort(order)], dtype=np.float32)
        return self

    def predict(self, X, M_pred, combine: str = "noop", top_k: int = 20,
                batch_size: int = 8192) -> sp.csr_matrix:
        """Final scores of each row's ``top_k`` labels: CSR float32 (N, L).

        X : CSR (N, D) ranker features; M_pred : CSR (N, K) matcher scores g of the top-b
        clusters. Only labels of a row's selected clusters are scored, per cluster over the rows
        that selected it.
        """
        combine_scores(0.0, 0.0, combine)  # validates the method name
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k: expected a positive integer, got {top_k!r}")
        X = sp.csr_matrix(X, dtype=np.float32)
        n_labels, d1 = self.W_.shape
        d = d1 - 1
        if X.shape[1] != d:
            raise ValueError(f"X has {X.shape[1]} features but the ranker was fit on {d}")
        if not sp.issparse(M_pred) or M_pred.shape != (X.shape[0], self.n_clusters_):
            raise ValueError(f"M_pred: expected sparse shape ({X.shape[0]}, {self.n_clusters_}), "
                             f"got {getattr(M_pred, 'shape', None)}")
        M_pred = sp.csr_matrix(M_pred)
        per_cluster = self._cluster_blocks()
        parts = []
        for s in range(0, X.shape[0], batch_size):
            Xc, Mc = X[s : s + batch_size], M_pred[s : s + batch_size].tocsc()
            rows_l, cols_l, vals_l = [], [], []
            for c, (labels, WkT, bk) in enumerate(per_cluster):
                r = Mc.indices[Mc.indptr[c] : Mc.indptr[c + 1]]
                if r.size == 0 or labels.size == 0:
                    continue
                g = Mc.data[Mc.indptr[c] : Mc.indptr[c + 1]]
                h = (Xc[r] @ WkT).toarray() + bk[None, :]
                rows_l.append(np.repeat(r, labels.size))
                cols_l.append(np.tile(labels, r.size))
                vals_l.append(combine_scores(g[:, None], h, combine).ravel())
            n_chunk = Xc.shape[0]
            if rows_l:
                chunk = sp.csr_matrix(
                    (np.concatenate(vals_l), (np.concatenate(rows_l), np.concatenate(cols_l))),
                    shape=(n_chunk, n_labels),
                )
                parts.append(csr_row_top_k(chunk, top_k))
            else:
                parts.append(sp.csr_matrix((n_chunk, n_labels), dtype=np.float32))
        if not parts:
            return sp.csr_matrix((0, n_labels), dtype=np.float32)
        return sp.vstack(parts, format="csr").astype(np.float32)

    def save(self, path) -> None:
        """npz with W and the settings; ``xmc.io.load_csr(path)`` reads it as the (L, D + 1) weights."""
        save_weights(
            path, self.W_, assignment=self.assignment_, n_clusters=self.n_clusters_,
            negatives=self.negatives, C=self.C, threshold=self.threshold, n_jobs=self.n_jobs,
            bias=self.bias,
        )

    @classmethod
    def load(cls, path) -> "Ranker":
        W, meta = load_weights(path)
        r = cls(negatives=str(meta["negatives"]), C=float(meta["C"]), threshold=float(meta["threshold"]),
                n_jobs=int(meta["n_jobs"]), bias=float(meta["bias"]))
        r.W_ = W.astype(np.float32)
        r.assignment_ = meta["assignment"].astype(np.int64)
        r.n_clusters_ = int(meta["n_clusters"])
        return r
