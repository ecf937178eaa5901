"""XR-Transformer: the label tree read at several resolutions, the per-level matcher-aware
negatives (against a brute-force walk of an explicit tree), and training through three levels."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from xmc.features import tokenize  # noqa: E402
from xmc.indexing import BalancedKMeans, IndexerParams  # noqa: E402
from xmc.matcher.beam import beam_scores  # noqa: E402
from xmc.matcher.transformer import MatcherParams, TransformerMatcher  # noqa: E402
from xmc.matcher.xr import (XRParams, XRTransformer, default_levels, grow_head, level_assignment,  # noqa: E402
                            level_targets, masked_row_hinge_losses, masked_squared_hinge_loss,
                            matcher_aware_candidates, online_candidates, split_steps)


def explicit_tree(Z, k):
    """Brute force: redo BalancedKMeans' splits level by level, keeping every node's label set."""
    km = BalancedKMeans.train(Z, IndexerParams(n_clusters=k, seed=0))
    tree = {}  # (depth, position) -> set of labels
    for depth in range(int(np.log2(k)) + 1):
        kd = 2 ** depth
        if depth == int(np.log2(k)):
            for c in range(k):
                tree[(depth, c)] = set(np.flatnonzero(km.assignment_ == c))
        else:
            tree.update({(depth, c): set() for c in range(kd)})
    # Parents from the explicit recursion: re-fit at each coarser K with the same seed gives the
    # same top splits (node seeds depend on the heap index only).
    for depth in range(int(np.log2(k))):
        coarse = BalancedKMeans.train(Z, IndexerParams(n_clusters=2 ** depth, seed=0)).assignment_
        for c in range(2 ** depth):
            tree[(depth, c)] = set(np.flatnonzero(coarse == c))
    return km, tree


def test_coarse_levels_are_the_tree_nodes():
    Z = np.random.default_rng(0).normal(size=(40, 6))
    km, tree = explicit_tree(Z, 16)
    for depth in range(5):
        a = level_assignment(km.assignment_, 16, 2 ** depth)
        for c in range(2 ** depth):
            assert set(np.flatnonzero(a == c)) == tree[(depth, c)]
    # children: a node's label set is the union of its children's
    for depth in range(4):
        for c in range(2 ** depth):
            kids = (2 * c, 2 * c + 1)  # the 2-means tree: node c's children at the next level
            assert set().union(*(tree[(depth + 1, int(j))] for j in kids)) == tree[(depth, c)]


def test_candidates_match_brute_force():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(32, 5))
    km, tree = explicit_tree(Z, 16)
    n = 12
    Y = sp.csr_matrix((rng.random((n, 32)) < 0.08).astype(np.float32))
    parent, child = 4, 16
    top = sp.csr_matrix((rng.random((n, parent)) < 0.4).astype(np.float32) * rng.random((n, parent)))
    got = matcher_aware_candidates(level_targets(Y, km.assignment_, 16, child), top, parent, child).toarray()
    for i in range(n):
        expected = set()
        labels = set(Y[i].indices)
        for c in range(child):  # true clusters at depth 4: nodes holding one of the instance's labels
            if labels & tree[(4, c)]:
                expected.add(c)
        for p in top[i].indices:  # children (in the tree) of each predicted parent node
            for c in range(child):
                if tree[(4, c)] <= tree[(2, int(p))]:
                    expected.add(c)
        assert set(np.flatnonzero(got[i])) == expected


def _random_tree(levels, hidden=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    tree = []
    for k in levels:
        h = torch.nn.Linear(hidden, k)
        with torch.no_grad():
            h.weight.copy_(torch.randn(k, hidden, generator=g))
            h.bias.copy_(torch.randn(k, generator=g))
        tree.append((k, h))
    return tree


def _brute_beam(emb_row, tree, final_head, beam):
    """Walk the tree one level at a time with Python sets: the clusters scored at the last level."""
    allowed = None
    levels = [k for k, _ in tree] + [final_head.out_features]
    for t, (k, h) in enumerate(tree):
        s = h(emb_row).detach().numpy()
        cand = range(k) if allowed is None else sorted(allowed)
        best = sorted(cand, key=lambda c: -s[c])[:beam]
        r = levels[t + 1] // k
        allowed = {c * r + j for c in best for j in range(r)}
    return allowed


def test_beam_scores_match_a_walk_of_the_tree():
    *tree, (_, final) = _random_tree([2, 8, 32, 64])
    emb = torch.randn(10, 6, generator=torch.Generator().manual_seed(3))
    raw = final(emb).detach()
    got = beam_scores(emb, tree, raw, beam=3)
    for i in range(emb.shape[0]):
        allowed = _brute_beam(emb[i], tree, final, 3)
        finite = set(np.flatnonzero(torch.isfinite(got[i]).numpy()))
        assert finite == allowed and len(allowed) == 3 * 2  # the last beam's 3 parents x 2 children
        idx = sorted(allowed)
        np.testing.assert_array_equal(got[i, idx].numpy(), raw[i, idx].numpy())
    assert torch.equal(beam_scores(emb, [], raw, beam=3), raw)  # a flat matcher scores all K


def _brute_path_beam(emb_row, tree, final_head, beam):
    """The same walk ranking clusters by their path: the summed max(0, 1 - s)^3 of the cluster and
    its ancestors, in plain Python; returns {leaf: 1 - cbrt(penalty)} over the last beam's children."""
    levels = [k for k, _ in tree] + [final_head.out_features]
    heads = [h for _, h in tree] + [final_head]
    penalty = {c: 0.0 for c in range(levels[0])}
    for t, h in enumerate(heads):
        s = h(emb_row).detach().numpy().astype(np.float64)
        penalty = {c: p + max(0.0, 1.0 - s[c]) ** 3 for c, p in penalty.items()}
        if t == len(tree):
            return {c: 1.0 - p ** (1.0 / 3.0) for c, p in penalty.items()}
        best = sorted(penalty, key=lambda c: (penalty[c], -s[c], c))[:beam]
        r = levels[t + 1] // levels[t]
        penalty = {c * r + j: penalty[c] for c in best for j in range(r)}


def test_path_beam_ranks_by_the_path_and_returns_its_decision_value():
    *tree, (_, final) = _random_tree([2, 8, 32, 64], seed=7)
    emb = torch.randn(10, 6, generator=torch.Generator().manual_seed(8))
    raw = final(emb).detach()
    with torch.no_grad():  # as in TransformerMatcher.predict
        got = beam_scores(emb, tree, raw, beam=3, path=True)
    differs = 0
    for i in range(emb.shape[0]):
        expected = _brute_path_beam(emb[i], tree, final, 3)
        finite = np.flatnonzero(torch.isfinite(got[i]).numpy())
        assert set(finite) == set(expected)
        np.testing.assert_allclose(got[i, finite].numpy(), [expected[c] for c in finite], rtol=1e-5, atol=1e-5)
        differs += set(finite) != _brute_beam(emb[i], tree, final, 3)
    assert differs > 0  # on these weights the path's beam is not the per-level one
    # A cluster whose path has every score >= 1 gets g = 1: the l3-hinge sigma of g is the product
    # of its path's transforms.
    g = got[torch.isfinite(got)]
    assert torch.all(g <= 1.0 + 1e-6)
    assert torch.equal(beam_scores(emb, [], raw, beam=3, path=True), raw)  # a flat matcher: raw scores


def test_online_candidates_equal_the_pass_candidates():
    """Per batch from the batch's embeddings == matcher_aware_candidates over the beam's top-k."""
    tree = _random_tree([2, 8])
    emb = torch.randn(12, 6, generator=torch.Generator().manual_seed(4))
    rng = np.random.default_rng(5)
    target = torch.from_numpy((rng.random((12, 32)) < 0.1).astype(np.float32))
    got = online_candidates(emb, tree, target, top_k=3).numpy()
    (_, h0), (_, h1) = tree
    prev = beam_scores(emb, tree[:1], h1(emb).detach(), 3)  # level-8 scores through the beam
    top = torch.topk(prev, 3, dim=1)
    prev_top = sp.csr_matrix((top.values.numpy().ravel(), top.indices.numpy().ravel(),
                              np.arange(0, 12 * 3 + 1, 3)), shape=(12, 8))
    expected = matcher_aware_candidates(sp.csr_matrix(target.numpy()), prev_top, 8, 32).toarray()
    np.testing.assert_array_equal(got, expected)
    assert np.all(got[target.numpy() > 0])


def test_level_schedule():
    assert default_levels(64) == [16, 64]
    assert default_levels(8) == [8]
    assert default_levels(1024) == [16, 64, 256, 1024]
    assert split_steps(10, 3) == [3, 3, 4]
    assert XRParams().resolve(256, 200) == ([16, 64, 256], [66, 67, 67])
    assert XRParams(levels=[2, 8], steps=[5, 7]).resolve(8, 100) == ([2, 8], [5, 7])
    with pytest.raises(ValueError, match="end with K = 16"):
        XRParams(levels=[2, 8]).resolve(16, 10)
    with pytest.raises(ValueError, match="powers of two"):
        XRParams(levels=[3, 8]).resolve(8, 10)
    with pytest.raises(ValueError, match="2 entries"):
        XRParams(levels=[2, 4, 8], steps=[1, 2]).resolve(8, 10)
    with pytest.raises(ValueError, match="unknown parameter"):
        XRParams.from_dict({"level": [2]})


def test_masked_loss_hand_computed():
    scores = torch.tensor([[2.0, -0.5, 0.0], [0.3, -2.0, 5.0]])
    M = torch.tensor([[1, 0, 0], [0, 1, 0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # kept terms: row 0 max(0, 1-2)^2 = 0 and (1-0.5)^2 = 0.25, row 1 (1+0.3)^2 = 1.69; a row's mean
    # over its own candidates, then the mean over rows
    np.testing.assert_allclose(masked_row_hinge_losses(scores, M, mask).numpy(), [0.125, 1.69], rtol=1e-6)
    assert masked_squared_hinge_loss(scores, M, mask).item() == pytest.approx((0.125 + 1.69) / 2)
    assert masked_row_hinge_losses(scores, M, torch.zeros_like(mask)).tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def tiny_bert(tiny_encoder):
    return str(tiny_encoder("bert"))


@pytest.mark.parametrize("negatives", ["online", "pass"])
def test_trains_through_three_levels(tiny_bert, tmp_path, negatives):
    words = ["sports", "politics", "science", "finance", "music", "health", "travel", "food"]
    rng = np.random.default_rng(0)
    n = 48
    texts = [" ".join(rng.choice(["the", "quick", "fox", "one", "two"], 5)) + " " + words[i % 8] for i in range(n)]
    Y = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), np.arange(n) % 8)), shape=(n, 8))
    assignment = np.arange(8)  # label l in leaf l of a K = 8 tree
    tok = tokenize(texts, tiny_bert, max_length=16)
    p = MatcherParams(max_steps=12, warmup_steps=0, learning_rate=3e-3, batch_size=16, dropout=0.0,
                      device="cpu", log_every=1, top_b=3)
    lines = []
    m = XRTransformer.train(tiny_bert, tok["input_ids"], tok["attention_mask"], Y, assignment, 8, p,
                            XRParams(levels=[2, 4, 8], top_k=1, negatives=negatives), log=lines.append)
    assert [h["level"] for h in m.history_] == [2] * 4 + [4] * 4 + [8] * 4
    assert [h["step"] for h in m.history_] == list(range(1, 13))
    assert [s["level"] for s in m.xr_levels_] == [2, 4, 8]
    # top-1 parent gives 2 children, plus the true cluster when it is not among them
    assert all(2 <= s["candidates"] <= 3 for s in m.xr_levels_[1:])
    assert [k for k, _ in m.tree_] == [2, 4]
    topb, emb = m.predict(tok["input_ids"], tok["attention_mask"])
    assert topb.shape == (n, 8) and np.all(np.diff(topb.indptr) == 3) and emb.shape == (n, 32)
    # beam search: with a beam of 3 every level keeps at most 3 clusters, their children the rest
    with torch.no_grad():
        e = torch.from_numpy(emb)
        for i in range(n):
            allowed = _brute_beam(e[i], m.tree_, m.head, 3)
            assert set(topb[i].indices) <= allowed
    m.save(tmp_path / "xr")
    again = TransformerMatcher.load(tmp_path / "xr", device="cpu")
    assert [k for k, _ in again.tree_] == [2, 4]
    topb2, _ = again.predict(tok["input_ids"], tok["attention_mask"])
    np.testing.assert_allclose(topb.toarray(), topb2.toarray(), rtol=1e-5, atol=1e-6)
    (tmp_path / "xr" / "tree_heads.pt").unlink()
    with pytest.raises(ValueError, match="tree_heads.pt is missing"):
        TransformerMatcher.load(tmp_path / "xr", device="cpu")


@pytest.mark.parametrize("bootstrap", ["inherit", "none"])
def test_bootstrap_inherits_the_parent_row(tiny_bert, bootstrap):
    """With (almost) no learning, the children of one parent keep the parent's row iff inherit."""
    tok = tokenize(["sports news", "politics news", "science news", "finance news"], tiny_bert, max_length=8)
    Y = sp.csr_matrix(np.eye(4, dtype=np.float32))
    p = MatcherParams(max_steps=2, warmup_steps=0, learning_rate=1e-12, head_learning_rate=1e-12, batch_size=4,
                      dropout=0.0, device="cpu")
    m = XRTransformer.train(tiny_bert, tok["input_ids"], tok["attention_mask"], Y, np.arange(4), 4, p,
                            XRParams(levels=[2, 4], top_k=1, bootstrap=bootstrap))
    W = m.head.weight.detach()
    same = torch.allclose(W[0], W[1], atol=1e-6) and torch.allclose(W[2], W[3], atol=1e-6)
    assert same == (bootstrap == "inherit")


def test_rejects_bad_assignment(tiny_bert):
    tok = tokenize(["a b", "c d"], tiny_bert, max_length=8)
    Y = sp.csr_matrix(np.eye(2, 4, dtype=np.float32))
    with pytest.raises(ValueError, match="assignment"):
        XRTransformer.train(tiny_bert, tok["input_ids"], tok["attention_mask"], Y, np.arange(3), 4,
                            MatcherParams(max_steps=2, warmup_steps=0, device="cpu"))


@pytest.mark.parametrize("bootstrap", ["inherit", "none"])
def test_grow_head_freezes_the_finished_level_and_starts_the_next(bootstrap):
    net = torch.nn.Module()
    net.head = old = torch.nn.Linear(3, 2)
    tree = []
    grow_head(net, tree, 8, 2, bootstrap, torch.device("cpu"))
    assert tree == [(2, old)] and net.head is not old and net.head.out_features == 8
    parent = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])  # children 4c..4c+3 of cluster c
    inherited = torch.equal(net.head.weight, old.weight[parent]) and torch.equal(net.head.bias, old.bias[parent])
    assert inherited == (bootstrap == "inherit")
