#!/usr/bin/env python
"""How much of a split's truth each matcher's shortlist leaves its rankers, read from a run.

    python -m bench.shortlist_recall results/eurlex57k --split valid

The argument is a dataset folder of a workflow run (``results/<dataset>``). For every
``matcher/<indexer>/<matcher>/**/topb.<split>.npz`` it prints the matcher's top-b size and
xmc.metrics.shortlist_recall against ``prepared/Y.<split>.npz`` and ``indexer/<indexer>/C.npz``
(the results table's ``shortlist_recall`` column holds the label recall of each model): the
share of true (document, label) pairs whose cluster is shortlisted, and of documents with at least
one such label. A ranker cannot score what its shortlist drops, so these bound its R@k.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.common import parser
from xmc.io import load_csr
from xmc.metrics import shortlist_recall


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("dataset_folder", type=Path)
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    args = p.parse_args(argv)
    folder = args.dataset_folder
    Y = load_csr(folder / "prepared" / f"Y.{args.split}.npz")
    print(f"{'matcher (indexer/matcher)':<55} {'b':>5} {'label recall %':>15} {'docs reachable %':>17}")
    for topb in sorted((folder / "matcher").glob(f"*/*/**/topb.{args.split}.npz")):
        rel = topb.parent.relative_to(folder / "matcher")
        C = load_csr(folder / "indexer" / rel.parts[0] / "C.npz")
        M = load_csr(topb)
        if M.shape[1] != C.shape[1]:  # a level of XR-Transformer's tree above the indexer's clusters
            print(f"{str(rel):<55} {'':>5} {'(' + str(M.shape[1]) + ' of ' + str(C.shape[1]) + ' clusters: skipped)':>33}")
            continue
        r = shortlist_recall(M, Y, C)
        print(f"{str(rel):<55} {np.diff(M.indptr).mean():>5.1f} {r['label_recall']:>15.2f} {r['instance_recall']:>17.2f}")


if __name__ == "__main__":
    main()
