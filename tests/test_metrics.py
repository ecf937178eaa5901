import numpy as np
import pytest
import scipy.sparse as sp

from helpers import csr_from_dicts
from xmc.metrics import csr_row_top_k, precision_recall_at_k, top_k_indices


# row 0: true {0, 3}; row 1: true {4} (label 4 is never predicted: unseen); row 2: no true label.
Y = csr_from_dicts([{0: 1, 3: 1}, {4: 1}, {}])
PRED = csr_from_dicts([{0: 0.9, 1: 0.8, 3: 0.7, 2: 0.1}, {1: 0.5}, {2: 1.0}])


def test_precision_recall_hand_computed():
    m = precision_recall_at_k(PRED, Y, ks=(1, 3, 5))
    expected = {
        "P@1": 100 * (1 / 1) / 3,
        "P@3": 100 * (2 / 3) / 3,
        "P@5": 100 * (2 / 5) / 3,  # row 0 has only 4 predictions, still divided by 5
        "R@1": 100 * (1 / 2) / 3,  # row 2 (no true labels) counts recall 0
        "R@3": 100 * 1.0 / 3,
        "R@5": 100 * 1.0 / 3,
    }
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_ties_lower_index_and_padding():
    P = csr_from_dicts([{2: 0.5, 1: 0.5, 4: 0.9}, {}])
    np.testing.assert_array_equal(top_k_indices(P, 3), [[4, 1, 2], [-1, -1, -1]])
    Yt = csr_from_dicts([{2: 1}, {0: 1}])
    m = precision_recall_at_k(P, Yt, ks=(2,))
    assert m["P@2"] == 0.0  # label 1 wins the tie, label 2 falls out of the top 2
    m = precision_recall_at_k(P, Yt, ks=(3,))
    assert m["P@3"] == pytest.approx(100 * (1 / 3) / 2)


def test_explicit_zero_and_negative_scores_count_as_predictions():
    P = sp.csr_matrix((np.array([0.0, -1.0]), np.array([3, 1]), np.array([0, 2])), shape=(1, 5))
    np.testing.assert_array_equal(top_k_indices(P, 3), [[3, 1, -1]])
    m = precision_recall_at_k(P, csr_from_dicts([{1: 1}]), ks=(1, 2))
    assert m["P@1"] == 0.0 and m["P@2"] == 50.0 and m["R@2"] == 100.0


def test_csr_row_top_k():
    T = csr_row_top_k(PRED, 2)
    assert T.dtype == np.float32 and T.shape == PRED.shape
    np.testing.assert_allclose(T.toarray()[0], [0.9, 0.8, 0, 0, 0])
    assert T[1].indices.tolist() == [1]


def test_validation():
    with pytest.raises(ValueError, match="same shape"):
        precision_recall_at_k(PRED[:, :4], Y)
    with pytest.raises(ValueError, match="ks"):
        precision_recall_at_k(PRED, Y, ks=(0,))
    with pytest.raises(ValueError, match="k"):
        top_k_indices(PRED, 0)


def test_shortlist_recall_hand_computed():
    from xmc.metrics import shortlist_recall

    # 4 labels in 2 clusters: labels 0, 1 -> cluster 0; labels 2, 3 -> cluster 1
    C = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1]]))
    Y = sp.csr_matrix(np.array([[1, 0, 1, 0],    # cluster 0 shortlisted: 1 of 2 labels reachable
                                [0, 0, 1, 1],    # nothing shortlisted: 0 of 2
                                [0, 1, 0, 0]]))  # cluster 0 shortlisted, with a stored 0 score: 1 of 1
    M = sp.csr_matrix((np.array([0.9, 0.0]), np.array([0, 0]), np.array([0, 1, 1, 2])), shape=(3, 2))
    out = shortlist_recall(M, Y, C)
    assert out["label_recall"] == pytest.approx(100 * 2 / 5)
    assert out["instance_recall"] == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError, match="shapes"):
        shortlist_recall(M, Y, C[:3])


def test_csr_row_top_k_breaks_ties_by_a_second_score():
    # three labels saturated at 1.0 (l3-hinge): the second score (the ranker's h) orders them
    S = csr_from_dicts([{0: 1.0, 1: 1.0, 2: 1.0, 4: 0.5}])
    H = csr_from_dicts([{0: 1.5, 1: 3.0, 2: 2.0, 4: 9.0}])
    T = csr_row_top_k(S, 3, tiebreak=H)
    assert sorted(T.indices.tolist()) == [0, 1, 2]
    # the stored float32 values keep that order for every later top-k (metrics, ensembles) ...
    assert top_k_indices(T, 3)[0].tolist() == [1, 2, 0]
    # ... and move by a few float32 steps at most
    np.testing.assert_allclose(T.toarray()[0], [1.0, 1.0, 1.0, 0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="tiebreak"):
        csr_row_top_k(S, 3, tiebreak=H[:, :4])


def test_csr_row_top_k_order_survives_float32():
    # 0.5 + 1e-10 and 0.5 are one float32 value: the higher label, ranked first, stays first
    S = csr_from_dicts([{1: 0.5, 3: 0.5 + 1e-10, 0: 0.25}])
    T = csr_row_top_k(S, 3)
    assert top_k_indices(T, 3)[0].tolist() == [3, 1, 0]
    assert precision_recall_at_k(T, csr_from_dicts([{3: 1}]), ks=(1,))["P@1"] == 100.0
