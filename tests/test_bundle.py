"""Model bundles: a small real pipeline built in-process (tiny random BERT, TF-IDF, PIFA clusters,
transformer and linear matchers, rankers), exported, loaded and compared with its own predictions;
the `python -m xmc predict` command; the errors for bad bundles and bad input."""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import xmc
from xmc.bundle import BundleError, export_bundle, export_ensemble, load
from xmc.cli import main
from xmc.ensemble import ensemble
from xmc.features import TfidfParams, fit_tfidf, tokenize, transform_tfidf
from xmc.indexing import BalancedKMeans, IndexerParams
from xmc.io import save_csr, write_lines
from xmc.label_repr import pifa
from xmc.linear import decision_function
from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams, top_b_dense
from xmc.matcher.transformer import MatcherParams, TransformerMatcher
from xmc.features import ranker_features
from xmc.indexing import cluster_targets, sparse_pattern
from xmc.ranker import Ranker
from xmc.vectorizer_store import load_vectorizer, save_vectorizer

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
TOPICS = [
    "apple banana cherry grape lemon mango".split(),
    "music sports football match results".split(),
    "politics elections government policy".split(),
    "physics chemistry biology space research".split(),
    "finance markets stocks bonds bank rates".split(),
    "agriculture fisheries trade regulation".split(),
    "red green blue yellow purple pink".split(),
    "alpha beta gamma delta epsilon zeta".split(),
]
MAX_LENGTH, TOP_B, TOP_K = 16, 2, 5


def _corpus(n, rng):
    """Texts of 1-2 topics; label t*2 + (word choice) so that there are 16 labels over 8 topics."""
    texts, rows = [], []
    for _ in range(n):
        topics = rng.choice(len(TOPICS), size=rng.integers(1, 3), replace=False)
        words, labels = [], set()
        for t in topics:
            words += list(rng.choice(TOPICS[t], size=4))
            labels.add(2 * t + int(rng.integers(0, 2)))
        texts.append(" ".join(words))
        rows.append(sorted(labels))
    Y = sp.lil_matrix((n, 2 * len(TOPICS)), dtype=np.float32)
    for i, labels in enumerate(rows):
        Y[i, labels] = 1.0
    return texts, Y.tocsr()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_encoder):
    """Run the workflow's stages by hand, writing the files the workflow writes, and keep the test
    predictions each model makes (the reference for the bundles)."""
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    train, Y_train = _corpus(48, rng)
    test, _ = _corpus(16, rng)
    names = [f"label {j} ({TOPICS[j // 2][0]})" for j in range(Y_train.shape[1])]
    write_lines(root / "label_names.txt", names)
    write_lines(root / "label_text.txt", [f"text of {n}" for n in names])

    vectorizer, X_train = fit_tfidf(train, TfidfParams(min_df=1))
    save_vectorizer(vectorizer, root / "vectorizer.npz")  # as the tfidf rule writes it
    X_test = transform_tfidf(vectorizer, test)
    C = BalancedKMeans.train(pifa(Y_train, X_train), IndexerParams(n_clusters=4, seed=0)).C_
    save_csr(root / "C.npz", C)
    M = cluster_targets(Y_train, C)

    encoder = tiny_encoder("bert")
    tok_train, tok_test = (tokenize(t, str(encoder), MAX_LENGTH) for t in (train, test))
    params = MatcherParams(max_steps=4, warmup_steps=1, batch_size=8, learning_rate=1e-3, top_b=TOP_B,
                           device="cpu", checkpoint_every=0, pooling="mean")
    TransformerMatcher.train(str(encoder), tok_train["input_ids"], tok_train["attention_mask"], M,
                             params).save(root / "matcher")
    matcher = TransformerMatcher.load(root / "matcher", device="cpu")  # as predict_matcher does
    topb_train, emb_train = matcher.predict(tok_train["input_ids"], tok_train["attention_mask"])
    topb_test, emb_test = matcher.predict(tok_test["input_ids"], tok_test["attention_mask"])
    np.save(root / "emb.train.npy", emb_train)  # as predict_matcher writes them (the knn memory)
    save_csr(root / "Y.train.npz", Y_train)
    ranker = Ranker.train(ranker_features(X_train, emb_train), Y_train, C, topb_train)
    ranker.save(root / "ranker.npz")
    neural = Ranker.load(root / "ranker.npz").predict(ranker_features(X_test, emb_test), topb_test,
                                                      combine="l3-hinge", top_k=TOP_K)

    linear = LinearMatcher.train(X_train, M, pred_params=LinearMatcherPredParams(top_b=TOP_B))
    linear.save(root / "linear.npz")
    lin_ranker = Ranker.train(X_train, Y_train, C, linear.predict(X_train))
    lin_ranker.save(root / "ranker-linear.npz")
    baseline = lin_ranker.predict(X_test, LinearMatcher.load(root / "linear.npz").predict(X_test),
                                  combine="l3-hinge", top_k=TOP_K)

    common = dict(vectorizer=root / "vectorizer.npz", assignment=root / "C.npz",
                  label_names=root / "label_names.txt", label_texts=root / "label_text.txt", combine="l3-hinge",
                  top_b=TOP_B, top_k=TOP_K, dataset="synthetic")
    bundles = root / "models"
    export_bundle(bundles / "neural", name="pifa-tfidf.tiny.tfidf+neural.tfn+man.l3-hinge",
                  matcher=root / "matcher", ranker=root / "ranker.npz", ranker_input="tfidf+neural",
                  max_length=MAX_LENGTH, metrics={"P@1": 50.0}, config={"matcher": params.to_dict()}, **common)
    export_bundle(bundles / "linear", name="pifa-tfidf.linear.tfidf.tfn+man.l3-hinge",
                  matcher=root / "linear.npz", ranker=root / "ranker-linear.npz", ranker_input="tfidf",
                  **common)
    export_ensemble(bundles / "ens", name="ens", members=[bundles / "neural", bundles / "linear"],
                    method="rank_average", top_k=TOP_K)
    return {"root": root, "train": train, "test": test, "encoder": encoder, "names": names, "bundles": bundles, "X": (X_train, X_test),
            "Y_train": Y_train, "C": C, "emb": (emb_train, emb_test), "topb": (topb_train, topb_test),
            "neural": neural, "linear": baseline, "ens": ensemble([neural, baseline], "rank_average", TOP_K)}


def assert_same_predictions(got, want):
    """The same top-k labels in every row, scores equal within float tolerance."""
    got, want = sp.csr_matrix(got), sp.csr_matrix(want)
    got.sort_indices()
    want.sort_indices()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["neural", "linear", "ens"])
def test_loaded_bundle_reproduces_the_pipeline(pipeline, kind):
    bundle = xmc.load(pipeline["bundles"] / kind, device="cpu")
    assert bundle.kind == ("ensemble" if kind == "ens" else "model")
    assert bundle.label_names == pipeline["names"]
    assert pipeline[kind].nnz > 0
    assert_same_predictions(bundle.predict_scores(pipeline["test"]), pipeline[kind])
    # Batch size only changes how the encoder is fed.
    assert_same_predictions(bundle.predict_scores(pipeline["test"], batch_size=3), pipeline[kind])


def test_predict_lists_names_best_first(pipeline):
    bundle = load(pipeline["bundles"] / "neural", device="cpu")
    want = pipeline["neural"]
    rows = bundle.predict(pipeline["test"], top_k=3)
    assert len(rows) == len(pipeline["test"])
    for i, row in enumerate(rows):
        scores = want[i].toarray().ravel()
        order = sorted(np.flatnonzero(want[i].toarray().ravel() != 0), key=lambda j: (-scores[j], j))[:3]
        assert [name for name, _ in row] == [pipeline["names"][j] for j in order]
        np.testing.assert_allclose([s for _, s in row], scores[order], rtol=1e-5)
    # More labels than the workflow kept: the ranker scores every label of the top-b clusters.
    wide = bundle.predict(pipeline["test"][:2], top_k=50)
    assert all(len(row) > TOP_K for row in wide)


def test_manifest_records_the_model(pipeline):
    manifest = json.loads((pipeline["bundles"] / "neural" / "manifest.json").read_text())
    assert manifest["format"] == "xmc-bundle" and manifest["n_labels"] == len(pipeline["names"])
    assert manifest["metrics"] == {"P@1": 50.0} and manifest["config"]["matcher"]["top_b"] == TOP_B
    assert {"xmc", "torch", "transformers", "scikit-learn"} <= set(manifest["versions"])
    assert {"tfidf/vectorizer.npz", "indexer/C.npz", "ranker/model.npz", "label_names.txt",
            "matcher/head.pt", "matcher/config.json"} <= set(manifest["files"])
    ens = json.loads((pipeline["bundles"] / "ens" / "manifest.json").read_text())
    assert ens["members"] == ["pifa-tfidf.tiny.tfidf+neural.tfn+man.l3-hinge",
                              "pifa-tfidf.linear.tfidf.tfn+man.l3-hinge"]
    assert "members/pifa-tfidf.linear.tfidf.tfn+man.l3-hinge/matcher.npz" in ens["files"]


def test_a_knn_bundle_votes_with_its_training_embeddings_as_rule_knn_shortlist_does(pipeline, tmp_path):
    """A model whose shortlist the nearest training documents vote for (matcher.knn) carries their
    embeddings and clusters: loaded elsewhere it reproduces the vote's predictions, which differ from
    the head's shortlist's; it is format version 3 (an older reader would ignore the vote), as is an
    ensemble holding it, while the other bundles stay readable by version-2 readers."""
    from xmc.matcher.knn import knn_shortlist

    root = pipeline["root"]
    (X_train, X_test), (emb_train, emb_test), (topb_train, topb_test) = pipeline["X"], pipeline["emb"], pipeline["topb"]
    M = cluster_targets(pipeline["Y_train"], pipeline["C"])
    knn = {"k": 5, "power": 2, "head_weight": 0.2}
    vote_train = knn_shortlist(emb_train, emb_train, M, TOP_B, head=topb_train, exclude_self=True, **knn)
    vote_test = knn_shortlist(emb_test, emb_train, M, TOP_B, head=topb_test, **knn)
    assert (sparse_pattern(vote_test, "vote", False) != sparse_pattern(topb_test, "head", False)).nnz > 0  # another shortlist than the head's
    ranker = Ranker.train(ranker_features(X_train, emb_train), pipeline["Y_train"], pipeline["C"], vote_train)
    ranker.save(root / "ranker-knn.npz")
    features = ranker_features(X_test, emb_test)
    want = ranker.predict(features, vote_test, combine="l3-hinge", top_k=TOP_K)
    assert (ranker.predict(features, topb_test, combine="l3-hinge", top_k=TOP_K) != want).nnz > 0
    common = dict(vectorizer=root / "vectorizer.npz", assignment=root / "C.npz", matcher=root / "matcher",
                  label_names=root / "label_names.txt", ranker_input="tfidf+neural", combine="l3-hinge",
                  top_b=TOP_B, top_k=TOP_K, max_length=MAX_LENGTH)
    models = tmp_path / "models"
    export_bundle(models / "knn", name="knn", ranker=root / "ranker-knn.npz", knn=knn,
                  knn_memory=root / "emb.train.npy", knn_targets=root / "Y.train.npz", **common)
    export_ensemble(models / "ens", name="ens", members=[models / "knn", pipeline["bundles"] / "linear"],
                    method="rank_average", top_k=TOP_K)
    manifest = json.loads((models / "knn" / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["knn"] == knn
    assert {"knn/memory.npy", "knn/clusters.npz"} <= set(manifest["files"])
    assert json.loads((models / "ens" / "manifest.json").read_text())["format_version"] == 3
    assert json.loads((pipeline["bundles"] / "neural" / "manifest.json").read_text())["format_version"] == 2
    moved = Path(shutil.copytree(models, tmp_path / "elsewhere"))
    shutil.rmtree(models)
    assert_same_predictions(load(moved / "knn", device="cpu").predict_scores(pipeline["test"]), want)
    assert_same_predictions(load(moved / "ens", device="cpu").predict_scores(pipeline["test"]),
                            ensemble([want, pipeline["linear"]], "rank_average", TOP_K))

    # bad settings, a memory that does not fit, a vote without a transformer matcher: clear errors
    with pytest.raises(ValueError, match="knn.head_weight"):
        export_bundle(tmp_path / "bad", name="x", ranker=root / "ranker-knn.npz", knn={**knn, "head_weight": 2},
                      knn_memory=root / "emb.train.npy", knn_targets=root / "Y.train.npz", **common)
    np.save(tmp_path / "short.npy", emb_train[:-1])
    with pytest.raises(ValueError, match="one row per training document"):
        export_bundle(tmp_path / "bad", name="x", ranker=root / "ranker-knn.npz", knn=knn,
                      knn_memory=tmp_path / "short.npy", knn_targets=root / "Y.train.npz", **common)
    with pytest.raises(ValueError, match="needs a transformer matcher"):
        export_bundle(tmp_path / "bad", name="x", ranker=root / "ranker-linear.npz", knn=knn,
                      knn_memory=root / "emb.train.npy", knn_targets=root / "Y.train.npz",
                      **{**common, "matcher": root / "linear.npz", "ranker_input": "tfidf"})
    assert not (tmp_path / "bad").exists()
    for change, message in (({"knn": {**knn, "k": 0}}, "knn.k"), ({"knn": {"k": 5}}, "expected the keys")):
        broken = Path(shutil.copytree(moved / "knn", tmp_path / "broken"))
        (broken / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(BundleError, match=message):
            load(broken)
        shutil.rmtree(broken)
    # a memory of another width, its checksum updated: refused on load, not at the first prediction
    broken = Path(shutil.copytree(moved / "knn", tmp_path / "broken"))
    np.save(broken / "knn" / "memory.npy", emb_train[:, :-1])
    _rehash(broken)
    with pytest.raises(BundleError, match="do not fit each other, the matcher's"):
        load(broken)


def test_a_knn_bundle_with_the_pretrained_encoder_votes_in_both_embeddings(pipeline, tmp_path):
    """With matcher.knn.pretrained_weight the neighbours are sought in the fine-tuned and the
    pretrained embedding side by side: the bundle carries that encoder (safetensors and tokenizer
    only) and its embeddings of the training documents, and reproduces the vote; a bundle listing
    pickled encoder weights, or lacking its settings, is refused."""
    from xmc.label_repr import text_embedding
    from xmc.matcher.knn import knn_embedding, knn_shortlist

    root, encoder = pipeline["root"], pipeline["encoder"]
    (X_train, X_test), (emb_train, emb_test), (topb_train, topb_test) = pipeline["X"], pipeline["emb"], pipeline["topb"]
    pre_train, pre_test = (text_embedding(t, str(encoder), max_length=MAX_LENGTH, precision="fp32")
                           for t in (pipeline["train"], pipeline["test"]))  # as rule embed_pretrained
    np.save(root / "pre.train.npy", pre_train)
    M = cluster_targets(pipeline["Y_train"], pipeline["C"])
    knn = {"k": 5, "power": 2, "head_weight": 0.2, "pretrained_weight": 0.5}
    vote = {key: knn[key] for key in ("k", "power", "head_weight")}
    memory = knn_embedding(emb_train, pre_train, 0.5)
    vote_train = knn_shortlist(memory, memory, M, TOP_B, head=topb_train, exclude_self=True, **vote)
    vote_test = knn_shortlist(knn_embedding(emb_test, pre_test, 0.5), memory, M, TOP_B, head=topb_test, **vote)
    fine_only = knn_shortlist(emb_test, emb_train, M, TOP_B, head=topb_test, **vote)
    assert (sparse_pattern(vote_test, "vote", False) != sparse_pattern(fine_only, "fine", False)).nnz > 0
    ranker = Ranker.train(ranker_features(X_train, emb_train), pipeline["Y_train"], pipeline["C"], vote_train)
    ranker.save(root / "ranker-knn-pre.npz")
    want = ranker.predict(ranker_features(X_test, emb_test), vote_test, combine="l3-hinge", top_k=TOP_K)
    common = dict(vectorizer=root / "vectorizer.npz", assignment=root / "C.npz", matcher=root / "matcher",
                  label_names=root / "label_names.txt", ranker_input="tfidf+neural", combine="l3-hinge",
                  top_b=TOP_B, top_k=TOP_K, max_length=MAX_LENGTH, ranker=root / "ranker-knn-pre.npz", knn=knn,
                  knn_memory=root / "emb.train.npy", knn_targets=root / "Y.train.npz")
    pretrained = {"encoder": encoder, "memory": root / "pre.train.npy", "max_length": MAX_LENGTH, "precision": "fp32"}
    bundle = export_bundle(tmp_path / "models" / "knn-pre", name="knn-pre", knn_pretrained=pretrained, **common)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["knn"] == knn and manifest["knn_pretrained"] == {"max_length": MAX_LENGTH, "precision": "fp32"}
    assert {"knn/pretrained.npy", "knn/encoder/model.safetensors", "knn/encoder/config.json"} <= set(manifest["files"])
    moved = Path(shutil.copytree(bundle, tmp_path / "elsewhere"))
    assert_same_predictions(load(moved, device="cpu").predict_scores(pipeline["test"]), want)
    loaded = load(moved, device="cpu")
    assert_same_predictions(loaded.predict_scores(pipeline["test"], batch_size=3), want)
    assert_same_predictions(loaded.to("cpu").predict_scores(pipeline["test"][:5]), want[:5])  # encoder kept loaded

    # export: the encoder and its memory are required, as safetensors, one row per training document
    with pytest.raises(ValueError, match="needs knn_pretrained"):
        export_bundle(tmp_path / "bad", name="x", **common)
    pickled = Path(shutil.copytree(encoder, tmp_path / "pickled"))
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="model.safetensors"):
        export_bundle(tmp_path / "bad", name="x", knn_pretrained={**pretrained, "encoder": pickled}, **common)
    np.save(tmp_path / "short.npy", pre_train[:-1])
    with pytest.raises(ValueError, match="one row per training document"):
        export_bundle(tmp_path / "bad", name="x", knn_pretrained={**pretrained, "memory": tmp_path / "short.npy"},
                      **common)
    assert not (tmp_path / "bad").exists()
    # load: a listed pickle under knn/encoder/, missing settings, a memory of another width
    broken = Path(shutil.copytree(moved, tmp_path / "broken"))
    (broken / "knn" / "encoder" / "pytorch_model.bin").write_bytes(b"not loaded")
    _rehash(broken)
    with pytest.raises(BundleError, match="no pickled weights"):
        load(broken)
    shutil.rmtree(broken)
    broken = Path(shutil.copytree(moved, tmp_path / "broken"))
    (broken / "manifest.json").write_text(json.dumps({**manifest, "knn_pretrained": None}))
    with pytest.raises(BundleError, match="knn_pretrained"):
        load(broken)
    shutil.rmtree(broken)
    broken = Path(shutil.copytree(moved, tmp_path / "broken"))
    np.save(broken / "knn" / "pretrained.npy", pre_train[:, :-1])
    _rehash(broken)
    with pytest.raises(BundleError, match="does not fit"):
        load(broken)


def test_bundles_share_identical_files_but_never_the_workflows(pipeline, tmp_path):
    """Identical files of bundles side by side are one file on disk (hard links); no bundle file is
    a link to the workflow's own files; an in-place edit of a shared file makes every bundle holding
    it refuse to load (sha256), never predict differently; a copied bundle stands alone."""
    import os

    root, bundles = pipeline["root"], pipeline["bundles"]
    neural, linear, ens = bundles / "neural", bundles / "linear", bundles / "ens"
    member = ens / "members" / "pifa-tfidf.tiny.tfidf+neural.tfn+man.l3-hinge"
    assert os.path.samefile(neural / "matcher" / "model.safetensors", member / "matcher" / "model.safetensors")
    assert os.path.samefile(neural / "label_names.txt", linear / "label_names.txt")
    assert all(p.stat().st_nlink == 1 for p in root.iterdir() if p.is_file())  # results/ are not shared
    files = [p for p in bundles.rglob("*") if p.is_file()]
    on_disk = sum(p.stat().st_size for p in {p.stat().st_ino: p for p in files}.values())
    assert on_disk < 0.6 * sum(p.stat().st_size for p in files)  # the ensemble holds its members twice over
    labels = neural / "label_names.txt"
    before = {p: p.read_bytes() for p in (root / "label_names.txt", labels)}
    with open(labels, "r+b") as f:  # in place, as an editor that keeps the inode would
        f.write(b"EDITED")
    try:
        assert (root / "label_names.txt").read_bytes() == before[root / "label_names.txt"]
        for bundle in (neural, linear, ens):
            with pytest.raises(BundleError, match=r"label_names\.txt does not match the sha256"):
                load(bundle)
    finally:
        labels.write_bytes(before[labels])
    # Moved elsewhere, with the pipeline's own files gone, it still predicts the same.
    copy = tmp_path / "elsewhere"
    shutil.copytree(neural, copy)
    assert all(p.stat().st_nlink == 1 for p in copy.rglob("*") if p.is_file())
    hidden = root.with_name(root.name + "-hidden")
    root.rename(hidden)
    try:
        assert_same_predictions(load(copy, device="cpu").predict_scores(pipeline["test"]), pipeline["neural"])
    finally:
        hidden.rename(root)


def test_share_false_exports_copies(pipeline, tmp_path):
    models = Path(shutil.copytree(pipeline["bundles"], tmp_path / "models"))
    root = pipeline["root"]
    common = dict(vectorizer=root / "vectorizer.npz", assignment=root / "C.npz", matcher=root / "linear.npz",
                  ranker=root / "ranker-linear.npz", label_names=root / "label_names.txt", ranker_input="tfidf",
                  combine="noop", top_b=TOP_B, top_k=TOP_K)
    export_bundle(models / "copied", name="copied", share=False, **common)
    assert all(p.stat().st_nlink == 1 for p in (models / "copied").rglob("*") if p.is_file())
    export_bundle(models / "shared", name="shared", **common)
    assert (models / "shared" / "matcher.npz").stat().st_nlink == 2  # a link to the first identical sibling file
    assert_same_predictions(load(models / "shared").predict_scores(pipeline["test"]),
                            load(models / "copied").predict_scores(pipeline["test"]))


def test_bundle_errors(pipeline, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load(tmp_path / "no-such-bundle")
    broken = tmp_path / "broken"
    shutil.copytree(pipeline["bundles"] / "linear", broken)
    (broken / "ranker" / "model.npz").unlink()
    with pytest.raises(BundleError, match="incomplete bundle .*ranker/model.npz"):
        load(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load(broken)
    newer = tmp_path / "newer"
    shutil.copytree(pipeline["bundles"] / "linear", newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        load(newer)
    bundle = load(pipeline["bundles"] / "linear")
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        bundle.predict(["apple banana", "  "])
    with pytest.raises(ValueError, match="single string"):
        bundle.predict("apple banana")
    with pytest.raises(FileNotFoundError, match="no-such-ranker"):
        export_bundle(tmp_path / "bad", name="x", vectorizer=pipeline["root"] / "vectorizer.npz",
                      assignment=pipeline["root"] / "C.npz", matcher=pipeline["root"] / "linear.npz",
                      ranker=tmp_path / "no-such-ranker.npz", label_names=pipeline["root"] / "label_names.txt",
                      ranker_input="tfidf", combine="noop", top_b=2, top_k=5)
    assert not (tmp_path / "bad").exists()


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "xmc", "predict", *map(str, args)], input=stdin,
                          capture_output=True, text=True, env=ENV)


def test_predict_command(pipeline, tmp_path):
    bundle, texts = pipeline["bundles"] / "linear", pipeline["test"][:4]
    want = load(bundle).predict(texts, top_k=3)
    out = _cli(bundle, "--top-k", "3", stdin="\n".join(texts) + "\n")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line)["labels"] for line in out.stdout.splitlines()]
    # each label: its id (name), its text, its score
    assert [[label["id"] for label in row] for row in rows] == [[name for name, _ in row] for row in want]
    assert all(label["text"] == f"text of {label['id']}" for row in rows for label in row)
    np.testing.assert_allclose([[label["score"] for label in row] for row in rows],
                               [[s for _, s in row] for row in want], rtol=1e-5)
    out = _cli(bundle, "--top-k", "3", "--ids-only", stdin="\n".join(texts) + "\n")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["labels"] for r in rows] == [[name for name, _ in row] for row in want]
    np.testing.assert_allclose([r["scores"] for r in rows], [[s for _, s in row] for row in want], rtol=1e-6)

    source, target = tmp_path / "texts.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(texts) + "\n\n")  # one blank line at the end, as editors write
    out = _cli(pipeline["bundles"] / "ens", "--input", source, "--output", target, "--batch-size", "2",
               "--device", "cpu")
    assert out.returncode == 0, out.stderr
    want = load(pipeline["bundles"] / "ens").predict(texts)
    assert load(pipeline["bundles"] / "ens").label_texts == [f"text of {n}" for n in pipeline["names"]]
    assert [[label["id"] for label in json.loads(line)["labels"]] for line in target.read_text().splitlines()] == [
        [name for name, _ in row] for row in want]


def test_predict_command_errors(pipeline, tmp_path, capsys):
    """In-process (the same main() as `python -m xmc`): an error is one line and exit status 2."""
    source, target = tmp_path / "texts.txt", tmp_path / "never.jsonl"
    source.write_text("apple banana\n\nmusic sports\n")
    assert main(["predict", str(pipeline["bundles"] / "linear"), "-i", str(source), "-o", str(target)]) == 2
    assert f"{source}, line 2: empty line" in capsys.readouterr().err
    assert not target.exists() and not list(tmp_path.glob(".*"))
    for data, message in ((b"apple banana\nmusic \xf0\x28 sports\n", f"{source}, line 2: not UTF-8 (byte 0xf0)"),
                          (b"apple\nbanana\n\x00\x00\x00\n", f"{source}, line 3: control character '\\x00'"),
                          (b"apple\n\n\n", f"{source}, line 2: empty line")):
        source.write_bytes(data)
        assert main(["predict", str(pipeline["bundles"] / "linear"), "-i", str(source), "-o", str(target)]) == 2
        assert message in capsys.readouterr().err
    source.write_text("apple banana\n")
    assert main(["predict", str(tmp_path / "no-such-bundle"), "-i", str(source)]) == 2
    assert "no-such-bundle does not exist" in capsys.readouterr().err
    # the folder of the bundles instead of one of them
    assert main(["predict", str(pipeline["bundles"]), "-i", str(source)]) == 2
    err = capsys.readouterr().err
    assert "is a folder of 3 bundles, not a bundle" in err and "ens, linear, neural" in err
    with pytest.raises(SystemExit):
        main(["predict", str(pipeline["bundles"] / "linear"), "--top-k", "0"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_a_damaged_bundle_file_is_named(pipeline, tmp_path, capsys):
    broken = Path(shutil.copytree(pipeline["bundles"] / "linear", tmp_path / "broken"))
    data = (broken / "matcher.npz").read_bytes()
    (broken / "matcher.npz").write_bytes(data[:len(data) // 2])  # truncated
    with pytest.raises(BundleError, match=r"bundle file .*matcher\.npz does not match the sha256"):
        load(broken)
    source = tmp_path / "texts.txt"
    source.write_text("apple banana\n")
    assert main(["predict", str(broken), "-i", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matcher.npz does not match the sha256" in err
    # Damaged with its checksum updated too: the loader's error, named.
    _rehash(broken)
    with pytest.raises(BundleError, match=r"bundle file .*matcher\.npz is damaged \(BadZipFile"):
        load(broken)


def test_cached_weights_give_the_same_scores_and_follow_new_weights(pipeline):
    """The linear matcher and the ranker keep their transposed weights between calls (latency);
    the scores are those of the uncached formula, and new weights are picked up."""
    root = pipeline["root"]
    X = transform_tfidf(load_vectorizer(root / "vectorizer.npz"), pipeline["test"])
    matcher = LinearMatcher.load(root / "linear.npz")
    for _ in range(2):
        want = top_b_dense(decision_function(X, matcher.W_), TOP_B)
        assert (matcher.predict(X, top_b=TOP_B) != want).nnz == 0
        matcher.W_ = sp.csr_matrix(matcher.W_ * -2.0)
    ranker = Ranker.load(root / "ranker-linear.npz")
    M = LinearMatcher.load(root / "linear.npz").predict(X)
    first = ranker.predict(X, M, top_k=TOP_K)
    ranker.W_ = sp.csr_matrix(ranker.W_ * 2.0)
    np.testing.assert_allclose(ranker.predict(X, M, top_k=TOP_K).toarray(), 2.0 * first.toarray(), rtol=1e-6)


# ---- untrusted bundles ------------------------------------------------------------------------
def _rehash(folder: Path) -> None:
    """Rewrite a bundle's manifest with the sha256 of the files as they are now, as someone
    crafting a bundle would."""
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    manifest["files"] = files
    manifest["sha256"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in files}
    (folder / "manifest.json").write_text(json.dumps(manifest))


class _Payload:
    """Unpickled, it creates the file ``marker``: proof that loading ran the pickle's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["vectorizer.pkl", "vectorizer.npz"])
def test_a_malicious_pickle_in_a_bundle_never_runs(pipeline, tmp_path, where):
    """A crafted pickle, as the old format's vectorizer or in place of the new one (with the
    manifest's sha256 updated to match), is refused and its payload never runs."""
    marker = tmp_path / "pwned"
    bundle = Path(shutil.copytree(pipeline["bundles"] / "linear", tmp_path / "evil"))
    (bundle / "tfidf" / where).write_bytes(pickle.dumps(_Payload(marker)))
    if where == "vectorizer.pkl":
        (bundle / "tfidf" / "vectorizer.npz").unlink()
        manifest = json.loads((bundle / "manifest.json").read_text())
        (bundle / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
        want = r"older xmc \(format version 1: its TF-IDF vectorizer is a pickle.*export it again"
    else:
        want = r"vectorizer\.npz is damaged .*not an \.npz of plain arrays \(a pickle"
    _rehash(bundle)
    with pytest.raises(BundleError, match=want):
        load(bundle)
    source = tmp_path / "texts.txt"
    source.write_text("apple banana\n")
    assert main(["predict", str(bundle), "-i", str(source)]) == 2
    assert not marker.exists()


def test_an_ensemble_member_outside_the_ensemble_is_refused(pipeline, tmp_path):
    ens = Path(shutil.copytree(pipeline["bundles"] / "ens", tmp_path / "bundles" / "ens"))
    shutil.copytree(pipeline["bundles"] / "linear", tmp_path / "linear")
    manifest = json.loads((ens / "manifest.json").read_text())
    for bad in ("../../linear", "/abs/linear", "..", "a/b"):
        (ens / "manifest.json").write_text(json.dumps({**manifest, "members": [bad]}))
        with pytest.raises(BundleError, match=r"member name .* is not a plain folder name"):
            load(ens)


def test_a_tampered_or_unlisted_file_is_refused(pipeline, tmp_path):
    bundle = Path(shutil.copytree(pipeline["bundles"] / "ens", tmp_path / "ens"))
    member = bundle / "members" / "pifa-tfidf.linear.tfidf.tfn+man.l3-hinge"
    label_names = member / "label_names.txt"
    label_names.write_text(label_names.read_text().replace("label 0", "label X"))
    with pytest.raises(BundleError, match=r"label_names\.txt does not match the sha256 in manifest\.json"):
        load(bundle)
    shutil.copy(pipeline["bundles"] / "ens" / "members" / member.name / "label_names.txt", label_names)
    (member / "extra.py").write_text("print('hi')\n")
    with pytest.raises(BundleError, match=r"holds files its manifest\.json does not list: .*extra\.py"):
        load(bundle)


def test_an_old_bundle_asks_to_be_exported_again(pipeline, tmp_path):
    bundle = Path(shutil.copytree(pipeline["bundles"] / "linear", tmp_path / "old"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["sha256"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="lacks the sha256 of its files; export it again"):
        load(bundle)


def test_a_vectorizer_pickle_of_ones_own_run_is_exported_as_data(pipeline, tmp_path):
    """export_bundle still takes a vectorizer.pkl of the caller's own (older) run; the bundle holds
    it as data, and predicts as the bundle exported from the .npz."""
    root = pipeline["root"]
    with open(tmp_path / "vectorizer.pkl", "wb") as f:
        pickle.dump(load_vectorizer(root / "vectorizer.npz"), f)
    export_bundle(tmp_path / "b", name="b", vectorizer=tmp_path / "vectorizer.pkl", assignment=root / "C.npz",
                  matcher=root / "linear.npz", ranker=root / "ranker-linear.npz",
                  label_names=root / "label_names.txt", ranker_input="tfidf", combine="l3-hinge",
                  top_b=TOP_B, top_k=TOP_K)
    assert not list((tmp_path / "b").rglob("*.pkl"))
    assert_same_predictions(load(tmp_path / "b").predict_scores(pipeline["test"]), pipeline["linear"])


def test_predict_file_device_and_pipe_errors_are_one_line(pipeline, tmp_path, capsys):
    import torch

    source = tmp_path / "texts.txt"
    source.write_text("apple banana\n")
    bundle = str(pipeline["bundles"] / "linear")
    cases = [(["-o", str(tmp_path)], f"--output {tmp_path} is a folder; name a file"),
             (["--device", "banana"], "--device 'banana': expected cpu, cuda, cuda:N or auto")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda: no CUDA device is available"))
    else:
        cases.append((["--device", f"cuda:{torch.cuda.device_count()}"], "CUDA device(s)"))
    for extra, message in cases:
        assert main(["predict", bundle, "-i", str(source), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "damaged" not in err, err
    assert not list(tmp_path.glob(".*"))


def test_predict_into_a_closed_pipe_stops_quietly(pipeline):
    """`xmc predict ... | head -1`: the reader goes away; no traceback, exit status 0."""
    texts = "\n".join(pipeline["test"] * 200) + "\n"  # 3,200 lines: far more than a pipe buffer
    proc = subprocess.Popen([sys.executable, "-m", "xmc", "predict", str(pipeline["bundles"] / "linear")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    proc.stdin.write(texts.encode())
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["labels"]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
