"""Linear baseline matcher: one-vs-all L2-loss SVMs from TF-IDF to clusters (phi_tfidf + linear).

Its output has the transformer matcher's contract: CSR (N, K) holding the scores g of each row's
top-b clusters.

With ``branching`` set, the matcher is a tree like PECOS XR-Linear's: the K clusters are grouped
into coarser levels of branching, branching^2, ... nodes (groups of *consecutive* clusters, i.e.
siblings in the recursive 2-means tree of :class:`xmc.indexing.BalancedKMeans`, whose leaves are
numbered left to right). The top level is trained on all rows, each deeper node only on the rows
that have a true cluster under its parent (the "tfn" rows), and prediction is a beam search that
keeps ``top_b`` nodes per level. This cuts training from K classifiers over all N rows to
``branching`` over N plus small per-parent problems. A cluster's path score is the product of
PECOS's l3-hinge transform exp(-max(0, 1 - s)^3) of the decision values s along its path, in (0, 1];
the matcher reports it as the decision value g whose transform it is, g = 1 - (-ln p)^(1/3), so that
every matcher hands the rankers an untransformed g: sigma = l3-hinge then gives PECOS's path product
times the ranker's transformed score (transforming p itself again flattened it, and cost 0.9 P@1 on
synthetic data against PECOS with the same negatives), and the order of the clusters is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xmc.io import load_weights, save_weights
from xmc.linear import decision_function, fit_ova, fit_ova_blocks
from xmc.matcher.beam import beam_search
from xmc.metrics import csr_row_top_k
from xmc.parallel import thread_map
from xmc.params import FromDict, check_positive_int

__all__ = ["LinearMatcher", "LinearMatcherParams", "LinearMatcherPredParams", "level_sizes", "top_b_dense"]


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


def level_sizes(n_clusters: int, branching: int | None) -> list[int]:
    """Node counts of the matcher's levels, coarse to fine, ending with ``n_clusters``.

    ``branching=None`` (or >= n_clusters) gives the flat matcher ``[n_clusters]``. Otherwise the
    sizes are branching, branching^2, ... capped at n_clusters; each must divide the next.
    """
    if branching is None or branching >= n_clusters:
        return [int(n_clusters)]
    if isinstance(branching, bool) or not isinstance(branching, (int, np.integer)) or branching < 2:
        raise ValueError(f"branching: expected an integer >= 2 or None, got {branching!r}")
    sizes = [int(branching)]
    while sizes[-1] < n_clusters:
        sizes.append(min(sizes[-1] * int(branching), int(n_clusters)))
    if any(b % a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"branching: {branching} does not split {n_clusters} clusters evenly "
                         f"(levels {sizes}); use powers of two for both")
    return sizes


def _l3_hinge(s):
    return np.exp(-np.maximum(0.0, 1.0 - s) ** 3)


def _dense_scores(X, W) -> np.ndarray:
    """[X, 1] @ W.T for a few nodes W (n, D + 1) of one beam step: W's transpose made dense first
    (n x D floats, small), so that the product is sparse x dense (scipy's sparse x sparse product
    with a sparse result took most of the beam's time)."""
    d = X.shape[1]
    if W.shape[0] * d > 2**25:  # a wide level (large branching): keep it sparse
        return decision_function(X, W)
    WT = W[:, :d].T.toarray()  # (D, n)
    return np.asarray(X @ WT) + W[:, d].toarray().ravel()[None, :]


def _path_decision_values(beam: sp.csr_matrix) -> sp.csr_matrix:
    """Path products p in (0, 1] -> g = 1 - (-ln p)^(1/3), the inverse of the l3-hinge transform
    (monotone: the same top-b; stored entries stay stored, a g of 0 included)."""
    beam = sp.csr_matrix(beam, dtype=np.float64, copy=True)
    p = np.clip(beam.data, np.finfo(np.float64).tiny, 1.0)
    beam.data = 1.0 - np.cbrt(-np.log(p))
    return beam


def _candidates(clusters: np.ndarray, path: np.ndarray, n_clusters: int) -> sp.csr_matrix:
    """The beam's candidates (B, m) as CSR (B, n_clusters) of their path values."""
    rows = np.repeat(np.arange(clusters.shape[0]), clusters.shape[1])
    return sp.csr_matrix((path.ravel(), (rows, clusters.ravel())), shape=(clusters.shape[0], n_clusters))


class _TreeWalk:
    """The linear tree's walk for :func:`xmc.matcher.beam.beam_search` (numpy): a cluster's path
    value is the product of the l3-hinge transforms of its own and its ancestors' decision values;
    the beam keeps the largest, ties by the lower cluster index, as float32 (level 0 cast, deeper
    levels as :func:`xmc.metrics.csr_row_top_k` keeps their order)."""

    def __init__(self, X: sp.csr_matrix, levels: list):
        self.X, self.levels = X, levels

    def first(self, n_rows: int, k: int) -> np.ndarray:
        return np.broadcast_to(np.arange(k, dtype=np.int64), (n_rows, k))

    def path(self, t: int, clusters: np.ndarray, parent):
        if parent is None:  # level 0: every cluster, one product
            return _l3_hinge(_dense_scores(self.X, self.levels[0]))
        W = self.levels[t]
        r = W.shape[0] // self.levels[t - 1].shape[0]
        n, m = clusters.shape
        b = m // r
        parents = (clusters[:, ::r] // r).ravel()  # (n * b,): the beam's clusters of level t - 1
        order = np.argsort(parents, kind="stable")  # grouped by parent, rows ascending in each
        starts = np.flatnonzero(np.r_[True, np.diff(parents[order]) != 0])
        groups = np.split(order, starts[1:])
        # each parent's children scored on the rows that kept it
        blocks = [_dense_scores(self.X[g // b], W[parents[g[0]] * r : (parents[g[0]] + 1) * r]) for g in groups]
        s = np.empty((n * b, r), dtype=blocks[0].dtype)
        for g, block in zip(groups, blocks):
            s[g] = block
        return parent * _l3_hinge(s.reshape(n, m))

    def keep(self, t: int, clusters: np.ndarray, path: np.ndarray, b: int):
        if t == 0:  # every cluster of level 0, in order: a stable sort puts the lower index first
            pick = np.argsort(-path, axis=1, kind="stable")[:, :b]
            return np.take_along_axis(clusters, pick, 1), np.take_along_axis(path, pick, 1).astype(np.float32)
        beam = csr_row_top_k(_candidates(clusters, path, self.levels[t].shape[0]), b)
        return beam.indices.reshape(clusters.shape[0], -1).astype(np.int64), beam.data.reshape(clusters.shape[0], -1)


@dataclass
class LinearMatcherParams(FromDict):
    """Training settings of the linear matcher (config: ``linear_baseline`` C, threshold,
    branching). C: SVM cost; threshold: weights below it in magnitude set to 0; branching: None
    for a flat one-vs-all over the K clusters, an integer for a tree with levels of branching,
    branching^2, ... nodes (:func:`level_sizes`)."""

    config_section = "linear_baseline"

    C: float = 1.0
    threshold: float = 0.01
    branching: int | None = None


@dataclass
class LinearMatcherPredParams(FromDict):
    """Prediction settings of the linear matcher: top_b clusters kept per row (a tree's beam
    width), rows per batch."""

    config_section = "linear matcher prediction"

    top_b: int = 10
    batch_size: int = 8192

    def __post_init__(self):
        for name in ("top_b", "batch_size"):
            check_positive_int(getattr(self, name), name)


class LinearMatcher:
    """One-vs-all linear models from features to clusters, flat or a tree. Build it with
    :meth:`train` or :meth:`load`.

    Attributes: ``params`` (:class:`LinearMatcherParams`), ``pred_params``
    (:class:`LinearMatcherPredParams`, the defaults of :meth:`predict`), ``n_jobs`` (threads: the
    solver's, and the beam's batches at prediction; a resource, not a setting), ``W_`` CSR float32
    (K, D + 1), last column = bias weight (the finest level), ``levels_`` list of CSR (n_j, D + 1),
    one per level, coarse to fine (``[W_]`` if flat).
    """

    def __init__(self, levels: list, params: LinearMatcherParams | None = None,
                 pred_params: LinearMatcherPredParams | None = None, n_jobs: int = 1):
        self.levels_ = [sp.csr_matrix(W) for W in levels]
        self.W_ = self.levels_[-1]
        self.params = params or LinearMatcherParams()
        self.pred_params = pred_params or LinearMatcherPredParams()
        self.n_jobs = n_jobs

    def _weights(self):
        """(W[:, :D].T as CSR (D, K), bias weights (K,)), built once per weights: transposing W at
        every call dominated the time of one-text predictions."""
        key = getattr(self, "_weights_key", None)  # holds W_, so its id cannot be reused
        if key is not self.W_:
            W = sp.csr_matrix(self.W_)
            d = W.shape[1] - 1
            self._WT, self._bias, self._weights_key = sp.csr_matrix(W[:, :d].T), W[:, d].toarray().ravel(), self.W_
        return self._WT, self._bias

    @classmethod
    def train(cls, X, M, params: LinearMatcherParams | None = None,
              pred_params: LinearMatcherPredParams | None = None, n_jobs: int = 1) -> "LinearMatcher":
        """X : CSR (N, D) features; M : CSR (N, K) 0/1 instance->cluster targets."""
        p = params or LinearMatcherParams()
        if X.shape[0] != M.shape[0]:
            raise ValueError(f"X and M must have the same number of rows; got {X.shape[0]} and {M.shape[0]}")
        sizes = level_sizes(M.shape[1], p.branching)
        kw = dict(C=p.C, threshold=p.threshold, n_jobs=n_jobs)
        if len(sizes) == 1:
            return cls([fit_ova(X, M, **kw)], p, pred_params, n_jobs)
        X = sp.csr_matrix(X)
        M = sp.csr_matrix(M)
        k = M.shape[1]
        targets = []  # binarised (N, n_j) targets of each level
        for n_j in sizes:
            group = sp.csr_matrix((np.ones(k), (np.arange(k), np.arange(k) // (k // n_j))), shape=(k, n_j))
            T = sp.csr_matrix(M @ group)
            T.eliminate_zeros()
            T.data[:] = 1.0
            targets.append(T)
        levels = [fit_ova(X, targets[0], **kw)]
        for j in range(1, len(sizes)):
            parent = targets[j - 1].tocsc()
            r = sizes[j] // sizes[j - 1]
            # one problem per parent, on its rows only; n_jobs threads solve parents at once
            blocks = fit_ova_blocks(X, targets[j], [parent.indices[parent.indptr[p] : parent.indptr[p + 1]]
                                                    for p in range(sizes[j - 1])],
                                    [np.arange(p * r, (p + 1) * r) for p in range(sizes[j - 1])], **kw)
            levels.append(sp.vstack(blocks, format="csr"))
        return cls([sp.csr_matrix(W, dtype=np.float32) for W in levels], p, pred_params, n_jobs)

    def _beam(self, X, b: int) -> sp.csr_matrix:
        """Beam search over the levels for one batch: CSR (N, K) path scores of <= b clusters per row."""
        sizes = [W.shape[0] for W in self.levels_]
        clusters, path = beam_search(_TreeWalk(X, self.levels_), sizes, X.shape[0], b)
        return csr_row_top_k(_candidates(clusters, path, sizes[-1]), b)

    def predict(self, X, pred_params: LinearMatcherPredParams | None = None, **overrides) -> sp.csr_matrix:
        """Scores of each row's top-b clusters: CSR float32 (N, K), b stored entries per row.

        pred_params : default ``self.pred_params``; keyword overrides (``top_b=``, ``batch_size=``)
        replace its fields."""
        pp = (pred_params or self.pred_params).with_overrides(**overrides)
        b, batch_size = pp.top_b, pp.batch_size
        X = sp.csr_matrix(X)
        if len(self.levels_) > 1:  # a tree: beam search from the coarsest level
            X = sp.csr_matrix(X, dtype=np.float32)
            # batches are independent: searched in n_jobs threads
            parts = thread_map(lambda i: _path_decision_values(self._beam(X[i : i + batch_size], b)),
                               range(0, X.shape[0], batch_size), self.n_jobs)
        else:
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
        return sp.vstack(parts, format="csr").astype(np.float32)

    def save(self, path) -> None:
        """npz readable by :meth:`load` (and as the plain (K, D + 1) weights by ``load_csr`` when flat;
        a tree matcher stores its levels stacked, coarse to fine), with its params and top_b."""
        sizes = [W.shape[0] for W in self.levels_]
        p, pp = self.params, self.pred_params
        # batch_size is not saved: it changes no score, and the file stays as it was
        save_weights(path, sp.vstack(self.levels_, format="csr"), C=p.C, threshold=p.threshold,
                     top_b=pp.top_b, level_sizes=np.asarray(sizes, dtype=np.int64),
                     branching=-1 if p.branching is None else int(p.branching))

    @classmethod
    def load(cls, path) -> "LinearMatcher":
        W, meta = load_weights(path)
        branching = int(meta["branching"]) if "branching" in meta else -1
        params = LinearMatcherParams(C=float(meta["C"]), threshold=float(meta["threshold"]),
                                     branching=None if branching < 0 else branching)
        pred_params = LinearMatcherPredParams(top_b=int(meta["top_b"]))
        sizes = [int(s) for s in meta["level_sizes"]] if "level_sizes" in meta else [W.shape[0]]
        bounds = np.cumsum([0, *sizes])
        return cls([W[a:b] for a, b in zip(bounds[:-1], bounds[1:])], params, pred_params)
