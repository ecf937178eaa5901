import numpy as np
import pytest

from helpers import csr_from_dicts
from xmc.ensemble import ENSEMBLE_METHODS, ensemble
from xmc.metrics import top_k_indices


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
    assert set(ENSEMBLE_METHODS) == {"average", "rank_average", "round_robin", "softmax_average",
                                     "sigmoid_average"}


LN3, LN2 = np.log(3.0), np.log(2.0)


def test_sigmoid_average_hand_computed():
    # sigmoid(ln a) = a / (a + 1): ln 3 -> 3/4, -ln 3 -> 1/4, ln 7 -> 7/8; an unlisted label counts 0
    P = csr_from_dicts([{0: LN3, 2: -LN3}, {1: np.log(7.0)}])
    Q = csr_from_dicts([{2: LN3, 4: -LN3}, {}])
    E = ensemble([P, Q], "sigmoid_average", top_k=10).toarray()
    np.testing.assert_allclose(E[0], [0.375, 0, 0.5, 0, 0.125], rtol=1e-6)
    np.testing.assert_allclose(E[1], [0, 0.4375, 0, 0, 0], rtol=1e-6)
    # no overflow on large negative scores: sigmoid(-1000) is a tiny positive number, still listed
    F = ensemble([csr_from_dicts([{0: -1000.0}])], "sigmoid_average", top_k=10)
    assert F.nnz == 1 and np.isfinite(F.data).all()


def test_softmax_average_hand_computed():
    # softmax within each model's listed labels of a row: {1 + ln 3, 1} -> 3/4, 1/4; {ln 2, ln 2} -> 1/2, 1/2
    P = csr_from_dicts([{0: 1 + LN3, 2: 1.0}, {1: 5.0}])
    Q = csr_from_dicts([{2: LN2, 4: LN2}, {}])
    E = ensemble([P, Q], "softmax_average", top_k=10).toarray()
    np.testing.assert_allclose(E[0], [0.375, 0, 0.375, 0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(E[1], [0, 0.5, 0, 0, 0], rtol=1e-6)  # a single listed label gets 1
    # shifted by the row maximum: huge scores do not overflow
    G = ensemble([csr_from_dicts([{0: 1000.0, 1: 1000.0 - LN3}])], "softmax_average", top_k=10).toarray()
    np.testing.assert_allclose(G[0], [0.75, 0.25, 0, 0, 0], rtol=1e-5)


# Signed (noop-like) scores: label 1 is listed by both models, label 2 by model 0 only (below label 1
# there), label 3 by model 1 only (below label 1 there).
SIGNED_A = csr_from_dicts([{0: 0.5, 1: -0.4, 2: -0.7}])
SIGNED_B = csr_from_dicts([{0: 0.3, 1: -0.4, 3: -0.9}])


@pytest.mark.parametrize("method", ENSEMBLE_METHODS)
def test_no_rule_favours_a_label_fewer_models_listed(method):
    # Raw averaging counted an unlisted label 0: label 2 (-0.7 / 2 = -0.35) outranked label 1 (-0.4).
    E = ensemble([SIGNED_A, SIGNED_B], method, top_k=10)
    order = top_k_indices(E, 4)[0].tolist()
    assert order.index(1) < order.index(2) and order.index(1) < order.index(3), (method, order)


def test_average_puts_signed_scores_on_a_common_scale_hand_computed():
    # Each model's row is mapped linearly onto [1/n, 1] (n = 3 listed): v = (s - lo + d) / (hi - lo + d),
    # d = (hi - lo) / (n - 1) = 0.6. Model 0: (s + 1.3) / 1.8; model 1: (s + 1.5) / 1.8.
    E = ensemble([SIGNED_A, SIGNED_B], "average", top_k=10).toarray()
    np.testing.assert_allclose(E[0], [1.0, (0.9 + 1.1) / 3.6, 0.6 / 3.6, 0.6 / 3.6, 0], rtol=1e-6)
    # a model whose row lists one label (or equal scores): each listed label gets 1
    F = ensemble([csr_from_dicts([{2: -3.0}]), csr_from_dicts([{1: -0.5, 2: -0.5}])], "average", top_k=10)
    np.testing.assert_allclose(F.toarray()[0], [0, 0.5, 1.0, 0, 0], rtol=1e-6)


def test_rank_average_ties_broken_by_the_scores():
    # rank values: label 0 = (2 + 1) / 2, label 1 = (1 + 2) / 2: a tie; mean score 0.5 vs 0.55 -> label 1
    P = csr_from_dicts([{0: 0.9, 1: 0.8}])
    Q = csr_from_dicts([{1: 0.3, 0: 0.1}])
    E = ensemble([P, Q], "rank_average", top_k=10)
    np.testing.assert_allclose(E.toarray()[0, :2], [1.5, 1.5], rtol=1e-6)
    # the stored values carry the order: metrics read label 1 first, not the lower index
    assert top_k_indices(E, 2)[0].tolist() == [1, 0]
    assert ensemble([P, Q], "rank_average", top_k=1).indices.tolist() == [1]
