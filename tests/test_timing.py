"""Stage timing from synthetic Snakemake benchmark files."""
import math

import pandas as pd
import pytest

from xmc.timing import hms, parse_benchmark_path, read_benchmarks, timing_by_step, timing_table

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join("\t".join(str(v) for v in row) + "\n" for row in rows))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "benchmarks"
    bench(root / "ds" / "train_matcher.pifa-tfidf.minilm.tsv", (100.0, "0:01:40", 900.5, 1, 1, 1, 0, 0, 1, 180.0))
    bench(root / "ds" / "train_matcher.text-emb.minilm.tsv", (50.0, "0:00:50", 1200.0, 1, 1, 1, 0, 0, 1, 90.0))
    # two repeats: mean wall time, largest memory
    bench(root / "ds" / "tfidf.tsv", (3.0, "0:00:03", 200.0, 1, 1, 1, 0, 0, 1, 2.0),
          (5.0, "0:00:05", 250.0, 1, 1, 1, 0, 0, 1, 4.0))
    # too short for the memory sampler: Snakemake writes NA
    bench(root / "other" / "cluster.text-emb.tsv", (0.5, "0:00:00", "NA", "NA", "NA", "NA", "NA", "NA", "NA", 0.4))
    return root


def test_parse_benchmark_path(tmp_path):
    assert parse_benchmark_path(tmp_path / "ds/train_ranker.a.b.tfidf+neural.tfn+man.tsv", tmp_path) == \
        ("ds", "train_ranker", "a.b.tfidf+neural.tfn+man")
    assert parse_benchmark_path(tmp_path / "ds/tfidf.tsv", tmp_path) == ("ds", "tfidf", "")
    with pytest.raises(ValueError, match="expected a .tsv"):
        parse_benchmark_path(tmp_path / "ds/x.log", tmp_path)


def test_timing_per_job_and_per_step(folder):
    jobs = timing_table(read_benchmarks(folder))
    assert list(jobs[["dataset", "step", "wildcards"]].itertuples(index=False, name=None)) == [
        ("ds", "tfidf", ""), ("ds", "train_matcher", "pifa-tfidf.minilm"), ("ds", "train_matcher", "text-emb.minilm"),
        ("other", "cluster", "text-emb")]
    tfidf = jobs.iloc[0]
    assert tfidf["repeats"] == 2 and tfidf["s"] == 4.0 and tfidf["max_rss_mb"] == 250.0 and tfidf["cpu_s"] == 3.0
    assert math.isnan(jobs.iloc[3]["max_rss_mb"]) and jobs.iloc[3]["s"] == 0.5
    steps = timing_by_step(jobs).set_index("step")
    assert list(steps.index) == ["train_matcher", "tfidf", "cluster", "total"]  # most time first
    assert steps.loc["train_matcher", "jobs"] == 2 and steps.loc["train_matcher", "total_s"] == 150.0
    assert steps.loc["train_matcher", "max_rss_mb"] == 1200.0 and steps.loc["train_matcher", "mean_s"] == 75.0
    assert steps.loc["total", "total_s"] == 154.5 and steps.loc["total", "jobs"] == 4
    assert steps.loc["total", "total_h:m:s"] == "0:02:34" and steps.loc["total", "max_rss_mb"] == 1200.0


def test_no_benchmarks_gives_empty_tables(tmp_path):
    jobs = timing_table(read_benchmarks(tmp_path / "absent"))
    assert jobs.empty and timing_by_step(jobs).empty


def test_not_a_benchmark_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="ds/x.y: expected Snakemake's benchmark columns"):
        timing_table({("ds", "x", "y"): pd.DataFrame({"a": [1]})})


def test_hms():
    assert hms(0.4) == "0:00:00" and hms(3725) == "1:02:05"


def test_a_jobs_log_ends_with_its_exact_peak_and_the_timing_table_takes_it(tmp_path):
    """Snakemake samples memory every 30 s after a job's first 15 s: the log's getrusage peak
    (xmc.runlog) replaces a sampled max_rss that is lower, never one that is higher."""
    import subprocess
    import sys

    from xmc.timing import logged_peak_mib, read_logged_peaks, timing_table

    log = tmp_path / "logs" / "ds" / "train_ranker.a.b.log"
    log.parent.mkdir(parents=True)
    code = ("from xmc.runlog import start; import numpy as np; start(%r, 'job'); "
            "a = np.ones(300 * 2**20 // 8); del a" % str(log))
    subprocess.run([sys.executable, "-c", code], check=True)
    peak = logged_peak_mib(log.read_text())
    assert peak is not None and 300 < peak < 1000
    bench = pd.DataFrame({"s": [50.0], "h:m:s": ["0:00:50"], "max_rss": [120.0], "cpu_time": [40.0]})
    high = pd.DataFrame({"s": [5.0], "h:m:s": ["0:00:05"], "max_rss": [5000.0], "cpu_time": [4.0]})
    keys = {("ds", "train_ranker", "a.b"): bench, ("ds", "tfidf", ""): high}
    peaks = read_logged_peaks(tmp_path / "logs", keys)
    assert set(peaks) == {("ds", "train_ranker", "a.b")}  # tfidf has no log here
    jobs = timing_table(keys, peaks).set_index("step")
    assert jobs.loc["train_ranker", "max_rss_mb"] == pytest.approx(peak)
    assert jobs.loc["tfidf", "max_rss_mb"] == 5000.0
    assert logged_peak_mib("no peak line") is None
