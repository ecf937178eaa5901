"""Choices made on the validation split: which ensemble rule, over which of its candidate members.

Every function here takes validation predictions and validation labels only (the workflow gives it
no test file: rule ``select_ensemble``), so what it picks is fixed before a test document is scored.

An ensemble with ``method: auto`` tries every rule of :data:`xmc.ensemble.ENSEMBLE_METHODS` over
every non-empty subset of its candidate models (a greedy forward search past
:data:`EXHAUSTIVE_MAX` candidates) and keeps the best by validation P@1, then P@3, then P@5, then
fewer members, then the earlier rule. A single member is a candidate too (any rule over one model
ranks its list as the model does), so the pick is never below its best member on validation.
"""
from __future__ import annotations

from itertools import combinations

import scipy.sparse as sp

from xmc.ensemble import ENSEMBLE_METHODS, ensemble
from xmc.metrics import precision_recall_at_k
from xmc.vocabulary import AUTO

__all__ = ["AUTO", "EXHAUSTIVE_MAX", "select_ensemble"]

#: Up to this many candidates every subset is tried (2^6 - 1 = 63 subsets x 5 rules); beyond, greedy.
EXHAUSTIVE_MAX = 6
_KEY = ("P@1", "P@3", "P@5")


def _score(preds, Y_valid, method, top_k) -> dict:
    combined = preds[0] if len(preds) == 1 else ensemble(preds, method, top_k=top_k)
    return precision_recall_at_k(combined, Y_valid, ks=(1, 3, 5))


def select_ensemble(valid_preds: dict[str, sp.spmatrix], Y_valid: sp.spmatrix, top_k: int = 20,
                    methods=ENSEMBLE_METHODS) -> dict:
    """Pick an ensemble rule and members on the validation split.

    valid_preds : candidate model name -> its validation predictions, CSR (N_valid, L)
    Y_valid : the validation labels, sparse (N_valid, L)

    Returns ``{"method", "members", "validation": {P@k, R@k of the pick}, "candidates": [...]}``;
    ``candidates`` lists every (method, members, P@1, P@3, P@5) tried, best first.
    """
    if not valid_preds:
        raise ValueError("select_ensemble: no candidate models")
    names = list(valid_preds)
    for name, p in valid_preds.items():
        if not sp.issparse(p) or p.shape != Y_valid.shape:
            raise ValueError(f"select_ensemble: predictions of {name!r} have shape "
                             f"{getattr(p, 'shape', None)}, expected the validation labels' {Y_valid.shape}")
    tried: dict[tuple[str, tuple[str, ...]], dict] = {}

    def rank(item):
        (method, members), scores = item
        return tuple(-scores[k] for k in _KEY) + (len(members), methods.index(method), members)

    def trial(method, members):
        key = (methods[0] if len(members) == 1 else method, members)  # one member: every rule is the same
        if key not in tried:
            tried[key] = _score([valid_preds[m] for m in members], Y_valid, key[0], top_k)
        return key

    if len(names) <= EXHAUSTIVE_MAX:
        for size in range(1, len(names) + 1):
            for members in combinations(names, size):
                for method in methods:
                    trial(method, members)
    else:  # greedy forward: grow the best pick by the member that helps most, while one does
        best = min((trial(methods[0], (n,)) for n in names), key=lambda k: rank((k, tried[k])))
        while True:
            rest = [n for n in names if n not in best[1]]
            grown = [trial(method, tuple(sorted(best[1] + (n,), key=names.index))) for n in rest for method in methods]
            if not grown:
                break
            top = min(grown, key=lambda k: rank((k, tried[k])))
            if rank((top, tried[top])) >= rank((best, tried[best])):
                break
            best = top
    ordered = sorted(tried.items(), key=rank)
    (method, members), scores = ordered[0]
    return {
        "method": method,
        "members": list(members),
        "validation": scores,
        "candidates": [{"method": m, "members": list(ms), **{k: s[k] for k in _KEY}} for (m, ms), s in ordered],
    }
