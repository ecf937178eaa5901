import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from xmc.label_repr import fill_missing_label_texts, pifa, text_embedding  # noqa: E402

# 3 instances, 3 labels (label 2 has no positive instance), 2 features
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
X = np.array([[3.0, 0.0], [0.0, 4.0], [1.0, 0.0]], dtype=np.float32)
# v_0 = x_0 + x_1 = (3, 4) -> (0.6, 0.8); v_1 = x_1 + x_2 = (1, 4) -> (1, 4)/sqrt(17); v_2 = 0
EXPECTED = np.array([[0.6, 0.8], [1 / 17 ** 0.5, 4 / 17 ** 0.5], [0.0, 0.0]], dtype=np.float32)


def test_pifa_dense_hand_checked():
    Z = pifa(Y, X)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32 and Z.shape == (3, 2)
    np.testing.assert_allclose(Z, EXPECTED, rtol=1e-6)


def test_pifa_sparse_hand_checked():
    Z = pifa(sp.csr_matrix(Y), sp.csr_matrix(X))
    assert sp.isspmatrix_csr(Z) and Z.dtype == np.float32 and Z.shape == (3, 2)
    np.testing.assert_allclose(Z.toarray(), EXPECTED, rtol=1e-6)
    assert Z[2].nnz == 0  # the label without instances stays an empty row


def test_pifa_validates_shapes():
    with pytest.raises(ValueError, match="same instances"):
        pifa(Y[:2], X)
    with pytest.raises(ValueError, match="2-D"):
        pifa(Y, X[:, 0])


@pytest.fixture(scope="module")
def bert(tiny_encoder):
    return str(tiny_encoder("bert"))


def test_text_embedding_is_the_masked_mean_of_last_layer_states(bert):
    from transformers import AutoModel, AutoTokenizer

    texts = ["sports", "the quick brown fox jumps over the lazy dog", "finance markets"]
    Z = text_embedding(texts, bert, max_length=16, batch_size=2)
    assert Z.shape == (3, 32) and Z.dtype == np.float32
    model, tok = AutoModel.from_pretrained(bert).eval(), AutoTokenizer.from_pretrained(bert)
    for i, text in enumerate(texts):  # one text at a time: no padding at all
        with torch.no_grad():
            states = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(Z[i], states.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_text_embedding_rejects_empty_input(bert):
    with pytest.raises(ValueError, match="empty"):
        text_embedding([], bert)


def test_labels_without_text_fall_back_to_their_names():
    texts, missing = fill_missing_label_texts(["fishery", "  ", ""], ["100", "200", "300"])
    assert texts == ["fishery", "200", "300"] and missing == [1, 2]
    with pytest.raises(ValueError, match="neither a text nor a name"):
        fill_missing_label_texts([""], [""])
    with pytest.raises(ValueError, match="2 label texts for 1"):
        fill_missing_label_texts(["a", "b"], ["x"])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_text_embedding_in_reduced_precision_stays_close_to_fp32(bert, precision):
    texts = ["sports", "the quick brown fox jumps over the lazy dog", "finance markets", "law of the sea"]
    ref = text_embedding(texts, bert, max_length=16, batch_size=2)
    Z = text_embedding(texts, bert, max_length=16, batch_size=2, precision=precision)
    assert Z.dtype == np.float32 and Z.shape == ref.shape
    assert not np.array_equal(Z, ref)  # the pass really ran in another precision
    cos = (Z * ref).sum(1) / np.linalg.norm(Z, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.98
    with pytest.raises(ValueError, match="precision"):
        text_embedding(texts, bert, precision="fp8")
