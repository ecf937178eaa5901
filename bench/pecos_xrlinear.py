"""PECOS XR-Linear on given TF-IDF features: train, then time predict at batch 1 and in batch.

Run by bench/latency.py as a file with the peers' Python (environment-peers.yml); never imported by xmc.
Usage: pecos_xrlinear.py X_train.npz Y_train.npz X_test.npz N_QUERIES TOP_K BEAM THREADS
Prints one JSON object: train_s, p50_ms, p95_ms, batch_texts_per_s, n_batch.
"""
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel

x_train, y_train, x_test, n_queries, top_k, beam, threads = sys.argv[1:8]
n_queries, top_k, beam, threads = int(n_queries), int(top_k), int(beam), int(threads)
X = sp.load_npz(x_train).tocsr().astype(np.float32)
Y = sp.load_npz(y_train).tocsr().astype(np.float32)
Xt = sp.load_npz(x_test).tocsr().astype(np.float32)
start = time.perf_counter()
# PECOS's defaults (PIFA, hierarchical 2-means), as a user of XR-Linear would run it.
chain = Indexer.gen(LabelEmbeddingFactory.create(Y, X, method="pifa"), threads=threads)
model = XLinearModel.train(X, Y, C=chain, threads=threads)
train_s = time.perf_counter() - start
kw = dict(beam_size=beam, only_topk=top_k, threads=threads)
model.predict(Xt[:8], **kw)  # warm-up
times = []
for i in range(min(n_queries, Xt.shape[0])):
    t0 = time.perf_counter()
    model.predict(Xt[i:i + 1], **kw)
    times.append(time.perf_counter() - t0)
t0 = time.perf_counter()
model.predict(Xt, **kw)
batch_s = time.perf_counter() - t0
ms = np.array(times) * 1000
print(json.dumps({"train_s": train_s, "p50_ms": float(np.percentile(ms, 50)),
                  "p95_ms": float(np.percentile(ms, 95)), "batch_texts_per_s": Xt.shape[0] / batch_s,
                  "n_batch": int(Xt.shape[0])}))
