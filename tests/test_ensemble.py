import numpy as np
import pytest

from helpers import csr_from_dicts
from xmc.ensemble import ENSEMBLE_METHODS, ensemble


# row 0: model 0 ranks labels 0 > 2 > 3, model 1 ranks 2 > 4; longest list mm = 3.
# row 1: model 0 has a tie (labels 0 and 1, 0.5 each -> label 0 ranks first), model 1 is empty; mm = 2.
A = csr_from_dicts([{0: 0.9, 2: 0.5, 3: 0.1}, {1: 0.5, 0: 0.5}])
B = csr_from_dicts([{2: 0.8, 4: 0.6}, {}])


def test_average_hand_computed():
    E = ensemble([A, B], "average", top_k=10).toarray()
    np.testing.assert_allclose(E[0], [0.45, 0, 0.65, 0.05, 0.3])
    np.testing.assert_allclose(E[1], [0.25, 0.25, 0, 0, 0])


def test_rank_average_hand_computed():
    E = ensemble([A, B], "rank_average", top_k=10).toarray()
    # model 0: 0->3, 2->2, 3->1 ; model 1: 2->3, 4->2 ; mean over 2 models
    np.testing.assert_allclose(E[0], [1.5, 0, 2.5, 0.5, 1.0])
    # row 1: model 0: 0->2, 1->1 (tie broken by lower index); model 1 lists nothing
    np.testing.assert_allclose(E[1], [1.0, 0.5, 0, 0, 0])


def test_round_robin_hand_computed():
    E = ensemble([A, B], "round_robin", top_k=10).toarray()
    # bonus (M - i)/(M + 1): model 0 -> 2/3, model 1 -> 1/3; max over models listing the label
    np.testing.assert_allclose(E[0], [3 + 2 / 3, 0, max(2 + 2 / 3, 3 + 1 / 3), 1 + 2 / 3, 2 + 1 / 3])
    np.testing.assert_allclose(E[1], [2 + 2 / 3, 1 + 2 / 3, 0, 0, 0])
    # interleaving: 0 (m0 first), 2 (m1 first), 4 (m1 second) ahead of 3 (m0 third)
    assert np.argsort(-E[0])[:4].tolist() == [0, 2, 4, 3]


def test_top_k_and_ties():
    E = ensemble([A, B], "average", top_k=1)
    assert E.indices.tolist() == [2, 0]  # row 1: 0.25 tie between labels 0 and 1 -> label 0
    assert E.dtype == np.float32 and E.shape == A.shape


def test_single_model_average_is_identity():
    E = ensemble([A], "average", top_k=10)
    np.testing.assert_allclose(E.toarray(), A.toarray())


def test_validation():
    with pytest.raises(ValueError, match=r"preds\[1\]"):
        ensemble([A, B[:, :4]], "average")
    with pytest.raises(ValueError, match="accepted"):
        ensemble([A, B], "median")
    with pytest.raises(ValueError, match="at least one"):
        ensemble([], "average")
    assert set(ENSEMBLE_METHODS) == {"average", "rank_average", "round_robin"}
