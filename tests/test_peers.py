"""The peers as rows of our tables (xmc.peers): omikuji trained and run on real TF-IDF of synthetic
documents, the start-up check of missing peer packages, and the peers' columns in the tables.
XR-Linear needs libpecos in an environment of its own (scipy < 1.14): its test runs when
XMC_PEERS_PYTHON names such an interpreter, and is skipped otherwise."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmc import config as xc
from xmc import paper
from xmc.data.synthetic import SyntheticSpec, generate
from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
from xmc.io import save_csr
from xmc.metrics import precision_recall_at_k
from xmc.peers import check_available, merge_costs, predict, train, write_svmlight_labels
from xmc.tables import results_table, table3

REPO = Path(__file__).resolve().parents[1]
SPEC = SyntheticSpec(n_labels=120, vocabulary=3000, words_per_doc=40, labels_per_doc=2.5, signal=0.3)


def _data():
    texts, labels = generate(1200, SPEC, seed=0)
    X = fit_tfidf(texts[:1000], TfidfParams(min_df=1))
    vectorizer, X_train = X
    X_test = transform_tfidf(vectorizer, texts[1000:])
    rows = [i for i, ls in enumerate(labels) for _ in ls]
    cols = [int(label.split("_")[-1]) if isinstance(label, str) else int(label) for ls in labels for label in ls]
    Y = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(labels), SPEC.n_labels))
    return X_train, Y[:1000], X_test, Y[1000:]


def _chance(Y_train, Y_test) -> float:
    popular = np.asarray(Y_train.sum(axis=0)).ravel().argmax()
    return 100.0 * Y_test[:, popular].mean()


def test_omikuji_learns_the_labels(tmp_path):
    pytest.importorskip("omikuji")
    X, Y, Xt, Yt = _data()
    info = train("omikuji", X, Y, tmp_path / "model", threads=1)
    assert info["train_s"] > 0 and info["peak_mem_mib"] > 10
    assert not (tmp_path / "model" / "train.txt").exists()  # the converted training file is not kept
    pred, pinfo = predict("omikuji", tmp_path / "model", Xt, top_k=5)
    assert pred.shape == Yt.shape and pred.getnnz(axis=1).max() <= 5
    p1 = precision_recall_at_k(pred, Yt, ks=(1,))["P@1"]
    assert p1 > _chance(Y, Yt) + 30.0, (p1, _chance(Y, Yt))
    assert set(pinfo) == {"predict_s", "peak_mem_mib"}


def test_omikuji_training_file_format(tmp_path):
    X = sp.csr_matrix(np.array([[0.5, 0.0, 0.25], [0.0, 1.0, 0.0]], np.float32))
    Y = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], np.float32))
    write_svmlight_labels(tmp_path / "d.txt", X, Y)
    assert (tmp_path / "d.txt").read_text() == "2 3 4\n0,2 0:0.5 2:0.25\n1 1:1\n"


@pytest.mark.skipif(not os.environ.get("XMC_PEERS_PYTHON"), reason="XMC_PEERS_PYTHON (an interpreter with libpecos) not set")
def test_xr_linear_through_the_peer_script(tmp_path):
    python = os.environ["XMC_PEERS_PYTHON"]
    X, Y, Xt, Yt = _data()
    for name, M in {"X.train": X, "Y.train": Y, "X.test": Xt}.items():
        save_csr(tmp_path / f"{name}.npz", M)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = str(REPO / "workflow_scripts" / "peer.py")
    subprocess.run([python, script, "train", "--system", "xr-linear", "--X", str(tmp_path / "X.train.npz"),
                    "--Y", str(tmp_path / "Y.train.npz"), "--model", str(tmp_path / "model"),
                    "--info", str(tmp_path / "train.json"), "--log", str(tmp_path / "train.log")], env=env, check=True)
    subprocess.run([python, script, "predict", "--system", "xr-linear", "--X", str(tmp_path / "X.test.npz"),
                    "--model", str(tmp_path / "model"), "--out", str(tmp_path / "pred.npz"), "--top-k", "5",
                    "--info", str(tmp_path / "predict.json"), "--log", str(tmp_path / "predict.log")],
                   env=env, check=True)
    pred = sp.load_npz(tmp_path / "pred.npz").tocsr()
    p1 = precision_recall_at_k(pred, Yt, ks=(1,))["P@1"]
    assert p1 > _chance(Y, Yt) + 30.0
    assert json.loads((tmp_path / "train.json").read_text())["train_s"] > 0


def test_a_missing_peer_package_names_what_to_install(tmp_path):
    with pytest.raises(ValueError, match=r"xr-linear needs the libpecos package.*peers\.python"):
        check_available(["xr-linear"], None)  # this environment has no libpecos (scipy too new for it)
    # another interpreter, without omikuji: its own import error and the extra to install
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S -I \"$@\"\n")
    python.chmod(0o755)
    with pytest.raises(ValueError, match=r"omikuji needs the omikuji package, which .*python cannot import "
                                         r"\(ModuleNotFoundError.*\[peers\]"):
        check_available(["omikuji"], str(python))
    with pytest.raises(ValueError, match="peers.python: .*does not exist"):
        check_available(["omikuji"], str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="unknown system"):
        check_available(["parabel"], None)


def test_peers_are_rows_of_the_results_table_and_table3():
    cfg = xc.resolve({"datasets": {"d": {"source": "x", "format": "attentionxml"}}, "encoders": {"e": {"model": "m"}},
                      "matchers": ["e"], "indexers": ["pifa-tfidf"], "peers": {"systems": ["omikuji", "xr-linear"]}})
    assert xc.peer_models(cfg) == ["omikuji", "xr-linear"]
    assert xc.describe_model(cfg, "omikuji").matcher == "omikuji"
    t3 = paper.table3_models(cfg)
    assert t3["Parabel"] == "omikuji" and t3[paper.XR_LINEAR_ROW] == "xr-linear"
    metrics = {"P@1": 80.0, "P@3": 60.0, "P@5": 50.0, "R@1": 10.0, "R@3": 30.0, "R@5": 40.0}
    blank = {"indexer": "", "ranker_input": "", "negatives": "", "combine": "", "ensemble": "", "split": "test"}
    rows = [{"dataset": "d", "model": "omikuji", "matcher": "omikuji", **blank, **metrics,
             **merge_costs([{"train_s": 12.5, "peak_mem_mib": 300.0}, {"predict_s": 2.0, "peak_mem_mib": 200.0}])},
            {"dataset": "d", "split": "test", "model": "pifa-tfidf.linear.tfidf.tfn+man.noop", "indexer": "pifa-tfidf",
             "matcher": "linear", "ranker_input": "tfidf", "negatives": "tfn+man", "combine": "noop", "ensemble": "",
             **metrics}]
    table = results_table(rows)
    assert list(table.columns[-3:]) == ["train_s", "predict_s", "peak_mem_mib"]
    peer = table.set_index("model").loc["omikuji"]
    assert (peer["train_s"], peer["predict_s"], peer["peak_mem_mib"]) == (12.5, 2.0, 300.0)
    assert table.set_index("model").loc["pifa-tfidf.linear.tfidf.tfn+man.noop", "train_s"] == ""
    assert list(results_table(rows[1:]).columns)[-1] == "R@5"  # no peer: no cost columns
    t = table3(rows, {"Parabel": "omikuji"}, paper.PAPER_TABLE3, ["d"], {"d": "eurlex-4k"})
    assert t.set_index("method").loc["Parabel", "d P@1"] == 80.0
    with pytest.raises(xc.ConfigError, match="taken by a peer"):
        xc.resolve({**cfg, "ensembles": {"omikuji": {"models": ["all"], "method": "average"}}})
