"""xmc.selection: the ensemble rule and members picked on the validation split, and the validation
split itself (held out of train, or the data's own)."""
import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.data.dataset import Dataset
from xmc.ensemble import ENSEMBLE_METHODS, ensemble
from xmc.metrics import precision_recall_at_k
from xmc.selection import EXHAUSTIVE_MAX, select_ensemble


def _preds(rng, Y, hit_rate, n_labels_listed=5):
    """Top-5 lists that hold a true label first in about ``hit_rate`` of the rows, random otherwise."""
    N, L = Y.shape
    rows, cols, vals = [], [], []
    for i in range(N):
        true = Y[i].indices
        picked = list(rng.choice(L, size=n_labels_listed, replace=False))
        if rng.random() < hit_rate and len(true):
            first = int(rng.choice(true))
            picked = [first] + [c for c in picked if c != first][: n_labels_listed - 1]
        for r, c in enumerate(picked):
            rows.append(i), cols.append(c), vals.append(1.0 - 0.1 * r + rng.normal(0, 0.01))
    return sp.csr_matrix((vals, (rows, cols)), shape=(N, L))


def _labels(rng, N, L):
    Y = sp.random(N, L, density=0.05, random_state=np.random.RandomState(int(rng.integers(1 << 30))), format="csr")
    Y.data[:] = 1
    Y = Y.tolil()
    for i in np.flatnonzero(Y.getnnz(axis=1) == 0):  # every row has a label
        Y[i, rng.integers(L)] = 1
    return sp.csr_matrix(Y)


def test_the_pick_is_never_below_its_best_member_on_validation():
    rng = np.random.default_rng(0)
    Y = _labels(rng, 300, 40)
    preds = {f"m{i}": _preds(rng, Y, rate) for i, rate in enumerate((0.3, 0.6, 0.2))}
    pick = select_ensemble(preds, Y, top_k=5)
    best_member = max(precision_recall_at_k(p, Y)["P@1"] for p in preds.values())
    assert pick["validation"]["P@1"] >= best_member
    # the pick is what its rule gives on its members, and it is the first of the candidates
    members = [preds[m] for m in pick["members"]]
    combined = members[0] if len(members) == 1 else ensemble(members, pick["method"], top_k=5)
    assert precision_recall_at_k(combined, Y)["P@1"] == pick["validation"]["P@1"]
    assert pick["candidates"][0]["members"] == pick["members"]
    # every rule over every non-empty subset was tried (one member: once)
    assert len(pick["candidates"]) == 3 + len(ENSEMBLE_METHODS) * (3 + 1)


def test_a_much_better_member_alone_is_picked():
    rng = np.random.default_rng(1)
    Y = _labels(rng, 400, 40)
    preds = {"weak": _preds(rng, Y, 0.05), "strong": _preds(rng, Y, 0.95)}
    pick = select_ensemble(preds, Y, top_k=5)
    assert pick["members"] == ["strong"]


def test_the_pick_depends_on_the_validation_labels_alone():
    """Two candidates that swap places between two label sets: the pick follows the labels it is
    given (the workflow gives it the validation split's, never the test split's)."""
    rng = np.random.default_rng(2)
    Y_a, Y_b = _labels(rng, 300, 30), _labels(rng, 300, 30)
    good_on_a, good_on_b = _preds(rng, Y_a, 0.9), _preds(rng, Y_b, 0.9)
    preds = {"a": good_on_a, "b": good_on_b}
    assert "a" in select_ensemble(preds, Y_a, top_k=5)["members"]
    assert select_ensemble(preds, Y_b, top_k=5)["members"][0] == "b"
    # its only inputs: predictions and labels of one split (no test matrix can be passed in)
    assert list(inspect.signature(select_ensemble).parameters) == ["valid_preds", "Y_valid", "top_k", "methods"]


def test_greedy_search_past_the_exhaustive_limit():
    rng = np.random.default_rng(3)
    Y = _labels(rng, 200, 30)
    preds = {f"m{i}": _preds(rng, Y, 0.1 + 0.05 * i) for i in range(EXHAUSTIVE_MAX + 2)}
    pick = select_ensemble(preds, Y, top_k=5)
    best_member = max(precision_recall_at_k(p, Y)["P@1"] for p in preds.values())
    assert pick["validation"]["P@1"] >= best_member
    assert len(pick["candidates"]) < (2 ** len(preds)) * len(ENSEMBLE_METHODS)


def test_select_rejects_predictions_of_another_shape():
    Y = sp.csr_matrix(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        select_ensemble({"m": sp.csr_matrix((5, 4))}, Y)
    with pytest.raises(ValueError, match="no candidate"):
        select_ensemble({}, Y)


# ---- the validation split -----------------------------------------------------------------
def _dataset(n_train=50, n_test=10):
    texts = [f"document {i} about topic {i % 7}" for i in range(n_train)]
    labels = [[f"l{i % 7}", f"l{(i + 1) % 7}"] for i in range(n_train)]
    return Dataset.from_label_lists(texts, labels, [f"test {i}" for i in range(n_test)],
                                    [[f"l{i % 3}"] for i in range(n_test)])


def test_hold_out_validation_moves_a_seeded_share_of_train(tmp_path):
    ds = _dataset()
    held = ds.hold_out_validation(0.2, seed=5)
    assert len(held.valid_texts) == 10 and len(held.train_texts) == 40
    assert set(held.valid_texts).isdisjoint(held.train_texts)  # never both train and validation
    assert sorted(held.valid_texts + held.train_texts) == sorted(ds.train_texts)
    assert held.test_texts == ds.test_texts and held.label_names == ds.label_names
    for texts, Y in ((held.valid_texts, held.Y_valid), (held.train_texts, held.Y_train)):
        for text, row in zip(texts, Y):  # each text keeps its own labels
            i = ds.train_texts.index(text)
            assert (row != ds.Y_train[i]).nnz == 0
    assert held.hold_out_validation(0.2, seed=5).valid_texts == held.valid_texts  # already has one
    assert ds.hold_out_validation(0.2, seed=5).valid_texts == held.valid_texts  # seeded
    assert ds.hold_out_validation(0.2, seed=6).valid_texts != held.valid_texts
    held.save(tmp_path / "prepared")
    back = Dataset.load(tmp_path / "prepared")
    assert back.valid_texts == held.valid_texts and (back.Y_valid != held.Y_valid).nnz == 0
    assert back.meta()["n_valid"] == 10 and back.meta()["n_train"] == 40
    for bad in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match="validation"):
            ds.hold_out_validation(bad)


def test_a_shipped_validation_split_is_kept_and_subsampled():
    ds = Dataset.from_label_lists(["a b", "c d", "e f"], [["x"], ["y"], ["x"]], ["g h"], [["y"]],
                                  valid_texts=["v w", "z z"], valid_labels=[["z"], ["x"]])
    assert ds.label_names == ["x", "y", "z"]  # a label of validation only keeps its column
    assert ds.hold_out_validation(0.5) is ds
    sub = ds.subsample(n_valid=1, seed=0)
    assert len(sub.valid_texts) == 1 and len(sub.train_texts) == 3


def test_subsample_test_from_valid_never_reads_the_shipped_test_split():
    valid = [f"valid doc {i}" for i in range(10)]
    ds = Dataset.from_label_lists(["a b", "c d", "e f"], [["x"], ["y"], ["x"]],
                                  ["secret test one", "secret test two"], [["y"], ["t"]],
                                  valid_texts=valid, valid_labels=[["x"] if i % 2 else ["z"] for i in range(10)])
    sub = ds.subsample(n_valid=4, n_test=3, seed=1, test_from="valid")
    assert len(sub.test_texts) == 3 and len(sub.valid_texts) == 4 and len(sub.train_texts) == 3
    assert set(sub.test_texts) <= set(valid) and set(sub.valid_texts) <= set(valid)
    assert not set(sub.test_texts) & set(sub.valid_texts)  # disjoint
    assert "t" not in sub.label_names  # the shipped test split's own label is gone with it
    assert sub.test_texts == ds.subsample(n_valid=4, n_test=3, seed=1, test_from="valid").test_texts
    # from train: the rest of train stays train
    sub = ds.subsample(n_test=1, test_from="train")
    assert len(sub.train_texts) == 2 and set(sub.test_texts) <= {"a b", "c d", "e f"}
    assert not set(sub.test_texts) & set(sub.train_texts)
    with pytest.raises(ValueError, match="n_test"):
        ds.subsample(test_from="valid")
    with pytest.raises(ValueError, match="must be below"):
        ds.subsample(n_test=10, test_from="valid")
    with pytest.raises(ValueError, match="test_from"):
        ds.subsample(n_test=1, test_from="dev")
