"""Latency and throughput of exported bundles, beside PECOS XR-Linear's predict on the same TF-IDF.

Per bundle: per-query latency (p50/p95 over --n-queries test texts, one text per call, text in ->
labels out, TF-IDF and tokenization included) and batch throughput (all test texts in one call,
--batch-size texts per encoder pass). "tfidf only" is the vectorizer's share. PECOS XR-Linear is
trained on the run's X.train/Y.train with its defaults (PIFA, hierarchical 2-means, beam --top-b)
and timed on X.test rows: features in, so it does not pay for TF-IDF.

On the default run's bundles (after `snakemake`):

    python -m bench.latency                      # CPU; PECOS through .venv-peers/bin/python

Without a workflow run (e.g. on a GPU machine): build a linear and a MiniLM-sized bundle from the
embedded sample (the encoder has all-MiniLM-L6-v2's shape with random weights and a WordPiece
vocabulary trained on the sample: right for timing, meaningless labels), then time them:

    python -m bench.latency --make-bundles /tmp/bundles --device cuda
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from bench.common import parser, stamp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LINEAR = "pifa-tfidf.linear.tfidf.tfn+man.noop"
MINILM = "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"
SAMPLE = REPO / "data" / "eurlex57k-sample" / "eurlex57k-sample.tar.gz"
# all-MiniLM-L6-v2's architecture (BERT, 6 layers, 384 hidden, 12 heads, 1536 inner, 30522 tokens)
MINILM_SHAPE = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, max_position_embeddings=512)


def percentiles(seconds):
    ms = np.asarray(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def time_bundle(path, texts, n_queries, batch_size, device):
    from xmc.bundle import load

    t0 = time.perf_counter()
    bundle = load(path, device=device)
    load_s = time.perf_counter() - t0
    for t in texts[:3]:  # warm-up: first calls allocate, JIT-select kernels, fill caches
        bundle.predict_scores([t], batch_size=1)
    single = []
    for t in texts[:n_queries]:
        t0 = time.perf_counter()
        bundle.predict_scores([t], batch_size=1)
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    bundle.predict_scores(texts, batch_size=batch_size)
    batch_s = time.perf_counter() - t0
    p50, p95 = percentiles(single)
    return bundle, {"load_s": load_s, "p50_ms": p50, "p95_ms": p95, "texts_per_s": len(texts) / batch_s}


def time_tfidf(bundle, texts, n_queries):
    from xmc.features import transform_tfidf

    vectorizer = bundle._models[0].vectorizer
    single = []
    for t in texts[:n_queries]:
        t0 = time.perf_counter()
        transform_tfidf(vectorizer, [t])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    transform_tfidf(vectorizer, texts)
    p50, p95 = percentiles(single)
    return {"p50_ms": p50, "p95_ms": p95, "texts_per_s": len(texts) / (time.perf_counter() - t0)}


def time_pecos(python, data, n_queries, top_k, top_b, threads):
    cmd = [python, str(REPO / "bench" / "pecos_xrlinear.py"), str(data["X_train"]), str(data["Y_train"]),
           str(data["X_test"]), str(n_queries), str(top_k), str(top_b), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"PECOS failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wordpiece_tokenizer(texts, folder: Path):
    """A BERT WordPiece tokenizer with MiniLM's vocabulary size, trained on ``texts``."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=MINILM_SHAPE["vocab_size"], show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(folder))
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)


def make_bundles(dest: Path, n_train: int | None, device: str, max_length: int, threads: int) -> dict:
    """Train a linear and a random-MiniLM-shaped model on the embedded sample; export both."""
    import pickle

    import torch
    from transformers import BertConfig, BertModel

    from xmc.bundle import export_bundle
    from xmc.data.download import fetch
    from xmc.data.readers import read_eurlex57k
    from xmc.features import TfidfParams, fit_tfidf, tokenize, transform_tfidf
    from xmc.indexing import BalancedKMeans, IndexerParams
    from xmc.io import save_csr, write_lines
    from xmc.label_repr import pifa
    from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams
    from xmc.matcher.transformer import MatcherParams, TransformerMatcher
    from xmc.features import ranker_features
    from xmc.indexing import cluster_targets
    from xmc.ranker import Ranker

    work = dest / "work"
    data = {"test": work / "test.txt", "X_train": work / "X.train.npz", "Y_train": work / "Y.train.npz",
            "X_test": work / "X.test.npz", "models": dest}
    if all((dest / name / "manifest.json").is_file() for name in (LINEAR, MINILM)):
        print(f"reusing the bundles in {dest}", file=sys.stderr)  # e.g. a CPU run after a GPU run
        return data
    work.mkdir(parents=True, exist_ok=True)
    ds = read_eurlex57k(fetch(str(SAMPLE), work / "raw"))
    train, Y = ds.train_texts[:n_train], ds.Y_train[:n_train]
    write_lines(work / "test.txt", ds.test_texts)
    write_lines(work / "label_names.txt", ds.label_names)
    vectorizer, X = fit_tfidf(train, TfidfParams(min_df=2))
    X_test = transform_tfidf(vectorizer, ds.test_texts)
    with open(work / "vectorizer.pkl", "wb") as f:
        pickle.dump(vectorizer, f)
    for name, m in (("X.train.npz", X), ("Y.train.npz", Y), ("X.test.npz", X_test)):
        save_csr(work / name, m)
    C = BalancedKMeans.train(pifa(Y, X), IndexerParams(seed=0)).C_
    save_csr(work / "C.npz", C)
    M = cluster_targets(Y, C)
    common = dict(vectorizer=work / "vectorizer.pkl", assignment=work / "C.npz",
                  label_names=work / "label_names.txt", combine="noop", top_b=10, top_k=20,
                  dataset="eurlex57k-sample")

    print("linear matcher and ranker ...", file=sys.stderr)
    linear = LinearMatcher.train(X, M, pred_params=LinearMatcherPredParams(top_b=10), n_jobs=threads)
    linear.save(work / "linear.npz")
    Ranker.train(X, Y, C, linear.predict(X), n_jobs=threads).save(work / "ranker-linear.npz")
    export_bundle(dest / LINEAR, name=LINEAR, matcher=work / "linear.npz", ranker=work / "ranker-linear.npz",
                  ranker_input="tfidf", **common)

    print("random MiniLM-shaped matcher and ranker ...", file=sys.stderr)
    enc = work / "encoder"
    tokenizer = _wordpiece_tokenizer(train, enc)
    torch.manual_seed(0)
    BertModel(BertConfig(pad_token_id=tokenizer.pad_token_id, **MINILM_SHAPE)).save_pretrained(str(enc))
    tokenizer.save_pretrained(str(enc))
    tok = tokenize(train, str(enc), max_length)
    params = MatcherParams(max_steps=1, warmup_steps=0, batch_size=16, pooling="mean", device=device,
                           checkpoint_every=0, top_b=10)
    TransformerMatcher.train(str(enc), tok["input_ids"], tok["attention_mask"], M, params).save(work / "matcher")
    matcher = TransformerMatcher.load(work / "matcher", device=device)
    topb, emb = matcher.predict(tok["input_ids"], tok["attention_mask"])
    Ranker.train(ranker_features(X, emb), Y, C, topb, n_jobs=threads).save(work / "ranker-minilm.npz")
    export_bundle(dest / MINILM, name=MINILM, matcher=work / "matcher", ranker=work / "ranker-minilm.npz",
                  ranker_input="tfidf+neural", max_length=max_length, **common)
    return data


def main(argv=None) -> int:
    ap = parser(__doc__, __spec__)
    ap.add_argument("--results", default=str(REPO / "results" / "eurlex57k-sample"),
                    help="a dataset's results folder (models/, tfidf/, prepared/)")
    ap.add_argument("--bundles", nargs="+", default=[LINEAR, MINILM], help="bundle names under models/")
    ap.add_argument("--make-bundles", metavar="DIR",
                    help="build a linear and a random MiniLM-shaped bundle from the embedded sample in DIR "
                         "(reused if already there) and time those (no workflow run needed)")
    ap.add_argument("--n-train", type=int, default=None, help="with --make-bundles: training texts to use")
    ap.add_argument("--max-length", type=int, default=64, help="with --make-bundles: token length")
    ap.add_argument("--n-queries", type=int, default=200, help="texts timed one by one")
    ap.add_argument("--batch-size", type=int, default=64, help="texts per encoder pass in the batch run")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (our bundles' matchers)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (torch and PECOS)")
    ap.add_argument("--peers-python", default=str(REPO / ".venv-peers" / "bin" / "python"),
                    help="a Python with libpecos for XR-Linear; skipped if absent")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from xmc.io import read_lines

    torch.set_num_threads(args.threads)
    if args.make_bundles:
        data = make_bundles(Path(args.make_bundles), args.n_train, args.device, args.max_length, args.threads)
    else:
        res = Path(args.results)
        data = {"test": res / "prepared" / "test.txt", "X_train": res / "tfidf" / "X.train.npz",
                "Y_train": res / "prepared" / "Y.train.npz", "X_test": res / "tfidf" / "X.test.npz",
                "models": res / "models"}
    texts = read_lines(data["test"])
    rows = {}
    first = None
    for name in args.bundles:
        bundle, rows[name] = time_bundle(data["models"] / name, texts, args.n_queries, args.batch_size,
                                         args.device)
        first = first or bundle
    rows["(tfidf only)"] = time_tfidf(first, texts, args.n_queries)
    if Path(args.peers_python).exists():
        pecos = time_pecos(args.peers_python, data, args.n_queries, first.top_k,
                           first._models[0].manifest["top_b"], args.threads)
        if pecos:
            rows["PECOS XR-Linear (features in)"] = {"p50_ms": pecos["p50_ms"], "p95_ms": pecos["p95_ms"],
                                                     "texts_per_s": pecos["batch_texts_per_s"],
                                                     "train_s": pecos["train_s"]}
    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(0)})"
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else "?"
    print(f"\n{len(texts)} test texts; {args.n_queries} timed one by one; batch size {args.batch_size}; "
          f"device {device}; {args.threads} threads; torch {torch.__version__}; "
          f"python {platform.python_version()}; load average {' '.join(load)}\n")
    print("| model | p50 ms (batch 1) | p95 ms (batch 1) | batch texts/s |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['texts_per_s']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "threads": args.threads, "rows": rows, **stamp()},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
