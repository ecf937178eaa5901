"""Label indexing: recursive balanced spherical 2-means (the X-Transformer / Parabel indexer).

Each node's labels are split into two children of sizes ceil(n/2) and floor(n/2) by ranking the
labels on their cosine-similarity preference s0 - s1 for the two centroids. Recursion runs level by
level until ``n_clusters`` leaves; leaves are numbered left to right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xmc.io import load_csr, save_csr
from xmc.parallel import check_n_jobs, thread_map
from xmc.params import FromDict

__all__ = ["default_n_clusters", "BalancedKMeans", "IndexerParams", "cluster_targets", "sparse_pattern",
           "l2_normalize_rows"]


def default_n_clusters(n_labels: int) -> int:
    """The original code's rule: depth = floor(log2(L // 100 + 1)) + 1, K = 2 ** depth."""
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels < 1:
        raise ValueError(f"n_labels: expected a positive integer, got {n_labels!r}")
    depth = int(math.floor(math.log2(int(n_labels) // 100 + 1))) + 1
    return 2**depth


def l2_normalize_rows(Z):
    """Rows scaled to unit l2 norm; all-zero rows stay zero (labels without features). Sparse input
    becomes float32 (norms summed in float64): half the memory and bandwidth of the 2-means."""
    if sp.issparse(Z):
        Z = sp.csr_matrix(Z, dtype=np.float32, copy=True)
        lengths = np.diff(Z.indptr)
        norms = np.zeros(Z.shape[0])
        filled = lengths > 0
        if Z.nnz:  # row sums over the non-empty rows' segments (no per-entry row-id array)
            norms[filled] = np.sqrt(np.add.reduceat(np.square(Z.data), Z.indptr[:-1][filled], dtype=np.float64))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        Z.data *= np.repeat(scale.astype(np.float32), lengths)
        return Z
    Z = np.array(Z, dtype=np.float64)
    norms = np.linalg.norm(Z, axis=1)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return Z * scale[:, None]


def _unit(c: np.ndarray) -> np.ndarray:
    # einsum, not np.dot: BLAS's dot would wake its thread pool, whose spinning threads took the
    # cores the node splits run on
    norm = np.sqrt(np.einsum("i,i->", c, c))
    return c / norm if norm > 0 else c


@dataclass
class IndexerParams(FromDict):
    """Training settings of the indexer (config: ``indexing``, and the top-level ``seed``).

    n_clusters : int, power of two, 1 <= n_clusters <= n_labels; None: :func:`default_n_clusters`.
    max_iter : int, iterations per split (the original used about 20).
    seed : int. Each node draws its two initial centroids with ``default_rng([seed, node_id])``,
        node_id the heap index (root 1, children 2i and 2i+1), so the tree is deterministic.
    tol : float in [0, 1). A split stops once at most ``tol * n`` labels changed child
        (0 -> stop only when the split no longer changes).
    """

    config_section = "indexing"

    n_clusters: int | None = None
    max_iter: int = 20
    seed: int = 0
    tol: float = 0.0

    def __post_init__(self):
        k = self.n_clusters
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (k & (k - 1))):
            raise ValueError(f"n_clusters: expected a power of two >= 1, got {k!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter: expected a positive integer, got {self.max_iter!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")
        if not (0.0 <= float(self.tol) < 1.0):
            raise ValueError(f"tol: expected a float in [0, 1), got {self.tol!r}")


class BalancedKMeans:
    """Recursive balanced spherical 2-means. Build it with :meth:`train` or :meth:`load`.

    Attributes
    ----------
    params : :class:`IndexerParams`.
    assignment_ : int64 ndarray (L,), leaf (cluster) of each label, leaves ordered left to right.
    C_ : CSR float32 (L, K), one 1 per row.
    n_iter_ : list of int, iterations used by each split, in level order.

    Balance: every split is ceil(n/2) / floor(n/2), so at depth d every leaf holds
    floor(L / 2^d) or ceil(L / 2^d) labels: leaf sizes differ by at most 1 overall.
    """

    def __init__(self, params: IndexerParams | None = None):
        self.params = params or IndexerParams()

    @classmethod
    def train(cls, Z, params: IndexerParams | None = None, n_jobs: int = 1) -> "BalancedKMeans":
        """Z : sparse or dense (L, D) label representations. n_jobs : threads splitting the nodes
        of a level at once (-1: one per CPU); the tree does not depend on it."""
        return cls(params)._fit(Z, n_jobs)

    def _fit(self, Z, n_jobs: int) -> "BalancedKMeans":
        if sp.issparse(Z):
            if Z.ndim != 2:
                raise ValueError(f"Z: expected a 2-D matrix (L, D), got shape {Z.shape}")
            data = Z.tocsr().data
        else:
            Z = np.asarray(Z)
            if Z.ndim != 2:
                raise ValueError(f"Z: expected a 2-D matrix (L, D), got shape {Z.shape}")
            data = Z
        if not np.all(np.isfinite(data)):
            raise ValueError("Z: contains NaN or infinite values")
        n_labels = Z.shape[0]
        k = default_n_clusters(n_labels) if self.params.n_clusters is None else int(self.params.n_clusters)
        if k > n_labels:
            raise ValueError(f"n_clusters: {k} exceeds the number of labels (rows of Z) {n_labels}")
        check_n_jobs(n_jobs)
        Zn = l2_normalize_rows(Z)

        nodes = [np.arange(n_labels, dtype=np.int64)]  # label ids per node, left to right
        node_ids = [1]
        n_iter = []

        def split(node):  # the node's rows are sliced here, so at most n_jobs copies exist at once
            idx, nid = node
            # the root is all of Zn: no row-sliced copy of the largest node
            return self._split(Zn if idx.size == n_labels else Zn[idx], nid)

        for _ in range(int(math.log2(k))):
            next_nodes, next_ids = [], []
            # the nodes of one level are independent: split in n_jobs threads
            for idx, nid, (left, it) in zip(nodes, node_ids, thread_map(split, zip(nodes, node_ids), n_jobs)):
                n_iter.append(it)
                next_nodes += [idx[left], idx[~left]]
                next_ids += [2 * nid, 2 * nid + 1]
            nodes, node_ids = next_nodes, next_ids

        assignment = np.empty(n_labels, dtype=np.int64)
        for leaf, idx in enumerate(nodes):
            assignment[idx] = leaf
        self._set_assignment(assignment, k)
        self.n_iter_ = n_iter
        return self

    def _set_assignment(self, assignment: np.ndarray, k: int) -> None:
        n_labels = assignment.size
        self.assignment_ = assignment
        self.C_ = sp.csr_matrix(
            (np.ones(n_labels, dtype=np.float32), (np.arange(n_labels), assignment)),
            shape=(n_labels, k),
            dtype=np.float32,
        )

    def save(self, path) -> None:
        """``C_`` as ``xmc.io.save_csr`` writes it: the assignment is the whole model (what the
        workflow's ``indexer/{indexer}/C.npz`` always held); the params it came from are the config's."""
        save_csr(path, self.C_)

    @classmethod
    def load(cls, path, params: IndexerParams | None = None) -> "BalancedKMeans":
        """A saved C (L, K) with one cluster per label; ``params``: those it was trained with, if known."""
        C = load_csr(path)
        if np.any(np.diff(C.indptr) != 1):
            raise ValueError(f"{path}: not an indexer's C (every label needs exactly one cluster)")
        model = cls(params or IndexerParams(n_clusters=C.shape[1]))
        model._set_assignment(C.indices.astype(np.int64), C.shape[1])
        return model

    def _split(self, Zs, node_id: int):
        """Balanced 2-means on the unit rows ``Zs`` (n, D); returns (left mask (n,), iterations)."""
        n = Zs.shape[0]
        n_left = (n + 1) // 2
        rng = np.random.default_rng([int(self.params.seed), int(node_id)])
        if sp.issparse(Zs):
            # Only the node's own feature columns: the centroids live there, and dense (D, 2)
            # centroids over the whole vocabulary made every deep split cost O(D) per iteration.
            used = np.flatnonzero(np.bincount(Zs.indices, minlength=Zs.shape[1]))
            if used.size < Zs.shape[1]:
                local = np.zeros(Zs.shape[1], dtype=np.int32)
                local[used] = np.arange(used.size, dtype=np.int32)
                Zs = sp.csr_matrix((Zs.data, local[Zs.indices], Zs.indptr), shape=(n, used.size))
            nonzero = np.flatnonzero(np.diff(Zs.indptr))
        else:
            nonzero = np.flatnonzero(np.any(Zs != 0, axis=1))
        # Seed from labels that have features when possible (zero rows give a zero centroid).
        pool = nonzero if nonzero.size >= 2 else np.arange(n)
        init = rng.choice(pool, size=2, replace=False)
        c0, c1 = (Zs[init].toarray() if sp.issparse(Zs) else Zs[init]).astype(np.float64)
        # Only the difference of the two unit centroids is needed (it gives s0 - s1 in one product),
        # and the right child's sum is the node's total minus the left's.
        total = np.asarray(Zs.sum(axis=0, dtype=np.float64)).ravel()
        left = None
        it = 0
        for it in range(1, self.params.max_iter + 1):
            pref = np.asarray(Zs @ (_unit(c0) - _unit(c1)).astype(Zs.dtype)).ravel()  # s0 - s1, (n,)
            # Stable sort on -(s0 - s1): the labels preferring centroid 0 most go left; ties keep
            # the lower row first, which keeps the split deterministic.
            order = np.argsort(-pref, kind="stable")
            new_left = np.zeros(n, dtype=bool)
            new_left[order[:n_left]] = True
            if left is not None and np.count_nonzero(new_left != left) <= self.params.tol * n:
                left = new_left
                break
            left = new_left
            c0 = np.asarray(Zs.T @ left.astype(Zs.dtype)).ravel().astype(np.float64)
            c1 = total - c0
        return left, it


def sparse_pattern(M, name: str, nonzero_only: bool) -> sp.csr_matrix:
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
    M = sparse_pattern(Y, "Y", True).astype(np.float32) @ sparse_pattern(C, "C", True).astype(np.float32)
    M = sp.csr_matrix(M)
    M.eliminate_zeros()
    M.data[:] = 1.0
    return M
