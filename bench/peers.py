#!/usr/bin/env python
"""Our linear-only path against PECOS XR-Linear and omikuji, on the same TF-IDF features, one run.

Run by hand (see bench/README.md for the peer virtual environment):

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/peers.py \
        --data /tmp/eurlex/EURLEX57K --peers-python /work/venv-peers/bin/python

Steps: read the dataset with the project's reader, fit one TF-IDF (xmc.features, uni+bigram) on the
training texts, write X/Y of both splits to ``--work`` as .npz, then train and predict each system
in its own subprocess (ours with this interpreter, the peers with ``--peers-python``; nothing of
theirs is imported here). Each worker writes its top-20 test predictions (CSR (N_test, L)) and its
times; the peak memory is the max RSS of the worker process tree (``os.wait4``). Metrics are all
computed here with ``xmc.metrics``. Prints one table with our/peer ratios and writes ``--out``.

The worker functions at the bottom import only numpy/scipy and the peer's own package, so that they
run in the peers' environment.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("ours", "xr-linear", "omikuji")
TOP_K = 20


# ----------------------------------------------------------------------------- workers (subprocess)
def _load(work: Path):
    X = sp.load_npz(work / "X.train.npz").tocsr().astype(np.float32)
    Y = sp.load_npz(work / "Y.train.npz").tocsr().astype(np.float32)
    Xt = sp.load_npz(work / "X.test.npz").tocsr().astype(np.float32)
    for M in (X, Y, Xt):
        M.sort_indices()
    return X, Y, Xt


def _finish(work: Path, name: str, pred, t_train: float, t_pred: float, extra: dict | None = None):
    pred = sp.csr_matrix(pred, dtype=np.float32)
    sp.save_npz(work / f"pred.{name}.npz", pred)
    info = {"train_s": t_train, "predict_s": t_pred, "n_test": int(pred.shape[0]), **(extra or {})}
    (work / f"times.{name}.json").write_text(json.dumps(info))


def worker_ours(work: Path, threads: int):
    from xmc.indexing import BalancedKMeans, default_n_clusters
    from xmc.label_repr import pifa
    from xmc.matcher.linear import LinearMatcher
    from xmc.indexing import cluster_targets
    from xmc.ranker import Ranker

    cfg = json.loads((work / "ours.json").read_text())
    X, Y, Xt = _load(work)
    times = {}
    t0 = time.perf_counter()
    k = cfg["n_clusters"] or default_n_clusters(Y.shape[1])
    # PIFA is not kept: it is only the indexer's input (the workflow computes it in its own job)
    C = BalancedKMeans(k, max_iter=20, seed=0, n_jobs=threads).fit(pifa(Y, X)).C_
    times["index_s"] = time.perf_counter() - t0
    M = cluster_targets(Y, C)
    matcher = LinearMatcher(C=1.0, threshold=cfg["threshold"], top_b=cfg["top_b"], n_jobs=threads,
                            branching=cfg["branching"]).fit(X, M)
    times["matcher_s"] = time.perf_counter() - t0 - sum(times.values())
    M_train = matcher.predict(X)
    times["matcher_predict_train_s"] = time.perf_counter() - t0 - sum(times.values())
    ranker = Ranker(negatives=cfg["negatives"], C=1.0, threshold=cfg["threshold"], n_jobs=threads)
    ranker.fit(X, Y, C, M_train)
    times["ranker_s"] = time.perf_counter() - t0 - sum(times.values())
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    M_test = matcher.predict(Xt)
    times["predict_matcher_s"] = time.perf_counter() - t1
    pred = ranker.predict(Xt, M_test, combine="noop", top_k=TOP_K)
    t_pred = time.perf_counter() - t1
    _finish(work, "ours", pred, t_train, t_pred,
            {**{k_: round(v, 1) for k_, v in times.items()}, "n_clusters": k,
             "model_nnz": int(sum(W.nnz for W in matcher.levels_) + ranker.W_.nnz)})


def worker_xr_linear(work: Path, threads: int):
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    X, Y, Xt = _load(work)
    t0 = time.perf_counter()
    label_feat = LabelEmbeddingFactory.create(Y, X, method="pifa")
    cluster_chain = Indexer.gen(label_feat)  # defaults: hierarchical k-means, leaves of <= 100 labels
    model = XLinearModel.train(X, Y, C=cluster_chain)  # defaults: C=1, threshold 0.1, bias 1
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    pred = model.predict(Xt, only_topk=TOP_K)  # default beam size 10
    t_pred = time.perf_counter() - t1
    _finish(work, "xr-linear", pred, t_train, t_pred)


def _write_omikuji(path: Path, X, Y):
    """omikuji's (Extreme Classification Repository) text format: header, then 'l1,l2 f:v ...'."""
    with open(path, "w") as f:
        f.write(f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}\n")
        for i in range(X.shape[0]):
            labels = ",".join(map(str, Y.indices[Y.indptr[i]:Y.indptr[i + 1]]))
            s, e = X.indptr[i], X.indptr[i + 1]
            feats = " ".join(f"{j}:{v:.6g}" for j, v in zip(X.indices[s:e], X.data[s:e]))
            f.write(f"{labels} {feats}\n")


def worker_omikuji(work: Path, threads: int):
    import omikuji

    X, Y, Xt = _load(work)
    data = work / "omikuji.train.txt"
    _write_omikuji(data, X, Y)  # file preparation, not counted as training
    t0 = time.perf_counter()
    model = omikuji.Model.train_on_data(str(data), omikuji.Model.default_hyper_param())
    t_train = time.perf_counter() - t0
    rows, cols, vals = [], [], []
    t1 = time.perf_counter()
    for i in range(Xt.shape[0]):
        s, e = Xt.indptr[i], Xt.indptr[i + 1]
        for label, score in model.predict(list(zip(Xt.indices[s:e].tolist(), Xt.data[s:e].tolist())),
                                          top_k=TOP_K):
            rows.append(i)
            cols.append(label)
            vals.append(score)
    t_pred = time.perf_counter() - t1
    pred = sp.csr_matrix((vals, (rows, cols)), shape=(Xt.shape[0], Y.shape[1]))
    _finish(work, "omikuji", pred, t_train, t_pred)


WORKERS = {"ours": worker_ours, "xr-linear": worker_xr_linear, "omikuji": worker_omikuji}


# ----------------------------------------------------------------------------- driver
def prepare(args, work: Path) -> dict:
    from xmc.data.readers import read_dataset
    from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
    from xmc.io import save_csr, save_json

    data = Path(args.data)
    if not data.exists():
        raise SystemExit(f"--data {data}: no such folder (extract the EURLEX57K archive first)")
    t0 = time.perf_counter()
    ds = read_dataset(args.format, data)
    print(f"read {len(ds.train_texts)} train / {len(ds.test_texts)} test documents, "
          f"{ds.Y_train.shape[1]} labels in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    vec, X = fit_tfidf(ds.train_texts, TfidfParams())
    Xt = transform_tfidf(vec, ds.test_texts)
    t_tfidf = time.perf_counter() - t0
    print(f"TF-IDF {X.shape}, {X.nnz} nonzeros, in {t_tfidf:.0f} s", flush=True)
    save_csr(work / "X.train.npz", X)
    save_csr(work / "X.test.npz", Xt)
    save_csr(work / "Y.train.npz", ds.Y_train)
    save_csr(work / "Y.test.npz", ds.Y_test)
    meta = {"n_train": X.shape[0], "n_test": Xt.shape[0], "n_features": X.shape[1],
            "n_labels": int(ds.Y_train.shape[1]), "tfidf_s": t_tfidf}
    save_json(work / "meta.json", meta)
    return meta


def _command(name: str, python: str, work: Path, threads: int, extra=(), script=None) -> list[str]:
    return [python, str(Path(script or __file__).resolve()), "--worker", name, "--work", str(work),
            "--threads", str(threads), *extra]


def _collect(name: str, work: Path, status: int, usage, wall: float) -> dict:
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"[{name}] worker failed with exit code {rc}")
    # Linux: ru_maxrss of a waited child is the max over it and its waited-for descendants, in KiB.
    info = json.loads((work / f"times.{name}.json").read_text())
    info.update(peak_mem_mib=usage.ru_maxrss / 1024, worker_wall_s=wall)
    return info


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def run_worker(name: str, python: str, work: Path, threads: int, extra=(), script=None) -> dict:
    """Run ``script --worker name`` with ``python``; return its times plus peak memory and wall time."""
    cmd = _command(name, python, work, threads, extra, script)
    print(f"[{name}] {' '.join(cmd)}  (load {open('/proc/loadavg').read().split()[0]})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env())
    _, status, usage = os.wait4(proc.pid, 0)
    return _collect(name, work, status, usage, time.perf_counter() - t0)


def run_concurrently(jobs: dict, work: Path, threads: int) -> dict:
    """All workers at once ({name: python}); each one's figures come from its own process tree."""
    t0 = time.perf_counter()
    procs = {}
    for name, python in jobs.items():
        cmd = _command(name, python, work, threads)
        print(f"[{name}] {' '.join(cmd)}  (load {open('/proc/loadavg').read().split()[0]})", flush=True)
        procs[subprocess.Popen(cmd, env=_env()).pid] = name
    infos = {}
    while procs:
        pid, status, usage = os.wait4(-1, 0)
        if pid in procs:
            name = procs.pop(pid)
            infos[name] = _collect(name, work, status, usage, time.perf_counter() - t0)
            print(f"[{name}] done after {time.perf_counter() - t0:.0f} s "
                  f"(load {open('/proc/loadavg').read().split()[0]})", flush=True)
    return infos


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/eurlex57k/EURLEX57K"),
                   help="dataset folder (extracted EURLEX57K archive)")
    p.add_argument("--format", default="eurlex57k", help="xmc.data.readers format of --data")
    p.add_argument("--work", default=str(ROOT / "results/bench/peers_work"),
                   help="folder for the shared features and the workers' outputs")
    p.add_argument("--out", default=str(ROOT / "results/bench/peers.csv"))
    p.add_argument("--peers-python", default="/work/venv-peers/bin/python",
                   help="interpreter of the environment with libpecos and omikuji")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list out of {SYSTEMS}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="worker processes/threads for ours (the peers use all CPUs by default)")
    p.add_argument("--n-clusters", type=int, default=256,
                   help="ours: clusters K of the pifa-tfidf indexer (0: the original code's rule, "
                        "64 here); 256 leaves ~16 labels per cluster, like PECOS's tree")
    p.add_argument("--branching", type=int, default=16,
                   help="ours: tree matcher with levels of 16, 256, ... nodes (0: flat one-vs-all)")
    p.add_argument("--top-b", type=int, default=10, help="ours: clusters kept per row (beam)")
    p.add_argument("--threshold", type=float, default=0.01, help="ours: |w| below it becomes 0")
    p.add_argument("--negatives", default="tfn+man", help="ours: ranker negatives")
    p.add_argument("--concurrent", action="store_true",
                   help="start all systems at once (on a CPU shared with other jobs, each then sees the "
                        "same outside load) instead of one after the other")
    p.add_argument("--collect", metavar="MEM_JSON", nargs="?", const="",
                   help="only build the table from the workers' files already in --work (for a run "
                        "whose driver did not finish); peak memory in MiB per system from MEM_JSON "
                        "({name: MiB}, e.g. VmHWM read from /proc while the workers ran)")
    p.add_argument("--reuse-features", action="store_true",
                   help="reuse the TF-IDF in --work from an earlier run instead of refitting it")
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work)
    if args.worker:
        WORKERS[args.worker](work, args.threads)
        return

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"--systems: unknown {bad}; expected some of {SYSTEMS}")
    work.mkdir(parents=True, exist_ok=True)
    load_start = open("/proc/loadavg").read().strip()
    if args.collect is not None:
        meta = json.loads((work / "meta.json").read_text())
    elif args.reuse_features and (work / "meta.json").is_file():
        meta = json.loads((work / "meta.json").read_text())
        print(f"reusing features in {work}: {meta}", flush=True)
    else:
        meta = prepare(args, work)

    from xmc.io import load_csr, save_json
    from xmc.metrics import precision_recall_at_k

    ours_cfg = {"n_clusters": args.n_clusters or None, "branching": args.branching or None,
                "top_b": args.top_b, "threshold": args.threshold, "negatives": args.negatives}
    if args.collect is None:
        save_json(work / "ours.json", ours_cfg)
    print(f"ours: {ours_cfg}", flush=True)
    Y_test = load_csr(work / "Y.test.npz")
    rows = []
    pythons = {name: sys.executable if name == "ours" else args.peers_python for name in systems}
    if args.collect is not None:
        mem = json.loads(Path(args.collect).read_text()) if args.collect else {}
        systems = [n for n in systems if (work / f"times.{n}.json").is_file()]
        done = {n: {**json.loads((work / f"times.{n}.json").read_text()),
                    "peak_mem_mib": float(mem.get(n, "nan"))} for n in systems}
    elif args.concurrent:
        done = run_concurrently(pythons, work, args.threads)
    for name in systems:
        info = done[name] if args.concurrent or args.collect is not None else run_worker(
            name, pythons[name], work, args.threads)
        metrics = precision_recall_at_k(load_csr(work / f"pred.{name}.npz"), Y_test, (1, 3, 5))
        row = {"system": name, **{k: round(v, 2) for k, v in metrics.items()},
               "train_s": round(info["train_s"], 1),
               "predict_ms_per_1k": round(1000 * 1000 * info["predict_s"] / info["n_test"], 1),
               "peak_mem_mib": round(info["peak_mem_mib"], 0)}
        print(f"[{name}] {row}  extra={ {k: v for k, v in info.items() if k not in row} }", flush=True)
        rows.append(row)
    load_end = open("/proc/loadavg").read().strip()
    if not rows:
        print(f"features ready in {work}; no system run")
        return

    import pandas as pd

    table = pd.DataFrame(rows).set_index("system")
    if "ours" in table.index:
        for peer in [s for s in table.index if s != "ours"]:
            ratio = table.loc["ours"] / table.loc[peer]
            table.loc[f"ours/{peer}"] = ratio.round(3)
    write_table(table, Path(args.out), load_start, load_end,
                f"data: {meta['n_train']} train / {meta['n_test']} test, {meta['n_labels']} labels, "
                f"{meta['n_features']} TF-IDF features; threads for ours: {args.threads}")



def write_table(table, out: Path, load_start: str, load_end: str, about: str) -> None:
    """Write the side-by-side table as CSV (with the load averages) and print it (bench/peers.py and
    bench/xtransformer.py)."""
    import pandas as pd

    from xmc.io import atomic_path

    table["load_start"] = load_start.split()[0]
    table["load_end"] = load_end.split()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["load_start", "load_end"]).to_string())
    print(about)
    print(f"load average at start: {load_start}; at end: {load_end}")
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
