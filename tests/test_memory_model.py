"""The memory model's arithmetic (bench/memory_model.py, bench/scale.py's input sizes): per-input
ranker lines, the profile's envelope over them, the site caps, and the paper-size scaling of dense
embeddings. Small tables, no workflow runs."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.memory_model import (PAPER_EMB_DIM, envelope, fit, input_of, paper_input_mib, profile_lines, profile_value,
                                shard_peak, site_limits, with_rules)
from bench.scale import input_sizes, ranker_models, ranker_wildcards, with_shards_inputs


def _stages(lines: dict) -> pd.DataFrame:
    """train_ranker jobs of each ranker input on exact lines peak = a + b x (MiB), time = c + d x."""
    rows = []
    for inp, (a, b, c, d) in lines.items():
        for labels, x in ((4000, 10.0), (30000, 40.0), (130000, 120.0)):
            rows.append({"step": "train_ranker", "wildcards": f"pifa-tfidf.m.{inp}.tfn", "labels": labels,
                         "input_mb": x, "max_rss_mb": a + b * x, "s": c + d * x, "shards": 1})
    return with_rules(pd.DataFrame(rows))


def test_a_ranker_job_is_filed_under_its_input_and_other_rules_under_none():
    assert input_of("train_ranker", "pifa-tfidf.tiny.tfidf+neural.tfn+man") == "tfidf+neural"
    assert input_of("predict_ranker", "pifa-tfidf.linear.tfidf.tfn.noop.test") == "tfidf"
    assert input_of("train_ranker", "pifa-tfidf.linear.tfidf.tfn.2-of-4") == "tfidf"
    assert input_of("cluster", "pifa-tfidf") == "" and input_of("tfidf", float("nan")) == ""
    # a run that recorded no dense part (the 2026-12-03 one) reads as 0 MiB of embeddings
    assert (_stages({"tfidf": (100, 2, 1, 0.1)})["dense_mb"] == 0).all()


def test_each_ranker_input_gets_its_own_line():
    model = fit(_stages({"tfidf": (100.0, 2.0, 1.0, 0.1), "tfidf+neural": (150.0, 3.5, 2.0, 0.3)})).set_index("input")
    assert model.loc["tfidf", ["a_mib", "b_mib_per_mib"]].tolist() == pytest.approx([100.0, 2.0])
    assert model.loc["tfidf+neural", ["a_mib", "b_mib_per_mib", "c_s", "d_s_per_mib"]].tolist() == \
        pytest.approx([150.0, 3.5, 2.0, 0.3])
    assert (model["sizes"] == 3).all() and model["cover_mem"].tolist() == pytest.approx([1.0, 1.0])


def test_the_envelope_asks_at_least_what_each_input_line_asks_for_any_size_and_shard_count():
    lines = pd.DataFrame({"a_mib": [300.0, 100.0], "b_mib_per_mib": [2.0, 3.0], "b_shared": [0.5, 0.2],
                          "c_s": [1.0, 0.0], "d_s_per_mib": [0.1, 0.4], "cover_mem": [1.0, 1.2], "cover_s": [1.0, 1.5]})
    env = envelope(lines)
    raised = lines.assign(a_mib=lines["a_mib"] * lines["cover_mem"],
                          b_mib_per_mib=lines["b_mib_per_mib"] * lines["cover_mem"])
    for x in (0.0, 5.0, 100.0, 1e5):
        for shards in (1, 2, 4, 8, 64):
            need = max(shard_peak(m, x, shards) for _, m in raised.iterrows())
            assert shard_peak(env, x, shards) >= need - 1e-9, (x, shards)
        assert env["c_s"] + env["d_s_per_mib"] * x >= max(1.0 + 0.1 * x, 1.5 * 0.4 * x)
    assert env["b_mib_per_mib"] == pytest.approx(3.6) and env["b_shared"] < 1  # shards still divide a share


def test_profile_lines_cover_both_inputs_and_stay_within_the_site_limits():
    stages = _stages({"tfidf": (100.0, 2.0, 1.0, 0.1), "tfidf+neural": (150.0, 3.5, 2.0, 0.3)})
    model = fit(stages)
    limits = site_limits("# site-limits: cpus_per_node=64 mem_mb_per_node=500000 max_runtime_min=2880\n")
    assert limits == {"cpus_per_node": 64, "mem_mb_per_node": 500000, "max_runtime_min": 2880}
    profile = yaml.safe_load("set-resources:\n" + profile_lines(model, limits))
    for _, job in stages.iterrows():  # the lighter input's jobs are covered too, with the margin
        assert profile_value(profile, "train_ranker", "mem_mb", job["input_mb"]) >= 1.5 * job["max_rss_mb"] - 1
    huge = dict(input_mb=1e6, attempt=3)
    assert profile_value(profile, "train_ranker", "mem_mb", **huge) == 500000
    assert profile_value(profile, "train_ranker", "runtime", **huge) == 2880
    assert profile_value(profile, "train_ranker", "mem_mb", 10.0) == 2000  # the floor
    once = profile_value(profile, "train_ranker", "mem_mb", 333.3)
    assert profile_value(profile, "train_ranker", "mem_mb", 333.3, attempt=2) == 2 * once  # a retry: exactly 2x
    assert "min(" not in profile_lines(model)  # no limits given: no cap


def test_dense_embeddings_scale_by_documents_and_width_and_the_rest_by_nnz():
    job = pd.Series({"rule": "train_ranker", "wildcards": "pifa-tfidf.tiny.tfidf+neural.tfn", "input_mb": 100.0,
                     "dense_mb": 40.0, "nnz_X": 1000.0, "nnz_Y": 0.0, "n_train": 200, "n_test": 20, "emb_dim": 128})
    d = pd.Series({"nnz_X": 3000.0, "nnz_Y": 0.0, "n_train": 800, "n_test": 400})
    assert paper_input_mib(job, d) == pytest.approx(60 * 3 + 40 * 4 * PAPER_EMB_DIM / 128)
    test = job.copy()
    test["rule"], test["wildcards"] = "predict_ranker", "pifa-tfidf.tiny.tfidf+neural.tfn.noop.test"
    assert paper_input_mib(test, d) == pytest.approx(60 * 3 + 40 * 20 * PAPER_EMB_DIM / 128)
    sparse = job.copy()
    sparse["dense_mb"] = 0.0
    assert paper_input_mib(sparse, d) == pytest.approx(300.0)


def test_input_sizes_sum_a_jobs_existing_inputs_and_their_dense_part(tmp_path):
    for name, size in (("X.npz", 3 * 2**20), ("emb.npy", 2**20)):
        (tmp_path / name).write_bytes(b"\0" * size)
    summary = ("output_file\tdate\trule\tlog-file(s)\tinput-file(s)\tshellcmd\tstatus\tplan\n"
               "out.npz\t-\ttrain_ranker\tlogs/a.log\tX.npz,emb.npy,gone.npz\t-\tok\tno update\n"
               "out2.npz\t-\ttrain_ranker\tlogs/b.log\tX.npz\t-\tok\tno update\n"
               "raw.txt\t-\tdownload\t-\t-\t-\tok\tno update\n")
    assert input_sizes(summary, tmp_path) == {"logs/a.log": (4.0, 1.0), "logs/b.log": (3.0, 0.0)}


def test_an_unsharded_rerun_gets_its_shards_inputs_and_every_ranker_is_a_target():
    config = {"matchers": ["tiny"], "ranker": {"inputs": ["tfidf+neural"], "negatives": ["tfn", "tfn+man"]}}
    wildcards = ranker_wildcards(config)
    assert wildcards == ["pifa-tfidf.linear.tfidf.tfn", "pifa-tfidf.linear.tfidf.tfn+man",
                         "pifa-tfidf.tiny.tfidf+neural.tfn", "pifa-tfidf.tiny.tfidf+neural.tfn+man"]
    assert ranker_models(config, "d")[2] == "results/d/ranker/pifa-tfidf/tiny/tfidf+neural.tfn/model.npz"
    jobs = pd.DataFrame({"step": ["train_ranker"] * 3 + ["cluster"],
                         "wildcards": ["pifa-tfidf.tiny.tfidf+neural.tfn.0-of-2",
                                       "pifa-tfidf.tiny.tfidf+neural.tfn.1-of-2",
                                       "pifa-tfidf.linear.tfidf.tfn.0-of-2", "pifa-tfidf"],
                         "input_mb": [50.0, 50.0, 30.0, 9.0], "dense_mb": [20.0, 20.0, 0.0, 0.0]})
    one = pd.DataFrame({"wildcards": ["pifa-tfidf.tiny.tfidf+neural.tfn", "pifa-tfidf.linear.tfidf.tfn"]})
    out = with_shards_inputs(one, jobs)
    assert out["input_mb"].tolist() == [50.0, 30.0] and out["dense_mb"].tolist() == [20.0, 0.0]
    assert np.isnan(with_shards_inputs(pd.DataFrame({"wildcards": ["x.y.z.w"]}), jobs)["input_mb"].iloc[0])


def test_a_wiki500k_jobs_input_is_sized_from_table_1_or_from_the_memory_model():
    from bench.sbatch_plan import file_mib, input_mib, split_docs

    docs = split_docs()
    assert docs["train"] + docs["valid"] == pytest.approx(1_779_881) and docs["test"] == 769_421
    mib = 2.0 ** -20
    assert file_mib("results/wiki-500k/tfidf/X.test.npz", docs) == pytest.approx(769_421 * 515 * 8 * mib)
    assert file_mib("results/wiki-500k/matcher/pifa-tfidf/xlnet-large/emb.train.npy", docs) == \
        pytest.approx(docs["train"] * 1024 * 4 * mib)
    assert file_mib("results/wiki-500k/indexer/pifa-tfidf/C.npz", docs) == pytest.approx(501_070 * 8 * mib)
    assert file_mib("results/wiki-500k/prepared/test.txt", docs) == 0.0
    job = SimpleNamespace(rule="label_repr_pifa_neural", wildcards="dataset=wiki-500k",
                          input=["results/wiki-500k/prepared/Y.train.npz",
                                 "results/wiki-500k/matcher/pifa-tfidf/xlnet-large/emb.train.npy"])
    model = pd.DataFrame({"rule": ["train_ranker", "train_ranker"], "input": ["tfidf", "tfidf+neural"],
                          "input_mib": [9000.0, 16000.0]})
    assert input_mib(job, model, docs) == (pytest.approx(docs["train"] * (1024 * 4 + 4.75 * 8) * mib), "files")
    ranker = lambda inp: SimpleNamespace(rule="train_ranker", input=[],
                                         wildcards=f"dataset=wiki-500k, indexer=pifa-tfidf, matcher=linear, input={inp}")
    assert input_mib(ranker("tfidf"), model, docs) == (9000.0, "memory model")
    # every input with embeddings (the linear baselines' pre / tfidf+fnt too) is sized as tfidf+neural
    assert input_mib(ranker("tfidf+fnt-xlnet-large"), model, docs) == (16000.0, "memory model")
    assert input_mib(ranker("tfidf+neural"), model, docs) == (16000.0, "memory model")


def test_the_plugin_builds_the_sbatch_line_whose_fields_the_table_shows():
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    from bench.sbatch_plan import sbatch_fields, sbatch_line

    line = sbatch_line(SimpleNamespace(rule="train_matcher", threads=8, resources={
        "slurm_partition": "gpu", "gpu": 4, "nodes": 1, "mem_mb": 64000, "runtime": 1440}))
    assert sbatch_fields(line) == {"partition": "gpu", "cpus": 8, "mem_mb": 64000, "minutes": 1440, "gpus": "4"}
    cpu = sbatch_fields(sbatch_line(SimpleNamespace(rule="cluster", threads=4, resources={
        "slurm_partition": "cpu", "mem_mb": 86788, "runtime": 57})))
    assert cpu == {"partition": "cpu", "cpus": 4, "mem_mb": 86788, "minutes": 57, "gpus": ""}


def test_of_two_runs_of_a_size_the_fit_keeps_the_larger_peak_and_the_shorter_time():
    quiet = _stages({"tfidf": (100.0, 2.0, 1.0, 0.1)}).assign(run=0)
    busy = quiet.assign(run=1, max_rss_mb=quiet["max_rss_mb"] + 10, s=quiet["s"] * 5)
    m = fit(pd.concat([quiet, busy], ignore_index=True)).iloc[0]
    assert [m["a_mib"], m["b_mib_per_mib"], m["c_s"], m["d_s_per_mib"]] == pytest.approx([110.0, 2.0, 1.0, 0.1])


def test_a_ranker_rule_asks_by_its_input_kind_sparse_or_with_embeddings():
    """Two fitted lines of one rule: the profile picks the job's by its `input` wildcard, so a TF-IDF
    ranker is not sized by the embeddings' heavier line."""
    model = pd.DataFrame([
        {"rule": "predict_ranker", "input": "tfidf", "a_mib": 400.0, "b_mib_per_mib": 1.0, "b_shared": 1.0,
         "c_s": 1.0, "d_s_per_mib": 0.1, "cover_mem": 1.0, "cover_s": 1.0},
        {"rule": "predict_ranker", "input": "tfidf+neural", "a_mib": 400.0, "b_mib_per_mib": 10.0, "b_shared": 1.0,
         "c_s": 1.0, "d_s_per_mib": 0.1, "cover_mem": 1.0, "cover_s": 1.0}])
    profile = yaml.safe_load("set-resources:\n" + profile_lines(model))
    ask = {name: profile_value(profile, "predict_ranker", "mem_mb", 10_000.0, input_name=name)
           for name in ("tfidf", "tfidf+char", "tfidf+neural", "pre-minilm", "tfidf+fnt-minilm")}
    assert ask == {"tfidf": int(1.5 * (400 + 10_000)), "tfidf+char": int(1.5 * (400 + 10_000)),
                   "tfidf+neural": int(1.5 * (400 + 100_000)), "pre-minilm": int(1.5 * (400 + 100_000)),
                   "tfidf+fnt-minilm": int(1.5 * (400 + 100_000))}
    # without an input wildcard (not a ranker job): the sparse line
    assert profile_value(profile, "predict_ranker", "mem_mb", 10_000.0) == ask["tfidf"]
