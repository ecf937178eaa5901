#!/usr/bin/env python
"""Our linear path against PECOS XR-Linear and omikuji, side by side, from one workflow run.

The workflow is the benchmark: the peers are rows of the same tables (``peers:`` in the config,
rules/peers.smk), trained and run on the workflow's own TF-IDF and test split. This script only
runs Snakemake with a shipped config (unless ``--no-run``) and prints, from that run's
``results/tables/results.csv`` and ``results/tables/timing.csv``, one table with our/peer ratios:

    python -m bench.peers                                   # config/eurlex57k-linear.yaml, ~25 min
    python -m bench.peers --no-run                          # the table of the last run
    python -m bench.peers --configfile config/eurlex57k-linear.yaml --out bench/results/peers-eurlex57k.csv

Our training time is the sum of the jobs that build our model (PIFA, clustering, the linear
matcher, its top-b over training and test documents, the rankers); prediction is the rankers'
prediction of the test documents (the matcher's test top-b is computed in its training-set job and
counted as training). A peer's times are those it reports for its own train/predict calls; peak
memory is the largest job's max RSS (Snakemake's benchmark, MiB) for every system.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.common import ROOT, cpu, parser, read_results, write_csv

OURS = "pifa-tfidf.linear.tfidf.tfn+man.noop"
# our model's jobs in timing.csv, step -> wildcards (the linear matcher's steps are train_/predict_matcher;
# sharded rankers add ".{i}-of-{S}" to train_ranker's)
OUR_TRAIN_JOBS = {"label_repr": "pifa-tfidf", "cluster": "pifa-tfidf", "train_matcher": "pifa-tfidf.linear",
                  "predict_matcher": "pifa-tfidf.linear", "train_ranker": "pifa-tfidf.linear.tfidf.tfn+man"}
OUR_PREDICT_JOBS = {"predict_ranker": OURS}


def _ours(jobs: pd.DataFrame, wanted: dict) -> pd.DataFrame:
    wildcards = jobs["wildcards"].astype(str)
    hit = [w == wanted.get(step) or (step == "train_ranker" and w.startswith(wanted.get(step, "\0") + "."))
           for step, w in zip(jobs["step"], wildcards)]
    found = jobs[hit]
    if set(found["step"]) != set(wanted):
        raise SystemExit(f"timing.csv lacks some of our jobs: {sorted(set(wanted) - set(found['step']))}")
    return found
METRICS = ["P@1", "P@3", "P@5", "R@1", "R@3", "R@5"]


def side_by_side(results: pd.DataFrame, timing: pd.DataFrame, dataset: str, root: Path = ROOT) -> pd.DataFrame:
    """One row per system (ours, then the peers): metrics, train s, predict ms per 1,000 test
    documents, peak MiB, and a last row of ours / XR-Linear."""
    res = results[results["dataset"] == dataset].set_index("model")
    jobs = timing[timing["dataset"] == dataset]
    rows = []
    if OURS in res.index:
        train, pred = _ours(jobs, OUR_TRAIN_JOBS), _ours(jobs, OUR_PREDICT_JOBS)
        rows.append({"system": "ours", **res.loc[OURS, METRICS].astype(float).to_dict(),
                     "train_s": train["s"].sum(), "predict_s": pred["s"].sum(),
                     "peak_mib": max(train["max_rss_mb"].max(), pred["max_rss_mb"].max())})
    for peer in ("xr-linear", "omikuji"):
        if peer in res.index:
            peer_jobs = jobs[jobs["step"].isin(["train_peer", "predict_peer"]) & (jobs["wildcards"] == peer)]
            rows.append({"system": peer, **res.loc[peer, METRICS].astype(float).to_dict(),
                         "train_s": float(res.loc[peer, "train_s"]), "predict_s": float(res.loc[peer, "predict_s"]),
                         "peak_mib": peer_jobs["max_rss_mb"].max()})
    table = pd.DataFrame(rows)
    if table.empty:
        raise SystemExit(f"no rows for dataset {dataset!r} in the results (run the workflow first)")
    n_test = _n_test(root, dataset)
    if n_test:
        table["predict_ms_per_1k"] = table["predict_s"] * 1e6 / n_test
    if {"ours", "xr-linear"} <= set(table["system"]):
        a, b = table.set_index("system").loc["ours"], table.set_index("system").loc["xr-linear"]
        ratio = {c: a[c] / b[c] for c in table.columns if c != "system"}
        table = pd.concat([table, pd.DataFrame([{"system": "ours / xr-linear", **ratio}])], ignore_index=True)
    return table


def _n_test(root: Path, dataset: str) -> int | None:
    meta = root / "results" / dataset / "prepared" / "meta.json"
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("n_test")


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--configfile", default="config/eurlex57k-linear.yaml")
    p.add_argument("--dataset", default="eurlex57k")
    p.add_argument("--no-run", action="store_true", help="only print the table of the last run")
    p.add_argument("--out", help="also write the table here (.csv)")
    args = p.parse_args(argv)
    if not args.no_run:
        subprocess.run([sys.executable, "-m", "snakemake", "--configfile", args.configfile], cwd=ROOT, check=True)
    tables = ROOT / "results" / "tables"
    table = side_by_side(read_results(tables, "test"),
                         pd.read_csv(tables / "timing.csv"), args.dataset)
    print(f"{args.dataset}, {args.configfile}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"))
    if args.out:
        write_csv(table, args.out, float_format="%.4g")


if __name__ == "__main__":
    main()
