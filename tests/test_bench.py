"""The bench scripts stay runnable: each answers ``--help`` as a module of the bench package, and
what every CSV they write ends with (commit, host, date)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
# bench/pecos_xrlinear.py is not a question: latency.py runs it as a file with the peers' Python
HELPERS = {"__init__", "common", "pecos_xrlinear"}
SCRIPTS = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in HELPERS)


def test_the_bench_scripts_are_found():
    assert {"scale", "peers", "latency", "throughput"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_bench_script_answers_help_as_a_module(name):
    out = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = ast.get_docstring(ast.parse((REPO / "bench" / f"{name}.py").read_text()))
    assert f"python -m bench.{name}" in doc  # the question's command, in the docstring
    assert out.stdout.startswith(f"usage: python -m bench.{name}") and doc.splitlines()[0] in out.stdout


def test_no_bench_script_changes_the_import_path_or_imports_a_sibling_by_name():
    for path in (REPO / "bench").glob("*.py"):
        text = path.read_text()
        assert "sys.path" not in text, path.name
        for sibling in SCRIPTS:
            assert not re.search(rf"^\s*(from {sibling} import|import {sibling}\b)", text, re.M), (path.name, sibling)


def test_every_csv_is_stamped_with_commit_host_and_date(tmp_path):
    from bench.common import commit, write_csv

    written = write_csv(pd.DataFrame({"P@1": [0.5, 0.25]}), tmp_path / "sub" / "t.csv", float_format="%.4g")
    back = pd.read_csv(tmp_path / "sub" / "t.csv", dtype={"commit": str})  # an all-digit id stays text
    assert list(back.columns) == ["P@1", "commit", "host", "date"] == list(written.columns)
    assert back["commit"].iloc[0] == commit() and len(back["commit"].iloc[0]) >= 7
    assert back["host"].iloc[0] and ";" in back["host"].iloc[0]  # model name; key flags
    assert pd.to_datetime(back["date"]).notna().all()


def test_matcher_levers_sets_steps_clusters_top_b_and_window_and_refuses_a_bad_spec():
    from bench.matcher_levers import config_for

    base = {"datasets": {"d": {"source": "x", "n_clusters": 256}}, "matchers": ["m"],
            "encoders": {"m": {"model": "x", "max_length": 128}, "other": {"model": "y", "max_length": 128}},
            "matcher": {"max_steps": 400, "warmup_steps": 40, "top_b": 24}}
    config = config_for(base, "probe-len64@800:k128:b16:w256")
    assert config["datasets"]["d"]["n_clusters"] == 128
    assert config["encoders"] == {"m": {"model": "x", "max_length": 256}, "other": {"model": "y", "max_length": 128}}
    assert config_for(base, "probe")["encoders"]["m"]["max_length"] == 128
    assert config["matcher"] == {"max_steps": 800, "warmup_steps": 80, "top_b": 16,
                                 "head_init": "probe", "train_max_length": 64}
    assert base["datasets"]["d"]["n_clusters"] == 256 and base["matcher"]["top_b"] == 24  # base untouched
    assert base["encoders"]["m"]["max_length"] == 128
    assert list(config_for(base, "paper")["matcher"]) == ["max_steps", "warmup_steps", "top_b"]  # order kept
    for bad in ("probe:k0", "probe:x5", "probe:b16:b32", "probe:w", "nope"):
        with pytest.raises(SystemExit):
            config_for(base, bad)

    # an XR lever sets xr_transformer (on the first indexer), not a matcher key
    base = {**base, "indexers": ["pifa-tfidf", "text-emb"]}
    xr = config_for(base, "xr-probe-len64")
    assert xr["xr_transformer"] == {"encoders": ["m"], "indexer": "pifa-tfidf", "shortlist": "neural"}
    assert xr["matcher"]["head_init"] == "probe" and "xr_transformer" not in xr["matcher"]
    assert "xr_transformer" not in config_for(base, "probe-len64")


def test_a_lever_row_reads_test_rows_only_where_the_test_split_is_carved_from_validation(tmp_path):
    """A study on the shipped test/ (config/eurlex57k-steps.yaml) gets validation columns only."""
    from bench.matcher_levers import LINEAR_MODEL, MATCHER_MODEL, config_for, row

    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    rows = [{"split": split, "model": model, "P@1": p1, "shortlist_recall": recall}
            for split, shift in (("valid", 0.0), ("test", 1.0))
            for model, p1, recall in ((MATCHER_MODEL, 90.0 + shift, 95.0 + shift), (LINEAR_MODEL, 89.0 + shift, 96.0 + shift))]
    pd.DataFrame(rows).to_csv(tables / "results.csv", index=False)
    pd.DataFrame({"step": ["train_matcher", "predict_matcher"], "s": [10.0, 5.0]}).to_csv(tables / "timing.csv", index=False)
    base = {"datasets": {"d": {"source": "x", "n_clusters": 256}}, "matchers": ["m"],
            "encoders": {"m": {"model": "x", "max_length": 128}},
            "matcher": {"max_steps": 400, "warmup_steps": 40, "top_b": 32}}

    shipped_test = row(tmp_path, "config@1600", config_for(base, "config@1600"))
    assert shipped_test["steps"] == 1600 and shipped_test["matcher recall (valid)"] == 95.0
    assert shipped_test["linear P@1 (valid)"] == 89.0 and shipped_test["train_matcher_s"] == 10.0
    assert not [key for key in shipped_test if "held-out" in key]

    base["datasets"]["d"]["subsample"] = {"n_test": 10, "test_from": "valid"}
    carved = row(tmp_path, "config", config_for(base, "config"))
    assert carved["matcher recall (held-out dev)"] == 96.0 and carved["linear P@1 (held-out dev)"] == 90.0


def test_a_depth_lever_names_the_cut_encoder_and_the_cut_encoder_is_the_first_layers(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from bench.common import tiny_models
    from bench.matcher_levers import config_for, first_layers

    base = {"datasets": {"d": {"source": "x", "n_clusters": 256}}, "matchers": ["m"],
            "encoders": {"m": {"model": "x", "max_length": 128}, "other": {"model": "y", "max_length": 128}},
            "matcher": {"max_steps": 400, "warmup_steps": 40, "top_b": 24}}
    config = config_for(base, "probe:b32:l4", tmp_path / "enc")
    assert config["encoders"]["m"]["model"] == str((tmp_path / "enc" / "m-l4").resolve())
    assert config["encoders"]["other"]["model"] == "y" and base["encoders"]["m"]["model"] == "x"
    assert config_for(base, "probe")["encoders"]["m"]["model"] == "x"
    for bad in ("probe:l0", "probe:l2:l3"):
        with pytest.raises(SystemExit):
            config_for(base, bad)

    source = tiny_models().make_tiny_encoder("bert", tmp_path / "full", layers=3)
    cut = first_layers(str(source), 2, tmp_path / "cut")
    full, short = AutoModel.from_pretrained(source).eval(), AutoModel.from_pretrained(cut).eval()
    assert short.config.num_hidden_layers == 2 == len(short.encoder.layer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "full"]  # written whole, no part left
    batch = AutoTokenizer.from_pretrained(cut)(["the quick brown fox", "apple banana"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = full(**batch, output_hidden_states=True).hidden_states[2]
        got = short(**batch).last_hidden_state
    assert torch.allclose(want, got, atol=1e-6)  # the full model's output after its 2nd layer
    assert not torch.allclose(full(**batch).last_hidden_state, got, atol=1e-3)
    with pytest.raises(SystemExit, match="has 3 layers"):
        first_layers(str(source), 3, tmp_path / "same")
    xlnet = tiny_models().make_tiny_encoder("xlnet", tmp_path / "xlnet")
    with pytest.raises(SystemExit, match="BERT-family"):
        first_layers(str(xlnet), 1, tmp_path / "x1")


def test_a_hardlinked_copy_shares_outputs_but_not_the_job_times(tmp_path):
    """Snakemake rewrites a benchmark file in place: through a link, a copy's run would overwrite the
    job times of the folder it was copied from (the levers' first row read another lever's times)."""
    from bench.common import hardlinked_copy

    src, dst = tmp_path / "a", tmp_path / "b"
    (src / "results" / "benchmarks" / "d").mkdir(parents=True)
    (src / ".snakemake" / "metadata").mkdir(parents=True)
    (src / "results" / "benchmarks" / "d" / "train_matcher.tsv").write_text("s\n325.6\n")
    (src / "results" / "X.npz").write_bytes(b"x" * 100)
    hardlinked_copy(src, dst)
    assert (dst / "results" / "X.npz").stat().st_ino == (src / "results" / "X.npz").stat().st_ino
    with open(dst / "results" / "benchmarks" / "d" / "train_matcher.tsv", "w") as f:  # in place, as Snakemake
        f.write("s\n752.0\n")
    assert (src / "results" / "benchmarks" / "d" / "train_matcher.tsv").read_text() == "s\n325.6\n"


def test_knn_vote_sweeps_a_runs_validation_embeddings_as_rule_knn_shortlist_votes(tmp_path):
    """bench.knn_vote reads a run's files and scores each setting as xmc.matcher.knn would, best first."""
    import numpy as np
    import scipy.sparse as sp

    from bench import knn_vote
    from xmc.indexing import cluster_targets
    from xmc.io import save_csr
    from xmc.matcher.knn import knn_embedding, knn_shortlist
    from xmc.metrics import shortlist_recall

    rng = np.random.default_rng(0)
    K, n, m = 6, 120, 40
    topic = rng.integers(0, K, size=n + m)
    centres = rng.normal(size=(K, 8))
    fine, pre = centres[topic] + 2 * rng.normal(size=(n + m, 8)), centres[topic] + rng.normal(size=(n + m, 8))
    Y = sp.csr_matrix((np.ones(n + m), (np.arange(n + m), topic)), shape=(n + m, K))
    C = sp.identity(K, format="csr")
    run = tmp_path / "results" / "toy"
    matcher = run / "matcher" / "pifa-tfidf" / "enc"
    for folder in (matcher, run / "pretrained" / "enc", run / "prepared", run / "indexer" / "pifa-tfidf"):
        folder.mkdir(parents=True)
    scores = rng.uniform(-1, 1, size=(m, K))
    scores[scores < np.sort(scores, axis=1)[:, [-2]]] = 0  # the head's top-2
    head = sp.csr_matrix(scores)
    np.save(matcher / "emb.train.npy", fine[:n]), np.save(matcher / "emb.valid.npy", fine[n:])
    np.save(run / "pretrained" / "enc" / "emb.train.npy", pre[:n]), np.save(run / "pretrained" / "enc" / "emb.valid.npy", pre[n:])
    save_csr(matcher / "topb.valid.npz", head)
    save_csr(run / "prepared" / "Y.train.npz", Y[:n]), save_csr(run / "prepared" / "Y.valid.npz", Y[n:])
    save_csr(run / "indexer" / "pifa-tfidf" / "C.npz", C)
    knn_vote.main([str(run), "--encoder", "enc", "--k", "3,10", "--power", "2", "--head-weight", "0.1",
                   "--pretrained-weight", "0,0.8", "--out", str(tmp_path / "sweep.csv")])
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert len(table) == 4 and table.recall.is_monotonic_decreasing and {"commit", "host"} <= set(table.columns)
    for row in table.itertuples():
        memory, queries = (knn_embedding(fine[s], pre[s], row.pretrained_weight) for s in (slice(0, n), slice(n, None)))
        want = knn_shortlist(queries, memory, cluster_targets(Y[:n], C), 2, k=row.k, power=row.power, head=head,
                             head_weight=row.head_weight)
        assert row.recall == pytest.approx(shortlist_recall(want, Y[n:], C)["label_recall"], abs=0.01)
    assert table.recall.nunique() > 1  # the settings are not all alike
