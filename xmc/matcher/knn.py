"""The matcher's nearest-neighbour shortlist: clusters voted by the training documents nearest in the
fine-tuned encoder's embedding.

The matcher's cluster head is K weight vectors fitted in a few hundred steps; the fine-tuned
embedding of every training document is a far larger memory of the same encoder. A document's
clusters are scored by its k nearest training documents (cosine), each voting for its own clusters
(M = YC) with weight similarity ** power, the votes normalised to sum to one, and mixed with the
head's scores mapped onto [0, 1]:

    score(c) = (1 - head_weight) * sum_j w_j [c in clusters(j)] + head_weight * (clip(h_c, -1, 1) + 1) / 2

The squared hinge trains h towards +1 on positive clusters and -1 on the others, hence the map.
The neighbours may also be sought partly by the same encoder before fine-tuning (phi_pre): with
``pretrained_weight`` w the similarity is (1 - w) cos_fine-tuned + w cos_pretrained
(:func:`knn_embedding`); 400 steps of fine-tuning sharpen the clusters, while the pretrained
sentence encoder keeps its broader sense of which documents are alike.
On validation (bench/README, the kNN lever) the vote lifts top-b recall more than any training
setting did. Training documents are scored leave-one-out, so the rankers' matcher-aware negatives
come from shortlists like those they meet at prediction.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from xmc.indexing import l2_normalize_rows
from xmc.params import check_positive_int


KNN_KEYS = ("k", "power", "head_weight")  # required
KNN_OPTIONAL = {"pretrained_weight": 0.0}  # and its default (configs and bundles before it)


def check_knn(knn) -> dict:
    """``matcher.knn`` settings, checked (they may come from a stranger's bundle manifest): a dict
    of ``k`` (positive int), ``power`` (finite number >= 0), ``head_weight`` (number in [0, 1])
    and optionally ``pretrained_weight`` (number in [0, 1], default 0). Returns it unchanged; a
    ValueError names the bad key."""
    if not isinstance(knn, dict) or not set(KNN_KEYS) <= set(knn) <= {*KNN_KEYS, *KNN_OPTIONAL}:
        raise ValueError(f"knn: expected the keys {list(KNN_KEYS)} and optionally {list(KNN_OPTIONAL)}, "
                         f"got {knn!r}")
    check_positive_int(knn["k"], "knn.k")
    for key, lo, hi in (("power", 0.0, np.inf), ("head_weight", 0.0, 1.0), ("pretrained_weight", 0.0, 1.0)):
        if key in knn:
            _check_number(knn[key], f"knn.{key}", lo, hi)
    return knn


def _check_number(value, name: str, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (np.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name}: expected a number in [{lo}, {hi}], got {value!r}")


def knn_embedding(fine_tuned, pretrained=None, pretrained_weight: float = 0.0) -> np.ndarray:
    """The space the neighbours are sought in: the fine-tuned embedding, or with pretrained_weight
    w > 0 both encoders' (rows l2-normalised, scaled by the square roots of 1 - w and w, side by
    side), so that the cosine of two documents is (1 - w) cos_fine-tuned + w cos_pretrained.
    fine_tuned : (n, d); pretrained : (n, d') the same documents' phi_pre, needed when w > 0."""
    _check_number(pretrained_weight, "knn.pretrained_weight", 0.0, 1.0)
    fine_tuned = np.asarray(fine_tuned, dtype=np.float32)
    if pretrained_weight == 0:
        return fine_tuned
    if pretrained is None:
        raise ValueError("pretrained_weight > 0 needs the pretrained encoder's embeddings")
    pretrained = np.asarray(pretrained, dtype=np.float32)
    if fine_tuned.ndim != 2 or pretrained.ndim != 2 or pretrained.shape[0] != fine_tuned.shape[0]:
        raise ValueError(f"fine-tuned {fine_tuned.shape} and pretrained {pretrained.shape} embeddings must be "
                         "2-d with one row per document each")
    return np.hstack([np.sqrt(1.0 - pretrained_weight) * l2_normalize_rows(fine_tuned),
                      np.sqrt(pretrained_weight) * l2_normalize_rows(pretrained)]).astype(np.float32)


def knn_shortlist(queries, memory, memory_clusters, top_b: int, k: int = 400, power: float = 4.0,
                  head=None, head_weight: float = 0.0, exclude_self: bool = False,
                  chunk_rows: int = 2048) -> sp.csr_matrix:
    """Each query's top-b clusters by its k nearest memory rows' votes (mixed with the head's scores).

    queries : (N, d) embeddings; memory : (n, d) the training documents' embeddings;
    memory_clusters : sparse (n, K), nonzero where a training document has a label in the cluster
    (M = YC); head : sparse (N, K) the head's scores of its own shortlist (missing entries count as
    the head's -1), or None; exclude_self : the queries are the memory itself (row i is not its own
    neighbour). Returns CSR (N, K) with exactly min(top_b, K) stored scores per row, in [0, 1].
    """
    Q, E = (l2_normalize_rows(X).astype(np.float32) for X in (queries, memory))  # cosine as a float32 product
    MC = sp.csr_matrix(memory_clusters).astype(np.float32, copy=True)  # the caller's stays
    n, K = MC.shape
    if Q.ndim != 2 or E.ndim != 2 or Q.shape[1] != E.shape[1]:
        raise ValueError(f"queries {Q.shape} and memory {E.shape} must be 2-d with the same width")
    if E.shape[0] != n:
        raise ValueError(f"memory has {E.shape[0]} rows but memory_clusters {n}")
    if exclude_self and Q.shape[0] != n:
        raise ValueError("exclude_self: the queries must be the memory itself")
    check_positive_int(top_b, "top_b")
    check_knn({"k": k, "power": power, "head_weight": head_weight})
    if head_weight > 0 and head is None:
        raise ValueError("head_weight > 0 needs the head's scores")
    if head is not None:
        head = sp.csr_matrix(head, dtype=np.float32)
        if head.shape != (Q.shape[0], K):
            raise ValueError(f"head scores {head.shape}, expected {(Q.shape[0], K)}")
    MC.data[:] = 1.0
    k = min(k, n - 1 if exclude_self else n)
    if k < 1:
        raise ValueError("the memory holds no neighbour to vote")
    b = min(top_b, K)
    rows, cols, vals = [], [], []
    for lo in range(0, Q.shape[0], chunk_rows):
        hi = min(lo + chunk_rows, Q.shape[0])
        S = Q[lo:hi] @ E.T
        if exclude_self:
            S[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
        w = np.take_along_axis(S, nn, axis=1).clip(0.0) ** power
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / k)  # all dissimilar: plain votes
        W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(hi - lo), k), nn.ravel())), shape=(hi - lo, n))
        score = (1.0 - head_weight) * (W @ MC).toarray()
        if head_weight > 0:
            h = head[lo:hi].tocoo()
            score[h.row, h.col] += head_weight * (np.clip(h.data, -1.0, 1.0) + 1.0) / 2.0
        top = np.argpartition(-score, b - 1, axis=1)[:, :b]
        rows.append(np.repeat(np.arange(lo, hi), b))
        cols.append(top.ravel())
        vals.append(np.take_along_axis(score, top, axis=1).ravel())
    out = sp.csr_matrix((np.concatenate(vals).astype(np.float32),
                         (np.concatenate(rows), np.concatenate(cols))), shape=(Q.shape[0], K))
    out.sort_indices()
    return out
