"""The table generator on synthetic metrics: the results table and the paper's Table 3 / Table 5."""
import math

import pandas as pd
import pytest

from xmc.paper import PAPER_TABLE3, PAPER_TABLE5, TABLE5_IDS
from xmc.tables import (METRICS, MISSING, keep_test_split, paper_dataset, results_table, same_data, table3, table5,
                        to_latex, to_markdown, write_table)


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
    # another dataset: the paper's figures for scale, no difference (it would compare two datasets)
    assert t5.loc[2, "P@1 (paper)"] == 85.51 and not [c for c in t5.columns if c.endswith(" diff")]
    # unless the config declares it the paper's own data (datasets.<name>.same_as_paper: true)
    t5 = table5(ROWS, IDS, PAPER_TABLE5, ["mydata"], paper_names=names, same={"mydata": True}).set_index("id")
    assert t5.loc[2, "P@1 diff"] == pytest.approx(20.25 - 85.51)
    t3 = table3(ROWS, {"X-Transformer": "model-9"}, PAPER_TABLE3, ["eurlex-4k", "mydata"], paper_names=names)
    assert t3.loc[0, "mydata P@1 (paper eurlex-4k)"] == 87.22 and t3.loc[0, "eurlex-4k P@1 (paper)"] == 87.22
    tex = to_latex(t3, groups=["eurlex-4k", "mydata"])
    assert "& paper eurlex-4k" in tex and "P@1 & paper &" in tex


def test_diff_columns_only_for_the_papers_own_dataset():
    names = {"eurlex-4k": "eurlex-4k", "eurlex57k": "eurlex-4k"}
    assert same_data(["eurlex-4k", "eurlex57k", "mydata"], names) == {
        "eurlex-4k": True, "eurlex57k": False, "mydata": False}
    assert same_data(["eurlex57k"], names, {"eurlex57k": True}) == {"eurlex57k": True}
    assert same_data(["eurlex-4k"], names, {"eurlex-4k": False}) == {"eurlex-4k": False}
    rows = ROWS + [metrics_row("eurlex57k", f"model-{i}", 1.0) for i in TABLE5_IDS]
    t5 = table5(rows, IDS, PAPER_TABLE5, ["eurlex-4k", "eurlex57k"], paper_names=names)
    eur, e57 = t5[t5.dataset == "eurlex-4k"].set_index("id"), t5[t5.dataset == "eurlex57k"].set_index("id")
    assert eur.loc[7, "P@1 diff"] == pytest.approx(70.5 - 86.55)
    assert e57["P@1 diff"].isna().all() and e57.loc[7, "P@1 (paper)"] == 86.55
    assert "| n/a |" in to_markdown(t5[t5.dataset == "eurlex57k"])


def test_table5_names_the_roles_and_marks_one_model_twice():
    ids = {**IDS, 2: "minilm-model", 4: "minilm-model", 3: None}
    rows = [r for r in ROWS if r["model"] not in ("model-2", "model-3", "model-4")] + [
        metrics_row(ds, "minilm-model", 5.0) for ds in ("eurlex-4k", "mydata")]
    roles = {i: "XLNet role: minilm" for i in TABLE5_IDS} | {2: "BERT role: minilm", 3: "RoBERTa role: none"}
    t5 = table5(rows, ids, PAPER_TABLE5, ["eurlex-4k"], roles=roles).set_index("id")
    assert list(t5.columns[6:9]) == ["model", "roles", "P@1"] and t5.columns[-1] == "note"
    assert t5.loc[2, "roles"] == "BERT role: minilm" and t5.loc[4, "roles"] == "XLNet role: minilm"
    assert t5.loc[2, "note"] == "same model as id 4" and t5.loc[4, "note"] == "same model as id 2"
    assert t5.loc[5, "note"] == "" and t5.loc[3, "note"] == ""  # a missing id is not "the same" as another


def test_table3_notes_column():
    methods = {"X-Transformer": "model-7", "phi_tfidf + linear": None}
    t3 = table3(ROWS, methods, PAPER_TABLE3, ["eurlex-4k"], notes={"X-Transformer": "id 7: 3 models"})
    t3 = t3.set_index("method")
    assert t3.columns[-1] == "note" and t3.loc["X-Transformer", "note"] == "id 7: 3 models"
    assert t3.loc["Parabel", "note"] == ""


def test_tables_read_the_test_split_only(tmp_path):
    valid = [dict(r, split="valid", **{m: 1.0 for m in METRICS}) for r in ROWS]
    test = [dict(r, split="test") for r in ROWS]
    rows = valid + test
    assert keep_test_split(rows) == test and keep_test_split(ROWS) == ROWS
    frame = pd.DataFrame(rows)
    assert (keep_test_split(frame)["split"] == "test").all() and len(keep_test_split(frame)) == len(test)
    assert len(keep_test_split(pd.DataFrame(ROWS))) == len(ROWS)  # no split column: all rows
    t5 = table5(rows, IDS, PAPER_TABLE5, ["eurlex-4k"]).set_index("id")
    assert t5.loc[3, "P@1"] == 30.5  # the test figure, not the validation one (1.0)
    t3 = table3(rows, {"X-Transformer": "model-9"}, PAPER_TABLE3, ["eurlex-4k"]).set_index("method")
    assert t3.loc["X-Transformer", "eurlex-4k P@1"] == 90.5
    with pytest.raises(ValueError, match="no 'test' split among 20 metrics rows"):
        table3(valid, {"X-Transformer": "model-9"}, PAPER_TABLE3, ["eurlex-4k"])
    # the written tables say which split they show
    paths = {ext: tmp_path / f"t3.{ext}" for ext in ("md", "tex", "html")}
    write_table(t3.reset_index(), markdown=paths["md"], latex=paths["tex"], html=paths["html"],
                caption="Table 3 layout, test split")
    assert paths["md"].read_text().startswith("Table 3 layout, test split\n\n| method |")
    assert paths["tex"].read_text().startswith("% Table 3 layout, test split\n")
    assert "<h3>Table 3 layout, test split</h3>" in paths["html"].read_text()
