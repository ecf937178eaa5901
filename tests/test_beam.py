"""One beam search (xmc.matcher.beam) for the linear tree matcher and XR-Transformer's heads."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from xmc.matcher.beam import beam_scores, beam_search, children  # noqa: E402
from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams  # noqa: E402


class AdditiveWalk:
    """A toy walk on numpy: fixed per-level scores S[t] (B, K_t), path value = sum along the path,
    beam = the largest, ties by the lower cluster."""

    def __init__(self, S):
        self.S = S

    def first(self, n_rows, k):
        return np.broadcast_to(np.arange(k), (n_rows, k))

    def path(self, t, clusters, parent):
        s = np.take_along_axis(self.S[t], clusters, 1)
        return s if parent is None else parent + s

    def keep(self, t, clusters, path, b):
        pick = np.lexsort((clusters, -path), axis=1)[:, :b]
        return np.take_along_axis(clusters, pick, 1), np.take_along_axis(path, pick, 1)


def test_children_are_numbered_as_the_indexer_numbers_its_leaves():
    assert children(np.array([[0, 3]]), 2).tolist() == [[0, 1, 6, 7]]
    assert children(torch.tensor([[1], [2]]), 4).tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]


@pytest.mark.parametrize("sizes,beam", [([2, 4, 8], 1), ([4, 16, 64], 3), ([2, 8], 5), ([8], 2)])
def test_beam_search_returns_the_children_of_the_best_paths(sizes, beam):
    rng = np.random.default_rng(len(sizes) * 10 + beam)
    n = 6
    S = [np.round(rng.normal(size=(n, k)), 1) for k in sizes]  # rounded: ties occur
    clusters, path = beam_search(AdditiveWalk(S), sizes, n, beam)
    for i in range(n):
        # brute force: level by level, the top `beam` paths (ties: lower cluster), then their children
        kept = {c: S[0][i, c] for c in range(sizes[0])}
        for t in range(1, len(sizes)):
            best = sorted(kept, key=lambda c: (-kept[c], c))[:beam]
            r = sizes[t] // sizes[t - 1]
            kept = {c * r + j: kept[c] + S[t][i, c * r + j] for c in best for j in range(r)}
        assert dict(zip(clusters[i].tolist(), path[i].tolist())) == pytest.approx(kept)


def test_the_linear_tree_and_the_heads_walk_the_same_beam():
    """The same weights as a linear tree (products of l3-hinge transforms, numpy) and as XR heads
    over embeddings (sums of penalties, torch): the same clusters, the same decision values g."""
    rng = np.random.default_rng(0)
    n, d, sizes, b = 30, 8, [4, 16, 64], 3
    E = rng.normal(size=(n, d)).astype(np.float32)
    # scores mostly in (-3, 1): no path ties at penalty 0 (where the linear beam takes the lower
    # index, the heads' the higher own score) and no product of transforms underflows float32
    levels = [sp.csr_matrix((rng.normal(scale=0.3, size=(k, d + 1)) - np.r_[np.zeros(d), 1.0]).astype(np.float32))
              for k in sizes]
    linear = LinearMatcher(levels).predict(sp.csr_matrix(E), LinearMatcherPredParams(top_b=b))
    heads = []
    for W in levels:
        h = torch.nn.Linear(d, W.shape[0])
        with torch.no_grad():
            h.weight.copy_(torch.from_numpy(W[:, :d].toarray()))
            h.bias.copy_(torch.from_numpy(W[:, d].toarray().ravel()))
        heads.append((W.shape[0], h))
    with torch.no_grad():
        emb = torch.from_numpy(E)
        g = beam_scores(emb, heads[:-1], heads[-1][1](emb), b, path=True)
    top = torch.sort(g, dim=1, descending=True, stable=True)
    for i in range(n):
        cols = linear.indices[linear.indptr[i]:linear.indptr[i + 1]]
        assert set(cols.tolist()) == set(top.indices[i, :b].tolist())
        np.testing.assert_allclose(linear[i, cols].toarray().ravel(), g[i, cols].numpy(), rtol=1e-4, atol=1e-5)


def test_heads_beam_breaks_ties_by_own_score_then_index():
    """Scores >= 1 all have penalty 0: the beam then takes the higher own score, then the lower index."""
    h = torch.nn.Linear(1, 4)
    with torch.no_grad():
        h.weight.zero_()
        h.bias.copy_(torch.tensor([2.0, 3.0, 3.0, 1.5]))
    last = torch.zeros(1, 8)
    kept = torch.isfinite(beam_scores(torch.ones(1, 1), [(4, h)], last, 2, path=True))
    assert torch.nonzero(kept[0]).ravel().tolist() == [2, 3, 4, 5]  # parents 1 and 2 (own 3.0, lower first)
    kept = torch.isfinite(beam_scores(torch.ones(1, 1), [(4, h)], last, 1, path=False))
    assert torch.nonzero(kept[0]).ravel().tolist() == [2, 3]  # parent 1: the lower of the two 3.0


def test_a_flat_matcher_scores_every_cluster():
    scores = torch.randn(3, 5)
    assert torch.equal(beam_scores(torch.randn(3, 2), [], scores, 2, path=True), scores)
    assert list(itertools.chain(*children(np.arange(2)[None, :], 3).tolist())) == list(range(6))
