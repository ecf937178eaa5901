"""The table generator on synthetic metrics: the results table and the paper's Table 3 / Table 5."""
import math

import pandas as pd
import pytest

from xmc.paper import PAPER_TABLE3, PAPER_TABLE5, TABLE5_IDS
from xmc.tables import (METRICS, MISSING, paper_dataset, results_table, table3, table5, to_latex, to_markdown,
                        write_table)


def metrics_row(dataset, model, base, **extra):
    """A synthetic metrics row: P@1..R@5 = base + 0, 1, ..., 5 (distinct, so a mixed-up column shows)."""
    return {"dataset": dataset, "split": "test", "model": model, **{m: base + i for i, m in enumerate(METRICS)},
            **extra}


IDS = {i: f"model-{i}" for i in TABLE5_IDS}
ROWS = [metrics_row(ds, f"model-{i}", 10.0 * i + (0.5 if ds == "eurlex-4k" else 0.25))
        for ds in ("eurlex-4k", "mydata") for i in TABLE5_IDS]


def test_table5_every_id_with_paper_figures_and_differences():
    t5 = table5(ROWS, IDS, PAPER_TABLE5, ["eurlex-4k", "mydata"])
    assert list(t5["id"]) == list(TABLE5_IDS) * 2
    assert list(t5.columns[:8]) == ["dataset", "paper_dataset", "id", "indexing", "matcher", "ranker_input",
                                    "negatives", "model"]
    assert list(t5["paper_dataset"]) == ["eurlex-4k"] * 10 + [MISSING] * 10
    for metric in METRICS:
        assert [metric, f"{metric} (paper)", f"{metric} diff"] == [c for c in t5.columns if c.startswith(metric)]
    eur = t5[t5.dataset == "eurlex-4k"].set_index("id")
    for i in TABLE5_IDS:
        assert eur.loc[i, "model"] == f"model-{i}"
        for k, metric in enumerate(METRICS):
            ours, paper = 10.0 * i + 0.5 + k, PAPER_TABLE5["eurlex-4k"][i][metric]
            assert eur.loc[i, metric] == ours
            assert eur.loc[i, f"{metric} (paper)"] == paper
            assert eur.loc[i, f"{metric} diff"] == pytest.approx(ours - paper)
    # the paper's wording of each configuration
    assert eur.loc[0, "ranker_input"] == "tfidf" and eur.loc[0, "negatives"] == "TFN"
    assert eur.loc[9, "indexing"] == "all three"
    # a dataset the paper did not use: our figures, no paper figures, the same descriptions
    mine = t5[t5.dataset == "mydata"].set_index("id")
    assert mine.loc[3, "P@1"] == 30.25
    assert mine[["P@1 (paper)", "R@5 diff"]].isna().all().all()
    assert list(mine["matcher"]) == list(eur["matcher"])


def test_table5_marks_missing_ids_instead_of_failing():
    ids = {**IDS, 3: None, 8: None}
    rows = [r for r in ROWS if r["model"] not in ("model-3", "model-8")]
    t5 = table5(rows, ids, PAPER_TABLE5, ["eurlex-4k"]).set_index("id")
    assert len(t5) == 10
    assert t5.loc[3, "model"] == MISSING and math.isnan(t5.loc[3, "P@1"]) and math.isnan(t5.loc[3, "P@1 diff"])
    assert t5.loc[3, "P@1 (paper)"] == 85.33  # the paper's figure is still shown
    assert t5.loc[4, "P@1"] == 40.5
    md = to_markdown(t5.reset_index())
    row3 = next(line for line in md.splitlines() if line.startswith("| 3 | eurlex-4k"))
    assert f"| {MISSING} |" in row3 and "85.33" in row3


def test_table5_a_model_of_the_grid_without_metrics_is_an_error():
    rows = [r for r in ROWS if r["model"] != "model-2"]
    with pytest.raises(ValueError, match="model-2.*id 2"):
        table5(rows, IDS, PAPER_TABLE5, ["eurlex-4k"])


def test_table3_rows_paper_columns_and_missing_methods():
    methods = {"X-Transformer": "model-9", "phi_tfidf + linear": "baseline", "phi_pre + linear": None}
    rows = ROWS + [metrics_row("eurlex-4k", "baseline", 70.0), metrics_row("mydata", "baseline", 60.0)]
    t3 = table3(rows, methods, PAPER_TABLE3, ["eurlex-4k", "mydata"]).set_index("method")
    # our methods first, then the paper's other rows (Parabel, AttentionXML, ...) with n/a figures
    assert list(t3.index[:3]) == list(methods)
    assert set(t3.index) == set(methods) | set(PAPER_TABLE3)
    assert list(t3.columns[:7]) == ["model", "eurlex-4k P@1", "eurlex-4k P@1 (paper)", "eurlex-4k P@3",
                                    "eurlex-4k P@3 (paper)", "eurlex-4k P@5", "eurlex-4k P@5 (paper)"]
    assert t3.loc["X-Transformer", "eurlex-4k P@3"] == 91.5
    assert t3.loc["X-Transformer", "eurlex-4k P@3 (paper)"] == 75.12
    assert t3.loc["phi_tfidf + linear", "mydata P@5"] == 62.0
    assert t3.loc["phi_tfidf + linear", "eurlex-4k P@1 (paper)"] == 81.71
    assert math.isnan(t3.loc["phi_tfidf + linear", "eurlex-4k P@3 (paper)"])  # not in the paper notes
    assert t3.loc["phi_pre + linear", "model"] == MISSING and math.isnan(t3.loc["phi_pre + linear", "eurlex-4k P@1"])
    assert t3.loc["Parabel", "eurlex-4k P@1 (paper)"] == 82.12
    assert t3.filter(like="mydata").filter(like="(paper)").isna().all().all()


def test_paper_dataset_matches_up_to_case_and_punctuation():
    assert paper_dataset("Eurlex_4K", PAPER_TABLE5) == "eurlex-4k"
    assert paper_dataset("wiki500k", PAPER_TABLE5) == "wiki-500k"
    assert paper_dataset("eurlex57k", PAPER_TABLE5) is None


def test_written_as_markdown_csv_latex_html(tmp_path):
    t3 = table3(ROWS, {"X-Transformer": "model-9", "phi_pre + linear": None}, PAPER_TABLE3, ["eurlex-4k", "mydata"])
    paths = {ext: tmp_path / f"table3.{ext}" for ext in ("csv", "md", "tex", "html")}
    write_table(t3, csv=paths["csv"], markdown=paths["md"], latex=paths["tex"], html=paths["html"],
                groups=["eurlex-4k", "mydata"])
    back = pd.read_csv(paths["csv"])  # "n/a" reads back as NaN
    assert list(back.columns) == list(t3.columns) and len(back) == len(t3)
    assert back.loc[0, "eurlex-4k P@1"] == 90.5 and back.loc[1, "eurlex-4k P@1"] != back.loc[1, "eurlex-4k P@1"]
    md = paths["md"].read_text().splitlines()
    assert len(md) == len(t3) + 2 and md[1].startswith("|---|---|---:|")
    tex = paths["tex"].read_text()
    assert r"\multicolumn{6}{c}{eurlex-4k}" in tex and r"\multicolumn{6}{c}{mydata}" in tex
    assert r"\cmidrule(lr){3-8}" in tex and tex.count(r"\\") == len(t3) + 2
    assert "phi\\_pre + linear & n/a" in tex
    html = paths["html"].read_text()
    assert "<table" in html and "87.22" in html and MISSING in html
    assert not list(tmp_path.glob(".*.tmp*"))


def test_latex_signed_differences_and_escaping():
    df = pd.DataFrame({"name": ["a_b & c%"], "P@1": [1.0], "P@1 (paper)": [2.5], "P@1 diff": [-1.5]})
    tex = to_latex(df)
    assert r"a\_b \& c\%" in tex and "-1.50" in tex and r"$\Delta$" in tex and "& paper &" in tex
    assert "+1.50" in to_markdown(df.assign(**{"P@1 diff": [1.5]}))


def test_results_table_sorting_unchanged():
    rows = [metrics_row("d", "b", 1.0, indexer="i", matcher="m", ranker_input="r", negatives="n", combine="c",
                        ensemble=""),
            metrics_row("d", "ens", 2.0, indexer="i", matcher="m", ranker_input="r", negatives="n", combine="c",
                        ensemble="average"),
            metrics_row("d", "a", 3.0, indexer="i", matcher="m", ranker_input="r", negatives="n", combine="c",
                        ensemble="")]
    assert list(results_table(rows)["model"]) == ["a", "b", "ens"]
    md = to_markdown(results_table(rows))
    assert md.splitlines()[1] == "|---|---|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
    # the test split's rows first, then validation's, each sorted the same way
    both = rows + [{**row, "split": "valid"} for row in rows]
    table = results_table(both)
    assert list(zip(table["split"], table["model"])) == [
        ("test", "a"), ("test", "b"), ("test", "ens"), ("valid", "a"), ("valid", "b"), ("valid", "ens")]


def test_figures_of_another_paper_dataset_are_named():
    """A dataset the paper did not use can be set beside one it did (EURLEX57K beside Eurlex-4K)."""
    names = {"mydata": "eurlex-4k"}
    t5 = table5(ROWS, IDS, PAPER_TABLE5, ["mydata"], paper_names=names).set_index("id")
    assert (t5["paper_dataset"] == "eurlex-4k").all()
    assert t5.loc[2, "P@1 (paper)"] == 85.51 and t5.loc[2, "P@1 diff"] == pytest.approx(20.25 - 85.51)
    t3 = table3(ROWS, {"X-Transformer": "model-9"}, PAPER_TABLE3, ["eurlex-4k", "mydata"], paper_names=names)
    assert t3.loc[0, "mydata P@1 (paper eurlex-4k)"] == 87.22 and t3.loc[0, "eurlex-4k P@1 (paper)"] == 87.22
    tex = to_latex(t3, groups=["eurlex-4k", "mydata"])
    assert "& paper eurlex-4k" in tex and "P@1 & paper &" in tex
