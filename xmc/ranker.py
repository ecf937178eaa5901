"""Ranker: per-label linear one-vs-all models trained on cluster-restricted instances.

For label l in cluster c_l, the training rows are the *candidates* of c_l:
- ``tfn``: instances with a true label in c_l (M = binarised Y C);
- ``man``: instances whose matcher top-b clusters contain c_l;
- ``tfn+man``: the union (the paper's best).
A cluster whose candidates include no negative document for one of its labels (its labels all come
from one document carrying thousands of labels, say) would learn "always yes" and score every
text 1.0: it gets random negative documents instead (:func:`add_missing_negatives`), with a warning.
At prediction only labels of each row's top-b clusters are scored, and the ranker score h is
combined with the matcher score g of the label's cluster (:func:`combine_scores`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from tqdm.auto import tqdm

from xmc.indexing import cluster_targets, sparse_pattern
from xmc.io import load_weights, save_weights
from xmc.linear import fit_ova_blocks
from xmc.metrics import csr_row_top_k
from xmc.params import FromDict, check_positive_int
from xmc.vocabulary import COMBINE as COMBINE_METHODS, NEGATIVES

__all__ = [
    "COMBINE_METHODS",
    "NEGATIVES",
    "Ranker",
    "RankerParams",
    "RankerPredParams",
    "candidate_matrix",
    "combine_scores",
    "shard_clusters",
]

log = logging.getLogger("xmc.ranker")

# Random negatives given to a cluster whose candidates hold none for some label (at least this
# many, or as many as it has candidates).
MIN_NEGATIVES = 16


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


def check_negatives(negatives: str) -> str:
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives: unknown value {negatives!r}; accepted: {', '.join(NEGATIVES)}")
    return negatives


def candidate_matrix(M_true, M_pred, negatives: str) -> sp.csr_matrix:
    """Training rows of each cluster: CSR bool (N, K).

    M_true : sparse (N, K) true instance->cluster matrix (nonzero values count);
    M_pred : sparse (N, K) matcher top-b scores or None; its *stored* entries are the selected
        clusters (a score of exactly 0 is still a selection).
    negatives : "tfn" -> M_true, "man" -> M_pred's pattern, "tfn+man" -> their union.
    """
    check_negatives(negatives)
    if "man" in negatives and M_pred is None:
        raise ValueError(f"negatives={negatives!r} needs M_pred (the matcher's top-b clusters)")
    if M_pred is not None and M_pred.shape != M_true.shape:
        raise ValueError(f"M_pred has shape {M_pred.shape} but M_true has {M_true.shape}")
    if negatives == "tfn":
        return sparse_pattern(M_true, "M_true", True)
    if negatives == "man":
        return sparse_pattern(M_pred, "M_pred", False)
    union = sparse_pattern(M_true, "M_true", True) + sparse_pattern(M_pred, "M_pred", False)
    return sp.csr_matrix(union, dtype=bool)


def add_missing_negatives(Y, row_sets: list, label_sets: list, cluster_ids: list, negatives: str) -> list:
    """``row_sets`` (each cluster's candidate rows) where a cluster whose candidates hold no
    negative document for one of its labels gets random documents positive for none of its labels:
    max(MIN_NEGATIVES, its candidate count) of them, or all there are, drawn with a generator
    seeded by the cluster id (the same in every shard and thread). Logs a warning naming the
    clusters and their documents."""
    Y = sp.csr_matrix(Y)
    n = Y.shape[0]
    df = np.asarray(Y.getnnz(axis=0)).ravel()
    Yc = None
    out, fixed = [], []
    for rows, labels, c in zip(row_sets, label_sets, cluster_ids):
        rows = np.asarray(rows, dtype=np.int64)
        if labels.size == 0 or rows.size == 0:
            out.append(rows)
            continue
        if "tfn" in negatives:  # every positive of a label is among its cluster's candidates
            pos = df[labels]
        else:
            pos = np.asarray(Y[rows][:, labels].getnnz(axis=0)).ravel()
        if (rows.size - pos).min() >= 1:
            out.append(rows)
            continue
        if Yc is None:
            Yc = Y.tocsc()
        positive = np.unique(np.concatenate([Yc.indices[Yc.indptr[j]:Yc.indptr[j + 1]] for j in labels]))
        pool = np.setdiff1d(np.arange(n, dtype=np.int64), np.union1d(rows, positive), assume_unique=True)
        extra = np.random.default_rng(int(c)).choice(pool, size=min(pool.size, max(MIN_NEGATIVES, rows.size)),
                                                     replace=False) if pool.size else pool
        fixed.append((int(c), rows[:5].tolist(), int(extra.size)))
        out.append(np.sort(np.concatenate([rows, extra])))
    if fixed:
        shown = "; ".join(f"cluster {c} (documents {docs}{'...' if len(docs) == 5 else ''}): {k} random negatives"
                          for c, docs, k in fixed[:10])
        log.warning("ranker: %d cluster(s) had no negative document for some of their labels (e.g. labels "
                    "carried only by one document with many labels), which would score every text 1.0; "
                    "trained with random negatives instead: %s%s", len(fixed), shown,
                    f" and {len(fixed) - 10} more" if len(fixed) > 10 else "")
    return out


def _assignment_from_C(C_assign) -> tuple[np.ndarray, int]:
    if not sp.issparse(C_assign):
        raise ValueError("C_assign: expected a sparse (L, K) 0/1 matrix")
    Cs = sparse_pattern(C_assign, "C_assign", True)
    per_label = np.diff(Cs.indptr)
    bad = np.flatnonzero(per_label != 1)
    if bad.size:
        raise ValueError(
            f"C_assign: every label needs exactly one cluster; label {bad[0]} has {per_label[bad[0]]}"
        )
    return Cs.indices.astype(np.int64), Cs.shape[1]


def shard_clusters(n_clusters: int, n_shards: int, shard: int) -> np.ndarray:
    """Clusters of shard ``shard`` (0-based) of ``n_shards``: a contiguous run of about
    K / n_shards cluster ids, int64. The indexer balances labels over clusters, so shards train about
    the same number of labels."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards: expected a positive integer, got {n_shards!r}")
    if n_shards > n_clusters:
        raise ValueError(f"n_shards ({n_shards}) must not exceed the number of clusters K ({n_clusters})")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in [0, {n_shards}), got {shard!r}")
    return np.array_split(np.arange(n_clusters, dtype=np.int64), n_shards)[shard]


class _LazyBlocks:
    """The blocks of :meth:`Ranker._cluster_blocks`, block c built when asked for (kept ones are
    built from it too)."""

    def __init__(self, ranker):
        self.W = sp.csr_matrix(ranker.W_, dtype=np.float32)
        self.bias = ranker.bias
        trained = np.zeros(ranker.n_clusters_, dtype=bool)
        trained[ranker._trained_clusters()] = True
        # another shard's labels (a sharded fit) are not scored here
        self.labels = [labels if trained[c] else labels[:0] for c, labels in enumerate(ranker._cluster_labels())]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, c):
        d = self.W.shape[1] - 1
        Wk = self.W[self.labels[c]]
        return self.labels[c], sp.csr_matrix(Wk[:, :d].T), self.bias * Wk[:, d].toarray().ravel()


def _place_rows(row_ids: list, blocks: list, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """CSR float32 (n_rows, n_cols) whose row ``row_ids[i][j]`` is row j of ``blocks[i]``; other rows
    empty. Empties ``blocks`` while filling, so that the weights exist about once in memory (a
    vstack then a row permutation held three copies at the peak)."""
    lengths = np.zeros(n_rows, dtype=np.int64)
    for ids, B in zip(row_ids, blocks):
        lengths[ids] = np.diff(B.indptr)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=np.int32)
    for i, ids in enumerate(row_ids):
        B, blocks[i] = blocks[i], None
        # destination of each stored entry: its row's start in W plus its offset within the row
        dest = np.repeat(indptr[ids] - B.indptr[:-1], np.diff(B.indptr)) + np.arange(B.nnz)
        data[dest] = B.data
        indices[dest] = B.indices
        del B, dest
        if i % 32 == 31:
            _release_freed_memory()
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def _release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc): the blocks freed so far are small
    allocations that would otherwise stay resident while the weights are filled in."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@dataclass
class RankerParams(FromDict):
    """Training settings of the rankers: negatives ("tfn", "man", "tfn+man": which documents train
    each cluster's labels), C (SVM cost), threshold (|w| < threshold -> 0), bias (value of the bias
    feature). Config: ``ranker`` C and threshold; negatives is a model's wildcard."""

    config_section = "ranker"

    negatives: str = "tfn+man"
    C: float = 1.0
    threshold: float = 0.01
    bias: float = 1.0

    def __post_init__(self):
        check_negatives(self.negatives)


@dataclass
class RankerPredParams(FromDict):
    """Prediction settings of the rankers: combine (sigma(g, h), :func:`combine_scores`), top_k
    labels kept per row, rows per batch."""

    config_section = "ranker prediction"

    combine: str = "noop"
    top_k: int = 20
    batch_size: int = 8192

    def __post_init__(self):
        combine_scores(0.0, 0.0, self.combine)  # validates the method name
        check_positive_int(self.top_k, "top_k")
        check_positive_int(self.batch_size, "batch_size")


class Ranker:
    """Per-label squared-hinge linear SVMs trained on cluster candidates. Build it with
    :meth:`train`, :meth:`merge` or :meth:`load`.

    Attributes: ``params`` (:class:`RankerParams`), ``n_jobs`` (threads over the clusters; a
    resource, not a setting), ``W_`` CSR float32 (L, D + 1), last column = bias weight;
    ``assignment_`` int64 (L,) cluster of each label; ``n_clusters_`` K; ``clusters_`` int64, the
    clusters whose labels were trained (all K, or one shard's; :meth:`merge` joins shards).
    ``keep_blocks`` (default False): keep the per-cluster transposed weights between predict
    calls (a second copy of the weights; worth it for many small queries, as a served bundle).
    """

    keep_blocks = False

    def __init__(self, params: RankerParams | None = None, n_jobs: int = 1):
        self.params = params or RankerParams()
        self.n_jobs = n_jobs

    bias = property(lambda self: self.params.bias)

    def _cluster_labels(self):
        order = np.argsort(self.assignment_, kind="stable")
        bounds = np.searchsorted(self.assignment_[order], np.arange(self.n_clusters_ + 1))
        return [order[bounds[k] : bounds[k + 1]] for k in range(self.n_clusters_)]

    def _cluster_blocks(self):
        """Per cluster: (labels, W_k^T CSR (D, |labels|), bias weights (|labels|,)). With
        ``keep_blocks`` built once per set of weights and kept (rebuilding them dominated the time
        of one-text predictions); otherwise built lazily, one cluster at a time."""
        if not self.keep_blocks:
            self._blocks = self._blocks_key = None
            return _LazyBlocks(self)
        key = getattr(self, "_blocks_key", None)  # holds the objects, so their ids cannot be reused
        clusters = self._trained_clusters()
        if (key is None or key[0] is not self.W_ or key[1] is not self.assignment_ or key[2] != self.bias
                or not np.array_equal(key[3], clusters)):
            lazy = _LazyBlocks(self)
            blocks = [lazy[c] for c in range(len(lazy))]
            self._blocks, self._blocks_key = blocks, (self.W_, self.assignment_, self.bias, clusters.copy())
        return self._blocks

    @classmethod
    def train(cls, X, Y, C_assign, M_pred=None, params: RankerParams | None = None, n_jobs: int = 1,
              progress: bool = True, clusters=None) -> "Ranker":
        """X : CSR (N, D) ranker features; Y : CSR (N, L) 0/1; C_assign : CSR (L, K) 0/1 with one
        cluster per label; M_pred : CSR (N, K) matcher top-b (needed for "man" / "tfn+man").
        clusters : cluster ids to train (default all, see :func:`shard_clusters`); the rows of W_ of
        other clusters' labels stay empty. Each label's model depends only on its own cluster's
        rows, so shards joined by :meth:`merge` equal one training over all clusters.
        """
        return cls(params, n_jobs)._fit(X, Y, C_assign, M_pred, progress, clusters)

    def _fit(self, X, Y, C_assign, M_pred, progress: bool, clusters) -> "Ranker":
        p = self.params
        if not sp.issparse(X) or not sp.issparse(Y):
            raise ValueError("X and Y: expected scipy sparse matrices")
        X = sp.csr_matrix(X, dtype=np.float32)
        Y = sp.csr_matrix(Y)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        assignment, k = _assignment_from_C(C_assign)
        if assignment.size != Y.shape[1]:
            raise ValueError(f"C_assign has {assignment.size} labels (rows) but Y has {Y.shape[1]}")
        cand = candidate_matrix(cluster_targets(Y, C_assign), M_pred, p.negatives).tocsc()
        self.assignment_ = assignment
        self.n_clusters_ = k
        self.clusters_ = np.arange(k, dtype=np.int64)
        if clusters is not None:
            chosen = np.unique(np.asarray(clusters, dtype=np.int64))
            if chosen.size and (chosen[0] < 0 or chosen[-1] >= k):
                raise ValueError(f"clusters: ids must be in [0, {k}), got {chosen[0]}..{chosen[-1]}")
            self.clusters_ = chosen
        wanted = np.zeros(k, dtype=bool)
        wanted[self.clusters_] = True
        clusters = [(c, labels) for c, labels in enumerate(self._cluster_labels()) if labels.size and wanted[c]]

        # n_jobs threads solve different clusters at once (largest first); a label's model depends
        # only on its cluster's rows and the solver's seed, so the weights do not depend on n_jobs.
        with tqdm(total=len(clusters), desc="ranker fit", unit="cluster", disable=not progress) as bar:
            rows = add_missing_negatives(Y, [cand.indices[cand.indptr[c] : cand.indptr[c + 1]] for c, _ in clusters],
                                         [labels for _, labels in clusters], [c for c, _ in clusters],
                                         p.negatives)
            blocks = fit_ova_blocks(
                X, Y, rows,
                [labels for _, labels in clusters], n_jobs=self.n_jobs, callback=bar.update,
                C=p.C, threshold=p.threshold, bias=p.bias)
        # Labels outside the trained clusters (another shard's) keep empty rows.
        self.W_ = _place_rows([labels for _, labels in clusters], blocks, Y.shape[1], X.shape[1] + 1)
        return self

    @classmethod
    def merge(cls, parts: list["Ranker"]) -> "Ranker":
        """Join rankers trained on disjoint cluster shards (:meth:`train` with ``clusters``) into one
        whose weights are those of a training over all clusters."""
        if not parts:
            raise ValueError("merge: no rankers given")
        first = parts[0]
        for i, part in enumerate(parts[1:], 1):
            for name, value in vars(part.params).items():
                if value != getattr(first.params, name):
                    raise ValueError(f"merge: shard {i} has {name}={value!r} but shard 0 has "
                                     f"{getattr(first.params, name)!r}")
            if part.n_clusters_ != first.n_clusters_ or not np.array_equal(part.assignment_, first.assignment_):
                raise ValueError(f"merge: shard {i} was fit on another label indexing than shard 0")
            if part.W_.shape != first.W_.shape:
                raise ValueError(f"merge: shard {i} has weights {part.W_.shape}, shard 0 {first.W_.shape}")
        covered = np.concatenate([p.clusters_ for p in parts])
        if covered.size != np.unique(covered).size:
            raise ValueError("merge: shards overlap (a cluster was trained by more than one shard)")
        if covered.size != first.n_clusters_:
            missing = np.setdiff1d(np.arange(first.n_clusters_), covered)
            raise ValueError(f"merge: {missing.size} cluster(s) are in no shard (first: {missing[0]})")
        merged = cls(first.params, n_jobs=first.n_jobs)
        W = parts[0].W_
        for part in parts[1:]:
            W = W + part.W_  # disjoint label rows: the sum places each shard's rows
        merged.W_ = sp.csr_matrix(W, dtype=np.float32)
        merged.W_.sort_indices()
        merged.assignment_ = first.assignment_.copy()
        merged.n_clusters_ = first.n_clusters_
        merged.clusters_ = np.arange(first.n_clusters_, dtype=np.int64)
        return merged

    def predict(self, X, M_pred, pred_params: RankerPredParams | None = None, **overrides) -> sp.csr_matrix:
        """Final scores of each row's ``top_k`` labels: CSR float32 (N, L).

        X : CSR (N, D) ranker features; M_pred : CSR (N, K) matcher scores g of the top-b
        clusters. pred_params : default :class:`RankerPredParams` (); keyword overrides
        (``combine=``, ``top_k=``, ``batch_size=``) replace its fields. Only labels of a row's
        selected clusters are scored, per cluster over the rows that selected it. Equal final
        scores (a saturated sigma) are ordered by the ranker score h, and the float32 values keep
        that order (:func:`xmc.metrics.csr_row_top_k`).
        """
        pp = (pred_params or RankerPredParams()).with_overrides(**overrides)
        combine, top_k, batch_size = pp.combine, pp.top_k, pp.batch_size
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
            rows_l, cols_l, vals_l, h_l = [], [], [], []
            for c in range(len(per_cluster)):
                r = Mc.indices[Mc.indptr[c] : Mc.indptr[c + 1]]
                if r.size == 0:
                    continue
                labels, WkT, bk = per_cluster[c]
                if labels.size == 0:
                    continue
                g = Mc.data[Mc.indptr[c] : Mc.indptr[c + 1]]
                h = (Xc[r] @ WkT).toarray() + bk[None, :]
                rows_l.append(np.repeat(r, labels.size))
                cols_l.append(np.tile(labels, r.size))
                vals_l.append(combine_scores(g[:, None], h, combine).ravel())
                h_l.append(h.ravel())
            n_chunk = Xc.shape[0]
            if rows_l:
                where = (np.concatenate(rows_l), np.concatenate(cols_l))
                chunk = sp.csr_matrix((np.concatenate(vals_l), where), shape=(n_chunk, n_labels))
                # sigma saturates (l*-hinge is exactly 1 for g, h >= 1): equal scores go by h, not
                # by label index
                h_chunk = sp.csr_matrix((np.concatenate(h_l), where), shape=(n_chunk, n_labels))
                parts.append(csr_row_top_k(chunk, top_k, tiebreak=h_chunk))
            else:
                parts.append(sp.csr_matrix((n_chunk, n_labels), dtype=np.float32))
        if not parts:
            return sp.csr_matrix((0, n_labels), dtype=np.float32)
        return sp.vstack(parts, format="csr").astype(np.float32)

    def _trained_clusters(self) -> np.ndarray:
        return getattr(self, "clusters_", np.arange(self.n_clusters_, dtype=np.int64))

    def save(self, path) -> None:
        """npz with W and the settings; ``xmc.io.load_csr(path)`` reads it as the (L, D + 1) weights."""
        p = self.params  # n_jobs kept in the file (as before), though it changes no weight
        save_weights(path, self.W_, assignment=self.assignment_, n_clusters=self.n_clusters_, negatives=p.negatives,
                     C=p.C, threshold=p.threshold, n_jobs=self.n_jobs, bias=p.bias, clusters=self._trained_clusters())

    @classmethod
    def load(cls, path) -> "Ranker":
        W, meta = load_weights(path)
        r = cls(RankerParams(negatives=str(meta["negatives"]), C=float(meta["C"]), threshold=float(meta["threshold"]),
                             bias=float(meta["bias"])), n_jobs=int(meta["n_jobs"]) if "n_jobs" in meta else 1)
        r.W_ = W.astype(np.float32)
        r.assignment_ = meta["assignment"].astype(np.int64)
        r.n_clusters_ = int(meta["n_clusters"])
        r.clusters_ = (meta["clusters"].astype(np.int64) if "clusters" in meta
                       else np.arange(r.n_clusters_, dtype=np.int64))
        return r
