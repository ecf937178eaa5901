#!/usr/bin/env python
"""APLC-XLNet's learning curve beside a flat sigmoid head over all labels trained the same way,
through the workflow: is APLC's gap to X-Transformer its step budget or our code?

    python -m bench.aplc_curve                                  # 200, 1000, 3000 steps; aplc and flat
    python -m bench.aplc_curve --steps 200,1000 --heads aplc    # a part of it
    python -m bench.aplc_curve --resources gpu=1                # on a GPU machine
    python -m bench.aplc_curve --max-length 64 --batch-size 16  # about 1/8 of the CPU time

config/eurlex57k-10k.yaml (10,000 training / all 6,000 test EURLEX57K documents, MiniLM at length 128,
batch 32; bf16 autocast where the CPU has native bf16, and config/eurlex57k-related.yaml's APLC learning rates)
without its matcher (``matchers: []``: the linear path stays as
a reference row), with ``aplc.encoders: [minilm]`` and ``aplc.max_steps`` = each step budget, for two
heads: ``aplc`` (the config's default proportions [0.5, 0.5]: a head and one tail cluster) and
``flat`` (``proportions: [1.0]``: one sigmoid output per label, no clusters). Each (head, steps) runs
in its own folder under --work, made from the first one's results as hard links, so only the APLC
jobs rerun. Writes --out: head, steps, P@1, P@3, P@5, train_aplc_s.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import yaml

from bench.common import ROOT, absolute_sources, cpu, hardlinked_copy, parser, read_results, snakemake_cmd, write_csv

HEADS = {"aplc": {}, "flat": {"proportions": [1.0]}}
MODEL = "aplc-minilm"


def config_for(base: dict, head: str, steps: int, max_length: int | None = None,
               batch_size: int | None = None) -> dict:
    config = absolute_sources(yaml.safe_load(yaml.safe_dump(base)))
    if max_length:
        config["encoders"]["minilm"]["max_length"] = max_length
    config["matchers"] = []
    config.pop("paper", None)  # its roles name the matcher
    config["ranker"] = {**config.get("ranker", {}), "inputs": ["tfidf"], "negatives": ["tfn+man"]}
    config["linear_baseline"] = {**config.get("linear_baseline", {}), "inputs": ["tfidf"]}
    # the learning rates and precision of config/eurlex57k-related.yaml's APLC row
    config["aplc"] = {**config.get("aplc", {}), "encoders": ["minilm"], "max_steps": steps, "precision": "auto",
                      "hidden_learning_rate": 1.0e-3, "aplc_learning_rate": 1.0e-2, "checkpoint_every": 0,
                      **HEADS[head]}
    if batch_size:
        config["aplc"]["batch_size"] = batch_size
    return config


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--configfile", default=str(ROOT / "config" / "eurlex57k-10k.yaml"))
    p.add_argument("--steps", default="200,1000,3000")
    p.add_argument("--heads", default="aplc,flat")
    p.add_argument("--work", default=str(ROOT / "results" / "bench" / "aplc-curve"))
    p.add_argument("--max-length", type=int, help="the encoder's max_length (default: the config's, 128)")
    p.add_argument("--batch-size", type=int, help="APLC's batch size (default: the config's)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--resources", nargs="*", default=[], help="passed to snakemake --resources (e.g. gpu=1)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "aplc-curve-eurlex57k-10k.csv"))
    args = p.parse_args(argv)
    heads = args.heads.split(",")
    if set(heads) - set(HEADS):
        raise SystemExit(f"--heads: unknown {sorted(set(heads) - set(HEADS))}; known: {sorted(HEADS)}")
    base = yaml.safe_load(Path(args.configfile).read_text())
    extra = ["--resources", *args.resources] if args.resources else []
    rows, first = [], None
    for head in heads:
        for steps in [int(s) for s in args.steps.split(",")]:
            work = Path(args.work) / f"{head}-{steps}"
            if first is not None and not (work / "results").exists():
                hardlinked_copy(first, work)  # prepared data, TF-IDF, tokens: computed once
            work.mkdir(parents=True, exist_ok=True)
            (work / "config.yaml").write_text(yaml.safe_dump(config_for(base, head, steps, args.max_length, args.batch_size),
                                                   sort_keys=False))
            subprocess.run(snakemake_cmd(work, work / "config.yaml", "--cores", str(args.cores), *extra), check=True)
            first = first or work
            tables = work / "results" / "tables"
            res = read_results(tables, "valid").set_index("model")  # a choice: validation figures
            timing = pd.read_csv(tables / "timing.csv")
            rows.append({"head": head, "steps": steps, **{k: float(res.loc[MODEL, k]) for k in ("P@1", "P@3", "P@5")},
                         "train_aplc_s": timing.loc[timing["step"] == "train_aplc", "s"].sum()})
    table = pd.DataFrame(rows)
    print(f"{args.configfile}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    write_csv(table, args.out, float_format="%.4g")


if __name__ == "__main__":
    main()
