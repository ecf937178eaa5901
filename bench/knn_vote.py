#!/usr/bin/env python
"""Sweep the nearest documents' vote (``matcher.knn``) over a run's validation embeddings.

    python -m bench.knn_vote results/eurlex57k --indexer pifa-tfidf --encoder minilm \
        --k 100,200,400 --power 4,8 --head-weight 0.1,0.2 --pretrained-weight 0,0.5,0.7

The argument is a dataset folder of a workflow run (``results/<dataset>``) whose matcher has been
predicted (``matcher/<indexer>/<encoder>/emb.{train,valid}.npy`` and ``topb.valid.npz``; with a
pretrained weight above 0 also ``pretrained/<encoder>/emb.{train,valid}.npy``, rule
embed_pretrained). Every setting of the grid shortlists the validation documents as rule
knn_shortlist does (xmc.matcher.knn: the training documents as the memory, the run's top-b) and
prints its label recall
(xmc.metrics.shortlist_recall), best first, beside the head's and, when the run has built it, the
linear tree's on the same clusters. Only validation documents are read: a setting picked here is
picked honestly.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import parser, write_csv
from xmc.io import load_csr
from xmc.indexing import cluster_targets
from xmc.matcher.knn import knn_embedding, knn_shortlist
from xmc.metrics import shortlist_recall


def _numbers(text: str, kind=float) -> list:
    return [kind(v) for v in text.split(",") if v]


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("dataset_folder", type=Path)
    p.add_argument("--indexer", default="pifa-tfidf")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--k", default="100,200,400")
    p.add_argument("--power", default="4,8")
    p.add_argument("--head-weight", default="0.1,0.2")
    p.add_argument("--pretrained-weight", default="0")
    p.add_argument("--out", type=Path, help="also write the rows to this CSV")
    args = p.parse_args(argv)
    folder = args.dataset_folder
    matcher = folder / "matcher" / args.indexer / args.encoder
    C = load_csr(folder / "indexer" / args.indexer / "C.npz")
    Y_valid = load_csr(folder / "prepared" / "Y.valid.npz")
    fine_tuned = {split: np.load(matcher / f"emb.{split}.npy") for split in ("train", "valid")}
    pretrained_weights = _numbers(args.pretrained_weight)
    pretrained = ({split: np.load(folder / "pretrained" / args.encoder / f"emb.{split}.npy")
                   for split in ("train", "valid")} if any(pretrained_weights) else {})
    head = load_csr(matcher / "topb.valid.npz")
    top_b = int(np.diff(head.indptr).max())
    memory_clusters = cluster_targets(load_csr(folder / "prepared" / "Y.train.npz"), C)
    print(f"{args.indexer} x {args.encoder}: {Y_valid.shape[0]} validation documents, memory of "
          f"{memory_clusters.shape[0]}, top-{top_b} of {C.shape[1]} clusters")
    print(f"head: {shortlist_recall(head, Y_valid, C)['label_recall']:.2f}")
    tree = folder / "matcher" / args.indexer / "linear" / "topb.valid.npz"
    if tree.exists():
        print(f"linear tree on TF-IDF: {shortlist_recall(load_csr(tree), Y_valid, C)['label_recall']:.2f}")
    rows = []
    for weight in pretrained_weights:
        memory, queries = (knn_embedding(fine_tuned[split], pretrained.get(split), weight) for split in ("train", "valid"))
        for k, power, head_weight in itertools.product(_numbers(args.k, int), _numbers(args.power),
                                                       _numbers(args.head_weight)):
            M = knn_shortlist(queries, memory, memory_clusters, top_b, k=k, power=power, head=head,
                              head_weight=head_weight)
            rows.append({"pretrained_weight": weight, "k": k, "power": power, "head_weight": head_weight,
                         "recall": round(shortlist_recall(M, Y_valid, C)["label_recall"], 2)})
    rows.sort(key=lambda r: -r["recall"])
    print(f"{'pretrained_weight':>17} {'k':>5} {'power':>6} {'head_weight':>12} {'recall@' + str(top_b):>10}")
    for r in rows:
        print(f"{r['pretrained_weight']:>17g} {r['k']:>5} {r['power']:>6g} {r['head_weight']:>12g} {r['recall']:>10.2f}")
    if args.out:
        write_csv(pd.DataFrame(rows).assign(indexer=args.indexer, encoder=args.encoder), args.out)


if __name__ == "__main__":
    main()
