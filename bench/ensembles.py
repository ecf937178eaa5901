#!/usr/bin/env python
"""Which ensemble rule beats its members: every rule x every member sigma, through the workflow, on
seeded EURLEX57K subsets.

    python bench/ensembles.py                         # subsets of seeds 0 and 1, 6,000 / 1,500 docs
    python bench/ensembles.py --seeds 0,1,2 --n-train 10000 --n-test 3000

The script writes one config (config/eurlex57k-reduced.yaml's matcher, length 64 and 100 steps, with
one dataset per seed: ``subsample: {n_train, n_test, seed}``), whose grid holds the three indexers'
TFN+MAN rankers on tfidf+neural and the phi_tfidf, phi_fnt (+) phi_tfidf, phi_char and phi_tfidf (+)
phi_char linear models, each under the sigmas noop, sigmoid and l3-hinge, and as ensembles every
method of xmc.ensemble over

- ``ix3``: the three indexers (the paper's ensemble; Table 5 id 7), and
- ``ix3c``: the same plus the phi_fnt (+) phi_tfidf linear model (PECOS's concat model: the same
  fine-tuned embeddings, clusters from a linear tree instead of the matcher),

members and ensemble with the same sigma. It runs ``snakemake`` in ``--work`` (a rerun recomputes only
what changed) and writes ``--out``: per dataset, members (ix3 / ix3c), sigma and method, the
ensemble's P@1 / P@3 / P@5, its best member's P@1 and the gain; then prints the gains averaged over
the datasets, best first.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peers import cpu  # noqa: E402
from scale import absolute_sources, snakemake_cmd  # noqa: E402
from xmc.ensemble import ENSEMBLE_METHODS  # noqa: E402

SIGMAS = ("noop", "sigmoid", "l3-hinge")
INDEXERS = ("pifa-tfidf", "text-emb", "pifa-neural")


def members(kind: str, sigma: str) -> list[str]:
    names = [f"{ix}.minilm.tfidf+neural.tfn+man.{sigma}" for ix in INDEXERS]
    if kind == "ix3c":
        names.append(f"pifa-tfidf.linear.tfidf+fnt-minilm.tfn+man.{sigma}")
    return names


def write_config(path: Path, seeds: list[int], n_train: int, n_test: int) -> list[str]:
    config = yaml.safe_load((ROOT / "config" / "eurlex57k-reduced.yaml").read_text())
    source = absolute_sources(config)["datasets"].pop("eurlex57k-reduced")
    names = []
    for seed in seeds:
        name = f"e57k-{n_train // 1000}k-s{seed}"
        config["datasets"][name] = {**source, "subsample": {"n_train": n_train, "n_test": n_test, "seed": seed}}
        names.append(name)
    config["ranker"].update(inputs=["tfidf+neural"], negatives=["tfn+man"], combine=list(SIGMAS))
    # char, tfidf+char and the linear models on the other indexers' trees and fine-tuned embeddings:
    # members bench/ensemble_search.py's pool holds
    config["linear_baseline"].update(indexer=list(INDEXERS), inputs=["tfidf", "tfidf+fnt", "char", "tfidf+char"],
                                     combine=list(SIGMAS))
    config["ensembles"] = {f"{kind}-{sigma}-{method}": {"method": method, "models": members(kind, sigma)}
                           for kind in ("ix3", "ix3c") for sigma in SIGMAS for method in ENSEMBLE_METHODS}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return names


def collect(work: Path, datasets: list[str]) -> pd.DataFrame:
    rows = []
    for ds in datasets:
        metrics = lambda name: json.loads((work / "results" / ds / "metrics" / f"{name}.json").read_text())
        for kind in ("ix3", "ix3c"):
            for sigma in SIGMAS:
                best = max(metrics(m)["P@1"] for m in members(kind, sigma))
                for method in ENSEMBLE_METHODS:
                    m = metrics(f"{kind}-{sigma}-{method}")
                    rows.append({"dataset": ds, "members": kind, "sigma": sigma, "method": method,
                                 "P@1": m["P@1"], "P@3": m["P@3"], "P@5": m["P@5"],
                                 "best_member_P@1": best, "gain_P@1": round(m["P@1"] - best, 2)})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1500)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench" / "ensembles")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ensembles-eurlex57k.csv")
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    config = args.work / "ensembles.yaml"
    datasets = write_config(config, [int(s) for s in args.seeds.split(",")], args.n_train, args.n_test)
    subprocess.run(snakemake_cmd(args.work, config, "--cores", str(args.cores)), check=True)
    table = collect(args.work, datasets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    mean = (table.groupby(["members", "sigma", "method"])[["P@1", "best_member_P@1", "gain_P@1"]].mean()
            .round(2).sort_values("gain_P@1", ascending=False))
    print(f"# {', '.join(datasets)}; {cpu()}")
    print(mean.to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
