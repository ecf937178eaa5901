#!/usr/bin/env python
"""Which members and rule make the best ensemble: every subset of a pool of models x every rule of
xmc.ensemble, scored on the predictions that workflow runs left, picked on some runs and checked on
another.

    python bench/ensemble_search.py \\
        --pick results/bench/ensembles/results/e57k-6k-s0 results/bench/ensembles/results/e57k-6k-s1 \\
        --check /path/to/eurlex57k-run/results/eurlex57k

``--pick`` and ``--check`` are dataset folders of workflow runs (``results/<dataset>``, holding
``predictions/`` and ``prepared/Y.test.npz``): bench/ensembles.py's seeded EURLEX57K subsets and the
full run of config/eurlex57k.yaml. Nothing is trained here; every ensemble is xmc.ensemble over the
workflow's own top-k predictions, so a rule found here runs in the workflow as an ``ensembles:``
entry of a config.

On the ``--pick`` runs every subset (2 to ``--max-size`` members) of ``--pool`` x every method is
scored; among the rules that beat their best member on every run, the ``--top`` with the highest
mean P@1 and the ``--top`` with the highest mean gain over their best member, and the first of each
method, are then scored on the ``--check`` run, which took no part in the choice. ``--ceiling`` also scores every rule on the
``--check`` run: the best of those is picked on the data it is scored on, so it is an upper bound of
what these members can give, not a result.

Writes ``--out`` (one row per run x rule: members, method, P@1/3/5, best member's P@1, gain, and the
role of the run: pick / check / ceiling; of the pick and ceiling rows, the ``--keep`` best rules by
P@1 and by gain) and prints the picks and their check.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peers import cpu  # noqa: E402
from xmc.ensemble import ENSEMBLE_METHODS, ensemble  # noqa: E402
from xmc.io import load_csr  # noqa: E402
from xmc.metrics import precision_recall_at_k  # noqa: E402

# The models every EURLEX57K run of bench/ensembles.py and config/eurlex57k.yaml predicts, under noop
# and l3-hinge: the three indexers' X-Transformer rankers and the linear models on phi_tfidf, phi_fnt
# (+) phi_tfidf (the concat model: on each indexer's tree, with its fine-tuned matcher's embeddings),
# phi_char and phi_tfidf (+) phi_char.
X_TRANSFORMER = ("pifa-tfidf.minilm.tfidf+neural.tfn+man", "text-emb.minilm.tfidf+neural.tfn+man",
                 "pifa-neural.minilm.tfidf+neural.tfn+man")
LINEAR = ("pifa-tfidf.linear.tfidf.tfn+man", "pifa-tfidf.linear.tfidf+fnt-minilm.tfn+man",
          "pifa-tfidf.linear.char.tfn+man", "pifa-tfidf.linear.tfidf+char.tfn+man",
          "text-emb.linear.tfidf+fnt-minilm.tfn+man", "pifa-neural.linear.tfidf+fnt-minilm.tfn+man")
POOL = [f"{m}.{sigma}" for sigma in ("noop", "l3-hinge") for m in X_TRANSFORMER + LINEAR]


class Run:
    """One dataset folder of a workflow run: its test labels and the pool's predictions."""

    def __init__(self, folder: Path, pool: list[str]):
        self.name = folder.name if folder.name != "results" else folder.parent.name
        self.Y = load_csr(folder / "prepared" / "Y.test.npz")
        missing = [m for m in pool if not (folder / "predictions" / f"{m}.npz").is_file()]
        if missing:
            raise SystemExit(f"{folder}: no predictions for {', '.join(missing)} (run the workflow there first)")
        self.preds = {m: load_csr(folder / "predictions" / f"{m}.npz") for m in pool}
        self.member_p1 = {m: self.score(p)["P@1"] for m, p in self.preds.items()}

    def score(self, pred) -> dict:
        return precision_recall_at_k(pred, self.Y, ks=(1, 3, 5))

    def rule(self, members: tuple[str, ...], method: str) -> dict:
        s = self.score(ensemble([self.preds[m] for m in members], method))
        best = max(self.member_p1[m] for m in members)
        return {"run": self.name, "members": "|".join(members), "n_members": len(members), "method": method,
                "P@1": round(s["P@1"], 2), "P@3": round(s["P@3"], 2), "P@5": round(s["P@5"], 2),
                "best_member_P@1": round(best, 2), "gain_P@1": round(s["P@1"] - best, 2)}


def rules(pool: list[str], max_size: int):
    for size in range(2, max_size + 1):
        for members in itertools.combinations(pool, size):
            for method in ENSEMBLE_METHODS:
                yield members, method


def ranked(pick_rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Rules by their mean ``by`` over the pick runs; those that gain on every run first."""
    g = pick_rows.groupby(["members", "method"])
    table = g[["P@1", "best_member_P@1", "gain_P@1"]].mean().round(2)
    table["gains_everywhere"] = g["gain_P@1"].min() > 0
    return table.sort_values(["gains_everywhere", by], ascending=False).reset_index()


def short(members: str) -> str:
    """A readable name: pifa-tfidf.minilm.tfidf+neural.tfn+man.noop -> pifa-tfidf.minilm.noop."""
    out = []
    for m in members.split("|"):
        parts = m.split(".")
        if len(parts) < 4:  # a peer (omikuji, xr-linear) or an ensemble
            out.append(m)
            continue
        out.append(".".join(parts[:2] + ([parts[2]] if parts[1] == "linear" else []) + parts[-1:]))
    return " | ".join(out)


def kept(rows: pd.DataFrame, keep: int) -> pd.DataFrame:
    """The rows worth a file: per pick run, the rules among the ``keep`` best picks by mean P@1 or by
    mean gain; every check row; the ``keep`` best ceiling rows by P@1 and by gain."""
    pick = rows[rows["role"] == "pick"]
    best = pd.concat([ranked(pick, by).head(keep) for by in ("P@1", "gain_P@1")])[["members", "method"]]
    pick = pick.merge(best.drop_duplicates(), on=["members", "method"])
    ceiling = rows[rows["role"] == "ceiling"]
    ceiling = pd.concat([ceiling.sort_values(by, ascending=False).head(keep) for by in ("P@1", "gain_P@1")])
    return pd.concat([pick, rows[rows["role"] == "check"], ceiling.drop_duplicates()], ignore_index=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pick", type=Path, nargs="+", required=True, help="dataset folders the rule is picked on")
    p.add_argument("--check", type=Path, help="the dataset folder the picks are checked on")
    p.add_argument("--pool", nargs="+", default=POOL, help="model names (their predictions/<name>.npz)")
    p.add_argument("--max-size", type=int, default=4)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--ceiling", action="store_true", help="also score every rule on --check (an upper bound)")
    p.add_argument("--keep", type=int, default=25, help="rules per criterion written to --out")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ensemble-search-eurlex57k.csv")
    args = p.parse_args(argv)

    all_rules = list(rules(args.pool, args.max_size))
    pick_runs = [Run(f, args.pool) for f in args.pick]
    rows = [dict(r.rule(m, meth), role="pick") for r in pick_runs for m, meth in all_rules]
    pick_table = pd.DataFrame(rows)
    by_p1, by_gain = ranked(pick_table, "P@1"), ranked(pick_table, "gain_P@1")
    picks = (pd.concat([by_p1.head(args.top), by_gain.head(args.top), by_p1.drop_duplicates("method")])
             .drop_duplicates(["members", "method"]))
    print(f"# picked on {', '.join(r.name for r in pick_runs)} ({len(all_rules)} rules); {cpu()}")
    print(picks.assign(members=picks["members"].map(short)).to_string(index=False))

    if args.check:
        check = Run(args.check, args.pool)
        checked = [dict(check.rule(tuple(m.split("|")), meth), role="check")
                   for m, meth in zip(picks["members"], picks["method"])]
        rows += checked
        print(f"\n# the picks on {check.name} (best member of the pool there: {max(check.member_p1.values()):.2f})")
        show = lambda rows: (pd.DataFrame(rows).assign(members=lambda t: t["members"].map(short))
                             .drop(columns=["run", "role", "n_members"]).to_string(index=False))
        print(show(checked))
        if args.ceiling:
            ceiling = [dict(check.rule(m, meth), role="ceiling") for m, meth in all_rules]
            rows += ceiling
            print(f"\n# ceiling: the best rules picked on {check.name} itself (an upper bound, not a result)")
            for by in ("P@1", "gain_P@1"):
                print(show(pd.DataFrame(ceiling).sort_values(by, ascending=False).head(args.top)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept(pd.DataFrame(rows), args.keep).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
