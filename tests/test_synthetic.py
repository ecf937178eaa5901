"""The synthetic XMC generator: deterministic, long-tailed, several labels per document, learnable."""
import numpy as np
import pytest
import scipy.sparse as sp

from xmc.data.dataset import Dataset
from xmc.data.readers import read_dataset
from xmc.data.synthetic import SyntheticSpec, generate, split, write_attentionxml
from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams
from xmc.metrics import precision_recall_at_k

SPEC = SyntheticSpec(n_labels=40, vocabulary=2000, words_per_doc=40, labels_per_doc=2.5)


def test_same_seed_same_data_and_test_from_the_same_labels():
    assert generate(50, SPEC, seed=3) == generate(50, SPEC, seed=3)
    assert generate(50, SPEC, seed=3) != generate(50, SPEC, seed=4)
    train, test = split(50, SPEC, 3, 0), split(50, SPEC, 3, 1)
    assert train != test
    with pytest.raises(ValueError, match="at least 2 labels"):
        SyntheticSpec(n_labels=1)


def test_long_tail_and_several_labels_per_document():
    spec = SyntheticSpec(n_labels=2000, vocabulary=5000, labels_per_doc=3.0)
    _, labels = generate(4000, spec, seed=0)
    per_doc = np.array([len(ls) for ls in labels])
    assert 2.5 < per_doc.mean() < 3.2 and per_doc.min() >= 1
    counts = np.sort(np.unique([label for ls in labels for label in ls], return_counts=True)[1])[::-1]
    # a few labels on many documents, most on very few
    assert counts[0] > 50 * np.median(counts) and np.median(counts) <= 3
    assert counts[:20].sum() > 0.2 * counts.sum()


def test_every_label_is_on_a_training_document_as_in_real_datasets():
    # 600 documents x ~3 labels from a Zipf over 3,000 labels leave most of them undrawn
    spec = SyntheticSpec(n_labels=3000, vocabulary=2000, labels_per_doc=3.0)
    train = {label for ls in split(600, spec, 0, 0)[1] for label in ls}
    assert train == {f"label_{j}" for j in range(3000)}
    uncovered = SyntheticSpec(n_labels=3000, vocabulary=2000, labels_per_doc=3.0, cover_labels=False)
    _, labels = split(600, uncovered, 0, 0)
    assert len({label for ls in labels for label in ls}) < 1500
    per_doc = np.mean([len(ls) for ls in labels])
    assert 2.5 < per_doc < 3.2
    # the test split draws from the popularity alone: its labels are a subset
    assert {label for ls in split(600, spec, 0, 1)[1] for label in ls} < train


def test_the_labels_can_be_learned(tmp_path):
    spec = SyntheticSpec(n_labels=200, vocabulary=3000, words_per_doc=40, labels_per_doc=2.5, signal=0.25)
    folder = write_attentionxml(tmp_path / "synthetic", n_train=1500, n_test=300, spec=spec, seed=0)
    ds: Dataset = read_dataset("attentionxml", folder)
    vectorizer, X = fit_tfidf(ds.train_texts, TfidfParams(min_df=1))
    model = LinearMatcher.train(X, sp.csr_matrix(ds.Y_train), pred_params=LinearMatcherPredParams(top_b=5))
    pred = model.predict(transform_tfidf(vectorizer, ds.test_texts), top_b=5)
    p1 = precision_recall_at_k(pred, ds.Y_test, ks=(1,))["P@1"]
    popular = np.asarray(ds.Y_train.sum(axis=0)).ravel().argmax()  # chance: always the top label
    chance = 100.0 * ds.Y_test[:, popular].mean()
    assert p1 > 60.0 and p1 > chance + 30.0, (p1, chance)
    print(f"\nP@1 {p1:.1f} (always the most frequent label: {chance:.1f})")
