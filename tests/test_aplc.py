"""APLC-XLNet: label partitioning, the factorised probabilities, the loss on a hand-checked case,
the slanted triangular schedule, and a tiny random BERT that trains, predicts and round-trips."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from xmc.aplc import APLC, APLCLayer, APLCParams, aplc_loss, partition_labels, slanted_triangular  # noqa: E402
from xmc.features import tokenize  # noqa: E402


def test_partition_by_frequency():
    freq = np.array([5, 1, 9, 0, 7, 3, 3, 2])
    head, tail = partition_labels(freq, [0.5, 0.5])
    assert head.tolist() == [2, 4, 0, 5] and tail.tolist() == [6, 7, 1, 3]  # ties: lower index first
    parts = partition_labels(freq, [0.25, 0.25, 0.5])
    assert [p.tolist() for p in parts] == [[2, 4], [0, 5], [6, 7, 1, 3]]
    # every cluster keeps a label even when its share rounds to 0
    parts = partition_labels(np.arange(3), [0.9, 0.05, 0.05])
    assert [len(p) for p in parts] == [1, 1, 1]
    with pytest.raises(ValueError, match="3 clusters for only 2 labels"):
        partition_labels([1, 2], [0.4, 0.3, 0.3])


def test_params_validation():
    with pytest.raises(ValueError, match="summing to 1"):
        APLCParams(proportions=[0.5, 0.4])
    with pytest.raises(ValueError, match="unknown parameter"):
        APLCParams.from_dict({"hidden": 3})
    assert APLCParams(encoder_learning_rate="5e-5").encoder_learning_rate == 5e-5


def test_probabilities_are_the_factorised_product():
    torch.manual_seed(0)
    clusters = [np.array([3, 0]), np.array([5, 1]), np.array([2, 4, 6])]
    layer = APLCLayer(8, clusters, q=2)
    assert [t[0].out_features for t in layer.tails] == [4, 2]  # d_h / q^i
    h = torch.randn(3, 8)
    head, tails = layer(h)
    p = layer.log_probs(h).exp()
    sig = torch.sigmoid
    for b in range(3):
        for j, label in enumerate(clusters[0]):
            assert p[b, label].item() == pytest.approx(sig(head[b, j]).item(), rel=1e-5)
        for i, c in enumerate(clusters[1:]):
            node = sig(head[b, 2 + i])
            for j, label in enumerate(c):
                assert p[b, label].item() == pytest.approx((node * sig(tails[i][b, j])).item(), rel=1e-5)


def test_loss_hand_checked():
    clusters = [np.array([0]), np.array([1]), np.array([2, 3])]
    layer = APLCLayer(4, clusters)
    head = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])  # label 0, tail node 1, tail node 2
    tails = [torch.tensor([[0.5], [-0.5]]), torch.tensor([[1.0, -2.0], [0.0, 0.0]])]
    Y = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))

    def bce(z, y):
        return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))

    # row 0: head targets (1, 0, 1); only tail cluster 2 is needed: labels 2, 3 -> targets (0, 1)
    row0 = bce(0.0, 1) + bce(1.0, 0) + bce(-1.0, 1) + bce(1.0, 0) + bce(-2.0, 1)
    # row 1: no label: head targets all 0, no tail cluster needed
    row1 = bce(2.0, 0) + bce(0.0, 0) + bce(0.0, 0)
    assert aplc_loss(head, tails, Y, layer).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_prior_init_starts_at_the_label_prior():
    """With a zero hidden state only the biases speak: p(l) = the smoothed training frequency of l
    (head), and p(tail node) * p(l | tail) = the same for a tail label."""
    rng = np.random.default_rng(0)
    Y = sp.csr_matrix((rng.random((200, 12)) < np.linspace(0.6, 0.02, 12)).astype(np.float32))
    freq = np.asarray(Y.sum(axis=0)).ravel()
    clusters = partition_labels(freq, [0.5, 0.25, 0.25])
    layer = APLCLayer(8, clusters, q=2.0)
    layer.init_prior(Y)
    p = layer.log_probs(torch.zeros(1, 8)).exp().detach().numpy().ravel()
    for l in clusters[0]:
        assert p[l] == pytest.approx((freq[l] + 0.5) / 201, rel=1e-5)
    for c in clusters[1:]:
        needs = np.count_nonzero(np.asarray(Y[:, c].sum(axis=1)).ravel())
        for l in c:
            expected = (needs + 0.5) / 201 * (freq[l] + 0.5) / (needs + 1)
            assert p[l] == pytest.approx(expected, rel=1e-5)
    assert APLCParams(prior_init=False).prior_init is False
    with pytest.raises(ValueError, match="prior_init"):
        APLCParams(prior_init="yes")


def test_slanted_triangular():
    m = [slanted_triangular(s, 100, cut_frac=0.1, ratio=32) for s in range(100)]
    assert max(m) == pytest.approx(1.0) and int(np.argmax(m)) == 9  # peak at step cut = 10
    assert m[0] == pytest.approx((1 + 0.1 * 31) / 32)
    assert all(a < b for a, b in zip(m[:9], m[1:10])) and all(a > b for a, b in zip(m[9:-1], m[10:]))
    assert m[-1] == pytest.approx(1 / 32)


def test_tiny_bert_trains_and_predicts(tiny_encoder, tmp_path):
    enc = str(tiny_encoder("bert"))
    words = ["sports", "politics", "science", "finance"]
    rng = np.random.default_rng(0)
    n = 40
    texts = [" ".join(rng.choice(["the", "quick", "fox", "one", "two"], 4)) + " " + words[i % 4] for i in range(n)]
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([np.arange(n) % 4, 4 + (np.arange(n) % 2)], axis=1).ravel()  # 6 labels
    Y = sp.csr_matrix((np.ones(2 * n, dtype=np.float32), (rows, cols)), shape=(n, 6))
    tok = tokenize(texts, enc, max_length=12)
    params = APLCParams(hidden_size=16, proportions=[0.5, 0.25, 0.25], max_steps=30, batch_size=20,
                        encoder_learning_rate=1e-3, hidden_learning_rate=3e-3, aplc_learning_rate=1e-2,
                        dropout=0.0, device="cpu", top_k=3, log_every=5)
    model = APLC.train(enc, tok["input_ids"], tok["attention_mask"], Y, params)
    losses = [h["loss"] for h in model.history_]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    pred = model.predict(tok["input_ids"], tok["attention_mask"])
    assert pred.shape == (n, 6) and np.all(np.diff(pred.indptr) == 3)
    assert np.all((pred.data > 0) & (pred.data <= 1))
    model.save(tmp_path / "aplc")
    again = APLC.load(tmp_path / "aplc", device="cpu")
    np.testing.assert_allclose(again.predict(tok["input_ids"], tok["attention_mask"]).toarray(), pred.toarray(),
                               rtol=1e-5, atol=1e-7)


def test_one_cluster_is_a_flat_sigmoid_head_over_all_labels(tiny_encoder):
    """proportions [1.0]: no tail clusters, one sigmoid output per label (bench/aplc_curve.py's
    baseline); it trains and predicts like the clustered model."""
    enc = str(tiny_encoder("bert"))
    words = ["sports", "politics", "science", "finance"]
    n = 32
    texts = [f"the {words[i % 4]} news {words[i % 4]}" for i in range(n)]
    Y = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), np.arange(n) % 4)), shape=(n, 4))
    tok = tokenize(texts, enc, max_length=8)
    params = APLCParams(hidden_size=8, proportions=[1.0], max_steps=40, batch_size=16, encoder_learning_rate=1e-3,
                        hidden_learning_rate=1e-2, aplc_learning_rate=5e-2, dropout=0.0, device="cpu", top_k=2)
    model = APLC.train(enc, tok["input_ids"], tok["attention_mask"], Y, params)
    assert [len(c) for c in model.clusters_] == [4]
    pred = model.predict(tok["input_ids"], tok["attention_mask"])
    top1 = np.asarray(pred.argmax(axis=1)).ravel()
    assert np.mean(top1 == np.arange(n) % 4) > 0.5  # chance: 0.25
