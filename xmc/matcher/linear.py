"""Linear baseline matcher: one-vs-all L2-loss SVMs from TF-IDF to clusters (phi_tfidf + linear).

Its output has the transformer matcher's contract: CSR (N, K) holding the scores g of each row's
top-b clusters.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xmc.linear import fit_ova, load_weights, save_weights

__all__ = ["LinearMatcher", "top_b_dense"]


def top_b_dense(scores: np.ndarray, b: int) -> sp.csr_matrix:
    """Keep each row's ``b`` best scores of a dense (N, K) array (ties -> lower index); CSR float32."""
    n, k = scores.shape
    b = min(b, k)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :b]
    rows = np.repeat(np.arange(n), b)
    cols = order.ravel()
    vals = scores[rows, cols].astype(np.float32)
    # Built from (data, indices, indptr) so that a score of exactly 0 stays a stored entry.
    order_in_row = np.argsort(cols.reshape(n, b), axis=1, kind="stable")
    cols_sorted = np.take_along_axis(cols.reshape(n, b), order_in_row, axis=1).ravel()
    vals_sorted = np.take_along_axis(vals.reshape(n, b), order_in_row, axis=1).ravel()
    indptr = np.arange(0, n * b + 1, b, dtype=np.int64)
    return sp.csr_matrix((vals_sorted, cols_sorted.astype(np.int32), indptr), shape=(n, k))


class LinearMatcher:
    """Parameters: C (SVM cost), threshold (weight sparsification), top_b (clusters kept per row).

    Attributes after fit: ``W_`` CSR float32 (K, D + 1), last column = bias weight.
    """

    def __init__(self, C: float = 1.0, threshold: float = 0.01, top_b: int = 10, n_jobs: int = 1):
        self.C = C
        self.threshold = threshold
        self.top_b = top_b
        self.n_jobs = n_jobs

    @staticmethod
    def _check_b(b) -> int:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"top_b: expected a positive integer, got {b!r}")
        return int(b)

    def _weights(self):
        """(W[:, :D].T as CSR (D, K), bias weights (K,)), built once per weights: transposing W at
        every call dominated the time of one-text predictions."""
        key = getattr(self, "_weights_key", None)  # holds W_, so its id cannot be reused
        if key is not self.W_:
            W = sp.csr_matrix(self.W_)
            d = W.shape[1] - 1
            self._WT, self._bias, self._weights_key = sp.csr_matrix(W[:, :d].T), W[:, d].toarray().ravel(), self.W_
        return self._WT, self._bias

    def fit(self, X, M) -> "LinearMatcher":
        """X : CSR (N, D) TF-IDF; M : CSR (N, K) 0/1 instance->cluster targets. Returns self."""
        self._check_b(self.top_b)
        if X.shape[0] != M.shape[0]:
            raise ValueError(f"X and M must have the same number of rows; got {X.shape[0]} and {M.shape[0]}")
        self.W_ = fit_ova(X, M, C=self.C, threshold=self.threshold, n_jobs=self.n_jobs)
        return self

    def predict(self, X, top_b: int | None = None, batch_size: int = 8192) -> sp.csr_matrix:
        """Scores of each row's top-b clusters: CSR float32 (N, K), b stored entries per row."""
        b = self._check_b(self.top_b if top_b is None else top_b)
        X = sp.csr_matrix(X)
        WT, bias = self._weights()
        if X.shape[1] != WT.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features but the matcher was fit on {WT.shape[0]}")
        parts = []
        for i in range(0, X.shape[0], batch_size):
            # As xmc.linear.decision_function ([X, 1] @ W.T), with W's transpose built once.
            scores = np.asarray((X[i : i + batch_size] @ WT).todense(), dtype=np.float64)
            scores += bias[None, :]
            parts.append(top_b_dense(scores.astype(np.float32), b))
        if not parts:
            return sp.csr_matrix((0, self.W_.shape[0]), dtype=np.float32)
        return sp.vstack(parts, format="csr")

    def save(self, path) -> None:
        """npz readable by :func:`load` (and as the plain (K, D + 1) weights by ``load_csr``)."""
        save_weights(path, self.W_, C=self.C, threshold=self.threshold, top_b=self.top_b)

    @classmethod
    def load(cls, path) -> "LinearMatcher":
        W, meta = load_weights(path)
        m = cls(C=float(meta["C"]), threshold=float(meta["threshold"]), top_b=int(meta["top_b"]))
        m.W_ = W
        return m
