import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from helpers import toy_task  # noqa: E402
from xmc.features import tokenize  # noqa: E402
from xmc.matcher.transformer import (  # noqa: E402
    MatcherParams, TransformerMatcher, pool_hidden_states, predict_matcher, resolve_pooling,
    squared_hinge_loss,
)

@pytest.fixture(scope="module")
def encoders(tiny_encoders):
    return tiny_encoders


def fast_params(**kw):
    base = dict(max_steps=8, warmup_steps=0, learning_rate=3e-3, batch_size=16, dropout=0.0,
                device="cpu", log_every=1, seed=0)
    base.update(kw)
    return MatcherParams(**base)


# ---------------------------------------------------------------- loss and pooling

def test_squared_hinge_matches_hand_computation():
    scores = torch.tensor([[2.0, -0.5], [0.3, -2.0]])
    M = torch.tensor([[1, 0], [0, 1]])
    # terms: max(0, 1-2)^2 = 0; (1-0.5)^2 = 0.25; (1+0.3)^2 = 1.69; (1+2)^2 = 9
    expected = (0.0 + 0.25 + 1.69 + 9.0) / 4
    assert squared_hinge_loss(scores, M).item() == pytest.approx(expected, rel=1e-6)


def test_squared_hinge_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        squared_hinge_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_pooling_variants_handle_left_and_right_padding():
    # hidden value = 10 * row + position, so the pooled value names the position it came from
    hidden = (10 * torch.arange(2.0)[:, None] + torch.arange(4.0)[None, :]).unsqueeze(-1)
    mask = torch.tensor([[1, 1, 1, 0],    # right padded (BERT)
                         [0, 1, 1, 1]])   # left padded (XLNet)
    assert pool_hidden_states(hidden, mask, "cls").ravel().tolist() == [0.0, 11.0]
    assert pool_hidden_states(hidden, mask, "last").ravel().tolist() == [2.0, 13.0]
    assert pool_hidden_states(hidden, mask, "mean").ravel().tolist() == pytest.approx([1.0, 12.0])
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden_states(hidden, mask, "max")
    assert resolve_pooling("auto", "xlnet") == "last"
    assert resolve_pooling("auto", "bert") == "cls"
    assert resolve_pooling("mean", "xlnet") == "mean"


# ---------------------------------------------------------------- params

def test_matcher_params_from_dict_and_validation():
    p = MatcherParams.from_dict({"max_steps": 20, "warmup_steps": 2, "learning_rate": "5e-5"})
    assert p.learning_rate == 5e-5 and p.max_steps == 20 and p.batch_size == 16
    with pytest.raises(ValueError, match="'lerning_rate'"):
        MatcherParams.from_dict({"lerning_rate": 1e-4})
    with pytest.raises(ValueError, match="learning_rate"):
        MatcherParams(learning_rate=0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        MatcherParams(max_steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match="pooling"):
        MatcherParams(pooling="max")
    with pytest.raises(ValueError, match="batch_size"):
        MatcherParams(batch_size=2.5)
    with pytest.raises(ValueError, match="device"):
        MatcherParams(device="gpu0")


# ---------------------------------------------------------------- train / save / load / predict

@pytest.mark.parametrize("kind", ["bert", "roberta", "xlnet"])
def test_train_save_load_predict(kind, encoders, tmp_path):
    texts, M = toy_task()
    tok = tokenize(texts, encoders[kind], max_length=16)
    logged = []
    matcher = TransformerMatcher.train(encoders[kind], tok["input_ids"], tok["attention_mask"], M,
                                       fast_params(max_steps=24), log=logged.append)
    losses = [h["loss"] for h in matcher.history_]
    assert len(losses) == 24 and len(logged) == 24 and "loss" in logged[0]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:3])
    assert matcher.pooling == ("last" if kind == "xlnet" else "cls")

    topb, emb = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=2, batch_size=10)
    assert topb.shape == (32, 4) and topb.dtype == np.float32 and sp.isspmatrix_csr(topb)
    assert np.all(np.diff(topb.indptr) == 2)
    assert emb.shape == (32, 32) and emb.dtype == np.float32

    matcher.save(tmp_path / "model")
    names = set(os.listdir(tmp_path / "model"))
    assert {"config.json", "head.pt", "matcher.json", "tokenizer_config.json"} <= names
    loaded = TransformerMatcher.load(tmp_path / "model", device="cpu")
    assert loaded.pooling == matcher.pooling and loaded.family == kind
    topb2, emb2 = loaded.predict(tok["input_ids"], tok["attention_mask"], top_b=2, batch_size=10)
    assert np.array_equal(emb, emb2)
    assert np.array_equal(topb.indices, topb2.indices) and np.array_equal(topb.data, topb2.data)
    # the saved folder is itself an encoder folder: its tokenizer gives the same ids
    assert np.array_equal(tokenize(texts, str(tmp_path / "model"), max_length=16)["input_ids"],
                          tok["input_ids"])


def test_training_is_deterministic_for_a_seed(encoders):
    texts, M = toy_task()
    tok = tokenize(texts, encoders["bert"], max_length=16)
    heads = [TransformerMatcher.train(encoders["bert"], tok["input_ids"], tok["attention_mask"], M,
                                      fast_params(seed=s, dropout=0.1, batch_size=8, grad_accum=2)
                                      ).head.weight.detach().clone() for s in (3, 3, 4)]
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_predict_top_b_breaks_ties_by_lower_cluster(encoders, tmp_path):
    texts, M = toy_task(n=8)
    tok = tokenize(texts, encoders["bert"], max_length=16)
    matcher = TransformerMatcher.train(encoders["bert"], tok["input_ids"], tok["attention_mask"], M,
                                       fast_params(max_steps=1))
    with torch.no_grad():  # every instance scores exactly the bias: ties at 3.0 and at 1.0
        matcher.head.weight.zero_()
        matcher.head.bias.copy_(torch.tensor([1.0, 3.0, 3.0, 1.0]))
    topb, _ = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=3)
    assert np.all(np.diff(topb.indptr) == 3)
    assert topb[0].indices.tolist() == [0, 1, 2] and topb[0].data.tolist() == [1.0, 3.0, 3.0]
    top1, _ = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=1)
    assert top1.indices.tolist() == [1] * 8
    everything, _ = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=10)
    assert np.all(np.diff(everything.indptr) == 4)  # b is capped at K
    matcher.save(tmp_path / "m")
    again, _ = predict_matcher(str(tmp_path / "m"), tok["input_ids"], tok["attention_mask"],
                               top_b=3, device="cpu")
    assert np.array_equal(again.toarray(), topb.toarray())


def test_train_rejects_mismatched_inputs(encoders):
    texts, M = toy_task(n=8)
    tok = tokenize(texts, encoders["bert"], max_length=16)
    with pytest.raises(ValueError, match="rows"):
        TransformerMatcher.train(encoders["bert"], tok["input_ids"], tok["attention_mask"], M[:4],
                                 fast_params(max_steps=1))
    with pytest.raises(ValueError, match="attention_mask"):
        TransformerMatcher.train(encoders["bert"], tok["input_ids"], tok["attention_mask"][:, :4], M,
                                 fast_params(max_steps=1))


def test_load_rejects_a_folder_without_matcher_files(tmp_path):
    with pytest.raises(ValueError, match="matcher.json"):
        TransformerMatcher.load(tmp_path)


def test_non_finite_loss_stops_training_with_the_step(encoders, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    broken = tmp_path / "broken"
    model = AutoModel.from_pretrained(encoders["bert"])
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(encoders["bert"]).save_pretrained(broken)
    texts, M = toy_task()
    tok = tokenize(texts, str(broken), max_length=16)
    with pytest.raises(FloatingPointError, match="step 1/8"):
        TransformerMatcher.train(str(broken), tok["input_ids"], tok["attention_mask"], M, fast_params())


@pytest.mark.parametrize("kind", ["bert", "xlnet"])  # right and left padding
def test_length_sorted_trimmed_batches_equal_the_padded_pass(kind, encoders):
    """predict() sorts rows by length and cuts each batch to its longest row: the scores and
    embeddings equal one forward pass over the fully padded rows, in the input order."""
    texts, M = toy_task(n=12)
    texts = [" ".join([t] * (1 + i % 4)) for i, t in enumerate(texts)]  # 1 to 4 times as long
    tok = tokenize(texts, encoders[kind], max_length=128)
    lengths = tok["attention_mask"].sum(1)
    assert lengths.max() < 128 and len(set(lengths.tolist())) > 3  # padding to cut, lengths to sort
    matcher = TransformerMatcher.train(encoders[kind], tok["input_ids"], tok["attention_mask"], M, fast_params())
    widths, forward = [], matcher.net.forward
    matcher.net.forward = lambda ids, mask: widths.append(ids.shape[1]) or forward(ids, mask)
    topb, emb = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=4, batch_size=5)
    matcher.net.forward = forward
    assert widths == sorted(widths, reverse=True) and widths[0] == lengths.max() and widths[-1] < widths[0]
    matcher.net.eval()
    with torch.no_grad():
        scores, pooled = matcher.net(torch.as_tensor(tok["input_ids"], dtype=torch.long),
                                     torch.as_tensor(tok["attention_mask"], dtype=torch.long))
    np.testing.assert_allclose(emb, pooled.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(topb.toarray(), scores.numpy(), rtol=1e-4, atol=1e-5)  # K = 4 = top_b


def test_precision_auto_follows_the_cpus_bf16_flags(tmp_path, monkeypatch):
    from xmc import training

    with_bf16, without = tmp_path / "bf16", tmp_path / "avx2"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert training.cpu_has_native_bf16(str(with_bf16)) and not training.cpu_has_native_bf16(str(without))
    assert not training.cpu_has_native_bf16(str(tmp_path / "missing"))
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(training, "cpu_has_native_bf16", lambda native=native: native)
        assert training.resolve_precision("auto", torch.device("cpu")) == expected
        assert training.resolve_precision("auto", torch.device("cuda")) == "fp32"  # the paper's, on GPUs
        assert training.resolve_precision("fp16", torch.device("cpu")) == "fp16"
        with training.autocast(torch.device("cpu"), "auto"):
            assert torch.is_autocast_enabled("cpu") == (expected == "bf16")


def test_int8_prediction_quantises_the_encoder_and_keeps_the_ranking(encoders):
    texts, M = toy_task(n=32)
    tok = tokenize(texts, encoders["bert"], max_length=16)
    matcher = TransformerMatcher.train(encoders["bert"], tok["input_ids"], tok["attention_mask"], M,
                                       fast_params(max_steps=24))
    fp32, emb32 = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=2)
    int8, emb8 = matcher.predict(tok["input_ids"], tok["attention_mask"], top_b=2, precision="int8")
    assert not np.array_equal(emb8, emb32)  # another computation ...
    cos = np.sum(emb8 * emb32, 1) / np.linalg.norm(emb8, axis=1) / np.linalg.norm(emb32, axis=1)
    assert cos.min() > 0.95  # ... of nearly the same embeddings
    top1 = lambda P: np.asarray(P.argmax(axis=1)).ravel()  # noqa: E731 (scores here are hinge outputs, mostly > 0)
    assert np.mean(top1(int8.tocsr()) == top1(fp32.tocsr())) >= 0.9
    assert isinstance(matcher.net.encoder.encoder.layer[0].attention.self.query, torch.nn.Linear)  # untouched
    matcher.device = torch.device("cuda")  # int8 is refused before any work on a GPU
    with pytest.raises(ValueError, match="int8.*CPU"):
        matcher.predict(tok["input_ids"], tok["attention_mask"], precision="int8")
    with pytest.raises(ValueError, match="predict precision"):
        matcher.predict(tok["input_ids"], tok["attention_mask"], precision="int4")
