#!/usr/bin/env python
"""The workflow's X-Transformer rows beside PECOS XR-Transformer, on the workflow's own data.

The workflow is the benchmark: our rows (the Table 3 X-Transformer row, XR-Transformer, APLC, the
linear baselines and the peers) come from one Snakemake run of a shipped config; this script only
runs it (unless ``--no-run``), optionally trains PECOS XR-Transformer on that run's prepared
training texts, labels and TF-IDF (it needs its own transformers pin, hence ``--xrt-python``), and
prints one table:

    python -m bench.xtransformer                                   # config/eurlex57k.yaml + -related.yaml, then the table
    python -m bench.xtransformer --no-run                          # the table of the last run
    python -m bench.xtransformer --no-run --xrt-python .venv-xrt/bin/python   # + PECOS XR-Transformer

Our rows' ``job_s`` is the benchmarked wall time of every job the model needs (the jobs of
``snakemake -n -F <its predictions>``, read from their benchmark files), prediction included; a
peer's are its own train + predict calls. PECOS XR-Transformer gets the config's encoder folder,
maximum length, batch size and ``--steps`` optimiser steps per level of its own tree.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd

from bench.common import ROOT, cpu, merged_config, parser, snakemake_cmd, write_csv

METRICS = ["P@1", "P@3", "P@5", "R@1", "R@3", "R@5"]
TOP_K = 20


def benchmark_files(configfiles: list[str], dataset: str, model: str, workdir: Path = ROOT) -> set[str]:
    """Benchmark files of every job that ``model``'s test predictions need: the jobs of
    ``snakemake -n -F`` on that file (its whole DAG)."""
    target = f"results/{dataset}/predictions/test/{model}.npz"
    # the target after a flag: --configfile takes every path that directly follows it
    out = subprocess.run(snakemake_cmd(workdir, *configfiles, "-n", "-F", target),
                         cwd=workdir, check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"^\s*benchmark: (\S+)$", out, flags=re.M))


def workflow_rows(configfiles: list[str], dataset: str, workdir: Path = ROOT) -> pd.DataFrame:
    """The run's models and ensembles of ``dataset`` (results.csv), each with the wall time of the
    jobs it needs (an ensemble: its members' jobs, each counted once) and how many of those jobs
    have no benchmark file in the run."""
    from xmc import config as xc

    cfg = xc.resolve(merged_config(*(workdir / f for f in configfiles)))
    results = pd.read_csv(workdir / "results" / "tables" / "results.csv", keep_default_na=False)
    rows = []
    for _, r in results[(results["dataset"] == dataset) & (results["split"] == "test")].iterrows():
        row = {"system": r["model"], **{m: float(r[m]) for m in METRICS}}
        if r["model"] in xc.peer_models(cfg):  # its own train and predict calls
            row["job_s"] = float(r["train_s"]) + float(r["predict_s"])
        else:
            members = xc.ensemble_members(cfg, r["model"]) if r["model"] in cfg["ensembles"] else [r["model"]]
            paths = set().union(*(benchmark_files(configfiles, dataset, m, workdir) for m in members))
            # a run made before its rule had a `benchmark:` lacks that file: count it, do not guess its time
            found = [path for path in paths if (workdir / path).is_file()]
            row["job_s"] = sum(float(pd.read_csv(workdir / path, sep="\t")["s"].mean()) for path in found)
            row["jobs_not_benchmarked"] = len(paths) - len(found)
        rows.append(row)
    return pd.DataFrame(rows)


def worker_xr_transformer(cfg: dict) -> None:
    """PECOS XR-Transformer with its defaults (PIFA tree, 16-way, leaves <= 100 labels; one fine-tuning
    per level; linear rankers), run in ``--xrt-python``; writes pred.npz and times.json to cfg['work']."""
    import resource

    import numpy as np
    import scipy.sparse as sp
    import torch
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xtransformer.model import XTransformer
    from pecos.xmc.xtransformer.module import MLProblemWithText

    torch.set_num_threads(cfg["threads"])
    data, work = Path(cfg["data"]), Path(cfg["work"])
    load = lambda name: sp.load_npz(data / name).tocsr().astype(np.float32)
    X, Y, Xt = load("tfidf/X.train.npz"), load("prepared/Y.train.npz"), load("tfidf/X.test.npz")
    texts = lambda split: (data / "prepared" / f"{split}.txt").read_text(encoding="utf-8").split("\n")[:-1]
    tp = XTransformer.TrainParams.from_dict({}, recursive=True)
    pp = XTransformer.PredParams.from_dict({}, recursive=True)
    m = tp.matcher_params_chain
    m.model_shortcut, m.max_steps, m.batch_size = cfg["encoder_dir"], cfg["steps"], cfg["batch_size"]
    m.use_gpu, m.save_steps, m.logging_steps = False, 10**9, max(1, cfg["steps"] // 4)
    pp.matcher_params_chain.truncate_length = cfg["max_length"]
    t0 = time.perf_counter()
    clustering = Indexer.gen(LabelEmbeddingFactory.create(Y, X, method="pifa"),
                             train_params=tp.preliminary_indexer_params)
    model = XTransformer.train(MLProblemWithText(texts("train"), Y, X_feat=X), clustering=clustering,
                               train_params=tp, pred_params=pp)
    t1 = time.perf_counter()
    pred = model.predict(texts("test"), X_feat=Xt, only_topk=TOP_K, batch_size=64)
    t2 = time.perf_counter()
    sp.save_npz(work / "pred.npz", sp.csr_matrix(pred))
    (work / "times.json").write_text(json.dumps({
        "train_s": t1 - t0, "predict_s": t2 - t1, "levels": len(clustering),
        "peak_mem_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def xr_transformer_row(args, config: dict, workdir: Path) -> dict:
    from xmc.encoders import resolve_encoder
    from xmc.io import load_csr
    from xmc.metrics import precision_recall_at_k

    encoder = config["encoders"][config["matchers"][0]]
    matcher = {**config.get("matcher", {}), **encoder.get("matcher", {})}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"data": str(workdir / "results" / args.dataset), "work": str(work), "threads": args.threads,
           "encoder_dir": str(resolve_encoder(encoder["model"])), "max_length": encoder.get("max_length", 128),
           "batch_size": matcher.get("batch_size", 32), "steps": args.steps}
    subprocess.run([args.xrt_python, "-m", "bench.xtransformer", "--worker", json.dumps(cfg)], check=True, cwd=ROOT,
                   env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    times = json.loads((work / "times.json").read_text())
    scores = precision_recall_at_k(load_csr(work / "pred.npz"),
                                   load_csr(workdir / "results" / args.dataset / "prepared" / "Y.test.npz"), (1, 3, 5))
    return {"system": "pecos-xr-transformer", **scores, "job_s": times["train_s"] + times["predict_s"]}


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--configfile", nargs="+", default=["config/eurlex57k.yaml", "config/eurlex57k-related.yaml"],
                   help="the run's config files, in order (default: the grid and its related systems)")
    p.add_argument("--dataset", default="eurlex57k")
    p.add_argument("--no-run", action="store_true", help="only read the last run's outputs")
    p.add_argument("--xrt-python", help="an interpreter with libpecos and its transformers pin: adds PECOS "
                   "XR-Transformer on the run's own data (off when unset)")
    p.add_argument("--steps", type=int, default=200, help="PECOS XR-Transformer's optimiser steps per level")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / "results" / "bench" / "pecos-xr-transformer"))
    p.add_argument("--out", help="also write the table here (.csv)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_xr_transformer(json.loads(args.worker))
        return
    if not args.no_run:
        subprocess.run(snakemake_cmd(ROOT, *args.configfile), cwd=ROOT, check=True)
    table = workflow_rows(args.configfile, args.dataset)
    if args.xrt_python:
        config = merged_config(*(ROOT / f for f in args.configfile))
        table = pd.concat([table, pd.DataFrame([xr_transformer_row(args, config, ROOT)])], ignore_index=True)
    table = table.sort_values("P@1", ascending=False)
    print(f"{args.dataset}, {' '.join(args.configfile)}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    if args.out:
        write_csv(table, args.out, float_format="%.4g")


if __name__ == "__main__":
    main()
