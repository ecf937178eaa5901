"""bench/publish_run.py: the published README is generated from the run's files, and its picks read
validation rows only."""
import pandas as pd
import pytest

from bench.common import ROOT, merged_config
from bench.publish_run import best_single_on_valid, readme, shortlists
from xmc import config as xc


@pytest.fixture(scope="module")
def cfg():
    return xc.resolve(merged_config(ROOT / "config" / "eurlex57k.yaml"))


def _rows(cfg, valid_p1: dict, test_p1: dict, recall: dict) -> pd.DataFrame:
    rows = []
    for split, p1 in (("valid", valid_p1), ("test", test_p1)):
        for model, value in p1.items():
            m = xc.describe_model(cfg, model) if model in xc.peer_models(cfg) or "." in model else None
            rows.append({"dataset": "eurlex57k", "split": split, "model": model,
                         "indexer": m.indexer if m else "", "matcher": m.matcher if m else "",
                         "ranker_input": m.input if m else "",
                         "P@1": value, "P@3": value - 10, "P@5": value - 20,
                         "shortlist_recall": recall.get((split, m.indexer, m.matcher, m.input),
                                                        recall.get((split, m.indexer, m.matcher), "")) if m else ""})
    return pd.DataFrame(rows)


def test_the_readme_reports_validation_picks_their_test_figures_and_the_targets(cfg):
    single_a = "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"
    single_b = "text-emb.minilm.tfidf+neural.tfn+man.noop"
    tfidf, pre, fnt = ("pifa-tfidf.linear.tfidf.tfn+man.noop", "pifa-tfidf.linear.pre-minilm.tfn+man.noop",
                       "pifa-tfidf.linear.tfidf+fnt-minilm.tfn+man.noop")
    char = "pifa-tfidf.linear.char.tfn+man.noop"
    # validation prefers single_a; on test single_b is higher: the pick must still be single_a
    # (char comes first: its tree, with other figures, must not stand in for phi_tfidf's)
    valid = {char: 85.0, single_a: 91.0, single_b: 90.0, tfidf: 89.0, pre: 80.0, fnt: 89.5, "picked-on-valid": 92.0,
             "minilm-3-indexers": 90.5, "xr-linear": 88.0}
    test = {char: 86.0, single_a: 92.0, single_b: 93.9, tfidf: 93.1, pre: 89.0, fnt: 93.4, "picked-on-valid": 93.6,
            "minilm-3-indexers": 92.4, "xr-linear": 91.65}
    recall = {("valid", "pifa-tfidf", "minilm"): 88.0, ("test", "pifa-tfidf", "minilm"): 89.0,
              ("valid", "text-emb", "minilm"): 92.0, ("test", "text-emb", "minilm"): 96.0,
              ("valid", "pifa-tfidf", "linear", "char"): 97.0, ("test", "pifa-tfidf", "linear", "char"): 97.5,
              ("valid", "pifa-tfidf", "linear", "pre-minilm"): 90.0, ("test", "pifa-tfidf", "linear", "pre-minilm"): 90.5,
              ("valid", "pifa-tfidf", "linear", "tfidf+fnt-minilm"): 91.6, ("test", "pifa-tfidf", "linear", "tfidf+fnt-minilm"): 95.5,
              ("valid", "pifa-tfidf", "linear", "tfidf"): 91.5, ("test", "pifa-tfidf", "linear", "tfidf"): 95.4}
    results = _rows(cfg, valid, test, recall)
    assert best_single_on_valid(results, cfg) == single_a
    assert best_single_on_valid(results.assign(**{"P@1": results["P@1"].where(results["split"] == "test", 0.0)}),
                                cfg) == single_a  # all validation ties: the grid's first, whatever test says
    selections = {"picked-on-valid": {"method": "average", "members": [single_a, single_b, fnt],
                                      "candidates": [{}] * 7}}
    text = "\n".join(readme(results, cfg, selections, "picked-on-valid"))
    b = cfg["matcher"]["top_b"]
    assert f"| single X-Transformer model (highest validation P@1) | {single_a} | 91.00 | 92.00 |" in text
    assert f"| average of {single_a}, {single_b}, {fnt} | 92.00 | 93.60 |" in text
    assert "| `picked-on-valid` P@1 >= 93.5 | 93.60 | met |" in text
    assert "| `picked-on-valid` >= XR-Linear + 1.5 | 93.60 vs 91.65 + 1.5 | met |" in text
    assert f"| `picked-on-valid` not below its best member | 93.60 vs {single_b} 93.90 | **not met** |" in text
    assert f"| X-Transformer row `minilm-3-indexers` beats all three linear baselines | 92.40 vs {fnt} 93.40 | **not met** |" in text
    assert f"| pifa-tfidf x minilm top-{b} holds as many true labels as the linear tree's on tfidf | valid 88.00 vs 91.50, test 89.00 vs 95.40 | **not met** |" in text
    assert f"| text-emb x minilm top-{b} holds as many true labels as the linear tree's on tfidf | valid 92.00 vs 91.50, test 96.00 vs 95.40 | met |" in text
    for features, v, t in (("char", "97.00", "97.50"), ("pre-minilm", "90.00", "90.50"), ("tfidf", "91.50", "95.40")):
        assert f"| pifa-tfidf | linear | {features} | {v} | {t} |" in text  # each tree its own row
    assert "| peer at its published defaults | xr-linear | 91.65 |" in text


def test_shortlists_give_one_row_per_matcher_and_split():
    results = pd.DataFrame([
        {"split": "valid", "indexer": "a", "matcher": "m", "ranker_input": "tfidf", "shortlist_recall": "80.0"},
        {"split": "test", "indexer": "a", "matcher": "m", "ranker_input": "tfidf", "shortlist_recall": "81.5"},
        {"split": "test", "indexer": "a", "matcher": "m", "ranker_input": "char", "shortlist_recall": "81.5"},  # a second ranker
        {"split": "test", "indexer": "", "matcher": "omikuji", "ranker_input": "", "shortlist_recall": ""}])
    table = shortlists(results)
    assert table.to_dict("records") == [{"indexer": "a", "matcher": "m", "features": "", "valid": 80.0, "test": 81.5}]


def test_shortlists_keep_one_row_per_linear_tree():
    """A linear tree reads its rankers' input: two trees on one indexer are two matchers."""
    results = pd.DataFrame([
        {"split": split, "indexer": "a", "matcher": "linear", "ranker_input": features, "shortlist_recall": value}
        for split, features, value in (("valid", "char", "96.3"), ("test", "char", "96.2"),
                                       ("valid", "tfidf", "96.2"), ("test", "tfidf", "96.3"))]
        + [{"split": split, "indexer": "a", "matcher": "m", "ranker_input": "tfidf", "shortlist_recall": "90.0"}
           for split in ("valid", "test")])
    assert shortlists(results).to_dict("records") == [
        {"indexer": "a", "matcher": "linear", "features": "char", "valid": 96.3, "test": 96.2},
        {"indexer": "a", "matcher": "linear", "features": "tfidf", "valid": 96.2, "test": 96.3},
        {"indexer": "a", "matcher": "m", "features": "", "valid": 90.0, "test": 90.0}]
