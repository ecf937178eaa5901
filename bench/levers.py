#!/usr/bin/env python
"""CPU speed levers of the transformer stages, through the workflow: config/eurlex57k-10k.yaml once
per lever, each in its own folder, and P@1 and the transformer jobs' times side by side.

    python -m bench.levers                        # fp32, bf16, int8 prediction (from the fp32 matcher)
    python -m bench.levers --levers fp32,bf16

Levers: ``fp32`` (the paper's), ``bf16`` (matcher.precision: bf16 autocast in training and
prediction; ``auto`` picks it where the CPU has native bf16), ``int8`` (matcher.predict_precision:
the fp32 matcher's prediction pass with its encoder dynamically quantised; run in a copy of the
fp32 folder whose files are hard links, so only prediction and what follows rerun). Length-sorted
prediction batches are in every lever (outputs equal: tests/test_matcher.py).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import yaml

from bench.common import ROOT, absolute_sources, cpu, hardlinked_copy, parser, read_results, snakemake_cmd, write_csv

MODEL = "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"
LEVERS = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}, "int8": {"predict_precision": "int8"}}
STEPS = ("tokenize", "train_matcher", "predict_matcher")


def config_for(base: dict, lever: str) -> dict:
    config = absolute_sources(yaml.safe_load(yaml.safe_dump(base)))
    config["matcher"] = {**config["matcher"], **LEVERS[lever]}
    return config


def run(work: Path, config: dict, cores: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(snakemake_cmd(work, work / "config.yaml", "--cores", str(cores)), check=True)


def row(work: Path, lever: str) -> dict:
    tables = work / "results" / "tables"
    results = read_results(tables, "valid").set_index("model")  # a choice: validation figures
    timing = pd.read_csv(tables / "timing.csv")
    out = {"lever": lever, "P@1": float(results.loc[MODEL, "P@1"]), "P@5": float(results.loc[MODEL, "P@5"])}
    for step in STEPS:
        out[f"{step}_s"] = timing.loc[timing["step"] == step, "s"].sum()
    return out


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--configfile", default=str(ROOT / "config" / "eurlex57k-10k.yaml"))
    p.add_argument("--levers", default="fp32,bf16,int8")
    p.add_argument("--work", default=str(ROOT / "results" / "bench" / "levers"))
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "levers-eurlex57k-10k.csv"))
    args = p.parse_args(argv)
    levers = args.levers.split(",")
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        raise SystemExit(f"--levers: unknown {unknown}; known: {sorted(LEVERS)}")
    base = yaml.safe_load(Path(args.configfile).read_text())
    rows = []
    for lever in levers:
        work = Path(args.work) / lever
        if lever == "int8":  # the fp32 matcher, its prediction pass quantised
            if not (Path(args.work) / "fp32" / "results" / "tables" / "results.csv").is_file():
                run(Path(args.work) / "fp32", config_for(base, "fp32"), args.cores)
            hardlinked_copy(Path(args.work) / "fp32", work)
        run(work, config_for(base, lever), args.cores)
        rows.append(row(work, lever))
    table = pd.DataFrame(rows)
    if "fp32" in set(table["lever"]):
        ref = table.set_index("lever").loc["fp32"]
        table["dP@1"] = table["P@1"] - ref["P@1"]
    print(f"{args.configfile}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    write_csv(table, args.out, float_format="%.4g")


if __name__ == "__main__":
    main()
