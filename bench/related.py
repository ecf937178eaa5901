#!/usr/bin/env python
"""X-Transformer, XR-Transformer and APLC-XLNet side by side, through the workflow, on one seeded
EURLEX57K subset with the same encoder, length, batch and step budget.

    python -m bench.related                       # config/eurlex57k-10k.yaml's subset, length 64, batch 16
    python -m bench.related --steps 200 --xr-steps 30,30 --aplc-steps 200
    python -m bench.related --no-run              # the table of the last run in --work

The script writes one config from config/eurlex57k-10k.yaml (10,000 training / 6,000 test documents)
with the encoder's ``--max-length``, every model's batch ``--batch-size`` and bf16 autocast where
the CPU has it (``precision: auto``), and these rows:

- X-Transformer: the pifa-tfidf matcher fine-tuned ``--steps`` steps, its own top-10 clusters;
- XR-Transformer (``xmc.matcher.xr``): the same tree read at 16 and 64 clusters, ``--xr-steps`` per
  level, PECOS's concat shortlist (``xr_transformer.shortlist: linear``);
- APLC (``xmc.aplc``), ``--aplc-steps`` steps;
- the phi_tfidf + linear baseline;

the first two with the same TFN+MAN ranker on [TF-IDF ; fine-tuned embedding] (noop). It runs
``snakemake`` in ``--work`` and prints every row of that run's results.csv with the benchmarked wall
time of every job the row needs (bench/xtransformer.py's ``workflow_rows``), to ``--out`` as CSV.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from bench.common import ROOT, absolute_sources, cpu, parser, snakemake_cmd, write_csv
from bench.xtransformer import workflow_rows

DATASET = "eurlex57k-10k"


def write_config(path: Path, args) -> None:
    config = absolute_sources(yaml.safe_load((ROOT / "config" / "eurlex57k-10k.yaml").read_text()))
    config["encoders"]["minilm"]["max_length"] = args.max_length
    config["matcher"].update(max_steps=args.steps, warmup_steps=max(1, args.steps // 10), batch_size=args.batch_size,
                             precision="auto", checkpoint_every=0)
    config["xr_transformer"] = {"encoders": ["minilm"], "indexer": "pifa-tfidf", "levels": [16, 64],
                                "steps": [int(s) for s in args.xr_steps.split(",")], "shortlist": "linear"}
    config["aplc"] = {"encoders": ["minilm"], "max_steps": args.aplc_steps, "batch_size": args.batch_size,
                      "precision": "auto", "hidden_learning_rate": 1.0e-3, "aplc_learning_rate": 1.0e-2,
                      "checkpoint_every": 0}
    config["datasets"][DATASET]["n_clusters"] = 64  # the XR tree's last level
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--steps", type=int, default=200, help="X-Transformer's matcher steps")
    p.add_argument("--xr-steps", default="30,30", help="XR-Transformer's steps per level (16, then 64 clusters)")
    p.add_argument("--aplc-steps", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-run", action="store_true", help="only read the last run in --work")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench" / "related")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "related-eurlex57k-10k.csv")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    config = args.work / "config.yaml"
    if not args.no_run:
        write_config(config, args)
        subprocess.run(snakemake_cmd(args.work, config, "--cores", str(args.cores)), check=True)
    table = workflow_rows(str(config), DATASET, workdir=args.work).sort_values("P@1", ascending=False)
    print(f"# {DATASET}, length {args.max_length}, batch {args.batch_size}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table, args.out, float_format="%.4g")


if __name__ == "__main__":
    main()
