"""The whole workflow, end to end through Snakemake, on a tiny slice of the embedded sample with a
tiny random BERT; then the dry-run plans that prove incremental reruns."""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from xmc.data.download import fetch
from xmc.bundle import load
from xmc.data.readers import read_eurlex57k
from xmc.io import load_csr, read_lines
from xmc.vectorizer_store import load_vectorizer

pytestmark = pytest.mark.slow  # Snakemake runs and plans: pytest -m 'not slow' skips them

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "eurlex57k-sample" / "eurlex57k-sample.tar.gz"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=workdir)


def planned_jobs(workdir: Path, configfile: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (Snakemake's 'Job stats' table)."""
    out = snakemake(workdir, configfile, "-n")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    stats = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)
            if m.group(1) != "total"}


def config_variant(root: Path, config: dict, name: str, edit) -> Path:
    """Write a copy of ``config`` changed in place by ``edit`` to ``root/name.yaml``."""
    changed = copy.deepcopy(config)
    edit(changed)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changed))
    return path


def write_attentionxml(dataset, folder: Path, n_train: int, n_test: int) -> None:
    """A slice of the sample in the AttentionXML text form (so the workflow test covers that reader)."""
    folder.mkdir(parents=True)
    for split, texts, Y, n in (("train", dataset.train_texts, dataset.Y_train, n_train),
                               ("test", dataset.test_texts, dataset.Y_test, n_test)):
        (folder / f"{split}_texts.txt").write_text("\n".join(texts[:n]) + "\n", encoding="utf-8")
        labels = [" ".join(dataset.label_names[j] for j in Y[i].indices) for i in range(n)]
        (folder / f"{split}_labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("workflow")
    raw = root / "sample"
    fetch(str(SAMPLE), raw)
    write_attentionxml(read_eurlex57k(raw), root / "tiny-data", n_train=240, n_test=80)
    encoder = tiny_encoder("bert")
    config = {
        "seed": 0,
        "datasets": {"tiny": {"source": str(root / "tiny-data"), "format": "attentionxml"}},
        "encoders": {"tiny-bert": {"model": str(encoder), "max_length": 32}},
        "matchers": ["tiny-bert"],
        "indexers": ["pifa-tfidf", "text-emb", "pifa-neural"],
        "tfidf": {"min_df": 1, "max_features": 20000},
        "indexing": {"n_clusters": 8},
        "text_emb": {"encoder": "tiny-bert", "max_length": 16},
        "matcher": {"max_steps": 12, "warmup_steps": 2, "batch_size": 8, "learning_rate": 1e-3, "top_b": 3},
        "ranker": {"inputs": ["tfidf", "tfidf+neural"], "negatives": ["tfn+man"], "combine": ["noop", "l3-hinge"]},
        "ensembles": {"ens": {"method": "rank_average", "models": ["all"]},
                      # rule and members picked on the validation split (24 of the 240 training texts)
                      "pick": {"method": "auto", "models": [
                          "pifa-tfidf.tiny-bert.tfidf+neural.tfn+man.noop", "text-emb.tiny-bert.tfidf.tfn+man.l3-hinge",
                          "pifa-tfidf.linear.tfidf.tfn+man.noop"]}},
        # a linear model on words and character n-grams (phi_char, rule tfidf_char) beside phi_tfidf's
        "linear_baseline": {"inputs": ["tfidf", "tfidf+char"]},
        "tfidf_char": {"min_df": 1, "max_features": 20000},
        # the related systems as extra rows
        "xr_transformer": {"encoders": ["tiny-bert"], "levels": [2, 8], "top_k": 1},
        "aplc": {"encoders": ["tiny-bert"], "hidden_size": 16, "max_steps": 20, "aplc_learning_rate": 0.1,
                 "hidden_learning_rate": 0.01},
        "peers": {"systems": ["omikuji"]},  # a peer as a row of the same tables (in the test extra)
    }
    configfile = root / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    work = root / "run"
    work.mkdir()
    out = snakemake(work, configfile)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-8000:]
    return root, work, config, configfile


def test_end_to_end_results_table(tiny_run):
    _, work, config, _ = tiny_run
    table = pd.read_csv(work / "results" / "tables" / "results.csv", keep_default_na=False)
    expected = {f"{ix}.tiny-bert.{inp}.tfn+man.{comb}"
                for ix in config["indexers"] for inp in ("tfidf", "tfidf+neural") for comb in ("noop", "l3-hinge")}
    expected |= {"pifa-tfidf.linear.tfidf.tfn+man.noop", "pifa-tfidf.linear.tfidf+char.tfn+man.noop", "ens",
                 "pick", "aplc-tiny-bert", "omikuji"}
    expected |= {f"pifa-tfidf.xr-transformer-tiny-bert.{inp}.tfn+man.{comb}"
                 for inp in ("tfidf", "tfidf+neural") for comb in ("noop", "l3-hinge")}
    assert set(table["model"]) == expected
    # every model and ensemble scored on the validation and the test split, test first
    assert sorted(table["split"].value_counts().items()) == [("test", len(expected)), ("valid", len(expected))]
    assert list(table["split"][:len(expected)]) == ["test"] * len(expected)
    assert list(table.columns) == ["dataset", "split", "model", "indexer", "matcher", "ranker_input", "negatives",
                                   "combine", "ensemble", "P@1", "P@3", "P@5", "R@1", "R@3", "R@5",
                                   "shortlist_recall", "train_s", "predict_s", "peak_mem_mib"]
    assert set(table.loc[table.model == "ens", "ensemble"]) == {"rank_average"}
    # the auto ensemble: picked on validation, never below its best candidate there, and named
    pick = json.loads((work / "results" / "tiny" / "selection" / "pick.json").read_text())
    valid = table[table.split == "valid"].set_index("model")
    assert valid.loc["pick", "P@1"] == pytest.approx(pick["validation"]["P@1"], abs=0.01)
    assert valid.loc["pick", "P@1"] >= valid.loc[config["ensembles"]["pick"]["models"], "P@1"].max()
    assert set(table.loc[table.model == "pick", "ensemble"]) == {
        f"auto: {pick['method']} of {len(pick['members'])}"}
    picked = valid.loc[pick["members"], "indexer"]  # the row's columns are those of the members kept
    assert set(table.loc[table.model == "pick", "indexer"]) == {"+".join(dict.fromkeys(v for v in picked if v))}
    # the held-out validation split: 10% of the training texts, none of them trains
    prepared = work / "results" / "tiny" / "prepared"
    train, valid_texts = read_lines(prepared / "train.txt"), read_lines(prepared / "valid.txt")
    assert (len(train), len(valid_texts)) == (216, 24) and not set(train) & set(valid_texts)
    # the peer's own costs in its row (blank in ours), its jobs in the timing table, its Table 3 row
    peer = table[table.split == "test"].set_index("model").loc["omikuji"]
    assert float(peer["train_s"]) > 0 and float(peer["predict_s"]) > 0 and float(peer["peak_mem_mib"]) > 10
    assert (table.loc[table.model != "omikuji", ["train_s", "predict_s"]] == "").all().all()
    steps = pd.read_csv(work / "results" / "tables" / "timing_steps.csv")
    assert {"train_peer", "predict_peer"} <= set(steps["step"])
    table3 = pd.read_csv(work / "results" / "tables" / "table3.csv").set_index("method")
    assert table3.loc["Parabel", "model"] == "omikuji"
    assert table3.loc["Parabel", "tiny P@1"] == peer["P@1"]  # the test split's
    for _, row in table.iterrows():
        assert 0 <= row["P@5"] <= row["P@1"] * 5 and 0 < row["P@1"] <= 100
        assert row["R@1"] <= row["R@3"] <= row["R@5"] <= 100
    assert (work / "results" / "tables" / "results.md").read_text().count("\n") == len(table) + 2
    # each model's shortlist recall: the share of the true labels in its matcher's top-b clusters
    from xmc.metrics import shortlist_recall

    blank = table.model.isin(["ens", "pick", "aplc-tiny-bert", "omikuji"])
    assert (table.loc[blank, "shortlist_recall"] == "").all()
    assert all(0 < float(v) <= 100 for v in table.loc[~blank, "shortlist_recall"])
    tiny = work / "results" / "tiny"
    for split in ("valid", "test"):
        want = shortlist_recall(load_csr(tiny / "matcher" / "text-emb" / "tiny-bert" / f"topb.{split}.npz"),
                                load_csr(tiny / "prepared" / f"Y.{split}.npz"),
                                load_csr(tiny / "indexer" / "text-emb" / "C.npz"))["label_recall"]
        got = table[(table.split == split) & (table.model == "text-emb.tiny-bert.tfidf.tfn+man.noop")]
        assert float(got["shortlist_recall"].item()) == pytest.approx(want, abs=0.01)
    # phi_char: character 3- to 5-grams, rows on the unit sphere; its model read words and characters
    from xmc.ranker import Ranker

    char_vocab = load_vectorizer(work / "results" / "tiny" / "tfidf-char" / "vectorizer.npz").vocabulary_
    assert char_vocab and {len(term) for term in char_vocab} <= {3, 4, 5}
    X_char = load_csr(work / "results" / "tiny" / "tfidf-char" / "X.train.npz")
    assert X_char.shape[1] == len(char_vocab)
    assert np.allclose(np.sqrt(X_char.multiply(X_char).sum(axis=1)), 1, atol=1e-5)
    W = Ranker.load(work / "results" / "tiny" / "ranker" / "pifa-tfidf" / "linear" / "tfidf+char.tfn+man" / "model.npz").W_
    X_word = load_csr(work / "results" / "tiny" / "tfidf" / "X.train.npz")
    assert W.shape[1] == X_word.shape[1] + X_char.shape[1] + 1  # [phi_tfidf ; phi_char], bias
    # Every job logged, and nothing half-written was left behind.
    logs = list((work / "results" / "logs").rglob("*.log"))
    assert len(logs) >= 20
    assert not list((work / "results").rglob(".*.tmp*"))


@pytest.mark.parametrize("model", ["pifa-neural.tiny-bert.tfidf+neural.tfn+man.l3-hinge",
                                   "pifa-tfidf.linear.tfidf.tfn+man.noop", "ens", "pick"])
def test_exported_bundle_reproduces_the_workflow_predictions(tiny_run, model):
    """xmc.load(results/tiny/models/{model}) on the test texts gives predictions/test/{model}.npz."""
    _, work, _, _ = tiny_run
    results = work / "results" / "tiny"
    bundle = load(results / "models" / model, device="cpu")
    assert bundle.manifest["metrics"]["model"] == model
    got = bundle.predict_scores(read_lines(results / "prepared" / "test.txt"))
    want = sp.load_npz(results / "predictions" / "test" / f"{model}.npz").tocsr()
    got.sort_indices()
    want.sort_indices()
    assert want.nnz > 0 and got.shape == want.shape
    assert (got.indptr == want.indptr).all() and (got.indices == want.indices).all()
    assert abs(got.data - want.data).max() <= 1e-5 * max(1.0, abs(want.data).max())


def test_editing_an_exported_bundle_never_changes_results_and_is_refused_on_load(tiny_run):
    """Bundles share identical files with each other (hard links), never with results/: an in-place
    edit of a bundle file leaves the workflow's data alone, and every bundle holding the file refuses
    to load it (sha256) instead of predicting differently."""
    from xmc.bundle import BundleError

    _, work, _, _ = tiny_run
    results = work / "results" / "tiny"
    models = sorted(p for p in (results / "models").iterdir() if p.is_dir())
    assert len(models) >= 3
    in_bundles = {f.stat().st_ino for m in models for f in m.rglob("*") if f.is_file()}
    outside = [f for f in results.rglob("*") if f.is_file() and (results / "models") not in f.parents]
    assert not in_bundles & {f.stat().st_ino for f in outside}  # no bundle file is a file of results/
    shared = [f for m in models for f in m.rglob("*") if f.is_file() and f.stat().st_nlink > 1]
    assert shared  # the ensemble's members and the models' common encoders are stored once
    target = models[0] / "label_names.txt"
    saved = target.read_bytes()
    prepared = (results / "prepared" / "label_names.txt").read_bytes()
    holders = [m for m in models if (m / "label_names.txt").samefile(target)]
    with open(target, "r+b") as f:  # in place, as an editor that keeps the inode would
        f.write(b"EDITED")
    try:
        assert (results / "prepared" / "label_names.txt").read_bytes() == prepared
        for m in holders:
            with pytest.raises(BundleError, match="does not match the sha256"):
                load(m, device="cpu")
    finally:
        target.write_bytes(saved)


def test_xr_rankers_predict_inside_the_linear_shortlist(tiny_run):
    """XR-Transformer's rows (shortlist: linear, the default) score only labels of the clusters that
    the linear tree over [TF-IDF ; XR embedding] keeps; with shortlist: neural they go back to the
    heads' own top-b (only the XR rankers onward rerun)."""
    root, work, config, _ = tiny_run
    results = work / "results" / "tiny"
    xr = results / "matcher" / "pifa-tfidf" / "xr-transformer-tiny-bert"
    shortlist = sp.load_npz(xr / "shortlist" / "topb.test.npz").tocsr()
    top_b = config["matcher"]["top_b"]
    assert shortlist.shape[1] == config["indexing"]["n_clusters"]
    assert (np.diff(shortlist.indptr) == top_b).all()
    # the linear tree and the heads disagree somewhere, or the test could not tell them apart
    heads = sp.load_npz(xr / "topb.test.npz").tocsr()
    assert (shortlist.astype(bool) != heads.astype(bool)).nnz > 0
    C = sp.load_npz(results / "indexer" / "pifa-tfidf" / "C.npz").tocsr()
    pred = sp.load_npz(results / "predictions" / "test" / "pifa-tfidf.xr-transformer-tiny-bert.tfidf+neural.tfn+man.noop.npz")
    allowed = (shortlist.astype(bool) @ C.T.astype(bool)).toarray()  # labels of the kept clusters
    assert pred.nnz > 0 and not (pred.toarray().astype(bool) & ~allowed).any()
    neural = config_variant(root, config, "xr-shortlist-neural",
                            lambda c: c["xr_transformer"].update(shortlist="neural"))
    plan = planned_jobs(work, neural)
    assert plan["train_ranker"] == 2 and "train_xr_shortlist" not in plan and "train_xr_matcher" not in plan


def test_same_seed_gives_identical_clusters_and_metrics(tiny_run):
    """A second run from scratch in another folder reproduces the first one exactly (CPU)."""
    root, work, _, configfile = tiny_run
    again = root / "run-again"
    again.mkdir()
    out = snakemake(again, configfile)
    assert out.returncode == 0, out.stderr[-4000:]
    for indexer in ("pifa-tfidf", "text-emb", "pifa-neural"):
        first = sp.load_npz(work / f"results/tiny/indexer/{indexer}/C.npz")
        second = sp.load_npz(again / f"results/tiny/indexer/{indexer}/C.npz")
        assert (first != second).nnz == 0, indexer
    # Ours to the last digit; the peer's row is omikuji's (its threaded training is not deterministic)
    # and the cost columns are times.
    first, second = (pd.read_csv(w / "results/tables/results.csv", keep_default_na=False) for w in (work, again))
    ours = lambda t: t[t.model != "omikuji"].drop(columns=["train_s", "predict_s", "peak_mem_mib"])
    assert ours(first).to_csv() == ours(second).to_csv()
    assert list(first.model) == list(second.model)


def test_nothing_to_do_after_a_run(tiny_run):
    _, work, _, configfile = tiny_run
    assert planned_jobs(work, configfile) == {}


def test_ranker_change_reruns_only_rankers_onward(tiny_run):
    root, work, config, _ = tiny_run
    configfile = config_variant(root, config, "ranker-changed", lambda c: c["ranker"].update(C=0.5))
    plan = planned_jobs(work, configfile)
    assert set(plan) == {"train_ranker", "predict_ranker", "select_ensemble", "ensemble", "evaluate", "tables",
                         "figure_precision_at_k", "timing", "export", "all"}
    # 3 indexers x 2 inputs, XR-Transformer's 2 inputs, plus the two linear models' rankers (their
    # linear matchers have their own C and stay)
    assert plan["train_ranker"] == 10


def test_more_clusters_than_labels_fails_at_start_up(tiny_run):
    root, work, config, _ = tiny_run
    def too_many(c):  # XR's explicit levels end at the fixture's K: let them follow the new K
        c["indexing"].update(n_clusters=4096)
        c["xr_transformer"].update(levels=None)

    configfile = config_variant(root, config, "too-many-clusters", too_many)
    out = snakemake(work, configfile, "-n")
    assert out.returncode != 0
    assert "indexing.n_clusters: K = 4096 is larger than the number of labels" in out.stdout + out.stderr


def test_encoder_change_reruns_its_matchers_onward(tiny_run):
    root, work, config, _ = tiny_run
    other = root / "tiny-bert-copy"
    shutil.copytree(config["encoders"]["tiny-bert"]["model"], other)
    configfile = config_variant(root, config, "encoder-changed",
                                lambda c: c["encoders"]["tiny-bert"].update(model=str(other)))
    plan = planned_jobs(work, configfile)
    assert plan["train_matcher"] == 3 and plan["predict_matcher"] == 3
    assert {"download", "prepare", "tfidf", "label_repr_pifa_tfidf", "train_linear_matcher",
            "predict_linear_matcher"}.isdisjoint(plan)


def test_a_knn_shortlist_retrains_nothing_and_its_rankers_read_the_nearest_documents_vote(tiny_run, tmp_path):
    """matcher.knn is read by rule knn_shortlist alone: no matcher is retrained or repredicted (so the
    embeddings pifa-neural reads stay). Run in a copy, its shortlists are the vote of the saved
    embeddings' nearest training documents (leave-one-out on train) mixed with the head's shortlist,
    and the rankers and the shortlist-recall column read them."""
    from xmc.io import load_csr
    from xmc.matcher.knn import knn_embedding, knn_shortlist
    from xmc.metrics import shortlist_recall

    root, work, config, _ = tiny_run
    # the neighbours sought in the fine-tuned and the pretrained embedding (phi_pre) half and half
    knn = {"k": 5, "power": 2, "head_weight": 0.2, "pretrained_weight": 0.5}
    configfile = config_variant(root, config, "knn", lambda c: c["matcher"].update(knn=knn))
    plan = planned_jobs(work, configfile)
    assert plan["knn_shortlist"] == 3 and plan["train_ranker"] >= 6
    assert not {"train_matcher", "predict_matcher", "train_xr_matcher", "predict_xr_matcher", "cluster",
                "label_repr_pifa_neural", "train_linear_matcher"} & set(plan)

    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    out = snakemake(copy, configfile)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    head = work / "results/tiny/matcher/pifa-tfidf/tiny-bert"
    memory_clusters = load_csr(work / "results/tiny/prepared/Y.train.npz") @ load_csr(
        work / "results/tiny/indexer/pifa-tfidf/C.npz")
    pretrained = copy / "results/tiny/pretrained/tiny-bert"

    def joint(split):
        return knn_embedding(np.load(head / f"emb.{split}.npy"), np.load(pretrained / f"emb.{split}.npy"), 0.5)

    vote = {key: knn[key] for key in ("k", "power", "head_weight")}
    for split in ("train", "valid", "test"):
        want = knn_shortlist(joint(split), joint("train"), memory_clusters, 3,
                             head=load_csr(head / f"topb.{split}.npz"), exclude_self=split == "train", **vote)
        got = load_csr(copy / "results/tiny/matcher/pifa-tfidf/tiny-bert/knn" / f"topb.{split}.npz")
        assert (got != want).nnz == 0 and np.diff(got.indptr).tolist() == [3] * got.shape[0], split
    assert (want != load_csr(head / "topb.test.npz")).nnz > 0  # not the head's own shortlist
    log = (copy / "results/logs/tiny/knn_shortlist.pifa-tfidf.tiny-bert.log").read_text()
    assert "votes of the 5 nearest training documents" in log and "leave-one-out" in log
    assert "pretrained encoder's share of the similarity 0.5" in log
    # the results table's recall column reads the vote's shortlist
    model = "pifa-tfidf.tiny-bert.tfidf+neural.tfn+man.noop"
    C = load_csr(work / "results/tiny/indexer/pifa-tfidf/C.npz")
    Y = load_csr(work / "results/tiny/prepared/Y.test.npz")
    table = pd.read_csv(copy / "results/tables/results.csv")
    row = table[(table.model == model) & (table.split == "test")]
    assert float(row.shortlist_recall.item()) == pytest.approx(shortlist_recall(want, Y, C)["label_recall"], abs=0.01)
    assert row.matcher.item() == "tiny-bert (knn)"  # not the paper's head, and the table says so
    # its bundle votes with the training embeddings it carries, as the workflow did
    bundle = load(copy / "results/tiny/models" / model, device="cpu")
    assert bundle.manifest["knn"] == knn and "knn/encoder/model.safetensors" in bundle.manifest["files"]
    got = bundle.predict_scores(read_lines(copy / "results/tiny/prepared/test.txt"))
    want = sp.load_npz(copy / "results/tiny/predictions/test" / f"{model}.npz").tocsr()
    assert want.nnz > 0 and (abs(got - want) > 1e-5 * max(1.0, abs(want.data).max())).nnz == 0


@pytest.mark.parametrize("path, value, message", [
    (("tfidf", "ngram_rnage"), [1, 2], "ngram_rnage"),
    (("matcher", "learning_rate"), -1.0, "learning_rate"),
    (("ensembles", "x-transformer", "models"), ["no-such-model"], "no-such-model"),
    (("encoders", "minilm", "model"), "./no/such/folder", "does not exist"),
    (("indexing", "n_clusters"), 4, "top_b = 10"),
])
def test_invalid_config_fails_at_start_up(tmp_path, path, value, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, configfile, "-n")
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def _reasons(out: str) -> dict[str, set[str]]:
    """Rule -> the reasons Snakemake gives for its planned jobs (dry run)."""
    from test_profiles import planned_jobs

    reasons = {}
    for job in planned_jobs(out):
        if job.reason:
            reasons.setdefault(job.rule, set()).add(job.reason)
    return reasons


def test_editing_a_module_reruns_exactly_the_rules_that_reach_it(tiny_run, tmp_path):
    """In a copy of the code, a docstring and a comment edit in xmc/io.py replan nothing (digests count
    code, not comments); then change one token of xmc/metrics.py, which train_linear_matcher reaches
    only through xmc.matcher.linear and xmc.ranker: the jobs Snakemake plans for a change of params are jobs of the
    rules whose scripts reach it (xmc.code_digest), every such rule is planned, and the other planned
    jobs rerun only because their inputs will change. (Snakemake checks a job's params only when its
    inputs are unchanged, so a reaching rule downstream of another shows the input reason.)"""
    from test_code_digest import _rule_scripts
    from xmc.code_digest import module_files

    root, work, _, configfile = tiny_run
    code = tmp_path / "code"
    code.mkdir()
    for name in ("Snakefile", "rules", "workflow_scripts", "xmc", "config", "report", "environment.yml"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, code / name)
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)

    def plan() -> str:
        cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(code / "Snakefile"), "--directory", str(copy),
               "--configfile", str(configfile), "--cores", "2"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(code)}, cwd=copy)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout + out.stderr

    assert "Nothing to be done" in plan()  # the copy of the code plans as the original
    io = code / "xmc" / "io.py"  # every workflow script reaches it
    text = io.read_text()
    io.write_text(text.replace('"""Atomic file outputs', '"""Atomic (all or nothing) file outputs', 1)
                  .replace("\nimport json\n", "\nimport json  # the run log and the manifests\n", 1))
    assert io.read_text() != text and "Nothing to be done" in plan()
    metrics = code / "xmc" / "metrics.py"
    metrics.write_text(metrics.read_text().replace("dtype=np.int64", "dtype=np.int32", 1))  # one token
    reasons = _reasons(plan())
    params = {rule for rule, why in reasons.items() if any("Params have changed" in r for r in why)}
    reaching = {rule for rule, (script, _, _) in _rule_scripts().items()
                if script and metrics in module_files(code / "workflow_scripts" / script, code / "xmc")}
    assert params and params <= reaching
    assert reaching & {"train_ranker", "predict_ranker", "evaluate", "train_linear_matcher"} <= set(reasons)
    for rule in set(reasons) - reaching:  # downstream of a reaching rule, not changed itself
        assert all(r.startswith("Input files updated by another job") for r in reasons[rule]), (rule, reasons[rule])
    assert "train_linear_matcher" in params  # reached only transitively, and upstream of the rankers
    assert not {"prepare", "tfidf", "tokenize", "label_repr_pifa_tfidf"} & set(reasons)


def test_rewriting_a_file_inside_a_source_folder_reruns_the_download(tmp_path):
    """A local folder source: a file rewritten in place (the folder's own timestamp unchanged)
    reruns download and prepare; before, Snakemake saw only the folder and found nothing to do."""
    source = tmp_path / "ds"
    source.mkdir()
    for split in ("train", "test"):
        (source / f"{split}_texts.txt").write_text("a text about cats\nanother about dogs\n")
        (source / f"{split}_labels.txt").write_text("cat\ndog\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = {"local": {"source": str(source), "format": "attentionxml"}}
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    work = tmp_path / "run"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "snakemake", "results/local/raw", "-s", str(REPO / "Snakefile"),
                           "--directory", str(work), "--configfile", str(configfile), "--cores", "1"],
                          capture_output=True, text=True, env=ENV, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    target = "results/local/prepared/train.txt"

    def plan():
        out = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-s", str(REPO / "Snakefile"),
                              "--directory", str(work), "--configfile", str(configfile), "--cores", "1"],
                             capture_output=True, text=True, env=ENV, cwd=work)
        assert out.returncode == 0, out.stderr[-3000:]
        return _reasons(out.stdout + out.stderr)

    assert set(plan()) == {"prepare"}  # the download is up to date
    stamp = source.stat().st_mtime_ns
    with open(source / "train_labels.txt", "w") as f:  # in place: same name, new content
        f.write("dog\ncat\n")
    os.utime(source, ns=(stamp, stamp))
    reasons = plan()
    assert set(reasons) == {"download", "prepare"}
    assert any(str(source / "train_labels.txt") in r for r in reasons["download"])


def test_a_pinned_archive_reruns_on_a_new_digest_not_on_a_new_timestamp(tmp_path):
    """A local archive with ``sha256``: touching it (a copy or re-mount of the same bytes) plans
    nothing, a changed pin reruns the download; without a pin the timestamp still counts."""
    from xmc.data.download import sha256_of

    archive = tmp_path / "sample.tar.gz"
    shutil.copy(REPO / "data" / "eurlex57k-sample" / "eurlex57k-sample.tar.gz", archive)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    work = tmp_path / "run"
    work.mkdir()

    def snakemake(sha256, *args):
        config["datasets"] = {"local": {"source": str(archive), "format": "eurlex57k", "sha256": sha256}}
        configfile = tmp_path / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        out = subprocess.run([sys.executable, "-m", "snakemake", "results/local/raw", "-s", str(REPO / "Snakefile"),
                              "--directory", str(work), "--configfile", str(configfile), "--cores", "1", *args],
                             capture_output=True, text=True, env=ENV, cwd=work)
        assert out.returncode == 0, out.stderr[-3000:]
        return _reasons(out.stdout + out.stderr)

    digest = sha256_of(archive)
    snakemake(digest)
    assert (work / "results" / "local" / "raw").is_dir()
    assert snakemake(digest, "-n") == {}
    later = archive.stat().st_mtime_ns + 10**10
    os.utime(archive, ns=(later, later))
    assert snakemake(digest, "-n") == {}  # same pinned bytes, newer timestamp: nothing to do
    reasons = snakemake(digest.upper(), "-n")  # another pin (here the same digest, spelled otherwise)
    assert set(reasons) == {"download"} and any("Params have changed" in r for r in reasons["download"])

    snakemake(None)  # unpinned: the timestamp decides
    assert snakemake(None, "-n") == {}
    # newer than the download's output, however long the runs above took on a loaded machine
    later = max(later, time.time_ns()) + 10**10
    os.utime(archive, ns=(later, later))
    reasons = snakemake(None, "-n")
    assert set(reasons) == {"download"} and any("Updated input files" in r for r in reasons["download"])
