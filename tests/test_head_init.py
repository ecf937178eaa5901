"""The matcher's head init: closed-form fits on embeddings, and training that starts from them."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from helpers import toy_task  # noqa: E402
from xmc.features import tokenize  # noqa: E402
from xmc.matcher.head_init import centroid_head, fit_head, probe_head, shortlist_recall_of_head  # noqa: E402
from xmc.matcher.transformer import MatcherParams, TransformerMatcher  # noqa: E402
from xmc.training import shorten_tokens  # noqa: E402


def clustered(n=400, d=16, K=8, seed=0):
    """Embeddings around K random centres (plus a shared offset, as pooled states have); each
    document is positive for its own cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, d))
    y = rng.integers(0, K, n)
    E = 3.0 + centres[y] + 0.6 * rng.normal(size=(n, d))
    M = sp.csr_matrix((np.ones(n), (np.arange(n), y)), shape=(n, K))
    return E.astype(np.float32), M, y


@pytest.mark.parametrize("kind", ["probe", "centroids"])
def test_a_fitted_head_ranks_each_documents_cluster_first(kind):
    E, M, y = clustered()
    W, b = fit_head(kind, E, M)
    assert W.shape == (8, 16) and b.shape == (8,) and W.dtype == np.float32
    S = E @ W.T + b
    assert (S.argmax(1) == y).mean() > 0.95
    # a random head of the same shape does not (what step 0 is without head init)
    rng = np.random.default_rng(1)
    assert (E @ rng.normal(size=(16, 8)) ).argmax(1).tolist() != y.tolist()
    assert shortlist_recall_of_head(E, M, W, b, top_b=1) > 95.0
    assert shortlist_recall_of_head(E, M, W, b, top_b=8) == pytest.approx(100.0)


def test_probe_scores_are_on_the_hinge_scale_and_solve_the_ridge_normal_equations():
    E, M, _ = clustered(seed=2)
    W, b = probe_head(E, M, alpha=1e-2)
    S = E @ W.T + b
    T = 2 * M.toarray() - 1
    assert abs(S.mean() - T.mean()) < 1e-3  # the free bias centres scores on the targets
    # the gradient of the ridge objective is zero at the solution
    Ec = E - E.mean(0)
    lam = 1e-2 * np.trace(Ec.T @ Ec) / E.shape[1]
    grad = Ec.T @ (Ec @ W.T.astype(np.float64) - (T - T.mean(0))) + lam * W.T
    assert np.abs(grad).max() < 1e-2 * np.abs(Ec.T @ T).max()


def test_centroids_leave_a_cluster_without_documents_at_the_bias():
    E, M, _ = clustered(K=8)
    M = sp.hstack([M, sp.csr_matrix((M.shape[0], 1))]).tocsr()
    W, b = centroid_head(E, M)
    assert np.all(W[-1] == 0) and np.all(b == b[0])


def test_head_init_rejects_bad_inputs():
    E, M, _ = clustered()
    with pytest.raises(ValueError, match="same rows"):
        probe_head(E[:-1], M)
    with pytest.raises(ValueError, match="NaN"):
        probe_head(np.full_like(E, np.nan), M)
    with pytest.raises(ValueError, match="head_init"):
        fit_head("kmeans", E, M)
    with pytest.raises(ValueError, match="head_init"):
        MatcherParams(head_init="kmeans")
    with pytest.raises(ValueError, match="train_max_length"):
        MatcherParams(train_max_length=1)


def test_shorten_tokens_keeps_the_head_and_the_closing_token():
    ids = torch.tensor([[101, 5, 6, 7, 8, 102], [101, 9, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    short, m = shorten_tokens(ids, mask, 4)
    assert short.tolist() == [[101, 5, 6, 102], [101, 9, 102, 0]]
    assert m.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    # left padding (XLNet) comes back right-padded, same tokens
    left = torch.tensor([[0, 0, 7, 8, 4, 3], [1, 2, 7, 8, 4, 3]])
    lmask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    short, m = shorten_tokens(left, lmask, 3)
    assert short.tolist() == [[7, 8, 3], [1, 2, 3]] and m.tolist() == [[1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("kind", ["bert", "xlnet"])
def test_training_starts_from_the_fitted_head(kind, tiny_encoders):
    """With head_init the head before the first step is the closed-form fit on the network's own
    pooled embeddings (computed when none are given; equal when given), and training goes on from it."""
    texts, M = toy_task(48)
    tok = tokenize(texts, tiny_encoders[kind], max_length=16)
    p = dict(max_steps=1, warmup_steps=0, learning_rate=1e-12, head_learning_rate=1e-12, batch_size=16,
             dropout=0.0, device="cpu", log_every=1, seed=0, head_init="probe")
    logged = []
    m = TransformerMatcher.train(tiny_encoders[kind], tok["input_ids"], tok["attention_mask"], M,
                                 MatcherParams(**p), log=logged.append)
    assert any("head init probe: step 0 holds" in line for line in logged)
    # the embeddings of the pretrained encoder (before any step: lr ~ 0, so the trained one)
    _, E = m.predict(tok["input_ids"], tok["attention_mask"], top_b=4)
    W, b = probe_head(E, M)
    assert np.allclose(m.head.weight.detach().numpy(), W, atol=1e-3)
    assert np.allclose(m.head.bias.detach().numpy(), b, atol=1e-3)
    # given embeddings are used as they are
    given = np.random.default_rng(0).normal(size=E.shape).astype(np.float32)
    m2 = TransformerMatcher.train(tiny_encoders[kind], tok["input_ids"], tok["attention_mask"], M,
                                  MatcherParams(**p), init_embeddings=given)
    assert np.allclose(m2.head.weight.detach().numpy(), probe_head(given, M)[0], atol=1e-4)
    with pytest.raises(ValueError, match="embeddings of shape"):
        TransformerMatcher.train(tiny_encoders[kind], tok["input_ids"], tok["attention_mask"], M,
                                 MatcherParams(**p), init_embeddings=given[:, :3])
    # random (the paper's) ignores embeddings: the head is torch's init for the seed
    m3 = TransformerMatcher.train(tiny_encoders[kind], tok["input_ids"], tok["attention_mask"], M,
                                  MatcherParams(**{**p, "head_init": "random"}), init_embeddings=given)
    assert not np.allclose(m3.head.weight.detach().numpy(), m2.head.weight.detach().numpy(), atol=1e-2)


def test_train_max_length_trains_on_short_rows_and_predicts_on_full_ones(tiny_encoders):
    texts, M = toy_task(48)
    tok = tokenize(texts, tiny_encoders["bert"], max_length=16)
    logged = []
    p = MatcherParams(max_steps=4, warmup_steps=0, learning_rate=1e-3, batch_size=16, device="cpu",
                      log_every=1, train_max_length=6)
    m = TransformerMatcher.train(tiny_encoders["bert"], tok["input_ids"], tok["attention_mask"], M, p,
                                 log=logged.append)
    assert any("first 6 tokens" in line for line in logged)
    topb, emb = m.predict(tok["input_ids"], tok["attention_mask"], top_b=2)
    assert topb.shape == (48, 4) and emb.shape[0] == 48


def test_step0_recall_is_the_same_scored_in_chunks():
    rng = np.random.default_rng(3)
    E = rng.normal(size=(50, 6)).astype(np.float32)
    M = sp.csr_matrix((rng.random((50, 9)) < 0.2).astype(np.float32))
    W, b = rng.normal(size=(9, 6)).astype(np.float32), rng.normal(size=9).astype(np.float32)
    whole = shortlist_recall_of_head(E, M, W, b, top_b=3, chunk_rows=50)
    assert 0.0 < whole < 100.0
    assert shortlist_recall_of_head(E, M, W, b, top_b=3, chunk_rows=7) == pytest.approx(whole)
