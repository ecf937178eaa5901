"""Beam search down a label tree: the prediction of the linear tree matcher (XR-Linear) and of
XR-Transformer's levels, and the search for XR-Transformer's training negatives.

The tree is read at resolutions K_0 < K_1 < ... < K_T, each dividing the next; the children of
cluster ``c`` of level t are ``c * r, ..., c * r + r - 1`` at level t + 1 (``r = K_{t+1} / K_t``),
as :class:`xmc.indexing.BalancedKMeans` numbers its leaves. Level 0 scores all its clusters; every
next level scores only the children of the previous level's beam.

:func:`beam_search` is the walk, on index arrays (numpy or torch); a model gives it a *walk*, the
two things that depend on the model: ``path(t, clusters, parent)``, the path values of some
clusters of level t (its own scores combined with their parents' path values), and
``keep(t, clusters, path, b)``, each row's ``b`` best of them. The linear matcher's walk (numpy,
products of l3-hinge transforms) lives in :mod:`xmc.matcher.linear`; the transformer heads' walk
(torch) is :class:`HeadWalk` here, and :func:`beam_scores` runs it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["beam_search", "children", "HeadWalk", "beam_scores", "top_k_ties_by"]


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def children(clusters, r: int):
    """The r children of each cluster of ``clusters`` (B, m), in parent order: (B, m * r)."""
    if _is_torch(clusters):
        import torch

        step = torch.arange(r, device=clusters.device, dtype=clusters.dtype)
    else:
        step = np.arange(r, dtype=clusters.dtype)
    return (clusters[:, :, None] * r + step).reshape(clusters.shape[0], -1)


def _repeat(values, r: int):
    """Each column of (B, m) repeated r times in place: the parents' values beside their children."""
    if _is_torch(values):
        return values.repeat_interleave(r, dim=1)
    return np.repeat(values, r, axis=1)


def beam_search(walk, level_sizes, n_rows: int, beam: int):
    """Walk the levels ``level_sizes`` (K_0 < ... < K_T) with a beam of ``beam`` clusters.

    walk : the model's ``path(t, clusters, parent) -> (B, m)`` (``parent`` None at level 0) and
    ``keep(t, clusters, path, b) -> (clusters (B, b), path (B, b))``; ``walk.first(n_rows, K_0)``
    gives level 0's clusters (B, K_0), every row all of them (an index array of the walk's kind).
    Returns ``(clusters, path)`` of the last level: the children of the last beam, (B, b * r)
    each, with their path values; picking the final top-b from them is the caller's.
    """
    clusters = walk.first(n_rows, level_sizes[0])
    path = walk.path(0, clusters, None)
    for t in range(1, len(level_sizes)):
        clusters, path = walk.keep(t - 1, clusters, path, min(beam, level_sizes[t - 1]))
        r = level_sizes[t] // level_sizes[t - 1]
        clusters = children(clusters, r)
        path = walk.path(t, clusters, _repeat(path, r))
    return clusters, path


def top_k_ties_by(key, tie, k: int, index=None):
    """Positions of each row's k largest ``key`` (torch, (B, m)); equal keys by larger ``tie``, then
    by lower ``index`` (default: the position)."""
    import torch

    order = torch.arange(key.shape[1], device=key.device).expand_as(key) if index is None else index
    by_index = torch.sort(order, dim=1, stable=True).indices
    by_tie = torch.gather(by_index, 1, torch.sort(torch.gather(tie, 1, by_index), dim=1, descending=True,
                                                  stable=True).indices)
    best = torch.sort(torch.gather(key, 1, by_tie), dim=1, descending=True, stable=True).indices[:, :k]
    return torch.gather(by_tie, 1, best)


class HeadWalk:
    """The walk of XR-Transformer's levels: linear heads over pooled embeddings (torch).

    tree : [(K_t, head)] of the coarser levels, coarse to fine; ``last`` (B, K) the finest level's
    scores, already computed. ``path=False`` (training's negatives): the path value is the own
    score, the beam its top. ``path=True`` (prediction, as PECOS): the path value is the penalty
    sum_t max(0, 1 - s_t)^3 over the cluster and its ancestors (the l3-hinge transforms' product is
    exp(-penalty)); the beam takes the lowest penalties, ties by the higher own score, then the
    lower cluster index (paths tie at penalty 0, where every score is >= 1).
    """

    def __init__(self, emb, tree, last, path: bool):
        self.emb, self.tree, self.last, self.use_path = emb, tree, last, path
        self.own = None  # the last level's own scores, (B, m): the tie of keep

    def first(self, n_rows: int, k: int):
        import torch

        return torch.arange(k, device=self.last.device).expand(n_rows, k)

    def path(self, t: int, clusters, parent):
        if t < len(self.tree):
            head = self.tree[t][1]
            scores = head(self.emb.to(head.weight.dtype)).float()
        else:
            scores = self.last
        self.own = s = scores.gather(1, clusters)
        if not self.use_path:
            return s
        penalty = (1.0 - s).clamp(min=0.0) ** 3
        return penalty if parent is None else penalty + parent

    def keep(self, t: int, clusters, path, b: int):
        if self.use_path:
            pick = top_k_ties_by(-path, self.own, b, clusters)
        else:
            pick = top_k_ties_by(path, path, b, clusters)
        return clusters.gather(1, pick), path.gather(1, pick)


def beam_scores(emb, tree, scores, beam: int, path: bool = False):
    """The finest level's scores ``scores`` (B, K) through a beam search down the heads ``tree``
    [(K_t, head)] (coarser levels, coarse to fine, each K_t a power of two dividing the next; emb
    (B, H) the pooled embeddings): -inf outside the children of the last beam. ``path=False``:
    the raw scores there; ``path=True``: the path's decision value g = 1 - cbrt(penalty) (see
    :class:`HeadWalk`), so that the ranker's l3-hinge sigma sees the whole path. A flat matcher
    (empty ``tree``) gets ``scores`` back. (Raw leaf scores ranked leaves under clusters the leaf
    head was never trained against: on full EURLEX57K the top-24 held 32% of the true labels, 53%
    by path.)"""
    import torch

    if not tree:
        return scores
    sizes = [k for k, _ in tree] + [scores.shape[1]]
    clusters, values = beam_search(HeadWalk(emb, tree, scores, path), sizes, scores.shape[0], beam)
    if path:
        values = 1.0 - torch.pow(values, 1.0 / 3.0)
    out = torch.full_like(scores, float("-inf"))
    return out.scatter_(1, clusters, values)
