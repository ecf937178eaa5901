"""Where the matcher's cluster head starts: random (the paper's) or fitted to the pretrained encoder.

With a random head the first few hundred steps teach the head what a cluster is while the encoder
is also moving; on a CPU budget (400 steps of 32 documents: a third of an epoch on EURLEX57K) that
leaves the shortlist behind a linear tree's. Fitting the head once, in closed form, on the
pretrained encoder's pooled embeddings of every training document makes step 0 a linear-probe (or
nearest-centroid) matcher; fine-tuning then moves the encoder and the head together from there.

Each function takes E (N, d) pooled embeddings and M (N, K) 0/1 targets and returns (W (K, d), b (K,))
for ``nn.Linear(d, K)``, scaled for the squared hinge's +-1 targets.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _check(E, M) -> tuple[np.ndarray, sp.csr_matrix]:
    E = np.asarray(E, dtype=np.float64)
    M = sp.csr_matrix(M, dtype=np.float64)
    if E.ndim != 2 or E.shape[0] != M.shape[0]:
        raise ValueError(f"head init: embeddings {E.shape} and targets {M.shape} must have the same rows")
    if E.shape[0] < 2:
        raise ValueError("head init: needs at least two training documents")
    if not np.all(np.isfinite(E)):
        raise ValueError("head init: the embeddings hold NaN or infinite values")
    return E, M


def probe_head(E, M, alpha: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares of the +-1 targets T = 2M - 1 on E with a free bias:
    W = (Ec^T Ec + lam I)^-1 Ec^T T with Ec = E - mean(E) and lam = alpha * trace(Ec^T Ec) / d
    (scale-free), b = mean(T) - mean(E) W. Ec^T T = 2 Ec^T M because Ec's columns sum to 0, so M
    stays sparse."""
    E, M = _check(E, M)
    mu = E.mean(axis=0)
    Ec = E - mu
    gram = Ec.T @ Ec
    lam = alpha * np.trace(gram) / gram.shape[0] + 1e-12
    rhs = 2.0 * np.asarray((M.T @ Ec).T)  # (d, K)
    W = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), rhs)  # (d, K)
    b = 2.0 * np.asarray(M.mean(axis=0)).ravel() - 1.0 - mu @ W
    return W.T.astype(np.float32), b.astype(np.float32)


def centroid_head(E, M) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid: w_k = a * c_k / ||c_k|| with c_k the mean embedding of cluster k's positive
    documents, and one scale a and bias b (shared by all clusters) fitted by least squares to the
    +-1 targets, so scores start on the hinge's scale. A cluster with no positive document gets
    w_k = 0 and the bias alone (it ranks below any cluster a document resembles)."""
    E, M = _check(E, M)
    counts = np.asarray(M.sum(axis=0)).ravel()
    C = np.asarray((M.T @ E))  # (K, d) sums
    norms = np.linalg.norm(C, axis=1)
    unit = np.divide(C, norms[:, None], out=np.zeros_like(C), where=(norms > 0)[:, None])
    S = E @ unit.T  # (N, K) raw scores
    T = 2.0 * M.toarray() - 1.0
    s_mean, t_mean = S.mean(), T.mean()
    var = ((S - s_mean) ** 2).mean()
    a = ((S - s_mean) * (T - t_mean)).mean() / var if var > 0 else 0.0
    b = t_mean - a * s_mean
    W = a * unit
    W[counts == 0] = 0.0
    return W.astype(np.float32), np.full(M.shape[1], b, dtype=np.float32)


HEAD_INIT = {"probe": probe_head, "centroids": centroid_head}


def fit_head(kind: str, E, M) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of head_init ``kind`` ("probe" or "centroids")."""
    if kind not in HEAD_INIT:
        raise ValueError(f"head_init: expected one of {sorted(HEAD_INIT)} (or random), got {kind!r}")
    return HEAD_INIT[kind](E, M)


def shortlist_recall_of_head(E, M, W, b, top_b: int, chunk_rows: int = 4096) -> float:
    """Share (%) of the positive (document, cluster) pairs in each row's top-b of E W^T + b: how good
    step 0 already is (logged by training). Scored ``chunk_rows`` documents at a time, so memory
    stays at a chunk's (rows, K) scores however many training documents there are."""
    M = sp.csr_matrix(M)
    E = np.asarray(E, dtype=np.float32)
    b_ = min(top_b, W.shape[0])
    hits = 0.0
    for start in range(0, E.shape[0], chunk_rows):
        S = E[start:start + chunk_rows] @ W.T + b
        top = np.argpartition(-S, b_ - 1, axis=1)[:, :b_]
        hit = np.zeros_like(S, dtype=bool)
        np.put_along_axis(hit, top, True, axis=1)
        hits += float(M[start:start + chunk_rows].multiply(hit).sum())
    return 100.0 * hits / max(M.nnz, 1)
